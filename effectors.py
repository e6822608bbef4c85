"""End-effector targets: a joint's world position pinned at a frame, steered inside sampling and
met on the final joints by inverse kinematics (pure maths, numpy in and out; metres, y up).

    pins = JointPins(["right_wrist", "pelvis"], frames=[60, 90], positions=[[0.3, 1.6, 0.4], [0, 0.6, 0]],
                     axes=["xyz", "y"])
    composite.sample(prompt, 120, joint_pins=pins)          # or generate_timeline(..., joint_pins=pins)
    motion.control_errors["joint_pin_error_max"]            # delivered; raw_* / pre_ik_*: see joint_pin_report

World space is the one of world KeyframePins and trajectories (control.py): the motion's frame 0
stands at the start transform (`RootControl.place`; the origin facing +z without root goals).
Positions only: a pin fixes where a joint is, not how it is turned. `axes` names the world
coordinates pinned ("y": a pelvis height; "xz": a hand over a spot, at any height).

How a pin is met:
1. Root goals. The pelvis's x/z is the root's position, which the features store as velocities:
   a pelvis pin on x and z becomes a root position goal (`pelvis_trajectory`, control.py meets it).
2. Inside sampling (`joint_pin_hook`, composed after control.root_hook): every x0 prediction is
   turned into world joints (its own root integrated from the window's start state), each
   pinned joint is moved towards its target by the IK below over a smoothstep window of
   PIN_BLEND_FRAMES frames either side (`offset_field`), and the moved joints are written back
   as root-relative positions in the facing frame (features 4:67; the root height, feature 3,
   for the pelvis). The keyframes within a pin's window are let go (`release_keyframes`), so
   the pose there is the in-betweener's own, steered.
3. Final IK (`reach_joint_pins`) on the decoded joints, before the foot cleanup: the same
   windows and solver, so the targets are met on the joints handed to the user.

The solver (`reach_joint`) moves one joint of a batch of poses to goals, keeping bone lengths:
ankles and wrists by two-bone IK from the hip / shoulder (`utils.two_bone_ik`), a toe by moving
its ankle so that the foot keeps its vector, the pelvis by moving the body over the legs (the
knees re-solved, the ankles held), every other joint by FABRIK along its chain from a fixed base
(the spine and head from the pelvis, collars and shoulders from spine3, an elbow from its
shoulder, a knee from its hip). Joints below the moved chain follow it rigidly (translated).
A goal out of reach is met as closely as the chain allows (it stretches towards it) and
flagged unreachable; nothing raises.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch

from control import check_trajectory, integrate_root, rotate_xz, to_world
from utils import JOINT_NAMES, NUM_JOINTS, PARENTS, RIC_SLICE, features_to_joints, two_bone_ik

PIN_BLEND_FRAMES = 8  # frames on either side of a pin over which its change eases in and out (smoothstep)
FABRIK_ITERATIONS = 30  # forward-and-backward passes of the chain solve
REACH_SLACK = 1e-6  # m: a goal this far beyond a chain's reach still counts as reachable
PELVIS = 0
TWO_BONE = {7: (1, 4), 8: (2, 5), 20: (16, 18), 21: (17, 19)}  # end -> (base, middle): ankles, wrists
TOES = {10: 7, 11: 8}  # toe -> its ankle
CHAIN_BASE = {1: 0, 2: 0, 3: 0, 6: 0, 9: 0, 12: 0, 15: 0, 13: 9, 14: 9, 16: 9, 17: 9, 18: 16, 19: 17, 4: 1, 5: 2}
LEGS = ((1, 4, 7, 10), (2, 5, 8, 11))  # (hip, knee, ankle, toe)
AXES = "xyz"
POSE_CHANNELS = slice(3, 259)  # the feature channels of a keyframe's pose that release_keyframes lets go


@dataclass
class JointPins:
    """Joint positions to reach. joints: (P,) SMPL-22 names (utils.JOINT_NAMES, e.g. "right_wrist")
    or indices; frames: (P,) frame numbers; positions: (P, 3) world metres; axes: the world
    coordinates pinned, one string for all pins or one per pin (a subset of "xyz")."""
    joints: Sequence[Union[str, int]]
    frames: Sequence[int]
    positions: np.ndarray
    axes: Union[str, Sequence[str]] = "xyz"

    def mask(self) -> np.ndarray:
        """(P, 3) bool: the pinned coordinates of each (checked) pin."""
        axes = [self.axes] * len(self.frames) if isinstance(self.axes, str) else list(self.axes)
        return np.array([[c in a for c in AXES] for a in axes], dtype=bool).reshape(-1, 3)

    def window(self, start: int, end: int) -> Optional["JointPins"]:
        """The (checked) pins of frames [start, end), frames counted from `start`; None if none."""
        inside = (np.asarray(self.frames) >= start) & (np.asarray(self.frames) < end)
        if not inside.any():
            return None
        axes = self.axes if isinstance(self.axes, str) else [a for a, keep in zip(self.axes, inside) if keep]
        return JointPins(np.asarray(self.joints)[inside], np.asarray(self.frames)[inside] - start,
                         np.asarray(self.positions)[inside], axes)


def joint_index(joint) -> int:
    """The index of a joint given by SMPL-22 name or index; one-line ValueError otherwise."""
    if isinstance(joint, (int, np.integer)) and not isinstance(joint, (bool, np.bool_)):
        if 0 <= int(joint) < NUM_JOINTS:
            return int(joint)
        raise ValueError(f"joint index {int(joint)} is out of range; use 0..{NUM_JOINTS - 1} or a name such as 'right_wrist'")
    if isinstance(joint, str) and joint.strip().lower() in JOINT_NAMES:
        return JOINT_NAMES.index(joint.strip().lower())
    raise ValueError(f"unknown joint {joint!r}; use an index 0..{NUM_JOINTS - 1} or one of: {', '.join(JOINT_NAMES)}")


def check_joint_pins(pins: JointPins, length: int) -> JointPins:
    """Checked pins of a `length`-frame motion: joints (P,) int64, frames (P,) int64, positions
    (P, 3) float64, axes one string per pin. A one-line ValueError naming the problem otherwise."""
    if not isinstance(pins, JointPins):
        raise ValueError(f"joint_pins must be a JointPins(joints, frames, positions, axes), got {type(pins).__name__}")
    names = [pins.joints] if isinstance(pins.joints, (str, int, np.integer)) else list(pins.joints)
    joints = np.array([joint_index(j) for j in names], dtype=np.int64)
    try:
        frames = np.asarray(pins.frames, dtype=np.float64).reshape(-1)
        positions = np.asarray(pins.positions, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("joint pin frames and positions must be numbers: frames (P,), positions (P, 3) metres") from None
    P = len(joints)
    if P == 0 or len(frames) != P or positions.shape != (P, 3):
        raise ValueError(f"joint pins need one frame and one (x, y, z) position per joint: {P} joints, "
                         f"{len(frames)} frames, positions of shape {positions.shape} (want ({P}, 3))")
    if not (np.isfinite(frames).all() and np.isfinite(positions).all()):
        raise ValueError("joint pins contain NaN or infinite values; pass finite frames and metres")
    if not np.all(frames == np.round(frames)) or frames.min() < 0 or frames.max() >= length:
        raise ValueError(f"joint pin frames must be whole numbers in [0, {length - 1}] for a {length}-frame motion, "
                         f"got {frames.tolist()}")
    frames = frames.astype(np.int64)
    axes = [pins.axes] * P if isinstance(pins.axes, str) else list(pins.axes)
    if len(axes) != P:
        raise ValueError(f"axes must be one string or one per pin ({P}), got {len(axes)}")
    for a in axes:
        if not isinstance(a, str) or not a or set(a) - set(AXES):
            raise ValueError(f"axes must be a non-empty subset of 'xyz' such as 'y' or 'xz', got {a!r}")
    pairs = set(zip(joints.tolist(), frames.tolist()))
    if len(pairs) != P:
        raise ValueError("two joint pins name the same joint at the same frame; keep one")
    for j, a in zip(joints, axes):
        if j == PELVIS and ("x" in a) != ("z" in a):
            raise ValueError(f"a pelvis pin fixes x and z together (the root's position) or neither; got axes {a!r}")
    return JointPins(joints, frames, positions, axes)


def pelvis_trajectory(trajectory, pins: Optional[JointPins], length: int):
    """The root path with the (checked) pins' pelvis x/z added as (frame, x, z) rows, a pin
    winning over the path at its frame; `trajectory` unchanged without such pins."""
    if pins is None:
        return trajectory
    take = (pins.joints == PELVIS) & pins.mask()[:, 0]
    if not take.any():
        return trajectory
    rows = np.c_[pins.frames[take], pins.positions[take][:, [0, 2]]].astype(np.float64)
    if trajectory is not None:
        frames, xz = check_trajectory(trajectory, length)
        keep = ~np.isin(frames, pins.frames[take])
        rows = np.concatenate([rows, np.c_[frames[keep], xz[keep]]])
    return rows[np.argsort(rows[:, 0], kind="stable")]


# ---------------------------------------------------------------------------------------
# The solver
# ---------------------------------------------------------------------------------------
def descendants(joint: int) -> list[int]:
    """Every joint below `joint` in the skeleton."""
    out, frontier = [], [joint]
    while frontier:
        children = [c for c in range(NUM_JOINTS) if PARENTS[c] in frontier]
        out += children
        frontier = children
    return out


def chain_to(joint: int, base: int) -> list[int]:
    """Joints from `base` down to `joint` (inclusive) along the parents."""
    chain = [joint]
    while chain[-1] != base:
        chain.append(PARENTS[chain[-1]])
    return chain[::-1]


def fabrik(points: np.ndarray, goal: np.ndarray, iterations: int = FABRIK_ITERATIONS) -> np.ndarray:
    """A chain points (N, K, 3) (base first) with its base fixed, bone lengths kept, its end moved
    to goal (N, 3) (FABRIK); a goal out of reach gets the chain stretched straight towards it."""
    pts = points.copy()
    lengths = np.linalg.norm(np.diff(pts, axis=1), axis=-1)  # (N, K-1)
    base = pts[:, 0].copy()

    def place(a, b, length):  # b moved onto the segment from a towards it, `length` from a
        d = b - a
        n = np.linalg.norm(d, axis=-1, keepdims=True)
        return a + length[:, None] * np.where(n > 1e-12, d / np.maximum(n, 1e-12), 0.0)
    for _ in range(iterations):
        pts[:, -1] = goal
        for k in range(pts.shape[1] - 2, -1, -1):
            pts[:, k] = place(pts[:, k + 1], pts[:, k], lengths[:, k])
        pts[:, 0] = base
        for k in range(1, pts.shape[1]):
            pts[:, k] = place(pts[:, k - 1], pts[:, k], lengths[:, k - 1])
    return pts


def _two_bone(start, mid, goal, upper, lower):
    """(mid', end', reachable (N,)) of two-bone IK from start (N, 3) towards goal (N, 3) with bone
    lengths upper, lower (N,), the middle joint bending on mid's side."""
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))
    new_mid, new_end = two_bone_ik(t(start), t(mid), t(goal), t(upper[:, None]), t(lower[:, None]))
    dist = np.linalg.norm(goal - start, axis=-1)
    ok = (dist <= upper + lower + REACH_SLACK) & (dist >= np.abs(upper - lower) - REACH_SLACK)
    return new_mid.numpy(), new_end.numpy(), ok


