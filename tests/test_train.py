"""train.py end to end in real subprocesses: three checkpoints, resume, kill -9, signals,
NaN guard, config mismatch, and safe checkpoint loading."""
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch

from config import CompositeConfig
from conftest import ROOT, run_script, tiny_train_args, write_humanml3d_folder
import runtime
from runtime import CheckpointError, load_checkpoint, save_checkpoint

STAGES = ("vqvae", "gpt", "diffusion")


def test_three_stages_write_loadable_checkpoints(tiny_trained):
    for stage in STAGES:
        cfg = CompositeConfig(checkpoint_dir=tiny_trained["checkpoint_dir"])
        payload = load_checkpoint(runtime.checkpoint_path(cfg, stage), stage=stage)
        assert payload["step"] == 40 and payload["finished"]
        assert payload["text_encoder"] == "minilm-L6-v2" and payload["text_dim"] == 384
        assert payload["mean"].shape == (263,) and payload["std"].shape == (263,)
        assert CompositeConfig.from_dict(payload["config"]).vq_width == 32
    out = tiny_trained["train_stdout"]
    assert "codebook perplexity" in out and "val loss" in out
    assert not [f for f in os.listdir(tiny_trained["checkpoint_dir"]) if f.endswith(".tmp")]


@pytest.fixture
def data_root(tmp_path):
    root = tmp_path / "data"
    write_humanml3d_folder(str(root), num_motions=24, frames=(45, 70))
    return root


def test_resume_continues_each_stage(data_root, tmp_path):
    ckpt = tmp_path / "ckpt"
    first = run_script("train.py", *tiny_train_args(data_root, ckpt, steps=12, ckpt_interval=5), "--text_encoder", "minilm")
    assert first.returncode == 0, first.stderr[-2000:]
    again = run_script("train.py", *tiny_train_args(data_root, ckpt, steps=20, ckpt_interval=5),
                       "--text_encoder", "minilm", "--resume", "--stage", "vqvae")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming from" in again.stdout and "at step 12/20" in again.stdout
    assert load_checkpoint(str(ckpt / "vqvae.pt"))["step"] == 20
    # the GPT was trained on the 12-step VQ-VAE, so generation must refuse the pair
    from generate import load_models
    with pytest.raises(CheckpointError, match="another VQ-VAE"):
        load_models(CompositeConfig(checkpoint_dir=str(ckpt), text_encoder="minilm"))


def _vqvae_weights(path):
    return load_checkpoint(str(path), stage="vqvae")["model"]


