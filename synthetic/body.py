"""Body geometry of the generator: measures of HumanML3D's skeleton (utils.SKELETON_OFFSETS),
the rest posture, and the pose helpers built on them: heading axes, a foot rolling about its
heel or toe, two-bone inverse kinematics and the quaternions of limbs and Euler angles.

Side index 0 is the left side, 1 the right; the left side is at +x of a body facing +z.
"""
from __future__ import annotations

import math

import numpy as np
import torch

import utils

# ---------------------------------------------------------------------------------------
# Skeleton measures
# ---------------------------------------------------------------------------------------
SIDE_SIGN = np.array([1.0, -1.0])  # (2,) +1 for the left side, -1 for the right
THIGH_LENGTH = utils.BONE_LENGTHS[[4, 5]]  # (2,) per side, metres
SHIN_LENGTH = utils.BONE_LENGTHS[[7, 8]]
FOOT_LENGTH = utils.BONE_LENGTHS[[10, 11]]
UPPER_ARM_LENGTH = utils.BONE_LENGTHS[[18, 19]]
FOREARM_LENGTH = utils.BONE_LENGTHS[[20, 21]]
LEG_LENGTH = THIGH_LENGTH + SHIN_LENGTH
ARM_LENGTH = UPPER_ARM_LENGTH + FOREARM_LENGTH
HIP_OFFSET = utils.SKELETON_OFFSETS[[1, 2]]  # (2, 3) pelvis -> hip in the pelvis frame
FOOT_PITCH = 0.42  # rad; a planted foot points this much down from its ankle to its toe
ANKLE_HEIGHT = FOOT_LENGTH * math.sin(FOOT_PITCH)  # (2,) ankle height of a planted foot (toe at y=0)
HEEL_BACK = 0.045  # m the (virtual) heel contact point lies behind the ankle
STAND_REACH = 0.985  # hip-ankle distance of a standing leg, fraction of the leg length
PLANTED_REACH = 0.988  # the most a planted leg is stretched; the pelvis drops to keep this
SOFT_REACH = 0.992  # beyond this fraction a limb target is softly pulled back into reach
GRAVITY = 9.81  # m/s^2

# ---------------------------------------------------------------------------------------
# Rest posture
# ---------------------------------------------------------------------------------------
# Chest-frame directions of the collar bone and of the collar -> shoulder bone (left side,
# mirrored for the right), read off real HumanML3D poses.
COLLAR_DIR = np.array([0.28, 0.94, 0.19])
SHOULDER_DIR = np.array([0.94, 0.05, 0.33])
NEUTRAL_ARM = np.array([0.10, 0.15, 0.93])  # elevation, azimuth (rad), reach (fraction)
BASE_SPINE_BEND = np.array([-0.06, 0.06, 0.12])  # per spine bone, rad forward
BASE_NECK_PITCH = 0.20
BASE_HEAD_PITCH = -0.98  # the head bone's rest direction is +z; this tilts it up-forward
UP = np.array([0.0, 1.0, 0.0])


