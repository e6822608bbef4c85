"""The animation timeline of one motion: keyframed channels that the actions fill one after
the other and that render.py turns into joint rotations.

Channels (frames at `fps`): the pelvis path and heading (absolute), additive pelvis, spine and
neck offsets, wrist targets of both arms in the chest frame (elevation, azimuth, reach), and
per side a list of foot events (steps, flights, kicks) between which the foot stays planted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
import numpy as np

from .body import ANKLE_HEIGHT, HIP_OFFSET, LEG_LENGTH, SIDE_SIGN, STAND_REACH, heading_axes, rolled_ankle
from .curves import minjerk, spline

SWING_PITCH = 0.25  # rad a stepping foot's toe points up mid-swing


class MotionTooLong(ValueError):
    """A motion program does not fit into the frame budget (generate_motion resamples it)."""

    def __init__(self):
        super().__init__("the motion program does not fit into max_length frames "
                         "(ask for fewer steps or repetitions, or raise --max_motion_length)")


@dataclass
class Style:
    """Per-motion variation: who is moving and how."""
    foot_width: float  # lateral distance of each ankle from the pelvis centre, m
    toe_out: float  # rad each foot turns outward
    arm_swing: float  # scale of locomotion arm swing
    posture: float  # extra forward lean of the chest, rad
    head_pitch: float
    elbow_reach: float  # neutral arm reach fraction
    tempo: float  # scale of action durations
    lift: float  # scale of swing-foot lift
    arm_out: float  # extra neutral arm azimuth, rad


def sample_style(rng: np.random.Generator) -> Style:
    """A random Style (nine draws from rng)."""
    return Style(foot_width=rng.uniform(0.085, 0.13), toe_out=rng.uniform(0.0, 0.15),
                 arm_swing=rng.uniform(0.7, 1.3), posture=rng.uniform(-0.04, 0.10),
                 head_pitch=rng.uniform(-0.15, 0.2), elbow_reach=rng.uniform(0.88, 0.96),
                 tempo=rng.uniform(0.9, 1.12), lift=rng.uniform(0.85, 1.2), arm_out=rng.uniform(-0.1, 0.2))


@dataclass(frozen=True)
class FootRoll:
    """How a foot rolls around a swing: before it leaves, its heel rises about the fixed toe by
    heel_angle rad over heel_frames; after it lands, it rolls flat from toe-up by strike_angle
    about its heel over strike_frames."""
    heel_angle: float = 0.0
    heel_frames: int = 0
    strike_angle: float = 0.0
    strike_frames: int = 0


@dataclass
class FootEvent:
    """A foot leaving the floor at frame t0 and touching down at t1 = t0 + len(ankle) - 1.

    in_reach: the pelvis is lowered if needed so the leg reaches this swing's targets at
    "touchdown", at "both" toe-off and touchdown, or "none" (kicks, flights).
    """
    t0: int
    ankle: np.ndarray  # (n, 3) world ankle targets
    yaw: np.ndarray  # (n,) foot heading
    pitch: np.ndarray  # (n,) offsets over the planted pitch
    end_pose: tuple  # (x, z, yaw) the flat pose it ends in
    roll: FootRoll = FootRoll()
    in_reach: str = "none"

    @property
    def t1(self) -> int:
        return self.t0 + len(self.ankle) - 1


class Timeline:
    """Animation channels of one motion, filled action by action (frames at `fps`)."""

    def __init__(self, fps: int, capacity: int, style: Style, yaw0: float):
        self.fps, self.n, self.style = fps, capacity, style
        # Standing pelvis height: both legs just short of straight over feet under the hips.
        self.h_stand = float(min(ANKLE_HEIGHT + np.sqrt((STAND_REACH * LEG_LENGTH) ** 2
                                                        - (style.foot_width - np.abs(HIP_OFFSET[:, 0])) ** 2)))
        self.frames = np.arange(capacity, dtype=np.float64)
        self.root_xz = np.zeros((capacity, 2))  # absolute pelvis xz (world)
        self.yaw = np.full(capacity, yaw0)  # absolute heading, rad (0: facing +z)
        self.root_off = np.zeros((capacity, 3))  # additive pelvis offset (left, up, forward), heading frame
        self.pelvis_rot = np.zeros((capacity, 2))  # additive pelvis pitch (forward) and roll (to the left)
        self.spine = np.zeros((capacity, 3))  # additive spine bend (forward), side bend (left), twist (left)
        self.neck = np.zeros((capacity, 2))  # additive neck pitch (down) and yaw (left)
        self.arm = np.zeros((capacity, 2, 3))  # additive arm elevation, azimuth (outward), reach
        self.elbow = np.zeros((capacity, 2, 3))  # additive elbow direction hint (chest frame, left-side signs)
        _, left = heading_axes(np.array(yaw0))
        self.feet = []  # planted pose per side: (ankle x, ankle z, foot yaw)
        for side in range(2):
            pos = SIDE_SIGN[side] * style.foot_width * left
            self.feet.append((pos[0], pos[2], yaw0 - SIDE_SIGN[side] * style.toe_out))
        self.start_feet = list(self.feet)
        self.events: list[list[FootEvent]] = [[], []]  # per side, in time order
        self.t_feet = 0  # first frame at which both feet are planted for good
        self.t_body = 0  # first frame at which every additive channel is back to rest

    # -- bookkeeping ------------------------------------------------------------------
    def frames_of(self, seconds: float) -> int:
        return max(1, int(round(seconds * self.fps * self.style.tempo)))

    def check(self, t_end: float) -> None:
        if t_end >= self.n - 1:
            raise MotionTooLong()

    def hold_from(self, t: int) -> None:
        """Hold the absolute channels (pelvis xz, heading) at their value at frame t onwards."""
        self.root_xz[t:] = self.root_xz[t]
        self.yaw[t:] = self.yaw[t]

    def heading_at(self, t: float) -> float:
        return float(self.yaw[int(min(max(t, 0), self.n - 1))])

    def pelvis_plan(self, t: np.ndarray) -> np.ndarray:
        """Planned pelvis positions (N, 3) at integer frames t (before the reach fix and noise)."""
        t = np.asarray(t, dtype=np.int64)
        fwd, left = heading_axes(self.yaw[t])
        off = self.root_off[t]
        pos = left * off[:, :1] + fwd * off[:, 2:]  # (N, 3)
        pos[:, 0] += self.root_xz[t, 0]
        pos[:, 2] += self.root_xz[t, 1]
        pos[:, 1] = self.h_stand + off[:, 1]
        return pos

    def hip_plan(self, t: np.ndarray, side: int) -> np.ndarray:
        """Planned hip positions (N, 3) of one side (pelvis pitch/roll ignored)."""
        t = np.asarray(t, dtype=np.int64)
        _, left = heading_axes(self.yaw[t])
        return self.pelvis_plan(t) + left * HIP_OFFSET[side, 0]

    # -- additive channels ----------------------------------------------------------------
    def _view(self, channel: str, start: int, stop: int, index):
        """Slice of an additive channel: frames [start, stop), then `index` over the other dims."""
        key = (slice(start, stop),) + (() if index is None else (index if isinstance(index, tuple) else (index,)))
        return getattr(self, channel), key

    def add_keys(self, channel: str, index, key_t, key_v, hold: bool = False) -> None:
        """Add a C1 keyframed curve to an additive channel (zero outside the keys unless hold,
        which keeps the last key's value to the end of the timeline)."""
        t0, t1 = int(math.floor(key_t[0])), int(math.ceil(key_t[-1]))
        self.check(t1)
        stop = self.n if hold else t1 + 1
        array, key = self._view(channel, t0, stop, index)
        array[key] += spline(key_t, key_v, self.frames[t0:stop])
        self.t_body = max(self.t_body, t1)

    def add_curve(self, channel: str, index, t0: int, values: np.ndarray) -> None:
        """Add a precomputed curve (n, ...) starting at frame t0 to an additive channel."""
        self.check(t0 + len(values))
        array, key = self._view(channel, t0, t0 + len(values), index)
        array[key] += values
        self.t_body = max(self.t_body, t0 + len(values) - 1)

    # -- feet -----------------------------------------------------------------------------
    def planted_ankle(self, side: int) -> np.ndarray:
        x, z, _ = self.feet[side]
        return np.array([x, ANKLE_HEIGHT[side], z])

    def pivot_ankle(self, side: int, offset: float) -> np.ndarray:
        """Ankle position of the planted foot rolled by `offset` rad (see body.rolled_ankle)."""
        x, z, yaw = self.feet[side]
        return rolled_ankle(side, x, z, yaw, np.array([offset]))[0]

    def add_foot_event(self, side: int, event: FootEvent) -> None:
        """Record a foot event; the foot is planted in event.end_pose afterwards."""
        self.check(event.t1 + event.roll.strike_frames)
        events = self.events[side]
        if events and event.t0 - event.roll.heel_frames <= events[-1].t1 + events[-1].roll.strike_frames:
            raise RuntimeError("internal: overlapping foot events")
        events.append(event)
        self.feet[side] = event.end_pose
        self.t_feet = max(self.t_feet, event.t1 + event.roll.strike_frames)

    def step(self, side: int, t0: int, t1: int, to_pose: tuple, lift: float,
             roll: FootRoll = FootRoll(), in_reach: str = "both") -> None:
        """A stepping foot: heel-off, a minimum-jerk swing from its planted pose to to_pose
        (x, z, yaw), lifted `lift` metres, and a heel strike that rolls the foot flat."""
        n = t1 - t0
        heel_angle, heel_frames = roll.heel_angle, roll.heel_frames
        if self.events[side]:  # at low frame rates the stance may be too short for a full heel-off
            previous = self.events[side][-1]
            heel_frames = min(heel_frames, t0 - previous.t1 - previous.roll.strike_frames - 1)
        if heel_frames < 1:
            heel_angle, heel_frames = 0.0, 0
        yaw0 = self.feet[side][2]
        to_x, to_z, to_yaw = to_pose
        start = self.pivot_ankle(side, heel_angle)
        end = rolled_ankle(side, to_x, to_z, to_yaw, np.array([-roll.strike_angle]))[0]
        u = np.arange(n + 1) / n  # (n+1,)
        s = minjerk(u)[:, None]
        ankle = start + (end - start) * s  # (n+1, 3)
        ankle[:, 1] += lift * self.style.lift * np.sin(np.pi * u ** 0.75) ** 2  # clears the floor early
        yaw = yaw0 + (to_yaw - yaw0) * s[:, 0]
        bump = np.sin(np.pi * u) ** 2
        pitch = heel_angle * (1 - s[:, 0]) - roll.strike_angle * s[:, 0] + SWING_PITCH * bump * np.cos(np.pi * u)
        strike_frames = roll.strike_frames if roll.strike_angle > 0 else 0
        self.add_foot_event(side, FootEvent(t0, ankle, yaw, pitch, to_pose,
                                            FootRoll(heel_angle, heel_frames, roll.strike_angle, strike_frames),
                                            in_reach))



def both_arms(curve: np.ndarray, elevation: float = 0.0, azimuth: float = 0.0, reach: float = 0.0) -> np.ndarray:
    """Arm-channel offsets (n, 2, 3) moving both arms alike: curve (n,) times each of
    (elevation, azimuth, reach); a zero coefficient leaves that channel at exactly zero."""
    arms = np.zeros((len(curve), 2, 3))
    for k, coefficient in enumerate((elevation, azimuth, reach)):
        if coefficient:
            arms[:, :, k] = coefficient * curve[:, None]
    return arms
