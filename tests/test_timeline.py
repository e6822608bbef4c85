"""Timelines (several prompts in a row, any length) and control of where the body goes."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

import metrics
import utils
from config import CompositeConfig
from conftest import run_script
from control import (RootControl, RootTargets, control_errors, correct_root, integrate_root, root_velocities,
                     to_world)
from pipeline import Composite, KeyframePins, SamplingOptions
from text_encoder import load_text_encoder
from timeline import check_segments, generate_timeline, parse_timeline, window_plan

SIZES = dict(vq_width=32, vq_code_dim=16, vq_codebook_size=32, vq_depth=1, gpt_n_embd=32, gpt_n_layer=1,
             gpt_n_head=2, diff_n_embd=32, diff_n_layer=1, diff_n_head=2, diff_timesteps=100,
             num_inbetween_steps=4, text_encoder="minilm")
TWO = [("a person walks forward", 4.0), ("a person waves with the right hand", 3.0)]


def build(out_weight_std: float, **fields) -> Composite:
    """Random tiny models with data-like statistics; out_weight_std 0 leaves the in-betweener
    fresh (it predicts the keyframes' interpolation exactly)."""
    cfg = CompositeConfig(**SIZES, **fields)
    torch.manual_seed(0)
    rest = utils.forward_kinematics(np.tile([1.0, 0.0, 0.0, 0.0], (1, 22, 1)), np.array([[0.0, 0.95, 0.0]]))
    mean = np.zeros(utils.FEATURE_DIM, np.float32)
    mean[2] = 0.05  # walking forward at ~1 m/s
    mean[3:67] = utils.pose_features(torch.from_numpy(rest))[0].numpy()  # standing at rest
    std = np.full(utils.FEATURE_DIM, 0.05, np.float32)
    composite = Composite.build(cfg, load_text_encoder(cfg), mean, std, torch.device("cpu"))
    if out_weight_std:
        torch.nn.init.normal_(composite.denoiser.out_proj.weight, std=out_weight_std,
                              generator=torch.Generator().manual_seed(0))
    return composite


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: one thread is faster than two contending with other processes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def fresh():
    """A fresh in-betweener over the linear interpolation, which depends on the two keyframes
    around a frame only, so windows can reproduce it exactly (the cubic one's tangents at a
    window's ends see one side: 1e-3 of a std from the one-pass curve here)."""
    return build(0.0, diff_keyframe_interp="linear")


@pytest.fixture(scope="module")
def random_model():
    return build(0.05)


@pytest.fixture(scope="module")
def trained(tiny_trained):
    cfg = CompositeConfig(checkpoint_dir=tiny_trained["checkpoint_dir"], text_encoder="minilm",
                          dataset_root=tiny_trained["data_root"], dataset_kind="humanml3d", num_inbetween_steps=4)
    return Composite.from_checkpoints(cfg)


# ---------------------------------------------------------------------------------------
# Timelines
# ---------------------------------------------------------------------------------------
def test_timeline_result_shapes_and_boundaries(random_model):
    result = generate_timeline(random_model, TWO, SamplingOptions(seed=3))
    assert result.joints.shape == (140, 22, 3) and result.features.shape == (140, 263)
    assert np.isfinite(result.joints).all()
    assert result.segment_bounds.tolist() == [[0, 80], [80, 140]]
    assert result.segment_texts == [text for text, _ in TWO]
    captions = result.frame_captions()
    assert len(captions) == 140 and captions[79] == TWO[0][0] and captions[80] == TWO[1][0]
    assert result.segment_at(79) == 0 and result.segment_at(80) == 1 and result.segment_at(139) == 1
    assert parse_timeline(result.prompt) == TWO
    assert result.keyframe_idx.tolist() == utils.keyframe_indices(140, 5).tolist()
    assert result.keyframes.shape == (len(result.keyframe_idx), 22, 3)
    # the second segment's GPT window starts with the first segment's last keyframes
    assert result.gpt_windows[0][0] == 0 and result.gpt_windows[1][0] < 80 < result.gpt_windows[1][1]
    # the root is the integral of the features from frame 0: one continuous root
    assert np.abs(utils.features_to_joints(result.features)[:, 0] - result.joints[:, 0]).max() < 1e-4
    again = generate_timeline(random_model, TWO, SamplingOptions(seed=3))
    assert np.array_equal(again.joints, result.joints)


def test_windows_reproduce_one_pass_inbetweening(fresh):
    """With a fresh in-betweener (it returns the keyframes' interpolation) the overlapping windows
    (pinned overlap, cross-fade) must give exactly the one-pass interpolation of the whole timeline."""
    segments = [("a person walks forward", 12.0), ("a person waves", 9.0), ("a person sits down", 9.0)]
    windowed = generate_timeline(fresh, segments, SamplingOptions(seed=1))
    assert len(windowed.diffusion_windows) >= 4
    assert all(end - start <= 196 for start, end in windowed.diffusion_windows)
    one_pass = generate_timeline(fresh, segments, SamplingOptions(seed=1, mode="interpolate"))
    assert np.abs(windowed.features - one_pass.features).max() < 1e-5


def test_no_pop_at_seams(random_model):
    """At window joins and segment seams no joint steps further beyond the root's pace than the
    same model's one-window motions ever do at that root speed (metrics.seam_displacement_ratio),
    and the measure fails the same timeline with a 10 cm teleport planted at a seam."""
    segments = [("a person walks forward", 6.0), ("a person waves", 5.0), ("a person jumps", 6.0)]
    result = generate_timeline(random_model, segments, SamplingOptions(seed=2))
    # the reference: the same model's motions of one diffusion window each (196 frames), no seams
    plain = random_model.sample([text for text, _ in segments] * 3, [196] * 9, SamplingOptions(seed=5))
    reference = metrics.seam_reference([m.joints for m in plain.motions], result.fps)
    spans = [(s.start, metrics.SEAM_REACH) for s in result.segments[1:]]
    spans += [((start + prev_end) // 2, (prev_end - start) // 2 + metrics.SEAM_REACH)  # the whole overlap
              for (_, prev_end), (start, _) in zip(result.diffusion_windows[:-1], result.diffusion_windows[1:])]
    assert len(spans) >= 3
    ratios = [metrics.seam_displacement_ratio(result.joints, frame, reference, reach) for frame, reach in spans]
    assert max(ratios) <= 1.0, ratios
    step = np.linalg.norm(np.diff(result.joints[:, 0], axis=0), axis=-1)  # (T-1,) metres per frame
    assert step.max() < 0.2  # no teleport anywhere (~4 m/s)
    popped = result.joints.copy()
    popped[spans[0][0]:] += np.array([0.1, 0.0, 0.0])
    assert metrics.seam_displacement_ratio(popped, spans[0][0], reference, spans[0][1]) > 1.0


def test_local_pins_in_a_long_timeline_fix_the_pose(random_model):
    pose = random_model.sample("a person walks forward", 60, SamplingOptions(seed=1)).motions[0].joints[[20, 40]]
    frames = np.array([173, 402])  # inside window overlaps of a 30 s timeline
    result = generate_timeline(random_model, [("a person walks forward", 30.0)], SamplingOptions(seed=2),
                               pins=KeyframePins(pose, frames))
    assert len(result.diffusion_windows) == 4 and set(frames) <= set(result.keyframe_idx.tolist())
    relative = lambda joints: joints[:, 1:] - joints[:, :1]  # noqa: E731
    placed = result.joints[frames]
    facing_fixed = [utils.pose_features(torch.from_numpy(j.astype(np.float64))).numpy() for j in (placed, pose)]
    assert np.abs(facing_fixed[0] - facing_fixed[1]).max() < 1e-3  # same pose in its own facing frame
    assert np.abs(np.linalg.norm(relative(placed), axis=-1) - np.linalg.norm(relative(pose), axis=-1)).max() < 1e-3


def test_window_plan_covers_and_overlaps():
    for length in (150, 197, 300, 1200, 1201):
        plan = window_plan(length, 196, 40, 5)
        assert plan[0][0] == 0 and plan[-1][1] == length
        assert all(e - s <= 196 for s, e in plan)
        assert all(s2 < e1 - 39 for (_, e1), (s2, _) in zip(plan[:-1], plan[1:]))  # >= 40 frames shared
    assert len(window_plan(1200, 196, 40, 5)) == 8  # linear in the length


def test_sixty_second_timeline_with_a_trained_tiny_model(trained):
    segments = [("a person walks forward", 25.0), ("a person moves number 3", 20.0), ("someone does motion 5", 15.0)]
    result = generate_timeline(trained, segments, SamplingOptions(seed=0))
    assert result.joints.shape == (1200, 22, 3) and np.isfinite(result.joints).all()
    assert result.segment_bounds.tolist() == [[0, 500], [500, 900], [900, 1200]]
    assert all(e - s <= 196 for s, e in result.diffusion_windows + result.gpt_windows)
    assert result.diffusion_windows[-1][1] == 1200
    assert np.linalg.norm(np.diff(result.joints[:, 0], axis=0), axis=-1).max() < 0.5
    assert set(result.timings) >= {"gpt", "diffusion", "vq_decode"}


# ---------------------------------------------------------------------------------------
# Control
# ---------------------------------------------------------------------------------------
def test_root_integration_matches_features_and_inverts():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 263)) * 0.05
    heading, xz = integrate_root(features)
    quat, pos = utils.recover_root_rot_pos(torch.from_numpy(features))
    assert np.abs(xz[:60] - pos[:, [0, 2]].numpy()).max() < 1e-9
    assert np.allclose(np.cos(heading[:60]), np.abs(quat[:, 0].numpy()), atol=1e-9)
    assert np.abs(root_velocities(heading, xz) - features[:, :3]).max() < 1e-12
    goals = RootTargets(np.array([20, 59]), np.array([[1.0, 2.0], [-1.0, 0.5]]), np.array([40]), np.array([0.6]))
    fixed = correct_root(features, goals, free_from=10)
    heading2, xz2 = integrate_root(fixed)
    assert np.abs(xz2[[20, 59]] - goals.pos_xz).max() < 1e-9 and abs(heading2[40] - 0.6) < 1e-9
    assert np.abs(fixed[:10, :3] - features[:10, :3]).max() < 1e-12  # rows before free_from kept
    assert np.array_equal(fixed[:, 3:], features[:, 3:])


