"""bench/bench_scaling.py: the budget arithmetic, and a real tiny run through train.py and
evaluate.py subprocesses into the table and plot."""
import json
import math
import os
import sys

from conftest import TINY_MODEL_ARGS, run_script, write_humanml3d_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import bench_scaling  # noqa: E402
from config import CompositeConfig  # noqa: E402


def test_the_budget_scales_every_stage_by_one_factor():
    cfg = CompositeConfig(vqvae_steps=1200, gpt_steps=1500, diffusion_steps=1200)
    step_seconds = {"vqvae_steps": 0.1, "gpt_steps": 0.2, "diffusion_steps": 0.5}  # 2 + 5 + 10 = 17 min
    half = bench_scaling.budget_config(cfg, 8.5, step_seconds)
    assert (half.vqvae_steps, half.gpt_steps, half.diffusion_steps) == (600, 750, 600)
    assert bench_scaling.budget_config(cfg, 34.0, step_seconds).gpt_steps == 3000


def test_the_step_times_come_from_timing_each_stage(tmp_path):
    write_humanml3d_folder(str(tmp_path / "data"), num_motions=20, frames=(45, 80))
    cfg = CompositeConfig(dataset_root=str(tmp_path / "data"), dataset_kind="humanml3d", results_dir=str(tmp_path),
                          vq_width=32, vq_code_dim=16, vq_codebook_size=32, vq_depth=1, gpt_n_embd=32, gpt_n_layer=1,
                          gpt_n_head=2, diff_n_embd=32, diff_n_layer=1, diff_n_head=2, batch_size=4)
    seconds = bench_scaling.measured_step_seconds(cfg, steps=1)
    assert set(seconds) == set(bench_scaling.STEP_FIELDS) and all(0 < s < 60 for s in seconds.values())
    assert (tmp_path / "bench_train.json").exists() and (tmp_path / "scaling_probe.json").exists()


def test_the_size_presets_grow_and_only_sizes_differ():
    params = {size: bench_scaling.sampling_parameters(CompositeConfig().replace(**sizes))["total"]
              for size, sizes in bench_scaling.SIZES.items()}
    assert params["default"] < params["medium"] < params["humanml3d"]
    assert 8e6 < params["medium"] < 12e6 and 30e6 < params["humanml3d"] < 45e6  # the presets' stated sizes
    assert CompositeConfig.medium().gpt_steps == CompositeConfig().gpt_steps


def test_a_tiny_run_lands_in_the_table_and_the_plot(tmp_path):
    data_root, results = tmp_path / "data", tmp_path / "results"
    write_humanml3d_folder(str(data_root), num_motions=30, frames=(45, 80))
    run_dir = tmp_path / "run"
    common = ["--dataset_root", data_root, "--dataset_kind", "humanml3d", "--results_dir", results,
              "--text_encoder", "minilm", "--device", "cpu", *TINY_MODEL_ARGS, "--evaluator_steps", "20",
              "--classifier_steps", "10", "--evaluator_hidden", "16", "--evaluator_dim", "16",
              "--eval_repeats", "1", "--eval_num_samples", "16", "--eval_mm_num_prompts", "2",
              "--eval_mm_repeats", "2"]
    proc = run_script("bench/bench_scaling.py", "--name", "tiny", "--checkpoint_dir", run_dir,
                      "--vqvae_steps", "6", "--gpt_steps", "6", "--diffusion_steps", "6", *common, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = json.loads((results / "scaling.json").read_text())["runs"]
    assert [run["name"] for run in table] == ["tiny"]
    run = table[0]
    tiny = CompositeConfig.from_dict(json.loads((run_dir / "scaling_run.json").read_text()))
    assert run["parameters"] == bench_scaling.sampling_parameters(tiny) and tiny.vq_width == 32
    assert run["steps"] == {"vqvae_steps": 6, "gpt_steps": 6, "diffusion_steps": 6} and run["train_min"] > 0
    assert math.isfinite(run["metrics"]["fid"]["mean"]) and run["metrics"]["content_accuracy"] is None
    assert "| tiny | " in proc.stdout and (results / "scaling.png").stat().st_size > 10_000

    proc = run_script("bench/bench_scaling.py", "--register", run_dir, "--train_min", "2.5", "--name", "again",
                      "--results_dir", results)
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = json.loads((results / "scaling.json").read_text())["runs"]
    assert [run["name"] for run in table] == ["tiny", "again"] and table[1]["train_min"] == 2.5
    assert table[1]["metrics"] == table[0]["metrics"] and table[1]["parameters"] == table[0]["parameters"]
    proc = run_script("bench/bench_scaling.py", "--plot_only", "--results_dir", tmp_path / "empty")
    assert proc.returncode == 2 and "no runs recorded" in proc.stderr
