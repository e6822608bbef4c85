"""BVH export of HumanML3D motions, a BVH reader with forward kinematics, and an importer for
motion capture of any rig.

`import_bvh(path, rig=None, fps=20, retarget=True)` reads a BVH file (any channel and rotation
order; End Sites as joints '<Joint>/End'), runs forward kinematics, maps the file's joints to
the 22 SMPL joints (a built-in profile for Bandai Namco, CMU and this project's export, else the
name matcher motion_io.joint_match for Mixamo, Biovision, MakeHuman, DAZ, Unreal, ... rigs, else
a JSON mapping, see motion_io.rigs) and returns an ImportedMotion: joints (T, 22, 3) in metres at
`fps`, y up, retargeted to the canonical skeleton, on the floor (from the feet), the first frame
at the origin facing +z; `.features` gives the 263-dim HumanML3D features.

`write_bvh(path, motion, fps, bvh_fps=None)` turns joint positions (T, 22, 3) in metres (or
HumanML3D features (T, 263)) into a BVH file that Blender, MotionBuilder and other tools import,
at `bvh_fps` frames per second if given (rotations slerped; for tools that assume 24 or 30).
Units in the file are metres (Blender's unit; use scale 100 in tools that expect cm).

The hierarchy holds the 22 SMPL joints with the skeleton's rest offsets
(utils.SKELETON_OFFSETS), plus four zero-offset "link" joints. They are needed because
HumanML3D rotates every bone on its own: the pelvis -> hip bones and the spine3 -> collar
bones turn independently of the spine, which a BVH joint with three children cannot express
(one rotation moves all three child offsets). The links give each of those bones its own
rotation, so the file reproduces the joint positions exactly under standard BVH forward
kinematics. In Blender each link imports as the bone from the pelvis to a hip (or from spine3
to a collar).

Rotations: the pelvis carries the body's facing (yaw) and the spine tilt; every other bone
gets the smallest rotation, relative to its parent joint, that points its rest direction
along the observed bone, so twists follow the body instead of the world axes.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from motion_io.retarget import (detect_up, place_canonically, resample_local, rest_up, source_fps, to_y_up,
                                uniform_skeleton)
from motion_io.rigs import RigSpec, UnknownRigError, figure_scale, map_to_smpl, resolve_rig
from runtime import check_out_path, write_atomic
from utils import (FEATURE_DIM, JOINT_NAMES, KINEMATIC_CHAIN, NUM_JOINTS, RAW_OFFSETS,
                   SKELETON_OFFSETS, as_joints, facing_rotation, inverse_kinematics,
                   joints_to_features, qbetween, qinv, qmul, qrot, quat_to_matrix)

__all__ = ["BVHData", "ImportedMotion", "UnknownRigError", "bvh_forward_kinematics", "bvh_local_transforms",
           "bvh_text", "chain_forward_kinematics", "import_bvh", "read_bvh", "read_bvh_joints", "write_bvh"]

ROTATION_CHANNELS = ("Zrotation", "Xrotation", "Yrotation")  # R = Rz @ Rx @ Ry
POSITION_CHANNELS = ("Xposition", "Yposition", "Zposition")

# BVH joints in file order: (name, SMPL joint index or None for a link, BVH parent name).
# Each non-leaf joint drives exactly one bone, named by the SMPL index of the bone's end.
_LINKS = {"left_hip_link": 1, "right_hip_link": 2, "left_collar_link": 13, "right_collar_link": 14}
_HIERARCHY = [
    ("pelvis", 0, None),
    ("left_hip_link", None, "pelvis"), ("left_hip", 1, "left_hip_link"),
    ("left_knee", 4, "left_hip"), ("left_ankle", 7, "left_knee"), ("left_foot", 10, "left_ankle"),
    ("right_hip_link", None, "pelvis"), ("right_hip", 2, "right_hip_link"),
    ("right_knee", 5, "right_hip"), ("right_ankle", 8, "right_knee"), ("right_foot", 11, "right_ankle"),
    ("spine1", 3, "pelvis"), ("spine2", 6, "spine1"), ("spine3", 9, "spine2"),
    ("neck", 12, "spine3"), ("head", 15, "neck"),
    ("left_collar_link", None, "spine3"), ("left_collar", 13, "left_collar_link"),
    ("left_shoulder", 16, "left_collar"), ("left_elbow", 18, "left_shoulder"),
    ("left_wrist", 20, "left_elbow"),
    ("right_collar_link", None, "spine3"), ("right_collar", 14, "right_collar_link"),
    ("right_shoulder", 17, "right_collar"), ("right_elbow", 19, "right_shoulder"),
    ("right_wrist", 21, "right_elbow"),
]
# The bone each BVH joint's rotation drives (SMPL index of its end joint); leaves drive none.
_DRIVEN_BONE = {"pelvis": 3, "spine1": 6, "spine2": 9, "spine3": 12, "neck": 15,
                **_LINKS,
                "left_hip": 4, "left_knee": 7, "left_ankle": 10,
                "right_hip": 5, "right_knee": 8, "right_ankle": 11,
                "left_collar": 16, "left_shoulder": 18, "left_elbow": 20,
                "right_collar": 17, "right_shoulder": 19, "right_elbow": 21}
# End sites of the leaf joints (metres, in the leaf's rest frame): toe tip, top of head, hand.
_END_SITES = {"left_foot": (0.0, 0.0, 0.05), "right_foot": (0.0, 0.0, 0.05),
              "head": (0.0, 0.10, 0.0), "left_wrist": (0.0, -0.08, 0.0),
              "right_wrist": (0.0, -0.08, 0.0)}


class BVHData(NamedTuple):
    """A parsed BVH file. Offsets and positions are in the file's units."""
    joint_names: list  # J names in file order (end sites excluded)
    parents: np.ndarray  # (J,) int, -1 for the root
    offsets: np.ndarray  # (J, 3) rest offsets from the parent
    channels: list  # J tuples of channel names, e.g. ("Zrotation", "Xrotation", "Yrotation")
    frames: np.ndarray  # (F, C) channel values per frame, C = sum of len(channels)
    frame_time: float  # seconds per frame
    end_sites: tuple = ()  # (parent joint index, (3,) offset) of every End Site, in file order


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------
def _bone_globals(joints: np.ndarray) -> torch.Tensor:
    """Global rotation (T, 22, 4) of each bone parent -> j (index j), from utils.inverse_kinematics.

    HumanML3D's local rotations compose along each kinematic chain starting from the root
    rotation (both arms included), so the global of bone j is root * ... * local[j].
    """
    local = torch.from_numpy(inverse_kinematics(joints, smooth_forward=False))  # (T, 22, 4)
    bone_global = local.clone()
    for chain in KINEMATIC_CHAIN:
        rot = local[:, 0]
        for child in chain[1:]:
            rot = qmul(rot, local[:, child])
            bone_global[:, child] = rot
    return bone_global


