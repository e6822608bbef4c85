"""End-effector targets (effectors.py): checks, the IK solver, steering inside sampling, the API,
timelines and the CLI."""
import json

import numpy as np
import pytest
import torch

import utils
from conftest import random_motion_joints, run_script
from control import from_world, to_world
from effectors import (CHAIN_BASE, PIN_BLEND_FRAMES, TOES, TWO_BONE, JointPins, check_joint_pins, joint_index,
                       joint_pin_distances, offset_field, pelvis_trajectory, pins_from_records, reach_joint,
                       reach_joint_pins, steer_features)
from pipeline import KeyframePins, SamplingOptions
from test_timeline import build, one_thread  # noqa: F401  (the fixture keeps these tiny models on one thread)
from timeline import generate_timeline

WINDOW = 10  # frames: +-0.5 s at 20 fps, outside which a pin must leave the motion as it was


def bones(joints):
    return np.linalg.norm(joints[..., 1:, :] - joints[..., utils.PARENTS[1:], :], axis=-1)


def turn(v, degrees, axis=(0.3, 1.0, 0.2)):
    q = utils.quat_from_axis_angle(torch.tensor(axis, dtype=torch.float64), torch.tensor(np.radians(degrees)))
    return utils.qrot(q.expand(len(v), 4), torch.from_numpy(np.asarray(v, np.float64))).numpy()


def outside_change(joints, reference, frames):
    """Mean joint distance (m) between two motions over frames further than WINDOW from every pin."""
    far = np.ones(len(joints), dtype=bool)
    for f in frames:
        far[max(0, f - WINDOW):f + WINDOW + 1] = False
    return float(np.linalg.norm(joints[far] - reference[far], axis=-1).mean())


@pytest.fixture(scope="module")
def random_model():
    return build(0.05)


@pytest.fixture(scope="module")
def poses():
    return random_motion_joints(40, seed=3)  # (40, 22, 3) bent a little everywhere


# ---------------------------------------------------------------------------------------
# Input
# ---------------------------------------------------------------------------------------
def test_joints_by_name_or_index():
    assert joint_index("right_wrist") == 21 and joint_index("Pelvis") == 0 and joint_index(15) == 15
    pins = check_joint_pins(JointPins(["head", 20], [3, 9.0], np.zeros((2, 3)), axes=["y", "xz"]), 10)
    assert pins.joints.tolist() == [15, 20] and pins.frames.tolist() == [3, 9]
    assert pins.mask().tolist() == [[False, True, False], [True, False, True]]


@pytest.mark.parametrize("pins, message", [
    (JointPins(["right_hand"], [5], np.zeros((1, 3))), "unknown joint 'right_hand'.*right_wrist"),
    (JointPins([22], [5], np.zeros((1, 3))), "joint index 22 is out of range"),
    (JointPins(["head"], [50], np.zeros((1, 3))), r"frames must be whole numbers in \[0, 39\]"),
    (JointPins(["head"], [2.5], np.zeros((1, 3))), "whole numbers"),
    (JointPins(["head"], [5], np.array([[0.0, np.nan, 0.0]])), "NaN or infinite"),
    (JointPins(["head", "neck"], [5], np.zeros((2, 3))), "one frame and one"),
    (JointPins(["head"], [5], np.zeros((1, 2))), r"want \(1, 3\)"),
    (JointPins(["head"], [5], np.zeros((1, 3)), axes="w"), "subset of 'xyz'"),
    (JointPins(["head"], [5], np.zeros((1, 3)), axes=""), "subset of 'xyz'"),
    (JointPins(["head", "head"], [5, 5], np.zeros((2, 3))), "same joint at the same frame"),
    (JointPins(["pelvis"], [5], np.zeros((1, 3)), axes="x"), "pelvis pin fixes x and z together"),
])
def test_bad_joint_pins_are_one_line_errors(pins, message):
    with pytest.raises(ValueError, match=message) as info:
        check_joint_pins(pins, 40)
    assert "\n" not in str(info.value)


def test_pelvis_xz_pins_become_root_goals():
    pins = check_joint_pins(JointPins(["pelvis", "pelvis", "head"], [10, 20, 30],
                                      np.array([[1.0, 0.9, 2.0], [0.0, 0.8, 0.0], [5.0, 5.0, 5.0]]),
                                      axes=["xyz", "y", "xyz"]), 40)
    assert pelvis_trajectory(None, pins, 40).tolist() == [[10, 1.0, 2.0]]
    path = np.zeros((40, 2))
    rows = pelvis_trajectory(path, pins, 40)  # the pin replaces the path's row at its frame
    assert rows.shape == (40, 3) and rows[10].tolist() == [10, 1.0, 2.0] and np.all(np.diff(rows[:, 0]) > 0)


