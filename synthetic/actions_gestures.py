"""Actions done on the spot with the feet planted (a kick lifts one foot and puts it back):
squats, sitting down, bows, kicks, punches, waves, raising the arms and clapping.

Each animator writes its channels into a Timeline from frame t0 on and returns its end
frame; actions.py lists them in the action table.
"""
from __future__ import annotations

import math

import numpy as np

from .body import SHIN_LENGTH, SIDE_SIGN, THIGH_LENGTH, UP, heading_axes
from .curves import envelope, spline
from .timeline import FootEvent, Timeline, both_arms

_SIDES_OF = {"left": [0], "right": [1], "both": [0, 1]}  # a "hand"/"arms" parameter -> sides


# ---------------------------------------------------------------------------------------
# Whole-body actions: squats, sitting down, bows
# ---------------------------------------------------------------------------------------
def _dip_keys(tl: Timeline, t0: int, reps: int, down: int, hold: int, pause: float):
    """Keyframes of `reps` dips: down over `down` frames, held `hold`, back up, then a `pause`
    (seconds). Returns key times (K,) float64, levels (K,) (0: upright, 1: down) and the end
    frame."""
    keys_t, level = [t0], [0.0]
    t = t0
    for _ in range(reps):
        keys_t += [t + down, t + down + hold, t + 2 * down + hold]
        level += [1.0, 1.0, 0.0]
        t += 2 * down + hold + tl.frames_of(pause)
    stop = int(keys_t[-1])
    tl.check(stop + tl.fps)
    return np.array(keys_t, dtype=np.float64), np.array(level), stop


def animate_squat(tl: Timeline, rng, p: dict, t0: int) -> int:
    """Squats: hips down and back, chest leaning forward, arms forward for balance."""
    depth = {"half": 0.22, "deep": 0.40}[p["depth"]] * rng.uniform(0.9, 1.1)
    down = tl.frames_of({"slow": 1.1, "normal": 0.7}[p["speed"]])
    hold = tl.frames_of(rng.uniform(0.15, 0.4))
    kt, level, stop = _dip_keys(tl, t0, int(p["reps"]), down, hold, pause=0.15)
    tl.add_keys("root_off", 1, kt, -depth * level)
    tl.add_keys("root_off", 2, kt, -0.35 * depth * level)
    tl.add_keys("pelvis_rot", 0, kt, 0.45 * (depth / 0.4) * level)
    tl.add_keys("spine", 0, kt, 0.25 * (depth / 0.4) * level)
    tl.add_keys("neck", 0, kt, -0.3 * (depth / 0.4) * level)
    tl.add_keys("arm", None, kt, both_arms(level, elevation=1.4, azimuth=-0.2, reach=0.04))
    return stop


def animate_sit_down(tl: Timeline, rng, p: dict, t0: int) -> int:
    """Sitting down as onto a chair (no chair), and optionally standing back up."""
    fps = tl.fps
    drop = tl.h_stand - rng.uniform(0.44, 0.50)  # down to the seat height
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
    kt = np.array(kt)  # (K,)
    lvl, lean = np.array(lvl), np.array(lean)
    tl.add_keys("root_off", 1, kt, -drop * lvl, hold=hold_end)
    tl.add_keys("root_off", 2, kt, -0.30 * lvl, hold=hold_end)
    tl.add_keys("pelvis_rot", 0, kt, 0.9 * lean, hold=hold_end)
    tl.add_keys("spine", 0, kt, 0.5 * lean, hold=hold_end)
    tl.add_keys("neck", 0, kt, -0.4 * lean, hold=hold_end)
    arms = both_arms(lvl, azimuth=-0.25, reach=-0.05)  # (K, 2, 3)
    arms[:, :, 0] = (0.9 * lean + 0.55 * lvl)[:, None]
    tl.add_keys("arm", None, kt, arms, hold=hold_end)
    return stop


