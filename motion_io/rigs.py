"""Rig profiles: which joints of a BVH file are the 22 SMPL joints of HumanML3D.

A profile maps every SMPL joint name (utils.JOINT_NAMES: pelvis, left_hip, right_hip, spine1,
left_knee, right_knee, spine2, left_ankle, right_ankle, spine3, left_foot, right_foot, neck,
left_collar, right_collar, head, left_shoulder, right_shoulder, left_elbow, right_elbow,
left_wrist, right_wrist) to a joint of the file, or to a point on the segment between two joints
(`Lerp(a, b, t)`: a + t * (b - a)) where the rig has no joint there. It also says the file's
units (metres per file unit; None: found from the figure's height) and up axis.

Built-in profiles, chosen automatically when every joint they name is in the file:
- `bandai`: Bandai Namco Research's motion data sets (joint_Root, Hips, Spine, Chest, Neck, Head,
  Shoulder/UpperArm/LowerArm/Hand _L/_R, UpperLeg/LowerLeg/Foot/Toes _L/_R; cm, y up). Its spine
  has two joints between the hips and the neck where SMPL has three: spine1 = Spine,
  spine3 = Chest (both rigs hang the collars there), spine2 = the point 70% of the way from Spine
  to Chest (SMPL's spine1 -> spine2 -> spine3 proportions).
- `cmu`: the CMU mocap BVH conversion (31 joints: Hips, LHipJoint, LeftUpLeg, LeftLeg, LeftFoot,
  LeftToeBase, ..., LowerBack, Spine, Spine1, Neck, Neck1, Head, LeftShoulder, LeftArm,
  LeftForeArm, LeftHand, ...; units from the figure's height, y up). spine2 = 70% from Spine to
  Spine1, spine3 = Spine1, neck = Neck1 (its Neck sits on Spine1), collars = halfway from
  LeftShoulder to LeftArm (its LeftShoulder often sits on Spine1 too).
- `project`: this project's own export (bvh.write_bvh): the SMPL joint names, metres, y up.

Any other rig: the name matcher (motion_io.joint_match) finds the joints from the usual names
and the hierarchy (Mixamo, Biovision/3ds Max, MakeHuman, DAZ/Poser, Unreal/Rokoko, ...); where it
cannot, a JSON mapping file (see `load_rig_json`; `write_rig_template` writes one to edit).

A mapping names a file joint with or without its namespace prefix, either way round (`Hips`
finds `mixamorig:Hips`, `mixamorig:Hips` finds `Hips`), case-insensitively where that is
unambiguous; an End Site is `<Joint>/End` (`LeftFoot/End`: the toe tip of a rig whose foot ends
there). Up axis and units are found from the file for every profile unless a mapping gives them.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import NamedTuple, Optional, Union

import numpy as np

from motion_io.joint_match import match_joints
from utils import BONE_LENGTHS, JOINT_NAMES, PARENTS

# Metres per file unit of the units a figure's height is snapped to.
KNOWN_UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001, "inch": 0.0254, "ft": 0.3048,
               "cmu": 0.0254 / 0.45}  # CMU's ASF/AMC length unit: 1/0.45 inch
UP_AXES = ("x", "y", "z", "-x", "-y", "-z")


class Lerp(NamedTuple):
    """The point a + t * (b - a) between the file's joints a and b."""
    a: str
    b: str
    t: float


class UnknownRigError(ValueError):
    """No built-in profile fits the file's joints; the message is one line saying what to pass."""


@dataclass(frozen=True)
class RigProfile:
    """How a rig's joints give the 22 SMPL joints, and the rig's units and up axis."""
    name: str
    joints: dict  # SMPL joint name -> file joint name or Lerp
    scale: Optional[float] = None  # metres per file unit; None: from the figure's height
    units: str = ""  # the unit's name, e.g. "cm"
    up: Optional[str] = None  # one of UP_AXES; None: found from the rest pose (legs point down)
    source: str = field(default="built-in", compare=False)

    def required_joints(self) -> list:
        """Every file joint name the profile reads, in SMPL order."""
        names = []
        for spec in self.joints.values():
            for name in ((spec.a, spec.b) if isinstance(spec, Lerp) else (spec,)):
                if name not in names:
                    names.append(name)
        return names


def _sided(template: dict) -> dict:
    """Expand {'left_x': 'Name{L}'} templates into left and right entries."""
    out = {}
    for smpl, spec in template.items():
        if smpl.startswith("left_"):
            for side, tag in (("left", "L"), ("right", "R")):
                name = smpl.replace("left", side, 1)
                if isinstance(spec, Lerp):
                    out[name] = Lerp(spec.a.format(S=tag, Side=side.title()), spec.b.format(S=tag, Side=side.title()), spec.t)
                else:
                    out[name] = spec.format(S=tag, Side=side.title())
        else:
            out[smpl] = spec
    return {name: out[name] for name in JOINT_NAMES}


