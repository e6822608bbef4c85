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


# ---- toe skating (Kimodo), the features' contact flags -------------------------------------
def test_toe_skating_speed_is_the_mean_toe_speed_near_the_floor_without_threshold():
    pose = standing_pose()
    assert pose[[10, 11], 1].max() < 0.05  # the toes are on the floor
    assert metrics.toe_skating_speed(np.repeat(pose[None], 30, axis=0)) == 0.0
    drag = sliding(pose, [0.3] * 29)  # planted feet dragged at 0.3 m/s: GMD's 0.5 m/s threshold misses it
    assert metrics.toe_skating_speed(drag) == pytest.approx(30.0)
    assert metrics.foot_skating_ratio(drag) == 0.0
    lifted = drag.copy()
    lifted[..., 1] += 0.06  # every toe 6 cm up: nothing near the floor
    assert np.isnan(metrics.toe_skating_speed(lifted))
    half = drag.copy()
    half[15:, :, 1] += 0.2  # lifted from frame 15: only steps 0..13 have both frames near the floor
    half[:15, :, 0] = pose[None, :, 0]  # and those are still
    assert metrics.toe_skating_speed(half) == 0.0
    one_toe = np.repeat(pose[None], 30, axis=0)
    one_toe[:, 10] = sliding(pose, [0.4] * 29)[:, 10]  # the left toe slides, the right stays: pooled
    assert metrics.toe_skating_speed(one_toe) == pytest.approx(20.0)


def test_flagged_toe_speed_and_contact_agreement_on_known_flags():
    pose = standing_pose()
    drag = sliding(pose, [0.5] * 19)  # (20, 22, 3), both toes on the floor and sliding at 0.5 m/s
    features = np.zeros((20, 263))
    features[:10, 260] = 1.0  # the left toe's channel says planted for frames 0..9, the right's never
    features[:, 259] = features[:, 261] = 1.0  # ankle channels are not read
    assert metrics.toe_contact_flags(features).shape == (2, 20)
    assert metrics.flagged_toe_speed(drag, features) == pytest.approx(50.0)
    # the height test says contact at all 2 x 19 steps; the flags at 10 of them
    assert metrics.contact_agreement(drag, features) == pytest.approx(10 / 38)
    assert np.isnan(metrics.flagged_toe_speed(drag, np.zeros((20, 263))))
    still = np.repeat(pose[None], 20, axis=0)
    features[:, [260, 262]] = 1.0
    assert metrics.flagged_toe_speed(still, features) == 0.0 and metrics.contact_agreement(still, features) == 1.0
    with pytest.raises(ValueError, match="one length"):
        metrics.flagged_toe_speed(drag[:15], features)


def test_humanml3d_flags_come_from_speed_so_flagged_toes_stay_below_its_threshold():
    """HumanML3D flags a joint planted when it moves less than sqrt(0.002) m a frame (0.894 m/s at
    20 fps): every flagged toe step is slower than that, and the flags need not agree with height."""
    from synthetic import generate_motion
    for index in range(3):
        joints = generate_motion(0, index, 20).joints
        features = utils.joints_to_features(joints)  # (T-1, 263)
        recovered = utils.features_to_joints(features)  # (T-1, 22, 3): the frames the features describe
        flags = metrics.toe_contact_flags(features)[:, :-1]
        assert flags.any()
        assert metrics.toe_speeds(recovered)[flags].max() < np.sqrt(0.002) * 20 + 1e-4
        assert metrics.flagged_toe_speed(recovered, features) < 89.5
        assert 0.0 < metrics.contact_agreement(recovered, features) <= 1.0