# ---------------------------------------------------------------------------------------
# Pose helpers (numpy, vectorised over frames)
# ---------------------------------------------------------------------------------------
def heading_axes(yaw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward (sin, 0, cos) and left (cos, 0, -sin) unit vectors (..., 3) of headings `yaw`."""
    s, c = np.sin(yaw), np.cos(yaw)
    zero = np.zeros_like(yaw)
    return np.stack([s, zero, c], -1), np.stack([c, zero, -s], -1)


def rolled_ankle(side: int, x: float, z: float, yaw: float, offset: np.ndarray) -> np.ndarray:
    """Ankle positions (N, 3) of a foot whose flat pose has its ankle over (x, z) facing `yaw`,
    rolled by `offset` (N,) rad: > 0 heel up about the fixed toe (push-off), < 0 toe up about
    the fixed heel (heel strike). The foot's pitch is then FOOT_PITCH + offset."""
    fwd, _ = heading_axes(np.array(yaw))
    up = UP
    flat = np.array([x, ANKLE_HEIGHT[side], z])
    lf = FOOT_LENGTH[side]
    heel_up = np.maximum(offset, 0.0)[:, None]  # (N, 1)
    toe = flat + lf * (math.cos(FOOT_PITCH) * fwd - math.sin(FOOT_PITCH) * up)
    by_toe = toe - lf * (np.cos(FOOT_PITCH + heel_up) * fwd - np.sin(FOOT_PITCH + heel_up) * up)  # (N, 3)
    toe_up = np.maximum(-offset, 0.0)[:, None]  # (N, 1)
    heel = flat - HEEL_BACK * fwd - ANKLE_HEIGHT[side] * up
    f, u = HEEL_BACK, ANKLE_HEIGHT[side]
    by_heel = heel + (f * np.cos(toe_up) - u * np.sin(toe_up)) * fwd + (f * np.sin(toe_up) + u * np.cos(toe_up)) * up
    return np.where(offset[:, None] >= 0, by_toe, by_heel)


def two_bone_ik(root: np.ndarray, target: np.ndarray, l1: np.ndarray, l2: np.ndarray, hint: np.ndarray):
    """Analytic two-bone IK, vectorised: root, target, hint (N, 3), bone lengths l1, l2 (N,).

    hint is the direction the middle joint should point to. Returns (middle joint (N, 3),
    reached end (N, 3), bend-plane normal (N, 3)). Targets beyond SOFT_REACH of the limb
    are pulled back smoothly (tanh), never past full extension.
    """
    v = target - root
    dist = np.linalg.norm(v, axis=-1)  # (N,)
    u = v / dist[:, None]
    full = l1 + l2
    knee_start = SOFT_REACH * full
    span = (0.9999 - SOFT_REACH) * full
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
# Rotations (torch float64 through utils)
# ---------------------------------------------------------------------------------------
_AXES = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}


def as_tensor(x) -> torch.Tensor:
    """float64 torch view of an array-like (utils' quaternion maths runs in torch)."""
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))


def euler_quats(angles: np.ndarray, axes: str) -> torch.Tensor:
    """Quaternions (..., 4) of successive rotations about `axes` (e.g. "yxz"): angles (..., len(axes)),
    composed as R_axes[0] * R_axes[1] * ..."""
    angles = as_tensor(angles)
    axis = torch.tensor([_AXES[a] for a in axes], dtype=torch.float64).expand(angles.shape + (3,))
    quats = utils.quat_from_axis_angle(axis, angles)  # (..., k, 4)
    out = quats[..., 0, :]
    for k in range(1, len(axes)):
        out = utils.qmul(out, quats[..., k, :])
    return out


def limb_quats(bone_dir: np.ndarray, bend_normal: np.ndarray, rest_normal: np.ndarray) -> torch.Tensor:
    """Global rotations (..., 4) taking a limb bone's rest direction (0, -1, 0) to `bone_dir`
    (..., 3) and the rest normal of its bending plane (`rest_normal`, (..., 3)) to `bend_normal`."""
    b = bone_dir / np.linalg.norm(bone_dir, axis=-1, keepdims=True)
    nrm = bend_normal - (bend_normal * b).sum(-1, keepdims=True) * b
    nrm = nrm / np.linalg.norm(nrm, axis=-1, keepdims=True)
    world = np.stack([b, nrm, np.cross(b, nrm)], axis=-1)  # (..., 3, 3) columns
    rest_dir = np.broadcast_to(np.array([0.0, -1.0, 0.0]), rest_normal.shape)
    rest = np.stack([rest_dir, rest_normal, np.cross(rest_dir, rest_normal)], axis=-1)
    return utils.matrix_to_quat(as_tensor(world @ np.swapaxes(rest, -1, -2)))


def joint_index(*joints: int) -> torch.Tensor:
    """Index tensor (torch indexes much faster with tensors than with Python lists)."""
    return torch.tensor(joints)


def _chain_predecessors() -> torch.Tensor:
    """(22,) the joint whose rotation precedes each one in utils.forward_kinematics."""
    previous = [0] * utils.NUM_JOINTS
    for chain in utils.KINEMATIC_CHAIN:
        for a, b in zip(chain[1:-1], chain[2:]):
            previous[b] = a
    return torch.tensor(previous)


CHAIN_PREVIOUS = _chain_predecessors()
