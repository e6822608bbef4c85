"""Actions that move the feet: walking, jogging, running and walking backwards (one gait
model), sidesteps, turns and spins in place, jumps (in place and forward) and hops.

Each animator writes its channels into a Timeline from frame t0 on and returns its end
frame; actions.py lists them in the action table.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .body import ANKLE_HEIGHT, GRAVITY, SIDE_SIGN, UP, heading_axes
from .curves import envelope, hermite, minjerk, ramp
from .timeline import FootEvent, FootRoll, Timeline, both_arms


# ---------------------------------------------------------------------------------------
# Gaits: walk, jog, run, walk backwards
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Gait:
    speed: float  # m/s (< 0: backwards)
    period: float  # s per step
    swing: float  # swing time per step period; > 1: flight phases (both feet up between steps)
    heel_off: float  # rad the heel rises about the toe before each swing
    lift: float  # m the swinging foot rises
    bob: float  # m the pelvis bobs
    arm_swing: float  # rad
    lean: float  # rad forward lean of the chest


# Calibrated (synthetic/speeds.py measures them, bench/bench_speeds.py prints them) to the real
# Bandai Namco takes (walk moving speed: elderly 0.75, exhausted 1.04, normal 1.13, active 1.45 m/s;
# cadence 110-126 steps/min; step 0.40-0.72 m; pelvis bounce 3-10 cm; wrist swing 0.2-0.5 m;
# runs 2.8-3.4 m/s at 136-154 steps/min, 1.2-1.5 m steps) and to published adult gait figures
# (comfortable walking 1.2-1.4 m/s, 100-120 steps/min, 0.6-0.8 m steps; running 2.5-4 m/s at
# 150-180 steps/min). "slow" stands for the tired and elderly styles, "fast" for the brisk one.
GAITS = {
    ("walk", "slow"): Gait(0.90, 0.58, 0.78, 0.85, 0.07, 0.011, 0.40, 0.02),
    ("walk", "normal"): Gait(1.22, 0.54, 0.80, 1.00, 0.08, 0.010, 0.55, 0.04),
    ("walk", "fast"): Gait(1.55, 0.48, 0.82, 1.05, 0.09, 0.016, 0.72, 0.08),
    ("jog", "slow"): Gait(1.90, 0.40, 1.12, 0.85, 0.14, 0.025, 0.85, 0.10),
    ("jog", "normal"): Gait(2.40, 0.38, 1.15, 0.90, 0.16, 0.028, 0.95, 0.12),
    ("run", "normal"): Gait(3.00, 0.38, 1.25, 0.95, 0.24, 0.028, 1.25, 0.16),
    ("run", "fast"): Gait(3.50, 0.36, 1.30, 1.00, 0.28, 0.030, 1.40, 0.22),
    ("walk_backward", "slow"): Gait(-0.60, 0.64, 0.75, 0.0, 0.05, 0.008, 0.20, -0.02),
    ("walk_backward", "normal"): Gait(-0.80, 0.58, 0.75, 0.0, 0.06, 0.010, 0.25, -0.02),
}


@dataclass
class _Stride:
    """The step schedule of one gait in this motion (times in frames)."""
    gait: Gait
    speed: float  # m/s, the gait's speed with this motion's variation
    step_frames: float  # step period
    swing_frames: float
    t_lift: np.ndarray  # (steps,) when each swing starts
    t_land: np.ndarray  # (steps,) when each swing ends
    t_stop: float  # when the pelvis comes to rest
    first: int  # side of the first step

    @property
    def flight(self) -> bool:
        return self.gait.swing > 1.0


def animate_gait(tl: Timeline, rng, p: dict, t0: int, gait_name: str) -> int:
    """Walk / jog / run / walk backwards: alternating steps, feet placed under the pelvis path."""
    gait = GAITS[(gait_name, p["speed"])]
    speed = gait.speed * rng.uniform(0.9, 1.1)
    step_frames = gait.period * tl.fps * tl.style.tempo ** 0.5
    swing_frames = gait.swing * step_frames
    n_steps = int(p["steps"])
    first = int(rng.integers(2))
    t_lift = t0 + 0.3 * tl.fps + step_frames * np.arange(n_steps)  # (steps,)
    t_land = t_lift + swing_frames
    stride = _Stride(gait, speed, step_frames, swing_frames, t_lift, t_land, t_land[-1] + 0.25 * step_frames, first)
    tl.check(stride.t_stop + tl.fps)
    up, down, yaw, left, stop = _gait_pelvis_path(tl, stride, p, t0)
    _gait_steps(tl, stride, yaw, left, stop)
    _gait_body(tl, stride, (up * down)[t0:stop + int(0.4 * tl.fps)], t0, gait_name in ("jog", "run"))
    return stop


def _gait_pelvis_path(tl: Timeline, stride: _Stride, p: dict, t0: int):
    """Move the pelvis along its (possibly curving) path. The speed ramps up from the first
    step, cruises, and ramps down into the last steps; faster gaits take more steps to reach
    speed and to stop. Returns the speed ramps up, down (capacity,), the heading yaw
    (capacity,), its left axis (capacity, 3) and the frame the pelvis stops."""
    fps, t, ts = tl.fps, tl.frames, stride.step_frames
    ramp_frames = (0.9 + 0.3 * abs(stride.speed)) * ts
    up = ramp(t, stride.t_lift[0] - 0.35 * ts, ramp_frames)  # (capacity,)
    down = 1.0 - ramp(t, stride.t_land[-1] + 0.2 * ts - ramp_frames, ramp_frames)
    rate = stride.speed / fps * up * down  # metres per frame
    rate[: t0] = 0.0
    yaw0 = tl.heading_at(t0)
    turn = {"none": 0.0, "left": 1.0, "right": -1.0}[p.get("turn", "none")] * math.radians(p.get("turn_angle", 0))
    span = stride.t_stop - stride.t_lift[0]
    mid0, mid1 = stride.t_lift[0] + 0.3 * span, stride.t_lift[0] + 0.8 * span
    yaw = yaw0 + turn * ramp(t, mid0, mid1 - mid0)  # (capacity,)
    fwd, left = heading_axes(yaw)
    step_xz = rate[:, None] * fwd[:, [0, 2]]  # (capacity, 2)
    xz = tl.root_xz[t0] + np.concatenate([np.zeros((1, 2)), np.cumsum(step_xz[t0:-1], 0)])
    stop = int(math.ceil(stride.t_stop)) + 1
    tl.root_xz[t0:] = xz[: tl.n - t0]
    tl.yaw[t0:] = yaw[t0:]
    tl.hold_from(stop)
    return up, down, yaw, left, stop


def _gait_steps(tl: Timeline, stride: _Stride, yaw: np.ndarray, left: np.ndarray, stop: int) -> None:
    """Each step lands where the pelvis will be a little into that foot's next stance; heel
    strike and push-off rock the foot about its heel and toe so the legs reach the floor with
    the pelvis only a little lower than when standing."""
    gait, ts, flight = stride.gait, stride.step_frames, stride.flight
    place = 0.40 if not flight else 0.45  # where in its stance the pelvis passes over the foot
    tf_lift = np.round(stride.t_lift).astype(int)
    tf_land = np.round(stride.t_land).astype(int)
    stance = int(round(2 * ts - stride.swing_frames))  # frames each foot is down between two swings
    strike = 0.0 if stride.speed < 0 else (0.32 if not flight else 0.12)
    strike_frames = max(1, min(int(round((0.18 if not flight else 0.1) * ts)), stance - 2))
    heel_frames = max(1, min(int(round((0.4 if not flight else 0.3) * ts)), stance - strike_frames - 1))
    n_steps = len(stride.t_lift)
    for k in range(n_steps):
        side = (stride.first + k) % 2
        next_lift = stride.t_lift[k] + 2 * ts  # the same foot's next lift, had the gait gone on
        t_mid = int(min(round(stride.t_land[k] + place * (next_lift - stride.t_land[k])), stop))
        pos = tl.root_xz[t_mid] + SIDE_SIGN[side] * tl.style.foot_width * left[t_mid, [0, 2]]
        heel_angle = gait.heel_off * (0.6 if k < 1 else 1.0) if gait.heel_off > 0 else 0.0
        roll = FootRoll(heel_angle, heel_frames, strike if k < n_steps - 2 else 0.5 * strike, strike_frames)
        to_pose = (pos[0], pos[1], yaw[t_mid] - SIDE_SIGN[side] * tl.style.toe_out)
        tl.step(side, int(tf_lift[k]), int(tf_land[k]), to_pose, gait.lift, roll, in_reach="none" if flight else "both")


def _gait_body(tl: Timeline, stride: _Stride, env: np.ndarray, t0: int, arms_bent: bool) -> None:
    """Bob, sway, pelvis rotation, arm swing and lean, all scaled by the speed envelope env (m,)."""
    gait, flight, first = stride.gait, stride.flight, stride.first
    tt = tl.frames[t0:t0 + len(env)]
    psi = (tt - stride.t_lift[0]) / stride.step_frames  # (m,) gait phase in steps
    c = gait.swing / 2.0
    bob_phase = (psi - c - 0.5) if flight else (psi - c)
    off = np.zeros((len(env), 3))  # (m, 3) pelvis offset (left, up, forward)
    off[:, 1] = env * gait.bob * (np.cos(2 * np.pi * bob_phase) - (1.0 if not flight else 0.0))
    sway = 0.025 if not flight else 0.012
    off[:, 0] = env * sway * -SIDE_SIGN[first] * np.cos(np.pi * (psi - c))
    tl.add_curve("root_off", None, t0, off)
    tl.add_curve("pelvis_rot", 1, t0, -off[:, 0])  # the pelvis dips toward the swinging leg
    # The pelvis turns with the swinging leg and the chest turns against it.
    twist = env * 0.07 * SIDE_SIGN[first] * np.sin(np.pi * (psi - c))
    tl.add_curve("spine", 2, t0, -1.3 * twist)
    tl.yaw[t0:t0 + len(env)] += twist
    tl.add_curve("spine", 0, t0, env * gait.lean)
    tl.add_curve("pelvis_rot", 0, t0, env * gait.lean * 0.5)
    arm = tl.style.arm_swing * gait.arm_swing * env * np.cos(np.pi * (psi - gait.swing))
    arm_curve = np.zeros((len(env), 2))  # (m, 2) elevation of each arm
    arm_curve[:, 1 - first] = arm
    arm_curve[:, first] = -arm
    tl.add_curve("arm", (slice(None), 0), t0, arm_curve)
    if arms_bent:  # jogging and running: forearms carried up, elbows bent
        tl.add_curve("arm", None, t0, both_arms(env, elevation=0.35, azimuth=-0.15, reach=-0.35))


# ---------------------------------------------------------------------------------------
# Sidesteps, turns and spins
# ---------------------------------------------------------------------------------------
def animate_sidestep(tl: Timeline, rng, p: dict, t0: int) -> int:
    """Step-together sidesteps: the leading foot steps out, the other closes."""
    fps = tl.fps
    lead = 0 if p["direction"] == "left" else 1
    period = {"slow": 0.70, "normal": 0.55, "fast": 0.42}[p["speed"]] * fps * tl.style.tempo ** 0.5
    n_pairs = int(p["steps"])
    width = rng.uniform(0.22, 0.34)
    tsw = 0.72 * period
    _, left = heading_axes(np.array(tl.heading_at(t0)))
    direction = SIDE_SIGN[lead] * left[[0, 2]]  # (2,) xz
    start_lift = t0 + 0.25 * fps
    t_end = start_lift + (2 * n_pairs - 1) * period + tsw
    tl.check(t_end + fps)
    for k in range(2 * n_pairs):
        side = lead if k % 2 == 0 else 1 - lead
        a = int(round(start_lift + k * period))
        b = int(round(start_lift + k * period + tsw))
        x, z, foot_yaw = tl.feet[side]
        to = np.array([x, z]) + width * direction
        tl.step(side, a, b, (to[0], to[1], foot_yaw), 0.05)
    t = tl.frames
    t_a, t_b = start_lift - 0.15 * fps, t_end + 0.1 * fps
    shift = width * n_pairs * ramp(t, t_a, t_b - t_a)  # (capacity,)
    stop = int(math.ceil(t_b)) + 1
    tl.root_xz[t0:] = tl.root_xz[t0] + shift[t0:, None] * direction[None]
    tl.hold_from(stop)
    env = envelope(t[t0:stop + 1], t_a, t_b, 0.3 * fps, 0.3 * fps)
    osc = np.sin(np.pi * (t[t0:stop + 1] - start_lift) / period)
    tl.add_curve("root_off", 1, t0, env * 0.012 * (np.abs(osc) - 1))
    side_arm = np.zeros((len(env), 2))  # (m, 2) azimuth of each arm
    side_arm[:, :] = (env * 0.12)[:, None]
    tl.add_curve("arm", (slice(None), 1), t0, side_arm)
    return stop


def animate_turn(tl: Timeline, rng, p: dict, t0: int) -> int:
    """Turning in place by 90 or 180 degrees."""
    return _turn_in_place(tl, p, t0, spin=False)


def animate_spin(tl: Timeline, rng, p: dict, t0: int) -> int:
    """Spinning around once or twice, arms out."""
    return _turn_in_place(tl, p, t0, spin=True)


def _turn_in_place(tl: Timeline, p: dict, t0: int, spin: bool) -> int:
    """Stepping around on the spot while the heading rotates."""
    fps = tl.fps
    sign = 1.0 if p["direction"] == "left" else -1.0
    angle = math.radians(p["angle"]) if not spin else 2 * math.pi * p["turns"]
    if spin:
        period, per_step = {"normal": 0.34, "fast": 0.28}[p["speed"]], math.radians(110)
    else:
        period, per_step = {"slow": 0.65, "normal": 0.50, "fast": 0.40}[p["speed"]], math.radians(95)
    period *= fps * tl.style.tempo ** 0.5
    n_steps = 2 * int(math.ceil(angle / per_step - 1e-9))
    lead = 0 if sign > 0 else 1
    t_lift = t0 + 0.2 * fps + period * np.arange(n_steps)  # (steps,)
    t_land = t_lift + 0.75 * period
    tl.check(t_land[-1] + fps)
    t = tl.frames
    t_a, t_b = t_lift[0] - 0.1 * fps, t_land[-1]
    yaw = tl.heading_at(t0) + sign * angle * ramp(t, t_a, t_b - t_a)  # (capacity,)
    stop = int(math.ceil(t_b)) + 1
    tl.yaw[t0:] = yaw[t0:]
    tl.hold_from(stop)
    center = tl.root_xz[t0].copy()
    for k in range(n_steps):
        side = (lead + k) % 2
        t_target = int(min(round(t_land[k] + 0.6 * period), stop))
        _, left = heading_axes(np.array(yaw[t_target]))
        pos = center + SIDE_SIGN[side] * tl.style.foot_width * left[[0, 2]]
        tl.step(side, int(round(t_lift[k])), int(round(t_land[k])),
                (pos[0], pos[1], yaw[t_target] - SIDE_SIGN[side] * tl.style.toe_out), 0.05 if not spin else 0.06)
    env = envelope(t[t0:stop + int(0.3 * fps)], t_a, t_b + 0.2 * fps, 0.3 * fps, 0.35 * fps)
    tl.add_curve("root_off", 1, t0, -0.02 * env)
    tl.add_curve("spine", 2, t0, 0.12 * sign * env)
    tl.add_curve("neck", 1, t0, 0.2 * sign * env)
    if spin:
        tl.add_curve("arm", None, t0, both_arms(env, elevation=0.9, azimuth=0.9))
    return stop


# ---------------------------------------------------------------------------------------
# Jumps and hops
# ---------------------------------------------------------------------------------------
_TAKEOFF_DROP = -0.015  # m pelvis offset at take-off and touch-down


@dataclass
class _Jumps:
    """A series of jumps (with both feet) or hops (one_leg: the stance side); times in frames."""
    count: int
    height: float  # m the pelvis rises
    distance: float  # m travelled forward per jump
    crouch: float  # m the pelvis drops before each take-off
    one_leg: Optional[int]
    takeoff_speed: float = 0.0  # m/s
    flight_frames: int = 0
    push_frames: int = 0
    absorb_frames: int = 0
    rise: np.ndarray = None  # (T,) vertical pelvis offset from t0 on
    takeoffs: list = None  # frames
    landings: list = None

    @property
    def sides(self) -> list:
        return [0, 1] if self.one_leg is None else [self.one_leg]


def animate_jump(tl: Timeline, rng, p: dict, t0: int) -> int:
    """Jumps in place with both feet."""
    return _jump(tl, rng, p, t0, forward=False)


def animate_jump_forward(tl: Timeline, rng, p: dict, t0: int) -> int:
    """Jumps forward with both feet."""
    return _jump(tl, rng, p, t0, forward=True)


def animate_hop(tl: Timeline, rng, p: dict, t0: int) -> int:
    """Hops on one leg, the other held up behind."""
    return _jump(tl, rng, p, t0, one_leg=0 if p["leg"] == "left" else 1)


def _jump(tl: Timeline, rng, p: dict, t0: int, forward: bool = False, one_leg: Optional[int] = None) -> int:
    """Crouch, push (heels rise about the toes), ballistic flight, landing absorbed by the
    knees; the feet follow the pelvis through each flight."""
    jumps = _size_jumps(rng, p, forward, one_leg)
    stop = _jump_heights(tl, jumps, t0)
    fwd, _ = heading_axes(np.array(tl.heading_at(t0)))
    if jumps.distance > 0:
        _jump_path(tl, jumps, t0, fwd)
    _jump_feet(tl, jumps, t0, fwd)
    _jump_upper_body(tl, jumps, t0, stop)
    if one_leg is not None:
        _hop_balance(tl, jumps, t0, stop)
    return stop


def _size_jumps(rng, p: dict, forward: bool, one_leg: Optional[int]) -> _Jumps:
    """How high, how far and how deep the jumps (or hops) of parameters p go."""
    if one_leg is not None:
        height = rng.uniform(0.09, 0.13)
        distance = rng.uniform(0.18, 0.3) if p["forward"] else 0.0
        return _Jumps(int(p["reps"]), height, distance, 0.07, one_leg)
    if forward:
        height = {"short": 0.14, "normal": 0.2, "far": 0.26}[p["distance"]] * rng.uniform(0.9, 1.1)
        distance = {"short": 0.45, "normal": 0.75, "far": 1.05}[p["distance"]] * rng.uniform(0.9, 1.1)
    else:
        height = {"low": 0.15, "normal": 0.24, "high": 0.36}[p["height"]] * rng.uniform(0.9, 1.1)
        distance = 0.0
    return _Jumps(int(p["reps"]), height, distance, 0.12 + 0.5 * height, None)


def _jump_heights(tl: Timeline, jumps: _Jumps, t0: int) -> int:
    """The vertical pelvis offset, piece by piece (each piece drops its first sample): crouch,
    then per jump push, flight and absorb, then recover. Fills the timing fields of `jumps`
    and returns the end frame. The flight time is rounded to whole frames."""
    fps = tl.fps
    v0 = math.sqrt(2 * GRAVITY * jumps.height)
    n_flight = max(3, int(round(2 * v0 / GRAVITY * fps)))
    v0 = GRAVITY * n_flight / (2 * fps)
    n_crouch = tl.frames_of(0.45 if jumps.one_leg is None else 0.3)
    n_push = max(3, int(round(0.2 * fps)))
    n_absorb = max(3, int(round(0.2 * fps)))
    n_recover = tl.frames_of(0.45)
    crouch = jumps.crouch
    dy = [np.array([0.0]), hermite(0.0, 0.0, -crouch, 0.0, n_crouch)[1:]]
    takeoffs, landings = [], []
    for j in range(jumps.count):
        dy.append(hermite(dy[-1][-1], 0.0, _TAKEOFF_DROP, v0 / fps, n_push)[1:])
        takeoffs.append(t0 + sum(len(a) for a in dy) - 1)
        tf = np.arange(1, n_flight + 1) / fps  # (flight,) seconds
        dy.append(_TAKEOFF_DROP + v0 * tf - 0.5 * GRAVITY * tf ** 2)
        landings.append(t0 + sum(len(a) for a in dy) - 1)
        last = j == jumps.count - 1
        dy.append(hermite(_TAKEOFF_DROP, -v0 / fps, -crouch * (0.8 if last else 1.0), 0.0, n_absorb)[1:])
    dy.append(hermite(dy[-1][-1], 0.0, 0.0, 0.0, n_recover)[1:])
    rise = np.concatenate(dy)  # (T,)
    stop = t0 + len(rise) - 1
    tl.check(stop + fps)
    tl.add_curve("root_off", 1, t0, rise)
    jumps.takeoff_speed, jumps.flight_frames, jumps.push_frames, jumps.absorb_frames = v0, n_flight, n_push, n_absorb
    jumps.rise, jumps.takeoffs, jumps.landings = rise, takeoffs, landings
    return stop


def _jump_path(tl: Timeline, jumps: _Jumps, t0: int, fwd: np.ndarray) -> None:
    """Horizontal pelvis path of forward jumps: lean back in the crouch, fly at constant speed."""
    xz = tl.root_xz[t0].copy()
    path = np.zeros(len(jumps.rise))  # (T,) metres along fwd
    pos, prev_end = 0.0, 0
    for j in range(jumps.count):
        a, b = jumps.takeoffs[j] - t0, jumps.landings[j] - t0
        vx = jumps.distance / (jumps.flight_frames + 0.8 * (jumps.push_frames + jumps.absorb_frames))  # m/frame
        s_to = pos + 0.1 * jumps.distance
        path[prev_end:a + 1] = hermite(pos, 0.0, s_to, vx, a - prev_end)
        path[a:b + 1] = s_to + vx * np.arange(b - a + 1)
        end_j = b + jumps.absorb_frames if j < jumps.count - 1 else len(path) - 1
        target = pos + jumps.distance
        path[b:end_j + 1] = hermite(path[b], vx, target, 0.0, end_j - b)
        pos, prev_end = target, end_j
    path[prev_end:] = pos
    tl.root_xz[t0:t0 + len(path)] = xz + path[:, None] * fwd[[0, 2]]
    tl.root_xz[t0 + len(path):] = tl.root_xz[t0 + len(path) - 1]


def _jump_feet(tl: Timeline, jumps: _Jumps, t0: int, fwd: np.ndarray) -> None:
    """Each foot: a heel-off during the push, then a flight that follows the pelvis."""
    heel = 0.7 if jumps.one_leg is None else 0.5
    for a, b in zip(jumps.takeoffs, jumps.landings):
        u = np.arange(b - a + 1) / (b - a)  # (flight+1,)
        rise = jumps.rise[a - t0:b - t0 + 1] - _TAKEOFF_DROP
        tuck = (0.10 if jumps.one_leg is None else 0.06) * np.sin(np.pi * u) ** 2
        for side in jumps.sides:
            x, z, foot_yaw = tl.feet[side]
            start = tl.pivot_ankle(side, heel)
            end = np.array([x, ANKLE_HEIGHT[side], z]) + jumps.distance * fwd
            s = minjerk(u)[:, None]
            ankle = start + (end - start) * s  # (flight+1, 3)
            ankle[:, 1] += rise + tuck
            pitch = heel * (1 - s[:, 0]) + 0.2 * np.sin(np.pi * u) ** 2
            tl.add_foot_event(side, FootEvent(a, ankle, np.full(len(u), foot_yaw), pitch, (end[0], end[2], foot_yaw),
                                              FootRoll(heel_angle=heel, heel_frames=max(1, jumps.push_frames - 1))))


def _jump_upper_body(tl: Timeline, jumps: _Jumps, t0: int, stop: int) -> None:
    """Lean into the crouch; the arms swing back, then up through the flight."""
    keys_t, bend, arm_e = [t0], [0.0], [0.0]
    for takeoff, landing in zip(jumps.takeoffs, jumps.landings):
        keys_t += [takeoff - jumps.push_frames, takeoff + 1, landing + max(1, jumps.absorb_frames // 2)]
        bend += [0.45, 0.02, 0.3]
        arm_e += [-0.7, 1.5 if jumps.height > 0.3 else 1.0, -0.2]
    keys_t.append(stop)
    bend.append(0.0)
    arm_e.append(0.0)
    keys_t = np.maximum.accumulate(np.array(keys_t, dtype=np.float64) + np.arange(len(keys_t)) * 1e-3)
    scale = 1.0 if jumps.one_leg is None else 0.4
    tl.add_keys("spine", 0, keys_t, scale * np.array(bend) * 0.6)
    tl.add_keys("pelvis_rot", 0, keys_t, scale * np.array(bend) * 0.5)
    arm_vals = np.repeat(np.array(arm_e)[:, None], 2, axis=1) * scale  # (K, 2) elevation of each arm
    tl.add_keys("arm", (slice(None), 0), keys_t, arm_vals)


def _hop_balance(tl: Timeline, jumps: _Jumps, t0: int, stop: int) -> None:
    """Hold the free leg up and lean over the stance leg, arms out for balance."""
    free = 1 - jumps.one_leg
    _hold_free_leg(tl, free, (t0, stop), jumps.takeoffs[0] - jumps.push_frames,
                   jumps.landings[-1] + jumps.absorb_frames)
    lean = envelope(tl.frames[t0:stop + 1], t0, stop, 0.35 * tl.fps, 0.35 * tl.fps)
    tl.add_curve("root_off", 0, t0, -SIDE_SIGN[free] * 0.07 * lean)
    tl.add_curve("pelvis_rot", 1, t0, SIDE_SIGN[free] * 0.05 * lean)
    tl.add_curve("arm", None, t0, both_arms(lean, elevation=0.35, azimuth=0.6))


def _hold_free_leg(tl: Timeline, side: int, span: tuple, t_up: int, t_down: int) -> None:
    """Lift one foot off the floor (knee bent, foot behind) soon after span[0], by t_up at the
    latest, and put it back down from t_down to just before span[1], beside the other foot
    (which may have hopped forward)."""
    t0, t1 = span
    fps = tl.fps
    lift_start = t0 + max(2, int(0.25 * fps))
    lift_end = max(lift_start + 3, min(t_up, lift_start + int(0.35 * fps)))
    drop_end = t1 - max(2, int(0.15 * fps))
    drop_start = min(max(t_down, lift_end + 1), drop_end - 3)
    frames = np.arange(lift_start, drop_end + 1)
    hips = tl.hip_plan(frames, side)  # (N, 3)
    fwd, left = heading_axes(tl.yaw[frames])
    held = hips + (-0.22) * fwd - 0.50 * UP + 0.02 * SIDE_SIGN[side] * left
    start = tl.planted_ankle(side)
    yaw_end = tl.feet[side][2]
    other = tl.feet[1 - side]
    _, left_end = heading_axes(np.array(tl.heading_at(t1)))
    end_xz = np.array([other[0], other[1]]) + 2 * SIDE_SIGN[side] * tl.style.foot_width * left_end[[0, 2]]
    end = np.array([end_xz[0], ANKLE_HEIGHT[side], end_xz[1]])
    up = ramp(frames.astype(float), lift_start, lift_end - lift_start)  # (N,)
    down = ramp(frames.astype(float), drop_start, drop_end - drop_start)
    ankle = start * (1 - up)[:, None] + held * up[:, None]  # (N, 3)
    ankle = ankle * (1 - down)[:, None] + end * down[:, None]
    pitch = 0.5 * up * (1 - down)
    yaw = yaw_end * (1 - down) + tl.heading_at(t1) * down - SIDE_SIGN[side] * tl.style.toe_out * down
    tl.add_foot_event(side, FootEvent(lift_start, ankle, yaw, pitch, (end[0], end[2], float(yaw[-1]))))