def test_json_records_in_seconds_become_frames():
    pins = pins_from_records([{"joint": "right_wrist", "seconds": 2.5, "position": [0.3, 1.5, 0.4]},
                              {"joint": 0, "seconds": 0.04, "position": [0, 0.8, 0], "axes": "y"}], fps=20)
    assert pins.frames == [50, 1] and pins.axes == ["xyz", "y"] and pins.positions.shape == (2, 3)
    with pytest.raises(ValueError, match="needs 'joint', 'seconds' and 'position'"):
        pins_from_records([{"joint": "head", "position": [0, 1, 0]}], fps=20)
    with pytest.raises(ValueError, match="non-empty list"):
        pins_from_records({"joint": "head"}, fps=20)


# ---------------------------------------------------------------------------------------
# The solver (known answers)
# ---------------------------------------------------------------------------------------
def reachable_goal(pose, joint):
    """A goal a little off `joint` that its chain can reach exactly."""
    if joint in TOES:
        ankle = TOES[joint]
        hip = TWO_BONE[ankle][0]
        return pose[hip] + 0.95 * turn((pose[ankle] - pose[hip])[None], 8.0)[0] + pose[joint] - pose[ankle]
    if joint == 0:
        return pose[0] + np.array([0.0, -0.05, 0.0])
    base = TWO_BONE[joint][0] if joint in TWO_BONE else CHAIN_BASE[joint]
    single = joint not in TWO_BONE and utils.PARENTS[joint] == base
    scale = 1.0 if single else 0.95  # one bone reaches its sphere only
    return pose[base] + scale * turn((pose[joint] - pose[base])[None], 12.0)[0]


@pytest.mark.parametrize("joint", range(utils.NUM_JOINTS))
def test_every_joint_reaches_a_reachable_goal_keeping_bone_lengths(poses, joint):
    goal = reachable_goal(poses[20], joint)
    moved, ok = reach_joint(poses[20:21], joint, goal[None])
    assert ok[0], utils.JOINT_NAMES[joint]
    assert np.linalg.norm(moved[0, joint] - goal) < 1e-4, utils.JOINT_NAMES[joint]
    assert np.abs(bones(moved) - bones(poses[20:21])).max() < 1e-9
    if joint != 0:  # the chain's base and the rest of the body stay
        assert np.abs(moved[0, 0] - poses[20, 0]).max() == 0.0


def test_pelvis_moves_the_body_over_planted_feet(poses):
    lowered, ok = reach_joint(poses[:1], 0, poses[:1, 0] + np.array([[0.0, -0.08, 0.0]]))
    assert ok[0] and np.abs(lowered[0, [7, 8, 10, 11]] - poses[0, [7, 8, 10, 11]]).max() < 1e-9  # feet held
    assert np.abs(lowered[0, 15] - poses[0, 15] - [0.0, -0.08, 0.0]).max() < 1e-12  # the upper body moved
    raised, ok = reach_joint(poses[:1], 0, poses[:1, 0] + np.array([[0.0, 0.5, 0.0]]))
    assert not ok[0] and abs(raised[0, 0, 1] - poses[0, 0, 1] - 0.5) < 1e-12  # met; the feet leave the floor
    assert np.abs(bones(raised) - bones(poses[:1])).max() < 1e-9


def test_out_of_reach_is_flagged_and_met_as_closely_as_the_chain_allows(poses):
    for joint in (21, 15, 11, 18):
        goal = poses[5, joint] + np.array([3.0, 2.0, -1.0])
        moved, ok = reach_joint(poses[5:6], joint, goal[None])
        assert not ok[0] and np.isfinite(moved).all()
        assert np.abs(bones(moved) - bones(poses[5:6])).max() < 1e-9
        before = np.linalg.norm(poses[5, joint] - goal)
        assert np.linalg.norm(moved[0, joint] - goal) < before - 0.05  # stretched towards it


def test_offset_field_eases_in_and_out():
    field = offset_field(60, np.array([20, 26, 50]), np.array([[1.0, 0, 0], [0, 2.0, 0], [0, 0, -1.0]]))
    assert field[20].tolist() == [1.0, 0, 0] and field[26].tolist() == [0, 2.0, 0] and field[50].tolist() == [0, 0, -1.0]
    assert np.abs(field[:20 - PIN_BLEND_FRAMES]).max() == 0.0 and np.abs(field[50 + PIN_BLEND_FRAMES + 1:]).max() == 0.0
    assert np.abs(field[26 + PIN_BLEND_FRAMES + 1:50 - PIN_BLEND_FRAMES]).max() == 0.0
    assert np.abs(np.diff(field, axis=0)).max() < 0.5  # no step
    between = field[21:26]  # close pins: a smoothstep from one offset to the next
    assert np.allclose(between[:, 0] + between[:, 1] / 2.0, 1.0)


