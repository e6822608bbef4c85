"""Foot cleanup: planted feet held still and the legs re-solved to reach them (a post-process).

    from feet import clean_feet
    cleaned = clean_feet(joints, channels=features[:, FOOT_SLICE], fps=20)
    cleaned.joints     # (T, 22, 3) the motion with its planted feet held
    cleaned.contacts   # (T, 4) bool: which foot joint was held at which frame (order FOOT_JOINTS)

A generated motion's planted feet slide: the network's own skating, and the drag a root
correction (control.py: world pins, paths) adds when it moves the whole body. This module fixes
that on joint positions alone (pure maths, numpy in and out; metres, y up, floor at y = 0):

1. Planted frames (`foot_contacts`): each foot joint (left ankle, left toe, right ankle, right
   toe: the order of the features' contact channels 259:263) is planted where it is near the
   floor (PLANT_HEIGHT) and slow (horizontal speed below PLANT_SPEED, or its contact channel
   on, when channels are given); gaps of up to GAP_FRAMES frames are filled and spans shorter
   than MIN_SPAN_FRAMES dropped.
2. Hold (`hold_offsets`): through each span the joint sits at one world position, the span's
   mean with y clamped to the floor; the offset that puts it there eases in and out over
   BLEND_FRAMES frames on either side (smoothstep), so nothing pops.
3. Legs (`leg_targets`, `solve_legs`): a planted toe carries its free ankle along (the heel
   lifts about a held toe) and a planted ankle its free toe; where a target is beyond the leg's
   reach, the whole body is lowered (`root_drop`, at most ROOT_DROP_MAX, smoothly); then
   hip-knee-ankle is re-solved by two-bone IK (`utils.two_bone_ik`, the knee bending in the
   plane it bent in) and the toe placed towards its target. Every moved joint keeps its own
   distance to its parent, so bone lengths are the input's. The root is never moved in x/z, so
   root goals met by control.py stay met; a leg that cannot reach its target even with the
   body lowered comes as near as it can (its foot then follows the hip: a motion dragged
   further than a leg reaches cannot be held).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d, maximum_filter1d

from utils import NUM_JOINTS, two_bone_ik

FOOT_JOINTS = (7, 10, 8, 11)  # left ankle, left toe, right ankle, right toe: the contact channels' order
LEGS = ((1, 4, 7, 10), (2, 5, 8, 11))  # (hip, knee, ankle, toe) of the left and right leg
PLANT_HEIGHT = np.array([0.12, 0.05, 0.12, 0.05])  # m: a foot joint higher than this is in the air
PLANT_SPEED = 0.5  # m/s: horizontal speed below which a low foot joint counts as planted
CHANNEL_ON = 0.5  # a contact channel above this says "planted"
GAP_FRAMES = 2  # planted spans this close are joined
MIN_SPAN_FRAMES = 3  # shorter planted spans are ignored
BLEND_FRAMES = 4  # frames over which a hold eases in before a span and out after it
ROOT_DROP_MAX = 0.10  # m: the most the body is lowered so that a leg reaches its planted foot


@dataclass
class CleanedFeet:
    """What `clean_feet` returns."""
    joints: np.ndarray  # (T, 22, 3) the cleaned motion, the input's dtype
    contacts: np.ndarray  # (T, 4) bool: held foot joints (FOOT_JOINTS order)
    root_drop: np.ndarray  # (T,) metres the whole body was lowered by (0 where the legs reached)


# ---------------------------------------------------------------------------------------
# Planted spans
# ---------------------------------------------------------------------------------------
def runs(mask: np.ndarray) -> np.ndarray:
    """[start, end) of every run of True in a 1-D bool mask: (N, 2) int64."""
    padded = np.concatenate([[False], np.asarray(mask, bool), [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return edges.reshape(-1, 2).astype(np.int64)


def tidy_spans(mask: np.ndarray, gap: int = GAP_FRAMES, min_span: int = MIN_SPAN_FRAMES) -> np.ndarray:
    """A 1-D bool mask with interior gaps of at most `gap` frames filled, then runs shorter
    than `min_span` frames removed."""
    out = np.asarray(mask, bool).copy()
    spans = runs(out)
    for (_, end), (start, _) in zip(spans[:-1], spans[1:]):
        if start - end <= gap:
            out[end:start] = True
    for start, end in runs(out):
        if end - start < min_span:
            out[start:end] = False
    return out


def horizontal_speed(points: np.ndarray, fps: int) -> np.ndarray:
    """Horizontal (xz) speed in m/s of points (T, ..., 3) at every frame (central differences,
    one-sided at the ends): (T, ...)."""
    if len(points) < 2:
        return np.zeros(points.shape[:-1])
    velocity = np.gradient(points[..., [0, 2]], axis=0) * fps
    return np.linalg.norm(velocity, axis=-1)


def foot_contacts(joints: np.ndarray, channels: Optional[np.ndarray] = None, fps: int = 20) -> np.ndarray:
    """Planted frames (T, 4) bool of the foot joints FOOT_JOINTS of joints (T, 22, 3): near the
    floor (below PLANT_HEIGHT) and slow (below PLANT_SPEED, or channels (T, 4) above
    CHANNEL_ON), spans tidied (`tidy_spans`)."""
    joints = np.asarray(joints, np.float64)
    feet = joints[:, FOOT_JOINTS]  # (T, 4, 3)
    low = feet[..., 1] < PLANT_HEIGHT
    slow = horizontal_speed(feet, fps) < PLANT_SPEED
    if channels is not None:
        channels = np.asarray(channels, np.float64)
        if channels.shape != (len(joints), 4):
            raise ValueError(f"contact channels must be ({len(joints)}, 4) (left ankle, left toe, right ankle, "
                             f"right toe; features 259:263), got {channels.shape}")
        slow |= channels > CHANNEL_ON
    return np.stack([tidy_spans(low[:, k] & slow[:, k]) for k in range(len(FOOT_JOINTS))], axis=-1)


# ---------------------------------------------------------------------------------------
# Holding planted joints
# ---------------------------------------------------------------------------------------
def ease(x: np.ndarray) -> np.ndarray:
    """Smoothstep 3x^2 - 2x^3 of x clipped to [0, 1]: 0 -> 0, 1 -> 1, zero slope at both ends."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def hold_offsets(points: np.ndarray, planted: np.ndarray, blend: int = BLEND_FRAMES
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (T, 3) that hold a joint's positions points (T, 3) still through each planted
    span (planted (T,) bool), and their weights (T,) in [0, 1].

    Inside a span the offset moves the joint to the span's mean position (y at least 0, the
    floor); for k = 1..blend frames after (before) a span the offset is the span's last (first)
    offset times ease(1 - k / (blend + 1)). Where the fades of two spans meet, their offsets are
    averaged by weight (divided by the summed weight when it exceeds 1)."""
    points = np.asarray(points, np.float64)
    T = len(points)
    total, weight = np.zeros((T, 3)), np.zeros(T)
    free = ~np.asarray(planted, bool)
    fades = ease(1.0 - np.arange(1, blend + 1) / (blend + 1.0))  # (blend,)
    for start, end in runs(planted):
        target = points[start:end].mean(axis=0)
        target[1] = max(target[1], 0.0)
        delta = target - points[start:end]  # (n, 3)
        total[start:end], weight[start:end] = delta, 1.0
        for k, fade in enumerate(fades, start=1):
            for frame, edge in ((end - 1 + k, delta[-1]), (start - k, delta[0])):
                if 0 <= frame < T and free[frame]:
                    total[frame] += fade * edge
                    weight[frame] += fade
    offsets = total / np.maximum(weight, 1.0)[:, None]
    return offsets, np.minimum(weight, 1.0)


def leg_targets(joints: np.ndarray, contacts: np.ndarray, blend: int = BLEND_FRAMES
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each leg's ankle and toe should be: (ankles (T, 2, 3), toes (T, 2, 3), weights
    (T, 2): how much of a hold acts on the leg). A free ankle moves with its planted toe's
    offset (and a free toe with its ankle's), in proportion to how free it is."""
    joints = np.asarray(joints, np.float64)
    T = len(joints)
    ankles, toes, weights = np.zeros((T, 2, 3)), np.zeros((T, 2, 3)), np.zeros((T, 2))
    for leg, (_, _, ankle, toe) in enumerate(LEGS):
        ankle_off, ankle_w = hold_offsets(joints[:, ankle], contacts[:, 2 * leg], blend)
        toe_off, toe_w = hold_offsets(joints[:, toe], contacts[:, 2 * leg + 1], blend)
        ankles[:, leg] = joints[:, ankle] + ankle_off + (1.0 - ankle_w)[:, None] * toe_off
        toes[:, leg] = joints[:, toe] + toe_off + (1.0 - toe_w)[:, None] * ankle_off
        weights[:, leg] = np.maximum(ankle_w, toe_w)
    return ankles, toes, weights