# ---- seams: displacement against ground truth at the same root speed, FlowMDM's jerk ----------
def test_a_teleport_has_known_relative_displacement_and_jerk():
    pose = standing_pose()
    d, fps = 0.1, 20
    popped = np.repeat(pose[None], 20, axis=0)
    popped[10:, :, 0] += d  # the whole body jumps 10 cm along x between frames 9 and 10
    moved = metrics.relative_displacements(popped)  # (19, 22): the steady root pace ignores one step
    np.testing.assert_allclose(moved[9], d)
    assert np.abs(np.delete(moved, 9, axis=0)).max() == 0.0
    walking = sliding(pose, [1.2] * 19)  # steady walk: each joint moves exactly at the root's pace
    assert metrics.relative_displacements(walking).max() < 1e-12
    curve = metrics.jerk_curve(popped, fps)  # third differences d, -2d, d around the jump
    np.testing.assert_allclose(curve[[7, 8, 9]], np.array([1, 2, 1]) * d * fps ** 3)
    assert np.delete(curve, [7, 8, 9]).max() == 0.0
    around = metrics.transition_jerk(popped, [10], fps, reach=3)  # (1, 7), centred on the jump step
    np.testing.assert_allclose(around[0], np.array([0, 0, 1, 2, 1, 0, 0]) * d * fps ** 3)
    assert metrics.peak_jerk(around) == pytest.approx(2 * d * fps ** 3)
    assert metrics.area_under_jerk(around, 0.0, fps) == pytest.approx(4 * d * fps ** 2)
    assert metrics.area_under_jerk(np.zeros((1, 7)), 50.0, fps) == pytest.approx(7 * 50.0 / fps)
    edge = metrics.transition_jerk(popped, [1], fps, reach=3)
    assert np.isnan(edge[0, :4]).all() and not np.isnan(edge[0, 4:]).any()


def test_seam_reference_bins_by_root_speed_and_borrows_for_thin_bins():
    pose = standing_pose()
    still = [np.repeat(pose[None], 60, axis=0)]
    walk = [sliding(pose, [1.1] * 59)]
    reference = metrics.seam_reference(still + walk)
    assert reference.steps[0] == 59 and reference.steps[metrics.speed_bins(walk[0])[0]] == 59
    assert reference.steps.sum() == 118 and reference.limits.max() < 1e-9 and reference.jerk_level < 1e-6
    with pytest.raises(ValueError, match="at least 50 steps"):
        metrics.seam_reference([still[0][:20]])


@pytest.fixture(scope="module")
def embedded_reference():
    """Ground truth: motions of the embedded procedural data set (the reference and held-out ones)."""
    from synthetic import generate_motion
    motions = [generate_motion(0, i, 20).joints for i in range(66)]
    return metrics.seam_reference(motions[:60]), motions[60:]


def test_a_ten_centimetre_teleport_at_a_seam_fails_and_the_untouched_motion_passes(embedded_reference):
    reference, held_out = embedded_reference
    for joints in held_out:
        seam = len(joints) // 2
        untouched = metrics.score_seams(joints, [seam], reference)
        assert untouched.passed, untouched.displacement_ratios
        for direction in ([0.1, 0.0, 0.0], [0.0, 0.0, 0.1], [0.0, 0.1, 0.0]):
            popped = joints.copy()
            popped[seam:] += np.array(direction)  # 10 cm teleport from the seam frame on
            scores = metrics.score_seams(popped, [seam], reference)
            assert not scores.passed and scores.displacement_ratios[0] > 1.2, (direction, scores)
            # the jump adds a third difference of -2 x 10 cm (L1 0.2 m x fps^3) at the seam step,
            # which the motion's own jerk there can offset by at most its own size
            centre = metrics.TRANSITION_REACH
            own = metrics.transition_jerk(joints, [seam])[0, centre]
            assert metrics.transition_jerk(popped, [seam])[0, centre] >= 0.2 * 20 ** 3 - own
            assert scores.peak_jerk >= 0.2 * 20 ** 3 - own


# ---------------------------------------------------------------------------------------
# Speed: pace against real takes, and the order of styles within a content
# ---------------------------------------------------------------------------------------
def walking_root(speed: float, frames: int = 41, fps: int = 20) -> np.ndarray:
    """(frames, 22, 3) a still pose whose root moves along x+z at `speed` m/s (and bobs in y)."""
    t = np.arange(frames)[:, None] / fps
    joints = np.zeros((frames, 22, 3))
    direction = np.array([0.6, 0.0, 0.8])  # unit length in x-z
    joints += (t * speed * direction)[:, None, :]
    joints[:, :, 1] += 0.9 + 0.05 * np.sin(t * 10)  # vertical motion is not speed
    return joints


