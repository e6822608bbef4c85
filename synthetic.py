"""The embedded data set: procedurally animated human motions with HumanML3D-style captions.

Every motion is animated on HumanML3D's 22-joint skeleton with its real bone lengths
(utils.SKELETON_OFFSETS) as per-joint rotations fed through utils.forward_kinematics, and the
set is written in exactly the HumanML3D layout, so that dataset.py reads it like the real one:

    root/new_joint_vecs/S000123.npy   (T-1, 263) float32 features (utils.joints_to_features)
    root/new_joints/S000123.npy       (T-1, 22, 3) float32 joints recovered from those features
    root/texts/S000123.txt            captions, one a line: `caption#word/POS ...#0.0#0.0`
    root/train.txt val.txt test.txt   motion ids, split 80/10/10
    root/Mean.npy Std.npy             (263,) feature statistics of the train split
    root/labels.json                  {id: {"action", "actions", "params", "parts"}}
    root/DONE                         written last (JSON of the build settings)

How a motion is animated. A motion is one action or two actions in a row (ACTIONS lists them),
each with parameters (speed, steps, direction, hand or leg, height, repetitions) that its
captions name. An action writes keyframed animation channels into a timeline: the pelvis path
and heading, additive pelvis/spine/neck offsets, wrist targets of both arms in the chest frame
(elevation, azimuth, reach), and foot events (steps, flights, kicks). Feet are placed in the
world and stay exactly fixed while planted (a heel-off pivots the foot about its fixed toe);
the legs reach them by two-bone inverse kinematics from the hips, and the pelvis is lowered
smoothly wherever a planted foot would be out of reach. The lowest joint of a planted foot
(the toe) is at y = 0; only jumps, hops and runs leave the floor. All channels are smooth
(minimum-jerk ramps, C1 splines); the rotations of all 22 joints come from those channels
and go through utils.forward_kinematics, so bone lengths are exact.

Every motion is a pure function of (seed, index): a numpy Generator seeded with both, so a
build gives identical files whether it runs in one process or several.
"""
from __future__ import annotations

import json
import math
import multiprocessing
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d, maximum_filter1d

import utils

ACTIONS = (
    "walk", "jog", "run", "walk_backward", "sidestep", "turn", "spin", "jump", "jump_forward",
    "hop", "squat", "sit_down", "bow", "kick", "punch", "wave", "raise_arms", "clap",
)
# Actions that move the feet (or the pelvis path) and so start only once both feet are planted.
_FOOT_ACTIONS = {"walk", "jog", "run", "walk_backward", "sidestep", "turn", "spin", "jump",
                 "jump_forward", "hop", "kick"}
DONE_FILE = "DONE"
_FORMAT_VERSION = 1

# ---------------------------------------------------------------------------------------
# Skeleton measures (index 0: left side, 1: right side; the left side is at +x)
# ---------------------------------------------------------------------------------------
_SIGN = np.array([1.0, -1.0])
_L_THIGH = utils.BONE_LENGTHS[[4, 5]]
_L_SHIN = utils.BONE_LENGTHS[[7, 8]]
_L_FOOT = utils.BONE_LENGTHS[[10, 11]]
_L_UPPER_ARM = utils.BONE_LENGTHS[[18, 19]]
_L_FOREARM = utils.BONE_LENGTHS[[20, 21]]
_LEG = _L_THIGH + _L_SHIN
_ARM = _L_UPPER_ARM + _L_FOREARM
_HIP_OFFSET = utils.SKELETON_OFFSETS[[1, 2]]  # (2, 3) pelvis -> hip in the pelvis frame
_FOOT_PITCH = 0.42  # rad; a planted foot points this much down from its ankle to its toe
_ANKLE_HEIGHT = _L_FOOT * math.sin(_FOOT_PITCH)  # ankle height of a planted foot (toe at y=0)
_HEEL_BACK = 0.045  # m the (virtual) heel contact point lies behind the ankle
_STAND_REACH = 0.985  # hip-ankle distance of a standing leg, fraction of the leg length
_PLANTED_REACH = 0.988  # the most a planted leg is stretched; the pelvis drops to keep this
_SOFT_REACH = 0.992  # beyond this fraction a limb target is softly pulled back into reach
_GRAVITY = 9.81  # m/s^2
# Chest-frame directions of the collar bone and of the collar -> shoulder bone (left side,
# mirrored for the right), read off real HumanML3D poses.
_COLLAR_DIR = np.array([0.28, 0.94, 0.19])
_SHOULDER_DIR = np.array([0.94, 0.05, 0.33])
_NEUTRAL_ARM = np.array([0.10, 0.15, 0.93])  # elevation, azimuth (rad), reach (fraction)
_BASE_SPINE_BEND = np.array([-0.06, 0.06, 0.12])  # per spine bone, rad forward
_BASE_NECK_PITCH = 0.20
_BASE_HEAD_PITCH = -0.98  # the head bone's rest direction is +z; this tilts it up-forward


class MotionTooLong(ValueError):
    """A motion program does not fit into the frame budget (generate_motion resamples it)."""

    def __init__(self):
        super().__init__("the motion program does not fit into max_length frames "
                         "(ask for fewer steps or repetitions, or raise --max_motion_length)")


# ---------------------------------------------------------------------------------------
# Small curve helpers (numpy, vectorised over frames)
# ---------------------------------------------------------------------------------------
def _minjerk(u: np.ndarray) -> np.ndarray:
    """Minimum-jerk ramp 0 -> 1 on u in [0, 1] (zero velocity and acceleration at both ends)."""
    u = np.clip(u, 0.0, 1.0)
    return u * u * u * (10.0 - 15.0 * u + 6.0 * u * u)


def _ramp(t: np.ndarray, start: float, length: float) -> np.ndarray:
    """Minimum-jerk ramp from 0 at frame `start` to 1 at `start + length` (frames)."""
    return _minjerk((t - start) / max(length, 1e-6))


def _envelope(t: np.ndarray, t0: float, t1: float, ramp_in: float, ramp_out: float) -> np.ndarray:
    """0 -> 1 over [t0, t0+ramp_in], 1, then 1 -> 0 over [t1-ramp_out, t1] (frames)."""
    return _ramp(t, t0, ramp_in) * (1.0 - _ramp(t, t1 - ramp_out, ramp_out))


def _spline(key_t, key_v, t: np.ndarray) -> np.ndarray:
    """C1 cubic through keyframes (Catmull-Rom tangents, zero slope at the first and last key).

    key_t: (K,) increasing frame times; key_v: (K, ...) values; t: (N,) frames -> (N, ...).
    Outside [key_t[0], key_t[-1]] the end values are held.
    """
    key_t = np.asarray(key_t, dtype=np.float64)
    key_v = np.asarray(key_v, dtype=np.float64)
    slopes = np.zeros_like(key_v)
    if len(key_t) > 2:
        span = (key_t[2:] - key_t[:-2]).reshape((-1,) + (1,) * (key_v.ndim - 1))
        slopes[1:-1] = (key_v[2:] - key_v[:-2]) / span
    tc = np.clip(t, key_t[0], key_t[-1])
    seg = np.clip(np.searchsorted(key_t, tc, side="right") - 1, 0, len(key_t) - 2)
    h = key_t[seg + 1] - key_t[seg]
    u = (tc - key_t[seg]) / h
    shape = (-1,) + (1,) * (key_v.ndim - 1)
    u, h = u.reshape(shape), h.reshape(shape)
    h00, h10 = 2 * u ** 3 - 3 * u ** 2 + 1, u ** 3 - 2 * u ** 2 + u
    h01, h11 = -2 * u ** 3 + 3 * u ** 2, u ** 3 - u ** 2
    return h00 * key_v[seg] + h10 * h * slopes[seg] + h01 * key_v[seg + 1] + h11 * h * slopes[seg + 1]


def _hermite(p0: float, v0: float, p1: float, v1: float, n: int) -> np.ndarray:
    """Cubic from p0 (velocity v0, per frame) to p1 (velocity v1) over n frames: n+1 values."""
    u = np.arange(n + 1) / n
    h00, h10 = 2 * u ** 3 - 3 * u ** 2 + 1, u ** 3 - 2 * u ** 2 + u
    h01, h11 = -2 * u ** 3 + 3 * u ** 2, u ** 3 - u ** 2
    return h00 * p0 + h10 * n * v0 + h01 * p1 + h11 * n * v1


def _smooth_noise(rng: np.random.Generator, n: int, fps: int, amplitude: float,
                  freq=(0.12, 0.5)) -> np.ndarray:
    """Smooth random signal (n,): three sines of random frequency (Hz) and phase."""
    t = np.arange(n) / fps
    out = np.zeros(n)
    for _ in range(3):
        f = rng.uniform(*freq)
        out += np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    return amplitude * out / 3.0


def _heading(yaw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward (sin, 0, cos) and left (cos, 0, -sin) unit vectors (..., 3) of headings `yaw`."""
    s, c = np.sin(yaw), np.cos(yaw)
    zero = np.zeros_like(yaw)
    return np.stack([s, zero, c], -1), np.stack([c, zero, -s], -1)


def _pivot_ankle(side: int, x: float, z: float, yaw: float, offset: np.ndarray) -> np.ndarray:
    """Ankle positions (N, 3) of a foot whose flat pose has its ankle over (x, z) facing `yaw`,
    rolled by `offset` (N,) rad: > 0 heel up about the fixed toe (push-off), < 0 toe up about
    the fixed heel (heel strike). The foot's pitch is then _FOOT_PITCH + offset."""
    fwd, _ = _heading(np.array(yaw))
    up = np.array([0.0, 1.0, 0.0])
    flat = np.array([x, _ANKLE_HEIGHT[side], z])
    lf = _L_FOOT[side]
    heel_up = np.maximum(offset, 0.0)[:, None]
    toe = flat + lf * (math.cos(_FOOT_PITCH) * fwd - math.sin(_FOOT_PITCH) * up)
    by_toe = toe - lf * (np.cos(_FOOT_PITCH + heel_up) * fwd - np.sin(_FOOT_PITCH + heel_up) * up)
    toe_up = np.maximum(-offset, 0.0)[:, None]
    heel = flat - _HEEL_BACK * fwd - _ANKLE_HEIGHT[side] * up
    f, u = _HEEL_BACK, _ANKLE_HEIGHT[side]
    by_heel = heel + (f * np.cos(toe_up) - u * np.sin(toe_up)) * fwd + (f * np.sin(toe_up) + u * np.cos(toe_up)) * up
    return np.where(offset[:, None] >= 0, by_toe, by_heel)


# ---------------------------------------------------------------------------------------
# Rotation helpers (torch float64 through utils)
# ---------------------------------------------------------------------------------------
def _tensor(x) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))


_AXES = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}


def _two_bone_ik(root: np.ndarray, target: np.ndarray, l1: np.ndarray, l2: np.ndarray, hint: np.ndarray):
    """Analytic two-bone IK, vectorised: root, target, hint (N, 3), bone lengths l1, l2 (N,).

    hint is the direction the middle joint should point to. Returns (middle joint (N, 3),
    reached end (N, 3), bend-plane normal (N, 3)). Targets beyond _SOFT_REACH of the limb
    are pulled back smoothly (tanh), never past full extension.
    """
    v = target - root
    dist = np.linalg.norm(v, axis=-1)
    u = v / dist[:, None]
    full = l1 + l2
    knee_start = _SOFT_REACH * full
    span = (0.9999 - _SOFT_REACH) * full
    reach = np.where(dist > knee_start, knee_start + span * np.tanh((dist - knee_start) / span), dist)
    reach = np.maximum(reach, np.abs(l1 - l2) + 1e-4)
    h = hint - (hint * u).sum(-1, keepdims=True) * u
    h_norm = np.linalg.norm(h, axis=-1, keepdims=True)
    fallback = np.cross(u, np.array([1.0, 0.0, 0.0]))
    fallback /= np.linalg.norm(fallback, axis=-1, keepdims=True).clip(1e-12)
    h = np.where(h_norm > 1e-6, h / np.maximum(h_norm, 1e-12), fallback)
    cos_a = np.clip((l1 ** 2 + reach ** 2 - l2 ** 2) / (2 * l1 * reach), -1.0, 1.0)
    sin_a = np.sqrt(1.0 - cos_a ** 2)
    middle = root + l1[:, None] * (cos_a[:, None] * u + sin_a[:, None] * h)
    end = root + reach[:, None] * u
    return middle, end, np.cross(u, h)


# ---------------------------------------------------------------------------------------
# The animation timeline
# ---------------------------------------------------------------------------------------
@dataclass
class _Style:
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


