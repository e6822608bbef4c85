"""Find the 22 SMPL joints in the skeleton of a BVH file of any common rig, by joint names and
the hierarchy, without a rig profile.

Names are read loosely: a namespace or rig prefix is dropped (`mixamorig:`, `mixamorig1:`,
`Bip01 `, `Bip001_`, `CC_Base_`, `DEF-`), words are split at case changes, `_`, `.`, `-` and
spaces, digits are ignored, and the side comes from a word `L`/`R`/`Left`/`Right` anywhere
(`LeftUpLeg`, `thigh_l`, `upperleg01.L`, `Bip01 L Thigh`) or a glued `l`/`r` prefix (`lShldr`,
`rthigh`). What is left names the joint's part (any case):

    thigh      UpLeg, UpperLeg, Thigh, Femur (or a sided Hip where the leg has none of those)
    knee       Leg, LowLeg, LowerLeg, LoLeg, Knee, Shin, Calf, Tibia
    ankle      Foot, Ankle
    toe        Toe, Toes, ToeBase, Ball (else the ankle's End Site)
    collar     Collar, Clavicle, Clav (or Shoulder, where an upper arm follows)
    upper arm  Arm, UpArm, UpperArm, Shldr, Humerus (or Shoulder)
    elbow      ForeArm, LowerArm, LowArm, LoArm, Elbow
    wrist      Hand, Wrist
    neck       Neck, Neck1, neck_01, NeckLower, ...
    head       Head (else the neck's End Site)

A trailing `Bend` is ignored (DAZ's `lThighBend`); twist, roll, IK and end joints never match.
The hierarchy does the rest: each limb is read from its top (the first upper arm, elbow, ...
along the chain, so twist joints in between do not count), spine3 is the joint where the two
arms branch off, the pelvis is where the legs and the spine meet, spine1 is the first spine
joint above the pelvis and spine2 the point 71% of the way from spine1 to spine3 along the
spine (SMPL's proportions). A rig without a neck gets one 68% of the way from spine3 to the
head; a collar that sits on the spine (zero length) is moved halfway to the shoulder.
"""
from __future__ import annotations

import re
from typing import Optional

import numpy as np

from utils import BONE_LENGTHS, JOINT_NAMES

_PREFIX = re.compile(r"^(?:mixamorig\d*[_:]?|bip0*\d+[\s_.-]*|valvebiped[\s_.-]*bip0*\d+[\s_.-]*|cc_base_|def[-_]|"
                     r"bn_|b_)", re.IGNORECASE)
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_PARTS = {
    "thigh": ("upleg", "upperleg", "thigh", "femur", "uleg"),
    "hip": ("hip",),
    "knee": ("leg", "lowleg", "lowerleg", "loleg", "knee", "shin", "calf", "tibia"),
    "ankle": ("foot", "ankle"),
    "toe": ("toe", "toes", "toebase", "ball"),
    "collar": ("collar", "clavicle", "clav", "collarbone"),
    "shoulder": ("shoulder",),
    "upper_arm": ("arm", "uparm", "upperarm", "shldr", "humerus"),
    "elbow": ("forearm", "lowerarm", "lowarm", "loarm", "elbow"),
    "wrist": ("hand", "wrist"),
    "head": ("head",),
}
_PART_OF = {word: part for part, words in _PARTS.items() for word in words}
_SIDES = {"l": "left", "left": "left", "r": "right", "right": "right"}

# SMPL's rest proportions: spine2 between spine1 and spine3, neck between spine3 and head.
SPINE2_FRACTION = float(BONE_LENGTHS[6] / (BONE_LENGTHS[6] + BONE_LENGTHS[9]))
NECK_FRACTION = float(BONE_LENGTHS[12] / (BONE_LENGTHS[12] + BONE_LENGTHS[15]))
_SPINE_FRACTIONS = (float(BONE_LENGTHS[3] / BONE_LENGTHS[[3, 6, 9]].sum()),
                    float(BONE_LENGTHS[[3, 6]].sum() / BONE_LENGTHS[[3, 6, 9]].sum()))


