"""bench/bench_skating_sources.py and bench/bench_model_speeds.py on the tiny trained model."""
import json
import os
import sys

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import bench_model_speeds  # noqa: E402
import bench_skating_sources  # noqa: E402
from dataset import first_caption_motions  # noqa: E402
from pipeline import Composite  # noqa: E402
from synthetic.speeds import SpeedRange  # noqa: E402
from utils import features_to_joints, fit_bone_lengths, keyframe_indices  # noqa: E402


def tiny_args(tiny_trained, tmp_path) -> list[str]:
    return ["--dataset_root", tiny_trained["data_root"], "--dataset_kind", "humanml3d",
            "--checkpoint_dir", tiny_trained["checkpoint_dir"], "--results_dir", str(tmp_path),
            "--text_encoder", "minilm", "--device", "cpu", "--min_motion_length", "40", "--num_inbetween_steps", "3"]


def test_skating_sources_rows_keep_what_each_part_was_given(tiny_trained, tmp_path):
    parser = bench_skating_sources.make_cli_parser()
    args = parser.parse_args(tiny_args(tiny_trained, tmp_path))
    from config import config_from_args
    cfg = config_from_args(args, parser)
    composite = Composite.from_checkpoints(cfg)
    item = first_caption_motions(cfg.dataset_root, "test", cfg.min_motion_length, cfg.max_generate_length, 1)[0]
    rows = bench_skating_sources.chain_rows(composite, item, seed=0)
    assert list(rows) == list(bench_skating_sources.ROWS)
    truth = fit_bone_lengths(features_to_joints(torch.from_numpy(item["features"]).double()[None]))[0].numpy()
    np.testing.assert_allclose(rows["ground truth"][0], truth, atol=1e-4)  # the take itself
    T = len(item["features"])
    idx = keyframe_indices(T, composite.keyframe_interval)
    for name in ("real keyframes, cubic", "real keyframes -> in-betweener"):
        joints, err = rows[name]
        assert np.isnan(err)  # the take's own keyframes: no keyframe error
        # both pass through the take's keyframe poses (the heading between keyframes is integrated,
        # so compare what does not depend on it: heights and distances from the pelvis)
        rel = lambda j: j[idx, 1:] - j[idx, :1]  # noqa: E731
        np.testing.assert_allclose(joints[idx, :, 1], truth[idx, :, 1], atol=2e-3)
        np.testing.assert_allclose(np.linalg.norm(rel(joints), axis=-1), np.linalg.norm(rel(truth), axis=-1), atol=2e-3)
        assert np.abs(joints - truth).max() > 1e-3  # and differ between them
    vq_err = rows["real keyframes -> VQ, cubic"][1]
    assert vq_err > 0 and vq_err == rows["real keyframes -> VQ -> in-betweener"][1]


def test_skating_sources_main_writes_every_row(tiny_trained, tmp_path, capsys):
    assert bench_skating_sources.main(tiny_args(tiny_trained, tmp_path) + ["--num_prompts", "3"]) == 0
    with open(tmp_path / "bench_skating_sources.json") as fh:
        report = json.load(fh)
    assert report["count"] == 3 and set(report["rows"]) == set(bench_skating_sources.ROWS)
    for row in report["rows"].values():
        assert np.isfinite(row["jerk"]) and row["jerk"] > 0
    assert "GPT keyframes -> in-betweener" in capsys.readouterr().out


def test_model_speed_verdicts_known_answers():
    ref = SpeedRange(0.76, 1.15, 1.42)
    assert bench_model_speeds.verdict("walk", 1.0, ref).startswith("met")
    assert bench_model_speeds.verdict("walk", 0.5, ref).startswith("missed")
    assert bench_model_speeds.verdict("walk", 1.5, ref).startswith("missed")
    runs = SpeedRange(1.5, 2.9, 3.4)
    assert bench_model_speeds.verdict("run", 1.5, runs).startswith("met")
    assert bench_model_speeds.verdict("run", 0.9, runs).startswith("missed")
    assert bench_model_speeds.verdict("run", 2.0, SpeedRange.of([])) == "no reference"


def test_model_speeds_main_measures_each_prompt(tiny_trained, tmp_path):
    argv = tiny_args(tiny_trained, tmp_path) + ["--seeds", "2", "--length", "40", "--reference", str(tmp_path / "none")]
    assert bench_model_speeds.main(argv) == 0
    with open(tmp_path / "bench_model_speeds.json") as fh:
        report = json.load(fh)
    prompts = [p for group in bench_model_speeds.PROMPTS.values() for p in group]
    assert sorted(report["prompts"]) == sorted(prompts)
    for entry in report["prompts"].values():
        assert len(entry["rows"]) == 2 and all(row["speed"] >= 0 for row in entry["rows"])
    assert report["actions"]["walk"]["verdict"] == "no reference"
