"""Skeletons of common BVH rigs (joint names, nesting, rest offsets in the rig's own units and up
axis) and a writer of BVH files of a known walk on any of them, for tests/test_rigs.py.

The hierarchies follow the rigs' published joint lists and public files: Mixamo's `mixamorig:`
skeleton, Biovision's classic hierarchy (Chest/Chest2, LeftCollar/LeftShoulder/LeftElbow/
LeftWrist, LeftHip/LeftKnee/LeftAnkle/LeftToe, inches), MakeHuman 1.1's default skeleton
(root, spine05..spine01, neck01..03, clavicle/shoulder01/upperarm01-02/lowerarm01-02/wrist,
pelvis.L/upperleg01-02/lowerleg01-02/foot/toe1-1..., metres), DAZ/Poser's names as in three.js's
pirouette.bvh (hip, abdomen, chest, neck with an End Site and no head, r/lcollar, shldr,
forearm, hand, buttock, thigh, shin, foot ending in End Sites; cm), a Truebones-style 3ds Max
Biped export (Bip01_..., thighs under the spine, clavicles under the neck), an Unreal-style
skeleton as Rokoko and UE export it (root, pelvis, spine_01..03, neck_01, head, clavicle_l,
upperarm_l, lowerarm_l, hand_l, thigh_l, calf_l, foot_l, ball_l and twist/IK joints; Z up, cm)
and an Emilya-style (Xsens-like) skeleton without a neck joint. Offsets are plausible values
for an adult, not copied from a file.
"""
from pathlib import Path

import numpy as np


def _sided(rows, lateral: int = 0, left_sign: float = 1.0):
    """Rows with '{S}' (L/R), '{s}' (l/r) and '{Side}' (Left/Right) expanded for both sides; the
    lateral offset component `lateral` keeps its sign on the left and flips on the right."""
    out = []
    for side, short, sign in (("Left", "L", left_sign), ("Right", "R", -left_sign)):
        for name, parent, offset in rows:
            fmt = dict(S=short, s=short.lower(), Side=side)
            off = list(offset)
            off[lateral] = off[lateral] * sign
            out.append((name.format(**fmt), parent.format(**fmt) if parent else parent, tuple(off)))
    return out


def mixamo(prefix="mixamorig:"):
    """Mixamo's skeleton (y up, cm, facing +z, left at +x)."""
    rows = [("Hips", None, (0, 0, 0)), ("Spine", "Hips", (0, 9.9, 0.2)), ("Spine1", "Spine", (0, 11.7, 0)),
            ("Spine2", "Spine1", (0, 13.4, 0)), ("Neck", "Spine2", (0, 15.0, 0.5)), ("Head", "Neck", (0, 10.3, 2.9)),
            ("HeadTop_End", "Head", (0, 18.5, 6.6))]
    rows += _sided([("{Side}Shoulder", "Spine2", (6.1, 9.1, 0.1)), ("{Side}Arm", "{Side}Shoulder", (12.9, 0, 0)),
                    ("{Side}ForeArm", "{Side}Arm", (27.4, 0, 0)), ("{Side}Hand", "{Side}ForeArm", (27.6, 0, 0)),
                    ("{Side}HandThumb1", "{Side}Hand", (3.0, -1.0, 2.5)), ("{Side}HandThumb2", "{Side}HandThumb1", (3.2, 0, 0)),
                    ("{Side}HandIndex1", "{Side}Hand", (9.5, 0, 2.4)), ("{Side}HandIndex2", "{Side}HandIndex1", (3.8, 0, 0)),
                    ("{Side}UpLeg", "Hips", (8.2, -6.7, -0.5)), ("{Side}Leg", "{Side}UpLeg", (0, -44.3, 0.3)),
                    ("{Side}Foot", "{Side}Leg", (0, -44.5, -2.9)), ("{Side}ToeBase", "{Side}Foot", (0, -8.9, 10.7)),
                    ("{Side}Toe_End", "{Side}ToeBase", (0, 0, 8.5))])
    return [(prefix + n, p and prefix + p, o) for n, p, o in rows]


