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
