"""Shared test helpers: the project root on sys.path and small data sets written to disk."""
import os
import sys

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(2)

import utils  # noqa: E402


def random_motion_joints(num_frames: int, seed: int) -> np.ndarray:
    """A smooth random motion on the HumanML3D skeleton, walking along +z: (T, 22, 3)."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, num_frames, dtype=torch.float64)[:, None]
    axes = torch.randn(22, 3, generator=gen, dtype=torch.float64)
    phase = torch.rand(22, generator=gen, dtype=torch.float64) * 6.28
    angles = 0.3 * torch.sin(6.28 * t * 1.5 + phase)  # (T, 22)
    local = utils.quat_from_axis_angle(axes.expand(num_frames, 22, 3), angles)
    root = torch.zeros(num_frames, 3, dtype=torch.float64)
    root[:, 1] = 0.95
    root[:, 2] = torch.linspace(0, 1.0, num_frames, dtype=torch.float64)
    return utils.forward_kinematics(local, root).numpy()


def write_humanml3d_folder(root, num_motions: int = 12, frames=(50, 90), seed: int = 0,
                           splits=(0.5, 0.25, 0.25)) -> list:
    """Write a small data set in the HumanML3D layout (features from real FK motions)."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "new_joint_vecs"), exist_ok=True)
    os.makedirs(os.path.join(root, "texts"), exist_ok=True)
    ids, feats = [], []
    for i in range(num_motions):
        motion_id = f"M{i:04d}"
        n = int(rng.integers(frames[0], frames[1]))
        features = utils.joints_to_features(random_motion_joints(n + 1, seed * 1000 + i))
        np.save(os.path.join(root, "new_joint_vecs", motion_id + ".npy"), features)
        with open(os.path.join(root, "texts", motion_id + ".txt"), "w") as fh:
            fh.write(f"a person moves number {i}#a/DET person/NOUN#0.0#0.0\n")
            fh.write(f"someone does motion {i}#someone/NOUN#0.0#0.0\n")
        ids.append(motion_id)
        feats.append(features)
    n_train = int(num_motions * splits[0])
    n_val = int(num_motions * splits[1])
    for name, part in (("train", ids[:n_train]), ("val", ids[n_train:n_train + n_val]),
                       ("test", ids[n_train + n_val:])):
        with open(os.path.join(root, f"{name}.txt"), "w") as fh:
            fh.write("\n".join(part) + "\n")
    mean, std = utils.feature_mean_std(feats[:n_train])
    np.save(os.path.join(root, "Mean.npy"), mean)
    np.save(os.path.join(root, "Std.npy"), std)
    return ids


@pytest.fixture
def humanml3d_folder(tmp_path):
    root = tmp_path / "HumanML3D"
    write_humanml3d_folder(str(root))
    return str(root)


# Model sizes small enough for a whole three-stage run in seconds on 2 cores.
TINY_MODEL_ARGS = ["--vq_width", "32", "--vq_code_dim", "16", "--vq_codebook_size", "32", "--vq_depth", "1",
                   "--gpt_n_embd", "32", "--gpt_n_layer", "1", "--gpt_n_head", "2",
                   "--diff_n_embd", "32", "--diff_n_layer", "1", "--diff_n_head", "2",
                   "--diff_timesteps", "100", "--num_inbetween_steps", "4", "--batch_size", "8",
                   "--eval_interval", "20", "--val_batches", "2", "--warmup_steps", "5"]


def tiny_train_args(data_root, checkpoint_dir, steps: int = 30, ckpt_interval: int = 10) -> list:
    """train.py arguments for a tiny run on a data set in the HumanML3D layout."""
    return ["--dataset_root", str(data_root), "--dataset_kind", "humanml3d",
            "--checkpoint_dir", str(checkpoint_dir), "--ckpt_interval", str(ckpt_interval),
            "--vqvae_steps", str(steps), "--gpt_steps", str(steps), "--diffusion_steps", str(steps),
            *TINY_MODEL_ARGS]


def run_script(script: str, *args, timeout: int = 300, **kwargs):
    """Run one of the project's scripts in a real subprocess; returns CompletedProcess."""
    import subprocess
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *map(str, args)], cwd=kwargs.pop("cwd", ROOT),
                          capture_output=True, text=True, timeout=timeout, env=env, **kwargs)


@pytest.fixture(scope="session")
def tiny_trained(tmp_path_factory):
    """A tiny data set and a tiny three-stage model trained on it by `python train.py`."""
    base = tmp_path_factory.mktemp("tiny_trained")
    data_root, ckpt = base / "data", base / "checkpoints"
    write_humanml3d_folder(str(data_root), num_motions=40, frames=(45, 90))
    proc = run_script("train.py", *tiny_train_args(data_root, ckpt, steps=40), "--text_encoder", "minilm")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {"data_root": str(data_root), "checkpoint_dir": str(ckpt), "train_stdout": proc.stdout}