def test_pins_blend_over_a_window_and_leave_the_rest(poses):
    goal = reachable_goal(poses[20], 21)
    pins = check_joint_pins(JointPins(["right_wrist"], [20], goal[None]), 40)
    moved, reachable = reach_joint_pins(poses, pins)
    assert reachable.tolist() == [True] and joint_pin_distances(moved, pins)[0] < 1e-6
    outside = np.r_[0:20 - PIN_BLEND_FRAMES, 21 + PIN_BLEND_FRAMES:40]
    assert np.abs(moved[outside] - poses[outside]).max() == 0.0
    step = np.linalg.norm(np.diff(moved[:, 21] - poses[:, 21], axis=0), axis=-1)
    assert step.max() < np.linalg.norm(goal - poses[20, 21]) / 3  # eased in over frames, not a jump
    # axes: a height pin changes the pinned coordinate to the target, whatever x and z do
    pins = check_joint_pins(JointPins(["head"], [20], [[9.0, poses[20, 15, 1] - 0.03, 9.0]], axes="y"), 40)
    moved, _ = reach_joint_pins(poses, pins)
    assert abs(moved[20, 15, 1] - (poses[20, 15, 1] - 0.03)) < 1e-4 and joint_pin_distances(moved, pins)[0] < 1e-4
    assert np.abs(moved[20, 15, [0, 2]] - poses[20, 15, [0, 2]]).max() < 0.05  # not pulled to (9, 9)


def test_steered_features_decode_to_the_target():
    """Known answer: features steered so that a wrist reaches a world target at a frame (the motion
    placed at a start transform) decode there, and a target already met changes nothing."""
    features = utils.joints_to_features(random_motion_joints(41, seed=5))  # (40, 263)
    heading, xz = 0.7, np.array([2.0, -1.0])
    decode = lambda f: utils.features_to_joints(torch.from_numpy(np.asarray(f, np.float64))).numpy()
    world = to_world(decode(features), heading, xz)
    same = check_joint_pins(JointPins(["left_wrist"], [25], world[25, 20][None]), 40)
    assert np.abs(steer_features(features, same, heading, xz) - features).max() < 1e-5
    goal = reachable_goal(world[25], 20)
    pins = check_joint_pins(JointPins(["left_wrist", "pelvis"], [25, 10], [goal, [0, world[10, 0, 1] - 0.04, 0]],
                                      axes=["xyz", "y"]), 40)
    steered = steer_features(features, pins, heading, xz)
    decoded = to_world(decode(steered), heading, xz)
    assert joint_pin_distances(decoded, pins).max() < 1e-4
    assert np.abs(steered[:, :3] - features[:, :3]).max() == 0.0  # root velocities untouched
    assert np.abs(from_world(decoded, heading, xz) - decode(steered)).max() < 1e-9


# ---------------------------------------------------------------------------------------
# API and timelines (tiny random-weight models)
# ---------------------------------------------------------------------------------------
def test_targets_met_raw_and_delivered_reported_rest_kept(random_model):
    options = SamplingOptions(seed=1)
    base = random_model.sample("a person waves", 100, options).motions[0]
    frames = np.array([50, 75])
    targets = np.stack([base.joints[50, 21] + [0.0, 0.15, 0.05], [0.0, base.joints[75, 0, 1] - 0.06, 0.0]])
    pins = JointPins(["right_wrist", "pelvis"], frames, targets, axes=["xyz", "y"])
    motion = random_model.sample("a person waves", 100, options, joint_pins=pins).motions[0]
    errors = motion.control_errors
    assert errors["joint_pin_reachable"] == [True, True]
    assert errors["joint_pin_error_max"] < 0.02  # delivered
    assert errors["raw_joint_pin_error_max"] > errors["joint_pin_error_max"]  # the random network's own does not
    assert errors["pre_ik_joint_pin_error_max"] < 0.05  # the steered sampling nearly does
    assert outside_change(motion.joints, base.joints, frames) < 0.03


