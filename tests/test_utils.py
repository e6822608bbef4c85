"""Unit tests of the motion maths in utils.py, including the checks against real HumanML3D data."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import utils

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "humanml3d"
needs_reference = pytest.mark.skipif(not (REFERENCE / "new_joints" / "012314.npy").exists(),
                                     reason=f"HumanML3D reference sample not found in {REFERENCE}")


def _random_quats(*shape, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return utils.qnormalize(torch.randn(*shape, 4, generator=gen, dtype=torch.float64))


def test_quaternion_known_answers():
    quarter_turn_y = utils.quat_from_axis_angle(torch.tensor([0.0, 1.0, 0.0]), torch.tensor(math.pi / 2))
    rotated = utils.qrot(quarter_turn_y, torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(rotated, torch.tensor([0.0, 0.0, -1.0]), atol=1e-6)
    q = _random_quats(16)
    identity = utils.qmul(q, utils.qinv(q))
    assert torch.allclose(identity, torch.tensor([1.0, 0, 0, 0], dtype=torch.float64).expand_as(q), atol=1e-12)
    u, v = torch.randn(16, 3, dtype=torch.float64), torch.randn(16, 3, dtype=torch.float64)
    between = utils.qbetween(u, v)
    assert torch.allclose(utils.qrot(between, u / u.norm(dim=-1, keepdim=True)), v / v.norm(dim=-1, keepdim=True), atol=1e-10)
    # opposite vectors still give a valid half-turn
    opposite = utils.qbetween(torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[0.0, 0.0, -1.0]]))
    assert torch.allclose(utils.qrot(opposite, torch.tensor([[0.0, 0.0, 1.0]])), torch.tensor([[0.0, 0.0, -1.0]]), atol=1e-6)


def test_rotation_conversions_round_trip():
    q = _random_quats(32)
    m = utils.quat_to_matrix(q)
    assert torch.allclose(m @ m.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand_as(m), atol=1e-12)
    assert torch.allclose(utils.quat_to_matrix(utils.matrix_to_quat(m)), m, atol=1e-10)
    assert torch.allclose(utils.cont6d_to_matrix(utils.quat_to_cont6d(q)), m, atol=1e-10)
    back = utils.cont6d_to_quat(utils.quat_to_cont6d(q))
    assert torch.allclose(back.abs(), q.abs(), atol=1e-10)


def test_slerp_midpoint_of_a_quarter_turn_is_an_eighth_turn():
    axis = torch.tensor([0.0, 0.0, 1.0])
    a = utils.quat_from_axis_angle(axis, torch.tensor(0.0))
    b = utils.quat_from_axis_angle(axis, torch.tensor(math.pi / 2))
    mid = utils.qslerp(a, b, 0.5)
    assert torch.allclose(mid, utils.quat_from_axis_angle(axis, torch.tensor(math.pi / 4)), atol=1e-6)


def test_rest_pose_forward_kinematics_uses_the_skeleton_offsets():
    identity = torch.zeros(22, 4, dtype=torch.float64)
    identity[:, 0] = 1
    joints = utils.forward_kinematics(identity, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    bone = joints[1:] - joints[[utils.PARENTS[j] for j in range(1, 22)]]
    assert np.allclose(bone.norm(dim=-1).numpy(), utils.BONE_LENGTHS[1:], atol=1e-12)
    assert joints[1, 0] > joints[2, 0], "the left hip sits at +x in the rest pose"
    assert joints[15, 1] > joints[0, 1] > joints[10, 1], "head above pelvis above toes"


def test_fk_ik_round_trip_on_random_poses():
    gen = torch.Generator().manual_seed(1)
    local = _random_quats(40, 22, seed=3)
    root = torch.randn(40, 3, generator=gen, dtype=torch.float64)
    joints = utils.forward_kinematics(local, root)
    recovered = utils.inverse_kinematics(joints, smooth_forward=False)
    assert torch.allclose(utils.forward_kinematics(recovered, root), joints, atol=1e-9)


def test_fit_bone_lengths_restores_the_skeleton_of_a_stretched_pose():
    local = _random_quats(30, 22, seed=5)
    root = torch.randn(30, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    exact = utils.forward_kinematics(local, root)  # (30, 22, 3), the skeleton's bone lengths
    # Stretch every bone along its own direction by a random factor, rebuilt from the root.
    scale = 0.6 + 0.8 * torch.rand(30, 22, 1, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    stretched = exact.clone()
    for chain in utils.KINEMATIC_CHAIN:
        for parent, child in zip(chain[:-1], chain[1:]):
            stretched[:, child] = stretched[:, parent] + scale[:, child] * (exact[:, child] - exact[:, parent])
    assert not torch.allclose(stretched, exact, atol=1e-3)
    fitted = utils.fit_bone_lengths(stretched, keep_limb_ends=False)  # every bone keeps its direction
    assert torch.allclose(fitted, exact, atol=1e-9)
    for keep in (False, True):  # exact skeletons are kept
        assert torch.allclose(utils.fit_bone_lengths(exact, keep_limb_ends=keep), exact, atol=1e-9)
    fitted_np = utils.fit_bone_lengths(stretched.numpy(), keep_limb_ends=False)
    assert isinstance(fitted_np, np.ndarray) and np.allclose(fitted_np, exact.numpy(), atol=1e-9)


def test_delivered_joints_are_the_features_joints_on_the_skeletons_bones():
    """A motion from an exact skeleton keeps its joints; one whose pose channels are disturbed
    comes back with the skeleton's bone lengths (fit_bones) or as the features say (not)."""
    local = _random_quats(24, 22, seed=7)
    root = torch.randn(24, 3, generator=torch.Generator().manual_seed(8), dtype=torch.float64) * 0.1
    root[:, 1] += 1.0
    features = torch.from_numpy(utils.joints_to_features(utils.forward_kinematics(local, root).numpy()))  # (23, 263)
    disturbed = features.clone()
    disturbed[:, utils.RIC_SLICE] *= 1.1
    raw = utils.delivered_joints(disturbed, fit_bones=False)
    assert raw.dtype == torch.float32 and torch.equal(raw, utils.features_to_joints(disturbed.float()))
    fitted = utils.delivered_joints(disturbed)
    assert torch.allclose(fitted, utils.fit_bone_lengths(raw)) and not torch.allclose(fitted, raw, atol=1e-3)
    exact = utils.features_to_joints(features.float())
    assert torch.allclose(utils.delivered_joints(features), exact, atol=1e-4)