class _Timeline:
    """Animation channels of one motion, filled action by action (frames at `fps`)."""

    def __init__(self, fps: int, capacity: int, style: _Style, yaw0: float):
        self.fps, self.n, self.style = fps, capacity, style
        # Standing pelvis height: both legs just short of straight over feet under the hips.
        self.h_stand = float(min(_ANKLE_HEIGHT + np.sqrt((_STAND_REACH * _LEG) ** 2
                                                         - (style.foot_width - np.abs(_HIP_OFFSET[:, 0])) ** 2)))
        self.frames = np.arange(capacity, dtype=np.float64)
        self.root_xz = np.zeros((capacity, 2))  # absolute pelvis xz (world)
        self.yaw = np.full(capacity, yaw0)  # absolute heading, rad (0: facing +z)
        self.root_off = np.zeros((capacity, 3))  # additive pelvis offset (left, up, forward), heading frame
        self.pelvis_rot = np.zeros((capacity, 2))  # additive pelvis pitch (forward) and roll (to the left)
        self.spine = np.zeros((capacity, 3))  # additive spine bend (forward), side bend (left), twist (left)
        self.neck = np.zeros((capacity, 2))  # additive neck pitch (down) and yaw (left)
        self.arm = np.zeros((capacity, 2, 3))  # additive arm elevation, azimuth (outward), reach
        self.elbow = np.zeros((capacity, 2, 3))  # additive elbow direction hint (chest frame, left-side signs)
        _, left = _heading(np.array(yaw0))
        self.feet = []  # planted pose per side: (ankle x, ankle z, foot yaw)
        for side in range(2):
            pos = _SIGN[side] * style.foot_width * left
            self.feet.append((pos[0], pos[2], yaw0 - _SIGN[side] * style.toe_out))
        self.start_feet = list(self.feet)
        self.events = [[], []]  # per side: foot events (see add_foot_event), in time order
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
        fwd, left = _heading(self.yaw[t])
        off = self.root_off[t]
        pos = left * off[:, :1] + fwd * off[:, 2:]
        pos[:, 0] += self.root_xz[t, 0]
        pos[:, 2] += self.root_xz[t, 1]
        pos[:, 1] = self.h_stand + off[:, 1]
        return pos

    def hip_plan(self, t: np.ndarray, side: int) -> np.ndarray:
        """Planned hip positions (N, 3) of one side (pelvis pitch/roll ignored)."""
        t = np.asarray(t, dtype=np.int64)
        _, left = _heading(self.yaw[t])
        return self.pelvis_plan(t) + left * _HIP_OFFSET[side, 0]

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
        array[key] += _spline(key_t, key_v, self.frames[t0:stop])
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
        return np.array([x, _ANKLE_HEIGHT[side], z])

    def pivot_ankle(self, side: int, offset: float) -> np.ndarray:
        """Ankle position of the planted foot rolled by `offset` rad (see _pivot_ankle)."""
        x, z, yaw = self.feet[side]
        return _pivot_ankle(side, x, z, yaw, np.array([offset]))[0]

    def add_foot_event(self, side: int, t0: int, ankle: np.ndarray, yaw: np.ndarray, pitch: np.ndarray,
                       end_pose: tuple, heel_frames: int = 0, heel_angle: float = 0.0,
                       strike_frames: int = 0, strike_angle: float = 0.0, in_reach: str = "none") -> None:
        """Record a foot leaving the floor at frame t0 and touching down at t1 = t0+len(ankle)-1.

        ankle (n, 3) world ankle targets, yaw (n,), pitch (n,) offsets over the planted pitch;
        end_pose (x, z, yaw) the flat pose it ends in. Before t0 the foot pivots heel-up about
        its toe by heel_angle over heel_frames; after t1 it rolls from toe-up by strike_angle to
        flat about its heel over strike_frames. in_reach: the pelvis is lowered if needed so the
        leg reaches this swing's targets at "touchdown", at "both" toe-off and touchdown, or
        "none" (kicks, flights).
        """
        t1 = t0 + len(ankle) - 1
        self.check(t1 + strike_frames)
        events = self.events[side]
        if events and t0 - heel_frames <= events[-1]["t1"] + events[-1]["strike_frames"]:
            raise RuntimeError("internal: overlapping foot events")
        events.append(dict(t0=t0, t1=t1, ankle=ankle, yaw=yaw, pitch=pitch, heel_frames=heel_frames,
                           heel_angle=heel_angle, strike_frames=strike_frames, strike_angle=strike_angle,
                           in_reach=in_reach, end_pose=end_pose))
        self.feet[side] = end_pose
        self.t_feet = max(self.t_feet, t1 + strike_frames)

    def step(self, side: int, t0: int, t1: int, to_xz, to_yaw: float, lift: float,
             heel_angle: float = 0.0, heel_frames: int = 0, strike_angle: float = 0.0,
             strike_frames: int = 0, swing_pitch: float = 0.25, in_reach: str = "both") -> None:
        """A stepping foot: heel-off, a minimum-jerk swing from its planted pose to to_xz, and a
        heel strike that rolls the foot flat."""
        n = t1 - t0
        if self.events[side]:  # at low frame rates the stance may be too short for a full heel-off
            previous = self.events[side][-1]
            heel_frames = min(heel_frames, t0 - previous["t1"] - previous["strike_frames"] - 1)
        if heel_frames < 1:
            heel_angle, heel_frames = 0.0, 0
        yaw0 = self.feet[side][2]
        start = self.pivot_ankle(side, heel_angle)
        end = _pivot_ankle(side, to_xz[0], to_xz[1], to_yaw, np.array([-strike_angle]))[0]
        u = np.arange(n + 1) / n
        s = _minjerk(u)[:, None]
        ankle = start + (end - start) * s
        ankle[:, 1] += lift * self.style.lift * np.sin(np.pi * u ** 0.75) ** 2  # clears the floor early
        yaw = yaw0 + (to_yaw - yaw0) * s[:, 0]
        bump = np.sin(np.pi * u) ** 2
        pitch = heel_angle * (1 - s[:, 0]) - strike_angle * s[:, 0] + swing_pitch * bump * np.cos(np.pi * u)
        self.add_foot_event(side, t0, ankle, yaw, pitch, (to_xz[0], to_xz[1], to_yaw), heel_frames, heel_angle,
                            strike_frames if strike_angle > 0 else 0, strike_angle, in_reach=in_reach)


@dataclass
class SyntheticMotion:
    """One generated motion: joints (T, 22, 3) metres, its rotations and its stance schedule."""
    joints: np.ndarray  # (T, 22, 3) float64, y up, floor at y=0
    local_quats: np.ndarray  # (T, 22, 4) the rotations fed to utils.forward_kinematics
    root_pos: np.ndarray  # (T, 3) pelvis positions fed to utils.forward_kinematics
    planted: np.ndarray  # (T, 2, 2) bool: [frame, side (left, right), joint (ankle, toe)] fixed on the floor
    parts: list  # [(action, params dict), ...]
    captions: list  # caption strings
    fps: int


# ---------------------------------------------------------------------------------------
# Parameters of each action
# ---------------------------------------------------------------------------------------
_SIDES = ("left", "right")
_PARAM_SPACE = {  # every parameter of every action and its allowed values
    "walk": {"speed": ("slow", "normal", "fast"), "steps": range(2, 13), "turn": ("none", "left", "right"),
             "turn_angle": (0, 45, 90)},
    "jog": {"speed": ("slow", "normal"), "steps": range(2, 13)},
    "run": {"speed": ("normal", "fast"), "steps": range(2, 13)},
    "walk_backward": {"speed": ("slow", "normal"), "steps": range(2, 13)},
    "sidestep": {"direction": _SIDES, "steps": range(1, 7), "speed": ("slow", "normal", "fast")},
    "turn": {"direction": _SIDES, "angle": (90, 180), "speed": ("slow", "normal", "fast")},
    "spin": {"direction": _SIDES, "turns": (1, 2), "speed": ("normal", "fast")},
    "jump": {"height": ("low", "normal", "high"), "reps": range(1, 5)},
    "jump_forward": {"distance": ("short", "normal", "far"), "reps": range(1, 4)},
    "hop": {"leg": _SIDES, "reps": range(1, 7), "forward": (False, True)},
    "squat": {"depth": ("half", "deep"), "reps": range(1, 5), "speed": ("slow", "normal")},
    "sit_down": {"stand_up": (False, True), "speed": ("slow", "normal")},
    "bow": {"depth": ("slight", "deep"), "reps": range(1, 4)},
    "kick": {"leg": _SIDES, "height": ("low", "high"), "reps": range(1, 5)},
    "punch": {"hand": _SIDES + ("both",), "reps": range(1, 7), "speed": ("normal", "fast")},
    "wave": {"hand": _SIDES + ("both",), "reps": range(1, 7), "speed": ("slow", "normal", "fast")},
    "raise_arms": {"arms": _SIDES + ("both",), "direction": ("front", "side", "up"), "hold": ("short", "long")},
    "clap": {"reps": range(1, 9), "speed": ("slow", "normal", "fast")},
}


def check_params(action: str, params: dict) -> None:
    """Raise ValueError naming the first unknown action, parameter or value."""
    if action not in _PARAM_SPACE:
        raise ValueError(f"unknown action '{action}' (choose one of {', '.join(ACTIONS)})")
    for key, value in params.items():
        if key not in _PARAM_SPACE[action]:
            raise ValueError(f"action '{action}' has no parameter '{key}' (it has {', '.join(_PARAM_SPACE[action])})")
        if value not in _PARAM_SPACE[action][key]:
            allowed = _PARAM_SPACE[action][key]
            shown = f"{allowed.start}..{allowed.stop - 1}" if isinstance(allowed, range) else ", ".join(map(str, allowed))
            raise ValueError(f"action '{action}' parameter '{key}' must be one of {shown}, got {value!r}")


def sample_params(action: str, rng: np.random.Generator, short: bool = False) -> dict:
    """Random parameters of one action (JSON-safe); `short` prefers fewer repetitions/steps."""
    check_params(action, {})
    pick = lambda seq: seq[int(rng.integers(len(seq)))]  # noqa: E731
    reps = lambda lo, hi: int(rng.integers(lo, (hi if not short else max(lo, hi - 1)) + 1))  # noqa: E731
    side = pick(["left", "right"])
    if action == "walk":
        turn = pick(["none", "none", "left", "right"])
        return dict(speed=pick(["slow", "normal", "normal", "fast"]), steps=reps(3, 9 if not short else 5),
                    turn=turn, turn_angle=int(pick([45, 90])) if turn != "none" else 0)
    if action == "jog":
        return dict(speed=pick(["slow", "normal"]), steps=reps(4, 10 if not short else 6))
    if action == "run":
        return dict(speed=pick(["normal", "fast"]), steps=reps(4, 10 if not short else 6))
    if action == "walk_backward":
        return dict(speed=pick(["slow", "normal"]), steps=reps(3, 7 if not short else 4))
    if action == "sidestep":
        return dict(direction=side, steps=reps(2, 4 if not short else 3), speed=pick(["slow", "normal", "fast"]))
    if action == "turn":
        return dict(direction=side, angle=int(pick([90, 90, 180])), speed=pick(["slow", "normal", "fast"]))
    if action == "spin":
        return dict(direction=side, turns=int(pick([1, 1, 2])) if not short else 1, speed=pick(["normal", "fast"]))
    if action == "jump":
        return dict(height=pick(["low", "normal", "high"]), reps=reps(1, 3))
    if action == "jump_forward":
        return dict(distance=pick(["short", "normal", "far"]), reps=reps(1, 2))
    if action == "hop":
        return dict(leg=side, reps=reps(2, 5 if not short else 3), forward=bool(rng.random() < 0.4))
    if action == "squat":
        return dict(depth=pick(["half", "deep"]), reps=reps(1, 3), speed=pick(["slow", "normal"]))
    if action == "sit_down":
        return dict(stand_up=bool(rng.random() < 0.5), speed=pick(["slow", "normal"]))
    if action == "bow":
        return dict(depth=pick(["slight", "deep"]), reps=reps(1, 2))
    if action == "kick":
        return dict(leg=side, height=pick(["low", "high"]), reps=reps(1, 3))
    if action == "punch":
        return dict(hand=pick(["left", "right", "both"]), reps=reps(1, 4), speed=pick(["normal", "fast"]))
    if action == "wave":
        return dict(hand=pick(["left", "right", "right", "both"]), reps=reps(2, 5), speed=pick(["slow", "normal", "fast"]))
    if action == "raise_arms":
        return dict(arms=pick(["left", "right", "both"]), direction=pick(["front", "side", "up"]),
                    hold=pick(["short", "long"]))
    return dict(reps=reps(2, 6), speed=pick(["slow", "normal", "fast"]))  # clap


# ---------------------------------------------------------------------------------------
# Actions: each writes its channels from frame t0 on and returns its end frame
# ---------------------------------------------------------------------------------------
_GAITS = {  # speed m/s, step period s, swing/step, heel-off rad, lift m, bob m, arm swing rad, lean rad
    ("walk", "slow"): (0.85, 0.60, 0.78, 0.85, 0.07, 0.012, 0.22, 0.02),
    ("walk", "normal"): (1.25, 0.53, 0.80, 1.00, 0.08, 0.018, 0.32, 0.04),
    ("walk", "fast"): (1.65, 0.46, 0.82, 1.05, 0.09, 0.020, 0.45, 0.08),
    ("jog", "slow"): (1.90, 0.38, 1.12, 0.85, 0.14, 0.025, 0.45, 0.10),
    ("jog", "normal"): (2.30, 0.36, 1.15, 0.90, 0.16, 0.030, 0.50, 0.12),
    ("run", "normal"): (3.00, 0.33, 1.25, 0.95, 0.24, 0.035, 0.65, 0.16),
    ("run", "fast"): (3.50, 0.31, 1.30, 1.00, 0.28, 0.040, 0.80, 0.22),
    ("walk_backward", "slow"): (-0.60, 0.64, 0.75, 0.0, 0.05, 0.008, 0.12, -0.02),
    ("walk_backward", "normal"): (-0.80, 0.58, 0.75, 0.0, 0.06, 0.010, 0.15, -0.02),
}