def biovision():
    """Biovision's classic hierarchy (y up, inches, facing +z)."""
    rows = [("Hips", None, (0, 0, 0)), ("Chest", "Hips", (0, 4.3, 0)), ("Chest2", "Chest", (0, 7.6, 0)),
            ("Neck", "Chest2", (0, 8.6, 0)), ("Head", "Neck", (0, 3.6, 0.4))]
    rows += _sided([("{Side}Collar", "Chest2", (1.2, 6.9, 0.6)), ("{Side}Shoulder", "{Side}Collar", (5.8, 0, 0)),
                    ("{Side}Elbow", "{Side}Shoulder", (11.1, 0, 0)), ("{Side}Wrist", "{Side}Elbow", (9.6, 0, 0)),
                    ("{Side}Hip", "Hips", (3.4, 0, 0)), ("{Side}Knee", "{Side}Hip", (0, -16.8, 0)),
                    ("{Side}Ankle", "{Side}Knee", (0, -16.4, 0)), ("{Side}Toe", "{Side}Ankle", (0, -2.8, 5.4))])
    return rows


def makehuman():
    """MakeHuman 1.1's default skeleton (y up, metres): spine numbered top-down, two-part limbs."""
    rows = [("root", None, (0, 0, 0)), ("spine05", "root", (0, 0.07, -0.01)), ("spine04", "spine05", (0, 0.09, 0.0)),
            ("spine03", "spine04", (0, 0.09, 0.01)), ("spine02", "spine03", (0, 0.10, 0.0)),
            ("spine01", "spine02", (0, 0.10, -0.01)), ("neck01", "spine01", (0, 0.08, 0.01)),
            ("neck02", "neck01", (0, 0.04, 0.01)), ("neck03", "neck02", (0, 0.04, 0.0)), ("head", "neck03", (0, 0.03, 0.0)),
            ("jaw", "head", (0, -0.02, 0.05)), ("special01", "head", (0, 0.05, 0.05))]
    rows += _sided([("clavicle.{S}", "spine01", (0.03, 0.06, 0.05)), ("shoulder01.{S}", "clavicle.{S}", (0.13, 0.01, -0.06)),
                    ("upperarm01.{S}", "shoulder01.{S}", (0.03, -0.01, 0)), ("upperarm02.{S}", "upperarm01.{S}", (0.14, 0, 0)),
                    ("lowerarm01.{S}", "upperarm02.{S}", (0.14, 0, 0)), ("lowerarm02.{S}", "lowerarm01.{S}", (0.13, 0, 0)),
                    ("wrist.{S}", "lowerarm02.{S}", (0.13, 0, 0)), ("metacarpal1.{S}", "wrist.{S}", (0.03, 0, 0.02)),
                    ("finger2-1.{S}", "metacarpal1.{S}", (0.07, 0, 0.01)), ("breast.{S}", "spine02", (0.09, 0.06, 0.08)),
                    ("pelvis.{S}", "root", (0.06, 0.0, 0.0)), ("upperleg01.{S}", "pelvis.{S}", (0.04, -0.08, 0.01)),
                    ("upperleg02.{S}", "upperleg01.{S}", (0, -0.21, 0)), ("lowerleg01.{S}", "upperleg02.{S}", (0, -0.21, 0)),
                    ("lowerleg02.{S}", "lowerleg01.{S}", (0, -0.21, -0.01)), ("foot.{S}", "lowerleg02.{S}", (0, -0.21, -0.02)),
                    ("toe1-1.{S}", "foot.{S}", (-0.02, -0.06, 0.13)), ("toe1-2.{S}", "toe1-1.{S}", (0, 0, 0.03)),
                    ("toe2-1.{S}", "foot.{S}", (0.0, -0.06, 0.13)), ("toe5-1.{S}", "foot.{S}", (0.04, -0.06, 0.10))])
    return rows


