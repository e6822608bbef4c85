"""BVH export: write real and synthetic motions, parse them back with our reader, and compare
standard BVH forward kinematics with the joints we started from."""
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import bvh
import utils
from conftest import random_motion_joints

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "humanml3d"
REAL_JOINTS = REFERENCE / "new_joints" / "012314.npy"


def _roundtrip(tmp_path, motion, fps=20, name="m.bvh"):
    path = bvh.write_bvh(str(tmp_path / name), motion, fps=fps)
    return path, bvh.read_bvh_joints(path)


@pytest.mark.skipif(not REAL_JOINTS.exists(), reason=f"HumanML3D reference sample not found at {REAL_JOINTS}")
def test_real_humanml3d_motion_roundtrip(tmp_path):
    joints = np.load(REAL_JOINTS)  # (170, 22, 3), retargeted to the skeleton utils measures
    _, back = _roundtrip(tmp_path, joints)
    error = np.linalg.norm(back - joints, axis=-1)
    # The real motion lies on utils.SKELETON_OFFSETS (bone lengths agree to ~5e-6 m), so the
    # only error left is the file's 6-decimal text: measured 1.3e-5 m. 1 cm is the contract.
    assert back.shape == joints.shape
    assert error.max() < 1e-3, f"max joint error {error.max():.2e} m"


def test_synthetic_fk_motion_roundtrip(tmp_path):
    # Random smooth rotations on every joint, including the pelvis->hip and spine3->collar
    # bones, which HumanML3D rotates independently of the spine (the BVH needs its link joints).
    joints = random_motion_joints(48, seed=3)
    path, back = _roundtrip(tmp_path, joints)
    assert np.linalg.norm(back - joints, axis=-1).max() < 1e-4
    # A large turn during the motion: still exact.
    turn = utils.quat_from_axis_angle(torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64).expand(48, 3),
                                      torch.linspace(0, 2.5 * math.pi, 48, dtype=torch.float64))
    turned = utils.qrot(turn[:, None].expand(48, 22, 4), torch.from_numpy(joints)).numpy()
    _, back = _roundtrip(tmp_path, turned, name="turned.bvh")
    assert np.linalg.norm(back - turned, axis=-1).max() < 1e-4


def test_features_input_matches_recovered_joints(tmp_path):
    joints = random_motion_joints(33, seed=5)
    features = utils.joints_to_features(joints)  # (32, 263)
    expected = utils.features_to_joints(features)  # (32, 22, 3)
    _, back = _roundtrip(tmp_path, features)
    assert back.shape == (32, 22, 3)
    assert np.linalg.norm(back - expected, axis=-1).max() < 1e-4  # measured 8e-7 m


def test_file_structure(tmp_path):
    joints = random_motion_joints(10, seed=1)
    path = bvh.write_bvh(str(tmp_path / "s.bvh"), joints, fps=30)
    text = Path(path).read_text()
    parsed = bvh.read_bvh(path)
    assert text.startswith("HIERARCHY\nROOT pelvis\n")
    assert len(set(parsed.joint_names)) == len(parsed.joint_names)
    assert set(utils.JOINT_NAMES) <= set(parsed.joint_names)
    assert len(parsed.joint_names) == 22 + 4  # the four zero-offset link joints
    assert parsed.channels[0] == ("Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation")
    assert all(c == ("Zrotation", "Xrotation", "Yrotation") for c in parsed.channels[1:])
    assert text.count("End Site") == 5
    assert parsed.frames.shape == (10, 6 + 3 * 25)
    assert parsed.frame_time == pytest.approx(1 / 30)
    for j, name in enumerate(utils.JOINT_NAMES[1:], start=1):
        np.testing.assert_allclose(parsed.offsets[parsed.joint_names.index(name)], utils.SKELETON_OFFSETS[j], atol=1e-6)
    for name in parsed.joint_names:
        if name.endswith("_link"):
            assert parsed.parents[parsed.joint_names.index(name)] >= 0
            np.testing.assert_array_equal(parsed.offsets[parsed.joint_names.index(name)], 0.0)
    np.testing.assert_allclose(parsed.frames[:, :3], joints[:, 0], atol=1e-5)  # root translation in metres