def test_kill_9_mid_stage_then_resume_matches_an_uninterrupted_run(data_root, tmp_path):
    """SIGKILL at a random moment leaves a loadable checkpoint; --resume finishes the stage with
    the same data order and RNG state, so the result equals a run that was never stopped."""
    steps = 60
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    common = ["--text_encoder", "minilm", "--stage", "vqvae"]
    reference = run_script("train.py", *tiny_train_args(data_root, reference_dir, steps=steps, ckpt_interval=5), *common)
    assert reference.returncode == 0, reference.stderr[-2000:]

    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "train.py", *tiny_train_args(data_root, killed_dir, steps=steps, ckpt_interval=5),
                             *common], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = killed_dir / "vqvae.pt"
    deadline = time.time() + 120
    while time.time() < deadline:
        if target.exists() and load_checkpoint(str(target))["step"] >= 15:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_step = load_checkpoint(str(target))["step"]
    assert 15 <= killed_step < steps, "the kill must land mid-stage"
    resumed = run_script("train.py", *tiny_train_args(data_root, killed_dir, steps=steps, ckpt_interval=5), *common, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"at step {killed_step}/{steps}" in resumed.stdout
    expected, got = _vqvae_weights(reference_dir / "vqvae.pt"), _vqvae_weights(target)
    for name in expected:
        assert torch.allclose(expected[name].float(), got[name].float(), atol=1e-6), name


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(data_root, tmp_path):
    ckpt = tmp_path / "ckpt"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "train.py", *tiny_train_args(data_root, ckpt, steps=100000, ckpt_interval=50000),
                             "--text_encoder", "minilm", "--stage", "vqvae"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    line = ""
    while time.time() < deadline and "vqvae" not in line:
        line = proc.stderr.readline()  # tqdm's bar appears once the loop runs
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "interrupted by SIGTERM; checkpoint saved" in err and "Traceback" not in err
    assert load_checkpoint(str(ckpt / "vqvae.pt"))["step"] > 0


def test_resume_with_other_model_sizes_names_the_fields(tiny_trained, tmp_path):
    args = tiny_train_args(tiny_trained["data_root"], tiny_trained["checkpoint_dir"], steps=50)
    args[args.index("--vq_width") + 1] = "48"
    proc = run_script("train.py", *args, "--text_encoder", "minilm", "--resume", "--stage", "vqvae")
    assert proc.returncode == 2
    assert "vq_width=32 in checkpoint vs 48 now" in proc.stderr and "Traceback" not in proc.stderr
    assert load_checkpoint(os.path.join(tiny_trained["checkpoint_dir"], "vqvae.pt"))["step"] == 40


def test_nan_losses_stop_training_and_keep_the_last_checkpoint(data_root, tmp_path):
    """A real Trainer on a job whose loss turns NaN after a few steps."""
    import train
    from dataset import MotionDataset
    cfg = CompositeConfig(dataset_root=str(data_root), dataset_kind="humanml3d", checkpoint_dir=str(tmp_path / "ckpt"),
                          batch_size=4, ckpt_interval=2, max_bad_steps=3, text_encoder="minilm", vqvae_steps=50,
                          eval_interval=1000)
    data = train.DataSpec(MotionDataset(cfg, "train"), MotionDataset(cfg, "val"))
    model = torch.nn.Linear(263, 263)
    calls = {"n": 0}

    def loss_fn(module, batch):
        calls["n"] += 1
        loss = (module(batch["motion"]) - batch["motion"]).pow(2).mean()
        return {"loss": loss * (float("nan") if calls["n"] > 4 else 1.0)}

    path = runtime.checkpoint_path(cfg, "vqvae")
    job = train.StageJob("vqvae", model, loss_fn, cfg.vqvae_steps, checkpoint=train.CheckpointPlan(path, model))
    trainer = train.Trainer(cfg, train.DistInfo(), torch.device("cpu"), data)
    with pytest.raises(train.TrainingError, match="NaN/inf for 3 steps in a row"):
        trainer.run(job, resume=False)
    saved = load_checkpoint(path)
    assert saved["step"] == 4 and all(torch.isfinite(v).all() for v in saved["model"].values())


def test_trainer_serves_any_model_without_checkpoints(data_root):
    """The evaluator's use: a plain model and loss, its own learning rate, no checkpoint, no
    validation set; the cosine schedule is the one public function."""
    import train
    from dataset import MotionDataset
    from training import cosine_lr
    cfg = CompositeConfig(dataset_root=str(data_root), dataset_kind="humanml3d", batch_size=4, warmup_steps=0)
    model = torch.nn.Linear(263, 1)
    seen = []

    def loss_fn(module, batch):
        seen.append(batch["motion"].shape[0])
        return {"loss": module(batch["motion"]).pow(2).mean(), "accuracy": torch.tensor(1.0)}

    trainer = train.Trainer(cfg, train.DistInfo(), torch.device("cpu"), train.DataSpec(MotionDataset(cfg, "train")))
    summary = trainer.run(train.StageJob("evaluator", model, loss_fn, total_steps=5, seed=3, lr=1e-3))
    assert summary["steps"] == 5 and seen == [4] * 5 and summary["val_loss"] != summary["val_loss"]  # nan
    assert cosine_lr(1.0, 0, 10) == 1.0 and abs(cosine_lr(1.0, 10, 10) - 0.1) < 1e-12
    assert cosine_lr(1.0, 0, 10, warmup_steps=4) == 0.25


def test_the_diffusion_job_gives_its_joint_space_terms_the_training_statistics(data_root, tmp_path):
    """The joint-space loss terms un-normalise x0 with the training data's own Mean/Std, handed
    over by the training job (the model reads nothing from disk)."""
    import numpy as np
    import train
    from dataset import make_loader
    from training.stages import diffusion_job, stage_data
    cfg = CompositeConfig(dataset_root=str(data_root), dataset_kind="humanml3d", checkpoint_dir=str(tmp_path),
                          batch_size=4, text_encoder="minilm", diff_joint_vel_loss_weight=1.0,
                          diff_foot_loss_weight=1.0, diff_n_layer=1, diff_n_embd=32, diff_n_head=2)
    data, table = stage_data(cfg, train.DistInfo(), torch.device("cpu"))
    job = diffusion_job(cfg, data, table, seed=0)
    diffusion = job.module.diffusion
    assert np.allclose(diffusion.feature_mean.numpy(), data.train.mean)
    assert np.allclose(diffusion.feature_std.numpy(), data.train.std)
    batch = next(iter(make_loader(data.train, cfg, seed=0)))
    batch["text_emb"] = torch.randn(len(batch["captions"]), table.dim)
    out = job.loss_fn(job.module, batch)
    assert torch.isfinite(out["loss"]) and out["foot"] >= 0 and out["joint_vel"] > 0


def test_the_diffusion_stage_batches_by_length_and_the_token_stages_do_not(data_root, tmp_path):
    """Length buckets are a per-stage choice (bucketed VQ-VAE/GPT batches cost FID on the real
    takes, the bucketed in-betweener did not): each job carries its own setting and the trainer's
    batches are the ones a BatchStream with that setting gives."""
    import train
    from training.data import BatchStream
    from training.stages import diffusion_job, stage_data, vqvae_job
    cfg = CompositeConfig(dataset_root=str(data_root), dataset_kind="humanml3d", checkpoint_dir=str(tmp_path),
                          batch_size=4, text_encoder="minilm", diff_n_layer=1, diff_n_embd=32, diff_n_head=2,
                          diff_length_buckets=3, warmup_steps=0)
    data, table = stage_data(cfg, train.DistInfo(), torch.device("cpu"))
    assert vqvae_job(cfg, data, table, seed=0).length_buckets == 0
    job = diffusion_job(cfg, data, table, seed=5)
    assert job.length_buckets == 3
    seen, diffusion_loss = [], job.loss_fn
    job.loss_fn = lambda module, batch: seen.append(batch["sample_keys"]) or diffusion_loss(module, batch)
    job.checkpoint, job.total_steps = None, 3
    train.Trainer(cfg, train.DistInfo(), torch.device("cpu"), data).run(job)
    seen = [keys for keys in seen if keys[0][0] == "train"]  # not the validation pass's batches
    expected = BatchStream(data.train, cfg.batch_size, train.DistInfo(), seed=5, length_buckets=3)
    unbucketed = BatchStream(data.train, cfg.batch_size, train.DistInfo(), seed=5)
    assert seen == [expected.next()["sample_keys"] for _ in range(3)]
    assert seen != [unbucketed.next()["sample_keys"] for _ in range(3)]


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch " + _RunsCode.marker,))


def test_unsafe_or_broken_checkpoints_are_refused(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint(str(good), {"model": {"w": torch.ones(2)}, "config": {}, "step": 1, "stage": "vqvae"})
    assert load_checkpoint(str(good))["step"] == 1
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(4096))
    foreign = tmp_path / "foreign.pt"
    torch.save({"state": torch.zeros(3)}, foreign)
    _RunsCode.marker = str(tmp_path / "pwned")
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as fh:
        pickle.dump({"model": _RunsCode(), "config": {}, "step": 0, "stage": "vqvae"}, fh)
    torch_evil = tmp_path / "torch_evil.pt"
    torch.save({"model": _RunsCode(), "config": {}, "step": 0, "stage": "vqvae"}, torch_evil)
    for path in (truncated, garbage, foreign, evil, torch_evil, tmp_path / "missing.pt"):
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(str(path))
        message = str(info.value)
        assert str(path) in message and "\n" not in message
    assert not os.path.exists(_RunsCode.marker), "loading a checkpoint must never run its code"


def test_bad_train_inputs_exit_2_with_one_line(tmp_path):
    cases = [
        (["--dataset_kind", "humanml3d", "--dataset_root", str(tmp_path / "nowhere")], "data set folder not found"),
        (["--batch_size", "0"], "'batch_size' must be > 0"),
        (["--stage", "everything"], "invalid choice"),
        (["--learning_rate", "1"], "--learning_rate"),
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    cases.append((["--dataset_kind", "humanml3d", "--dataset_root", str(empty)], "data set folder is empty"))
    for args, expected in cases:
        proc = run_script("train.py", *args, "--checkpoint_dir", str(tmp_path / "ckpt"))
        assert proc.returncode == 2, (args, proc.stderr[-500:])
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (args, proc.stderr)
        assert not (tmp_path / "ckpt").exists()