def animate_bow(tl: Timeline, rng, p: dict, t0: int) -> int:
    """Bows: bending at the hips and spine with the arms hanging, then back up."""
    angle = {"slight": 0.45, "deep": 0.95}[p["depth"]] * rng.uniform(0.9, 1.1)
    down = tl.frames_of(0.6 + 0.4 * angle)
    hold = tl.frames_of(rng.uniform(0.3, 0.8))
    kt, lvl, stop = _dip_keys(tl, t0, int(p["reps"]), down, hold, pause=0.2)
    tl.add_keys("pelvis_rot", 0, kt, 0.45 * angle * lvl)
    tl.add_keys("spine", 0, kt, 0.55 * angle * lvl)
    tl.add_keys("neck", 0, kt, 0.25 * lvl)
    tl.add_keys("root_off", 2, kt, -0.10 * angle * lvl)
    tl.add_keys("root_off", 1, kt, -0.02 * angle * lvl)
    tl.add_keys("arm", None, kt, both_arms(lvl, elevation=angle * 0.85))  # the arms keep hanging down
    return stop


# ---------------------------------------------------------------------------------------
# Kicks
# ---------------------------------------------------------------------------------------
_KICK_PHASES = np.array([0.0, 0.3, 0.52, 0.62, 0.8, 1.0])  # planted, chamber, strike, hold, retract, planted


def animate_kick(tl: Timeline, rng, p: dict, t0: int) -> int:
    """Front kicks: chamber (knee up), snap the foot forward and up, retract, put it back."""
    side = 0 if p["leg"] == "left" else 1
    strike = {"low": 0.9, "high": 1.7}[p["height"]] * rng.uniform(0.95, 1.05)  # thigh angle, rad
    n_kick = tl.frames_of(1.0 if p["height"] == "low" else 1.15)
    gap = tl.frames_of(0.35)
    shift = tl.frames_of(0.35)
    kicks = [t0 + shift + k * (n_kick + gap) for k in range(int(p["reps"]))]
    stop = kicks[-1] + n_kick + shift
    tl.check(stop + tl.fps)
    for a in kicks:
        _kick_once(tl, side, a, n_kick, strike)
    lean = envelope(tl.frames[t0:stop + 1], t0, stop, shift, shift)
    tl.add_curve("root_off", 0, t0, -SIDE_SIGN[side] * 0.06 * lean)
    tl.add_curve("pelvis_rot", 0, t0, -0.12 * lean)
    tl.add_curve("spine", 0, t0, -0.08 * lean)
    tl.add_curve("pelvis_rot", 1, t0, SIDE_SIGN[side] * 0.04 * lean)
    tl.add_curve("arm", None, t0, both_arms(lean, elevation=0.5, azimuth=0.5, reach=-0.2))
    return stop


def _kick_once(tl: Timeline, side: int, a: int, n_kick: int, strike: float) -> None:
    """One kick of the foot of `side` from frame a to a + n_kick, the thigh raised to `strike`
    rad: the leg is posed in its sagittal plane by thigh angle and knee flexion keys."""
    l1, l2 = THIGH_LENGTH[side], SHIN_LENGTH[side]
    frames = np.arange(a, a + n_kick + 1)
    hips = tl.hip_plan(frames, side)  # (N, 3)
    fwd, left = heading_axes(tl.yaw[frames])
    start = tl.planted_ankle(side)
    rel = start - hips[0]
    f0, up0 = (rel * fwd[0]).sum(), rel[1]
    lat = (rel * left[0]).sum()
    dist0 = math.hypot(f0, up0)
    cos_k = np.clip((l1 ** 2 + l2 ** 2 - dist0 ** 2) / (2 * l1 * l2), -1, 1)
    knee0 = math.pi - math.acos(cos_k)
    theta0 = math.atan2(f0, -up0) + math.asin(np.clip(l2 * math.sin(knee0) / dist0, -1, 1))
    key_u = _KICK_PHASES * n_kick
    theta = np.array([theta0, 0.675 * strike, strike, strike, 0.55, theta0])  # thigh angle from down
    knee = np.array([knee0, 1.9, 0.12, 0.12, 1.5, knee0])  # knee flexion
    u = frames - a
    th, kn = spline(key_u, theta, u), spline(key_u, knee, u)  # (N,)
    fwd_c = l1 * np.sin(th) + l2 * np.sin(th - kn)
    up_c = -l1 * np.cos(th) - l2 * np.cos(th - kn)
    ankle = hips + fwd * fwd_c[:, None] + left * lat + UP * up_c[:, None]  # (N, 3)
    ankle[0], ankle[-1] = start, start
    env = np.sin(np.pi * u / n_kick) ** 2
    x, z, foot_yaw = tl.feet[side]
    tl.add_foot_event(side, FootEvent(a, ankle, np.full(len(u), foot_yaw), 0.6 * env, (x, z, foot_yaw)))


