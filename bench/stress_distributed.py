"""Stress check of multi-process training's exit: `torchrun --nproc_per_node=2 train.py` on a
tiny model and a small embedded data set, repeated; every run must exit 0 with every rank's
code 0 (a rank that aborts at interpreter exit after finishing its work shows up as -6).

    python bench/stress_distributed.py [--runs 30] [--out results/stress_distributed]
    python bench/stress_distributed.py --scenario signal --runs 5

--scenario signal sends SIGTERM to rank 1 alone while the VQ-VAE trains: both ranks must stop at
the same step with train.py's documented code 128 + 15 = 143 (torchrun then exits 1), rank 0
must have written the checkpoint, and `--resume` must then finish all stages with exit 0.

Each run's torchrun output is kept under --out (the failing ones are listed at the end), with
Python's fault handler on, so an abort prints every thread's stack. Prints one line per run
and a summary; exits 1 when any run failed. Not part of the default test suite (30 runs take
15-20 minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Tiny sizes (the test suite's): a three-stage run takes seconds, so the exit is most of it.
TINY = ["--vq_width", "32", "--vq_code_dim", "16", "--vq_codebook_size", "32", "--vq_depth", "1",
        "--gpt_n_embd", "32", "--gpt_n_layer", "1", "--gpt_n_head", "2",
        "--diff_n_embd", "32", "--diff_n_layer", "1", "--diff_n_head", "2",
        "--diff_timesteps", "100", "--num_inbetween_steps", "4", "--batch_size", "8",
        "--eval_interval", "20", "--val_batches", "2", "--warmup_steps", "5",
        "--vqvae_steps", "5", "--gpt_steps", "5", "--diffusion_steps", "5", "--ckpt_interval", "3",
        "--text_encoder", "minilm", "--synthetic_num_motions", "48"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun_command(out: str, run: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
            f"--master_port={free_port()}", "train.py", *TINY,
            "--dataset_root", os.path.join(out, "data"), "--checkpoint_dir", os.path.join(out, f"ckpt{run}")]


def one_run(out: str, run: int, timeout: int) -> tuple[int, float, str]:
    """(torchrun's exit code, seconds, log path) of one two-process training run."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONFAULTHANDLER="1", PYTHONUNBUFFERED="1")
    log = os.path.join(out, f"run{run:03d}.log")
    started = time.time()
    with open(log, "w") as fh:
        try:
            code = subprocess.run(torchrun_command(out, run), cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                  timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            code = -999
    return code, time.time() - started, log


def worker_pids(launcher: subprocess.Popen) -> dict[int, int]:
    """{rank: pid} of torchrun's worker processes (read from their RANK environment variable)."""
    ranks = {}
    for pid in subprocess.run(["pgrep", "-P", str(launcher.pid)], capture_output=True, text=True).stdout.split():
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                env = dict(item.split(b"=", 1) for item in fh.read().split(b"\0") if b"=" in item)
            ranks[int(env[b"RANK"])] = int(pid)
        except (OSError, KeyError, ValueError):
            pass
    return ranks


def signal_run(out: str, run: int, timeout: int) -> tuple[bool, str]:
    """SIGTERM to rank 1 mid-training, then --resume; (passed, what was seen)."""
    import signal
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONFAULTHANDLER="1", PYTHONUNBUFFERED="1")
    command = torchrun_command(out, run)
    command[command.index("--vqvae_steps") + 1] = "400"  # long enough to be interrupted
    log = os.path.join(out, f"signal{run:03d}.log")
    with open(log, "w") as fh:
        launcher = subprocess.Popen(command, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline and "vqvae" not in open(log).read().split("data:")[-1]:
            time.sleep(0.5)
        time.sleep(2.0)
        ranks = worker_pids(launcher)
        if 1 not in ranks:
            launcher.kill()
            return False, f"rank 1 not found ({log})"
        os.kill(ranks[1], signal.SIGTERM)
        code = launcher.wait(timeout=timeout)
    text = open(log).read()
    codes = [int(c) for c in __import__("re").findall(r"exitcode\s*:\s*(-?\d+)", text)]
    saved = os.path.exists(os.path.join(out, f"ckpt{run}", "vqvae.pt"))
    resumed = subprocess.run(command + ["--resume"], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=timeout)
    ok = (code == 1 and codes and all(c == 143 for c in codes) and "interrupted by SIGTERM" in text and saved
          and resumed.returncode == 0)
    return bool(ok), (f"torchrun {code}, rank exit codes {codes}, checkpoint written {saved}, "
                      f"resume exit {resumed.returncode}")


def make_cli_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="how many two-process runs in a row")
    parser.add_argument("--out", default=os.path.join("results", "stress_distributed"),
                        help="folder for the data set, checkpoints and one log per run")
    parser.add_argument("--timeout", type=int, default=300, help="seconds before a run counts as hung")
    parser.add_argument("--scenario", choices=["finish", "signal"], default="finish",
                        help="finish: train to the end; signal: SIGTERM to rank 1, then --resume")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_cli_parser().parse_args(argv)
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    failed = []
    if args.scenario == "signal":
        for run in range(args.runs):
            ok, seen = signal_run(out, run, args.timeout)
            failed += [] if ok else [run]
            print(f"run {run + 1:3d}/{args.runs}: {seen}{'' if ok else '  FAILED'}", flush=True)
        print(f"{args.runs - len(failed)} passed, {len(failed)} failed")
        return 1 if failed else 0
    for run in range(args.runs):
        code, seconds, log = one_run(out, run, args.timeout)
        with open(log) as fh:
            text = fh.read()
        finished = text.count("weights identical on all 2 ranks") == 3
        ok = code == 0 and finished
        if not ok:
            failed.append(log)
        print(f"run {run + 1:3d}/{args.runs}: exit {code:4d}, all three stages finished: {finished}, "
              f"{seconds:5.1f} s{'' if ok else '  FAILED -> ' + log}", flush=True)
    print(f"{args.runs - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
