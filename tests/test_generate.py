"""generate_composite and the generate.py CLI on tiny checkpoints trained by train.py."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

import utils
from config import CompositeConfig
from conftest import run_script
from generate import generate_composite, load_models


@pytest.fixture(scope="module")
def loaded(tiny_trained):
    cfg = CompositeConfig(checkpoint_dir=tiny_trained["checkpoint_dir"], text_encoder="minilm",
                          dataset_root=tiny_trained["data_root"], dataset_kind="humanml3d", num_inbetween_steps=4)
    return cfg, load_models(cfg)


def _generate(loaded, **kw):
    cfg, models = loaded
    return generate_composite(*models, cfg, **kw)


def _root_relative(joints):
    return joints - joints[:, :1]


def test_shapes_and_keyframe_layout(loaded):
    motion, keyframes, keyframe_idx, features = _generate(loaded, prompt="a person walks forward", length=63,
                                                          return_features=True)
    assert motion.shape == (63, 22, 3) and features.shape == (63, 263)
    assert keyframe_idx.tolist() == list(range(0, 63, 5)) + [62]
    assert keyframes.shape == (len(keyframe_idx), 22, 3)
    assert np.isfinite(motion).all()
    # the dense motion passes through the keyframes that the GPT and VQ-VAE wrote
    assert np.abs(_root_relative(motion[keyframe_idx]) - _root_relative(keyframes)).max() <= 1e-4
    # the joints are the features' with the skeleton's bone lengths (fit_bones, the default)
    assert np.abs(utils.fit_bone_lengths(utils.features_to_joints(features)) - motion).max() <= 1e-4
    bones = np.linalg.norm(motion[:, 1:] - motion[:, utils.PARENTS[1:]], axis=-1)  # (T, 21)
    assert bones.std(axis=0).max() < 1e-5


def test_seed_makes_it_deterministic(loaded):
    first = _generate(loaded, prompt="a person jumps", length=50, seed=7)
    again = _generate(loaded, prompt="a person jumps", length=50, seed=7)
    other = _generate(loaded, prompt="a person jumps", length=50, seed=8)
    assert np.array_equal(first[0], again[0])
    assert not np.allclose(first[0], other[0])


def test_batch_equals_singles(loaded):
    prompts, lengths = ["a person walks", "someone waves", "a person runs"], [50, 61, 44]
    batch = _generate(loaded, prompt=prompts, length=lengths, seed=3)
    for row, (prompt, length) in enumerate(zip(prompts, lengths)):
        single = _generate(loaded, prompt=prompt, length=length, seed=3 + row)
        assert batch[0][row].shape == (length, 22, 3)
        assert np.abs(batch[0][row] - single[0]).max() < 1e-4
        assert np.array_equal(batch[2][row], single[2])


def test_pinned_joint_keyframes_are_honoured(loaded):
    reference, _, _ = _generate(loaded, prompt="a person walks", length=60, seed=1)
    pinned_idx = np.array([0, 20, 33])  # on and off the keyframe grid
    pose = reference[[5, 5, 5]] + np.array([0.0, 0.05, 0.0])  # the same pose, raised 5 cm
    motion, keyframes, keyframe_idx = _generate(loaded, prompt="a person walks", length=60, seed=2,
                                                keyframes=pose, keyframe_idx=pinned_idx)
    assert set(pinned_idx.tolist()) <= set(keyframe_idx.tolist())
    for frame, target in zip(pinned_idx, pose):
        got = motion[frame]
        assert abs(got[0, 1] - target[0, 1]) < 1e-4, "root height is pinned"
        # root-relative pose, compared up to the heading about y (the pose fixes no heading)
        rel_got, rel_target = got - got[:1] * [1, 0, 1], target - target[:1] * [1, 0, 1]
        angle = lambda rel: np.arctan2(rel[1, 0] - rel[2, 0], rel[1, 2] - rel[2, 2])
        turn = utils.quat_from_axis_angle(torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64),
                                          torch.tensor(angle(rel_target) - angle(rel_got), dtype=torch.float64))
        rotated = utils.qrot(turn.expand(22, 4), torch.from_numpy(rel_got.astype(np.float64))).numpy()
        assert np.abs(rotated - rel_target).max() < 1e-3


def test_all_keyframes_given_as_features_is_pure_inbetweening(loaded):
    _, _, _, features = _generate(loaded, prompt="a person walks", length=46, seed=4, return_features=True)
    grid = utils.keyframe_indices(46, 5)
    motion, _, keyframe_idx, out_features = _generate(loaded, prompt="someone dances", length=46, seed=9,
                                                      keyframes=features[grid], keyframe_idx=grid,
                                                      return_features=True)
    assert keyframe_idx.tolist() == grid.tolist()
    assert np.abs(out_features[grid] - features[grid]).max() < 1e-4


@pytest.mark.parametrize("kwargs, message", [
    (dict(prompt="   "), "prompt 0 is empty"),
    (dict(prompt=""), "prompt 0 is empty"),
    (dict(length=0), "too short"),
    (dict(length=-5), "too short"),
    (dict(length=4), "must exceed one keyframe interval"),
    (dict(length=197), "above the maximum of 196 frames"),
    (dict(length=60.5), "whole number of frames"),
    (dict(length="60"), "whole number of frames"),
    (dict(keyframes=np.full((1, 22, 3), np.nan), keyframe_idx=[3]), "NaN"),
    (dict(keyframes=np.zeros((2, 21, 3)), keyframe_idx=[3, 7]), "must be (2, 22, 3) joint positions"),
    (dict(keyframes=np.zeros((1, 22, 3)), keyframe_idx=[120]), "must lie in [0, 59]"),
    (dict(keyframes=np.zeros((2, 22, 3)), keyframe_idx=[9, 3]), "sorted"),
    (dict(keyframes=np.zeros((1, 22, 3))), "together"),
])
def test_bad_api_input_is_a_one_line_value_error(loaded, kwargs, message):
    args = dict(prompt="a person walks", length=60)
    args.update(kwargs)
    with pytest.raises(ValueError) as info:
        _generate(loaded, **args)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_unicode_and_overlong_prompts_work(loaded):
    motion, _, _ = _generate(loaded, prompt="une personne marche 🚶 向前走", length=40)
    assert np.isfinite(motion).all()
    with pytest.warns(UserWarning):
        motion, _, _ = _generate(loaded, prompt="walk " * 400, length=40)
    assert motion.shape == (40, 22, 3)


def _cli(tiny_trained, *args, cwd=None):
    return run_script("generate.py", "--checkpoint_dir", tiny_trained["checkpoint_dir"], "--text_encoder", "minilm",
                      "--num_inbetween_steps", "4", *args, cwd=cwd)


def test_cli_writes_npy_then_visualize_renders_it(tiny_trained, tmp_path):
    proc = _cli(tiny_trained, "--length", "40", "--format", "npy", "bvh", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "sample_composite_output.npy"
    assert f"wrote {out.name}" in proc.stdout or str(out) in proc.stdout
    assert np.load(out).shape == (40, 22, 3)
    bundle = np.load(tmp_path / "sample_composite_output.npz")
    assert bundle["keyframe_idx"].tolist() == list(range(0, 40, 5)) + [39]
    assert (tmp_path / "sample_composite_output.bvh").exists()
    vis = run_script("visualize.py", str(tmp_path / "sample_composite_output.npz"))
    assert vis.returncode == 0, vis.stderr[-2000:]
    gif = Image.open(tmp_path / "sample_composite_output.gif")
    assert gif.n_frames == 40


def test_cli_batch_of_prompts_and_samples(tiny_trained, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a person walks\n\nsomeone jumps\n")
    proc = _cli(tiny_trained, "--prompts_file", prompts, "--num_samples", "2", "--seconds", "2.5",
                "--out", tmp_path / "batch.npy")
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = sorted(p.name for p in tmp_path.glob("batch_*.npy"))
    assert files == [f"batch_{i}.npy" for i in range(4)]
    assert np.load(tmp_path / "batch_3.npy").shape == (50, 22, 3)


@pytest.mark.parametrize("args, message", [
    (["--prompt", "  "], "prompt 0 is empty"),
    (["--length", "3"], "must exceed one keyframe interval"),
    (["--length", "1000"], "above the maximum"),
    (["--length", "abc"], "whole number of frames"),
    (["--seconds", "x"], "--seconds must be a number"),
    (["--out", "/nonexistent/folder/x.npy"], "output folder does not exist"),
    (["--prompts_file", "/nonexistent/prompts.txt"], "prompts file not found"),
    (["--format", "png"], "invalid choice"),
    (["--checkpoint_dir", "/nonexistent/ckpt"], "run `python train.py` first"),
    (["--top_p", "2"], "'top_p' must be in (0, 1]"),
])
def test_cli_bad_input_exits_2_with_one_line_and_writes_nothing(tiny_trained, tmp_path, args, message):
    proc = _cli(tiny_trained, *args, cwd=str(tmp_path))
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_generation_refuses_a_corrupt_checkpoint(tiny_trained, tmp_path):
    import shutil
    broken = tmp_path / "ckpt"
    shutil.copytree(tiny_trained["checkpoint_dir"], broken)
    data = (broken / "gpt.pt").read_bytes()
    (broken / "gpt.pt").write_bytes(data[: len(data) // 2])
    proc = run_script("generate.py", "--checkpoint_dir", broken, "--out", tmp_path / "x.npy")
    assert proc.returncode == 2
    assert "cannot load checkpoint" in proc.stderr and "gpt.pt" in proc.stderr
    assert not (tmp_path / "x.npy").exists()


def test_bad_input_leaves_an_existing_output_untouched(tiny_trained, tmp_path):
    out = tmp_path / "keep.npy"
    np.save(out, np.arange(6.0))
    before = out.read_bytes()
    for args in (["--length", "0"], ["--prompt", ""], ["--seconds", "-1"]):
        proc = _cli(tiny_trained, "--out", out, *args)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["keep.npy"]