BANDAI = RigProfile("bandai", _sided({
    "pelvis": "Hips", "spine1": "Spine", "spine2": Lerp("Spine", "Chest", 0.7), "spine3": "Chest",
    "neck": "Neck", "head": "Head",
    "left_hip": "UpperLeg_{S}", "left_knee": "LowerLeg_{S}", "left_ankle": "Foot_{S}", "left_foot": "Toes_{S}",
    "left_collar": "Shoulder_{S}", "left_shoulder": "UpperArm_{S}", "left_elbow": "LowerArm_{S}",
    "left_wrist": "Hand_{S}"}), scale=0.01, units="cm")

CMU = RigProfile("cmu", _sided({
    "pelvis": "Hips", "spine1": "Spine", "spine2": Lerp("Spine", "Spine1", 0.7), "spine3": "Spine1",
    "neck": "Neck1", "head": "Head",
    "left_hip": "{Side}UpLeg", "left_knee": "{Side}Leg", "left_ankle": "{Side}Foot", "left_foot": "{Side}ToeBase",
    "left_collar": Lerp("{Side}Shoulder", "{Side}Arm", 0.5), "left_shoulder": "{Side}Arm",
    "left_elbow": "{Side}ForeArm", "left_wrist": "{Side}Hand"}), scale=None)
# Joints that identify the CMU rig beyond the ones the mapping reads.
CMU_MARKERS = ("LHipJoint", "RHipJoint", "LowerBack", "Neck")

PROJECT = RigProfile("project", {name: name for name in JOINT_NAMES}, scale=1.0, units="m")
AUTO_RIG = "auto"  # the name of profiles the name matcher makes

BUILTIN_RIGS = {profile.name: profile for profile in (BANDAI, CMU, PROJECT)}


def plain_name(name: str) -> str:
    """A joint name without a namespace prefix ('mixamorig:Hips' -> 'Hips')."""
    return name.rsplit(":", 1)[-1]


def joint_lookup(joint_names: list) -> dict:
    """{key: index} by which a mapping finds each file joint: its full name, then its name without
    namespace, then the lower-case forms of both (a form two joints share is left out)."""
    table: dict = {}
    for form in (lambda n: n, plain_name, str.lower, lambda n: plain_name(n).lower()):
        seen: dict = {}
        for i, name in enumerate(joint_names):
            seen.setdefault(form(name), set()).add(i)
        for key, hits in seen.items():
            if len(hits) == 1 and key not in table:
                table[key] = hits.pop()
    return table


def find_joint(table: dict, name: str) -> Optional[int]:
    """The index of the file joint a mapping's `name` means (with or without a namespace, any
    case), or None; `table` is joint_lookup's."""
    for key in (name, plain_name(name), name.lower(), plain_name(name).lower()):
        if key in table:
            return table[key]
    return None


def _markers(profile: RigProfile) -> list:
    return profile.required_joints() + (list(CMU_MARKERS) if profile.name == "cmu" else [])


def _as_spec(spec):
    return Lerp(*spec) if isinstance(spec, tuple) else spec


def detect_rig(joint_names: list, path: str = "BVH file", parents=None, rest=None,
               template: Optional[str] = None) -> RigProfile:
    """The profile for a file's joints (End Sites named 'Joint/End'): the built-in one whose joints
    are all there (the most specific), else the name matcher's (motion_io.joint_match; needs
    `parents` and rest positions `rest` (J, 3)), else UnknownRigError in one line. With
    `template`, a mapping template to edit (every file joint, the matcher's guesses) is written
    there and the error names it."""
    present = {plain_name(n) for n in joint_names}
    fits = [p for p in BUILTIN_RIGS.values() if set(_markers(p)) <= present]
    if fits:
        return max(fits, key=lambda p: len(_markers(p)))
    found, missing = ({}, list(JOINT_NAMES)) if parents is None else match_joints(joint_names, parents, rest)
    if not missing:
        return RigProfile(AUTO_RIG, {n: _as_spec(found[n]) for n in JOINT_NAMES}, source="name matcher")
    joints = [n for n in joint_names if not n.endswith("/End")]
    if template:
        write_rig_template(template, joint_names, parents, found)
        fix = f"a mapping template listing them is in {template}: fill in its empty joints"
    else:
        fix = ("write a mapping template listing them with prepare_data.py --write_rig_template FILE "
               "(import_bvh(..., rig_template=FILE)), fill in its empty joints")
    shown = ", ".join(joints[:6]) + (", ..." if len(joints) > 6 else "")
    raise UnknownRigError(
        f"{path}: unknown BVH rig ({len(joints)} joints: {shown}); no {', '.join(missing[:3])}"
        f"{f' (+{len(missing) - 3})' if len(missing) > 3 else ''} found by name; {fix} and pass "
        "rig=FILE (prepare_data.py --rig FILE); see README 'Importing your own BVH'")


