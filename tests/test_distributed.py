"""Real torch.distributed on CPU (gloo): two processes train exactly what one process trains,
and every per-step decision (skip, stop, raise) is taken by both ranks together."""
import faulthandler
import json
import os
import signal
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp

from config import CompositeConfig
from conftest import ROOT, run_script, tiny_train_args, write_humanml3d_folder
from runtime import checkpoint_path, init_distributed, load_checkpoint, native_thread_names, shutdown_distributed

STAGES = ("vqvae", "gpt", "diffusion")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_of_half_batches_train_the_same_three_models_as_one_process(tmp_path):
    """One process with batch 8 and two gloo processes with batch 4 each (dropout 0; the data
    order, crops and the losses' random draws are keyed by sample, not by rank) give the same
    weights and codebooks after a few steps of each stage, on motions of different lengths."""
    data_root = tmp_path / "data"
    write_humanml3d_folder(str(data_root), num_motions=24, frames=(45, 70))
    args = [*tiny_train_args(data_root, tmp_path / "unused", steps=5, ckpt_interval=3), "--text_encoder", "minilm",
            "--gpt_dropout", "0", "--diff_dropout", "0", "--batch_size", "8"]
    one = run_script("train.py", *args, "--checkpoint_dir", tmp_path / "one")
    assert one.returncode == 0, one.stderr[-3000:]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
           f"--master_port={_free_port()}", "train.py", *map(str, args), "--checkpoint_dir", str(tmp_path / "two")]
    two = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                         timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "2 processes" in two.stdout and two.stdout.count("[vqvae] 5 steps") == 1, "only rank 0 logs"
    assert sorted(os.listdir(tmp_path / "two")) == ["diffusion.pt", "gpt.pt", "vqvae.pt"], "rank 0 writes, no temp file"
    for stage in STAGES:
        assert f"[{stage}] weights identical on all 2 ranks" in two.stdout
        single = load_checkpoint(checkpoint_path(CompositeConfig(checkpoint_dir=str(tmp_path / "one")), stage), stage)
        double = load_checkpoint(checkpoint_path(CompositeConfig(checkpoint_dir=str(tmp_path / "two")), stage), stage)
        assert single["step"] == double["step"] == 5
        assert double["rng_cpu"].shape[0] == 2, "each rank's own RNG state is saved"
        assert not torch.equal(double["rng_cpu"][0], double["rng_cpu"][1]), "ranks draw their own randomness"
        assert single["model"].keys() == double["model"].keys()
        for name, value in single["model"].items():
            assert torch.allclose(value.float(), double["model"][name].float(), atol=2e-5, rtol=1e-4), (stage, name)
        for key in ("train_loss", "val_loss"):  # logged losses are the mean over ranks
            assert abs(single[key] - double[key]) < 1e-5, (stage, key)
    codebook = load_checkpoint(str(tmp_path / "two" / "vqvae.pt"))["model"]
    assert bool(codebook["quantizer.initialised"]) and codebook["quantizer.ema_count"].sum() > 0


# ---- per-step agreement, with a toy job on the public Trainer API -------------------------
class _Points(torch.utils.data.Dataset):
    def __len__(self):
        return 32

    def __getitem__(self, index):
        x = torch.linspace(-1, 1, 4) * (index + 1) / 32
        return {"x": x, "y": x.sum(0, keepdim=True)}


def _collate(items):
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


def _scenario(cfg, info, name, misbehave, resume=False):
    """Train a linear model for 6 steps; rank 1 calls misbehave(step_call) in its loss."""
    from training import CheckpointPlan, DataSpec, StageJob, Trainer
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    calls = {"n": 0}

    def loss_fn(module, batch):
        calls["n"] += 1
        loss = (module(batch["x"]) - batch["y"]).pow(2).mean()
        if info.rank == 1:
            loss = loss * misbehave(calls["n"])
        return {"loss": loss, "weight": batch["x"].shape[0]}

    plan = CheckpointPlan(checkpoint_path(cfg, name), model)
    trainer = Trainer(cfg, info, torch.device("cpu"), DataSpec(_Points(), collate=_collate))
    job = StageJob(name, model, loss_fn, total_steps=6, seed=1, checkpoint=plan)
    try:
        summary = trainer.run(job, resume=resume)
        return {"outcome": "finished", "steps": summary["steps"], "calls": calls["n"], "weight": model.weight.tolist()}
    except Exception as exc:  # noqa: BLE001 - the outcome is what the test compares
        return {"outcome": type(exc).__name__, "message": str(exc)}


