"""Motion maths for the HumanML3D representation: skeleton, quaternions, 6D rotations,
forward/inverse kinematics, and the 263-dim feature layout.

Pure functions, no I/O. Quaternions are (w, x, y, z). Positions are metres, y up; a person in
the rest pose faces +z with their left side at +x. Most functions accept torch tensors; the
feature extraction (`joints_to_features`) works in numpy as HumanML3D's pipeline does.
"""
from __future__ import annotations

from typing import Union

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

Array = Union[np.ndarray, torch.Tensor]

# ---------------------------------------------------------------------------------------
# The 22-joint SMPL skeleton of HumanML3D
# ---------------------------------------------------------------------------------------
NUM_JOINTS = 22
FEATURE_DIM = 12 * NUM_JOINTS - 1  # 263
JOINT_NAMES = [
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist",
]
# Chains from a root outwards: right leg, left leg, spine+head, right arm, left arm.
KINEMATIC_CHAIN = [[0, 2, 5, 8, 11], [0, 1, 4, 7, 10], [0, 3, 6, 9, 12, 15],
                   [9, 14, 17, 19, 21], [9, 13, 16, 18, 20]]
PARENTS = [-1] * NUM_JOINTS
for _chain in KINEMATIC_CHAIN:
    for _parent, _child in zip(_chain[:-1], _chain[1:]):
        PARENTS[_child] = _parent
# Unit direction of each bone (parent -> joint) in the rest pose (HumanML3D's raw offsets).
RAW_OFFSETS = np.array([
    [0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, -1, 0], [0, 1, 0],
    [0, -1, 0], [0, -1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [0, 1, 0], [1, 0, 0],
    [-1, 0, 0], [0, 0, 1], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0],
    [0, -1, 0],
], dtype=np.float64)
# Bone lengths in metres of the skeleton every HumanML3D motion is retargeted to, measured
# on new_joints/012314.npy of the real data set (constant across its frames to < 1e-6 m).
BONE_LENGTHS = np.array([
    0.0, 0.10307, 0.10988, 0.13157, 0.39362, 0.39019, 0.14319, 0.43243, 0.42564, 0.05736,
    0.14338, 0.14942, 0.21936, 0.13749, 0.14338, 0.10304, 0.13161, 0.12298, 0.25684, 0.26309,
    0.26601, 0.26988,
], dtype=np.float64)
SKELETON_OFFSETS = RAW_OFFSETS * BONE_LENGTHS[:, None]  # (22, 3) rest-pose bone vectors
FOOT_IDX_LEFT = [7, 10]  # left ankle, left toe
FOOT_IDX_RIGHT = [8, 11]
FACE_JOINT_IDX = [2, 1, 17, 16]  # right hip, left hip, right shoulder, left shoulder

# Feature layout slices of the 263-dim vector.
ROOT_SLICE = slice(0, 4)
RIC_SLICE = slice(4, 4 + (NUM_JOINTS - 1) * 3)  # 4:67
ROT_SLICE = slice(RIC_SLICE.stop, RIC_SLICE.stop + (NUM_JOINTS - 1) * 6)  # 67:193
VEL_SLICE = slice(ROT_SLICE.stop, ROT_SLICE.stop + NUM_JOINTS * 3)  # 193:259
FOOT_SLICE = slice(VEL_SLICE.stop, VEL_SLICE.stop + 4)  # 259:263


def _as_torch(x: Array) -> tuple[torch.Tensor, bool]:
    """(tensor, was_numpy); numpy input becomes float64 torch for exactness."""
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.asarray(x, dtype=np.float64)), True
    return x, False