def daz_poser():
    """DAZ/Poser names as in three.js's pirouette.bvh (y up, cm): no head joint (the neck ends in
    an End Site), feet end in End Sites."""
    rows = [("hip", None, (0, 0, 0)), ("abdomen", "hip", (0, 20.6881, -0.73152)),
            ("chest", "abdomen", (0, 11.7043, -0.48768)), ("neck", "chest", (0, 22.1894, -2.19456))]
    rows += _sided([("{s}collar", "chest", (2.68224, 19.2634, -4.8768)), ("{s}shldr", "{s}collar", (8.77824, -1.95073, 1.46304)),
                    ("{s}forearm", "{s}shldr", (28.1742, -1.7115, 0.48768)), ("{s}hand", "{s}forearm", (22.5879, 0.773209, 7.07136)),
                    ("{s}buttock", "hip", (8.77824, 4.35084, 1.2192)), ("{s}thigh", "{s}buttock", (0, -1.70687, -2.19456)),
                    ("{s}shin", "{s}thigh", (0, -36.8199, 0.73152)), ("{s}foot", "{s}shin", (-0.73152, -45.1104, -5.12064))])
    return rows


DAZ_END_SITES = {"neck": (0, 10, 0), "lfoot": (1.1221, -3.69964, 12.103), "rfoot": (-1.1221, -3.69964, 12.103),
                 "lhand": (11.24714, 1.18213, 3.41376), "rhand": (-11.24714, 1.18213, 3.41376)}


def truebones():
    """A Truebones-style 3ds Max Biped export (y up, cm): Bip01_ names, thighs under the spine,
    clavicles under the neck, Nub end joints."""
    rows = [("Bip01", None, (0, 0, 0)), ("Bip01_Pelvis", "Bip01", (0, 0, 0)), ("Bip01_Spine", "Bip01_Pelvis", (0, 9.5, 0.3)),
            ("Bip01_Spine1", "Bip01_Spine", (0, 12.4, 0)), ("Bip01_Spine2", "Bip01_Spine1", (0, 12.6, 0)),
            ("Bip01_Neck", "Bip01_Spine2", (0, 14.8, -0.5)), ("Bip01_Head", "Bip01_Neck", (0, 9.1, 1.8)),
            ("Bip01_HeadNub", "Bip01_Head", (0, 19.0, 0))]
    rows += _sided([("Bip01_{S}_Clavicle", "Bip01_Neck", (1.9, 0, 0)), ("Bip01_{S}_UpperArm", "Bip01_{S}_Clavicle", (15.2, 0, 0)),
                    ("Bip01_{S}_Forearm", "Bip01_{S}_UpperArm", (28.0, 0, 0)), ("Bip01_{S}_Hand", "Bip01_{S}_Forearm", (24.5, 0, 0)),
                    ("Bip01_{S}_Finger0", "Bip01_{S}_Hand", (2.5, 0, 3.0)), ("Bip01_{S}_Finger0Nub", "Bip01_{S}_Finger0", (4.0, 0, 0)),
                    ("Bip01_{S}_Thigh", "Bip01_Spine", (9.0, -14.5, 0)), ("Bip01_{S}_Calf", "Bip01_{S}_Thigh", (0, -44.0, 0)),
                    ("Bip01_{S}_Foot", "Bip01_{S}_Calf", (0, -43.0, 0)), ("Bip01_{S}_Toe0", "Bip01_{S}_Foot", (0, -7.5, 12.5)),
                    ("Bip01_{S}_Toe0Nub", "Bip01_{S}_Toe0", (0, 0, 6.0))])
    return rows


