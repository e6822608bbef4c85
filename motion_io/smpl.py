"""Joint rotations out: SMPL's `poses`/`trans` layout for generated motions (`--format smpl`).

    from motion_io.smpl import write_smpl_npz
    write_smpl_npz("walk_smpl.npz", motion.joints, features=motion.features, fps=20)

The .npz holds (T frames):
    poses (T, 72)        axis-angle, SMPL's layout: 24 joints x 3, joint 0 the global orientation,
                         joints 1-21 the body, 22-23 (hands) zero. float32.
    trans (T, 3)         the pelvis (joint 0) position, metres.
    fps, mocap_framerate frames per second (20); up_axis 'y'; the figure faces +z at identity.
    joint_names (24,)    SMPL's joint names; parents (24,) the kinematic tree (-1 for the root).
    rest_offsets (22, 3) the rest pose the rotations are relative to (bone vectors from the
                         parent, metres); see below.
    rot6d (T, 22, 6)     the 6D rotations HumanML3D's features carry, in HumanML3D's convention
                         (see `features_rot6d`); only with features.
    joints (T, 22, 3)    the positions the rotations were fitted to.
    betas (10,) zeros, gender 'neutral', prompt, convention (a one-paragraph text).

Where the rotations come from: an IK fit of the joint positions, not the features' 6D dims.
The positions are what the pipeline decodes and shows (features_to_joints); the network's 6D
channels are not tied to them, and HumanML3D's 6D is not SMPL's layout anyway: it stores, at
each joint, the swing that turns its own bone (parent -> joint) from the rest direction
utils.RAW_OFFSETS, composed along chains that start at the root rotation for both arms, with
arms hanging down and the head bone pointing forward in its rest. SMPL stores at each joint
the rotation of the bones to its children, composed parent to child.

The rest pose (`rest_offsets`): the motion's own bone lengths (their mean over frames: the
canonical skeleton's, utils.BONE_LENGTHS, for real HumanML3D motions, imports and what the
pipeline decodes with fit_bones) in a T-pose like SMPL's: legs and spine straight, feet forward, head up, arms straight out along
+-x (palms down). The two joints with three children, the pelvis (hips, spine1) and spine3
(neck, collars), turn their children as one rigid piece in SMPL, so their rest triangles take
the motion's own mean shape (real HumanML3D motions keep those triangles rigid to 1e-6 m).
Forward kinematics of `poses` on `rest_offsets` (global G_j = G_parent @ R(poses_j), joint_j =
joint_parent + G_parent @ rest_offsets[j], pelvis at `trans`) rebuilds `joints`;
`humanml3d_fk_rotations` turns the same rotations into the per-joint quaternions that
utils.forward_kinematics takes.

Twist: joint positions do not say how a bone is twisted about its own axis. The fit takes the
smallest rotation from the parent's frame, except at the hips and shoulders, whose twist is
set so the knee and elbow bend about their hinge (x for the knees, y for the elbows in the
T-pose) where the limb is bent by more than 20 degrees; where it is straight (the hinge is
unknown) the twist carries over in time from the bent frames around it.

To drive a real SMPL body: (1) SMPL's own template is not this idealised T-pose: its hips sit
below the pelvis, its toes below its ankles, its arms slightly off horizontal, all depending
on betas; `to_smpl_rest(poses, trans, rest_offsets, smpl_rest_joints)` re-expresses the
rotations relative to the rest joints of your model (J_regressor @ v_shaped), so the bones
point where ours do, and moves `trans` by the model's rest pelvis (SMPL puts the pelvis at
J_0(betas) + trans, ours is at trans). Without it, expect joint angles off by a few degrees
(tens at the feet). (2) Our skeleton is y-up like the SMPL model itself; AMASS files are
z-up, so tools that assume AMASS rotate: tell them y-up. (3) Hands, fingers and wrist twist
are not generated (zero / identity).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from runtime import check_out_path, write_atomic
from utils import (FEATURE_DIM, JOINT_NAMES, KINEMATIC_CHAIN, NUM_JOINTS, PARENTS, RAW_OFFSETS,
                   ROT_SLICE, as_joints, matrix_to_quat, qbetween, quat_to_cont6d, quat_to_matrix,
                   recover_root_rot_pos)

__all__ = ["SMPL_JOINT_NAMES", "SMPL_PARENTS", "fit_smpl_rotations", "features_rot6d", "humanml3d_fk_rotations",
           "rest_offsets", "smpl_export", "smpl_forward_kinematics", "to_smpl_rest", "write_smpl_npz"]

SMPL_JOINT_NAMES = JOINT_NAMES + ["left_hand", "right_hand"]
SMPL_PARENTS = PARENTS + [20, 21]
# Joints whose one rotation moves three children, (children: left, right, up).
_CLUSTERS = {0: (1, 2, 3), 9: (13, 14, 12)}
# T-pose bone directions (parent -> joint) where they differ from HumanML3D's RAW_OFFSETS.
_TPOSE_DIRECTIONS = {15: (0, 1, 0), 16: (1, 0, 0), 17: (-1, 0, 0), 18: (1, 0, 0), 19: (-1, 0, 0),
                     20: (1, 0, 0), 21: (-1, 0, 0)}
# Limb roots whose twist puts the next joint's bend on a hinge: (child, grandchild, the
# direction in the rest pose the grandchild bone swings towards when the joint bends).
_HINGES = {1: (4, 7, (0, 0, -1)), 2: (5, 8, (0, 0, -1)),  # knees bend backwards
           16: (18, 20, (0, 0, 1)), 17: (19, 21, (0, 0, 1))}  # elbows bend forwards
_HINGE_DEGREES = (5.0, 20.0)  # bend below: smallest twist; above: hinge twist; blended between
CONVENTION = (
    "poses: SMPL layout, axis-angle (rad), 24 joints x 3, joint 0 = global orientation, hands zero; "
    "local rotations composed parent to child (G_j = G_parent R_j), each joint's rotation moves the bones "
    "to its children; relative to the rest pose rest_offsets (the motion's mean bone lengths, T-pose: arms along "
    "+-x, palms down, head up, feet forward; pelvis and spine3 triangles: the motion's own shape). "
    "y up, facing +z at identity, metres. trans = pelvis position (a real SMPL model adds its rest pelvis "
    "J_0(betas): use motion_io.smpl.to_smpl_rest). rot6d: HumanML3D's 6D feature rotations (joint 0: root "
    "yaw world->facing; joints 1-21: per-bone swing from utils.RAW_OFFSETS along HumanML3D's chains).")


def _t(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _kabsch(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Rotations R (..., 3, 3) minimising sum_i |R src_i - dst_i|^2 for src, dst (..., k, 3)."""
    h = src.transpose(-1, -2) @ dst  # (..., 3, 3)
    u, _, vt = torch.linalg.svd(h)
    d = torch.sign(torch.linalg.det(vt.transpose(-1, -2) @ u.transpose(-1, -2)))
    fix = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    return vt.transpose(-1, -2) @ fix @ u.transpose(-1, -2)


