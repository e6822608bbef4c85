"""metrics.py on inputs whose answers are known in closed form."""
import numpy as np
import pytest
import torch

import metrics
import utils
from conftest import random_motion_joints


def standing_pose() -> np.ndarray:
    """The rest pose on the floor (lowest joint at y = 0): (22, 3)."""
    rest = utils.forward_kinematics(torch.tensor([1.0, 0, 0, 0]).expand(22, 4).double(),
                                    torch.zeros(3, dtype=torch.float64)).numpy()
    rest[:, 1] -= rest[:, 1].min()
    return rest


# ---- embedding metrics -------------------------------------------------------------------
def test_fid_of_identical_sets_is_zero():
    acts = np.random.default_rng(0).normal(size=(500, 16))
    assert metrics.fid(acts, acts) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_matches_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    var1, var2 = rng.uniform(0.2, 2.0, 8), rng.uniform(0.2, 2.0, 8)
    closed = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    exact = metrics.frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2))
    assert exact == pytest.approx(closed, rel=1e-9)
    # and from samples: shifted Gaussians with those covariances
    a = mu1 + rng.normal(size=(200_000, 8)) * np.sqrt(var1)
    b = mu2 + rng.normal(size=(200_000, 8)) * np.sqrt(var2)
    assert metrics.fid(a, b) == pytest.approx(closed, rel=0.02, abs=0.01)


def test_fid_of_a_pure_shift_is_squared_shift_for_full_covariance():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(3000, 6)) @ rng.normal(size=(6, 6))
    shift = np.array([1.0, -2.0, 0.5, 0.0, 3.0, 1.0])
    assert metrics.fid(base, base + shift) == pytest.approx(np.sum(shift ** 2), rel=1e-6)


def test_r_precision_of_a_perfect_matcher_is_one_and_of_a_random_one_is_chance():
    rng = np.random.default_rng(3)
    motion = rng.normal(size=(320, 32))
    perfect = metrics.r_precision(motion + 1e-3 * rng.normal(size=motion.shape), motion)
    np.testing.assert_allclose(perfect, [1.0, 1.0, 1.0])
    random = np.mean([metrics.r_precision(rng.normal(size=(320, 32)), rng.normal(size=(320, 32)))
                      for _ in range(30)], axis=0)
    np.testing.assert_allclose(random, [1 / 32, 2 / 32, 3 / 32], atol=0.01)
    assert metrics.matching_score(motion, motion) == pytest.approx(0.0)


def test_r_precision_drops_the_incomplete_last_batch():
    rng = np.random.default_rng(4)
    motion = rng.normal(size=(40, 8))
    text = motion.copy()
    text[32:] = rng.normal(size=(8, 8)) * 100  # wrong texts only in the incomplete batch
    np.testing.assert_allclose(metrics.r_precision(text, motion), [1.0, 1.0, 1.0])


def test_diversity_multimodality_and_confidence_interval():
    rng = np.random.default_rng(5)
    acts = rng.normal(size=(1000, 64))
    # E||x - y|| for x, y ~ N(0, I_64) is close to sqrt(2 * 64)
    assert metrics.diversity(acts, 300, rng) == pytest.approx(np.sqrt(128), rel=0.05)
    same = np.repeat(rng.normal(size=(100, 1, 16)), 30, axis=1)  # Guo et al.: 100 prompts x 30 samples
    assert metrics.multimodality(same) == pytest.approx(0.0)
    spread = same + rng.normal(size=same.shape)
    # 10 pairs from two independent draws: a pair is one sample twice with probability 1/30
    assert metrics.multimodality(spread, 10, rng) == pytest.approx(np.sqrt(32) * 29 / 30, rel=0.1)
    two = np.stack([np.zeros((3, 4)), np.ones((3, 4))], axis=1)  # (3, 2, 4): samples 2 apart
    assert metrics.multimodality(two, 10, rng) in (0.0, 1.0, 2.0)  # both draws are permutations of {0, 1}
    mean, half = metrics.confidence_interval([1.0, 2.0, 3.0])
    assert mean == pytest.approx(2.0)
    assert half == pytest.approx(1.96 * np.std([1, 2, 3]) / np.sqrt(3))
    assert metrics.accuracy([1, 2, 3, 4], [1, 2, 0, 0]) == pytest.approx(0.5)


# ---- motion-quality metrics ------------------------------------------------------------
def sliding(pose: np.ndarray, speeds) -> np.ndarray:
    """The pose moved along +x by speeds[t] m/s between frames t and t+1 (20 fps): (T, 22, 3)."""
    x = np.concatenate([[0.0], np.cumsum(np.asarray(speeds, dtype=np.float64) / 20.0)])
    return pose[None] + x[:, None, None] * np.array([1.0, 0.0, 0.0])


