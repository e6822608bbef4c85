"""From imported joints to the project's canonical motion: resampling, up axis, HumanML3D's
uniform skeleton, placement, and left/right mirroring.

- `resample_local`: BVH local transforms at the file's rate -> another rate (translations
  linearly, rotations by slerp), before forward kinematics, so bones keep their lengths.
- `rest_up`: the up axis of a rig from its rest pose (the HIERARCHY offsets): the legs point
  down. `detect_up` finds it from the motion where the rest pose has no extent.
- `to_y_up`: turn a figure whose up axis is x, z or negative onto +y.
- `uniform_skeleton`: HumanML3D's retargeting step. Every bone keeps its direction and gets the
  canonical length (utils.BONE_LENGTHS); the root trajectory is scaled by the ratio of the
  canonical leg length (thigh + shin) to the figure's (median over frames). The result equals
  utils.forward_kinematics(utils.inverse_kinematics(joints), root * ratio).
- `place_canonically`: feet on the floor (`floor_height`: a low percentile over the take of the
  lowest foot joint of each frame, so a stray frame does not lift the rest), the first frame's
  root at the xz origin, the first frame facing +z with the body's left at +x (`start_facing`:
  the median facing of the first FACING_WINDOW seconds, so a T-pose in frame 0 does not skew it).
- `mirror_joints`: HumanML3D's mirror augmentation (x negated, left and right joints swapped).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

from utils import (BONE_LENGTHS, JOINT_NAMES, KINEMATIC_CHAIN, RAW_OFFSETS, facing_direction, facing_rotation,
                   matrix_to_quat, qbetween, qinv, qrot, qslerp, quat_to_matrix)

FOOT_JOINTS = [7, 8, 10, 11]  # ankles and feet (toes): the joints that stand on the floor
FLOOR_PERCENTILE = 5.0  # percentile over frames of the per-frame lowest foot joint that is the floor
FACING_WINDOW = 0.25  # seconds at the start whose median facing is the first frame's

# Joint index of each joint's mirror image (left <-> right).
MIRROR_INDEX = [JOINT_NAMES.index(n.replace("left_", "@").replace("right_", "left_").replace("@", "right_"))
                for n in JOINT_NAMES]
_AXES = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}


def source_fps(frame_time: float) -> float:
    """Frames per second of a BVH `Frame Time` (0.0333333 -> 30.0: rounded when within 0.1%)."""
    if not frame_time > 0:
        raise ValueError(f"Frame Time must be > 0 seconds, got {frame_time}")
    fps = 1.0 / frame_time
    return float(round(fps)) if abs(fps - round(fps)) < 1e-3 * fps else fps


def resample_local(local_pos: np.ndarray, local_rot: np.ndarray, src_fps: float, fps: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Local translations (F, J, 3) and rotation matrices (F, J, 3, 3) at `src_fps` -> the same
    at `fps`, from frame 0 to the last source frame (translations linear, rotations slerped)."""
    num = len(local_pos)
    if num < 2 or math.isclose(src_fps, fps, rel_tol=1e-9):
        return local_pos, local_rot
    count = int(math.floor((num - 1) * fps / src_fps + 1e-6)) + 1
    t = np.arange(count) * (src_fps / fps)  # source frame index of each output frame
    i0 = np.minimum(np.floor(t).astype(np.int64), num - 2)
    frac = t - i0
    pos = local_pos[i0] + frac[:, None, None] * (local_pos[i0 + 1] - local_pos[i0])
    quats = matrix_to_quat(torch.from_numpy(np.ascontiguousarray(local_rot)))  # (F, J, 4)
    weight = torch.from_numpy(frac)[:, None].expand(count, quats.shape[1])
    rot = quat_to_matrix(qslerp(quats[i0], quats[i0 + 1], weight)).numpy()
    return pos, rot


def rest_up(rest: np.ndarray) -> Optional[str]:
    """The up axis ('y', '-z', ...) of a rig's rest pose, SMPL joints (22, 3): the axis the legs
    point down along and the spine up along. None where the rest pose is not a standing figure
    (e.g. rigs whose offsets are all along each bone's own x axis, like Bandai Namco's)."""
    spine = rest[12] - rest[0]
    legs = (rest[7] + rest[8] - rest[1] - rest[2]) / 2
    up = spine / max(np.linalg.norm(spine), 1e-12) - legs / max(np.linalg.norm(legs), 1e-12)
    axis = int(np.argmax(np.abs(up)))
    aligned = float(np.dot(spine, -legs)) > 0.85 * np.linalg.norm(spine) * np.linalg.norm(legs)
    if not aligned or not abs(up[axis]) > 0.8 * np.linalg.norm(up):
        return None
    return ("" if up[axis] > 0 else "-") + "xyz"[axis]


def detect_up(joints: np.ndarray) -> str:
    """The up axis ('y', '-z', ...) of joints (F, 22, 3): the axis the mean pelvis -> neck
    vector points along most."""
    spine = (joints[:, 12] - joints[:, 0]).mean(axis=0)
    axis = int(np.argmax(np.abs(spine)))
    return ("" if spine[axis] > 0 else "-") + "xyz"[axis]