def _act_locomotion(tl: _Timeline, rng, action: str, p: dict, t0: int) -> int:
    """Walk / jog / run / walk backwards: alternating steps, feet placed under the pelvis path."""
    speed, period, swing_frac, heel, lift, bob, swing, lean = _GAITS[(action, p["speed"])]
    flight = swing_frac > 1.0  # both feet leave the floor between steps (jog, run)
    place = 0.40 if not flight else 0.45  # where in its stance the pelvis passes over the foot
    jitter = rng.uniform(0.93, 1.07)
    speed *= jitter
    fps = tl.fps
    ts = period * fps * tl.style.tempo ** 0.5  # step period in frames
    tsw = swing_frac * ts
    n_steps = int(p["steps"])
    first = int(rng.integers(2))
    t_lift = t0 + 0.3 * fps + ts * np.arange(n_steps)
    t_land = t_lift + tsw
    t_stop = t_land[-1] + 0.25 * ts
    tl.check(t_stop + fps)
    t = tl.frames
    # Pelvis speed: ramp up from the first step, cruise, ramp down into the last steps; faster
    # gaits take more steps to reach speed and to stop.
    ramp = (1.2 + 0.45 * abs(speed)) * ts
    up = _ramp(t, t_lift[0] - 0.35 * ts, ramp)
    down = 1.0 - _ramp(t, t_land[-1] + 0.2 * ts - ramp, ramp)
    rate = speed / fps * up * down  # metres per frame
    rate[: t0] = 0.0
    yaw0 = tl.heading_at(t0)
    turn = {"none": 0.0, "left": 1.0, "right": -1.0}[p.get("turn", "none")] * math.radians(p.get("turn_angle", 0))
    mid0, mid1 = t_lift[0] + 0.3 * (t_stop - t_lift[0]), t_lift[0] + 0.8 * (t_stop - t_lift[0])
    yaw = yaw0 + turn * _ramp(t, mid0, mid1 - mid0)
    fwd, left = _heading(yaw)
    step_xz = rate[:, None] * fwd[:, [0, 2]]
    xz = tl.root_xz[t0] + np.concatenate([np.zeros((1, 2)), np.cumsum(step_xz[t0:-1], 0)])
    stop = int(math.ceil(t_stop)) + 1
    tl.root_xz[t0:] = xz[: tl.n - t0]
    tl.yaw[t0:] = yaw[t0:]
    tl.hold_from(stop)
    # Feet: each step lands where the pelvis will be `place` into that foot's next stance; heel
    # strike and push-off rock the foot about its heel and toe so the legs reach the floor
    # with the pelvis only a little lower than when standing.
    tf_lift = np.round(t_lift).astype(int)
    tf_land = np.round(t_land).astype(int)
    stance = int(round(2 * ts - tsw))  # frames each foot is down between two swings
    strike = 0.0 if speed < 0 else (0.32 if not flight else 0.12)
    strike_frames = max(1, min(int(round((0.18 if not flight else 0.1) * ts)), stance - 2))
    heel_frames = max(1, min(int(round((0.4 if not flight else 0.3) * ts)), stance - strike_frames - 1))
    toe_out = tl.style.toe_out
    for k in range(n_steps):
        side = (first + k) % 2
        next_lift = t_lift[k] + 2 * ts  # the same foot's next lift, had the gait gone on
        t_mid = int(min(round(t_land[k] + place * (next_lift - t_land[k])), stop))
        pos = tl.root_xz[t_mid] + _SIGN[side] * tl.style.foot_width * left[t_mid, [0, 2]]
        h_angle = heel * (0.6 if k < 1 else 1.0) if heel > 0 else 0.0
        tl.step(side, int(tf_lift[k]), int(tf_land[k]), pos, yaw[t_mid] - _SIGN[side] * toe_out,
                lift, h_angle, heel_frames, strike if k < n_steps - 2 else 0.5 * strike, strike_frames,
                in_reach="none" if flight else "both")
    # Body: bob, sway, pelvis rotation, arm swing, lean; all scaled by the speed ramp.
    env = (up * down)[t0:stop + int(0.4 * fps)]
    tt = t[t0:t0 + len(env)]
    psi = (tt - t_lift[0]) / ts  # gait phase in steps
    c = swing_frac / 2.0
    bob_phase = (psi - c - 0.5) if flight else (psi - c)
    off = np.zeros((len(env), 3))
    off[:, 1] = env * bob * (np.cos(2 * np.pi * bob_phase) - (1.0 if not flight else 0.0))
    sway = 0.025 if not flight else 0.012
    stance_sign = -_SIGN[first]
    off[:, 0] = env * sway * stance_sign * np.cos(np.pi * (psi - c))
    tl.add_curve("root_off", None, t0, off)
    tl.add_curve("pelvis_rot", 1, t0, -off[:, 0])  # the pelvis dips toward the swinging leg
    # The pelvis turns with the swinging leg and the chest turns against it.
    twist = env * 0.07 * _SIGN[first] * np.sin(np.pi * (psi - c))
    tl.add_curve("spine", 2, t0, -1.3 * twist)
    tl.yaw[t0:t0 + len(env)] += twist
    tl.add_curve("spine", 0, t0, env * lean)
    tl.add_curve("pelvis_rot", 0, t0, env * lean * 0.5)
    arm = tl.style.arm_swing * swing * env * np.cos(np.pi * (psi - swing_frac))
    contra = 1 - first
    arm_curve = np.zeros((len(env), 2))
    arm_curve[:, contra] = arm
    arm_curve[:, first] = -arm
    tl.add_curve("arm", (slice(None), 0), t0, arm_curve)
    if action in ("jog", "run"):
        bend = np.zeros((len(env), 2, 3))
        bend[:, :, 0] = 0.35 * env[:, None]  # forearms carried up
        bend[:, :, 2] = -0.35 * env[:, None]  # elbows bent
        bend[:, :, 1] = -0.15 * env[:, None]
        tl.add_curve("arm", None, t0, bend)
    return stop


def _act_sidestep(tl: _Timeline, rng, p: dict, t0: int) -> int:
    """Step-together sidesteps: the leading foot steps out, the other closes."""
    fps = tl.fps
    lead = 0 if p["direction"] == "left" else 1
    period = {"slow": 0.70, "normal": 0.55, "fast": 0.42}[p["speed"]] * fps * tl.style.tempo ** 0.5
    n_pairs = int(p["steps"])
    width = rng.uniform(0.22, 0.34)
    tsw = 0.72 * period
    yaw = tl.heading_at(t0)
    _, left = _heading(np.array(yaw))
    direction = _SIGN[lead] * left[[0, 2]]
    start_lift = t0 + 0.25 * fps
    t_end = start_lift + (2 * n_pairs - 1) * period + tsw
    tl.check(t_end + fps)
    for k in range(2 * n_pairs):
        side = lead if k % 2 == 0 else 1 - lead
        a = int(round(start_lift + k * period))
        b = int(round(start_lift + k * period + tsw))
        x, z, fyaw = tl.feet[side]
        to = np.array([x, z]) + width * direction
        tl.step(side, a, b, to, fyaw, 0.05)
    t = tl.frames
    t_a, t_b = start_lift - 0.15 * fps, t_end + 0.1 * fps
    shift = width * n_pairs * _ramp(t, t_a, t_b - t_a)
    stop = int(math.ceil(t_b)) + 1
    tl.root_xz[t0:] = tl.root_xz[t0] + shift[t0:, None] * direction[None]
    tl.hold_from(stop)
    env = _envelope(t[t0:stop + 1], t_a, t_b, 0.3 * fps, 0.3 * fps)
    osc = np.sin(np.pi * (t[t0:stop + 1] - start_lift) / period)
    tl.add_curve("root_off", 1, t0, env * 0.012 * (np.abs(osc) - 1))
    side_arm = np.zeros((len(env), 2))
    side_arm[:, :] = (env * 0.12)[:, None]
    tl.add_curve("arm", (slice(None), 1), t0, side_arm)
    return stop


def _act_turn(tl: _Timeline, p: dict, t0: int, spin: bool = False) -> int:
    """Turning (or spinning) in place: stepping around while the heading rotates."""
    fps = tl.fps
    sign = 1.0 if p["direction"] == "left" else -1.0
    angle = math.radians(p["angle"]) if not spin else 2 * math.pi * p["turns"]
    if spin:
        period = {"normal": 0.34, "fast": 0.28}[p["speed"]]
        per_step = math.radians(110)
    else:
        period = {"slow": 0.65, "normal": 0.50, "fast": 0.40}[p["speed"]]
        per_step = math.radians(95)
    period *= fps * tl.style.tempo ** 0.5
    per_foot = int(math.ceil(angle / per_step - 1e-9))
    n_steps = 2 * per_foot
    tsw = 0.75 * period
    lead = 0 if sign > 0 else 1
    start_lift = t0 + 0.2 * fps
    t_lift = start_lift + period * np.arange(n_steps)
    t_land = t_lift + tsw
    tl.check(t_land[-1] + fps)
    t = tl.frames
    yaw0 = tl.heading_at(t0)
    t_a, t_b = t_lift[0] - 0.1 * fps, t_land[-1]
    yaw = yaw0 + sign * angle * _ramp(t, t_a, t_b - t_a)
    stop = int(math.ceil(t_b)) + 1
    tl.yaw[t0:] = yaw[t0:]
    tl.hold_from(stop)
    center = tl.root_xz[t0].copy()
    for k in range(n_steps):
        side = (lead + k) % 2
        t_target = int(min(round(t_land[k] + 0.6 * period), stop))
        _, left = _heading(np.array(yaw[t_target]))
        pos = center + _SIGN[side] * tl.style.foot_width * left[[0, 2]]
        tl.step(side, int(round(t_lift[k])), int(round(t_land[k])), pos,
                yaw[t_target] - _SIGN[side] * tl.style.toe_out, 0.05 if not spin else 0.06)
    tt = t[t0:stop + int(0.3 * fps)]
    env = _envelope(tt, t_a, t_b + 0.2 * fps, 0.3 * fps, 0.35 * fps)
    tl.add_curve("root_off", 1, t0, -0.02 * env)
    tl.add_curve("spine", 2, t0, 0.12 * sign * env)
    tl.add_curve("neck", 1, t0, 0.2 * sign * env)
    if spin:
        arms = np.zeros((len(env), 2, 3))
        arms[:, :, 0] = 0.9 * env[:, None]
        arms[:, :, 1] = 0.9 * env[:, None]
        tl.add_curve("arm", None, t0, arms)
    return stop


def _jump_heights(tl: _Timeline, height: float) -> tuple[float, int]:
    """Take-off speed (m/s) and flight frames for a jump whose pelvis rises `height` metres,
    with the flight time rounded to whole frames."""
    v0 = math.sqrt(2 * _GRAVITY * height)
    n_flight = max(3, int(round(2 * v0 / _GRAVITY * tl.fps)))
    return _GRAVITY * n_flight / (2 * tl.fps), n_flight


