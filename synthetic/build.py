"""The data set on disk: motions written in the HumanML3D layout (in one process or a pool of
workers; the files do not depend on how many), split 80/10/10, with the train split's
feature statistics, per-motion labels and a DONE marker written last.

    python -m synthetic --dataset_root dataset/synthetic --synthetic_num_motions 3000
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from typing import Optional

import numpy as np
import torch

import utils
from runtime import run_tasks

from .lexicon import caption_tokens
from .motion import generate_motion

DONE_FILE = "DONE"
# 2: gaits calibrated to human speeds (synthetic/speeds.py); 3: forward walks are also captioned
# without a step count (as runs were), so "a person walks forward" is a caption of the set
FORMAT_VERSION = 3  # older sets are rebuilt
_SETTINGS = ("format", "num_motions", "seed", "fps", "min_length", "max_length")  # what DONE must match
_LAYOUT = {"new_joint_vecs", "new_joints", "texts", "train.txt", "val.txt", "test.txt", "Mean.npy",
           "Std.npy", "labels.json", DONE_FILE}


def motion_id(index: int) -> str:
    """File id of motion `index`: 'S000123'."""
    return f"S{index:06d}"


# ---------------------------------------------------------------------------------------
# Writing the motions
# ---------------------------------------------------------------------------------------
def _write_motion(task: tuple) -> tuple:
    """Generate motion `index` and write its files under `folder`; returns (id, frames, captions, parts)."""
    folder, seed, index, fps, min_length, max_length = task
    motion = generate_motion(seed, index, fps, min_length, max_length)
    features = utils.joints_to_features(motion.joints)  # (T-1, 263) float32
    joints = utils.features_to_joints(features)  # (T-1, 22, 3) float32, as HumanML3D stores them
    name = motion_id(index)
    np.save(os.path.join(folder, "new_joint_vecs", name + ".npy"), features)
    np.save(os.path.join(folder, "new_joints", name + ".npy"), joints.astype(np.float32))
    with open(os.path.join(folder, "texts", name + ".txt"), "w") as fh:
        for caption in motion.captions:
            fh.write(f"{caption}#{caption_tokens(caption)}#0.0#0.0\n")
    return name, len(features), len(motion.captions), motion.parts


# ---------------------------------------------------------------------------------------
# Temp folders
# ---------------------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_builds(root: str) -> None:
    """Delete `root.tmp-<pid>` folders left by builds whose process is gone."""
    parent, base = os.path.split(os.path.abspath(root))
    if not os.path.isdir(parent):
        return
    for entry in os.listdir(parent):
        match = re.fullmatch(re.escape(base) + r"\.tmp-(\d+)", entry)
        if match and int(match.group(1)) != os.getpid() and not _pid_alive(int(match.group(1))):
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)


def _start_build(root: str) -> str:
    """Refuse a `root` that holds other files than a (half-built) set of this layout, clear old
    temp folders, and return a fresh temp folder `root.tmp-<pid>` with the motion folders."""
    if os.path.isdir(root) and not os.path.exists(os.path.join(root, DONE_FILE)):
        foreign = sorted(set(os.listdir(root)) - _LAYOUT)
        if foreign:
            raise ValueError(f"{root} exists and is not a synthetic data set (it holds {foreign[:3]}); "
                             "remove it or pass another --dataset_root")
    _remove_stale_builds(root)
    tmp = f"{root}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    for sub in ("new_joint_vecs", "new_joints", "texts"):
        os.makedirs(os.path.join(tmp, sub))
    return tmp


# ---------------------------------------------------------------------------------------
# Splits, statistics, labels, DONE
# ---------------------------------------------------------------------------------------
def _write_splits(folder: str, ids: list, seed: int) -> dict:
    """Splits 80/10/10 by a seeded shuffle, and the feature statistics of the train split only."""
    order = np.random.default_rng([int(seed), 2 ** 31]).permutation(len(ids))
    n_train, n_val = int(round(0.8 * len(ids))), int(round(0.1 * len(ids)))
    splits = {"train": sorted(ids[i] for i in order[:n_train]),
              "val": sorted(ids[i] for i in order[n_train:n_train + n_val]),
              "test": sorted(ids[i] for i in order[n_train + n_val:])}
    for name, members in splits.items():
        with open(os.path.join(folder, f"{name}.txt"), "w") as fh:
            fh.write("\n".join(members) + "\n")
    train_feats = [np.load(os.path.join(folder, "new_joint_vecs", i + ".npy")) for i in splits["train"]]
    mean, std = utils.feature_mean_std(train_feats)  # (263,) each
    np.save(os.path.join(folder, "Mean.npy"), mean.astype(np.float32))
    np.save(os.path.join(folder, "Std.npy"), std.astype(np.float32))
    return splits


def _write_labels(folder: str, results: list) -> None:
    """labels.json: {id: {"action", "actions", "params", "parts"}} (the first part's action and params)."""
    labels = {}
    for name, _, _, parts in results:
        labels[name] = {"action": parts[0][0], "actions": [a for a, _ in parts], "params": parts[0][1],
                        "parts": [{"action": a, "params": p} for a, p in parts]}
    with open(os.path.join(folder, "labels.json"), "w") as fh:
        json.dump(labels, fh, indent=0, sort_keys=True)


def _finish_build(tmp: str, root: str, done: dict) -> None:
    """Write DONE into tmp and move tmp to root (unless another process built the same set first)."""
    with open(os.path.join(tmp, DONE_FILE), "w") as fh:
        json.dump(done, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    if os.path.exists(os.path.join(root, DONE_FILE)) and read_done(root) == _done_settings(done):
        shutil.rmtree(tmp, ignore_errors=True)  # another process finished the same set first
    else:
        if os.path.isdir(root):
            shutil.rmtree(root)
        os.replace(tmp, root)


def _done_settings(done: dict) -> dict:
    return {k: done.get(k) for k in _SETTINGS}


def _build_settings(num_motions: int, seed: int, fps: int, min_length: int, max_length: int) -> dict:
    """The settings a build is recorded with in DONE (and must match to be reused)."""
    return {"format": FORMAT_VERSION, "num_motions": num_motions, "seed": seed, "fps": fps,
            "min_length": min_length, "max_length": max_length}


def read_done(root: str) -> Optional[dict]:
    """The build settings stored in root/DONE, or None if it is missing or unreadable."""
    try:
        with open(os.path.join(root, DONE_FILE)) as fh:
            return _done_settings(json.load(fh))
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------
def build_synthetic_dataset(root: str, num_motions: int, seed: int, fps: int = 20, min_length: int = 40,
                            max_length: int = 196, progress: bool = True, workers: int = 0) -> dict:
    """Build the embedded data set in `root` (HumanML3D layout, see the package docstring).

    The set is built in `root.tmp-<pid>` and moved to `root` when complete (DONE written last),
    so readers never see half a data set; an existing `root` without DONE holding only this
    layout's files is replaced. workers: processes to use (0: up to 2 when the set is large);
    the files do not depend on it. Returns a summary: motions, captions, actions, frames,
    seconds, root.
    """
    if num_motions < 10:
        raise ValueError(f"synthetic_num_motions must be >= 10 to fill the train/val/test splits, got {num_motions}")
    if not 0 < min_length <= max_length:
        raise ValueError(f"need 0 < min_length <= max_length, got {min_length} and {max_length}")
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    start = time.time()
    root = os.path.abspath(root)
    tmp = _start_build(root)
    tasks = [(tmp, seed, i, fps, min_length, max_length) for i in range(num_motions)]
    if workers <= 0:
        workers = min(2, os.cpu_count() or 1) if num_motions >= 200 else 1
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead
    try:
        results = run_tasks(_write_motion, tasks, workers, "synthetic motions", progress, unit="motion",
                            chunksize=16)
    finally:
        torch.set_num_threads(torch_threads)
    _write_splits(tmp, [r[0] for r in results], seed)
    _write_labels(tmp, results)
    summary = {"root": root, "motions": len(results), "captions": int(sum(r[2] for r in results)),
               "actions": len({a for r in results for a, _ in r[3]}), "frames": int(sum(r[1] for r in results))}
    done = {**_build_settings(num_motions, seed, fps, min_length, max_length),
            **{k: summary[k] for k in ("motions", "captions", "actions", "frames")}}
    _finish_build(tmp, root, done)
    summary["seconds"] = round(time.time() - start, 2)
    return summary


def ensure_synthetic_dataset(cfg) -> str:
    """Build the embedded data set into cfg.dataset_root unless a complete one with the same
    settings is there already; returns the root."""
    root = cfg.dataset_root
    wanted = _build_settings(cfg.synthetic_num_motions, cfg.synthetic_seed, cfg.fps, cfg.min_motion_length,
                             cfg.max_motion_length)
    if read_done(root) == wanted:
        return root
    print(f"building the embedded synthetic data set ({cfg.synthetic_num_motions} motions) in {root} ...", flush=True)
    summary = build_synthetic_dataset(root, cfg.synthetic_num_motions, cfg.synthetic_seed, cfg.fps,
                                      cfg.min_motion_length, cfg.max_motion_length)
    print(f"built {summary['motions']} motions, {summary['captions']} captions, {summary['actions']} actions "
          f"({summary['frames']} frames) in {summary['seconds']:.1f} s", flush=True)
    return root


def main(argv=None) -> None:
    """`python -m synthetic [--field value ...] [--force]`: build the set of the config."""
    import config
    parser = config.make_parser("Build the embedded synthetic motion data set in the HumanML3D layout.",
                                prog="python -m synthetic")
    parser.add_argument("--force", action="store_true", help="rebuild even if a complete set is there")
    args = parser.parse_args(argv)
    cfg = config.config_from_args(args, parser)
    if args.force and os.path.exists(os.path.join(cfg.dataset_root, DONE_FILE)):
        os.remove(os.path.join(cfg.dataset_root, DONE_FILE))
    ensure_synthetic_dataset(cfg)