# ---------------------------------------------------------------------------------------
# Re-solving the legs
# ---------------------------------------------------------------------------------------
def bone(joints: np.ndarray, parent: int, child: int) -> np.ndarray:
    """Length (T,) of the bone parent -> child in every pose of joints (T, 22, 3)."""
    return np.linalg.norm(joints[:, child] - joints[:, parent], axis=-1)


def root_drop(joints: np.ndarray, ankles: np.ndarray, weights: np.ndarray, blend: int = BLEND_FRAMES) -> np.ndarray:
    """How far (T,) metres to lower the whole body so that each held leg (weights (T, 2) > 0)
    reaches its ankle target ankles (T, 2, 3) with the leg at most straight: at most
    ROOT_DROP_MAX, spread over +-blend frames and smoothed so that it eases in and out."""
    need = np.zeros(len(joints))
    for leg, (hip, knee, ankle, _) in enumerate(LEGS):
        length = bone(joints, hip, knee) + bone(joints, knee, ankle)  # (T,)
        gap = ankles[:, leg] - joints[:, hip]  # (T, 3)
        across = np.linalg.norm(gap[:, [0, 2]], axis=-1)
        below = -gap[:, 1]
        reachable_below = np.sqrt(np.clip(length ** 2 - across ** 2, 0.0, None))
        need = np.maximum(need, np.where(weights[:, leg] > 0, below - reachable_below, 0.0))
    need = np.clip(need, 0.0, ROOT_DROP_MAX)
    if not need.any():
        return need
    spread = maximum_filter1d(need, size=2 * blend + 1, mode="nearest")
    return gaussian_filter1d(spread, sigma=max(blend / 2.0, 0.5), mode="nearest")


