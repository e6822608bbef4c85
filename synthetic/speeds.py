"""How fast the people of a data set move: per-motion root speed, cadence, step length, bounce
and arm swing, measured on joints (pure maths), and read for a whole data set folder. The
generator's gaits (actions_locomotion.GAITS) are calibrated with these measures.

Measured per motion (joints (T, 22, 3) metres, y up, `fps` frames a second):

- speed: the median over the motion's frame steps of the pelvis' horizontal speed (m/s);
  standing frames count, so a "walk" that stands half of its frames has half a walk's speed;
- moving speed: the same median over the frames where the motion moves (its speed averaged
  over a second at least MOVING_SPEED);
- cadence (steps/min): how often the feet pass each other along the direction of travel (the
  fore-aft separation of the ankles changes sign once a step; it must swing past
  STEP_SEPARATION on each side to count), from the first step to the last;
- step length (m): the pelvis' path over those steps / their number;
- bounce (m) and arm swing (m): the peak-to-peak (p95 - p5) of the pelvis height, and of each
  wrist's fore-aft offset from the pelvis, over the moving frames.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

import numpy as np

import utils

MOVING_SPEED = 0.3  # m/s: a frame moves when its speed averaged over a second reaches this
STEP_SEPARATION = 0.05  # m: the ankles must be this far apart fore-aft on each side of a step
ANKLES = (7, 8)  # left, right
WRISTS = (20, 21)


@dataclass(frozen=True)
class GaitMeasures:
    """What one motion's root and feet do (see the module docstring)."""
    speed: float  # m/s, median over all frame steps
    moving_speed: float  # m/s, median over the moving frames (nan if none)
    cadence: float  # steps per minute from the first step to the last (nan if under 3 steps)
    step_length: float  # m (nan where the cadence is)
    moving_fraction: float  # of the frame steps
    bounce: float  # m, p95 - p5 of the pelvis height over the moving frames
    arm_swing: float  # m, p95 - p5 of each wrist's fore-aft offset from the pelvis, mean of both