def test_control_errors_measure_root_distance():
    joints = utils.features_to_joints(np.random.default_rng(1).normal(size=(50, 263)) * 0.05)
    pins = KeyframePins(joints[[10, 30]], np.array([10, 30]), space="world")
    control = RootControl.build(50, pins, trajectory=np.c_[np.arange(50), joints[:, 0, 0], joints[:, 0, 2]])
    shifted = joints.copy()
    shifted[..., 0] += 0.03
    errors = control_errors(shifted, control)
    assert abs(errors["pin_root_error_max"] - 0.03) < 1e-6 and errors["pin_facing_error_max"] < 1e-3
    assert abs(errors["trajectory_error_mean"] - 0.03) < 1e-6  # the path's rows at pinned frames are the pins'


def test_control_errors_report_raw_correction_and_delivered_apart():
    """Known answer: the raw motion stands 0.5 m beside the goals and the delivered one on them."""
    joints = utils.features_to_joints(np.random.default_rng(2).normal(size=(60, 263)) * 0.05)
    control = RootControl.build(60, KeyframePins(joints[[20, 59]], np.array([20, 59]), space="world"),
                                trajectory=np.c_[np.arange(60), joints[:, 0, 0], joints[:, 0, 2]])
    raw = joints.copy()
    raw[..., 0] += 0.5
    errors = control_errors(joints, control, raw_joints=raw)
    assert errors["pin_root_error_max"] < 1e-6 and errors["trajectory_error_max"] < 1e-6  # delivered
    assert abs(errors["raw_pin_root_error_max"] - 0.5) < 1e-6 and abs(errors["raw_trajectory_error_mean"] - 0.5) < 1e-6
    assert abs(errors["correction_max"] - 0.5) < 1e-6 and abs(errors["correction_mean"] - 0.5) < 1e-6
    assert "raw_pin_root_error_max" not in control_errors(joints, control)  # no raw motion given