# ---------------------------------------------------------------------------------------
# Arm gestures: punches, waves, raised arms, claps
# ---------------------------------------------------------------------------------------
def animate_punch(tl: Timeline, rng, p: dict, t0: int) -> int:
    """Straight punches from a guard, the chest turning into each one."""
    fps = tl.fps
    hands = _SIDES_OF[p["hand"]]
    n_in = tl.frames_of(0.4)
    strike = max(3, int(round({"normal": 0.22, "fast": 0.16}[p["speed"]] * fps)))
    back = max(3, int(round({"normal": 0.3, "fast": 0.22}[p["speed"]] * fps)))
    gap = tl.frames_of({"normal": 0.25, "fast": 0.08}[p["speed"]])
    t_first = t0 + n_in
    n = int(p["reps"])
    t_last = t_first + n * (strike + back + gap)
    stop = t_last + n_in
    tl.check(stop + fps)
    guard = np.array([1.55, -0.55, -0.45]) + rng.uniform(-0.05, 0.05, 3)  # arm offsets of a boxing guard
    for side in range(2):
        tl.add_keys("arm", side, [t0, t_first, t_last, stop], np.outer([0, 1, 1, 0], guard))
    extend = np.array([-0.05, 0.45, 1.43])  # from guard to a straight arm at shoulder height
    twist = []
    for k in range(n):
        side = hands[k % len(hands)]
        a = t_first + k * (strike + back + gap)
        tl.add_keys("arm", side, [a, a + strike, a + strike + back], np.outer([0, 1, 0], extend))
        twist.append((a, a + strike, a + strike + back, -SIDE_SIGN[side]))
    for a, b, c, sgn in twist:
        tl.add_keys("spine", 2, [a, b, c], [0.0, 0.3 * sgn, 0.0])
    stance = envelope(tl.frames[t0:stop + 1], t0, stop, n_in, n_in)
    tl.add_curve("root_off", 1, t0, -0.04 * stance)
    tl.add_curve("spine", 0, t0, 0.08 * stance)
    return stop


def _rhythm(tl: Timeline, rng, p: dict, t0: int, rates: dict, ramp_seconds: float):
    """Timing of a gesture repeated p["reps"] times at rates[p["speed"]] Hz (varied by up to
    10%), between a ramp in and a ramp out of ramp_seconds. Returns the frequency (Hz), the
    ramp frames, the frames of all repetitions, the end frame and the frames t (m,) from t0
    to the end."""
    freq = rates[p["speed"]] * rng.uniform(0.9, 1.1)
    n_ramp = tl.frames_of(ramp_seconds)
    n_reps = int(round(p["reps"] / freq * tl.fps))
    stop = t0 + 2 * n_ramp + n_reps
    tl.check(stop + tl.fps)
    return freq, n_ramp, n_reps, stop, tl.frames[t0:stop + 1]


