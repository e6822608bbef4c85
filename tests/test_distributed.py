"""Real torch.distributed: two gloo processes on CPU train a stage with DistributedDataParallel."""
import os
import socket
import subprocess
import sys

from conftest import ROOT, tiny_train_args, write_humanml3d_folder
from runtime import load_checkpoint


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_gloo_processes_train_identical_weights_and_write_one_checkpoint(tmp_path):
    data_root, ckpt = tmp_path / "data", tmp_path / "ckpt"
    write_humanml3d_folder(str(data_root), num_motions=24, frames=(45, 70))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
           f"--master_port={_free_port()}", "train.py",
           *tiny_train_args(data_root, ckpt, steps=12, ckpt_interval=5), "--text_encoder", "minilm",
           "--stage", "vqvae"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "weights identical on all 2 ranks" in proc.stdout
    assert proc.stdout.count("[vqvae] 12 steps") == 1, "only rank 0 logs"
    assert "2 processes" in proc.stdout
    assert sorted(os.listdir(ckpt)) == ["vqvae.pt"], "only rank 0 writes, and no temp file is left"
    assert load_checkpoint(str(ckpt / "vqvae.pt"), stage="vqvae")["step"] == 12