def _bvh_rotations(joints: np.ndarray) -> np.ndarray:
    """Local rotation matrices (T, J, 3, 3) of every BVH joint in `_HIERARCHY` order."""
    pos = torch.from_numpy(joints)
    bone_global = _bone_globals(joints)
    raw = torch.from_numpy(RAW_OFFSETS)
    # Observed bone direction of bone j: the IK's global rotation applied to the rest direction.
    bone_dir = qrot(bone_global, raw.expand(bone_global.shape[:-1] + (3,)))  # (T, 22, 3)
    globals_: dict = {}
    locals_ = []
    for name, _, parent in _HIERARCHY:
        up = qinv(facing_rotation(pos)) if parent is None else globals_[parent]  # (T, 4): +z -> facing
        bone = _DRIVEN_BONE.get(name)
        if bone is None:  # leaf: no bone to drive
            rot = up
        else:
            rest_dir = qrot(up, raw[bone].expand(up.shape[:-1] + (3,)))
            rot = qmul(qbetween(rest_dir, bone_dir[:, bone]), up)
        globals_[name] = rot
        local = rot if parent is None else qmul(qinv(globals_[parent]), rot)
        locals_.append(local)
    return quat_to_matrix(torch.stack(locals_, dim=1)).numpy()  # (T, J, 3, 3)