# ---------------------------------------------------------------------------------------
# Quaternions (w, x, y, z), torch, broadcasting over leading dims
# ---------------------------------------------------------------------------------------
def qnormalize(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternion(s) (..., 4)."""
    return q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def qmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product a*b of (..., 4) quaternions (rotation b first, then a)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], dim=-1)


def qinv(q: torch.Tensor) -> torch.Tensor:
    """Inverse (conjugate) of unit quaternions (..., 4)."""
    return q * q.new_tensor([1.0, -1.0, -1.0, -1.0])


def qrot(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rotate vectors v (..., 3) by unit quaternions q (..., 4)."""
    q_vec = q[..., 1:]
    uv = torch.linalg.cross(q_vec, v)
    uuv = torch.linalg.cross(q_vec, uv)
    return v + 2.0 * (q[..., :1] * uv + uuv)


def qbetween(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Shortest-arc unit quaternion rotating direction u onto direction v, (..., 3) -> (..., 4)."""
    u = u / u.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    v = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    axis = torch.cross(u, v, dim=-1)
    w = 1.0 + (u * v).sum(-1, keepdim=True)
    q = torch.cat([w, axis], dim=-1)
    # Opposite vectors: rotate by pi about any axis orthogonal to u.
    opposite = w[..., 0] < 1e-9
    if opposite.any():
        ortho = torch.cross(u, u.new_tensor([1.0, 0.0, 0.0]).expand_as(u), dim=-1)
        small = ortho.norm(dim=-1, keepdim=True) < 1e-6
        ortho = torch.where(small, torch.cross(u, u.new_tensor([0.0, 1.0, 0.0]).expand_as(u), dim=-1), ortho)
        q = torch.where(opposite[..., None], torch.cat([torch.zeros_like(w), ortho], -1), q)
    return qnormalize(q)


def quat_from_axis_angle(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Unit quaternion for a rotation of `angle` radians (...) about `axis` (..., 3)."""
    axis = axis / axis.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    half = 0.5 * angle[..., None]
    return torch.cat([torch.cos(half), torch.sin(half) * axis], dim=-1)


def quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) of unit quaternions (..., 4)."""
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(q.shape[:-1] + (3, 3))


def matrix_to_quat(m: torch.Tensor) -> torch.Tensor:
    """Unit quaternions (..., 4) with w >= 0 of rotation matrices (..., 3, 3)."""
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    # Four candidate solutions; take the numerically best one per element.
    candidates = torch.stack([
        torch.stack([1 + m00 + m11 + m22, m[..., 2, 1] - m[..., 1, 2],
                     m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
        torch.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m00 - m11 - m22,
                     m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]], -1),
        torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0],
                     1 - m00 + m11 - m22, m[..., 1, 2] + m[..., 2, 1]], -1),
        torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0],
                     m[..., 1, 2] + m[..., 2, 1], 1 - m00 - m11 + m22], -1),
    ], dim=-2)  # (..., 4 candidates, 4)
    diag = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22,
                        1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1)
    best = diag.argmax(-1)
    q = torch.gather(candidates, -2, best[..., None, None].expand(best.shape + (1, 4))).squeeze(-2)
    q = qnormalize(q)
    return torch.where(q[..., :1] < 0, -q, q)


def quat_to_cont6d(q: torch.Tensor) -> torch.Tensor:
    """Continuous 6D rotation (first two matrix columns, concatenated): (..., 4) -> (..., 6)."""
    m = quat_to_matrix(q)
    return torch.cat([m[..., :, 0], m[..., :, 1]], dim=-1)


def cont6d_to_matrix(d6: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) from 6D rotations (..., 6) by Gram-Schmidt."""
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = a1 / a1.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    b2 = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
    b2 = b2 / b2.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def cont6d_to_quat(d6: torch.Tensor) -> torch.Tensor:
    """Unit quaternions (..., 4) from 6D rotations (..., 6)."""
    return matrix_to_quat(cont6d_to_matrix(d6))


def qslerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between unit quaternions a, b (..., 4) at fraction t (...)."""
    t = torch.as_tensor(t, dtype=a.dtype, device=a.device)[..., None]
    dot = (a * b).sum(-1, keepdim=True)
    b = torch.where(dot < 0, -b, b)
    dot = dot.abs().clamp(max=1.0)
    theta = torch.acos(dot)
    sin_theta = torch.sin(theta)
    near = sin_theta < 1e-6
    safe_sin = torch.where(near, torch.ones_like(sin_theta), sin_theta)
    wa = torch.where(near, 1 - t, torch.sin((1 - t) * theta) / safe_sin)
    wb = torch.where(near, t, torch.sin(t * theta) / safe_sin)
    return qnormalize(wa * a + wb * b)


# ---------------------------------------------------------------------------------------
# Forward / inverse kinematics on the HumanML3D skeleton
# ---------------------------------------------------------------------------------------
def forward_kinematics(local_quats: Array, root_pos: Array, offsets: Array | None = None) -> Array:
    """Joint positions (..., 22, 3) from per-joint rotations (..., 22, 4) and root position (..., 3).

    HumanML3D's convention: local_quats[..., 0] is the root's global rotation; walking each
    kinematic chain from its start, R <- R * local_quats[j] and joint j = parent + R(offsets[j]).
    Both arm chains start from the root rotation. `offsets` (22, 3) default SKELETON_OFFSETS.
    """
    quats, was_numpy = _as_torch(local_quats)
    root, _ = _as_torch(root_pos)
    root = root.to(quats)
    offs = torch.as_tensor(SKELETON_OFFSETS if offsets is None else offsets).to(quats)
    joints = [None] * NUM_JOINTS
    joints[0] = root
    for chain in KINEMATIC_CHAIN:
        rot = quats[..., 0, :]
        for parent, child in zip(chain[:-1], chain[1:]):
            rot = qmul(rot, quats[..., child, :])
            joints[child] = joints[parent] + qrot(rot, offs[child].expand(rot.shape[:-1] + (3,)))
    out = torch.stack(joints, dim=-2)
    return out.numpy() if was_numpy else out


LIMB_IK = {4: 7, 5: 8}  # knee -> ankle: the two-bone limbs that fit_bone_lengths solves by IK


def _unit(v: torch.Tensor) -> torch.Tensor:
    """v / |v| over the last axis (zero vectors stay zero)."""
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def two_bone_ik(start: torch.Tensor, mid: torch.Tensor, end: torch.Tensor, upper, lower
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Middle and end joints (..., 3) of a limb from `start` with bones of lengths upper, lower
    (numbers, or tensors (..., 1) of one length per pose): the end at `end` when within reach
    (else as near as the limb reaches, towards it), the middle joint on the side of start -> end
    where `mid` bends it (any side for a straight limb). Torch, differentiable."""
    upper, lower = torch.as_tensor(upper).to(start), torch.as_tensor(lower).to(start)
    d = end - start
    dist = d.norm(dim=-1, keepdim=True)
    toward = torch.where(dist > 1e-9, d / dist.clamp_min(1e-9), _unit(mid - start))
    reach = torch.minimum(torch.maximum(dist, (upper - lower).abs() + 1e-9), upper + lower)
    along = (upper * upper - lower * lower + reach * reach) / (2.0 * reach)
    height = (upper * upper - along * along).clamp_min(1e-18).sqrt()  # (finite gradient when straight)
    bend = (mid - start) - ((mid - start) * toward).sum(-1, keepdim=True) * toward
    any_side = torch.linalg.cross(toward, torch.where(toward[..., :1].abs() < 0.9, toward.new_tensor([1.0, 0, 0]),
                                                      toward.new_tensor([0, 1.0, 0])).expand_as(toward), dim=-1)
    bend = torch.where(bend.norm(dim=-1, keepdim=True) > 1e-9, bend, any_side)
    return start + along * toward + height * _unit(bend), start + reach * toward


def fit_bone_lengths(joints: Array, bone_lengths: Array | None = None, keep_limb_ends: bool = True) -> Array:
    """Joints (..., 22, 3) whose bones have exactly the skeleton's lengths (bone_lengths[child],
    default BONE_LENGTHS), built from the root (kept in place) along KINEMATIC_CHAIN.

    Each bone keeps the direction it has in `joints`, except, with keep_limb_ends, the knees:
    two-bone IK puts each ankle where `joints` has it (when within the leg's reach) with the knee
    bent in the plane the input bends it in, so that planted feet stay where they were instead
    of collecting every length error up the leg (the feet's skating stays the network's own).
    The arms keep their directions: an elbow placed by IK jitters wherever the arm is nearly
    straight (measured: +60% elbow jerk), and a hand does not carry the body's weight.
    A pose-by-pose fit, so equal poses stay equal; a bone of zero length takes its rest
    direction (RAW_OFFSETS). numpy in, numpy out (float64); torch in, torch out (differentiable).
    Cost: a few dozen vector operations per pose.
    """
    pos, was_numpy = _as_torch(joints)
    if pos.shape[-2:] != (NUM_JOINTS, 3):
        raise ValueError(f"fit_bone_lengths expects (..., {NUM_JOINTS}, 3) joints, got {tuple(pos.shape)}")
    lengths = torch.as_tensor(BONE_LENGTHS if bone_lengths is None else bone_lengths).to(pos)
    rest = torch.as_tensor(RAW_OFFSETS).to(pos)
    out = [None] * NUM_JOINTS
    out[0] = pos[..., 0, :]
    for chain in KINEMATIC_CHAIN:
        for parent, child in zip(chain[:-1], chain[1:]):
            if out[child] is not None:
                continue
            if keep_limb_ends and child in LIMB_IK:
                tip = LIMB_IK[child]
                out[child], out[tip] = two_bone_ik(out[parent], pos[..., child, :], pos[..., tip, :],
                                                   lengths[child], lengths[tip])
                continue
            bone = pos[..., child, :] - pos[..., parent, :]
            norm = bone.norm(dim=-1, keepdim=True)
            direction = torch.where(norm > 1e-9, bone / norm.clamp_min(1e-9), rest[child].expand_as(bone))
            out[child] = out[parent] + lengths[child] * direction
    fitted = torch.stack(out, dim=-2)
    return fitted.numpy() if was_numpy else fitted


def facing_direction(joints: torch.Tensor, smooth: bool = False, hips_swapped: bool = False) -> torch.Tensor:
    """Unit facing direction (..., 3) in the xz plane from hips and shoulders of joints (..., 22, 3).

    `smooth` Gaussian-filters it over time (sigma 20 frames; joints must be (T, 22, 3)).
    `hips_swapped` reproduces HumanML3D's IK, which unpacks its face joints as (left hip,
    right hip, ...) and so adds (left - right) hip and (right - left) shoulder vectors; the
    released features were made that way, so their root rotation follows that direction.
    """
    r_hip, l_hip, r_shoulder, l_shoulder = FACE_JOINT_IDX
    if hips_swapped:
        r_hip, l_hip = l_hip, r_hip
    across = (joints[..., r_hip, :] - joints[..., l_hip, :]) + (joints[..., r_shoulder, :] - joints[..., l_shoulder, :])
    across = across / across.norm(dim=-1, keepdim=True)
    forward = torch.cross(across.new_tensor([0.0, 1.0, 0.0]).expand_as(across), across, dim=-1)
    if smooth:
        forward = torch.from_numpy(gaussian_filter1d(forward.numpy(), 20, axis=0, mode="nearest")).to(forward)
    return forward / forward.norm(dim=-1, keepdim=True)


def facing_rotation(joints: torch.Tensor, hips_swapped: bool = False) -> torch.Tensor:
    """Rotation (..., 4) about y that turns the body's facing direction onto +z (world -> facing
    frame), from joints (..., 22, 3); its inverse turns +z onto the facing direction."""
    facing = facing_direction(joints, smooth=False, hips_swapped=hips_swapped)
    facing = facing * facing.new_tensor([1.0, 0.0, 1.0])
    return qbetween(facing, facing.new_tensor([0.0, 0.0, 1.0]).expand_as(facing))


def inverse_kinematics(joints: Array, smooth_forward: bool = True) -> Array:
    """Per-joint rotations (T, 22, 4) that `forward_kinematics` maps back to joints (T, 22, 3).

    The root rotation turns the body's (Gaussian-smoothed, sigma 20 frames) facing direction
    onto +z, as HumanML3D does; frame 0's root rotation is the identity, as in HumanML3D.
    Every other joint's rotation aligns its rest bone direction with the observed bone.
    """
    pos, was_numpy = _as_torch(joints)
    forward = facing_direction(pos, smooth_forward, hips_swapped=True)
    root_quat = qbetween(forward, forward.new_tensor([0.0, 0.0, 1.0]).expand_as(forward))
    root_quat = root_quat.clone()
    root_quat[0] = root_quat.new_tensor([1.0, 0.0, 0.0, 0.0])
    quats = torch.zeros(pos.shape[:-1] + (4,), dtype=pos.dtype)
    quats[..., 0] = 1.0
    quats[:, 0] = root_quat
    raw = torch.as_tensor(RAW_OFFSETS).to(pos)
    for chain in KINEMATIC_CHAIN:
        rot = root_quat
        for parent, child in zip(chain[:-1], chain[1:]):
            bone = pos[:, child] - pos[:, parent]
            rot_rest_to_bone = qbetween(raw[child].expand_as(bone), bone)
            local = qmul(qinv(rot), rot_rest_to_bone)
            quats[:, child] = local
            rot = qmul(rot, local)
    return quats.numpy() if was_numpy else quats


# ---------------------------------------------------------------------------------------
# The 263-dim HumanML3D features
# ---------------------------------------------------------------------------------------
def foot_contacts(joints: np.ndarray, threshold: float = 0.002) -> tuple[np.ndarray, np.ndarray]:
    """Velocity-based foot contacts of joints (T, 22, 3): (left (T-1, 2), right (T-1, 2)) floats.

    A foot joint is in contact when its squared displacement to the next frame is below
    `threshold` (m^2), HumanML3D's rule.
    """
    def contact(idx):
        disp = joints[1:, idx] - joints[:-1, idx]
        return ((disp ** 2).sum(-1) < threshold).astype(np.float64)
    return contact(FOOT_IDX_LEFT), contact(FOOT_IDX_RIGHT)


def joints_to_features(joints: np.ndarray, feet_threshold: float = 0.002, refloor: bool = True) -> np.ndarray:
    """HumanML3D features (T-1, 263) of a motion's joint positions (T, 22, 3) in metres.

    The motion is first put on the floor (its lowest joint at y = 0, as HumanML3D's pipeline
    does; refloor=False keeps the joints' own floor, e.g. bvh.import_bvh's robust one), its first
    root at the xz origin and its first frame facing +z; only the root height depends on the floor.
    """
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3) or joints.shape[0] < 2:
        raise ValueError(f"joints_to_features expects (T>=2, {NUM_JOINTS}, 3) joints, got {joints.shape}")
    positions = joints.copy()
    if refloor:
        positions[..., 1] -= positions[..., 1].min()
    positions -= positions[0, 0] * np.array([1.0, 0.0, 1.0])
    pos_t = torch.from_numpy(positions)
    facing = facing_direction(pos_t[:1])
    face_init = qbetween(facing, facing.new_tensor([[0.0, 0.0, 1.0]]))  # (1, 4)
    pos_t = qrot(face_init[:, None].expand(pos_t.shape[:-1] + (4,)), pos_t)

    quats = inverse_kinematics(pos_t)  # (T, 22, 4)
    root_rot = quats[:, 0]  # (T, 4) world -> facing frame
    # Root: angular velocity about y (as arcsin of the relative rotation's y component, i.e.
    # HumanML3D's half-angle), xz velocity in the facing frame, height.
    root_vel = qrot(root_rot[1:], pos_t[1:, 0] - pos_t[:-1, 0])  # (T-1, 3)
    rel_rot = qmul(root_rot[1:], qinv(root_rot[:-1]))
    ang_vel = torch.arcsin(rel_rot[:, 2:3].clamp(-1, 1))
    root_data = torch.cat([ang_vel, root_vel[:, [0, 2]], pos_t[:-1, 0, 1:2]], dim=-1)  # (T-1, 4)
    # Root-relative joint positions in the facing frame.
    local = pos_t.clone()
    local[..., 0] -= pos_t[:, 0:1, 0]
    local[..., 2] -= pos_t[:, 0:1, 2]
    local = qrot(root_rot[:, None].expand(local.shape[:-1] + (4,)), local)
    ric = local[:-1, 1:].reshape(len(local) - 1, -1)  # (T-1, 63)
    rot6d = quat_to_cont6d(quats[:-1, 1:]).reshape(len(local) - 1, -1)  # (T-1, 126)
    vel = qrot(root_rot[:-1, None].expand(pos_t[1:].shape[:-1] + (4,)), pos_t[1:] - pos_t[:-1])
    vel = vel.reshape(len(vel), -1)  # (T-1, 66)
    feet_l, feet_r = foot_contacts(pos_t.numpy(), feet_threshold)
    feats = torch.cat([root_data, ric, rot6d, vel, torch.from_numpy(feet_l), torch.from_numpy(feet_r)], -1)
    return feats.numpy().astype(np.float32)