def _act_jump(tl: _Timeline, rng, p: dict, t0: int, forward: bool = False,
              one_leg: Optional[int] = None) -> int:
    """Jumps with both feet (in place or forward), or hops on one leg (one_leg = stance side).

    Crouch, push (heels rise about the toes), ballistic flight, landing absorbed by the knees.
    """
    fps = tl.fps
    if one_leg is None:
        n_jumps = int(p["reps"])
        if forward:
            height = {"short": 0.14, "normal": 0.2, "far": 0.26}[p["distance"]] * rng.uniform(0.9, 1.1)
            distance = {"short": 0.45, "normal": 0.75, "far": 1.05}[p["distance"]] * rng.uniform(0.9, 1.1)
        else:
            height = {"low": 0.15, "normal": 0.24, "high": 0.36}[p["height"]] * rng.uniform(0.9, 1.1)
            distance = 0.0
        crouch = 0.12 + 0.5 * height
        sides = [0, 1]
    else:
        n_jumps = int(p["reps"])
        height = rng.uniform(0.09, 0.13)
        distance = rng.uniform(0.18, 0.3) if p["forward"] else 0.0
        crouch = 0.07
        sides = [one_leg]
    v0, n_flight = _jump_heights(tl, height)
    n_crouch = tl.frames_of(0.45 if one_leg is None else 0.3)
    n_push = max(3, int(round(0.2 * fps)))
    n_absorb = max(3, int(round(0.2 * fps)))
    n_recover = tl.frames_of(0.45)
    dy_to = -0.015
    # Vertical pelvis offset, piece by piece (each piece drops its first sample).
    dy = [np.array([0.0])]
    dy.append(_hermite(0.0, 0.0, -crouch, 0.0, n_crouch)[1:])
    takeoffs, landings = [], []
    for j in range(n_jumps):
        dy.append(_hermite(dy[-1][-1], 0.0, dy_to, v0 / fps, n_push)[1:])
        takeoffs.append(t0 + sum(len(a) for a in dy) - 1)
        tf = np.arange(1, n_flight + 1) / fps
        dy.append(dy_to + v0 * tf - 0.5 * _GRAVITY * tf ** 2)
        landings.append(t0 + sum(len(a) for a in dy) - 1)
        last = j == n_jumps - 1
        dy.append(_hermite(dy_to, -v0 / fps, -crouch * (0.8 if last else 1.0), 0.0, n_absorb)[1:])
    dy.append(_hermite(dy[-1][-1], 0.0, 0.0, 0.0, n_recover)[1:])
    dy = np.concatenate(dy)
    stop = t0 + len(dy) - 1
    tl.check(stop + fps)
    tl.add_curve("root_off", 1, t0, dy)
    t = tl.frames
    fwd, _ = _heading(np.array(tl.heading_at(t0)))
    # Horizontal pelvis path (forward jumps): lean back in the crouch, fly at constant speed.
    if distance > 0:
        xz = tl.root_xz[t0].copy()
        path = np.zeros(len(dy))
        pos = 0.0
        prev_end = 0
        for j in range(n_jumps):
            a, b = takeoffs[j] - t0, landings[j] - t0
            vx = distance / (n_flight + 0.8 * (n_push + n_absorb))  # metres per frame in flight
            s_to = pos + 0.1 * distance
            path[prev_end:a + 1] = _hermite(pos, 0.0, s_to, vx, a - prev_end)
            path[a:b + 1] = s_to + vx * np.arange(b - a + 1)
            end_j = b + n_absorb if j < n_jumps - 1 else len(dy) - 1
            target = pos + distance
            path[b:end_j + 1] = _hermite(path[b], vx, target, 0.0, end_j - b)
            pos, prev_end = target, end_j
        path[prev_end:] = pos
        tl.root_xz[t0:t0 + len(path)] = xz + path[:, None] * fwd[[0, 2]]
        tl.root_xz[t0 + len(path):] = tl.root_xz[t0 + len(path) - 1]
    # Feet: a heel-off during the push, then a flight that follows the pelvis.
    heel = 0.7 if one_leg is None else 0.5
    for j in range(n_jumps):
        a, b = takeoffs[j], landings[j]
        u = np.arange(b - a + 1) / (b - a)
        rise = dy[a - t0:b - t0 + 1] - dy_to
        tuck = (0.10 if one_leg is None else 0.06) * np.sin(np.pi * u) ** 2
        for side in sides:
            x, z, fyaw = tl.feet[side]
            start = tl.pivot_ankle(side, heel)
            end = np.array([x, _ANKLE_HEIGHT[side], z]) + distance * fwd
            s = _minjerk(u)[:, None]
            ankle = start + (end - start) * s
            ankle[:, 1] += rise + tuck
            pitch = heel * (1 - s[:, 0]) + 0.2 * np.sin(np.pi * u) ** 2
            tl.add_foot_event(side, a, ankle, np.full(len(u), fyaw), pitch,
                              (end[0], end[2], fyaw), heel_frames=max(1, n_push - 1), heel_angle=heel)
    # Upper body: lean into the crouch, arms swing back then up through the flight.
    keys_t, bend, arm_e = [t0], [0.0], [0.0]
    for j in range(n_jumps):
        bottom = takeoffs[j] - n_push
        keys_t += [bottom, takeoffs[j] + 1, landings[j] + max(1, n_absorb // 2)]
        bend += [0.45, 0.02, 0.3]
        arm_e += [-0.7, 1.5 if height > 0.3 else 1.0, -0.2]
    keys_t.append(stop)
    bend.append(0.0)
    arm_e.append(0.0)
    keys_t = np.maximum.accumulate(np.array(keys_t, dtype=np.float64) + np.arange(len(keys_t)) * 1e-3)
    scale = 1.0 if one_leg is None else 0.4
    tl.add_keys("spine", 0, keys_t, scale * np.array(bend) * 0.6)
    tl.add_keys("pelvis_rot", 0, keys_t, scale * np.array(bend) * 0.5)
    arm_vals = np.repeat(np.array(arm_e)[:, None], 2, axis=1) * scale
    tl.add_keys("arm", (slice(None), 0), keys_t, arm_vals)
    if one_leg is not None:
        _hold_free_leg(tl, 1 - one_leg, t0, stop, takeoffs[0] - n_push, landings[-1] + n_absorb)
        lean = _envelope(t[t0:stop + 1], t0, stop, 0.35 * fps, 0.35 * fps)
        tl.add_curve("root_off", 0, t0, -_SIGN[1 - one_leg] * 0.07 * lean)
        tl.add_curve("pelvis_rot", 1, t0, _SIGN[1 - one_leg] * 0.05 * lean)
        arms = np.zeros((len(lean), 2, 3))
        arms[:, :, 0] = 0.35 * lean[:, None]
        arms[:, :, 1] = 0.6 * lean[:, None]
        tl.add_curve("arm", None, t0, arms)
    return stop


def _hold_free_leg(tl: _Timeline, side: int, t0: int, t1: int, t_up: int, t_down: int) -> None:
    """Lift one foot off the floor (knee bent, foot behind) for a one-legged action and put it
    back down at the end, where the body has moved to."""
    fps = tl.fps
    lift_start = t0 + max(2, int(0.25 * fps))
    lift_end = max(lift_start + 3, min(t_up, lift_start + int(0.35 * fps)))
    drop_end = t1 - max(2, int(0.15 * fps))
    drop_start = min(max(t_down, lift_end + 1), drop_end - 3)
    frames = np.arange(lift_start, drop_end + 1)
    hips = tl.hip_plan(frames, side)
    fwd, left = _heading(tl.yaw[frames])
    held = hips + (-0.22) * fwd - 0.50 * np.array([0.0, 1.0, 0.0]) + 0.02 * _SIGN[side] * left
    start = tl.planted_ankle(side)
    yaw_end = tl.feet[side][2]
    # The foot goes back down beside the other one (which may have hopped forward).
    other = tl.feet[1 - side]
    _, left_end = _heading(np.array(tl.heading_at(t1)))
    end_xz = np.array([other[0], other[1]]) + 2 * _SIGN[side] * tl.style.foot_width * left_end[[0, 2]]
    end = np.array([end_xz[0], _ANKLE_HEIGHT[side], end_xz[1]])
    up = _ramp(frames.astype(float), lift_start, lift_end - lift_start)
    down = _ramp(frames.astype(float), drop_start, drop_end - drop_start)
    ankle = start * (1 - up)[:, None] + held * up[:, None]
    ankle = ankle * (1 - down)[:, None] + end * down[:, None]
    pitch = 0.5 * up * (1 - down)
    yaw = yaw_end * (1 - down) + tl.heading_at(t1) * down - _SIGN[side] * tl.style.toe_out * down
    tl.add_foot_event(side, lift_start, ankle, yaw, pitch, (end[0], end[2], float(yaw[-1])))


def _act_hop(tl: _Timeline, rng, p: dict, t0: int) -> int:
    """Hops on one leg, the other held up behind."""
    stance = 0 if p["leg"] == "left" else 1
    return _act_jump(tl, rng, p, t0, one_leg=stance)


def _act_squat(tl: _Timeline, rng, p: dict, t0: int) -> int:
    """Squats: hips down and back, chest leaning forward, arms forward for balance."""
    fps = tl.fps
    depth = {"half": 0.22, "deep": 0.40}[p["depth"]] * rng.uniform(0.9, 1.1)
    down = tl.frames_of({"slow": 1.1, "normal": 0.7}[p["speed"]])
    hold = tl.frames_of(rng.uniform(0.15, 0.4))
    keys_t, level = [t0], [0.0]
    t = t0
    for _ in range(int(p["reps"])):
        keys_t += [t + down, t + down + hold, t + 2 * down + hold]
        level += [1.0, 1.0, 0.0]
        t += 2 * down + hold + tl.frames_of(0.15)
    stop = int(keys_t[-1])
    tl.check(stop + fps)
    level = np.array(level)
    kt = np.array(keys_t, dtype=np.float64)
    tl.add_keys("root_off", 1, kt, -depth * level)
    tl.add_keys("root_off", 2, kt, -0.35 * depth * level)
    tl.add_keys("pelvis_rot", 0, kt, 0.45 * (depth / 0.4) * level)
    tl.add_keys("spine", 0, kt, 0.25 * (depth / 0.4) * level)
    tl.add_keys("neck", 0, kt, -0.3 * (depth / 0.4) * level)
    arms = np.zeros((len(level), 2, 3))
    arms[:, :, 0] = (1.4 * level)[:, None]
    arms[:, :, 1] = -0.2 * level[:, None]
    arms[:, :, 2] = 0.04 * level[:, None]
    tl.add_keys("arm", None, kt, arms)
    return stop


def _act_sit(tl: _Timeline, rng, p: dict, t0: int) -> int:
    """Sitting down as onto a chair (no chair), and optionally standing back up."""
    fps = tl.fps
    seat = rng.uniform(0.44, 0.50)
    drop = tl.h_stand - seat
    down = tl.frames_of({"slow": 1.6, "normal": 1.1}[p["speed"]])
    sit_hold = tl.frames_of(rng.uniform(0.8, 1.5))
    kt = [t0, t0 + 0.5 * down, t0 + down, t0 + down + 0.4 * fps]
    lvl = [0.0, 0.55, 1.0, 1.0]
    lean = [0.0, 0.55, 0.3, 0.06]
    hold_end = not p["stand_up"]
    if p["stand_up"]:
        t_up = kt[-1] + sit_hold
        kt += [t_up, t_up + 0.45 * down, t_up + down]
        lvl += [1.0, 0.5, 0.0]
        lean += [0.1, 0.6, 0.0]
    stop = int(math.ceil(kt[-1]))
    tl.check(stop + fps)
    kt = np.array(kt)
    lvl, lean = np.array(lvl), np.array(lean)
    tl.add_keys("root_off", 1, kt, -drop * lvl, hold=hold_end)
    tl.add_keys("root_off", 2, kt, -0.30 * lvl, hold=hold_end)
    tl.add_keys("pelvis_rot", 0, kt, 0.9 * lean, hold=hold_end)
    tl.add_keys("spine", 0, kt, 0.5 * lean, hold=hold_end)
    tl.add_keys("neck", 0, kt, -0.4 * lean, hold=hold_end)
    arms = np.zeros((len(kt), 2, 3))
    arms[:, :, 0] = (0.9 * lean + 0.55 * lvl)[:, None]
    arms[:, :, 1] = -0.25 * lvl[:, None]
    arms[:, :, 2] = -0.05 * lvl[:, None]
    tl.add_keys("arm", None, kt, arms, hold=hold_end)
    return stop


def _act_bow(tl: _Timeline, rng, p: dict, t0: int) -> int:
    """Bows: bending at the hips and spine with the arms hanging, then back up."""
    fps = tl.fps
    angle = {"slight": 0.45, "deep": 0.95}[p["depth"]] * rng.uniform(0.9, 1.1)
    down = tl.frames_of(0.6 + 0.4 * angle)
    hold = tl.frames_of(rng.uniform(0.3, 0.8))
    kt, lvl = [t0], [0.0]
    t = t0
    for _ in range(int(p["reps"])):
        kt += [t + down, t + down + hold, t + 2 * down + hold]
        lvl += [1.0, 1.0, 0.0]
        t += 2 * down + hold + tl.frames_of(0.2)
    stop = int(kt[-1])
    tl.check(stop + fps)
    kt, lvl = np.array(kt, dtype=np.float64), np.array(lvl)
    tl.add_keys("pelvis_rot", 0, kt, 0.45 * angle * lvl)
    tl.add_keys("spine", 0, kt, 0.55 * angle * lvl)
    tl.add_keys("neck", 0, kt, 0.25 * lvl)
    tl.add_keys("root_off", 2, kt, -0.10 * angle * lvl)
    tl.add_keys("root_off", 1, kt, -0.02 * angle * lvl)
    arms = np.zeros((len(kt), 2, 3))
    arms[:, :, 0] = (angle * 0.85 * lvl)[:, None]  # the arms keep hanging down
    tl.add_keys("arm", None, kt, arms)
    return stop


def _act_kick(tl: _Timeline, rng, p: dict, t0: int) -> int:
    """Front kicks: chamber (knee up), snap the foot forward and up, retract, put it back."""
    fps = tl.fps
    side = 0 if p["leg"] == "left" else 1
    strike = {"low": 0.9, "high": 1.7}[p["height"]] * rng.uniform(0.95, 1.05)  # thigh angle, rad
    n_kick = tl.frames_of(1.0 if p["height"] == "low" else 1.15)
    gap = tl.frames_of(0.35)
    shift = tl.frames_of(0.35)
    kicks = [t0 + shift + k * (n_kick + gap) for k in range(int(p["reps"]))]
    stop = kicks[-1] + n_kick + shift
    tl.check(stop + fps)
    l1, l2 = _L_THIGH[side], _L_SHIN[side]
    for a in kicks:
        b = a + n_kick
        frames = np.arange(a, b + 1)
        hips = tl.hip_plan(frames, side)
        fwd, left = _heading(tl.yaw[frames])
        start = tl.planted_ankle(side)
        rel = start - hips[0]
        f0, up0 = (rel * fwd[0]).sum(), rel[1]
        lat = (rel * left[0]).sum()
        dist0 = math.hypot(f0, up0)
        cos_k = np.clip((l1 ** 2 + l2 ** 2 - dist0 ** 2) / (2 * l1 * l2), -1, 1)
        knee0 = math.pi - math.acos(cos_k)
        theta0 = math.atan2(f0, -up0) + math.asin(np.clip(l2 * math.sin(knee0) / dist0, -1, 1))
        # Keys: planted, chamber (knee up, shin folded), strike (leg straight), hold, retract, planted.
        key_u = np.array([0.0, 0.3, 0.52, 0.62, 0.8, 1.0]) * n_kick
        theta = np.array([theta0, 0.675 * strike, strike, strike, 0.55, theta0])  # thigh angle from down
        knee = np.array([knee0, 1.9, 0.12, 0.12, 1.5, knee0])  # knee flexion
        u = frames - a
        th, kn = _spline(key_u, theta, u), _spline(key_u, knee, u)
        fwd_c = l1 * np.sin(th) + l2 * np.sin(th - kn)
        up_c = -l1 * np.cos(th) - l2 * np.cos(th - kn)
        ankle = hips + fwd * fwd_c[:, None] + left * lat + np.array([0.0, 1.0, 0.0]) * up_c[:, None]
        ankle[0], ankle[-1] = start, start
        env = np.sin(np.pi * u / n_kick) ** 2
        x, z, fyaw = tl.feet[side]
        tl.add_foot_event(side, a, ankle, np.full(len(u), fyaw), 0.6 * env, (x, z, fyaw))
    t = tl.frames
    lean = _envelope(t[t0:stop + 1], t0, stop, shift, shift)
    tl.add_curve("root_off", 0, t0, -_SIGN[side] * 0.06 * lean)
    tl.add_curve("pelvis_rot", 0, t0, -0.12 * lean)
    tl.add_curve("spine", 0, t0, -0.08 * lean)
    tl.add_curve("pelvis_rot", 1, t0, _SIGN[side] * 0.04 * lean)
    arms = np.zeros((len(lean), 2, 3))
    arms[:, :, 0] = 0.5 * lean[:, None]
    arms[:, :, 1] = 0.5 * lean[:, None]
    arms[:, :, 2] = -0.2 * lean[:, None]
    tl.add_curve("arm", None, t0, arms)
    return stop


def _guard_pose(rng) -> np.ndarray:
    """Arm channel offsets (elevation, azimuth, reach) over neutral for a boxing guard."""
    return np.array([1.55, -0.55, -0.45]) + rng.uniform(-0.05, 0.05, 3)


def _act_punch(tl: _Timeline, rng, p: dict, t0: int) -> int:
    """Straight punches from a guard, the chest turning into each one."""
    fps = tl.fps
    hands = {"left": [0], "right": [1], "both": [0, 1]}[p["hand"]]
    n_in = tl.frames_of(0.4)
    strike = max(3, int(round({"normal": 0.22, "fast": 0.16}[p["speed"]] * fps)))
    back = max(3, int(round({"normal": 0.3, "fast": 0.22}[p["speed"]] * fps)))
    gap = tl.frames_of({"normal": 0.25, "fast": 0.08}[p["speed"]])
    t_first = t0 + n_in
    n = int(p["reps"])
    t_last = t_first + n * (strike + back + gap)
    stop = t_last + n_in
    tl.check(stop + fps)
    guard = _guard_pose(rng)
    for side in range(2):
        tl.add_keys("arm", side, [t0, t_first, t_last, stop], np.outer([0, 1, 1, 0], guard))
    extend = np.array([-0.05, 0.45, 1.43])  # from guard to a straight arm at shoulder height
    twist = []
    for k in range(n):
        side = hands[k % len(hands)]
        a = t_first + k * (strike + back + gap)
        tl.add_keys("arm", side, [a, a + strike, a + strike + back],
                    np.outer([0, 1, 0], extend))
        twist.append((a, a + strike, a + strike + back, -_SIGN[side]))
    for a, b, c, sgn in twist:
        tl.add_keys("spine", 2, [a, b, c], [0.0, 0.3 * sgn, 0.0])
    t = tl.frames
    stance = _envelope(t[t0:stop + 1], t0, stop, n_in, n_in)
    tl.add_curve("root_off", 1, t0, -0.04 * stance)
    tl.add_curve("spine", 0, t0, 0.08 * stance)
    return stop


def _act_wave(tl: _Timeline, rng, p: dict, t0: int) -> int:
    """Waves: the hand raised above the shoulder, the forearm swinging side to side."""
    fps = tl.fps
    hands = {"left": [0], "right": [1], "both": [0, 1]}[p["hand"]]
    freq = {"slow": 1.1, "normal": 1.6, "fast": 2.3}[p["speed"]] * rng.uniform(0.9, 1.1)
    n_up = tl.frames_of(0.5)
    n_wave = int(round(p["reps"] / freq * fps))
    stop = t0 + 2 * n_up + n_wave
    tl.check(stop + fps)
    t = tl.frames[t0:stop + 1]
    raise_env = _envelope(t, t0, stop, n_up, n_up)
    wave_env = _envelope(t, t0 + 0.6 * n_up, stop - 0.6 * n_up, 0.4 * n_up, 0.4 * n_up)
    osc = np.sin(2 * np.pi * freq * (t - t0 - n_up) / fps)
    pose = np.array([2.35, 1.15, -0.25]) + rng.uniform(-0.06, 0.06, 3)
    for side in hands:
        values = np.outer(raise_env, pose)
        values[:, 0] += 0.22 * wave_env * osc
        values[:, 1] -= 0.28 * wave_env * osc
        tl.add_curve("arm", side, t0, values)
        tl.add_curve("elbow", side, t0, np.outer(raise_env, np.array([0.6, 0.0, 0.0])))
    if len(hands) == 1:
        tl.add_curve("spine", 1, t0, -_SIGN[hands[0]] * 0.05 * raise_env)
        tl.add_curve("neck", 1, t0, _SIGN[hands[0]] * 0.15 * raise_env)
    return stop


_RAISE_POSES = {  # arm channel offsets over neutral (elevation, azimuth, reach) and elbow hint offsets
    "front": (np.array([1.50, -0.20, 0.05]), np.array([0.0, 0.0, 0.0])),
    "side": (np.array([1.48, 1.30, 0.05]), np.array([0.0, 0.0, -0.5])),
    "up": (np.array([2.85, 0.15, 0.05]), np.array([0.5, 0.0, 0.0])),
}


def _act_raise(tl: _Timeline, rng, p: dict, t0: int) -> int:
    """Raising one or both straight arms to the front, the side or overhead, holding, lowering."""
    fps = tl.fps
    sides = {"left": [0], "right": [1], "both": [0, 1]}[p["arms"]]
    n_up = tl.frames_of(0.7)
    hold = tl.frames_of({"short": 0.4, "long": 1.4}[p["hold"]] * rng.uniform(0.8, 1.2))
    kt = [t0, t0 + n_up, t0 + n_up + hold, t0 + 2 * n_up + hold]
    stop = kt[-1]
    tl.check(stop + fps)
    pose, hint = _RAISE_POSES[p["direction"]]
    pose = pose + rng.uniform(-0.06, 0.06, 3) * np.array([1, 1, 0])
    for side in sides:
        tl.add_keys("arm", side, kt, np.outer([0, 1, 1, 0], pose))
        tl.add_keys("elbow", side, kt, np.outer([0, 1, 1, 0], hint))
    if p["direction"] == "up":
        tl.add_keys("neck", 0, kt, [0.0, -0.2, -0.2, 0.0])
    return stop


def _act_clap(tl: _Timeline, rng, p: dict, t0: int) -> int:
    """Claps in front of the chest."""
    fps = tl.fps
    freq = {"slow": 1.3, "normal": 2.0, "fast": 2.8}[p["speed"]] * rng.uniform(0.9, 1.1)
    n_in = tl.frames_of(0.45)
    n_clap = int(round(p["reps"] / freq * fps))
    stop = t0 + 2 * n_in + n_clap
    tl.check(stop + fps)
    t = tl.frames[t0:stop + 1]
    env = _envelope(t, t0, stop, n_in, n_in)
    # Each clap is a raised cosine from open to closed (hands meet) and back to open.
    phase = np.clip((t - t0 - n_in) / max(n_clap, 1), 0, 1) * p["reps"]
    closing = 0.5 - 0.5 * np.cos(2 * np.pi * phase)
    open_pose = np.array([1.05, -0.05, -0.28])
    closed = np.array([1.12, -0.78, -0.22])
    inner = env[:, None] * (open_pose + (closed - open_pose) * closing[:, None])
    for side in range(2):
        tl.add_curve("arm", side, t0, inner)
    tl.add_curve("neck", 0, t0, 0.15 * env)
    return stop


_ACTION_FUNCS = {
    "walk": lambda tl, rng, p, t0: _act_locomotion(tl, rng, "walk", p, t0),
    "jog": lambda tl, rng, p, t0: _act_locomotion(tl, rng, "jog", p, t0),
    "run": lambda tl, rng, p, t0: _act_locomotion(tl, rng, "run", p, t0),
    "walk_backward": lambda tl, rng, p, t0: _act_locomotion(tl, rng, "walk_backward", p, t0),
    "sidestep": _act_sidestep,
    "turn": lambda tl, rng, p, t0: _act_turn(tl, p, t0),
    "spin": lambda tl, rng, p, t0: _act_turn(tl, p, t0, spin=True),
    "jump": _act_jump,
    "jump_forward": lambda tl, rng, p, t0: _act_jump(tl, rng, p, t0, forward=True),
    "hop": _act_hop, "squat": _act_squat, "sit_down": _act_sit, "bow": _act_bow, "kick": _act_kick,
    "punch": _act_punch, "wave": _act_wave, "raise_arms": _act_raise, "clap": _act_clap,
}


# ---------------------------------------------------------------------------------------
# Rendering: channels -> joint rotations -> utils.forward_kinematics
# ---------------------------------------------------------------------------------------
def _render_feet(tl: _Timeline, n: int):
    """Per-frame foot targets from the planted poses and foot events.

    Returns ankle (n, 2, 3), foot yaw (n, 2), foot pitch offset (n, 2), the stance schedule
    planted (n, 2, 2) [side, (ankle, toe)] (True where that joint is fixed on the floor), and
    in_reach (n, 2): frames whose ankle target the leg must reach (planted or stepping).
    """
    ankle = np.zeros((n, 2, 3))
    yaw = np.zeros((n, 2))
    pitch = np.zeros((n, 2))
    planted = np.ones((n, 2, 2), dtype=bool)
    in_reach = np.ones((n, 2), dtype=bool)
    for side in range(2):
        pose = tl.start_feet[side]
        cursor = 0
        for ev in tl.events[side] + [None]:
            stop = n if ev is None else ev["t0"]
            ankle[cursor:stop, side] = (pose[0], _ANKLE_HEIGHT[side], pose[1])
            yaw[cursor:stop, side] = pose[2]
            if ev is None:
                break
            hf, angle = ev["heel_frames"], ev["heel_angle"]
            if hf > 0 and angle > 0:  # the heel rises about the fixed toe before the foot leaves
                a = ev["t0"] - hf
                offset = angle * _minjerk(np.arange(hf + 1) / hf)
                ankle[a:a + hf + 1, side] = _pivot_ankle(side, pose[0], pose[1], pose[2], offset)
                pitch[a:a + hf + 1, side] = offset
                planted[a + 1:a + hf + 1, side, 0] = False
            t0, t1 = ev["t0"], ev["t1"]
            ankle[t0:t1 + 1, side] = ev["ankle"][: n - t0]
            yaw[t0:t1 + 1, side] = ev["yaw"][: n - t0]
            pitch[t0:t1 + 1, side] = ev["pitch"][: n - t0]
            planted[t0 + 1:t1, side, :] = False
            # A stepping leg must reach its target just after toe-off (or the knee would snap
            # straight) and at touchdown; mid-swing a target out of reach just leaves the foot
            # a little short, in the air.
            in_reach[t0 + 1:t1, side] = False
            if ev["in_reach"] == "both":
                in_reach[t0 + 1:min(t1, t0 + 3), side] = True
            if ev["in_reach"] in ("both", "touchdown"):
                in_reach[max(t0 + 1, t1 - 2):t1, side] = True
            pose = ev["end_pose"]
            sf, strike = ev["strike_frames"], ev["strike_angle"]
            cursor = t1 + 1
            if sf > 0 and strike > 0 and t1 + 1 < n:  # heel strike: the foot rolls flat about its heel
                offset = -strike * (1.0 - _minjerk(np.arange(1, sf + 1) / sf))
                stop = min(n, t1 + 1 + sf)
                ankle[t1 + 1:stop, side] = _pivot_ankle(side, pose[0], pose[1], pose[2], offset)[: stop - t1 - 1]
                yaw[t1 + 1:stop, side] = pose[2]
                pitch[t1 + 1:stop, side] = offset[: stop - t1 - 1]
                planted[t1:stop - 1, side, :] = False
                cursor = stop
    return ankle, yaw, pitch, planted, in_reach


def _reach_drop(hips: np.ndarray, ankle: np.ndarray, in_reach: np.ndarray, fps: int) -> np.ndarray:
    """How far (n,) to lower the pelvis, smoothly, so that the legs reach their ankle targets
    wherever in_reach (n, 2) is set."""
    d = ankle - hips  # (n, 2, 3)
    horiz2 = d[..., 0] ** 2 + d[..., 2] ** 2
    reach = _PLANTED_REACH * _LEG  # (2,)
    allowed = np.sqrt(np.maximum(reach ** 2 - horiz2, 0.0))
    over = np.where(in_reach, (hips[..., 1] - ankle[..., 1]) - allowed, 0.0)
    need = np.maximum(over, 0.0).max(-1)
    if need.max() <= 0:
        return np.zeros(len(need))
    k = max(1, int(round(0.15 * fps)))
    drop = gaussian_filter1d(maximum_filter1d(need, 2 * k + 1, mode="nearest"), k / 2.0, mode="nearest")
    return np.maximum(drop, need)


def _q_euler(angles: np.ndarray, axes: str) -> torch.Tensor:
    """Quaternions (..., 4) of successive rotations about `axes` (e.g. "yxz"): angles (..., len(axes)),
    composed as R_axes[0] * R_axes[1] * ..."""
    angles = _tensor(angles)
    axis = torch.tensor([_AXES[a] for a in axes], dtype=torch.float64).expand(angles.shape + (3,))
    quats = utils.quat_from_axis_angle(axis, angles)  # (..., k, 4)
    out = quats[..., 0, :]
    for k in range(1, len(axes)):
        out = utils.qmul(out, quats[..., k, :])
    return out


def _limb_quats(bone_dir: np.ndarray, bend_normal: np.ndarray, rest_normal: np.ndarray) -> torch.Tensor:
    """Global rotations (..., 4) taking a limb bone's rest direction (0, -1, 0) to `bone_dir`
    (..., 3) and the rest normal of its bending plane (`rest_normal`, (..., 3)) to `bend_normal`."""
    b = bone_dir / np.linalg.norm(bone_dir, axis=-1, keepdims=True)
    nrm = bend_normal - (bend_normal * b).sum(-1, keepdims=True) * b
    nrm = nrm / np.linalg.norm(nrm, axis=-1, keepdims=True)
    world = np.stack([b, nrm, np.cross(b, nrm)], axis=-1)  # columns
    rest_dir = np.broadcast_to(np.array([0.0, -1.0, 0.0]), rest_normal.shape)
    rest = np.stack([rest_dir, rest_normal, np.cross(rest_dir, rest_normal)], axis=-1)
    return utils.matrix_to_quat(_tensor(world @ np.swapaxes(rest, -1, -2)))


_CHAIN_PREV = [0] * utils.NUM_JOINTS  # the joint whose rotation precedes each one in FK
for _chain in utils.KINEMATIC_CHAIN:
    for _a, _b in zip(_chain[1:-1], _chain[2:]):
        _CHAIN_PREV[_b] = _a
_CHAIN_PREV = torch.tensor(_CHAIN_PREV)


def _idx(*joints: int) -> torch.Tensor:
    """Index tensor (torch indexes much faster with tensors than with Python lists)."""
    return torch.tensor(joints)


def _render(tl: _Timeline, n: int):
    """Animate the 22 joints of frames [0, n): returns joints (n, 22, 3), local quaternions
    (n, 22, 4), pelvis positions (n, 3) and the stance schedule (n, 2, 2)."""
    ankle, foot_yaw, foot_pitch, planted, in_reach = _render_feet(tl, n)
    yaw = tl.yaw[:n]
    fwd, left = _heading(yaw)
    off = tl.root_off[:n]
    pelvis = left * off[:, :1] + fwd * off[:, 2:]
    pelvis[:, 0] += tl.root_xz[:n, 0]
    pelvis[:, 2] += tl.root_xz[:n, 1]
    pelvis[:, 1] = tl.h_stand + off[:, 1]
    q_root = _q_euler(np.stack([yaw, tl.pelvis_rot[:n, 0], -tl.pelvis_rot[:n, 1]], -1), "yxz")  # (n, 4)
    q_root2 = q_root[:, None].expand(n, 2, 4)
    hips = pelvis[:, None] + utils.qrot(q_root2, _tensor(np.broadcast_to(_HIP_OFFSET, (n, 2, 3)))).numpy()
    for _ in range(2):
        drop = _reach_drop(hips, ankle, in_reach, tl.fps)
        pelvis[:, 1] -= drop
        hips[..., 1] -= drop[:, None]
    glob = torch.zeros(n, utils.NUM_JOINTS, 4, dtype=torch.float64)  # global rotation of each joint's bone
    glob[:, _idx(0, 1, 2)] = q_root[:, None]
    offsets = _tensor(utils.SKELETON_OFFSETS)

    # Spine (3 bones), then neck and head, each a yaw-pitch-roll relative to its parent.
    bend = tl.spine[:n, 0] + tl.style.posture
    share = np.array([0.35, 0.35, 0.30])
    spine_angles = np.stack([share * tl.spine[:n, 2:3], _BASE_SPINE_BEND + share * bend[:, None],
                             -share * tl.spine[:n, 1:2]], -1)  # (n, 3 bones, 3)
    spine_q = _q_euler(spine_angles, "yxz")
    neck_pitch, neck_yaw = tl.neck[:n, 0] + tl.style.head_pitch, tl.neck[:n, 1]
    head_angles = np.stack([np.stack([0.5 * neck_yaw, _BASE_NECK_PITCH + 0.5 * neck_pitch], -1),
                            np.stack([0.5 * neck_yaw, _BASE_HEAD_PITCH + 0.5 * neck_pitch], -1)], 1)
    head_q = _q_euler(head_angles, "yx")
    rot, pos = q_root, _tensor(pelvis)
    for k, joint in enumerate((3, 6, 9, 12, 15)):
        rot = utils.qmul(rot, spine_q[:, k] if k < 3 else head_q[:, k - 3])
        glob[:, joint] = rot
        if joint <= 9:
            pos = pos + utils.qrot(rot, offsets[joint].expand(n, 3))
    spine3, chest = pos, glob[:, 9]  # (n, 3), (n, 4)
    chest2 = chest[:, None].expand(n, 2, 4)

    # Arms: collar and shoulder bones fixed in the chest frame (a shrug when the arm is high),
    # then two-bone IK to the wrist target given as elevation/azimuth/reach in the chest frame.
    arm = tl.arm[:n] + _NEUTRAL_ARM + np.array([0.0, tl.style.arm_out, tl.style.elbow_reach - _NEUTRAL_ARM[2]])
    elev, azim, reach = arm[..., 0], arm[..., 1], np.clip(arm[..., 2], 0.3, 1.0)  # (n, 2)
    s = _SIGN  # (2,)
    mirror = np.stack([s, np.ones(2), np.ones(2)], -1)  # (2, 3)
    collar_dir = np.broadcast_to(_COLLAR_DIR * mirror, (n, 2, 3))
    shoulder_dir = np.broadcast_to(_SHOULDER_DIR * mirror, (n, 2, 3)).copy()
    shoulder_dir[..., 1] += 0.45 * np.clip(elev - 1.7, 0.0, 1.3)
    raw = _tensor(utils.RAW_OFFSETS)
    glob[:, _idx(13, 14)] = utils.qmul(chest2, utils.qbetween(raw[_idx(13, 14)].expand(n, 2, 3), _tensor(collar_dir)))
    glob[:, _idx(16, 17)] = utils.qmul(chest2, utils.qbetween(raw[_idx(16, 17)].expand(n, 2, 3), _tensor(shoulder_dir)))
    p_shoulder = (spine3[:, None] + utils.qrot(glob[:, _idx(13, 14)], offsets[_idx(13, 14)].expand(n, 2, 3))
                  + utils.qrot(glob[:, _idx(16, 17)], offsets[_idx(16, 17)].expand(n, 2, 3))).numpy()
    direction = np.stack([s * np.sin(elev) * np.sin(azim), -np.cos(elev), np.sin(elev) * np.cos(azim)], -1)
    # The elbow points away from the way the arm is raised (back when it hangs, down when it
    # points forward), plus the action's adjustment.
    swing_hint = -np.stack([s * np.cos(elev) * np.sin(azim), np.sin(elev), np.cos(elev) * np.cos(azim)], -1)
    local_vecs = np.stack([(reach * _ARM)[..., None] * direction, swing_hint + tl.elbow[:n] * mirror], 1)
    world_vecs = utils.qrot(chest[:, None, None].expand(n, 2, 2, 4), _tensor(local_vecs)).numpy()  # (n, 2, 2, 3)
    target, hint = p_shoulder + world_vecs[:, 0], world_vecs[:, 1]

    # Legs: knees point where the feet point. Both legs and both arms in one IK call.
    foot_fwd, _ = _heading(foot_yaw)  # (n, 2, 3)
    roots = np.concatenate([hips, p_shoulder], 1)  # (n, 4, 3): left leg, right leg, left arm, right arm
    ends = np.concatenate([ankle, target], 1)
    hints = np.concatenate([foot_fwd + 0.3 * fwd[:, None], hint], 1)
    l1 = np.concatenate([_L_THIGH, _L_UPPER_ARM])
    l2 = np.concatenate([_L_SHIN, _L_FOREARM])
    middle, end, normal = _two_bone_ik(roots.reshape(-1, 3), ends.reshape(-1, 3), np.tile(l1, n), np.tile(l2, n),
                                       hints.reshape(-1, 3))
    middle, end, normal = middle.reshape(n, 4, 3), end.reshape(n, 4, 3), normal.reshape(n, 4, 3)
    rest_normal = np.array([[-1.0, 0, 0], [-1.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0]])  # legs bend forward, arms back
    upper_lower = _limb_quats(np.stack([middle - roots, end - middle], 1), np.stack([normal, normal], 1),
                              np.broadcast_to(rest_normal, (n, 2, 4, 3)))  # (n, 2, 4, 4)
    glob[:, _idx(4, 5, 18, 19)] = upper_lower[:, 0]
    glob[:, _idx(7, 8, 20, 21)] = upper_lower[:, 1]
    glob[:, _idx(10, 11)] = _q_euler(np.stack([foot_yaw, _FOOT_PITCH + foot_pitch], -1), "yx")

    local = utils.qmul(utils.qinv(glob[:, _CHAIN_PREV]), glob)
    local[:, 0] = q_root
    joints = utils.forward_kinematics(local, _tensor(pelvis))
    return joints.numpy(), local.numpy(), pelvis, planted


# ---------------------------------------------------------------------------------------
# Captions in HumanML3D's style, and their word/POS tokens
# ---------------------------------------------------------------------------------------
_VERBS = {  # lemma: (third person singular, gerund)
    "walk": ("walks", "walking"), "jog": ("jogs", "jogging"), "run": ("runs", "running"),
    "sprint": ("sprints", "sprinting"), "dash": ("dashes", "dashing"), "step": ("steps", "stepping"),
    "take": ("takes", "taking"), "move": ("moves", "moving"), "back": ("backs", "backing"),
    "sidestep": ("sidesteps", "sidestepping"), "shuffle": ("shuffles", "shuffling"),
    "turn": ("turns", "turning"), "rotate": ("rotates", "rotating"), "spin": ("spins", "spinning"),
    "twirl": ("twirls", "twirling"), "do": ("does", "doing"), "make": ("makes", "making"),
    "jump": ("jumps", "jumping"), "leap": ("leaps", "leaping"), "hop": ("hops", "hopping"),
    "balance": ("balances", "balancing"), "squat": ("squats", "squatting"), "bend": ("bends", "bending"),
    "crouch": ("crouches", "crouching"), "lower": ("lowers", "lowering"), "sit": ("sits", "sitting"),
    "stand": ("stands", "standing"), "get": ("gets", "getting"), "rise": ("rises", "rising"),
    "bow": ("bows", "bowing"), "kick": ("kicks", "kicking"), "perform": ("performs", "performing"),
    "punch": ("punches", "punching"), "throw": ("throws", "throwing"), "box": ("boxes", "boxing"),
    "strike": ("strikes", "striking"), "wave": ("waves", "waving"), "raise": ("raises", "raising"),
    "lift": ("lifts", "lifting"), "hold": ("holds", "holding"), "keep": ("keeps", "keeping"),
    "put": ("puts", "putting"), "clap": ("claps", "clapping"), "applaud": ("applauds", "applauding"),
    "veer": ("veers", "veering"), "alternate": ("alternates", "alternating"), "stretch": ("stretches", "stretching"),
}
_LEXICON_WORDS = {
    "NOUN": "person man woman human step hand arm leg foot feet fist time circle jump squat kick punch head "
            "body shoulder height side place air pace knee seat bow turn spin chest front chair position "
            "hello distance way bit quarter half hop degree curve waist moment while speed",
    "NUM": "one two three four five six seven eight nine ten eleven twelve ninety hundred eighty",
    "ADJ": "left right high low deep slight small long short quick slow full few several shallow steady "
           "light brisk normal big single sitting jogging front little",
    "ADV": "forward forwards backward backwards back ahead sideways around up down away quickly slowly "
           "briskly fast then first afterwards again twice once deeply slightly repeatedly rapidly "
           "together alternately far there straight halfway lightly steadily energetically gently very really",
    "ADP": "with to on in into at of for over above out before after like by",
    "DET": "a an the his her their both all",
    "PRON": "someone it them himself herself themselves",
    "CCONJ": "and or",
    "SCONJ": "while as if",
    "AUX": "is",
}


def _plural(noun: str) -> str:
    if noun.endswith(("ch", "sh", "x", "s")):
        return noun + "es"
    if noun == "foot":
        return "feet"
    return noun + "s"


def _build_lexicon() -> dict:
    """word -> (lemma, part of speech); verbs take precedence over other parts of speech."""
    lexicon = {}
    for pos, words in _LEXICON_WORDS.items():
        for word in words.split():
            lexicon.setdefault(word, (word, pos))
            if pos == "NOUN":
                lexicon.setdefault(_plural(word), (word, pos))
    for lemma, forms in _VERBS.items():
        for word in (lemma,) + forms:
            lexicon[word] = (lemma, "VERB")
    lexicon["back"] = ("back", "ADV")  # 'back up', 'stands back up'
    lexicon["raised"] = ("raise", "VERB")  # 'keeps it raised'
    return lexicon


_LEXICON = _build_lexicon()
_NOUN_LEMMA = {}
for _noun in _LEXICON_WORDS["NOUN"].split():
    _NOUN_LEMMA[_noun] = _noun
    _NOUN_LEMMA[_plural(_noun)] = _noun
_VERB_LEMMA = {form: lemma for lemma, forms in _VERBS.items() for form in (lemma,) + forms}
_NOUN_VERBS = set(_NOUN_LEMMA) & set(_VERB_LEMMA)  # 'steps', 'kicks', 'waves', ...
_NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                 "eleven", "twelve"]


_SUBJECT_WORDS = {"person", "man", "woman", "someone", "human", "and", "then", "first", "afterwards"}


def caption_tokens(caption: str) -> str:
    """HumanML3D's token field of a caption: space-separated `lemma/POS` (punctuation dropped).

    Words that are both a noun and a verb ('steps', 'waves', 'kicks') are verbs right after
    the subject or a conjunction, nouns elsewhere.
    """
    words = re.findall(r"[a-z]+", caption.lower())
    tokens = []
    for i, word in enumerate(words):
        lemma, pos = _LEXICON.get(word, (word, "OTHER"))
        if word in _NOUN_VERBS:
            verb_here = i > 0 and words[i - 1] in _SUBJECT_WORDS
            lemma, pos = (_VERB_LEMMA[word], "VERB") if verb_here else (_NOUN_LEMMA[word], "NOUN")
        tokens.append(f"{lemma}/{pos}")
    return " ".join(tokens)


def _count(n: int, noun: str) -> str:
    """'one step', 'four quick steps' (the last word of `noun` is pluralised)."""
    words = noun.split()
    if n != 1:
        words[-1] = _plural(words[-1])
    return f"{_NUMBER_WORDS[n] if n < len(_NUMBER_WORDS) else n} {' '.join(words)}"


def _times(n: int, rng) -> str:
    if n == 1:
        return ["once", ""][int(rng.integers(2))]
    if n == 2:
        return ["twice", "two times"][int(rng.integers(2))]
    return f"{_NUMBER_WORDS[n]} times"


def _action_phrases(action: str, p: dict, rng) -> list:
    """Verb-phrase options for one action: each a list of (verb lemma, rest) clauses joined by
    'and'. `{poss}`/`{refl}` stand for the subject's possessive and reflexive pronouns."""
    pick = lambda seq: seq[int(rng.integers(len(seq)))]  # noqa: E731
    if action in ("walk", "jog", "run", "walk_backward"):
        n, speed = p["steps"], p["speed"]
        adv = {"slow": ["slowly", "at a slow pace", "slowly"], "normal": ["", "steadily", ""],
               "fast": ["quickly", "briskly", "fast", "at a fast pace"]}[speed]
        adj = {"slow": "slow ", "normal": "", "fast": "quick "}[speed]
        if action == "walk":
            options = [[("walk", f"forward {pick(adv)} for {_count(n, 'step')}")], [("walk", f"{pick(adv)} forward {_count(n, 'step')}")],
                       [("take", f"{_count(n, adj + 'step')} forward")],
                       [("walk", f"straight ahead {pick(adv)} for {_count(n, 'step')}")],
                       [("walk", f"{_count(n, 'step')} forward {pick(adv)}")]]
            if p["turn"] != "none":
                d = p["turn"]
                turn = f"slightly to the {d}" if p["turn_angle"] < 60 else f"to the {d}"
                options = [[("walk", f"forward {pick(adv)} {_count(n, 'step')}"), ("turn", turn)],
                           [("walk", f"{pick(adv)} {_count(n, 'step')} in a curve to the {d}")],
                           [("take", f"{_count(n, adj + 'step')} forward while turning {turn}")],
                           [("walk", f"forward {_count(n, 'step')}"), ("veer", f"{'slightly ' if p['turn_angle'] < 60 else ''}to the {d}")],
                           [("take", f"{_count(n, 'step')} {pick(adv)} forward"), ("turn", f"{d} while walking")]]
            return options
        if action == "jog":
            adv = {"slow": ["slowly", "lightly", "at a slow pace"], "normal": ["", "steadily", "at a steady pace"]}[speed]
            return [[("jog", f"forward {pick(adv)} {_count(n, 'step')}")], [("jog", f"{pick(adv)} {_count(n, 'step')} forward")],
                    [("jog", f"straight ahead {pick(adv)}")],
                    [("run", f"forward at a {'slow' if speed == 'slow' else 'steady'} jogging pace for {_count(n, 'step')}")],
                    [("jog", f"forward for {_count(n, 'step')}")]]
        if action == "run":
            adv = {"normal": ["", "", "at a steady pace"], "fast": ["very fast", "at full speed", "quickly", "fast"]}[speed]
            options = [[("run", f"forward {pick(adv)} for {_count(n, 'step')}")], [("run", f"{_count(n, 'step')} forward {pick(adv)}")],
                       [("run", f"straight ahead {pick(adv)}")], [("dash", f"forward {_count(n, 'step')} {pick(adv)}")]]
            if speed == "fast":
                options.append([("sprint", f"forward {_count(n, 'step')}")])
            return options
        return [[("walk", f"backward {pick(adv)}")], [("walk", f"backwards {_count(n, 'step')} {pick(adv)}")],
                [("take", f"{_count(n, adj + 'step')} backward")], [("back", f"up {pick(adv)} {_count(n, 'step')}")],
                [("move", f"backwards {pick(adv)} for {_count(n, 'step')}")]]
    if action == "sidestep":
        d, n = p["direction"], p["steps"]
        adv = {"slow": "slowly", "normal": "", "fast": "quickly"}[p["speed"]]
        return [[("sidestep", f"to the {d} {_times(n, rng)} {adv}")], [("step", f"sideways to the {d} {_times(n, rng)}")],
                [("take", f"{_count(n, 'side step')} to the {d} {adv}")], [("shuffle", f"{adv} to the {d} {_times(n, rng)}")],
                [("move", f"sideways to the {d} {adv}")]]
    if action in ("turn", "spin"):
        d = p["direction"]
        adv = {"slow": "slowly", "normal": "", "fast": "quickly"}[p["speed"]]
        if action == "turn" and p["angle"] == 90:
            return [[("turn", f"{adv} to the {d}")], [("turn", f"{d} {adv}")], [("make", f"a quarter turn to the {d}")],
                    [("rotate", f"ninety degrees to the {d} {adv}")], [("turn", f"in place to the {d}")]]
        if action == "turn":
            return [[("turn", f"around to the {d} {adv}")], [("turn", f"{adv} around to the {d}")],
                    [("do", f"a half turn to the {d}")], [("turn", f"around in place to the {d}")],
                    [("rotate", f"one hundred eighty degrees to the {d}")]]
        k = p["turns"]
        circles = "a full circle" if k == 1 else "two full circles"
        return [[("spin", f"around {_times(k, rng) or 'once'} to the {d} {adv}")], [("spin", f"{adv} in {circles} to the {d}")],
                [("do", f"{'a full spin' if k == 1 else 'two full spins'} to the {d}")],
                [("twirl", f"around {_times(k, rng) or 'once'} to the {d}")], [("turn", f"around in {circles} to the {d} {adv}")]]
    if action == "jump":
        h, n = p["height"], p["reps"]
        hadv = {"low": ["a little", "slightly", "low"], "normal": [""], "high": ["high", "really high"]}[h]
        hadj = {"low": "small ", "normal": "", "high": "high "}[h]
        return [[("jump", f"{pick(hadv)} in place {_times(n, rng)}")], [("jump", f"up and down {_times(n, rng)} {pick(hadv)}")],
                [("do", f"{_count(n, hadj + 'jump')} in place")], [("leap", f"{pick(hadv)} into the air {_times(n, rng)}")],
                [("jump", f"straight up {pick(hadv)} {_times(n, rng)}")]]
    if action == "jump_forward":
        dist, n = p["distance"], p["reps"]
        dadv = {"short": ["a short distance", "a little"], "normal": ["", ""], "far": ["far", "a long way"]}[dist]
        dadj = {"short": "small ", "normal": "", "far": "long "}[dist]
        return [[("jump", f"forward {pick(dadv)} {_times(n, rng)}")], [("leap", f"forward {pick(dadv)} {_times(n, rng)}")],
                [("do", f"{_count(n, dadj + 'jump')} forward")], [("jump", f"ahead {pick(dadv)} with both feet {_times(n, rng)}")]]
    if action == "hop":
        leg, n = p["leg"], p["reps"]
        other = "right" if leg == "left" else "left"
        fw = "forward " if p["forward"] else pick(["", "in place "])
        return [[("hop", f"{fw}on {{poss}} {leg} leg {_times(n, rng)}")], [("hop", f"{_times(n, rng)} {fw}on the {leg} foot")],
                [("balance", f"on {{poss}} {leg} leg"), ("hop", f"{fw}{_times(n, rng)}")],
                [("do", f"{_count(n, 'hop')} {fw}on {{poss}} {leg} leg")],
                [("lift", f"{{poss}} {other} foot"), ("hop", f"{fw}on the {leg} one {_times(n, rng)}")]]
    if action == "squat":
        depth, n = p["depth"], p["reps"]
        dadv = {"half": ["halfway down", "slightly"], "deep": ["deeply", "all the way down", "low"]}[depth]
        dadj = {"half": ["shallow ", "half "], "deep": ["deep ", "full "]}[depth]
        spd = "slowly" if p["speed"] == "slow" else ""
        return [[("squat", f"{pick(dadv)} {_times(n, rng)} {spd}")], [("do", f"{_count(n, pick(dadj) + 'squat')} {spd}")],
                [("bend", f"{{poss}} knees"), ("squat", f"{pick(dadv)} {_times(n, rng)}")],
                [("crouch", f"{pick(dadv)} {_times(n, rng)} {spd}")], [("squat", f"{spd} {pick(dadv)} {_times(n, rng)}")]]
    if action == "sit_down":
        spd = "slowly" if p["speed"] == "slow" else ""
        if p["stand_up"]:
            return [[("sit", f"down {spd}"), ("stand", "back up")], [("take", f"a seat {spd}"), ("get", "up again")],
                    [("sit", "down for a moment"), ("stand", "up again")],
                    [("lower", f"{{refl}} {spd} into a sitting position"), ("rise", "again")],
                    [("sit", f"down {spd} as if on a chair"), ("stand", "up")]]
        return [[("sit", f"down {spd}")], [("take", f"a seat {spd}")], [("lower", f"{{refl}} {spd} into a sitting position")],
                [("sit", f"down {spd} as if on a chair")], [("bend", f"{{poss}} knees"), ("sit", f"down {spd}")]]
    if action == "bow":
        depth, n = p["depth"], p["reps"]
        dadv = {"slight": ["slightly", "a little"], "deep": ["deeply", "low"]}[depth]
        dadj = {"slight": ["small ", "slight "], "deep": ["deep ", "low "]}[depth]
        return [[("bow", f"{pick(dadv)} {_times(n, rng)}")], [("take", _count(n, pick(dadj) + "bow"))],
                [("bend", f"forward at the waist {pick(dadv)} {_times(n, rng)}")], [("bow", f"down {pick(dadv)} {_times(n, rng)}")],
                [("do", _count(n, pick(dadj) + "bow"))]]
    if action == "kick":
        leg, h, n = p["leg"], p["height"], p["reps"]
        return [[("kick", f"{h} with {{poss}} {leg} leg {_times(n, rng)}")], [("kick", f"{h} with the {leg} foot {_times(n, rng)}")],
                [("do", f"{_count(n, h + ' kick')} with the {leg} leg")],
                [("perform", f"{_count(n, h + ' front kick')} with {{poss}} {leg} leg")],
                [("kick", f"{{poss}} {leg} leg forward {h} {_times(n, rng)}")]]
    if action == "punch":
        hand, n = p["hand"], p["reps"]
        spd = {"normal": "", "fast": pick(["quickly", "rapidly", "fast"])}[p["speed"]]
        if hand == "both":
            return [[("punch", f"{spd} with both fists {_times(n, rng)}, alternating hands")],
                    [("throw", f"{_count(n, 'punch')} {spd}, alternating left and right")],
                    [("punch", f"forward {_times(n, rng)} with both hands in turn")],
                    [("box", f"{spd}, throwing {_count(n, 'punch')} with the left and right hand")]]
        return [[("punch", f"{spd} with {{poss}} {hand} hand {_times(n, rng)}")], [("throw", f"{_count(n, 'punch')} with the {hand} fist {spd}")],
                [("punch", f"forward with the {hand} arm {_times(n, rng)}")],
                [("strike", f"forward {_times(n, rng)} with {{poss}} {hand} fist {spd}")]]
    if action == "wave":
        hand, n = p["hand"], p["reps"]
        spd = {"slow": "slowly", "normal": "", "fast": "quickly"}[p["speed"]]
        if hand == "both":
            return [[("wave", f"both hands above {{poss}} head {spd} {_times(n, rng)}")], [("wave", f"with both hands {_times(n, rng)}")],
                    [("raise", "both arms"), ("wave", f"{spd} {_times(n, rng)}")], [("wave", f"both hands in the air {spd}")]]
        return [[("wave", f"{{poss}} {hand} hand {spd} {_times(n, rng)}")], [("wave", f"with the {hand} hand {_times(n, rng)}")],
                [("raise", f"{{poss}} {hand} hand"), ("wave", f"{spd} {_times(n, rng)}")],
                [("wave", f"hello with {{poss}} {hand} hand {spd}")],
                [("wave", f"{{poss}} {hand} arm above {{poss}} head {_times(n, rng)}")]]
    if action == "raise_arms":
        arms, direction = p["arms"], p["direction"]
        both = arms == "both"
        arm_np = pick(["both arms", "{poss} arms"]) if both else pick([f"{{poss}} {arms} arm", f"the {arms} arm"])
        it = "them" if both else "it"
        where = {"up": ["above {poss} head", "up over {poss} head", "straight up"],
                 "front": ["forward", "in front of {poss} body", "forward to shoulder height"],
                 "side": ["out to the sides" if both else "out to the side", "sideways", "to shoulder height at the side"]}[direction]
        after = ([("lower", f"{it} again")], [("put", f"{it} back down")]) if p["hold"] == "short" else \
            ([("hold", f"{it} there for a while")], [("keep", f"{it} raised for a moment")])
        return [[("raise", f"{arm_np} {pick(where)}")] + pick(after), [("lift", f"{arm_np} {pick(where)}")] + pick(after),
                [("raise", f"{arm_np} {pick(where)}")], [("stretch", f"{arm_np} {pick(where)}")] + pick(after)]
    n = p["reps"]
    spd = {"slow": "slowly", "normal": "", "fast": "quickly"}[p["speed"]]
    return [[("clap", f"{{poss}} hands {_times(n, rng)} {spd}")], [("clap", f"{spd} {_times(n, rng)}")],
            [("clap", f"{_times(n, rng)} in front of {{poss}} chest")], [("clap", f"{{poss}} hands together {spd} {_times(n, rng)}")]]


_SUBJECTS = [("a person", ("his", "himself"), ("their", "themselves")), ("a man", ("his", "himself")),
             ("a woman", ("her", "herself")), ("someone", ("their", "themselves"), ("his", "himself")),
             ("the person", ("his", "himself"), ("their", "themselves")), ("a human", ("his", "himself")),
             ("the man", ("his", "himself")), ("the woman", ("her", "herself"))]


def _clean(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"\s+,", ",", text)


def _verb_phrase(clauses, form: int, poss: str, refl: str) -> str:
    """Join clauses with 'and'; form 0: third person singular, 1: gerund."""
    parts = [f"{_VERBS[verb][form]} {rest}" for verb, rest in clauses]
    return _clean(" and ".join(parts).replace("{poss}", poss).replace("{refl}", refl))


def make_captions(parts: list, rng: np.random.Generator, count: Optional[int] = None) -> list:
    """3 to 5 distinct paraphrased captions (lowercase, HumanML3D style) of a 1- or 2-part motion."""
    count = int(rng.integers(3, 6)) if count is None else count
    captions: list = []
    for _ in range(60):
        if len(captions) >= count:
            break
        subject = _SUBJECTS[int(rng.integers(len(_SUBJECTS)))]
        poss, refl = subject[1 + int(rng.integers(len(subject) - 1))]
        vps = []
        for action, params in parts:
            options = _action_phrases(action, params, rng)
            vps.append(options[int(rng.integers(len(options)))])
        third = [_verb_phrase(vp, 0, poss, refl) for vp in vps]
        gerund = [_verb_phrase(vp, 1, poss, refl) for vp in vps]
        who = subject[0]
        if len(parts) == 1:
            forms = [f"{who} {third[0]}", f"{who} {third[0]}", f"{who} is {gerund[0]}"]
        else:
            forms = [f"{who} {third[0]} and then {third[1]}", f"{who} {third[0]}, then {third[1]}",
                     f"{who} first {third[0]}, and then {third[1]}", f"{who} {third[0]} before {gerund[1]}",
                     f"after {gerund[0]}, {who} {third[1]}", f"{who} {third[0]} and afterwards {third[1]}"]
        sentence = _clean(forms[int(rng.integers(len(forms)))]).rstrip(",") + "."
        sentence = sentence.replace(" .", ".").replace(",.", ".")
        if sentence not in captions:
            captions.append(sentence)
    return captions


# ---------------------------------------------------------------------------------------
# Motions
# ---------------------------------------------------------------------------------------
def _sample_style(rng: np.random.Generator) -> _Style:
    return _Style(foot_width=rng.uniform(0.085, 0.13), toe_out=rng.uniform(0.0, 0.15),
                  arm_swing=rng.uniform(0.7, 1.3), posture=rng.uniform(-0.04, 0.10),
                  head_pitch=rng.uniform(-0.15, 0.2), elbow_reach=rng.uniform(0.88, 0.96),
                  tempo=rng.uniform(0.9, 1.12), lift=rng.uniform(0.85, 1.2), arm_out=rng.uniform(-0.1, 0.2))


def sample_parts(rng: np.random.Generator) -> list:
    """A random motion program: [(action, params)] of one action, or of two in a row."""
    i = int(rng.integers(len(ACTIONS)))
    first = ACTIONS[i]
    if rng.random() < 0.55:
        return [(first, sample_params(first, rng))]
    j = int(rng.integers(len(ACTIONS) - 1))
    second = ACTIONS[j + (j >= i)]  # any other action, uniformly
    p1 = sample_params(first, rng, short=True)
    if first == "sit_down":
        p1["stand_up"] = True  # a second action starts from standing
    return [(first, p1), (second, sample_params(second, rng, short=True))]


def render_parts(parts: list, rng: np.random.Generator, fps: int = 20, min_length: int = 40,
                 max_length: int = 196) -> SyntheticMotion:
    """Animate a program [(action, params), ...]; missing params are sampled from rng.

    The motion has T frames with min_length + 1 <= T <= max_length + 1 (so its features have
    min_length..max_length frames). Raises MotionTooLong (a ValueError) if it does not fit.
    """
    for i, (action, params) in enumerate(parts):
        check_params(action, params or {})
        if action == "sit_down" and not (params or {}).get("stand_up", True) and i < len(parts) - 1:
            raise ValueError("a sit_down with stand_up=False must be the last part of a motion")
    parts = [(a, {**sample_params(a, rng), **(p or {})}) for a, p in parts]
    for action, params in parts:  # keep a walk's turn and turn angle consistent
        if action == "walk":
            params["turn_angle"] = 0 if params["turn"] == "none" else (params["turn_angle"] or 90)
    style = _sample_style(rng)
    capacity = max_length + 2 + 3 * fps
    tl = _Timeline(fps, capacity, style, yaw0=rng.uniform(-0.4, 0.4))
    t = int(round(rng.uniform(0.2, 0.7) * fps))
    for i, (action, p) in enumerate(parts):
        if i > 0:
            if action in _FOOT_ACTIONS:
                t = max(tl.t_feet + int(rng.uniform(0.05, 0.3) * fps), tl.t_body - int(rng.uniform(0.1, 0.4) * fps))
            else:
                t = max(tl.t_feet - int(rng.uniform(0.0, 0.25) * fps), tl.t_body - int(rng.uniform(0.1, 0.4) * fps))
        stop = _ACTION_FUNCS[action](tl, rng, p, t)
        tl.t_body = max(tl.t_body, stop)
    n = max(tl.t_body, tl.t_feet) + int(round(rng.uniform(0.3, 0.9) * fps)) + 1
    n = max(n, min_length + 1)
    if n > max_length + 1:
        raise MotionTooLong()
    # Idle variation: breathing, sway and small head/arm drift everywhere.
    for channel, index, amp in (("spine", 0, 0.03), ("spine", 1, 0.02), ("spine", 2, 0.04), ("neck", 0, 0.06),
                                ("neck", 1, 0.10), ("root_off", 0, 0.012), ("root_off", 2, 0.008)):
        getattr(tl, channel)[:n, index] += _smooth_noise(rng, n, fps, amp)
    for side in range(2):
        tl.arm[:n, side, 0] += _smooth_noise(rng, n, fps, 0.05)
        tl.arm[:n, side, 1] += _smooth_noise(rng, n, fps, 0.05)
    joints, local, pelvis, planted = _render(tl, n)
    return SyntheticMotion(joints=joints, local_quats=local, root_pos=pelvis, planted=planted,
                           parts=parts, captions=make_captions(parts, rng), fps=fps)


def generate_motion(seed: int, index: int, fps: int = 20, min_length: int = 40, max_length: int = 196) -> SyntheticMotion:
    """Motion `index` of the data set of `seed`: a pure function of (seed, index)."""
    rng = np.random.default_rng([int(seed), int(index)])
    for _ in range(200):
        parts = sample_parts(rng)
        try:
            return render_parts(parts, rng, fps, min_length, max_length)
        except MotionTooLong:
            continue
    raise ValueError(f"could not fit a motion into {min_length}..{max_length} frames at {fps} fps "
                     "(raise --max_motion_length or lower --fps)")


# ---------------------------------------------------------------------------------------
# The data set on disk
# ---------------------------------------------------------------------------------------
_LAYOUT = {"new_joint_vecs", "new_joints", "texts", "train.txt", "val.txt", "test.txt", "Mean.npy",
           "Std.npy", "labels.json", DONE_FILE}


def motion_id(index: int) -> str:
    """File id of motion `index`: 'S000123'."""
    return f"S{index:06d}"


def _write_motion(task: tuple) -> tuple:
    """Generate motion `index` and write its files under `folder`; returns (id, frames, captions, parts)."""
    folder, seed, index, fps, min_length, max_length = task
    motion = generate_motion(seed, index, fps, min_length, max_length)
    features = utils.joints_to_features(motion.joints)  # (T-1, 263) float32
    joints = utils.features_to_joints(features)  # (T-1, 22, 3) float32, as HumanML3D stores them
    name = motion_id(index)
    np.save(os.path.join(folder, "new_joint_vecs", name + ".npy"), features)
    np.save(os.path.join(folder, "new_joints", name + ".npy"), joints.astype(np.float32))
    with open(os.path.join(folder, "texts", name + ".txt"), "w") as fh:
        for caption in motion.captions:
            fh.write(f"{caption}#{caption_tokens(caption)}#0.0#0.0\n")
    return name, len(features), len(motion.captions), motion.parts


def _init_worker() -> None:
    torch.set_num_threads(1)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_builds(root: str) -> None:
    """Delete `root.tmp-<pid>` folders left by builds whose process is gone."""
    parent, base = os.path.split(os.path.abspath(root))
    if not os.path.isdir(parent):
        return
    for entry in os.listdir(parent):
        match = re.fullmatch(re.escape(base) + r"\.tmp-(\d+)", entry)
        if match and int(match.group(1)) != os.getpid() and not _pid_alive(int(match.group(1))):
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)