def unreal():
    """An Unreal-style skeleton (Rokoko/UE export; Z up, cm, facing +y, left at -x): a root on
    the floor, twist and IK joints."""
    rows = [("root", None, (0, 0, 0)), ("pelvis", "root", (0, 0, 96.8)), ("spine_01", "pelvis", (0, 1.5, 10.8)),
            ("spine_02", "spine_01", (0, -0.5, 18.9)), ("spine_03", "spine_02", (0, -1.5, 13.4)),
            ("neck_01", "spine_03", (0, -2.0, 16.0)), ("head", "neck_01", (0, 1.0, 9.3)),
            ("ik_foot_root", "root", (0, 0, 0)), ("ik_hand_root", "root", (0, 0, 0))]
    rows += _sided([("clavicle_{s}", "spine_03", (3.8, -1.5, 11.9)), ("upperarm_{s}", "clavicle_{s}", (15.8, 0, 0)),
                    ("upperarm_twist_01_{s}", "upperarm_{s}", (13.0, 0, 0)), ("lowerarm_{s}", "upperarm_{s}", (28.3, 0, 0)),
                    ("lowerarm_twist_01_{s}", "lowerarm_{s}", (13.0, 0, 0)), ("hand_{s}", "lowerarm_{s}", (26.6, 0, 0)),
                    ("index_01_{s}", "hand_{s}", (11.0, 0, 1.0)), ("thigh_{s}", "pelvis", (9.0, 0, -1.0)),
                    ("thigh_twist_01_{s}", "thigh_{s}", (0, 0, -22.0)), ("calf_{s}", "thigh_{s}", (0, 0, -42.6)),
                    ("calf_twist_01_{s}", "calf_{s}", (0, 0, -20.0)), ("foot_{s}", "calf_{s}", (0, 0, -40.2)),
                    ("ball_{s}", "foot_{s}", (0, 13.7, -9.2)), ("ik_foot_{s}", "ik_foot_root", (9.0, 0, 0))],
                   lateral=0, left_sign=-1.0)
    return rows


def emilya():
    """An Emilya-style (Xsens-like) skeleton without a neck joint (y up, cm): the head hangs on
    the top spine joint."""
    rows = [("Hips", None, (0, 0, 0)), ("Spine", "Hips", (0, 10.0, 0)), ("Spine1", "Spine", (0, 10.5, 0)),
            ("Spine2", "Spine1", (0, 10.5, 0)), ("Spine3", "Spine2", (0, 10.0, 0)), ("Head", "Spine3", (0, 24.0, 1.5))]
    rows += _sided([("{Side}Shoulder", "Spine3", (3.0, 8.0, 0)), ("{Side}Arm", "{Side}Shoulder", (14.0, 0, 0)),
                    ("{Side}ForeArm", "{Side}Arm", (28.0, 0, 0)), ("{Side}Hand", "{Side}ForeArm", (25.0, 0, 0)),
                    ("{Side}UpLeg", "Hips", (9.0, -4.0, 0)), ("{Side}Leg", "{Side}UpLeg", (0, -43.0, 0)),
                    ("{Side}Foot", "{Side}Leg", (0, -42.0, 0)), ("{Side}Toe", "{Side}Foot", (0, -7.0, 13.0))])
    return rows


RIGS = {
    # name: (hierarchy, up axis, metres per unit, End Site offsets {joint: offset}, (left, right) thigh)
    "mixamo": (mixamo(), "y", 0.01, {}, ("mixamorig:LeftUpLeg", "mixamorig:RightUpLeg")),
    "biovision": (biovision(), "y", 0.0254, {}, ("LeftHip", "RightHip")),
    "makehuman": (makehuman(), "y", 1.0, {}, ("upperleg01.L", "upperleg01.R")),
    "daz_poser": (daz_poser(), "y", 0.01, DAZ_END_SITES, ("lthigh", "rthigh")),
    "truebones": (truebones(), "y", 0.01, {}, ("Bip01_L_Thigh", "Bip01_R_Thigh")),
    "unreal": (unreal(), "z", 0.01, {}, ("thigh_l", "thigh_r")),
    "emilya": (emilya(), "y", 0.01, {}, ("LeftUpLeg", "RightUpLeg")),
}
_AXIS = {"x": 0, "y": 1, "z": 2}