def to_y_up(joints: np.ndarray, up: str) -> np.ndarray:
    """Joints (..., 22, 3) rotated so that the `up` axis ('z', '-x', ...) becomes +y."""
    if up == "y":
        return joints
    sign = -1.0 if up.startswith("-") else 1.0
    axis = torch.tensor(_AXES[up[-1]], dtype=torch.float64) * sign
    turn = qbetween(axis, torch.tensor(_AXES["y"], dtype=torch.float64))
    pos = torch.from_numpy(np.asarray(joints, dtype=np.float64))
    return qrot(turn.expand(pos.shape[:-1] + (4,)), pos).numpy()


def leg_length(joints: np.ndarray) -> float:
    """Median over frames of the mean thigh + shin length of both legs of joints (F, 22, 3)."""
    legs = [np.linalg.norm(joints[:, knee] - joints[:, hip], axis=-1)
            + np.linalg.norm(joints[:, ankle] - joints[:, knee], axis=-1)
            for hip, knee, ankle in ((1, 4, 7), (2, 5, 8))]
    return float(np.median((legs[0] + legs[1]) / 2))


def uniform_skeleton(joints: np.ndarray) -> np.ndarray:
    """HumanML3D's uniform-skeleton retargeting of joints (F, 22, 3) in metres: bone directions
    kept, bone lengths set to utils.BONE_LENGTHS, root trajectory scaled by the leg-length ratio.

    A bone of (near) zero length has no direction; it takes its rest direction turned with the
    body's facing.
    """
    joints = np.asarray(joints, dtype=np.float64)
    source_leg = leg_length(joints)
    if not source_leg > 0:
        raise ValueError("the figure's legs have no length (hip, knee and ankle at one point); cannot retarget")
    target_leg = (BONE_LENGTHS[4] + BONE_LENGTHS[7] + BONE_LENGTHS[5] + BONE_LENGTHS[8]) / 2
    out = np.empty_like(joints)
    out[:, 0] = joints[:, 0] * (target_leg / source_leg)
    tiny = 1e-6 * source_leg
    rest = None
    for chain in KINEMATIC_CHAIN:
        for parent, child in zip(chain[:-1], chain[1:]):
            bone = joints[:, child] - joints[:, parent]
            length = np.linalg.norm(bone, axis=-1, keepdims=True)
            direction = bone / np.maximum(length, tiny)
            if (length < tiny).any():
                if rest is None:  # (F, 22, 3) rest directions turned with the body's facing
                    turn = qinv(facing_rotation(torch.from_numpy(joints)))
                    raw = torch.from_numpy(RAW_OFFSETS)
                    rest = qrot(turn[:, None].expand(len(joints), len(raw), 4),
                                raw.expand(len(joints), -1, -1)).numpy()
                direction = np.where(length < tiny, rest[:, child], direction)
            out[:, child] = out[:, parent] + direction * BONE_LENGTHS[child]
    return out


def floor_height(joints: np.ndarray) -> float:
    """The floor's height of joints (F, 22, 3), y up: the FLOOR_PERCENTILE-th percentile over the
    frames of each frame's lowest foot joint (ankles, toes)."""
    lowest = np.asarray(joints)[:, FOOT_JOINTS, 1].min(axis=1)  # (F,)
    return float(np.percentile(lowest, FLOOR_PERCENTILE))


def start_facing(joints: np.ndarray, fps: float) -> torch.Tensor:
    """Rotation (4,) about y that turns the body's facing at the start onto +z: the facing of the
    frame whose heading is the median of the first FACING_WINDOW seconds (an odd count of at
    least 3 frames where there are), so one odd frame (a T-pose in frame 0) does not count."""
    count = max(3, int(round(FACING_WINDOW * fps)) + 1)
    count = min(count - 1 + count % 2, len(joints) - 1 + len(joints) % 2)  # odd: the median is a frame
    facing = facing_direction(torch.from_numpy(np.asarray(joints[:count], dtype=np.float64)))  # (W, 3)
    heading = torch.atan2(facing[:, 0], facing[:, 2])
    relative = torch.remainder(heading - heading[0] + math.pi, 2 * math.pi) - math.pi
    chosen = facing[int(torch.argsort(relative)[count // 2])] * facing.new_tensor([1.0, 0.0, 1.0])
    return qbetween(chosen, chosen.new_tensor([0.0, 0.0, 1.0]))


def place_canonically(joints: np.ndarray, fps: float = 20) -> np.ndarray:
    """Joints (F, 22, 3) with the floor (floor_height) at y = 0, the first root at the xz origin
    and the start facing +z (start_facing; body's left at +x), as HumanML3D places motions."""
    pos = np.asarray(joints, dtype=np.float64).copy()
    pos[..., 1] -= floor_height(pos)
    pos -= pos[0, 0] * np.array([1.0, 0.0, 1.0])
    pos_t = torch.from_numpy(pos)
    turn = start_facing(pos, fps)  # (4,) world -> facing frame of the start
    return qrot(turn.expand(pos_t.shape[:-1] + (4,)), pos_t).numpy()


def mirror_joints(joints: np.ndarray) -> np.ndarray:
    """The mirror image of joints (..., 22, 3): x negated, left and right joints swapped."""
    out = np.array(joints, dtype=np.float64)[..., MIRROR_INDEX, :]
    out[..., 0] *= -1.0
    return out