def _run_tasks(tasks: list, workers: int, progress: bool) -> list:
    """Run _write_motion over tasks, in order, in this process or a pool of `workers`."""
    results = []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(tasks), desc="synthetic motions", unit="motion", file=sys.stderr)
    if workers > 1:
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        with context.Pool(workers, initializer=_init_worker) as pool:
            for result in pool.imap(_write_motion, tasks, chunksize=16):
                results.append(result)
                if bar:
                    bar.update()
    else:
        for task in tasks:
            results.append(_write_motion(task))
            if bar:
                bar.update()
    if bar:
        bar.close()
    return results


def build_synthetic_dataset(root: str, num_motions: int, seed: int, fps: int = 20, min_length: int = 40,
                            max_length: int = 196, progress: bool = True, workers: int = 0) -> dict:
    """Build the embedded data set in `root` (HumanML3D layout, see the module docstring).

    The set is built in `root.tmp-<pid>` and moved to `root` when complete (DONE written last),
    so readers never see half a data set; an existing `root` without DONE holding only this
    layout's files is replaced. workers: processes to use (0: up to 2 when the set is large);
    the files do not depend on it. Returns a summary: motions, captions, actions, frames,
    seconds, root.
    """
    if num_motions < 10:
        raise ValueError(f"synthetic_num_motions must be >= 10 to fill the train/val/test splits, got {num_motions}")
    if not 0 < min_length <= max_length:
        raise ValueError(f"need 0 < min_length <= max_length, got {min_length} and {max_length}")
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    start = time.time()
    root = os.path.abspath(root)
    if os.path.isdir(root) and not os.path.exists(os.path.join(root, DONE_FILE)):
        foreign = sorted(set(os.listdir(root)) - _LAYOUT)
        if foreign:
            raise ValueError(f"{root} exists and is not a synthetic data set (it holds {foreign[:3]}); "
                             "remove it or pass another --dataset_root")
    _remove_stale_builds(root)
    tmp = f"{root}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    for sub in ("new_joint_vecs", "new_joints", "texts"):
        os.makedirs(os.path.join(tmp, sub))
    tasks = [(tmp, seed, i, fps, min_length, max_length) for i in range(num_motions)]
    if workers <= 0:
        workers = min(2, os.cpu_count() or 1) if num_motions >= 200 else 1
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead
    try:
        results = _run_tasks(tasks, workers, progress)
    finally:
        torch.set_num_threads(torch_threads)

    # Splits 80/10/10 by a seeded shuffle; feature statistics of the train split only.
    ids = [r[0] for r in results]
    order = np.random.default_rng([int(seed), 2 ** 31]).permutation(len(ids))
    n_train, n_val = int(round(0.8 * len(ids))), int(round(0.1 * len(ids)))
    splits = {"train": sorted(ids[i] for i in order[:n_train]),
              "val": sorted(ids[i] for i in order[n_train:n_train + n_val]),
              "test": sorted(ids[i] for i in order[n_train + n_val:])}
    for name, members in splits.items():
        with open(os.path.join(tmp, f"{name}.txt"), "w") as fh:
            fh.write("\n".join(members) + "\n")
    train_feats = [np.load(os.path.join(tmp, "new_joint_vecs", i + ".npy")) for i in splits["train"]]
    mean, std = utils.feature_mean_std(train_feats)
    np.save(os.path.join(tmp, "Mean.npy"), mean.astype(np.float32))
    np.save(os.path.join(tmp, "Std.npy"), std.astype(np.float32))
    labels = {}
    for name, _, _, parts in results:
        labels[name] = {"action": parts[0][0], "actions": [a for a, _ in parts], "params": parts[0][1],
                        "parts": [{"action": a, "params": p} for a, p in parts]}
    with open(os.path.join(tmp, "labels.json"), "w") as fh:
        json.dump(labels, fh, indent=0, sort_keys=True)
    summary = {"root": root, "motions": len(results), "captions": int(sum(r[2] for r in results)),
               "actions": len({a for r in results for a, _ in r[3]}), "frames": int(sum(r[1] for r in results))}
    summary["seconds"] = round(time.time() - start, 2)
    done = {"format": _FORMAT_VERSION, "num_motions": num_motions, "seed": seed, "fps": fps,
            "min_length": min_length, "max_length": max_length, **{k: summary[k] for k in ("motions", "captions", "actions", "frames")}}
    with open(os.path.join(tmp, DONE_FILE), "w") as fh:
        json.dump(done, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    if os.path.exists(os.path.join(root, DONE_FILE)) and _read_done(root) == _done_settings(done):
        shutil.rmtree(tmp, ignore_errors=True)  # another process finished the same set first
    else:
        if os.path.isdir(root):
            shutil.rmtree(root)
        os.replace(tmp, root)
    summary["seconds"] = round(time.time() - start, 2)
    return summary


def _done_settings(done: dict) -> dict:
    return {k: done.get(k) for k in ("format", "num_motions", "seed", "fps", "min_length", "max_length")}


def _read_done(root: str) -> Optional[dict]:
    """The build settings stored in root/DONE, or None if it is missing or unreadable."""
    try:
        with open(os.path.join(root, DONE_FILE)) as fh:
            return _done_settings(json.load(fh))
    except (OSError, ValueError):
        return None


def ensure_synthetic_dataset(cfg) -> str:
    """Build the embedded data set into cfg.dataset_root unless a complete one with the same
    settings is there already; returns the root."""
    root = cfg.dataset_root
    wanted = {"format": _FORMAT_VERSION, "num_motions": cfg.synthetic_num_motions, "seed": cfg.synthetic_seed,
              "fps": cfg.fps, "min_length": cfg.min_motion_length, "max_length": cfg.max_motion_length}
    if _read_done(root) == wanted:
        return root
    print(f"building the embedded synthetic data set ({cfg.synthetic_num_motions} motions) in {root} ...", flush=True)
    summary = build_synthetic_dataset(root, cfg.synthetic_num_motions, cfg.synthetic_seed, cfg.fps,
                                      cfg.min_motion_length, cfg.max_motion_length)
    print(f"built {summary['motions']} motions, {summary['captions']} captions, {summary['actions']} actions "
          f"({summary['frames']} frames) in {summary['seconds']:.1f} s", flush=True)
    return root


def main(argv=None) -> None:
    import config
    parser = config.make_parser("Build the embedded synthetic motion data set in the HumanML3D layout.",
                                prog="synthetic.py")
    parser.add_argument("--force", action="store_true", help="rebuild even if a complete set is there")
    args = parser.parse_args(argv)
    cfg = config.config_from_args(args, parser)
    if args.force and os.path.exists(os.path.join(cfg.dataset_root, DONE_FILE)):
        os.remove(os.path.join(cfg.dataset_root, DONE_FILE))
    ensure_synthetic_dataset(cfg)


if __name__ == "__main__":
    main()