def animate_wave(tl: Timeline, rng, p: dict, t0: int) -> int:
    """Waves: the hand raised above the shoulder, the forearm swinging side to side."""
    hands = _SIDES_OF[p["hand"]]
    freq, n_up, _, stop, t = _rhythm(tl, rng, p, t0, {"slow": 1.1, "normal": 1.6, "fast": 2.3}, 0.5)
    raise_env = envelope(t, t0, stop, n_up, n_up)  # (m,)
    wave_env = envelope(t, t0 + 0.6 * n_up, stop - 0.6 * n_up, 0.4 * n_up, 0.4 * n_up)
    osc = np.sin(2 * np.pi * freq * (t - t0 - n_up) / tl.fps)
    pose = np.array([2.35, 1.15, -0.25]) + rng.uniform(-0.06, 0.06, 3)
    for side in hands:
        values = np.outer(raise_env, pose)  # (m, 3)
        values[:, 0] += 0.22 * wave_env * osc
        values[:, 1] -= 0.28 * wave_env * osc
        tl.add_curve("arm", side, t0, values)
        tl.add_curve("elbow", side, t0, np.outer(raise_env, np.array([0.6, 0.0, 0.0])))
    if len(hands) == 1:
        tl.add_curve("spine", 1, t0, -SIDE_SIGN[hands[0]] * 0.05 * raise_env)
        tl.add_curve("neck", 1, t0, SIDE_SIGN[hands[0]] * 0.15 * raise_env)
    return stop


_RAISE_POSES = {  # arm channel offsets over neutral (elevation, azimuth, reach) and elbow hint offsets
    "front": (np.array([1.50, -0.20, 0.05]), np.array([0.0, 0.0, 0.0])),
    "side": (np.array([1.48, 1.30, 0.05]), np.array([0.0, 0.0, -0.5])),
    "up": (np.array([2.85, 0.15, 0.05]), np.array([0.5, 0.0, 0.0])),
}


def animate_raise_arms(tl: Timeline, rng, p: dict, t0: int) -> int:
    """Raising one or both straight arms to the front, the side or overhead, holding, lowering."""
    n_up = tl.frames_of(0.7)
    hold = tl.frames_of({"short": 0.4, "long": 1.4}[p["hold"]] * rng.uniform(0.8, 1.2))
    kt = [t0, t0 + n_up, t0 + n_up + hold, t0 + 2 * n_up + hold]
    stop = kt[-1]
    tl.check(stop + tl.fps)
    pose, hint = _RAISE_POSES[p["direction"]]
    pose = pose + rng.uniform(-0.06, 0.06, 3) * np.array([1, 1, 0])
    for side in _SIDES_OF[p["arms"]]:
        tl.add_keys("arm", side, kt, np.outer([0, 1, 1, 0], pose))
        tl.add_keys("elbow", side, kt, np.outer([0, 1, 1, 0], hint))
    if p["direction"] == "up":
        tl.add_keys("neck", 0, kt, [0.0, -0.2, -0.2, 0.0])
    return stop


def animate_clap(tl: Timeline, rng, p: dict, t0: int) -> int:
    """Claps in front of the chest."""
    _, n_in, n_clap, stop, t = _rhythm(tl, rng, p, t0, {"slow": 1.3, "normal": 2.0, "fast": 2.8}, 0.45)
    env = envelope(t, t0, stop, n_in, n_in)  # (m,)
    # Each clap is a raised cosine from open to closed (hands meet) and back to open.
    phase = np.clip((t - t0 - n_in) / max(n_clap, 1), 0, 1) * p["reps"]
    closing = 0.5 - 0.5 * np.cos(2 * np.pi * phase)
    open_pose = np.array([1.05, -0.05, -0.28])
    closed = np.array([1.12, -0.78, -0.22])
    inner = env[:, None] * (open_pose + (closed - open_pose) * closing[:, None])  # (m, 3)
    for side in range(2):
        tl.add_curve("arm", side, t0, inner)
    tl.add_curve("neck", 0, t0, 0.15 * env)
    return stop
