"""Motions: a random program of one action or two in a row, animated into a timeline, idle
variation added, rendered to joints and captioned.

Every motion of a data set is a pure function of (seed, index): a numpy Generator seeded
with both drives every draw, in a fixed order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .actions import ACTION_TABLE, ACTIONS, animate, check_params, sample_params
from .captions import make_captions
from .curves import smooth_noise
from .render import render_joints
from .timeline import MotionTooLong, Timeline, sample_style

# Idle variation everywhere: breathing, sway and small head drift. (channel, index, amplitude)
_IDLE_NOISE = (("spine", 0, 0.03), ("spine", 1, 0.02), ("spine", 2, 0.04), ("neck", 0, 0.06),
               ("neck", 1, 0.10), ("root_off", 0, 0.012), ("root_off", 2, 0.008))


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


def _complete_parts(parts: list, rng: np.random.Generator) -> list:
    """Check a program and sample the parameters it leaves out."""
    for i, (action, params) in enumerate(parts):
        check_params(action, params or {})
        if action == "sit_down" and not (params or {}).get("stand_up", True) and i < len(parts) - 1:
            raise ValueError("a sit_down with stand_up=False must be the last part of a motion")
    parts = [(a, {**sample_params(a, rng), **(p or {})}) for a, p in parts]
    for action, params in parts:  # keep a walk's turn and turn angle consistent
        if action == "walk":
            params["turn_angle"] = 0 if params["turn"] == "none" else (params["turn_angle"] or 90)
    return parts


def _animate_parts(tl: Timeline, parts: list, rng: np.random.Generator) -> None:
    """Write the parts one after the other; a part that moves the feet starts once both feet
    are planted, others may overlap the end of the one before."""
    fps = tl.fps
    t = int(round(rng.uniform(0.2, 0.7) * fps))
    for i, (action, p) in enumerate(parts):
        if i > 0:
            if ACTION_TABLE[action].moves_feet:
                t = max(tl.t_feet + int(rng.uniform(0.05, 0.3) * fps), tl.t_body - int(rng.uniform(0.1, 0.4) * fps))
            else:
                t = max(tl.t_feet - int(rng.uniform(0.0, 0.25) * fps), tl.t_body - int(rng.uniform(0.1, 0.4) * fps))
        stop = animate(action, tl, rng, p, t)
        tl.t_body = max(tl.t_body, stop)


def _add_idle_noise(tl: Timeline, n: int, rng: np.random.Generator) -> None:
    for channel, index, amplitude in _IDLE_NOISE:
        getattr(tl, channel)[:n, index] += smooth_noise(rng, n, tl.fps, amplitude)
    for side in range(2):
        tl.arm[:n, side, 0] += smooth_noise(rng, n, tl.fps, 0.05)
        tl.arm[:n, side, 1] += smooth_noise(rng, n, tl.fps, 0.05)


def render_parts(parts: list, rng: np.random.Generator, fps: int = 20, min_length: int = 40,
                 max_length: int = 196) -> SyntheticMotion:
    """Animate a program [(action, params), ...]; missing params are sampled from rng.

    The motion has T frames with min_length + 1 <= T <= max_length + 1 (so its features have
    min_length..max_length frames). Raises MotionTooLong (a ValueError) if it does not fit.
    """
    parts = _complete_parts(parts, rng)
    style = sample_style(rng)
    tl = Timeline(fps, max_length + 2 + 3 * fps, style, yaw0=rng.uniform(-0.4, 0.4))
    _animate_parts(tl, parts, rng)
    n = max(tl.t_body, tl.t_feet) + int(round(rng.uniform(0.3, 0.9) * fps)) + 1
    n = max(n, min_length + 1)
    if n > max_length + 1:
        raise MotionTooLong()
    _add_idle_noise(tl, n, rng)
    joints, local, pelvis, planted = render_joints(tl, n)
    return SyntheticMotion(joints=joints, local_quats=local, root_pos=pelvis, planted=planted,
                           parts=parts, captions=make_captions(parts, rng), fps=fps)


def generate_motion(seed: int, index: int, fps: int = 20, min_length: int = 40,
                    max_length: int = 196) -> SyntheticMotion:
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