def name_part(name: str) -> tuple[Optional[str], Optional[str]]:
    """(side 'left'/'right'/None, part or 'neck' or None) of a joint name, e.g.
    'mixamorig:LeftForeArm' -> ('left', 'elbow'), 'thigh_l' -> ('left', 'thigh')."""
    if name.endswith("/End"):
        return None, None
    bare = _PREFIX.sub("", name.rsplit(":", 1)[-1])
    words = _WORDS.findall(bare)
    side = None
    core_words = []
    for word in words:
        low = word.lower()
        if low in _SIDES and side is None:
            side = _SIDES[low]
        elif not low.isdigit():
            core_words.append(low)
    core = "".join(core_words)
    for glued in ("left", "right", "l", "r"):  # 'lshldr', 'rthigh', 'leftupleg'
        rest = core[len(glued):]
        if side is None and core.startswith(glued) and _known(rest) and not _known(core):
            side, core = _SIDES[glued], rest
            break
    if core.endswith("bend"):
        core = core[:-4]
    if core.startswith("neck") and core[4:] in ("", "lower", "base", "a"):
        return side, "neck"
    return side, _PART_OF.get(core)


def _known(core: str) -> bool:
    core = core[:-4] if core.endswith("bend") else core
    return core in _PART_OF or core.startswith("neck")


class Skeleton:
    """A joint tree: names (end sites as 'Joint/End'), parents (-1 root) and rest positions."""

    def __init__(self, names: list, parents, rest: np.ndarray):
        self.names, self.parents, self.rest = list(names), [int(p) for p in parents], np.asarray(rest)
        self.parts = [name_part(n) for n in self.names]
        self.size = float(np.ptp(self.rest, axis=0).max()) or 1.0

    def depth(self, j: int) -> int:
        return len(self.ancestors(j))

    def ancestors(self, j: int) -> list:
        """Ancestors of j from its parent up to the root."""
        out = []
        while self.parents[j] >= 0:
            j = self.parents[j]
            out.append(j)
        return out

    def below(self, top: int, part: str, side: Optional[str] = None) -> Optional[int]:
        """The topmost joint named `part` (on `side`) in the subtree under `top` (-1: anywhere)."""
        found = [j for j, (s, p) in enumerate(self.parts) if p == part and (side is None or s == side)
                 and (top < 0 or top in self.ancestors(j))]
        return min(found, key=self.depth) if found else None

    def end_site(self, j: int) -> Optional[int]:
        """The End Site of joint j, else its only child joint, else None."""
        kids = [k for k, p in enumerate(self.parents) if p == j]
        ends = [k for k in kids if self.names[k].endswith("/End")]
        return (ends or (kids if len(kids) == 1 else [None]))[0]

    def common_ancestor(self, *joints: int) -> int:
        """The deepest joint that is (or is an ancestor of) every one of `joints`."""
        chains = [[j] + self.ancestors(j) for j in joints]
        shared = [j for j in chains[0] if all(j in c for c in chains[1:])]
        return shared[0]

    def apart(self, a: int, b: int) -> bool:
        """Whether joints a and b are more than 1% of the figure's size apart in the rest pose."""
        return float(np.linalg.norm(self.rest[a] - self.rest[b])) > 0.01 * self.size


def _limb(sk: Skeleton, side: str) -> dict:
    """{role: joint index} of one side's leg and arm (roles missing where not found)."""
    out = {}
    thigh = sk.below(-1, "thigh", side)
    thigh = sk.below(-1, "hip", side) if thigh is None else thigh
    if thigh is not None:
        out["hip"] = thigh
        knee = sk.below(thigh, "knee", side)
        ankle = sk.below(knee, "ankle", side) if knee is not None else None
        if knee is not None:
            out["knee"] = knee
        if ankle is not None:
            out["ankle"] = ankle
            toe = sk.below(ankle, "toe", side)
            toe = sk.end_site(ankle) if toe is None else toe
            if toe is not None:
                out["foot"] = toe
    wrist = sk.below(-1, "wrist", side)
    if wrist is not None:
        out["wrist"] = wrist
        chain = sk.ancestors(wrist)[::-1]  # root ... wrist's parent
        elbows = [j for j in chain if sk.parts[j] == (side, "elbow")]
        elbow = elbows[0] if elbows else None
        if elbow is not None:
            out["elbow"] = elbow
            above = sk.ancestors(elbow)[::-1]
            uppers = [j for j in above if sk.parts[j] == (side, "upper_arm")]
            shoulders = [j for j in above if sk.parts[j] == (side, "shoulder")]
            upper = uppers[0] if uppers else (shoulders[-1] if shoulders else None)
            if upper is not None:
                out["shoulder"] = upper
                collars = [j for j in sk.ancestors(upper)[::-1]
                           if sk.parts[j] in ((side, "collar"), (side, "shoulder"))]
                if collars:
                    out["collar"] = collars[0]
    return out