def rest_positions(hierarchy, ends=None):
    """{name: rest position} of the joints and End Sites ('Joint/End') of a hierarchy."""
    pos = {}
    for name, parent, offset in hierarchy:
        pos[name] = np.array(offset, float) + (pos[parent] if parent else 0.0)
    for name, offset in (ends or {}).items():
        pos[name + "/End"] = pos[name] + np.array(offset, float)
    return pos


def write_walk_bvh(path, rig, speed=100.0, seconds=2.0, fps=30, yaw_deg=30.0, wobble_deg=3.0,
                   first_frame=None, seed=0):
    """Write a BVH of RIGS[rig] walking at `speed` file units per second along its facing, turned
    by yaw_deg about the up axis, lowest rest joint on the floor, every joint wobbling by up to
    wobble_deg. first_frame: None, or 'tpose_low' (frame 0 is the rest pose, unturned, 9% of the
    figure's height lower: feet through the floor). Returns (path, facing direction in the file)."""
    hierarchy, up, _, ends, (left_name, right_name) = RIGS[rig]
    rng = np.random.default_rng(seed)
    rest = rest_positions(hierarchy, ends)
    names = [n for n, _, _ in hierarchy]
    upv = np.zeros(3)
    upv[_AXIS[up]] = 1.0
    forward = np.cross(upv, rest[right_name] - rest[left_name])
    forward /= np.linalg.norm(forward)
    count = int(round(seconds * fps)) + 1
    t = np.arange(count) / fps
    lowest = min(float(p @ upv) for p in rest.values())
    yaw = np.deg2rad(yaw_deg)
    turn = _axis_angle(upv, yaw)
    root = rest[names[0]] - lowest * upv + np.outer(speed * t, turn @ forward)  # (F, 3)
    angles = wobble_deg * np.sin(2 * np.pi * 1.5 * t[:, None] + rng.uniform(0, 6.28, (1, 3 * len(names))))
    angles[:, "ZXY".index(up.upper())] += yaw_deg  # root channels Z X Y: the yaw about the up axis
    values = np.concatenate([root, angles], axis=1)
    if first_frame == "tpose_low":
        height = max(float(p @ upv) for p in rest.values()) - lowest
        values[0] = 0.0
        values[0, :3] = root[0] - 0.09 * height * upv
    _write(path, hierarchy, ends or {}, values, fps)
    return str(path), turn @ forward


def _axis_angle(axis, angle):
    """Rotation matrix (3, 3) about a unit axis."""
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _write(path, hierarchy, ends, values, fps):
    children = {n: [c for c, p, _ in hierarchy if p == n] for n, _, _ in hierarchy}
    offsets = {n: o for n, _, o in hierarchy}
    lines = ["HIERARCHY"]

    def emit(name, depth):
        pad = "\t" * depth
        lines.append(f"{pad}{'ROOT' if depth == 0 else 'JOINT'} {name}\n{pad}{{")
        lines.append(f"{pad}\tOFFSET {' '.join(f'{v:.6f}' for v in offsets[name])}")
        chans = "6 Xposition Yposition Zposition Zrotation Xrotation Yrotation" if depth == 0 else "3 Zrotation Xrotation Yrotation"
        lines.append(f"{pad}\tCHANNELS {chans}")
        for child in children[name]:
            emit(child, depth + 1)
        if not children[name] or name in ends:
            end = ends.get(name, (0.0, 0.0, 0.0))
            lines.append(f"{pad}\tEnd Site\n{pad}\t{{\n{pad}\t\tOFFSET {' '.join(f'{v:.6f}' for v in end)}\n{pad}\t}}")
        lines.append(f"{pad}}}")
    emit(hierarchy[0][0], 0)
    lines += ["MOTION", f"Frames: {len(values)}", f"Frame Time: {1 / fps:.8f}"]
    lines += [" ".join(f"{v:.6f}" for v in row) for row in values]
    Path(path).write_text("\n".join(lines) + "\n")