def _matrix_to_euler_zxy(m: np.ndarray) -> np.ndarray:
    """Euler angles (..., 3) in degrees (z, x, y) with m = Rz(z) @ Rx(x) @ Ry(y)."""
    flat = m.reshape(-1, 3, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # gimbal lock: angles stay a valid solution
        angles = Rotation.from_matrix(flat).as_euler("ZXY", degrees=True)
    return angles.reshape(m.shape[:-2] + (3,))


def bvh_text(motion, fps: int = 20, bvh_fps: Optional[int] = None) -> str:
    """The BVH file text of a motion at `fps`: joints (T, 22, 3) in metres or features (T, 263).
    bvh_fps: the file's frame rate (e.g. 30 or 24 for tools that assume one); the joint
    rotations are slerped and the root translation interpolated to it (None: fps)."""
    joints = as_joints(motion)
    if joints.ndim != 3:
        raise ValueError(f"motion has shape {joints.shape}; expected (T, {NUM_JOINTS}, 3) joints in metres "
                         f"or (T, {FEATURE_DIM}) HumanML3D features, one motion per file")
    for name, value in (("fps", fps), ("bvh_fps", fps if bvh_fps is None else bvh_fps)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    rotations = _bvh_rotations(joints)  # (T, J, 3, 3)
    root = joints[:, 0]  # (T, 3)
    if bvh_fps is not None and bvh_fps != fps:
        local_pos = np.zeros(rotations.shape[:2] + (3,))
        local_pos[:, 0] = root
        local_pos, rotations = resample_local(local_pos, rotations, float(fps), float(bvh_fps))
        root, fps = local_pos[:, 0], bvh_fps
    euler = _matrix_to_euler_zxy(rotations)  # (T, J, 3) degrees
    euler = np.rad2deg(np.unwrap(np.deg2rad(euler), axis=0))  # no 360-degree jumps between frames
    values = np.concatenate([root, euler.reshape(len(root), -1)], axis=1)  # (T, 6 + 3J)
    if not np.isfinite(values).all():
        raise ValueError("motion is degenerate (e.g. hips and shoulders at one point); "
                         "cannot compute joint rotations")

    names = [name for name, _, _ in _HIERARCHY]
    children = {name: [c for c, _, p in _HIERARCHY if p == name] for name in names}
    smpl_index = {name: idx for name, idx, _ in _HIERARCHY}
    lines = ["HIERARCHY"]

    def emit(name: str, depth: int) -> None:
        pad = "\t" * depth
        idx = smpl_index[name]
        offset = (0.0, 0.0, 0.0) if idx is None or idx == 0 else SKELETON_OFFSETS[idx]
        if depth == 0:
            lines.append(f"ROOT {name}")
        else:
            lines.append(f"{pad}JOINT {name}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}\tOFFSET {offset[0]:.6f} {offset[1]:.6f} {offset[2]:.6f}")
        chans = (POSITION_CHANNELS + ROTATION_CHANNELS) if depth == 0 else ROTATION_CHANNELS
        lines.append(f"{pad}\tCHANNELS {len(chans)} {' '.join(chans)}")
        for child in children[name]:
            emit(child, depth + 1)
        if name in _END_SITES:
            end = _END_SITES[name]
            lines.extend([f"{pad}\tEnd Site", f"{pad}\t{{",
                          f"{pad}\t\tOFFSET {end[0]:.6f} {end[1]:.6f} {end[2]:.6f}", f"{pad}\t}}"])
        lines.append(f"{pad}}}")

    emit("pelvis", 0)
    lines += ["MOTION", f"Frames: {len(values)}", f"Frame Time: {1.0 / fps:.8f}"]
    lines += [" ".join(f"{v:.6f}" for v in row) for row in values]
    return "\n".join(lines) + "\n"


def write_bvh(path: str, motion, fps: int = 20, bvh_fps: Optional[int] = None) -> str:
    """Write a BVH file of a motion at `fps` (joints (T, 22, 3) in metres, or features (T, 263)),
    resampled to `bvh_fps` frames per second if given (see bvh_text).

    Units in the file are metres; rotations are ZXY Euler angles in degrees. The write is
    atomic (temp file + rename). Returns the absolute path. Bad input raises ValueError.
    """
    path = check_out_path(path)
    text = bvh_text(motion, fps, bvh_fps)

    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            fh.write(text)
    write_atomic(path, write)
    return path


# ---------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------
def read_bvh(path: str) -> BVHData:
    """Parse a BVH file (HIERARCHY + MOTION) into a BVHData. Malformed files raise ValueError."""
    try:
        with open(path) as fh:
            text = fh.read()
    except FileNotFoundError:
        raise ValueError(f"BVH file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read BVH file {path}: {exc}") from None
    head, sep, motion = text.partition("MOTION")
    if not sep or "HIERARCHY" not in head:
        raise ValueError(f"{path} is not a BVH file (needs HIERARCHY and MOTION sections)")
    names, parents, offsets, channels, ends = _parse_hierarchy(_hierarchy_tokens(head), path)
    frames, frame_time = _parse_motion(motion, sum(len(c) for c in channels), path)
    return BVHData(names, np.array(parents), np.array(offsets, dtype=np.float64), channels, frames,
                   frame_time, tuple((p, np.array(o, dtype=np.float64)) for p, o in ends))


def _hierarchy_tokens(head: str) -> list:
    """The HIERARCHY text split at white space, except that a joint's name is the rest of its
    ROOT/JOINT line (3ds Max names such as 'Bip01 L Thigh' hold spaces)."""
    tokens = []
    for line in head.splitlines():
        words = line.split()
        if len(words) > 2 and words[0] in ("ROOT", "JOINT"):
            name = line.split(None, 1)[1].strip()
            brace = name.endswith("{")
            tokens += [words[0], name[:-1].strip() if brace else name] + (["{"] if brace else [])
        else:
            tokens += words
    return tokens


def _parse_hierarchy(tokens: list, path: str) -> tuple[list, list, list, list, list]:
    """(names, parents, offsets, channels, end sites [(parent, offset)]) of the HIERARCHY tokens."""
    names, parents, offsets, channels, ends = [], [], [], [], []
    stack: list = []  # indices of open joints (-2 marks an End Site)
    i = tokens.index("HIERARCHY") + 1
    try:
        while i < len(tokens):
            tok = tokens[i]
            if tok in ("ROOT", "JOINT"):
                names.append(tokens[i + 1])
                parents.append(stack[-1] if stack else -1)
                offsets.append([0.0, 0.0, 0.0])
                channels.append(())
                stack.append(len(names) - 1)
                i += 2
                if tokens[i] != "{":
                    raise ValueError
                i += 1
            elif tok == "End":
                ends.append((stack[-1], [0.0, 0.0, 0.0]))
                stack.append(-2)
                i += 3  # End Site {
            elif tok == "OFFSET":
                vals = [float(v) for v in tokens[i + 1:i + 4]]
                if stack[-1] >= 0:
                    offsets[stack[-1]] = vals
                else:
                    ends[-1] = (ends[-1][0], vals)
                i += 4
            elif tok == "CHANNELS":
                count = int(tokens[i + 1])
                # 'XROTATION', 'xrotation' -> 'Xrotation'
                channels[stack[-1]] = tuple(c[:1].upper() + c[1:].lower() for c in tokens[i + 2:i + 2 + count])
                if len(channels[stack[-1]]) != count:
                    raise ValueError
                i += 2 + count
            elif tok == "}":
                stack.pop()
                i += 1
            else:
                raise ValueError
    except (ValueError, IndexError):
        raise ValueError(f"{path}: malformed BVH hierarchy near token {i}") from None
    if stack or not names:
        raise ValueError(f"{path}: malformed BVH hierarchy (unbalanced braces or no joints)")
    known = set(ROTATION_CHANNELS + POSITION_CHANNELS)
    unknown = [c for chans in channels for c in chans if c not in known]
    if unknown:
        raise ValueError(f"{path}: unknown channel name '{unknown[0]}' in the hierarchy")
    return names, parents, offsets, channels, ends


def _parse_motion(motion: str, num_channels: int, path: str) -> tuple[np.ndarray, float]:
    """(frames (F, C), frame time) of the text after MOTION."""
    lines = motion.strip().split("\n", 2)
    try:
        num_frames = int(lines[0].split(":")[1])
        frame_time = float(lines[1].split(":")[1])
        values = np.array(lines[2].split() if len(lines) > 2 else [], dtype=np.float64)
    except (IndexError, ValueError):
        raise ValueError(f"{path}: malformed MOTION section (Frames:, Frame Time:, then numbers)") from None
    if values.size != num_frames * num_channels:
        raise ValueError(f"{path}: MOTION holds {values.size} values, expected {num_frames} frames x "
                         f"{num_channels} channels")
    if not np.isfinite(values).all() or not frame_time > 0:
        raise ValueError(f"{path}: MOTION holds non-finite values or a Frame Time <= 0")
    return values.reshape(num_frames, num_channels), frame_time


def _axis_rotation(axis: str, degrees: np.ndarray) -> np.ndarray:
    """Right-handed rotation matrices (F, 3, 3) about x, y or z by angles (F,) in degrees."""
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    one, zero = np.ones_like(a), np.zeros_like(a)
    rows = {"X": [[one, zero, zero], [zero, c, -s], [zero, s, c]],
            "Y": [[c, zero, s], [zero, one, zero], [-s, zero, c]],
            "Z": [[c, -s, zero], [s, c, zero], [zero, zero, one]]}[axis]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def bvh_local_transforms(bvh: BVHData) -> tuple[np.ndarray, np.ndarray]:
    """Local translations (F, J, 3) (file units) and rotation matrices (F, J, 3, 3) of every
    joint of a parsed BVH.

    Standard BVH semantics: a joint's rotation channels compose in the listed order
    (R = R1 @ R2 @ R3), whatever that order is; its translation is its OFFSET, where position
    channels (the root's, or every joint's in some rigs) replace the offset's components.
    """
    num_frames, num_joints = len(bvh.frames), len(bvh.joint_names)
    local_pos = np.broadcast_to(bvh.offsets, (num_frames, num_joints, 3)).copy()
    local_rot = np.broadcast_to(np.eye(3), (num_frames, num_joints, 3, 3)).copy()
    col = 0
    for j, chans in enumerate(bvh.channels):
        for name in chans:
            value = bvh.frames[:, col]
            col += 1
            if name in POSITION_CHANNELS:
                local_pos[:, j, "XYZ".index(name[0])] = value
            else:
                local_rot[:, j] = local_rot[:, j] @ _axis_rotation(name[0], value)
    return local_pos, local_rot


def chain_forward_kinematics(parents, local_pos: np.ndarray, local_rot: np.ndarray) -> np.ndarray:
    """World positions (F, J, 3) from local translations (F, J, 3) and rotations (F, J, 3, 3);
    parents (J,) lists each joint's parent index (-1 for a root), parents before children:
    position_j = position_parent + R_parent @ translation_j, R_j = R_parent @ local_rot_j."""
    positions = np.zeros(local_pos.shape)
    rotations = np.zeros(local_rot.shape)
    for j, parent in enumerate(parents):
        if parent < 0:
            positions[:, j], rotations[:, j] = local_pos[:, j], local_rot[:, j]
        else:
            positions[:, j] = positions[:, parent] + np.einsum("fij,fj->fi", rotations[:, parent], local_pos[:, j])
            rotations[:, j] = rotations[:, parent] @ local_rot[:, j]
    return positions


def bvh_forward_kinematics(bvh: BVHData) -> np.ndarray:
    """World positions (F, J, 3) of every joint of a parsed BVH, in file units at the file's rate."""
    return chain_forward_kinematics(bvh.parents, *bvh_local_transforms(bvh))


def read_bvh_joints(path: str) -> np.ndarray:
    """The 22 SMPL joint positions (F, 22, 3) of a BVH file written by `write_bvh` (file units)."""
    bvh = read_bvh(path)
    missing = [n for n in JOINT_NAMES if n not in bvh.joint_names]
    if missing:
        raise ValueError(f"{path} lacks SMPL joint '{missing[0]}'; expected a file from write_bvh")
    positions = bvh_forward_kinematics(bvh)
    return positions[:, [bvh.joint_names.index(n) for n in JOINT_NAMES]]


# ---------------------------------------------------------------------------------------
# Importing: any rig -> the 22 SMPL joints on the project's canonical skeleton
# ---------------------------------------------------------------------------------------
@dataclass
class ImportedMotion:
    """A BVH file imported by `import_bvh`, with what the import found."""
    joints: np.ndarray  # (T, 22, 3) SMPL joints: metres at `fps`, placed (raw: file units, source rate)
    fps: float  # frames per second of `joints`
    rig: str  # the rig profile used ('bandai', 'cmu', 'project', 'auto' (name matcher) or a mapping's name)
    source_fps: float  # the file's frame rate (or fps_override)
    source_frames: int  # the file's frame count
    units: str  # the file's units and how they were found, e.g. 'cm (rig profile)'
    scale: float  # metres per file unit
    up: str  # the file's up axis ('y', 'z', '-z', ...)
    retargeted: bool  # bone lengths set to the canonical skeleton's
    raw: bool  # joints straight from forward kinematics (no resampling, units, placement)
    path: str
    profile: Optional[RigProfile] = None  # the profile used: which file joint gives each SMPL joint

    @property
    def features(self) -> np.ndarray:
        """HumanML3D features (T-1, 263) of the joints (utils.joints_to_features, on the import's floor)."""
        if self.raw:
            raise ValueError("raw imports are in file units; import without raw=True for features")
        return joints_to_features(self.joints, refloor=False)

    @property
    def seconds(self) -> float:
        return (len(self.joints) - 1) / self.fps


def _with_end_sites(data: BVHData, local_pos: np.ndarray, local_rot: np.ndarray) -> tuple:
    """(names, parents (J',), local translations (F, J', 3), rotations (F, J', 3, 3), offsets (J', 3))
    of the file's joints followed by its End Sites, named '<Joint>/End'."""
    names, parents = list(data.joint_names), list(data.parents)
    extra = []
    for parent, offset in data.end_sites:
        name = f"{data.joint_names[parent]}/End"
        names.append(name if name not in names else f"{name}{names.count(name) + 1}")
        parents.append(parent)
        extra.append(offset)
    if not extra:
        return names, np.array(parents), local_pos, local_rot, data.offsets
    extra = np.array(extra)  # (E, 3)
    count = len(local_pos)
    local_pos = np.concatenate([local_pos, np.broadcast_to(extra, (count,) + extra.shape)], axis=1)
    local_rot = np.concatenate([local_rot, np.broadcast_to(np.eye(3), (count, len(extra), 3, 3))], axis=1)
    return names, np.array(parents), local_pos, local_rot, np.concatenate([data.offsets, extra])


def _units(profile: RigProfile, joints: np.ndarray) -> tuple[float, str]:
    """(metres per file unit, how found): the profile's units where the figure's height agrees
    with them (within 1.5x), else the units the figure's height gives."""
    measured, name = figure_scale(joints)
    if profile.scale is not None:
        if abs(np.log(profile.scale / measured)) < np.log(1.5):
            return profile.scale, f"{profile.units or f'{profile.scale:g} m'} (rig profile)"
        return measured, f"{name} (figure height; not the profile's {profile.units or profile.scale})"
    return measured, f"{name} (figure height)"


def import_bvh(path: str, rig: RigSpec = None, fps: Optional[float] = 20, retarget: bool = True,
               raw: bool = False, fps_override: Optional[float] = None,
               rig_template: Optional[str] = None) -> ImportedMotion:
    """Import a BVH file of any rig as the 22 SMPL joints of HumanML3D (see motion_io).

    rig: None picks a built-in profile (bandai, cmu, project) by the file's joint names, else
    finds the joints with the name matcher (motion_io.joint_match: Mixamo, Biovision, MakeHuman,
    DAZ, Unreal, ...); or a profile name, a JSON mapping file, a mapping dict or a
    motion_io.rigs.RigProfile. A rig it cannot read raises UnknownRigError (one line); with
    `rig_template` a mapping template to fill in is written to that path and the error names it.
    The joints are resampled to `fps` (None: the file's rate; `fps_override` replaces a wrong
    Frame Time), turned y-up (up axis from the rest pose: the legs point down), scaled to
    metres (units from the figure's height where the profile has none or they do not fit),
    retargeted to the canonical bone lengths (`retarget`), put on the floor (a low percentile
    of the lowest foot joint per frame), the first frame at the origin facing +z (the median
    facing of its first quarter second) with the body's left at +x. raw=True skips all that:
    forward-kinematics positions of the 22 joints in file units at the file's rate. Bad files
    raise ValueError.
    """
    for name, value in (("fps", fps), ("fps_override", fps_override)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0):
            raise ValueError(f"{name} must be a positive number or None, got {value!r}")
    data = read_bvh(path)
    if len(data.frames) == 0:
        raise ValueError(f"{path}: the BVH file has no frames")
    src_fps = float(fps_override) if fps_override is not None else source_fps(data.frame_time)
    names, parents, local_pos, local_rot, offsets = _with_end_sites(data, *bvh_local_transforms(data))
    rest = chain_forward_kinematics(parents, offsets[None], np.eye(3)[None, None].repeat(len(names), 1))[0]
    profile = resolve_rig(rig, names, path, parents, rest, rig_template)
    out_fps = src_fps if fps is None or raw else float(fps)
    if not raw:
        local_pos, local_rot = resample_local(local_pos, local_rot, src_fps, out_fps)
        if len(local_pos) < 2:
            raise ValueError(f"{path}: the clip has {len(local_pos)} frame at {out_fps:g} fps ({len(data.frames)} at "
                             f"{src_fps:g} fps); a motion needs at least 2 frames ({1 / out_fps:.3g} s)")
    joints = map_to_smpl(chain_forward_kinematics(parents, local_pos, local_rot), names, profile)
    up = profile.up or rest_up(map_to_smpl(rest[None], names, profile)[0]) or detect_up(joints)
    scale, units = _units(profile, joints)
    found = dict(rig=profile.name, source_fps=src_fps, source_frames=len(data.frames), units=units,
                 scale=scale, up=up, path=os.path.abspath(path), profile=profile)
    if raw:
        return ImportedMotion(joints, out_fps, retargeted=False, raw=True, **found)
    joints = to_y_up(joints, up) * scale
    if retarget:
        joints = uniform_skeleton(joints)
    joints = place_canonically(joints, out_fps)
    if not np.isfinite(joints).all():
        raise ValueError(f"{path}: the motion is degenerate (non-finite joints after import)")
    return ImportedMotion(joints, out_fps, retargeted=retarget, raw=False, **found)