def test_raw_control_error_sees_an_in_betweener_that_ignores_the_goals():
    """A denoiser with garbage weights still delivers the goals (the final root rewrite meets them
    whatever the network did), but its raw error and the correction say it did not earn them."""
    garbage = build(1.0)
    frames = np.array([0, 60, 99])
    poses = garbage.sample("a person stands", 100, SamplingOptions(seed=1)).motions[0].joints[frames]
    poses[1:, :, 0] += np.array([1.5, 3.0])[:, None]  # sideways, away from wherever the body goes
    pins = KeyframePins(poses, frames, space="world")
    errors = garbage.sample("a person stands", 100, SamplingOptions(seed=2), pins=pins).motions[0].control_errors
    assert errors["pin_root_error_max"] < 0.05, errors
    assert errors["raw_pin_root_error_max"] > 0.25 and errors["correction_max"] > 0.25, errors
    # a fresh in-betweener returns the keyframes' interpolation, and the GPT's keyframes were
    # steered onto the goals: its raw root nearly meets them, and little is left to correct
    exact = build(0.0).sample("a person stands", 100, SamplingOptions(seed=2), pins=pins).motions[0].control_errors
    assert exact["raw_pin_root_error_max"] < 0.05 and exact["correction_max"] < 0.05, exact
    result = generate_timeline(garbage, [("a person stands", 5.0)], SamplingOptions(seed=2),
                               pins=pins)
    assert result.control_errors["pin_root_error_max"] < 0.05
    assert result.control_errors["raw_pin_root_error_max"] > 0.25 and result.control_errors["correction_max"] > 0.25