def root_speeds(joints: np.ndarray, fps: int = 20) -> np.ndarray:
    """(T-1,) horizontal pelvis speed (m/s) of each frame step. joints (T >= 2, 22, 3)."""
    xz = np.asarray(joints, dtype=np.float64)[:, 0, [0, 2]]  # (T, 2)
    return np.linalg.norm(np.diff(xz, axis=0), axis=-1) * fps


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Moving average over `window` samples (edges averaged over the samples there are)."""
    kernel = np.ones(max(1, min(window, len(values))))
    return np.convolve(values, kernel, mode="same") / np.convolve(np.ones_like(values), kernel, mode="same")


def travel_directions(joints: np.ndarray) -> np.ndarray:
    """(T-1, 2) unit xz direction of travel of each frame step (the pelvis' displacement
    averaged over 9 steps, about a stride). joints (T >= 2, 22, 3)."""
    travel = np.diff(np.asarray(joints, dtype=np.float64)[:, 0, [0, 2]], axis=0)  # (T-1, 2)
    travel = np.stack([_smooth(c, 9) for c in travel.T], -1)
    return travel / np.maximum(np.linalg.norm(travel, axis=-1, keepdims=True), 1e-9)


def step_frames(joints: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """Frame steps (S,) at which a step is taken over the moving frame steps `moving` (T-1,)
    bool: where the ankles' fore-aft separation along the direction of travel changes sign,
    with STEP_SEPARATION hysteresis."""
    joints = np.asarray(joints, dtype=np.float64)
    apart = joints[1:, ANKLES[0]][:, [0, 2]] - joints[1:, ANKLES[1]][:, [0, 2]]  # (T-1, 2) left - right
    separation = (apart * travel_directions(joints)).sum(-1)  # (T-1,)
    side = np.where(separation > STEP_SEPARATION, 1, np.where(separation < -STEP_SEPARATION, -1, 0))
    frames = np.flatnonzero(moving & (side != 0))
    sides = side[frames]
    return frames[1:][sides[1:] != sides[:-1]]


def _excursion(values: np.ndarray) -> float:
    """p95 - p5 of values (nan if empty): a robust peak-to-peak."""
    return float(np.subtract(*np.percentile(values, [95, 5]))) if len(values) else float("nan")


def gait_measures(joints: np.ndarray, fps: int = 20) -> GaitMeasures:
    """Speed, moving speed, cadence, step length, bounce and arm swing of one motion.
    joints (T >= 2, 22, 3)."""
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (22, 3) or len(joints) < 2:
        raise ValueError(f"gait_measures expects (T>=2, 22, 3) joints, got {joints.shape}")
    speed = root_speeds(joints, fps)  # (T-1,)
    moving = _smooth(speed, max(1, fps)) >= MOVING_SPEED
    nan = float("nan")
    moving_speed = float(np.median(speed[moving])) if moving.any() else nan
    steps = step_frames(joints, moving)
    cadence = step_length = nan
    if len(steps) >= 3:  # over whole steps: from the first step taken to the last
        cadence = 60.0 * fps * (len(steps) - 1) / (steps[-1] - steps[0])
        path = speed[steps[0]:steps[-1]].sum() / fps
        step_length = path / (len(steps) - 1)
    later = joints[1:][moving]  # (M, 22, 3) the frames that end a moving step
    direction = travel_directions(joints)[moving]  # (M, 2)
    wrists = later[:, list(WRISTS)][..., [0, 2]] - later[:, 0, [0, 2]][:, None]  # (M, 2, 2) from the pelvis
    swing = (wrists * direction[:, None]).sum(-1)  # (M, 2) fore-aft
    arm_swing = float(np.mean([_excursion(swing[:, k]) for k in range(2)])) if len(later) else nan
    return GaitMeasures(float(np.median(speed)), moving_speed, cadence, step_length, float(moving.mean()),
                        _excursion(later[:, 0, 1]), arm_swing)


@dataclass(frozen=True)
class SpeedRange:
    """Percentiles of per-motion speeds (m/s)."""
    p10: float
    median: float
    p90: float

    @classmethod
    def of(cls, values) -> "SpeedRange":
        values = np.asarray(values, dtype=np.float64)
        values = values[np.isfinite(values)]
        if len(values) == 0:
            return cls(math.nan, math.nan, math.nan)
        p10, median, p90 = np.percentile(values, [10, 50, 90])
        return cls(float(p10), float(median), float(p90))


# ---------------------------------------------------------------------------------------
# A data set folder (I/O)
# ---------------------------------------------------------------------------------------
def motion_label(label: dict) -> tuple:
    """(action, style, usable) of a labels.json entry: the embedded set's first action and its
    speed parameter (usable when the motion is that one action alone), or a prepared take's
    content and style (usable unless it is a mirrored copy)."""
    if "content" in label:
        return label["content"], label.get("style", ""), not label.get("mirrored", False)
    return label["action"], str(label["params"].get("speed", "")), len(label.get("actions", [label["action"]])) == 1


def dataset_gaits(root: str, actions=None, fps: int = 20) -> list:
    """[(action, style, GaitMeasures)] of the usable motions of a HumanML3D-layout folder with a
    labels.json (motion_label), read from new_joint_vecs; `actions` keeps only those."""
    with open(os.path.join(root, "labels.json")) as fh:
        labels = json.load(fh)
    rows = []
    for motion in sorted(labels):
        action, style, usable = motion_label(labels[motion])
        if not usable or (actions is not None and action not in actions):
            continue
        features = np.load(os.path.join(root, "new_joint_vecs", motion + ".npy"))  # (T, 263)
        rows.append((action, style, gait_measures(utils.features_to_joints(features), fps)))
    return rows