def test_turning_the_world_changes_only_the_root_rotation(tmp_path):
    # Twists are carried from the pelvis down: a motion turned about the vertical axis has the
    # same local rotations everywhere except the root.
    joints = random_motion_joints(12, seed=7)
    quarter = utils.quat_from_axis_angle(torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64),
                                         torch.tensor(math.pi / 2, dtype=torch.float64))
    turned = utils.qrot(quarter.expand(12, 22, 4), torch.from_numpy(joints)).numpy()
    a = bvh.read_bvh(bvh.write_bvh(str(tmp_path / "a.bvh"), joints)).frames
    b = bvh.read_bvh(bvh.write_bvh(str(tmp_path / "b.bvh"), turned)).frames
    local_a, local_b = np.deg2rad(a[:, 6:]), np.deg2rad(b[:, 6:])
    assert np.abs(np.angle(np.exp(1j * (local_a - local_b)))).max() < 1e-4
    assert not np.allclose(a[:, 3:6], b[:, 3:6], atol=1.0)


@pytest.mark.parametrize("motion, fps, message", [
    (np.zeros((10, 21, 3)), 20, "expected (T, 22, 3)"),
    (np.zeros((10, 100)), 20, "expected (T, 22, 3)"),
    (np.full((10, 22, 3), np.nan), 20, "NaN"),
    (random_motion_joints(5, seed=0), 0, "fps"),
])
def test_bad_input_raises_and_writes_nothing(tmp_path, motion, fps, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        bvh.write_bvh(str(tmp_path / "bad.bvh"), motion, fps=fps)
    assert os.listdir(tmp_path) == []


def test_missing_folder_and_corrupt_file(tmp_path):
    with pytest.raises(ValueError, match="output folder does not exist"):
        bvh.write_bvh(str(tmp_path / "nope" / "x.bvh"), random_motion_joints(5, seed=0))
    garbage = tmp_path / "garbage.bvh"
    garbage.write_text("HIERARCHY\nROOT a\n{\nOFFSET 0 0\n")
    with pytest.raises(ValueError, match="garbage.bvh"):
        bvh.read_bvh(str(garbage))
    truncated = tmp_path / "truncated.bvh"
    text = Path(bvh.write_bvh(str(tmp_path / "ok.bvh"), random_motion_joints(5, seed=0))).read_text()
    truncated.write_text(text[: len(text) - 40])
    with pytest.raises(ValueError, match="MOTION"):
        bvh.read_bvh(str(truncated))


# ---------------------------------------------------------------------------------------
# Importing: real Bandai Namco takes, our own export, CMU-style, unknown and mapped rigs
# ---------------------------------------------------------------------------------------
BANDAI_ARCHIVE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bandai-namco-motion.tar.xz"
BANDAI_DATA = {1: "Bandai-Namco-Research-Motiondataset-1/data/", 2: "Bandai-Namco-Research-Motiondataset-2/data/"}
needs_bandai = pytest.mark.skipif(not BANDAI_ARCHIVE.exists(),
                                  reason=f"Bandai Namco motion archive not found at {BANDAI_ARCHIVE}")


def extract_bandai(members, dest) -> list:
    """Extract archive members (paths inside the archive) into dest, reading the .tar.xz as a
    stream and stopping after the last one; returns the extracted file paths."""
    import tarfile
    wanted, paths = set(members), {}
    with tarfile.open(BANDAI_ARCHIVE, "r|xz") as tar:
        for member in tar:
            if member.name in wanted:
                target = Path(dest) / Path(member.name).name
                target.write_bytes(tar.extractfile(member).read())
                paths[member.name] = str(target)
                if len(paths) == len(wanted):
                    break
    missing = wanted - set(paths)
    assert not missing, f"not in the archive: {sorted(missing)}"
    return [paths[m] for m in members]


@needs_bandai
def test_bandai_take_matches_independent_fk(tmp_path):
    bvhio = pytest.importorskip("bvhio")
    (path,) = extract_bandai([BANDAI_DATA[1] + "dataset-1_bow_active_001.bvh"], tmp_path)
    data = bvh.read_bvh(path)
    ours = bvh.bvh_forward_kinematics(data) * 0.01  # (F, J, 3) file units (cm) -> m
    root = bvhio.readAsHierarchy(path)
    layout = root.layout()
    ref = np.zeros((len(data.frames), len(layout), 3))
    for frame in range(len(data.frames)):
        root.loadPose(frame, recursive=True)
        for k, (joint, _, _) in enumerate(layout):
            ref[frame, k] = np.array(joint.PositionWorld)
    ref *= 0.01
    order = [data.joint_names.index(joint.Name) for joint, _, _ in layout]
    error = np.abs(ours[:, order] - ref).max()
    assert error < 1e-4, f"FK differs from bvhio by {error:.2e} m"  # measured 1.5e-6 m (bvhio is float32)
    # The importer's raw joints are those positions, mapped to SMPL (spine2 between Spine and Chest).
    raw = bvh.import_bvh(path, raw=True)
    assert (raw.rig, raw.source_fps, raw.units, raw.scale) == ("bandai", 30.0, "cm (rig profile)", 0.01)
    by_name = {joint.Name: k for k, (joint, _, _) in enumerate(layout)}
    assert np.abs(raw.joints[:, 0] * 0.01 - ref[:, by_name["Hips"]]).max() < 1e-4
    assert np.abs(raw.joints[:, 20] * 0.01 - ref[:, by_name["Hand_L"]]).max() < 1e-4
    spine2 = ref[:, by_name["Spine"]] + 0.7 * (ref[:, by_name["Chest"]] - ref[:, by_name["Spine"]])
    assert np.abs(raw.joints[:, 6] * 0.01 - spine2).max() < 1e-4
    # The canonical import: 20 fps, on the canonical skeleton, on the floor, facing +z.
    motion = bvh.import_bvh(path)
    assert motion.joints.shape == ((len(data.frames) - 1) * 2 // 3 + 1, 22, 3) and motion.fps == 20
    bones = np.linalg.norm(motion.joints[:, 1:] - motion.joints[:, utils.PARENTS[1:]], axis=-1)
    np.testing.assert_allclose(bones, np.broadcast_to(utils.BONE_LENGTHS[1:], bones.shape), atol=1e-9)
    # The floor: the 5th percentile over frames of each frame's lowest foot joint is at y = 0.
    lowest_foot = motion.joints[:, [7, 8, 10, 11], 1].min(axis=1)
    assert abs(np.percentile(lowest_foot, 5)) < 1e-9 and lowest_foot.min() > -0.01
    assert np.abs(motion.joints[0, 0, [0, 2]]).max() < 1e-9
    assert motion.joints[0, 1, 0] > motion.joints[0, 2, 0]  # left hip at +x
    assert motion.features.shape == (len(motion.joints) - 1, 263)


def _canonical(joints):
    from motion_io.retarget import place_canonically
    return place_canonically(joints)


def _frame0_facing_z(joints):
    """Joints (T, 22, 3) turned about y so that frame 0 faces +z (the importer takes the start's
    facing from a quarter second, which spans other frames at other rates)."""
    turn = utils.facing_rotation(torch.from_numpy(joints[0]))
    return utils.qrot(turn.expand(joints.shape[:-1] + (4,)), torch.from_numpy(joints)).numpy()


def test_export_import_roundtrip(tmp_path):
    joints = _canonical(random_motion_joints(40, seed=11))
    path = bvh.write_bvh(str(tmp_path / "ours.bvh"), joints, fps=20)
    motion = bvh.import_bvh(path)
    assert (motion.rig, motion.units, motion.fps, motion.source_fps) == ("project", "m (rig profile)", 20, 20.0)
    error = np.linalg.norm(motion.joints - joints, axis=-1).max()
    assert error < 1e-3, f"round trip moved a joint by {error:.2e} m"  # measured 1.3e-5 m
    if REAL_JOINTS.exists():
        real = _canonical(np.load(REAL_JOINTS).astype(np.float64))
        back = bvh.import_bvh(bvh.write_bvh(str(tmp_path / "real.bvh"), real)).joints
        assert np.linalg.norm(back - real, axis=-1).max() < 1e-3
    # 30 fps -> 20 fps: every second output frame is a source frame (t = 0, 0.1, 0.2 s ...).
    path30 = bvh.write_bvh(str(tmp_path / "ours30.bvh"), joints, fps=30)
    at20 = bvh.import_bvh(path30).joints
    assert len(at20) == 27
    assert np.linalg.norm(_frame0_facing_z(at20[::2]) - _frame0_facing_z(joints[::3]), axis=-1).max() < 1e-3


def test_rotation_and_channel_orders_give_the_same_positions(tmp_path):
    from scipy.spatial.transform import Rotation
    path = bvh.write_bvh(str(tmp_path / "zxy.bvh"), random_motion_joints(12, seed=2))
    data = bvh.read_bvh(path)
    expected = bvh.bvh_forward_kinematics(data)
    text = Path(path).read_text()
    for order in ("XYZ", "YZX", "ZYX"):
        frames = data.frames.copy()
        for j in range(len(data.joint_names)):
            col = 3 + 3 * j  # the root's rotations follow its three position channels
            matrix = Rotation.from_euler("ZXY", frames[:, col:col + 3], degrees=True)
            frames[:, col:col + 3] = matrix.as_euler(order, degrees=True)
        frames[:, :3] = frames[:, [2, 0, 1]]  # position channels listed as Z X Y
        head = text.split("MOTION")[0].replace("Zrotation Xrotation Yrotation",
                                                " ".join(f"{a}rotation" for a in order))
        head = head.replace("Xposition Yposition Zposition", "Zposition Xposition Yposition")
        other = tmp_path / f"{order}.bvh"
        body = "\n".join(" ".join(f"{v:.10f}" for v in row) for row in frames)
        other.write_text(f"{head}MOTION\nFrames: {len(frames)}\nFrame Time: 0.05\n{body}\n")
        assert np.abs(bvh.bvh_forward_kinematics(bvh.read_bvh(str(other))) - expected).max() < 1e-6


def _cmu_hierarchy(prefix=""):
    """(name, parent, offset) of a 31-joint CMU-style rig in CMU's ASF units (1/0.45 inch)."""
    rows = [("Hips", None, (0, 0, 0)), ("LowerBack", "Hips", (0, 0, 0)), ("Spine", "LowerBack", (0, 2.0, 0)),
            ("Spine1", "Spine", (0, 2.0, 0)), ("Neck", "Spine1", (0, 0, 0)), ("Neck1", "Neck", (0, 1.75, 0)),
            ("Head", "Neck1", (0, 1.76, 0))]
    for side, sign, short in (("Left", 1, "L"), ("Right", -1, "R")):
        rows += [(f"{short}HipJoint", "Hips", (0, 0, 0)), (f"{side}UpLeg", f"{short}HipJoint", (1.6 * sign, -1.8, 0)),
                 (f"{side}Leg", f"{side}UpLeg", (0, -7.0, 0)), (f"{side}Foot", f"{side}Leg", (0, -7.3, 0)),
                 (f"{side}ToeBase", f"{side}Foot", (0, -0.5, 2.1)),
                 (f"{side}Shoulder", "Spine1", (0, 0, 0)), (f"{side}Arm", f"{side}Shoulder", (3.4 * sign, 1.2, 0)),
                 (f"{side}ForeArm", f"{side}Arm", (5.0 * sign, 0, 0)), (f"{side}Hand", f"{side}ForeArm", (3.5 * sign, 0, 0)),
                 (f"{side}FingerBase", f"{side}Hand", (0.7 * sign, 0, 0)),
                 (f"{side}HandIndex1", f"{side}FingerBase", (0.6 * sign, 0, 0)),
                 (f"{short}Thumb", f"{side}Hand", (0.5 * sign, 0, 0.5))]
    return [(prefix + n, p and prefix + p, o) for n, p, o in rows]


def write_test_bvh(path, hierarchy, num_frames=30, seed=0, yaw_deg=90.0, fps=30):
    """A BVH of `hierarchy` ((name, parent, offset) rows, root first): the figure walks along its
    facing direction, turned by yaw_deg about y, with small smooth random joint rotations."""
    rng = np.random.default_rng(seed)
    children = {name: [n for n, p, _ in hierarchy if p == name] for name, _, _ in hierarchy}
    offsets = {name: off for name, _, off in hierarchy}
    lines, order = ["HIERARCHY"], []

    def emit(name, depth):
        pad = "  " * depth
        order.append(name)
        lines.append(f"{pad}{'ROOT' if depth == 0 else 'JOINT'} {name}\n{pad}{{")
        lines.append(f"{pad}  OFFSET {' '.join(f'{v:g}' for v in offsets[name])}")
        chans = "6 Xposition Yposition Zposition Zrotation Xrotation Yrotation" if depth == 0 else "3 Zrotation Xrotation Yrotation"
        lines.append(f"{pad}  CHANNELS {chans}")
        for child in children[name]:
            emit(child, depth + 1)
        if not children[name]:
            lines.append(f"{pad}  End Site\n{pad}  {{\n{pad}    OFFSET 0 1 0\n{pad}  }}")
        lines.append(f"{pad}}}")
    emit(hierarchy[0][0], 0)
    t = np.linspace(0, 1, num_frames)[:, None]
    angles = 8.0 * np.sin(2 * np.pi * t + rng.uniform(0, 6.28, (1, 3 * len(order))))
    angles[:, 2] += yaw_deg  # the root's Yrotation (channels Z X Y): the figure's facing
    heading = np.deg2rad(yaw_deg)
    root = np.stack([np.sin(heading) * 10 * t[:, 0], np.full(num_frames, 17.0), np.cos(heading) * 10 * t[:, 0]], 1)
    values = np.concatenate([root, angles], axis=1)
    lines += ["MOTION", f"Frames: {num_frames}", f"Frame Time: {1 / fps:.7f}"]
    lines += [" ".join(f"{v:.5f}" for v in row) for row in values]
    Path(path).write_text("\n".join(lines) + "\n")
    return str(path)


def test_cmu_rig_is_detected_and_canonicalised(tmp_path):
    path = write_test_bvh(tmp_path / "cmu.bvh", _cmu_hierarchy())
    motion = bvh.import_bvh(path)
    assert (motion.rig, motion.units, motion.up) == ("cmu", "cmu (figure height)", "y")
    assert motion.scale == pytest.approx(0.0254 / 0.45)
    assert motion.joints.shape == (20, 22, 3)
    assert motion.joints[0, 1, 0] > motion.joints[0, 2, 0] and motion.joints[0, 16, 0] > motion.joints[0, 17, 0]
    assert motion.joints[-1, 0, 2] > 0.3  # it walks along its facing: +z once turned
    raw = bvh.import_bvh(path, raw=True)
    data = bvh.read_bvh(path)
    fk = bvh.bvh_forward_kinematics(data)
    np.testing.assert_allclose(raw.joints[:, 4], fk[:, data.joint_names.index("LeftLeg")])


def test_unknown_rig_gives_one_line(tmp_path):
    hierarchy = [("root", None, (0, 0, 0)), ("torso", "root", (0, 10, 0)), ("thigh_l", "root", (5, -5, 0))]
    path = write_test_bvh(tmp_path / "odd.bvh", hierarchy, num_frames=4)
    with pytest.raises(bvh.UnknownRigError) as info:
        bvh.import_bvh(path)
    message = str(info.value)
    assert "\n" not in message
    assert "(3 joints: root, torso, thigh_l)" in message and "rig=FILE" in message
    assert "--write_rig_template" in message and "no pelvis, right_hip, spine1 (+" in message


def test_json_mapping_imports_any_rig(tmp_path):
    import json
    reference = bvh.import_bvh(write_test_bvh(tmp_path / "cmu.bvh", _cmu_hierarchy()))
    path = write_test_bvh(tmp_path / "renamed.bvh", _cmu_hierarchy(prefix="rig:bone_"))
    with pytest.raises(bvh.UnknownRigError):
        bvh.import_bvh(path)  # (the rig: namespace is ignored, but bone_* names are not CMU's)
    from motion_io.rigs import CMU, Lerp
    joints = {smpl: ({"lerp": ["bone_" + spec.a, "bone_" + spec.b, spec.t]} if isinstance(spec, Lerp) else "bone_" + spec)
              for smpl, spec in CMU.joints.items()}
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"name": "renamed", "units": "cmu", "up": "y", "joints": joints}))
    motion = bvh.import_bvh(path, rig=str(mapping))
    assert (motion.rig, motion.units) == ("renamed", "cmu (rig profile)")
    np.testing.assert_allclose(motion.joints, reference.joints, atol=1e-9)
    # A dict works too; up None finds +y; a mapping that lacks a joint says which.
    assert bvh.import_bvh(path, rig={"joints": joints, "up": None}).up == "y"
    bad = dict(joints)
    del bad["head"]
    mapping.write_text(json.dumps({"joints": bad}))
    with pytest.raises(ValueError, match="lacks head"):
        bvh.import_bvh(path, rig=str(mapping))


