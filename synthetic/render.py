"""Rendering a timeline: channels -> per-frame foot targets -> rotations of all 22 joints ->
utils.forward_kinematics, so that bone lengths are exact.

Feet are placed in the world and stay exactly fixed while planted (a heel-off pivots the foot
about its fixed toe); the legs reach them by two-bone IK from the hips, and the pelvis is
lowered smoothly wherever a planted foot would be out of reach. The arms reach their wrist
targets by the same IK from the shoulders.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d, maximum_filter1d

import utils

from .body import (ANKLE_HEIGHT, ARM_LENGTH, BASE_HEAD_PITCH, BASE_NECK_PITCH, BASE_SPINE_BEND, CHAIN_PREVIOUS,
                   COLLAR_DIR, FOOT_PITCH, FOREARM_LENGTH, HIP_OFFSET, LEG_LENGTH, NEUTRAL_ARM, PLANTED_REACH,
                   SHIN_LENGTH, SHOULDER_DIR, SIDE_SIGN, THIGH_LENGTH, UPPER_ARM_LENGTH, as_tensor, euler_quats,
                   heading_axes, joint_index, limb_quats, rolled_ankle, two_bone_ik)
from .curves import minjerk
from .timeline import FootEvent, Timeline


# ---------------------------------------------------------------------------------------
# Feet
# ---------------------------------------------------------------------------------------
class FootTracks(NamedTuple):
    """Per-frame foot targets of both sides."""
    ankle: np.ndarray  # (n, 2, 3) ankle positions
    yaw: np.ndarray  # (n, 2) foot headings
    pitch: np.ndarray  # (n, 2) pitch offsets over the planted pitch
    planted: np.ndarray  # (n, 2, 2) bool [side, (ankle, toe)]: that joint is fixed on the floor
    in_reach: np.ndarray  # (n, 2) bool: the leg must reach the ankle target (planted or stepping)


def render_feet(tl: Timeline, n: int) -> FootTracks:
    """Foot targets of frames [0, n) from the planted poses and the foot events."""
    tracks = FootTracks(ankle=np.zeros((n, 2, 3)), yaw=np.zeros((n, 2)), pitch=np.zeros((n, 2)),
                        planted=np.ones((n, 2, 2), dtype=bool), in_reach=np.ones((n, 2), dtype=bool))
    for side in range(2):
        pose, cursor = tl.start_feet[side], 0
        for event in tl.events[side]:
            _plant(tracks, side, pose, cursor, event.t0)
            _heel_off(tracks, side, pose, event)
            _swing(tracks, side, event, n)
            pose = event.end_pose
            cursor = _heel_strike(tracks, side, pose, event, n)
        _plant(tracks, side, pose, cursor, n)
    return tracks


def _plant(tracks: FootTracks, side: int, pose: tuple, start: int, stop: int) -> None:
    """The foot flat on the floor in pose (x, z, yaw) over frames [start, stop)."""
    tracks.ankle[start:stop, side] = (pose[0], ANKLE_HEIGHT[side], pose[1])
    tracks.yaw[start:stop, side] = pose[2]


def _heel_off(tracks: FootTracks, side: int, pose: tuple, event: FootEvent) -> None:
    """Before the foot leaves, the heel rises about the fixed toe."""
    hf, angle = event.roll.heel_frames, event.roll.heel_angle
    if hf > 0 and angle > 0:
        a = event.t0 - hf
        offset = angle * minjerk(np.arange(hf + 1) / hf)  # (hf+1,)
        tracks.ankle[a:a + hf + 1, side] = rolled_ankle(side, pose[0], pose[1], pose[2], offset)
        tracks.pitch[a:a + hf + 1, side] = offset
        tracks.planted[a + 1:a + hf + 1, side, 0] = False


def _swing(tracks: FootTracks, side: int, event: FootEvent, n: int) -> None:
    """The foot in the air. A stepping leg must reach its target just after toe-off (or the
    knee would snap straight) and at touchdown; mid-swing a target out of reach just leaves
    the foot a little short, in the air."""
    t0, t1 = event.t0, event.t1
    tracks.ankle[t0:t1 + 1, side] = event.ankle[: n - t0]
    tracks.yaw[t0:t1 + 1, side] = event.yaw[: n - t0]
    tracks.pitch[t0:t1 + 1, side] = event.pitch[: n - t0]
    tracks.planted[t0 + 1:t1, side, :] = False
    tracks.in_reach[t0 + 1:t1, side] = False
    if event.in_reach == "both":
        tracks.in_reach[t0 + 1:min(t1, t0 + 3), side] = True
    if event.in_reach in ("both", "touchdown"):
        tracks.in_reach[max(t0 + 1, t1 - 2):t1, side] = True


def _heel_strike(tracks: FootTracks, side: int, pose: tuple, event: FootEvent, n: int) -> int:
    """After touchdown the foot rolls flat about its heel; returns the first frame after it."""
    t1 = event.t1
    sf, strike = event.roll.strike_frames, event.roll.strike_angle
    if not (sf > 0 and strike > 0 and t1 + 1 < n):
        return t1 + 1
    offset = -strike * (1.0 - minjerk(np.arange(1, sf + 1) / sf))  # (sf,)
    stop = min(n, t1 + 1 + sf)
    tracks.ankle[t1 + 1:stop, side] = rolled_ankle(side, pose[0], pose[1], pose[2], offset)[: stop - t1 - 1]
    tracks.yaw[t1 + 1:stop, side] = pose[2]
    tracks.pitch[t1 + 1:stop, side] = offset[: stop - t1 - 1]
    tracks.planted[t1:stop - 1, side, :] = False
    return stop


def reach_drop(hips: np.ndarray, ankle: np.ndarray, in_reach: np.ndarray, fps: int) -> np.ndarray:
    """How far (n,) to lower the pelvis, smoothly, so that the legs reach their ankle targets
    (n, 2, 3) from the hips (n, 2, 3) wherever in_reach (n, 2) is set."""
    d = ankle - hips  # (n, 2, 3)
    horiz2 = d[..., 0] ** 2 + d[..., 2] ** 2
    reach = PLANTED_REACH * LEG_LENGTH  # (2,)
    allowed = np.sqrt(np.maximum(reach ** 2 - horiz2, 0.0))  # (n, 2)
    over = np.where(in_reach, (hips[..., 1] - ankle[..., 1]) - allowed, 0.0)
    need = np.maximum(over, 0.0).max(-1)  # (n,)
    if need.max() <= 0:
        return np.zeros(len(need))
    k = max(1, int(round(0.15 * fps)))
    drop = gaussian_filter1d(maximum_filter1d(need, 2 * k + 1, mode="nearest"), k / 2.0, mode="nearest")
    return np.maximum(drop, need)


# ---------------------------------------------------------------------------------------
# Joints
# ---------------------------------------------------------------------------------------
def render_joints(tl: Timeline, n: int):
    """Animate the 22 joints of frames [0, n): returns joints (n, 22, 3), local quaternions
    (n, 22, 4), pelvis positions (n, 3) and the stance schedule planted (n, 2, 2)."""
    feet = render_feet(tl, n)
    pelvis, q_root, hips = _pelvis(tl, n, feet)
    glob = torch.zeros(n, utils.NUM_JOINTS, 4, dtype=torch.float64)  # global rotation of each joint's bone
    glob[:, joint_index(0, 1, 2)] = q_root[:, None]
    spine_rots, spine3 = _spine_and_head(tl, n, q_root, pelvis)
    glob[:, joint_index(3, 6, 9, 12, 15)] = spine_rots
    chest = glob[:, 9]  # (n, 4)
    shoulder_rots, shoulders, wrist_targets, elbow_hints = _arm_targets(tl, n, chest, spine3)
    glob[:, joint_index(13, 14, 16, 17)] = shoulder_rots
    fwd, _ = heading_axes(tl.yaw[:n])  # (n, 3)
    # Legs: knees point where the feet point. Both legs and both arms in one IK call.
    foot_fwd, _ = heading_axes(feet.yaw)  # (n, 2, 3)
    roots = np.concatenate([hips, shoulders], 1)  # (n, 4, 3): left leg, right leg, left arm, right arm
    ends = np.concatenate([feet.ankle, wrist_targets], 1)
    hints = np.concatenate([foot_fwd + 0.3 * fwd[:, None], elbow_hints], 1)
    upper, lower = _limb_rotations(roots, ends, hints)
    glob[:, joint_index(4, 5, 18, 19)] = upper
    glob[:, joint_index(7, 8, 20, 21)] = lower
    glob[:, joint_index(10, 11)] = euler_quats(np.stack([feet.yaw, FOOT_PITCH + feet.pitch], -1), "yx")

    local = utils.qmul(utils.qinv(glob[:, CHAIN_PREVIOUS]), glob)  # (n, 22, 4)
    local[:, 0] = q_root
    joints = utils.forward_kinematics(local, as_tensor(pelvis))  # (n, 22, 3)
    return joints.numpy(), local.numpy(), pelvis, feet.planted


def _pelvis(tl: Timeline, n: int, feet: FootTracks):
    """Pelvis positions (n, 3), its rotation (n, 4) and the hips (n, 2, 3), the pelvis lowered
    where the legs could not reach their feet."""
    pelvis = tl.pelvis_plan(np.arange(n))  # (n, 3)
    q_root = euler_quats(np.stack([tl.yaw[:n], tl.pelvis_rot[:n, 0], -tl.pelvis_rot[:n, 1]], -1), "yxz")  # (n, 4)
    q_root2 = q_root[:, None].expand(n, 2, 4)
    hips = pelvis[:, None] + utils.qrot(q_root2, as_tensor(np.broadcast_to(HIP_OFFSET, (n, 2, 3)))).numpy()  # (n, 2, 3)
    for _ in range(2):
        drop = reach_drop(hips, feet.ankle, feet.in_reach, tl.fps)
        pelvis[:, 1] -= drop
        hips[..., 1] -= drop[:, None]
    return pelvis, q_root, hips


def _spine_and_head(tl: Timeline, n: int, q_root: torch.Tensor, pelvis: np.ndarray):
    """Global rotations (n, 5, 4) of the three spine bones, the neck and the head, each a
    yaw-pitch-roll relative to its parent, and the top of the spine (n, 3)."""
    offsets = as_tensor(utils.SKELETON_OFFSETS)
    bend = tl.spine[:n, 0] + tl.style.posture
    share = np.array([0.35, 0.35, 0.30])
    spine_angles = np.stack([share * tl.spine[:n, 2:3], BASE_SPINE_BEND + share * bend[:, None],
                             -share * tl.spine[:n, 1:2]], -1)  # (n, 3 bones, 3)
    spine_q = euler_quats(spine_angles, "yxz")
    neck_pitch, neck_yaw = tl.neck[:n, 0] + tl.style.head_pitch, tl.neck[:n, 1]
    head_angles = np.stack([np.stack([0.5 * neck_yaw, BASE_NECK_PITCH + 0.5 * neck_pitch], -1),
                            np.stack([0.5 * neck_yaw, BASE_HEAD_PITCH + 0.5 * neck_pitch], -1)], 1)  # (n, 2, 2)
    head_q = euler_quats(head_angles, "yx")
    rot, pos = q_root, as_tensor(pelvis)
    rots = []
    for k, joint in enumerate((3, 6, 9, 12, 15)):
        rot = utils.qmul(rot, spine_q[:, k] if k < 3 else head_q[:, k - 3])
        rots.append(rot)
        if joint <= 9:
            pos = pos + utils.qrot(rot, offsets[joint].expand(n, 3))
    return torch.stack(rots, 1), pos


def _arm_targets(tl: Timeline, n: int, chest: torch.Tensor, spine3: torch.Tensor):
    """Collar and shoulder bones fixed in the chest frame (a shrug when the arm is high), and
    the wrist target given as elevation/azimuth/reach in the chest frame. Returns the global
    rotations of joints 13, 14, 16, 17 (n, 4, 4), the shoulders (n, 2, 3), the wrist targets
    (n, 2, 3) and the elbow hints (n, 2, 3)."""
    offsets, raw = as_tensor(utils.SKELETON_OFFSETS), as_tensor(utils.RAW_OFFSETS)
    chest2 = chest[:, None].expand(n, 2, 4)
    arm = tl.arm[:n] + NEUTRAL_ARM + np.array([0.0, tl.style.arm_out, tl.style.elbow_reach - NEUTRAL_ARM[2]])
    elev, azim, reach = arm[..., 0], arm[..., 1], np.clip(arm[..., 2], 0.3, 1.0)  # (n, 2)
    s = SIDE_SIGN  # (2,)
    mirror = np.stack([s, np.ones(2), np.ones(2)], -1)  # (2, 3)
    collar_dir = np.broadcast_to(COLLAR_DIR * mirror, (n, 2, 3))
    shoulder_dir = np.broadcast_to(SHOULDER_DIR * mirror, (n, 2, 3)).copy()
    shoulder_dir[..., 1] += 0.45 * np.clip(elev - 1.7, 0.0, 1.3)
    collars, shoulders = joint_index(13, 14), joint_index(16, 17)
    collar_q = utils.qmul(chest2, utils.qbetween(raw[collars].expand(n, 2, 3), as_tensor(collar_dir)))
    shoulder_q = utils.qmul(chest2, utils.qbetween(raw[shoulders].expand(n, 2, 3), as_tensor(shoulder_dir)))
    p_shoulder = (spine3[:, None] + utils.qrot(collar_q, offsets[collars].expand(n, 2, 3))
                  + utils.qrot(shoulder_q, offsets[shoulders].expand(n, 2, 3))).numpy()  # (n, 2, 3)
    direction = np.stack([s * np.sin(elev) * np.sin(azim), -np.cos(elev), np.sin(elev) * np.cos(azim)], -1)
    # The elbow points away from the way the arm is raised (back when it hangs, down when it
    # points forward), plus the action's adjustment.
    swing_hint = -np.stack([s * np.cos(elev) * np.sin(azim), np.sin(elev), np.cos(elev) * np.cos(azim)], -1)
    local_vecs = np.stack([(reach * ARM_LENGTH)[..., None] * direction, swing_hint + tl.elbow[:n] * mirror], 1)
    world_vecs = utils.qrot(chest[:, None, None].expand(n, 2, 2, 4), as_tensor(local_vecs)).numpy()  # (n, 2, 2, 3)
    return torch.cat([collar_q, shoulder_q], 1), p_shoulder, p_shoulder + world_vecs[:, 0], world_vecs[:, 1]


def _limb_rotations(roots: np.ndarray, ends: np.ndarray, hints: np.ndarray):
    """Two-bone IK of the four limbs (legs then arms): roots, ends, hints (n, 4, 3) -> global
    rotations of the upper and lower bones, (n, 4, 4) each."""
    n = len(roots)
    l1 = np.concatenate([THIGH_LENGTH, UPPER_ARM_LENGTH])
    l2 = np.concatenate([SHIN_LENGTH, FOREARM_LENGTH])
    middle, end, normal = two_bone_ik(roots.reshape(-1, 3), ends.reshape(-1, 3), np.tile(l1, n), np.tile(l2, n),
                                      hints.reshape(-1, 3))
    middle, end, normal = middle.reshape(n, 4, 3), end.reshape(n, 4, 3), normal.reshape(n, 4, 3)
    rest_normal = np.array([[-1.0, 0, 0], [-1.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0]])  # legs bend forward, arms back
    upper_lower = limb_quats(np.stack([middle - roots, end - middle], 1), np.stack([normal, normal], 1),
                             np.broadcast_to(rest_normal, (n, 2, 4, 3)))  # (n, 2, 4, 4)
    return upper_lower[:, 0], upper_lower[:, 1]