def test_world_pins_are_reached_within_5cm(random_model):
    reference = random_model.sample("a person walks forward", 100, SamplingOptions(seed=1)).motions[0]
    world = to_world(reference.joints, 0.8, [3.0, -2.0])  # turned and moved away from the origin
    frames = np.array([0, 45, 99])
    pins = KeyframePins(world[frames], frames, space="world")
    motion = random_model.sample("a person waves", 100, SamplingOptions(seed=7), pins=pins).motions[0]
    assert motion.control_errors["pin_root_error_max"] < 0.05
    # the correction is the distance between the raw and the delivered root, frame by frame
    assert motion.control_errors["correction_max"] >= motion.control_errors["correction_mean"] >= 0.0
    assert motion.control_errors["raw_pin_root_error_max"] <= motion.control_errors["correction_max"] + 0.05
    assert motion.control_errors["pin_facing_error_max"] < 2.0
    assert np.abs(motion.joints[frames] - world[frames]).max() < 0.01  # the whole pose stands there
    # over a timeline whose pins fall into different diffusion windows
    frames = np.array([30, 250, 420])
    goals = to_world(reference.joints[[10, 50, 90]], 0.0, [0.0, 0.0])
    goals[:, :, 0] += np.array([0.5, 4.0, -3.0])[:, None]
    goals[:, :, 2] += np.array([1.0, 6.0, 9.0])[:, None]
    result = generate_timeline(random_model, [("a person walks forward", 12.0), ("a person walks left", 10.0)],
                               SamplingOptions(seed=4), pins=KeyframePins(goals, frames, space="world"))
    assert len(result.diffusion_windows) >= 3
    assert result.control_errors["pin_root_error_max"] < 0.05
    assert np.linalg.norm(np.diff(result.joints[:, 0], axis=0), axis=-1).max() < 0.3


def test_trajectory_is_followed_within_10cm(random_model):
    t = np.arange(120)
    circle = 1.5 * np.stack([1 - np.cos(t / 40.0), np.sin(t / 40.0)], axis=-1)  # (T, 2) xz per frame
    motion = random_model.sample("a person walks in a circle", 120, SamplingOptions(seed=5),
                                 trajectory=circle).motions[0]
    assert motion.control_errors["trajectory_error_mean"] < 0.10
    # the body turns along the path: at the end it faces about where the path goes
    end_dir = circle[-1] - circle[-6]
    facing = utils.facing_direction(torch.from_numpy(motion.joints[-1:].astype(np.float64)), hips_swapped=True)[0].numpy()
    own = np.degrees(np.arctan2(facing[0], facing[2]) - np.arctan2(end_dir[0], end_dir[1]))
    assert abs((own + 180) % 360 - 180) < 60
    # sparse rows (frame, x, z) over a timeline
    rows = np.array([[0, 0.0, 0.0], [100, 1.0, 3.0], [200, 4.0, 4.0], [299, 6.0, 1.0]])
    result = generate_timeline(random_model, [("a person walks", 8.0), ("a person runs", 7.0)],
                               SamplingOptions(seed=6), trajectory=rows)
    assert result.control_errors["trajectory_error_mean"] < 0.10
    assert np.abs(result.joints[rows[:, 0].astype(int), 0][:, [0, 2]] - rows[:, 1:]).max() < 0.05