def test_uniform_skeleton_is_humanml3d_fk_of_ik():
    from motion_io.retarget import leg_length, uniform_skeleton
    joints = random_motion_joints(16, seed=4)
    stretched = joints.copy()
    for chain in utils.KINEMATIC_CHAIN:  # every bone 1.3x longer, directions kept
        for parent, child in zip(chain[:-1], chain[1:]):
            stretched[:, child] = stretched[:, parent] + 1.3 * (joints[:, child] - joints[:, parent])
    out = uniform_skeleton(stretched)
    ratio = leg_length(joints) / leg_length(stretched)
    expected = utils.forward_kinematics(utils.inverse_kinematics(stretched), stretched[:, 0] * ratio)
    assert np.abs(out - expected).max() < 1e-9
    assert np.abs(out[:, 1:] - out[:, 0:1] - (joints[:, 1:] - joints[:, 0:1])).max() < 1e-9


def test_bvh_fps_resamples_the_export(tmp_path):
    # A 20 fps motion written as a 30 fps BVH (for tools that assume 30): same duration, every
    # third file frame is every second motion frame, the frames between are slerped.
    joints = random_motion_joints(41, seed=8)  # 2 s at 20 fps
    path = bvh.write_bvh(str(tmp_path / "w30.bvh"), joints, fps=20, bvh_fps=30)
    data = bvh.read_bvh(path)
    assert len(data.frames) == 61 and data.frame_time == pytest.approx(1 / 30)
    back = bvh.read_bvh_joints(path)
    assert np.linalg.norm(back[::3] - joints[::2], axis=-1).max() < 1e-4
    bones = np.linalg.norm(back[:, 1:] - back[:, utils.PARENTS[1:]], axis=-1)
    np.testing.assert_allclose(bones, np.broadcast_to(utils.BONE_LENGTHS[1:], bones.shape), atol=1e-4)
    with pytest.raises(ValueError, match="bvh_fps must be a positive integer"):
        bvh.write_bvh(str(tmp_path / "bad.bvh"), joints, fps=20, bvh_fps=29.97)