def _nan_once(call):
    return float("nan") if call == 2 else 1.0


def _nan_always(call):
    return float("nan") if call >= 2 else 1.0


def _raises(call):
    if call == 2:
        raise ValueError("rank 1 broke")
    return 1.0


def _signals(call):
    if call == 3:
        os.kill(os.getpid(), signal.SIGTERM)
    return 1.0


def _worker(rank, port, folder):
    faulthandler.enable()  # a crash in a worker prints its stack
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    info = init_distributed("cpu")  # what train.py does under torchrun
    # each rank its own checkpoint folder: nothing is shared but what rank 0 sends
    cfg = CompositeConfig(checkpoint_dir=os.path.join(folder, f"rank{rank}"), batch_size=8, lr=0.05,
                          warmup_steps=1, max_bad_steps=3, val_batches=0, eval_interval=1000, ckpt_interval=1000)
    results = {"nan_once": _scenario(cfg, info, "nan_once", _nan_once),
               "nan_always": _scenario(cfg, info, "nan_always", _nan_always),
               "raises": _scenario(cfg, info, "raises", _raises),
               "signal": _scenario(cfg, info, "signal", _signals),
               "resume": _scenario(cfg, info, "signal", lambda call: 1.0, resume=True)}
    shutdown_distributed(info)
    results["threads_after_shutdown"] = native_thread_names()
    with open(os.path.join(folder, f"rank{rank}.json"), "w") as fh:
        json.dump(results, fh)


@pytest.fixture(scope="module")
def agreement(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("agreement"))
    mp.start_processes(_worker, args=(_free_port(), folder), nprocs=2, start_method="spawn")
    ranks = []
    for rank in range(2):
        with open(os.path.join(folder, f"rank{rank}.json")) as fh:
            ranks.append(json.load(fh))
    return folder, ranks


def test_a_nan_on_one_rank_is_skipped_by_both(agreement):
    _, (rank0, rank1) = agreement
    assert rank0["nan_once"]["outcome"] == rank1["nan_once"]["outcome"] == "finished"
    assert rank0["nan_once"]["steps"] == rank1["nan_once"]["steps"] == 6
    assert rank0["nan_once"]["weight"] == rank1["nan_once"]["weight"]
    for rank in (rank0, rank1):
        assert rank["nan_always"]["outcome"] == "TrainingError"
        assert "NaN/inf for 3 steps in a row" in rank["nan_always"]["message"]


def test_an_error_on_one_rank_stops_both(agreement):
    _, (rank0, rank1) = agreement
    assert rank1["raises"] == {"outcome": "ValueError", "message": "rank 1 broke"}
    assert rank0["raises"]["outcome"] == "TrainingError" and "another rank failed" in rank0["raises"]["message"]


def test_a_signal_on_one_rank_stops_both_at_the_same_step_and_resume_needs_no_shared_disk(agreement):
    folder, (rank0, rank1) = agreement
    assert rank0["signal"]["outcome"] == rank1["signal"]["outcome"] == "Interrupted"
    assert not os.path.exists(os.path.join(folder, "rank1", "signal.pt")), "only rank 0 writes"
    # rank 1 has no checkpoint on its disk, yet resumes from rank 0's and ends identical
    assert rank0["resume"]["outcome"] == rank1["resume"]["outcome"] == "finished"
    assert rank0["resume"]["calls"] == rank1["resume"]["calls"] == 3, \
        "rank 1's signal during step 3 stopped both after it, and both continue at step 3"
    assert rank0["resume"]["weight"] == rank1["resume"]["weight"]
    assert load_checkpoint(os.path.join(folder, "rank0", "signal.pt"))["step"] == 6


def test_leaving_the_process_group_ends_its_worker_threads(agreement):
    """After the DDP-wrapped runs above, shutdown_distributed leaves no gloo thread running: one
    left for the interpreter's teardown made a finished run abort now and then (SIGABRT,
    'terminate called without an active exception'), because torch.distributed.nn.functional,
    imported by DDP after the group existed, held the group in its default arguments."""
    _, ranks = agreement
    for rank in ranks:
        assert rank["threads_after_shutdown"], "this process's threads were listed"
        gloo = [name for name in rank["threads_after_shutdown"] if "gloo" in name]
        assert gloo == [], gloo