def rig_template(joint_names: list, parents=None, found: Optional[dict] = None) -> dict:
    """A mapping (format: `rig_from_mapping`) to edit: the matcher's joints where it found them,
    "" where not, and `file_joints`, the file's joints indented by depth (End Sites as 'Joint/End')."""
    found = found or {}
    joints = {}
    for smpl in JOINT_NAMES:
        spec = found.get(smpl, "")
        joints[smpl] = {"lerp": list(spec)} if isinstance(spec, tuple) else spec
    depth = []
    for i in range(len(joint_names)):
        parent = -1 if parents is None else int(parents[i])
        depth.append(0 if parent < 0 else depth[parent] + 1)
    return {"name": "my_rig", "units": None, "up": None, "joints": joints,
            "file_joints": ["  " * d + n for d, n in zip(depth, joint_names)]}


def write_rig_template(path: str, joint_names: list, parents=None, found: Optional[dict] = None) -> str:
    """Write `rig_template` as JSON to path (atomically); returns the path."""
    from runtime import write_atomic
    text = json.dumps(rig_template(joint_names, parents, found), indent=1)

    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            fh.write(text + "\n")
    write_atomic(os.path.abspath(path), write)
    return path


def _parse_spec(smpl: str, spec, where: str):
    if isinstance(spec, str) and spec:
        return spec
    if isinstance(spec, dict) and set(spec) == {"lerp"}:
        spec = spec["lerp"]
        if (isinstance(spec, list) and len(spec) == 3 and all(isinstance(s, str) for s in spec[:2])
                and isinstance(spec[2], (int, float)) and not isinstance(spec[2], bool)):
            return Lerp(spec[0], spec[1], float(spec[2]))
    raise ValueError(f"{where}: joint '{smpl}' must map to a file joint name or "
                     f"{{\"lerp\": [\"JointA\", \"JointB\", fraction]}}, got {json.dumps(spec)}")


def _parse_units(units, where: str) -> tuple[Optional[float], str]:
    if units is None:
        return None, ""
    if isinstance(units, str) and units in KNOWN_UNITS:
        return KNOWN_UNITS[units], units
    if isinstance(units, (int, float)) and not isinstance(units, bool) and units > 0:
        return float(units), f"{units:g} m"
    raise ValueError(f"{where}: 'units' must be one of {list(KNOWN_UNITS)}, metres per file unit "
                     f"(a positive number) or null (from the figure's height), got {json.dumps(units)}")


def rig_from_mapping(data: dict, where: str = "rig mapping") -> RigProfile:
    """A profile from a JSON-style dict:

        {"name": "my_rig",                 # optional
         "units": "cm",                    # m, cm, mm, inch, ft, cmu, metres per unit, or null
         "up": "y",                        # x, y, z, -x, -y, -z, or null/absent (from the rest pose)
         "joints": {"pelvis": "Hips", ..., "spine2": {"lerp": ["Spine", "Chest", 0.7]},
                    "left_foot": "LeftFoot/End"},
         "file_joints": [...]}             # ignored (the template lists the file's joints there)

    `joints` names all 22 SMPL joints. Bad content raises a one-line ValueError.
    """
    if not isinstance(data, dict) or not isinstance(data.get("joints"), dict):
        raise ValueError(f"{where}: expected a JSON object with a \"joints\" object mapping the 22 SMPL joints")
    unknown = sorted(set(data) - {"name", "units", "up", "joints", "file_joints"})
    if unknown:
        raise ValueError(f"{where}: unknown key '{unknown[0]}' (keys: name, units, up, joints, file_joints)")
    missing = [n for n in JOINT_NAMES if n not in data["joints"]]
    extra = sorted(set(data["joints"]) - set(JOINT_NAMES))
    if missing or extra:
        problem = f"lacks {', '.join(missing)}" if missing else f"has unknown SMPL joint '{extra[0]}'"
        raise ValueError(f"{where}: \"joints\" {problem} (it maps each of {', '.join(JOINT_NAMES)})")
    up = data.get("up")
    if up is not None and up not in UP_AXES:
        raise ValueError(f"{where}: 'up' must be one of {list(UP_AXES)} or null, got {json.dumps(up)}")
    scale, units = _parse_units(data.get("units"), where)
    joints = {n: _parse_spec(n, data["joints"][n], where) for n in JOINT_NAMES}
    return RigProfile(str(data.get("name", "custom")), joints, scale, units, up, source=where)