def _between(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Smallest rotations (..., 3, 3) turning directions u onto v (..., 3); opposite: about an
    axis perpendicular to u."""
    u, v = torch.broadcast_tensors(u, v)
    return quat_to_matrix(qbetween(u, v))


def _axis_angle_matrix(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) of `angle` (...) radians about unit `axis` (..., 3) (Rodrigues)."""
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(axis.shape + (3,))
    s, c = torch.sin(angle)[..., None, None], torch.cos(angle)[..., None, None]
    return torch.eye(3, dtype=axis.dtype) + s * k + (1 - c) * (k @ k)


def _children(j: int) -> list:
    return [c for c in range(NUM_JOINTS) if PARENTS[c] == j]


def rest_offsets(joints) -> np.ndarray:
    """The rest pose (22, 3) the exported rotations are relative to, for a motion's joints (T, 22, 3).

    The motion's mean bone lengths in a T-pose (see the module doc); the pelvis and spine3 triangles
    are the motion's mean shape (Procrustes mean over frames), turned so that left minus right
    child points along +x and the up child lies in the xy plane above them.
    """
    pos = _t(joints)
    lengths = (pos[:, 1:] - pos[:, PARENTS[1:]]).norm(dim=-1).mean(0)  # (21,)
    lengths = torch.cat([lengths.new_zeros(1), lengths])[:, None]  # (22, 1), the root's 0
    rest = _t(RAW_OFFSETS).clone()
    for j, direction in _TPOSE_DIRECTIONS.items():
        rest[j] = _t(direction)
    for parent, kids in _CLUSTERS.items():
        vectors = pos[:, list(kids)] - pos[:, parent:parent + 1]  # (T, 3, 3)
        mean = vectors[0]
        for _ in range(2):  # align every frame to the current mean, average
            mean = (vectors @ _kabsch(vectors, mean.expand_as(vectors)).transpose(-1, -2)).mean(0)
        mean = _unit(mean) * lengths[list(kids)]  # the mean lengths, then the frame
        x = _unit(mean[0] - mean[1])
        y = _unit(mean[2] - (mean[2] @ x) * x)
        frame = torch.stack([x, y, torch.linalg.cross(x, y)], 0)  # rows: the rest axes in motion coordinates
        for kid, vector in zip(kids, mean):
            rest[kid] = frame @ vector
    return (_unit(rest) * lengths).numpy()


def fit_smpl_rotations(joints, rest: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
    """SMPL-layout local rotation matrices (T, 22, 3, 3) that put `rest` (22, 3) (default
    rest_offsets(joints)) onto joints (T, 22, 3) by forward kinematics from the pelvis; returns
    (local rotations, rest).

    Joint by joint from the pelvis: a three-child joint takes the rotation that best fits its
    children (Kabsch), a one-child joint the smallest rotation (relative to its parent) that
    points its bone at the child, with the hinge twist at hips and shoulders; bones are aimed
    from the rebuilt parent, so errors do not add up along a chain. Leaves get the identity.
    """
    pos = _t(as_joints(joints))
    if pos.ndim != 3 or pos.shape[1:] != (NUM_JOINTS, 3):
        raise ValueError(f"expected joints (T, {NUM_JOINTS}, 3), got {tuple(pos.shape)}")
    rest_np = rest_offsets(pos.numpy()) if rest is None else np.asarray(rest, dtype=np.float64)
    rest_t = _t(rest_np)
    num_frames = len(pos)
    glob = [None] * NUM_JOINTS  # (T, 3, 3) global rotation of each joint
    built = [None] * NUM_JOINTS  # (T, 3) rebuilt positions
    built[0] = pos[:, 0]
    eye = torch.eye(3, dtype=pos.dtype).expand(num_frames, 3, 3)
    for j in range(NUM_JOINTS):  # parents come before children in SMPL's order
        parent_rot = eye if PARENTS[j] < 0 else glob[PARENTS[j]]
        if j > 0:
            built[j] = built[PARENTS[j]] + (parent_rot @ rest_t[j])
        kids = _children(j)
        if not kids:
            glob[j] = parent_rot
        elif len(kids) > 1:
            target = pos[:, kids] - built[j][:, None]  # (T, k, 3)
            glob[j] = _kabsch(rest_t[kids].expand(num_frames, -1, -1), target)
        else:
            kid = kids[0]
            aim = pos[:, kid] - built[j]  # (T, 3) world
            local_aim = (parent_rot.transpose(-1, -2) @ aim[..., None])[..., 0]
            glob[j] = parent_rot @ _between(rest_t[kid], local_aim)
            if j in _HINGES:
                glob[j] = _hinge_twist(glob[j], j, pos, built[j], rest_t)
    rot = torch.stack(glob, 1)  # (T, 22, 3, 3) global
    parent_rot = torch.stack([eye if p < 0 else glob[p] for p in PARENTS], 1)
    local = parent_rot.transpose(-1, -2) @ rot
    return local.numpy(), rest_np


def _hinge_twist(rot: torch.Tensor, j: int, pos: torch.Tensor, origin: torch.Tensor,
                 rest: torch.Tensor) -> torch.Tensor:
    """Global rotations (T, 3, 3) of limb root j with the smallest-rotation `rot`, twisted about
    the bone so the child joint bends about its hinge (blended by the bend angle)."""
    kid, grandkid, bend = _HINGES[j]
    rest_dir = _unit(rest[kid])
    hinge_rest = _unit(torch.linalg.cross(rest_dir, _t(bend)))
    bone = _unit(pos[:, kid] - origin)  # (T, 3)
    kid_built = origin + rest[kid].norm() * bone
    lower = pos[:, grandkid] - kid_built
    hinge = torch.linalg.cross(bone, lower)
    bend_angle = torch.atan2(hinge.norm(dim=-1), (bone * lower).sum(-1))  # (T,)
    hinge = _unit(hinge)
    current = (rot @ hinge_rest)  # (T, 3) where the smallest rotation puts the hinge
    twist = torch.atan2((torch.linalg.cross(current, hinge) * bone).sum(-1), (current * hinge).sum(-1))
    lo, hi = np.deg2rad(_HINGE_DEGREES)
    weight = ((bend_angle - lo) / (hi - lo)).clamp(0.0, 1.0).numpy()
    twist = torch.from_numpy(_twist_in_time(twist.numpy(), weight)).to(rot)
    return _axis_angle_matrix(bone, twist) @ rot


def _twist_in_time(angle: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Twist (T,) radians to apply: the hinge's where the limb is bent (weight 1), in time
    between those frames (held before the first and after the last) where it is straight
    (weight 0, the hinge is unknown), blended by weight in between; no bent frame: no twist.
    Angles are unwrapped along the bent frames, so a twist near 180 degrees does not flip."""
    frames = np.arange(len(angle))
    bent = weight > 0
    angle = angle.copy()
    angle[bent] = np.unwrap(angle[bent])
    full = weight >= 1
    held = np.interp(frames, frames[full], angle[full]) if full.any() else np.zeros_like(angle)
    return np.where(bent, weight * angle + (1 - weight) * held, held)


def smpl_forward_kinematics(local_rotations, trans, rest) -> np.ndarray:
    """Joints (T, 22, 3) of SMPL-layout local rotation matrices (T, 22, 3, 3) (or axis-angle
    (T, 22, 3) / poses (T, 72)) on rest offsets (22, 3), pelvis at trans (T, 3)."""
    rot = np.asarray(local_rotations, dtype=np.float64)
    if rot.ndim == 2 or (rot.ndim == 3 and rot.shape[-1] == 3):  # poses (T, 72) or axis-angle (T, J, 3)
        rot = Rotation.from_rotvec(rot.reshape(-1, 3)).as_matrix().reshape(len(rot), -1, 3, 3)
    rest = np.asarray(rest, dtype=np.float64)
    glob = [None] * NUM_JOINTS
    out = [None] * NUM_JOINTS
    out[0] = np.asarray(trans, dtype=np.float64)
    for j in range(NUM_JOINTS):
        p = PARENTS[j]
        glob[j] = rot[:, j] if p < 0 else glob[p] @ rot[:, j]
        if p >= 0:
            out[j] = out[p] + glob[p] @ rest[j]
    return np.stack(out, 1)


def humanml3d_fk_rotations(local_rotations) -> np.ndarray:
    """Per-joint quaternions (T, 22, 4) for utils.forward_kinematics from SMPL-layout local
    rotation matrices (T, 22, 3, 3): utils.forward_kinematics(q, trans, offsets=rest) equals
    smpl_forward_kinematics(local_rotations, trans, rest).

    HumanML3D's FK turns bone j by the running product of its chain (every chain, both arms
    included, starting from q[0]); SMPL turns it by the parent's global rotation, so q[child] =
    running^-1 @ G_parent(child), with q[0] = G_pelvis.
    """
    local = _t(local_rotations)
    glob = [None] * NUM_JOINTS
    for j in range(NUM_JOINTS):
        glob[j] = local[:, j] if PARENTS[j] < 0 else glob[PARENTS[j]] @ local[:, j]
    mats = [None] * NUM_JOINTS
    mats[0] = glob[0]
    for chain in KINEMATIC_CHAIN:
        running = glob[0]
        for child in chain[1:]:
            mats[child] = running.transpose(-1, -2) @ glob[PARENTS[child]]
            running = glob[PARENTS[child]]
    return matrix_to_quat(torch.stack(mats, 1)).numpy()


def features_rot6d(features) -> np.ndarray:
    """The 6D rotations (T, 22, 6) HumanML3D features (T, 263) carry, in HumanML3D's convention:
    joint 0 the root's rotation about y, world -> facing frame (utils.recover_root_rot_pos);
    joints 1-21 the feature dims 67:193, each the rotation of bone parent -> joint from its
    rest direction utils.RAW_OFFSETS relative to the running product of its chain (chains as
    utils.KINEMATIC_CHAIN, both arms starting from the root). utils.forward_kinematics(
    cont6d_to_quat(rot6d), root positions) rebuilds the joints where the features agree with
    themselves (data; generated features need not)."""
    feats = _t(features)
    if feats.ndim != 2 or feats.shape[1] != FEATURE_DIM:
        raise ValueError(f"expected features (T, {FEATURE_DIM}), got {tuple(feats.shape)}")
    root_quat, _ = recover_root_rot_pos(feats)
    body = feats[:, ROT_SLICE].reshape(len(feats), NUM_JOINTS - 1, 6)
    return torch.cat([quat_to_cont6d(root_quat)[:, None], body], 1).numpy()


def to_smpl_rest(poses, trans, rest, smpl_rest_joints) -> tuple[np.ndarray, np.ndarray]:
    """(poses (T, 72), trans (T, 3)) re-expressed for a real SMPL model's rest joints
    (22 or 24, 3), e.g. J_regressor @ v_shaped of your betas: each bone points where it points
    in ours (lengths are the model's), and trans moves by the model's rest pelvis J_0.

    With C_j the fixed rotation turning the model's rest bones of joint j onto ours (smallest
    rotation for one child, Kabsch for the pelvis and spine3, the parent's for leaves), the new
    local rotations are C_parent^T R_j C_j.
    """
    poses = np.asarray(poses, dtype=np.float64)
    num_frames = len(poses)
    local = Rotation.from_rotvec(poses.reshape(-1, 3)).as_matrix().reshape(num_frames, -1, 3, 3)[:, :NUM_JOINTS]
    target = np.asarray(smpl_rest_joints, dtype=np.float64)[:NUM_JOINTS]
    parents = np.array(PARENTS)
    theirs = _t(np.where(parents[:, None] >= 0, target - target[np.maximum(parents, 0)], 0.0))  # rest bones
    ours = _t(rest)
    corr = [None] * NUM_JOINTS
    for j in range(NUM_JOINTS):
        kids = _children(j)
        if not kids:
            corr[j] = corr[PARENTS[j]]
        elif len(kids) > 1:
            corr[j] = _kabsch(theirs[kids], ours[kids])
        else:
            corr[j] = _between(theirs[kids[0]], ours[kids[0]])
    corr = torch.stack(corr).numpy()  # (22, 3, 3)
    parent_corr = np.stack([np.eye(3) if p < 0 else corr[p] for p in PARENTS])
    new_local = parent_corr.transpose(0, 2, 1)[None] @ local @ corr[None]
    out = np.zeros((num_frames, 24, 3))
    out[:, :NUM_JOINTS] = Rotation.from_matrix(new_local.reshape(-1, 3, 3)).as_rotvec().reshape(num_frames, -1, 3)
    return out.reshape(num_frames, 72), np.asarray(trans, dtype=np.float64) - target[0]


def smpl_export(joints, features=None, fps: int = 20, prompt: Optional[str] = None) -> dict:
    """The arrays of the SMPL .npz (see the module doc) for joints (T, 22, 3) in metres or
    features (T, 263); `features` (T, 263) adds rot6d."""
    pos = np.asarray(as_joints(joints), dtype=np.float64)
    if pos.ndim != 3 or pos.shape[1:] != (NUM_JOINTS, 3):
        raise ValueError(f"expected joints (T, {NUM_JOINTS}, 3) in metres or features (T, {FEATURE_DIM}), "
                         f"got {pos.shape}")
    if not np.isfinite(pos).all():
        raise ValueError("joints contain NaN or infinite values")
    if isinstance(fps, bool) or not isinstance(fps, (int, np.integer)) or fps <= 0:
        raise ValueError(f"fps must be a positive integer, got {fps!r}")
    local, rest = fit_smpl_rotations(pos)
    axis_angle = Rotation.from_matrix(local.reshape(-1, 3, 3)).as_rotvec().reshape(len(pos), NUM_JOINTS, 3)
    poses = np.zeros((len(pos), 24, 3))
    poses[:, :NUM_JOINTS] = axis_angle
    out = dict(poses=poses.reshape(len(pos), 72).astype(np.float32), trans=pos[:, 0].astype(np.float32),
               fps=np.array(fps), mocap_framerate=np.array(float(fps)), up_axis=np.array("y"),
               joint_names=np.array(SMPL_JOINT_NAMES), parents=np.array(SMPL_PARENTS, dtype=np.int64),
               rest_offsets=rest.astype(np.float32), joints=pos.astype(np.float32),
               betas=np.zeros(10, dtype=np.float32), gender=np.array("neutral"), convention=np.array(CONVENTION))
    if features is not None:
        rot6d = features_rot6d(features)
        if len(rot6d) != len(pos):
            raise ValueError(f"features have {len(rot6d)} frames but joints {len(pos)}")
        out["rot6d"] = rot6d.astype(np.float32)
    if prompt is not None:
        out["prompt"] = np.array(prompt)
    return out


def write_smpl_npz(path: str, joints, features=None, fps: int = 20, prompt: Optional[str] = None) -> str:
    """Write the SMPL .npz of a motion (see `smpl_export`) atomically; returns the absolute path."""
    path = check_out_path(path)
    arrays = smpl_export(joints, features, fps, prompt)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    write_atomic(path, write)
    return path