def _path_point(sk: Skeleton, path: list, fraction: float):
    """The point `fraction` of the arc length along the rest-pose polyline `path` (joint indices),
    as a joint name or (a, b, t) between two consecutive joints."""
    seg = np.linalg.norm(np.diff(sk.rest[path], axis=0), axis=-1)
    total = seg.sum()
    if not total > 0:
        return sk.names[path[-1]]
    goal = fraction * total
    for k, length in enumerate(seg):
        if goal <= length or k == len(seg) - 1:
            t = float(min(goal / length, 1.0)) if length > 0 else 0.0
            return (sk.names[path[k]], sk.names[path[k + 1]], round(t, 4))
        goal -= length
    return sk.names[path[-1]]


def _torso(sk: Skeleton, limbs: dict) -> dict:
    """{SMPL name: name or (a, b, t)} of the pelvis, spine, neck and head, given both limbs."""
    arm = {s: limbs[s].get("collar", limbs[s].get("shoulder")) for s in ("left", "right")}
    if None in arm.values() or "hip" not in limbs["left"] or "hip" not in limbs["right"]:
        return {}
    spine3 = sk.common_ancestor(arm["left"], arm["right"])
    while sk.parts[spine3][1] == "neck" and sk.parents[spine3] >= 0:
        spine3 = sk.parents[spine3]
    pelvis = sk.common_ancestor(limbs["left"]["hip"], limbs["right"]["hip"], spine3)
    out = {"pelvis": sk.names[pelvis], "spine3": sk.names[spine3]}
    path = ([spine3] + [j for j in sk.ancestors(spine3) if j != pelvis and pelvis in sk.ancestors(j)])[::-1]
    inner = [j for j in path[:-1] if sk.apart(j, pelvis)]
    if inner:
        spine1 = inner[0]
        out["spine1"] = sk.names[spine1]
        out["spine2"] = _path_point(sk, path[path.index(spine1):], SPINE2_FRACTION)
    else:
        out["spine1"] = _path_point(sk, [pelvis, spine3], _SPINE_FRACTIONS[0])
        out["spine2"] = _path_point(sk, [pelvis, spine3], _SPINE_FRACTIONS[1])
    head = sk.below(spine3, "head")
    necks = [j for j, (_, p) in enumerate(sk.parts) if p == "neck" and spine3 in sk.ancestors(j)
             and (head is None or j in sk.ancestors(head)) and sk.apart(j, spine3)]
    neck = min(necks, key=sk.depth) if necks else None
    if head is None and neck is not None:
        head = sk.end_site(neck)
    if head is not None:
        out["head"] = sk.names[head]
        out["neck"] = sk.names[neck] if neck is not None else (sk.names[spine3], sk.names[head], round(NECK_FRACTION, 4))
    return out


def match_joints(names: list, parents, rest: np.ndarray) -> tuple[dict, list]:
    """({SMPL joint: file joint name or (a, b, t)} found, [SMPL joints not found]) for a
    skeleton: joint names (End Sites as 'Joint/End'), parent indices and rest positions (J, 3)."""
    sk = Skeleton(names, parents, rest)
    limbs = {side: _limb(sk, side) for side in ("left", "right")}
    found = _torso(sk, limbs)
    for side, roles in limbs.items():
        for role, j in roles.items():
            found[f"{side}_{role}"] = sk.names[j]
            if role == "collar" and "shoulder" in roles and not sk.apart(j, sk.parents[j]):
                found[f"{side}_collar"] = (sk.names[j], sk.names[roles["shoulder"]], 0.5)
    found = {n: found[n] for n in JOINT_NAMES if n in found}
    return found, [n for n in JOINT_NAMES if n not in found]