def place_toe(ankle: np.ndarray, target: np.ndarray, original: np.ndarray, foot: np.ndarray) -> np.ndarray:
    """Toes (T, 3) at distance foot (T,) from ankle (T, 3): the point nearest target (T, 3), or,
    where that point would sink under the floor (y < 0) below the target (ankle and toe targets
    need not be a foot length apart), the point at the target's height horizontally towards it.
    original (T, 3): the input's ankle -> toe vectors, the direction when the target gives none."""
    rise = target[:, 1] - ankle[:, 1]  # (T,)
    flat = (target - ankle) * np.array([1.0, 0.0, 1.0])
    flat_norm = np.linalg.norm(flat, axis=-1, keepdims=True)
    original_flat = original * np.array([1.0, 0.0, 1.0])
    heading = np.where(flat_norm > 1e-9, flat / np.maximum(flat_norm, 1e-9),
                       original_flat / np.maximum(np.linalg.norm(original_flat, axis=-1, keepdims=True), 1e-9))
    level = ankle + heading * np.sqrt(np.clip(foot ** 2 - rise ** 2, 0.0, None))[:, None]
    level[:, 1] = ankle[:, 1] + rise
    toward = target - ankle
    norm = np.linalg.norm(toward, axis=-1, keepdims=True)
    toward = np.where(norm > 1e-9, toward / np.maximum(norm, 1e-9), original / np.maximum(foot[:, None], 1e-9))
    nearest = ankle + foot[:, None] * toward
    sinks = (nearest[:, 1] < 0.0) & (nearest[:, 1] < target[:, 1]) & (np.abs(rise) < foot)  # under the floor
    return np.where(sinks[:, None], level, nearest)