# ---------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ("", "the timeline is empty"),
    ("a person walks forward", "has no duration"),
    ("a person walks:four", "is not a number of seconds"),
    (":3", "has no text"),
    ("a person walks:4; ; :2", "has no text"),
    ("a person walks:0.1", "needs more than 0.25 s"),
    ("a person walks:-2", "needs more than"),
    ("a person walks:nan", "seconds must be a finite number"),
    ("a person walks:700", "the longest accepted is 600 s"),
])
def test_bad_timeline_strings_are_one_line_errors(text, message):
    with pytest.raises(ValueError, match=message) as info:
        check_segments(text, 20, 5)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kwargs, message", [
    (dict(segments=[]), "non-empty list"),
    (dict(segments=[("walk", 2.0, 1)]), "must be a \\(text, seconds\\) pair"),
    (dict(segments=[(3, 2.0)]), "has no text"),
    (dict(trajectory=np.zeros((50, 2))), "one row per frame"),
    (dict(trajectory=np.array([[5.5, 0, 0]])), "whole frame numbers"),
    (dict(trajectory=np.array([[9, 0, 0], [3, 1, 1]])), "sorted"),
    (dict(trajectory=np.array([[400, 0, 0]])), "must lie in"),
    (dict(pins=KeyframePins(np.zeros((1, 263)), np.array([3]), space="world")), "world-space pins must be joints"),
    (dict(pins=KeyframePins(np.zeros((1, 22, 3)), np.array([3]), space="sky")), "pins.space"),
    (dict(window=500), "window must be"),
    (dict(overlap=150), "overlap must be"),
])
def test_bad_timeline_arguments_are_one_line_errors(fresh, kwargs, message):
    kwargs = dict(dict(segments=TWO), **kwargs)
    with pytest.raises(ValueError, match=message) as info:
        generate_timeline(fresh, **kwargs)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------
def _cli(tiny_trained, *args, cwd):
    return run_script("generate.py", "--checkpoint_dir", tiny_trained["checkpoint_dir"], "--text_encoder", "minilm",
                      "--num_inbetween_steps", "2", *args, cwd=cwd)


def test_cli_timeline_writes_the_outputs(tiny_trained, tmp_path):
    path = np.stack([np.zeros(70), np.linspace(0, 2, 70)], axis=-1)
    np.save(tmp_path / "path.npy", path)
    proc = _cli(tiny_trained, "--timeline", "a person walks forward:2; a person waves with the right hand:1.5",
                "--trajectory", "path.npy", "--format", "npy", "bvh", "gif", "filmstrip", "--out", "tl.npy",
                cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("tl.npy", "tl.npz", "tl.bvh", "tl.gif", "tl_filmstrip.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    bundle = np.load(tmp_path / "tl.npz")
    assert bundle["motion"].shape == (70, 22, 3)
    assert bundle["segment_texts"].tolist() == ["a person walks forward", "a person waves with the right hand"]
    assert bundle["segment_start"].tolist() == [0, 40] and bundle["segment_end"].tolist() == [40, 70]
    assert np.abs(bundle["motion"][:, 0][:, [0, 2]] - path).mean() < 0.10
    with Image.open(tmp_path / "tl.gif") as gif:
        assert gif.n_frames == 70
    from visualize import load_motion, segment_captions
    captions = load_motion(str(tmp_path / "tl.npz")).captions  # `python visualize.py tl.npz` draws them
    assert captions[39] == "[1/2] a person walks forward" and captions[40] == "[2/2] a person waves with the right hand"
    with pytest.raises(ValueError, match="segments must tile"):
        segment_captions(["a", "b"], [0, 50], [40, 70], 70)


@pytest.mark.parametrize("args, message", [
    (["--timeline", "a person walks"], "has no duration"),
    (["--timeline", "a person walks:2", "--prompt", "x"], "drop --prompt"),
    (["--timeline", "a person walks:2", "--trajectory", "missing.npy"], "trajectory file not found"),
    (["--timeline", "a person walks:2; a person waves:0.1"], "needs more than 0.25 s"),
])
def test_cli_bad_timeline_exits_2_with_one_line(tmp_path, monkeypatch, capsys, args, message):
    import generate
    monkeypatch.chdir(tmp_path)
    assert generate.main(["--checkpoint_dir", str(tmp_path / "none"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not os.listdir(tmp_path)
