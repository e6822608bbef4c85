"""bench/gpu_check.py: its CPU dry run as a real subprocess (every section of the report present,
every number finite), and the pure parts it judges with (the comparison, the failure list)."""
import json
import math
import os
import sys

import pytest
import torch

from conftest import ROOT, run_script

sys.path.insert(0, os.path.join(ROOT, "bench"))
import gpu_check  # noqa: E402

STAGE_ROWS = ("vqvae_encoder_latents", "vqvae_decode", "gpt_logits", "denoiser_residual", "denoiser_x0",
              "features_to_joints")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("gpu_check")
    out = base / "gpu_check.json"
    proc = run_script("bench/gpu_check.py", "--device", "cpu", "--tiny", "--data_dir", base / "data",
                      "--out", out, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    with open(out) as fh:
        return json.load(fh), proc.stdout


def numbers(value, path="report"):
    """Every (path, number) in a JSON value (booleans are not numbers)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, (int, float)):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from numbers(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from numbers(item, f"{path}[{index}]")


def test_dry_run_writes_every_section_with_finite_numbers(dry_run):
    report, stdout = dry_run
    assert set(report) == {"meta", "training", "generation", "momask", "agreement", "failures"}
    assert report["failures"] == []
    bad = [path for path, number in numbers(report) if not math.isfinite(number)]
    assert bad == []
    assert report["meta"]["device"] == "cpu" and report["meta"]["tiny"] is True
    assert set(report["meta"]["section_seconds"]) == {"training", "generation", "momask", "agreement"}
    for stage in ("vqvae", "gpt", "diffusion"):
        row = report["training"][stage]
        assert row["steps"] == report["meta"]["steps"] == 4 and not row["stopped_at_cap"]
        assert row["finite"] and row["step_ms_median"] > 0 and row["params_m"] > 0
        assert [step for step, _ in row["curve"]] == [1, 2, 3, 4]
        losses = [loss for _, loss in row["curve"]]
        assert (row["first_loss"], row["last_loss"], row["min_loss"]) == (losses[0], losses[-1], min(losses))
    for preset in ("default", "humanml3d"):
        for label in ("configured", "bf16_autocast"):
            cell = report["generation"][preset][label]
            assert cell["finite"] and cell["one_ms"] > 0 and cell["batch_ms"] > 0
            assert cell["autocast"] is False  # runtime.autocast_context is CUDA-only
    assert report["generation"]["humanml3d"]["levers"]["gpt_weight_dtype"] == "int8"
    assert report["momask"] == {"status": "skipped", "reason": "no --momask_dir given"}
    assert "failures: none" in stdout and "momask: skipped" in stdout


def test_dry_run_agreement_is_reported_as_cpu_against_cpu(dry_run):
    report, _ = dry_run
    agreement = report["agreement"]
    assert agreement["device"] == "cpu" and "dry run" in agreement["note"]
    for precision in ("fp32", "bf16"):
        rows = agreement[precision]
        for name in STAGE_ROWS:  # the same weights and inputs on the same device: exactly equal
            assert rows[name]["rel"] == 0.0 and rows[name]["max_abs"] == 0.0 and rows[name]["ok"]
            assert rows[name]["reference_rms"] > 0
        assert rows["vqvae_codes_equal_fraction"] == 1.0 and rows["gpt_argmax_equal_fraction"] == 1.0


def test_compare_measures_relative_error_against_tolerance():
    reference = torch.ones(10)
    row = gpu_check.compare(reference, reference * 1.01, tolerance=5e-3)
    assert row["rel"] == pytest.approx(0.01) and row["max_abs"] == pytest.approx(0.01) and not row["ok"]
    assert gpu_check.compare(reference, reference * 1.001, tolerance=5e-3)["ok"]
    with_nan = reference.clone()
    with_nan[3] = float("nan")
    assert not gpu_check.compare(reference, with_nan, tolerance=1.0)["ok"]


def test_failures_name_each_bad_number(dry_run):
    report = json.loads(json.dumps(dry_run[0]))
    report["training"]["gpt"]["finite"] = False
    report["generation"]["humanml3d"]["bf16_autocast"]["finite"] = False
    report["agreement"]["bf16"]["gpt_logits"].update(rel=0.2, ok=False)
    assert gpu_check.failures(report) == ["training gpt: a loss was not finite",
                                          "generation humanml3d bf16_autocast: a motion was not finite",
                                          "agreement bf16 gpt_logits: rel 2.00e-01 > 5e-02"]


def test_caption_hash_encoder_is_a_fixed_unit_vector_per_caption():
    encoder = gpu_check.CaptionHashEncoder()
    a = encoder.encode(["a person walks", "a person runs", "a person walks"])
    assert a.shape == (3, gpu_check.TEXT_DIM)
    assert torch.allclose(a.norm(dim=-1), torch.ones(3))
    assert torch.equal(a[0], a[2]) and not torch.allclose(a[0], a[1])


def test_bad_options_end_with_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        gpu_check.parse_args(["--length", "500"])
    assert exc.value.code == 2
    assert "--length must lie in [20, 196] frames, got 500" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown where no GPU is visible")
def test_no_gpu_says_how_to_dry_run(tmp_path, capsys):
    assert gpu_check.main(["--out", str(tmp_path / "x.json")]) == 2
    assert "no CUDA GPU is visible; for the CPU dry run pass --device cpu --tiny" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