def solve_legs(joints: np.ndarray, ankles: np.ndarray, toes: np.ndarray, drop: np.ndarray) -> np.ndarray:
    """joints (T, 22, 3) lowered by drop (T,), with each leg's knee and ankle re-solved by
    two-bone IK towards ankles (T, 2, 3) and each toe put towards toes (T, 2, 3), every bone at
    its length in joints."""
    joints = np.asarray(joints, np.float64)
    out = joints.copy()
    out[..., 1] -= drop[:, None]
    for leg, (hip, knee, ankle, toe) in enumerate(LEGS):
        upper, lower, foot = (bone(joints, a, b)[:, None] for a, b in ((hip, knee), (knee, ankle), (ankle, toe)))
        new_knee, new_ankle = two_bone_ik(torch.from_numpy(out[:, hip]), torch.from_numpy(out[:, knee]),
                                          torch.from_numpy(ankles[:, leg]), torch.from_numpy(upper),
                                          torch.from_numpy(lower))
        new_ankle = new_ankle.numpy()
        new_toe = place_toe(new_ankle, toes[:, leg], joints[:, toe] - joints[:, ankle], foot[:, 0])
        out[:, knee], out[:, ankle], out[:, toe] = new_knee.numpy(), new_ankle, new_toe
        still = drop == 0  # legs that nothing moved keep their input exactly (IK reproduces it to rounding)
        still &= np.all(ankles[:, leg] == joints[:, ankle], axis=-1) & np.all(toes[:, leg] == joints[:, toe], axis=-1)
        out[np.ix_(still, [knee, ankle, toe])] = joints[np.ix_(still, [knee, ankle, toe])]
    return out


# ---------------------------------------------------------------------------------------
# The cleanup
# ---------------------------------------------------------------------------------------
def clean_feet(joints, channels: Optional[np.ndarray] = None, fps: int = 20,
               contacts: Optional[np.ndarray] = None) -> CleanedFeet:
    """The motion joints (T, 22, 3) (metres, y up, floor y = 0) with its planted feet held
    still (see the module doc). channels: the features' contact channels (T, 4) (features
    259:263), which also mark feet as planted; contacts: (T, 4) bool planted frames to use
    instead of detecting them. Joints above the hips move only where the body is lowered."""
    arr = np.asarray(joints)
    if arr.ndim != 3 or arr.shape[1:] != (NUM_JOINTS, 3) or len(arr) < 1:
        raise ValueError(f"clean_feet expects joints (T, {NUM_JOINTS}, 3) in metres, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("clean_feet: joints contain NaN or infinite values; pass a finite motion")
    pos = arr.astype(np.float64)
    if contacts is None:
        contacts = foot_contacts(pos, channels, fps)
    contacts = np.asarray(contacts, bool)
    if contacts.shape != (len(pos), 4):
        raise ValueError(f"contacts must be ({len(pos)}, 4) bool (left ankle, left toe, right ankle, right toe), "
                         f"got {contacts.shape}")
    ankles, toes, weights = leg_targets(pos, contacts)
    drop = root_drop(pos, ankles, weights)
    cleaned = solve_legs(pos, ankles, toes, drop)
    out_dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float64
    return CleanedFeet(cleaned.astype(out_dtype), contacts, drop)