def bone(poses: np.ndarray, a: int, b: int) -> np.ndarray:
    """(N,) distance between joints a and b of poses (N, 22, 3)."""
    return np.linalg.norm(poses[:, b] - poses[:, a], axis=-1)


def reach_joint(poses: np.ndarray, joint: int, goals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Poses (N, 22, 3) with `joint` moved to goals (N, 3) (see the module doc), and whether each
    goal was within reach (N,) bool. Bone lengths are the poses' own."""
    out = np.array(poses, dtype=np.float64)
    if joint == PELVIS:  # the body moves over the legs; the ankles stay where they can
        shift = goals - out[:, 0]
        legs = [j for leg in LEGS for j in leg[1:]]
        out[:, [j for j in range(NUM_JOINTS) if j not in legs]] += shift[:, None]
        ok = np.ones(len(out), dtype=bool)
        for hip, knee, ankle, toe in LEGS:
            knee_new, ankle_new, reach = _two_bone(out[:, hip], poses[:, knee] + shift, poses[:, ankle],
                                                   bone(poses, hip, knee), bone(poses, knee, ankle))
            out[:, toe] += ankle_new - out[:, ankle]
            out[:, knee], out[:, ankle], ok = knee_new, ankle_new, ok & reach
        return out, ok
    if joint in TOES:  # the ankle carries the foot, which keeps its vector
        ankle = TOES[joint]
        moved, ok = reach_joint(out, ankle, goals - (out[:, joint] - out[:, ankle]))
        return moved, ok
    if joint in TWO_BONE:
        base, mid = TWO_BONE[joint]
        new_mid, new_end, ok = _two_bone(out[:, base], out[:, mid], goals, bone(out, base, mid), bone(out, mid, joint))
        chain = [mid, joint]
        moved = np.stack([new_mid, new_end], axis=1)
    else:
        chain = chain_to(joint, CHAIN_BASE[joint])
        lengths = np.linalg.norm(np.diff(out[:, chain], axis=1), axis=-1)  # (N, K-1)
        dist = np.linalg.norm(goals - out[:, chain[0]], axis=-1)
        shortest = np.maximum(0.0, 2.0 * lengths.max(-1) - lengths.sum(-1))  # (a single bone reaches its sphere only)
        ok = (dist <= lengths.sum(-1) + REACH_SLACK) & (dist >= shortest - REACH_SLACK)
        moved = fabrik(out[:, chain], goals)[:, 1:]
        chain = chain[1:]
    shift = moved - out[:, chain]  # (N, K, 3)
    for k, j in enumerate(chain):  # what hangs below a moved joint off the chain follows it
        below = [d for d in descendants(j) if d not in chain and all(d not in descendants(c) for c in chain[k + 1:])]
        out[:, below] += shift[:, k:k + 1]
    out[:, chain] = moved
    return out, ok


def smoothstep(x: np.ndarray) -> np.ndarray:
    """3x^2 - 2x^3 on [0, 1], clamped outside."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def offset_field(length: int, frames: np.ndarray, offsets: np.ndarray, blend: int = PIN_BLEND_FRAMES) -> np.ndarray:
    """Per-frame offsets (length, 3) of one joint from its pins' offsets (N, 3) at sorted frames
    (N,): each offset at its frame, easing to 0 over `blend` frames either side (smoothstep);
    between pins at most 2 * blend + 1 frames apart, a smoothstep from one offset to the next."""
    out = np.zeros((length, 3))
    t = np.arange(length)
    close = np.diff(frames) <= 2 * blend + 1  # (N-1,) neighbours that share their in-between
    for k, (f, d) in enumerate(zip(frames, offsets)):
        if k > 0 and close[k - 1]:  # rising from the previous pin
            span = (t > frames[k - 1]) & (t <= f)
            weight = smoothstep((t[span] - frames[k - 1]) / float(f - frames[k - 1]))
        else:
            span = (t >= f - blend) & (t <= f)
            weight = smoothstep(1.0 - (f - t[span]) / (blend + 1.0))
        out[span] += d * weight[:, None]
        if k + 1 < len(frames) and close[k]:  # falling towards the next pin
            span = (t > f) & (t < frames[k + 1])
            weight = 1.0 - smoothstep((t[span] - f) / float(frames[k + 1] - f))
        else:
            span = (t > f) & (t <= f + blend)
            weight = smoothstep(1.0 - (t[span] - f) / (blend + 1.0))
        out[span] += d * weight[:, None]
    return out


def depth(joint: int) -> int:
    return 0 if PARENTS[joint] < 0 else 1 + depth(PARENTS[joint])


def reach_joint_pins(joints: np.ndarray, pins: JointPins, free_from: int = 0, axes_of=None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Joints (T, 22, 3) (the pins' world space) moved so that each (checked) pin's joint meets its
    target on its pinned axes at its frame, blended over PIN_BLEND_FRAMES frames around it;
    frames before `free_from` are left alone. Joints are solved from the root outwards.
    axes_of: optional (P, 3) bool overriding pins.mask() (the sampling hook pins the pelvis in y
    only). Returns (joints (T, 22, 3) float64, reachable (P,) bool)."""
    out = np.array(joints, dtype=np.float64)
    mask = pins.mask() if axes_of is None else axes_of
    reachable = np.ones(len(pins.frames), dtype=bool)
    for joint in sorted(set(pins.joints.tolist()), key=depth):
        rows = np.nonzero(pins.joints == joint)[0]
        rows = rows[np.argsort(pins.frames[rows])]
        frames = pins.frames[rows]
        offsets = np.where(mask[rows], pins.positions[rows] - out[frames, joint], 0.0)  # (N, 3)
        field = offset_field(len(out), frames, offsets)
        field[:free_from] = 0.0
        active = np.nonzero(np.abs(field).max(-1) > 0.0)[0]
        if len(active) == 0:
            continue
        out[active], ok = reach_joint(out[active], joint, out[active, joint] + field[active])
        at = np.searchsorted(active, frames)
        hit = (at < len(active)) & (active[np.minimum(at, len(active) - 1)] == frames)
        reachable[rows[hit]] = ok[at[hit]]
    return out, reachable


# ---------------------------------------------------------------------------------------
# Inside sampling
# ---------------------------------------------------------------------------------------
def steer_features(features: np.ndarray, pins: JointPins, heading0: float = 0.0, xz0=(0.0, 0.0),
                   free_from: int = 0) -> np.ndarray:
    """Features (T, 263) (unnormalised) whose root-relative joints (4:67) and root height (3) are
    moved so that the pinned joints reach their targets (world space, the motion's frame 0 at
    heading half-angle heading0 and xz0); the root's x/z and heading are kept, so a pelvis pin
    acts in y only here. Returns a float64 copy."""
    feats = np.array(features, dtype=np.float64)
    T = len(feats)
    world = to_world(features_to_joints(torch.from_numpy(feats)).numpy(), heading0, xz0)  # (T, 22, 3)
    axes = pins.mask() & ~((pins.joints == PELVIS)[:, None] & np.array([True, False, True]))
    moved, _ = reach_joint_pins(world, pins, free_from, axes)
    heading, xz = integrate_root(feats[:, :3], heading0, xz0)
    local = moved[:, 1:].copy()  # (T, 21, 3) root-relative in the facing frame, y absolute
    local[..., [0, 2]] = rotate_xz(moved[:, 1:, [0, 2]] - xz[:T, None], 2.0 * heading[:T, None])
    feats[:, RIC_SLICE] = local.reshape(T, -1)
    feats[:, 3] = moved[:, 0, 1]
    return feats


def joint_pin_hook(pins: JointPins, mean: np.ndarray, std: np.ndarray, heading0: float = 0.0, xz0=(0.0, 0.0),
                   free_from: int = 0, row: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
    """A `GaussianDiffusion.sample` x0 hook: row `row` of a normalised x0 (B, T, 263) (statistics
    mean/std (263,)) with its pose channels 3:67 steered by `steer_features`."""
    mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)

    def hook(x0: torch.Tensor) -> torch.Tensor:
        feats = x0[row].double().cpu().numpy() * std + mean
        fixed = (steer_features(feats, pins, heading0, xz0, free_from)[:, 3:67] - mean[3:67]) / std[3:67]
        x0 = x0.clone()
        x0[row, :, 3:67] = torch.from_numpy(fixed).to(x0)
        return x0
    return hook


def compose_hooks(first, second):
    """x0 hooks applied one after the other (either may be None)."""
    if first is None or second is None:
        return first or second
    return lambda x0: second(first(x0))


def release_keyframes(mask: torch.Tensor, pins: JointPins, keep: Optional[torch.Tensor] = None) -> torch.Tensor:
    """A keyframe mask (T, 263) whose keyframes within PIN_BLEND_FRAMES of a pin's frame let go of
    their pose (channels 3:259: height, joint positions, rotations, velocities; the root's
    velocities 0:3 and the foot contacts stay, so the body goes where it went), except frames in
    keep (the user's own pinned frames). Inside a pin's window the in-betweener's prediction is
    then the only pose the hook edits: a keyframe pose imputed there would be put back unsteered
    at every step while its neighbours keep the hook's earlier edits (a kink at the keyframe)."""
    near = np.zeros(len(mask), dtype=bool)
    for f in np.unique(pins.frames):
        near[max(0, f - PIN_BLEND_FRAMES):f + PIN_BLEND_FRAMES + 1] = True
    if keep is not None:
        near[keep.cpu().numpy()] = False
    mask = mask.clone()
    mask[torch.from_numpy(near).to(mask.device), POSE_CHANNELS] = 0.0
    return mask


# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------
def joint_pin_distances(joints: np.ndarray, pins: JointPins) -> np.ndarray:
    """(P,) metres between each (checked) pin's target and its joint in joints (T, 22, 3) (world),
    over the pinned axes."""
    joints = np.asarray(joints, np.float64)
    diff = np.where(pins.mask(), joints[pins.frames, pins.joints] - pins.positions, 0.0)
    return np.linalg.norm(diff, axis=-1)


def joint_pin_report(joints, pins: JointPins, reachable: np.ndarray, raw_joints=None, pre_ik_joints=None) -> dict:
    """Joint pins, raw and delivered (metres over the pinned axes; world-space joints (T, 22, 3)):
    joint_pin_error_max / _mean: the joints handed to the user (after the final IK and the foot
    cleanup); pre_ik_*: the sampled motion (steered, root corrected) before the final IK;
    raw_*: the in-betweener's own last x0 prediction (keyframes imputed, before the hooks);
    joint_pin_reachable: per pin, whether its target was within its chain's reach."""
    out = {}
    for prefix, motion in (("", joints), ("pre_ik_", pre_ik_joints), ("raw_", raw_joints)):
        if motion is not None:
            dist = joint_pin_distances(motion, pins)
            out.update({prefix + "joint_pin_error_max": float(dist.max()), prefix + "joint_pin_error_mean": float(dist.mean())})
    out["joint_pin_reachable"] = [bool(r) for r in reachable]
    return out


def pins_from_records(records, fps: int) -> JointPins:
    """JointPins from records such as a --joint_pins JSON file holds: a list of
    {"joint": name or index, "seconds": time, "position": [x, y, z], "axes": "xyz" (optional)},
    the seconds turned into frames (round(seconds * fps)) here, once. One-line ValueError otherwise."""
    example = '[{"joint": "right_wrist", "seconds": 2.5, "position": [0.3, 1.5, 0.4], "axes": "xyz"}]'
    if not isinstance(records, list) or not records:
        raise ValueError(f"joint pins must be a non-empty list of pins, e.g. {example}")
    joints, frames, positions, axes = [], [], [], []
    for number, rec in enumerate(records, start=1):
        if not isinstance(rec, dict) or not {"joint", "seconds", "position"} <= set(rec):
            raise ValueError(f"joint pin {number} needs 'joint', 'seconds' and 'position', e.g. {example}")
        seconds = rec["seconds"]
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not np.isfinite(seconds):
            raise ValueError(f"joint pin {number}: 'seconds' must be a finite number, got {seconds!r:.40}")
        joints.append(rec["joint"])
        frames.append(int(round(float(seconds) * fps)))
        positions.append(rec["position"])
        axes.append(rec.get("axes", "xyz"))
    try:
        positions = np.asarray(positions, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"each joint pin's 'position' must be three numbers [x, y, z] in metres, e.g. {example}") from None
    return JointPins(joints, frames, positions, axes)