def test_fit_bone_lengths_known_answer_and_degenerate_bone():
    joints = np.zeros((22, 3))  # every joint at the root: each bone takes its rest direction
    fitted = utils.fit_bone_lengths(joints, keep_limb_ends=False)
    assert np.allclose(fitted, utils.forward_kinematics(np.tile([1.0, 0, 0, 0], (22, 1)), np.zeros(3)), atol=1e-12)
    joints = fitted.copy()
    joints[4] = joints[1] + [0.0, 0.0, 2.0]  # left thigh 2 m long, pointing forward (+z)
    joints[7] = joints[4] + [0.0, -0.1, 0.0]  # shin 10 cm long, pointing down
    joints[10] = joints[7] + [0.3, 0.0, 0.0]  # foot 30 cm long, pointing left (+x)
    out = utils.fit_bone_lengths(joints, keep_limb_ends=False)
    length = utils.BONE_LENGTHS
    assert np.allclose(out[4], fitted[1] + [0.0, 0.0, length[4]], atol=1e-12)
    assert np.allclose(out[7], out[4] + [0.0, -length[7], 0.0], atol=1e-12)
    assert np.allclose(out[10], out[7] + [length[10], 0.0, 0.0], atol=1e-12)
    assert np.allclose(out[[0, 1, 2, 5, 8, 11, 20, 21]], fitted[[0, 1, 2, 5, 8, 11, 20, 21]], atol=1e-12)
    with pytest.raises(ValueError, match="22, 3"):
        utils.fit_bone_lengths(np.zeros((5, 21, 3)))


def test_fit_bone_lengths_keeps_the_feet_where_they_are():
    local = _random_quats(30, 22, seed=7)
    exact = utils.forward_kinematics(local, torch.zeros(30, 3, dtype=torch.float64))  # (30, 22, 3)
    # Wrong thigh and shin lengths: knees moved, ankles in place.
    moved = exact.clone()
    gen = torch.Generator().manual_seed(8)
    for mid in utils.LIMB_IK:
        moved[:, mid] += 0.05 * torch.randn(30, 3, generator=gen, dtype=torch.float64)
    fitted = utils.fit_bone_lengths(moved)
    bones = fitted[:, 1:] - fitted[:, utils.PARENTS[1:]]
    assert torch.allclose(bones.norm(dim=-1), torch.as_tensor(utils.BONE_LENGTHS[1:]).expand(30, 21), atol=1e-9)
    ends = list(utils.LIMB_IK.values())
    assert torch.allclose(fitted[:, ends], exact[:, ends], atol=1e-9)  # ankles (and the rest) kept
    assert torch.allclose(fitted[:, [10, 11, 0, 15]], exact[:, [10, 11, 0, 15]], atol=1e-9)
    for mid, tip in utils.LIMB_IK.items():  # each knee bends in the plane the input bends it in
        start = fitted[:, utils.PARENTS[mid]]
        normal = torch.linalg.cross(moved[:, mid] - start, exact[:, tip] - start, dim=-1)
        assert torch.allclose(((fitted[:, mid] - start) * normal).sum(-1), torch.zeros(30, dtype=torch.float64),
                              atol=1e-9)
    # a foot out of reach: the leg is stretched straight towards it
    far = exact[0].clone()
    far[7] = far[1] + torch.tensor([0.0, -2.0, 0.0], dtype=torch.float64)  # 2 m below the hip
    out = utils.fit_bone_lengths(far)
    thigh, shin = out[4] - out[1], out[7] - out[4]
    assert torch.linalg.cross(thigh, shin, dim=-1).norm() < 1e-6
    assert torch.isclose((out[7] - out[1]).norm(), torch.tensor(utils.BONE_LENGTHS[4] + utils.BONE_LENGTHS[7],
                                                                  dtype=torch.float64))


