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
