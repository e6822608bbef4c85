"""Motion-text data in the HumanML3D layout, for the real data set and the embedded one.

A data set folder holds `new_joint_vecs/<id>.npy` (T, 263) features, `texts/<id>.txt` captions
(`caption#tokens#start#end`, one a line), `train.txt`/`val.txt`/`test.txt` id lists and
`Mean.npy`/`Std.npy`. The embedded procedural data set (the synthetic/ package) is built in that layout on
first use, so one loader reads both.
"""
from __future__ import annotations

import functools
import json
import os
import warnings
from dataclasses import dataclass, field, replace
from typing import Literal, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from config import CompositeConfig, split_folders
from utils import FEATURE_DIM, feature_mean_std, keyframe_indices, num_keyframes

Split = Literal["train", "val", "test"]
__all__ = ["DataError", "MotionClip", "MotionDataset", "collate_motions", "make_loader",
           "batch_keyframes", "keyframe_indices", "ensure_dataset", "load_mean_std", "dataset_roots",
           "load_clips", "min_length_of"]


class DataError(ValueError):
    """The data set folder is missing or malformed; the message says what and how to fix it."""


@dataclass
class MotionClip:
    """One training item: a motion (or a captioned sub-clip of one) and its captions."""
    motion_id: str
    features: np.ndarray  # (T, 263) float32, unnormalised
    captions: list[str]
    # HumanML3D `word/POS` tokens of each caption (parallel to captions; [] where the line has none)
    tokens: list[list[str]] = field(default_factory=list)


PREPARED_FILE = "prepare.json"  # written by prepare_data.py beside a prepared motion-capture set


def dataset_roots(dataset_root: str) -> list[str]:
    """The folders of a `dataset_root` setting: one path, or several joined by commas."""
    roots = split_folders(dataset_root)
    if not roots:
        raise DataError("dataset_root is empty; pass a folder (or several, comma-separated)")
    return roots


def is_prepared(root: str) -> bool:
    """True for a folder that prepare_data.py made from BVH files."""
    return os.path.exists(os.path.join(root, PREPARED_FILE))


def ensure_dataset(cfg: CompositeConfig) -> str:
    """The data set root(s), comma-joined as in cfg.dataset_root, each checked. With
    dataset_kind 'synthetic', a folder that prepare_data.py did not make holds the embedded
    synthetic set and is built there on first use (or rebuilt when built with other settings)."""
    roots = []
    for root in dataset_roots(cfg.dataset_root):
        if cfg.dataset_kind == "synthetic" and not is_prepared(root):
            from synthetic import ensure_synthetic_dataset
            roots.append(ensure_synthetic_dataset(cfg.replace(dataset_root=root)))
            continue
        if not os.path.isdir(root):
            raise DataError(f"data set folder not found: {root} (put HumanML3D there in its usual layout, "
                            "prepare one from BVH files with prepare_data.py, pass --dataset_root PATH, or use "
                            "the embedded set with --dataset_kind synthetic --dataset_root dataset/synthetic)")
        if not os.listdir(root):
            raise DataError(f"data set folder is empty: {root} (it needs new_joint_vecs/, texts/, train.txt, "
                            "val.txt, test.txt, Mean.npy and Std.npy)")
        roots.append(root)
    return ",".join(roots)


def min_length_of(root: str, cfg: CompositeConfig) -> int:
    """Shortest motion (frames) the loader keeps from `root`: a prepared motion-capture set
    states its own (prepare.json's min_length), any other folder uses cfg.min_motion_length."""
    if is_prepared(root):
        with open(os.path.join(root, PREPARED_FILE), encoding="utf-8") as fh:
            return int(json.load(fh).get("min_length", cfg.min_motion_length))
    return cfg.min_motion_length