def test_foot_skating_follows_gmd_feet_height_and_averaged_speed():
    pose = standing_pose()
    assert pose[[10, 11], 1].max() < 0.02  # the feet (joints 10, 11) are on the floor
    static = np.repeat(pose[None], 40, axis=0)
    assert metrics.foot_skating_ratio(static) == 0.0
    assert metrics.foot_skating_ratio(sliding(pose, [1.0] * 39)) == 1.0  # planted feet slide at 1 m/s
    # 0.6 m/s: the 5-step average (zeros beyond the ends) falls to 0.36 and 0.48 at the two
    # steps nearest each end, so 35 of the 39 steps skate
    assert metrics.foot_skating_ratio(sliding(pose, [0.6] * 39)) == pytest.approx(35 / 39)
    assert metrics.foot_skating_ratio(sliding(pose, [0.45] * 39)) == 0.0  # slower than 0.5 m/s
    # one fast step in a still motion: 1 m/s at that step, 0.2 m/s on the 5-step average
    assert metrics.foot_skating_ratio(sliding(pose, [0.0] * 20 + [1.0] + [0.0] * 18)) == 0.0
    lifted = sliding(pose, [1.0] * 39)
    lifted[..., 1] += 0.04  # still below 5 cm: contact
    assert metrics.foot_skating_ratio(lifted) == 1.0
    lifted[..., 1] += 0.02  # 6 cm up: the same slide in the air is not skating
    assert metrics.foot_skating_ratio(lifted) == 0.0
    one_foot = np.repeat(pose[None], 40, axis=0)
    one_foot[:, 10] = sliding(pose, [1.0] * 39)[:, 10]  # only the left foot slides
    assert metrics.foot_skating_ratio(one_foot) == 1.0
    ankles_only = sliding(pose, [1.0] * 39)
    ankles_only[:, [10, 11], 1] += 0.3  # ankles slide on the floor, feet (toes) lifted: not GMD skating
    assert metrics.foot_skating_ratio(ankles_only) == 0.0


def test_moving_average_matches_uniform_filter1d_constant_mode():
    values = np.random.default_rng(0).normal(size=(2, 17))
    expected = np.stack([[np.sum(row[max(0, i - 2):i + 3]) / 5 for i in range(17)] for row in values])
    np.testing.assert_allclose(metrics.moving_average(values, 5), expected, atol=1e-12)


def test_foot_penetration_measures_depth_below_the_floor():
    static = np.repeat(standing_pose()[None], 10, axis=0)
    assert metrics.foot_penetration(static) == pytest.approx(0.0)
    assert metrics.foot_penetration(static - np.array([0, 0.03, 0])) == pytest.approx(0.03)


def test_jerk_of_constant_velocity_is_zero_and_of_acceleration_changes_is_not():
    pose = standing_pose()
    t = np.arange(30)[:, None, None] / 20.0
    constant = pose[None] + t * np.array([0.7, 0.0, 1.2])
    assert metrics.jerk(constant) == pytest.approx(0.0, abs=1e-6)
    cubic = pose[None] + (t ** 3) * np.array([1.0, 0.0, 0.0])  # jerk 6 m/s^3 everywhere
    assert metrics.jerk(cubic) == pytest.approx(6.0, rel=1e-6)


def test_keyframe_acceleration_ratio_is_one_without_kinks_and_large_with_them():
    pose = standing_pose()
    t = np.arange(41)[:, None, None] / 20.0
    idx = utils.keyframe_indices(41, 5)
    parabola = pose[None] + 0.5 * 2.0 * t ** 2 * np.array([1.0, 0.0, 0.0])  # 2 m/s^2 everywhere
    np.testing.assert_allclose(metrics.acceleration_magnitude(parabola), 2.0, rtol=1e-9)
    assert metrics.keyframe_acceleration_ratio(parabola, idx) == pytest.approx(1.0)
    smooth = random_motion_joints(41, seed=3)
    assert 0.7 < metrics.keyframe_acceleration_ratio(smooth, idx) < 1.4
    zigzag = np.interp(np.arange(41), idx, 0.02 * (-1.0) ** np.arange(len(idx)))  # kinks at keyframes
    kinked = smooth + zigzag[:, None, None] * np.array([0.0, 0.0, 1.0])
    assert metrics.keyframe_acceleration_ratio(kinked, idx) > 2.0
    assert np.isnan(metrics.keyframe_acceleration_ratio(smooth, [0, 40]))  # no interior keyframe
    steady = pose[None] + t * np.array([1.0, 0.0, 0.0])  # constant velocity: nothing to compare
    assert np.isnan(metrics.keyframe_acceleration_ratio(steady, idx))


def test_bone_length_std_and_error():
    joints = random_motion_joints(30, seed=7)
    assert metrics.bone_length_std(joints) < 1e-6 and metrics.bone_length_error(joints) < 1e-6
    stretched = joints * 1.1
    expected = 0.1 * np.mean(utils.BONE_LENGTHS[1:])
    assert metrics.bone_length_error(stretched) == pytest.approx(expected, rel=1e-4)
    assert metrics.bone_length_std(stretched) < 1e-6  # rigid, if not the canonical proportions
    breathing = joints.copy()
    root = joints[:, :1]
    breathing[1::2] = root[1::2] + 1.1 * (joints[1::2] - root[1::2])  # every other frame 10% larger
    # each bone alternates between L and 1.1 L: std 0.05 L
    assert metrics.bone_length_std(breathing) == pytest.approx(0.05 * np.mean(utils.BONE_LENGTHS[1:]), rel=1e-4)


def test_keyframe_adherence():
    joints = random_motion_joints(30, seed=8)
    idx = utils.keyframe_indices(30, 5)
    assert metrics.keyframe_adherence(joints, joints[idx], idx) == pytest.approx(0.0)
    moved = joints[idx] + np.array([0.0, 0.02, 0.0])
    assert metrics.keyframe_adherence(joints, moved, idx) == pytest.approx(0.02)
    assert np.isnan(metrics.keyframe_adherence(joints, np.zeros((0, 22, 3)), np.zeros(0, dtype=int)))
    with pytest.raises(ValueError, match="keyframe_idx"):
        metrics.keyframe_adherence(joints, joints[:1], [30])