def load_rig_json(path: str) -> RigProfile:
    """A profile from a JSON mapping file (format: `rig_from_mapping`)."""
    try:
        with open(path) as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise ValueError(f"rig mapping file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"rig mapping file {path} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
    return rig_from_mapping(data, where=path)


RigSpec = Union[None, str, dict, RigProfile]


def resolve_rig(rig: RigSpec, joint_names: list, path: str = "BVH file", parents=None, rest=None,
                template: Optional[str] = None) -> RigProfile:
    """The profile for a file: `rig` None (detect_rig: built-in profiles, then the name matcher),
    a built-in name, a JSON mapping file path, a mapping dict or a RigProfile. Checks that the
    file has its joints (names with or without namespace; End Sites as 'Joint/End')."""
    if rig is None:
        return detect_rig(joint_names, path, parents, rest, template)
    if isinstance(rig, RigProfile):
        profile = rig
    elif isinstance(rig, dict):
        profile = rig_from_mapping(rig)
    elif isinstance(rig, (str, os.PathLike)) and str(rig) in BUILTIN_RIGS:
        profile = BUILTIN_RIGS[str(rig)]
    elif isinstance(rig, (str, os.PathLike)):
        if not str(rig).endswith(".json") and not os.path.exists(rig):
            raise ValueError(f"rig must be one of {list(BUILTIN_RIGS)} or a JSON mapping file, got {rig!r}")
        profile = load_rig_json(os.fspath(rig))
    else:
        raise ValueError(f"rig must be None, a rig name, a JSON file path, a dict or a RigProfile, got {type(rig).__name__}")
    table = joint_lookup(joint_names)
    missing = [n for n in profile.required_joints() if find_joint(table, n) is None]
    if missing:
        joints = [n for n in joint_names if not n.endswith("/End")]
        raise ValueError(f"{path}: rig '{profile.name}' needs joints the file lacks ({', '.join(missing[:5])}); "
                         f"the file has {len(joints)} joints ({', '.join(joints[:8])}{', ...' if len(joints) > 8 else ''}"
                         "; End Sites are 'Joint/End')")
    return profile


def map_to_smpl(positions: np.ndarray, joint_names: list, profile: RigProfile) -> np.ndarray:
    """The 22 SMPL joints (F, 22, 3) from world positions (F, J, 3) of the file's joints."""
    table = joint_lookup(joint_names)
    out = np.empty(positions.shape[:-2] + (len(JOINT_NAMES), 3), dtype=positions.dtype)
    for j, smpl in enumerate(JOINT_NAMES):
        spec = profile.joints[smpl]
        if isinstance(spec, Lerp):
            a = positions[..., find_joint(table, spec.a), :]
            b = positions[..., find_joint(table, spec.b), :]
            out[..., j, :] = a + spec.t * (b - a)
        else:
            out[..., j, :] = positions[..., find_joint(table, spec), :]
    return out


# Chains whose summed canonical bone lengths measure a figure: ankle -> knee -> hip -> pelvis
# -> spine -> neck -> head, for each leg.
_HEIGHT_CHAINS = [[7, 4, 1, 0, 3, 6, 9, 12, 15], [8, 5, 2, 0, 3, 6, 9, 12, 15]]


def figure_scale(joints: np.ndarray) -> tuple[float, str]:
    """(metres per file unit, units name) of a figure's joints (F, 22, 3) in file units.

    Sums the bone lengths from each ankle up to the head (median over frames) and compares them
    with the canonical skeleton's; the result snaps to a known unit (KNOWN_UNITS) within a factor
    of 1.5, else it stays the measured ratio ("x.xxx m").
    """
    measured, canonical = [], []
    for chain in _HEIGHT_CHAINS:
        bones = joints[:, chain[1:]] - joints[:, chain[:-1]]
        measured.append(np.median(np.linalg.norm(bones, axis=-1).sum(-1)))
        canonical.append(sum(BONE_LENGTHS[c] if PARENTS[c] == p else BONE_LENGTHS[p]
                             for p, c in zip(chain[:-1], chain[1:])))
    if not np.mean(measured) > 0:
        raise ValueError("the figure has no size (all joints at one point); cannot find its units")
    ratio = float(np.mean(canonical) / np.mean(measured))
    name, unit = min(KNOWN_UNITS.items(), key=lambda kv: abs(math.log(ratio / kv[1])))
    if abs(math.log(ratio / unit)) < math.log(1.5):
        return unit, name
    return ratio, f"{ratio:.4g} m"