def test_root_speed_is_the_horizontal_pace_of_the_root():
    assert metrics.root_speed(walking_root(1.3)) == pytest.approx(1.3)
    assert metrics.root_speed(walking_root(0.0)) == pytest.approx(0.0)
    assert metrics.root_speed(walking_root(2.0, fps=10), fps=10) == pytest.approx(2.0)


def test_moving_speed_ratio_counts_only_motions_whose_real_take_moves():
    # the standing take (0.05 m/s) is left out: (0.5 + 1.5) / (1.0 + 3.0)
    assert metrics.moving_speed_ratio([0.5, 1.5, 9.0], [1.0, 3.0, 0.05]) == pytest.approx(0.5)
    assert np.isnan(metrics.moving_speed_ratio([1.0], [0.1]))
    with pytest.raises(ValueError, match="pair up"):
        metrics.moving_speed_ratio([1.0, 2.0], [1.0])


def test_rank_correlation_known_answers():
    assert metrics.rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert metrics.rank_correlation([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # monotone but not linear: ranks, not values
    assert metrics.rank_correlation([1, 2, 3, 4], [1, 8, 27, 1000]) == pytest.approx(1.0)
    # one swap among 4: 1 - 6 * 2 / (4 * 15) = 0.8
    assert metrics.rank_correlation([1, 2, 3, 4], [2, 1, 3, 4]) == pytest.approx(0.8)
    # ties share their mean rank: ranks (1.5, 1.5, 3) against (1, 2, 3) -> sqrt(3) / 2
    assert metrics.rank_correlation([5, 5, 7], [1, 2, 3]) == pytest.approx(np.sqrt(3) / 2)
    assert np.isnan(metrics.rank_correlation([1, 1, 1], [1, 2, 3]))
    assert np.isnan(metrics.rank_correlation([1], [2]))
    np.testing.assert_allclose(metrics.ranks([3.0, 1.0, 3.0, 2.0]), [3.5, 1.0, 3.5, 2.0])


def test_style_speed_agreement_compares_style_order_within_moving_contents():
    reference = {("run", "tired"): 1.5, ("run", "normal"): 3.0, ("run", "active"): 3.3,
                 ("walk", "tired"): 0.8, ("walk", "normal"): 1.2, ("walk", "active"): 1.5,
                 ("wave", "tired"): 0.01, ("wave", "normal"): 0.02, ("wave", "active"): 0.03}
    styles = ["tired", "normal", "active"]
    # runs in the real order, walks reversed, waves (a content that does not move) ignored
    speeds = [2.0, 2.5, 2.9] + [1.4, 1.0, 0.7] + [0.9, 0.5, 0.1]
    contents = ["run"] * 3 + ["walk"] * 3 + ["wave"] * 3
    value = metrics.style_speed_agreement(speeds, contents, styles * 3, reference)
    assert value == pytest.approx(0.0)  # (1 + -1) / 2
    # the real order everywhere, from several motions per style (their mean counts)
    speeds = [1.0, 3.0, 2.0, 2.6, 3.1] + [0.9, 1.1, 1.6]
    contents = ["run"] * 5 + ["walk"] * 3
    value = metrics.style_speed_agreement(speeds, contents, ["tired", "tired", "normal", "normal", "active"] + styles,
                                          reference)
    assert value == pytest.approx(1.0)
    # too few styles in the row, or styles the reference does not know: no verdict
    assert np.isnan(metrics.style_speed_agreement([1.0, 2.0], ["run", "run"], ["tired", "active"], reference))
    assert np.isnan(metrics.style_speed_agreement([1.0, 2.0, 3.0], ["run"] * 3, ["a", "b", "c"], reference))
    with pytest.raises(ValueError, match="one entry per motion"):
        metrics.style_speed_agreement([1.0], ["run", "run"], ["tired", "active"], reference)