def test_keyframe_indices_layout():
    assert utils.keyframe_indices(120, 5).tolist() == list(range(0, 120, 5)) + [119]
    assert utils.keyframe_indices(11, 5).tolist() == [0, 5, 10]
    assert utils.keyframe_indices(1, 5).tolist() == [0]
    with pytest.raises(ValueError):
        utils.keyframe_indices(0, 5)


def test_feature_mean_std_averages_groups():
    gen = np.random.default_rng(0)
    feats = [gen.normal(size=(50, 263)) * np.linspace(0.5, 2.0, 263) for _ in range(4)]
    mean, std = utils.feature_mean_std(feats)
    assert mean.shape == std.shape == (263,)
    assert np.allclose(std[utils.RIC_SLICE], std[4])
    assert not np.isclose(std[4], std[200])


@needs_reference
def test_features_to_joints_reproduces_humanml3d():
    features = np.load(REFERENCE / "new_joint_vecs" / "012314.npy")
    joints = np.load(REFERENCE / "new_joints" / "012314.npy")
    recovered = utils.features_to_joints(features)
    assert recovered.shape == joints.shape == (170, 22, 3)
    assert np.abs(recovered - joints).max() <= 1e-4
    # batched torch path, same answer
    batch = utils.features_to_joints(torch.from_numpy(features)[None].repeat(3, 1, 1))
    assert np.abs(batch[2].numpy() - joints).max() <= 1e-4


@needs_reference
def test_joints_features_joints_round_trip_on_humanml3d():
    joints = np.load(REFERENCE / "new_joints" / "012314.npy")
    features = utils.joints_to_features(joints)
    assert features.shape == (169, 263)
    assert np.abs(utils.features_to_joints(features) - joints[:-1]).max() <= 1e-4


@needs_reference
def test_feature_layout_matches_released_features():
    """Our features of the real joints equal HumanML3D's own file, group by group. The last
    frames differ slightly because HumanML3D smoothed the facing direction over one more frame."""
    released = np.load(REFERENCE / "new_joint_vecs" / "012314.npy")[:-1]
    ours = utils.joints_to_features(np.load(REFERENCE / "new_joints" / "012314.npy"))
    interior = slice(0, 120)
    for group in (utils.ROOT_SLICE, utils.RIC_SLICE, utils.ROT_SLICE, utils.VEL_SLICE, utils.FOOT_SLICE):
        assert np.abs(ours[interior, group] - released[interior, group]).max() < 2e-3, group
    assert np.abs(ours - released).max() < 2e-2


@needs_reference
def test_skeleton_bone_lengths_match_the_real_motion():
    joints = np.load(REFERENCE / "new_joints" / "012314.npy")
    lengths = np.linalg.norm(joints[:, 1:] - joints[:, utils.PARENTS[1:]], axis=-1)
    assert np.abs(lengths - utils.BONE_LENGTHS[1:]).max() < 1e-4


def test_features_are_invariant_to_heading_and_position():
    local = _random_quats(30, 22, seed=5) * 0.2
    local[..., 0] += 1.0
    local = utils.qnormalize(local)
    root = torch.zeros(30, 3, dtype=torch.float64)
    root[:, 2] = torch.linspace(0, 1.5, 30)
    root[:, 1] = 1.0
    joints = utils.forward_kinematics(local, root).numpy()
    turn = utils.quat_from_axis_angle(torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), torch.tensor(1.1, dtype=torch.float64))
    moved = utils.qrot(turn.expand(30, 22, 4), torch.from_numpy(joints)).numpy() + np.array([3.0, 0.0, -2.0])
    assert np.abs(utils.joints_to_features(joints) - utils.joints_to_features(moved)).max() < 1e-4
    # walking along +z from a +z facing start gives positive forward root velocity
    assert utils.joints_to_features(joints)[:, 2].mean() > 0


def test_features_to_joints_rejects_wrong_width():
    with pytest.raises(ValueError, match="263"):
        utils.features_to_joints(np.zeros((10, 100), dtype=np.float32))