def load_mean_std(root: str) -> tuple[np.ndarray, np.ndarray]:
    """Feature statistics (263,), (263,) of a data set folder; for several folders
    (comma-joined) the statistics of the union of their train splits."""
    roots = dataset_roots(root)
    if len(roots) > 1:
        return union_mean_std(tuple(roots))
    stats = []
    for name in ("Mean.npy", "Std.npy"):
        path = os.path.join(root, name)
        if not os.path.exists(path):
            raise DataError(f"missing {path} (every data set folder needs Mean.npy and Std.npy of its "
                            "training features)")
        array = np.load(path).astype(np.float32)
        if array.shape != (FEATURE_DIM,) or not np.isfinite(array).all():
            raise DataError(f"{path} must hold {FEATURE_DIM} finite numbers, got shape {array.shape}")
        stats.append(array)
    mean, std = stats
    if (std <= 0).any():
        raise DataError(f"{os.path.join(root, 'Std.npy')} has non-positive entries")
    return mean, std


@functools.lru_cache(maxsize=4)
def union_mean_std(roots: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """HumanML3D-style statistics (utils.feature_mean_std) over every train motion of several folders."""
    features = []
    for root in roots:
        for motion_id in read_split_ids(root, "train"):
            path = os.path.join(root, "new_joint_vecs", f"{motion_id}.npy")
            if os.path.exists(path):
                array = np.load(path)
                if array.ndim == 2 and array.shape[1] == FEATURE_DIM and np.isfinite(array).all():
                    features.append(array)
    if not features:
        raise DataError(f"no train motions in {', '.join(roots)} to compute statistics from")
    return feature_mean_std(features)


def read_split_ids(root: str, split: Split) -> list[str]:
    """Motion ids of one split file (one a line)."""
    split_file = os.path.join(root, f"{split}.txt")
    if not os.path.exists(split_file):
        raise DataError(f"missing split file {split_file} (a data set needs train.txt, val.txt and "
                        "test.txt with one motion id a line)")
    with open(split_file) as fh:
        ids = [line.strip() for line in fh if line.strip()]
    if not ids:
        raise DataError(f"split file {split_file} is empty")
    return ids


def _parse_caption_line(line: str) -> Optional[tuple[str, list[str], float, float]]:
    """(caption, `word/POS` tokens, start_s, end_s) of one `caption#tokens#start#end` line;
    None for a blank line."""
    parts = line.strip().split("#")
    if not parts[0].strip():
        return None
    caption = parts[0].strip()
    tokens = parts[1].split() if len(parts) >= 2 else []
    start = end = 0.0
    if len(parts) >= 4:
        try:
            start = float(parts[2]) if parts[2] else 0.0
            end = float(parts[3]) if parts[3] else 0.0
        except ValueError:
            start = end = 0.0
    start = 0.0 if np.isnan(start) else start
    end = 0.0 if np.isnan(end) else end
    return caption, tokens, start, end


def read_features(path: str, feature_dim: int) -> tuple[Optional[np.ndarray], str]:
    """(features (T, D) float32, "") of a motion file, or (None, why it is unusable)."""
    if not os.path.exists(path):
        return None, "missing"
    try:
        features = np.load(path)
    except (ValueError, OSError, EOFError):
        return None, "non-finite"
    if features.ndim != 2 or features.shape[1] != feature_dim:
        return None, "bad width"
    if not np.isfinite(features).all():
        return None, "non-finite"
    return features.astype(np.float32), ""


def read_captions(text_path: str) -> list[tuple[str, list[str], float, float]]:
    """Every (caption, tokens, start_s, end_s) line of a texts/<id>.txt file."""
    with open(text_path, encoding="utf-8", errors="replace") as fh:
        return [parsed for parsed in map(_parse_caption_line, fh) if parsed is not None]


def first_caption_motions(root: str, split: Split, min_length: int, max_length: int,
                          limit: Optional[int] = None) -> list[dict]:
    """The motions of a split in file order, each as dict(id, caption: its file's first caption,
    features: (T, D) float32 cropped to max_length frames); shorter than min_length or without a
    features file are left out; at most `limit`. What the benches sample one motion per caption of."""
    items = []
    for motion_id in read_split_ids(root, split):
        path = os.path.join(root, "new_joint_vecs", motion_id + ".npy")
        captions = read_captions(os.path.join(root, "texts", motion_id + ".txt")) if os.path.exists(path) else []
        if not captions:
            continue
        features = np.load(path)[:max_length].astype(np.float32)
        if len(features) >= min_length:
            items.append(dict(id=motion_id, caption=captions[0][0], features=features))
        if limit is not None and len(items) == limit:
            break
    return items


def motion_clips(motion_id: str, features: np.ndarray, captions: list, min_length: int, fps: int
                 ) -> list[MotionClip]:
    """One motion's clips: one per caption naming a sub-clip (start/end seconds) that is long
    enough, then the whole motion with its whole-motion captions (last; absent without any)."""
    clips, whole_captions, whole_tokens = [], [], []
    for caption, tokens, start, end in captions:
        if start == 0.0 and end == 0.0:
            whole_captions.append(caption)
            whole_tokens.append(tokens)
            continue
        sub = features[int(start * fps):int(end * fps)]
        if min_length <= len(sub) < 200:
            clips.append(MotionClip(f"{motion_id}@{start:g}-{end:g}", sub, [caption], [tokens]))
    if whole_captions:
        clips.append(MotionClip(motion_id, features, whole_captions, whole_tokens))
    return clips


def load_clips(root: str, split: Split, cfg: CompositeConfig) -> list[MotionClip]:
    """Read one split: whole motions with their whole-motion captions, plus one clip per
    caption that names a sub-clip (start/end seconds), as HumanML3D does. Motions that are
    unusable (NaN, wrong width, shorter than `min_length_of(root)`) are skipped with one
    warning line that counts them. Several folders (comma-joined) are read one after the
    other, each motion id prefixed with its folder's name ("bandai/<id>"), the train split's
    clips of each folder repeated as cfg.dataset_repeats says."""
    roots = dataset_roots(root)
    if len(roots) > 1:
        repeats = (cfg.dataset_repeat_counts() if split == "train" else []) or [1] * len(roots)
        if len(repeats) != len(roots):
            raise DataError(f"dataset_repeats gives {len(repeats)} count(s) for the {len(roots)} folders of {root}; "
                            "pass one per folder (e.g. --dataset_repeats 1,3)")
        return [replace(clip, motion_id=f"{os.path.basename(os.path.normpath(r))}/{clip.motion_id}")
                for r, times in zip(roots, repeats) for clip in load_clips(r, split, cfg) for _ in range(times)]
    ids = read_split_ids(root, split)
    min_length = min_length_of(root, cfg)
    clips: list[MotionClip] = []
    skipped = {"missing": 0, "bad width": 0, "non-finite": 0, "too short": 0, "no caption": 0}
    for motion_id in ids:
        text_path = os.path.join(root, "texts", f"{motion_id}.txt")
        features, problem = read_features(os.path.join(root, "new_joint_vecs", f"{motion_id}.npy"), cfg.feature_dim)
        if features is not None and not os.path.exists(text_path):
            features, problem = None, "missing"
        if features is None:
            skipped[problem] += 1
            continue
        found = motion_clips(motion_id, features, read_captions(text_path), min_length, cfg.fps)
        whole = found[-1] if found and found[-1].motion_id == motion_id else None
        clips += [clip for clip in found if clip is not whole]
        if whole is None:
            skipped["no caption"] += 1
        elif len(features) < min_length:
            skipped["too short"] += 1
        else:
            clips.append(whole)
    n_skipped = sum(skipped.values())
    if n_skipped:
        reasons = ", ".join(f"{n} {why}" for why, n in skipped.items() if n)
        warnings.warn(f"{split}: skipped {n_skipped} of {len(ids)} motions in {root} ({reasons})",
                      stacklevel=2)
    if not clips:
        raise DataError(f"no usable motions in split '{split}' of {root} (check new_joint_vecs/ and texts/)")
    return clips


class MotionDataset(Dataset):
    """Normalised motions with a random caption each, cropped to cfg.max_motion_length.

    Items are dicts: `motion` (T, 263) float tensor (normalised), `length` int, `caption` str.
    """

    def __init__(self, cfg: CompositeConfig, split: Split = "train"):
        self.cfg = cfg
        self.split = split
        self.root = ensure_dataset(cfg)
        self.mean, self.std = load_mean_std(self.root)
        self.clips = load_clips(self.root, split, cfg)
        self.normalised = [(clip.features - self.mean) / self.std for clip in self.clips]

    def __len__(self) -> int:
        return len(self.clips)

    def item_lengths(self) -> list[int]:
        """The length of each item as __getitem__ returns it (cropped to max_motion_length)."""
        return [min(len(motion), self.cfg.max_motion_length) for motion in self.normalised]

    def all_captions(self) -> list[str]:
        """Every caption of the split (with repeats removed, order kept)."""
        return list(dict.fromkeys(c for clip in self.clips for c in clip.captions))

    def __getitem__(self, index: int) -> dict:
        clip = self.clips[index]
        motion = self.normalised[index]
        length = min(len(motion), self.cfg.max_motion_length)
        start = int(torch.randint(0, len(motion) - length + 1, ()).item())
        caption = clip.captions[int(torch.randint(0, len(clip.captions), ()).item())]
        return {"motion": torch.from_numpy(motion[start:start + length]), "length": length,
                "caption": caption, "motion_id": clip.motion_id}


def collate_motions(items: list[dict]) -> dict:
    """Pad a list of items to the longest: `motion` (B, T, 263), `lengths` (B,) long,
    `padding_mask` (B, T) bool (True on real frames), `captions` list[str], `motion_ids`."""
    lengths = torch.tensor([item["length"] for item in items], dtype=torch.long)
    max_len = int(lengths.max())
    motion = torch.zeros(len(items), max_len, items[0]["motion"].shape[-1])  # (B, T, 263)
    for row, item in enumerate(items):
        motion[row, :item["length"]] = item["motion"]
    padding_mask = torch.arange(max_len)[None, :] < lengths[:, None]  # (B, T)
    return {"motion": motion, "lengths": lengths, "padding_mask": padding_mask,
            "captions": [item["caption"] for item in items],
            "motion_ids": [item["motion_id"] for item in items]}


def make_loader(dataset: MotionDataset, cfg: CompositeConfig, shuffle: bool = True, seed: int = 0,
                drop_last: bool = True, sampler=None) -> DataLoader:
    """A deterministic DataLoader of collated batches (order fixed by `seed`)."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=cfg.batch_size, shuffle=shuffle and sampler is None,
                      sampler=sampler, drop_last=drop_last and len(dataset) >= cfg.batch_size,
                      collate_fn=collate_motions, num_workers=cfg.num_workers, generator=generator)


def batch_keyframes(motion: torch.Tensor, lengths: torch.Tensor, interval: int
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keyframes of a padded batch.

    motion (B, T, D), lengths (B,) -> keyframes (B, K, D), keyframe_idx (B, K) long (frame of
    each keyframe; padded entries repeat the last one), keyframe_mask (B, K) bool (True on real
    keyframes), where K is the most keyframes of any row.
    """
    counts = num_keyframes(lengths, interval)  # (B,)
    max_k = int(counts.max())
    slot = torch.arange(max_k, device=motion.device)[None, :]  # (1, K)
    keyframe_mask = slot < counts[:, None]
    keyframe_idx = torch.minimum(slot * interval, (lengths - 1)[:, None])
    keyframe_idx = torch.where(keyframe_mask, keyframe_idx, (lengths - 1)[:, None])  # (B, K)
    keyframes = torch.gather(motion, 1, keyframe_idx[..., None].expand(-1, -1, motion.shape[-1]))
    return keyframes, keyframe_idx, keyframe_mask