def recover_root_rot_pos(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Root rotation (..., T, 4) (world -> facing) and root position (..., T, 3) from features."""
    ang_vel = features[..., 0]
    ang = torch.zeros_like(ang_vel)
    ang[..., 1:] = ang_vel[..., :-1]
    ang = torch.cumsum(ang, dim=-1)
    zeros = torch.zeros_like(ang)
    root_quat = torch.stack([torch.cos(ang), zeros, torch.sin(ang), zeros], dim=-1)
    step = torch.zeros(features.shape[:-1] + (3,), dtype=features.dtype, device=features.device)
    step[..., 1:, 0] = features[..., :-1, 1]
    step[..., 1:, 2] = features[..., :-1, 2]
    step = qrot(qinv(root_quat), step)
    root_pos = torch.cumsum(step, dim=-2)
    root_pos[..., 1] = features[..., 3]
    return root_quat, root_pos


def features_to_joints(features: Array) -> Array:
    """Joint positions (..., T, 22, 3) from HumanML3D features (..., T, 263) (unnormalised).

    The recovered motion starts at the xz origin facing +z; batched and differentiable.
    """
    feats, was_numpy = _as_torch(features)
    if feats.shape[-1] != FEATURE_DIM:
        raise ValueError(f"features_to_joints expects (..., T, {FEATURE_DIM}) features, got {tuple(feats.shape)}")
    root_quat, root_pos = recover_root_rot_pos(feats)
    local = feats[..., RIC_SLICE].reshape(feats.shape[:-1] + (NUM_JOINTS - 1, 3))
    world = qrot(qinv(root_quat)[..., None, :].expand(local.shape[:-1] + (4,)), local)
    world = world + root_pos[..., None, :] * world.new_tensor([1.0, 0.0, 1.0])
    joints = torch.cat([root_pos[..., None, :], world], dim=-2)
    return joints.numpy().astype(np.float32) if was_numpy else joints


def delivered_joints(features: torch.Tensor, fit_bones: bool = True) -> torch.Tensor:
    """The joints (..., T, 22, 3) a motion is delivered as, from unnormalised features
    (..., T, 263): features_to_joints in float32, then each bone set to the skeleton's length
    (fit_bone_lengths) unless fit_bones is False."""
    joints = features_to_joints(features.float())
    return fit_bone_lengths(joints) if fit_bones else joints


def feature_mean_std(features_list: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean (263,) and std (263,) of a list of feature arrays (T, 263), HumanML3D-style:
    the std is averaged within each group (root channels separately, then positions, rotations,
    velocities, foot contacts) so that the groups keep their relative scale."""
    data = np.concatenate(features_list, axis=0).astype(np.float64)
    mean = data.mean(axis=0)
    std = data.std(axis=0)
    for group in (slice(0, 1), slice(1, 3), slice(3, 4), RIC_SLICE, ROT_SLICE, VEL_SLICE, FOOT_SLICE):
        std[group] = std[group].mean()
    std = np.maximum(std, 1e-4)
    return mean.astype(np.float32), std.astype(np.float32)


def num_keyframes(length, interval: int):
    """Number of keyframes of a `length`-frame motion (an int, or a tensor of lengths): the
    frames 0, interval, 2*interval, ... and always the last frame, length - 1."""
    return (length + interval - 2) // interval + 1


def keyframe_indices(length: int, interval: int) -> np.ndarray:
    """Keyframe frame indices (K,) of a `length`-frame motion: 0, interval, 2*interval, ..., length-1.
    The one home of the keyframe-spacing rule; `num_keyframes` counts them."""
    if length < 1 or interval < 1:
        raise ValueError(f"keyframe_indices needs length >= 1 and interval >= 1, got {length}, {interval}")
    idx = np.minimum(np.arange(num_keyframes(length, interval), dtype=np.int64) * interval, length - 1)
    return idx


# ---------------------------------------------------------------------------------------
# Conversions between joints and features used by generation, export and drawing
# ---------------------------------------------------------------------------------------
def as_joints(motion, name: str = "motion") -> np.ndarray:
    """Joints (..., T, 22, 3) float64 from joints (T, 22, 3) / (N, T, 22, 3) or HumanML3D
    features (T, 263) / (N, T, 263), numpy or torch. Raises ValueError naming the problem."""
    if isinstance(motion, torch.Tensor):
        motion = motion.detach().cpu().numpy()
    arr = np.asarray(motion)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must hold numbers, got dtype {arr.dtype}")
    expected = f"expected (T, {NUM_JOINTS}, 3) joints in metres or (T, {FEATURE_DIM}) features (or a batch of either)"
    is_features = arr.ndim in (2, 3) and arr.shape[-1] == FEATURE_DIM
    is_joints = arr.ndim in (3, 4) and arr.shape[-2:] == (NUM_JOINTS, 3)
    if not (is_features or is_joints):
        raise ValueError(f"{name} has shape {arr.shape}; {expected}")
    if arr.size == 0:
        raise ValueError(f"{name} has shape {arr.shape} with no frames; {expected}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf values; pass a finite motion")
    if is_features:
        arr = features_to_joints(arr.astype(np.float64))
        if not np.isfinite(arr).all():
            raise ValueError(f"{name}: features do not decode to finite joints; pass valid HumanML3D features")
    return arr.astype(np.float64)


def pose_features(joints: torch.Tensor) -> torch.Tensor:
    """Root height and root-relative joint positions in the facing frame of single poses:
    joints (P, 22, 3) -> (P, 64), the feature dims 3:67 that a pose fixes."""
    to_facing = facing_rotation(joints, hips_swapped=True)  # (P, 4)
    local = joints[:, 1:] - joints[:, :1] * joints.new_tensor([1.0, 0.0, 1.0])
    local = qrot(to_facing[:, None].expand(local.shape[:-1] + (4,)), local)
    return torch.cat([joints[:, 0, 1:2], local.reshape(len(joints), -1)], dim=-1)


def place_keyframes(keyframe_features: torch.Tensor, motion_features: torch.Tensor,
                    frame_idx: torch.Tensor) -> torch.Tensor:
    """World joint positions (K, 22, 3) of keyframe poses (K, 263), placed with the root
    rotation and position that the whole motion (T, 263) has at their frames (K,)."""
    root_quat, root_pos = recover_root_rot_pos(motion_features)  # (T, 4), (T, 3)
    quat, pos = root_quat[frame_idx], root_pos[frame_idx]
    local = keyframe_features[:, RIC_SLICE].reshape(len(frame_idx), NUM_JOINTS - 1, 3)
    world = qrot(qinv(quat)[:, None].expand(local.shape[:-1] + (4,)), local)
    world = world + pos[:, None] * world.new_tensor([1.0, 0.0, 1.0])
    root = torch.cat([pos[:, :1], keyframe_features[:, 3:4], pos[:, 2:]], dim=-1)
    return torch.cat([root[:, None], world], dim=1)