def test_targets_in_world_space_with_root_goals(random_model):
    """World space is the one of world pins: frame 0 at a turned, moved start transform."""
    reference = random_model.sample("a person walks forward", 80, SamplingOptions(seed=4)).motions[0]
    world = to_world(reference.joints, 0.9, [2.0, 3.0])
    pins = KeyframePins(world[[0]], np.array([0]), space="world")
    hand = world[40, 20] + np.array([0.05, 0.1, -0.05])
    motion = random_model.sample("a person walks forward", 80, SamplingOptions(seed=5), pins=pins,
                                 joint_pins=JointPins(["left_wrist", "pelvis"], [40, 60],
                                                      [hand, [world[60, 0, 0], 0.0, world[60, 0, 2]]],
                                                      axes=["xyz", "xz"])).motions[0]
    errors = motion.control_errors
    assert errors["pin_root_error_max"] < 0.05 and errors["joint_pin_reachable"][1]
    assert errors["joint_pin_error_max"] < 0.02, errors  # the hand, and the pelvis x/z as a root goal
    assert np.linalg.norm(motion.joints[40, 20] - hand) < 0.02


def test_out_of_reach_target_is_reported_not_raised(random_model):
    pins = JointPins(["right_wrist"], [30], [[10.0, 5.0, 10.0]])
    motion = random_model.sample("a person waves", 60, SamplingOptions(seed=2), joint_pins=pins).motions[0]
    assert motion.control_errors["joint_pin_reachable"] == [False]
    assert motion.control_errors["joint_pin_error_max"] > 5.0 and np.isfinite(motion.joints).all()


def test_ik_runs_before_the_foot_cleanup(random_model):
    base = random_model.sample("a person walks", 80, SamplingOptions(seed=3, cleanup_feet=True)).motions[0]
    pins = JointPins(["left_wrist"], [40], base.joints[40, 20][None] + [[0.0, 0.1, 0.0]])
    motion = random_model.sample("a person walks", 80, SamplingOptions(seed=3, cleanup_feet=True),
                                 joint_pins=pins).motions[0]
    assert motion.contacts is not None and motion.control_errors["joint_pin_error_max"] < 0.02


def test_timeline_targets_across_windows(random_model):
    segments = [("a person walks forward", 6.0), ("a person waves", 6.0)]
    base = generate_timeline(random_model, segments, SamplingOptions(seed=2))
    frames = np.array([40, 150, 220])
    targets = base.joints[frames, [21, 20, 0]] + np.array([[0.0, 0.1, 0.05], [0.05, -0.1, 0.0], [0.0, -0.05, 0.0]])
    pins = JointPins(["right_wrist", "left_wrist", "pelvis"], frames, targets, axes=["xyz", "xyz", "y"])
    result = generate_timeline(random_model, segments, SamplingOptions(seed=2), joint_pins=pins)
    assert len(result.diffusion_windows) >= 2
    errors = result.control_errors
    reachable = np.array(errors["joint_pin_reachable"])
    assert reachable.sum() >= 2
    dist = joint_pin_distances(result.joints, check_joint_pins(pins, len(result.joints)))
    assert dist[reachable].max() < 0.02 and errors["raw_joint_pin_error_max"] > 0.0
    # the pose outside the pins' windows stays (the root of a random network drifts: see the bench)
    pose = lambda j: j - j[:, :1]
    assert outside_change(pose(result.joints), pose(base.joints), frames) < 0.03


# ---------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------
def test_cli_joint_pins_file(tiny_trained, tmp_path):
    (tmp_path / "pins.json").write_text(json.dumps([
        {"joint": "right_wrist", "seconds": 2.0, "position": [0.3, 1.2, 0.3]},
        {"joint": "pelvis", "seconds": 1.0, "position": [0.0, 0.85, 0.0], "axes": "y"}]))
    proc = run_script("generate.py", "--checkpoint_dir", tiny_trained["checkpoint_dir"], "--text_encoder", "minilm",
                      "--num_inbetween_steps", "2", "--prompt", "a person waves", "--length", "60",
                      "--joint_pins", "pins.json", "--format", "npy", "--out", "pinned.npy", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    motion = np.load(tmp_path / "pinned.npz")["motion"]
    assert np.linalg.norm(motion[40, 21] - [0.3, 1.2, 0.3]) < 0.02  # 2.0 s = frame 40
    assert abs(motion[20, 0, 1] - 0.85) < 0.02
    (tmp_path / "bad.json").write_text(json.dumps([{"joint": "right_hand", "seconds": 1.0, "position": [0, 1, 0]}]))
    proc = run_script("generate.py", "--checkpoint_dir", tiny_trained["checkpoint_dir"], "--joint_pins", "bad.json",
                      cwd=str(tmp_path))
    assert proc.returncode == 2 and "unknown joint 'right_hand'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
