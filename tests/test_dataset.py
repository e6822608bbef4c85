"""The HumanML3D-layout loader: splits, captions with sub-clips, normalisation, batching, bad data."""
import os

import numpy as np
import pytest
import torch

from config import CompositeConfig
from dataset import (DataError, MotionDataset, batch_keyframes, collate_motions, make_loader,
                     keyframe_indices)


def _cfg(root, **kw):
    return CompositeConfig(dataset_root=root, dataset_kind="humanml3d", batch_size=4, **kw)


def test_loader_yields_normalised_padded_batches(humanml3d_folder):
    cfg = _cfg(humanml3d_folder)
    train = MotionDataset(cfg, "train")
    assert len(train) == 6
    item = train[0]
    assert item["motion"].shape == (item["length"], 263)
    raw = np.load(os.path.join(humanml3d_folder, "new_joint_vecs", item["motion_id"] + ".npy"))
    assert np.allclose(item["motion"].numpy() * train.std + train.mean, raw[:item["length"]], atol=1e-5)
    batch = next(iter(make_loader(train, cfg, seed=0)))
    assert batch["motion"].shape[0] == 4 and batch["motion"].shape[2] == 263
    for row, n in enumerate(batch["lengths"].tolist()):
        assert batch["padding_mask"][row, :n].all() and not batch["padding_mask"][row, n:].any()
        assert (batch["motion"][row, n:] == 0).all()
    assert all(c.startswith(("a person moves", "someone does")) for c in batch["captions"])


def test_loader_order_is_deterministic_from_the_seed(humanml3d_folder):
    cfg = _cfg(humanml3d_folder)
    train = MotionDataset(cfg, "train")
    ids = lambda seed: [b["motion_ids"] for b in make_loader(train, cfg, seed=seed)]
    assert ids(3) == ids(3)
    assert ids(3) != ids(4) or ids(3) != ids(5)


def test_crop_to_max_length_and_sub_clip_captions(humanml3d_folder):
    with open(os.path.join(humanml3d_folder, "texts", "M0000.txt"), "a") as fh:
        fh.write("the first two seconds#the/DET#0.0#2.2\n")
    cfg = _cfg(humanml3d_folder, max_motion_length=45, min_motion_length=40)
    train = MotionDataset(cfg, "train")
    assert max(train[i]["length"] for i in range(len(train))) == 45
    sub = [c for c in train.clips if "@" in c.motion_id]
    assert len(sub) == 1 and len(sub[0].features) == 44 and sub[0].captions == ["the first two seconds"]
    assert sub[0].tokens == [["the/DET"]]  # each caption's word/POS tokens, read once with it
    whole = next(c for c in train.clips if c.motion_id == "M0000")
    assert whole.tokens == [["a/DET", "person/NOUN"], ["someone/NOUN"]] and len(whole.captions) == 2


def test_keyframe_helpers():
    assert keyframe_indices(12, 5).tolist() == [0, 5, 10, 11]
    motion = torch.arange(2 * 12 * 263, dtype=torch.float32).reshape(2, 12, 263)
    lengths = torch.tensor([12, 7])
    keyframes, idx, mask = batch_keyframes(motion, lengths, 5)
    assert idx[0].tolist() == [0, 5, 10, 11] and mask[0].all()
    assert idx[1, :3].tolist() == [0, 5, 6] and mask[1].tolist() == [True, True, True, False]
    assert torch.equal(keyframes[0, 2], motion[0, 10])


def test_bad_files_are_skipped_with_one_warning(humanml3d_folder):
    vecs = os.path.join(humanml3d_folder, "new_joint_vecs")
    train_ids = open(os.path.join(humanml3d_folder, "train.txt")).read().split()
    bad_nan = np.load(os.path.join(vecs, train_ids[0] + ".npy"))
    bad_nan[3, 7] = np.nan
    np.save(os.path.join(vecs, train_ids[0] + ".npy"), bad_nan)
    np.save(os.path.join(vecs, train_ids[1] + ".npy"), np.zeros((60, 200), np.float32))
    np.save(os.path.join(vecs, train_ids[2] + ".npy"), np.zeros((10, 263), np.float32))
    with pytest.warns(UserWarning) as record:
        train = MotionDataset(_cfg(humanml3d_folder), "train")
    assert len(train) == 3
    messages = [str(w.message) for w in record]
    assert len(messages) == 1 and "skipped 3 of 6" in messages[0]
    assert "non-finite" in messages[0] and "bad width" in messages[0] and "too short" in messages[0]


def test_missing_folder_and_split_give_clear_errors(tmp_path, humanml3d_folder):
    with pytest.raises(DataError, match="data set folder not found.*--dataset_root"):
        MotionDataset(_cfg(str(tmp_path / "nowhere")), "train")
    os.remove(os.path.join(humanml3d_folder, "val.txt"))
    with pytest.raises(DataError, match="missing split file .*val.txt"):
        MotionDataset(_cfg(humanml3d_folder), "val")
    os.remove(os.path.join(humanml3d_folder, "Std.npy"))
    with pytest.raises(DataError, match="Std.npy"):
        MotionDataset(_cfg(humanml3d_folder), "train")


def test_collate_keeps_captions_and_lengths():
    items = [{"motion": torch.ones(5, 263), "length": 5, "caption": "a", "motion_id": "x"},
             {"motion": torch.ones(3, 263), "length": 3, "caption": "b", "motion_id": "y"}]
    batch = collate_motions(items)
    assert batch["motion"].shape == (2, 5, 263) and batch["lengths"].tolist() == [5, 3]
    assert batch["captions"] == ["a", "b"]


def test_several_roots_train_one_model_with_union_statistics(tmp_path):
    import json
    from conftest import write_humanml3d_folder
    from dataset import load_clips, load_mean_std
    from utils import feature_mean_std
    first, second = str(tmp_path / "first"), str(tmp_path / "mocap")
    write_humanml3d_folder(first, num_motions=8, frames=(50, 70), seed=1)
    write_humanml3d_folder(second, num_motions=8, frames=(26, 45), seed=2)
    with open(os.path.join(second, "prepare.json"), "w") as fh:
        json.dump({"min_length": 24}, fh)  # a prepared motion-capture set states its own minimum
    cfg = _cfg(f"{first},{second}")
    train = MotionDataset(cfg, "train")
    alone = [load_clips(root, "train", cfg) for root in (first, second)]
    assert len(train) == len(alone[0]) + len(alone[1]) == 8
    ids = [clip.motion_id for clip in train.clips]
    assert ids[:4] == [f"first/{c.motion_id}" for c in alone[0]]
    assert ids[4:] == [f"mocap/{c.motion_id}" for c in alone[1]]
    assert min(len(c.features) for c in alone[1]) < cfg.min_motion_length  # kept by prepare.json's 24
    features = [np.load(os.path.join(root, "new_joint_vecs", f"{c.motion_id}.npy"))
                for root, clips in zip((first, second), alone) for c in clips]
    mean, std = feature_mean_std(features)
    assert np.allclose(train.mean, mean) and np.allclose(train.std, std)
    assert not np.allclose(train.mean, load_mean_std(first)[0])
    with pytest.raises(DataError, match="not found"):
        MotionDataset(_cfg(f"{first},{tmp_path / 'missing'}"), "train")

    # dataset_repeats: the second folder's train motions three times an epoch, the same statistics,
    # and the other splits untouched
    weighted = MotionDataset(cfg.replace(dataset_repeats="1,3"), "train")
    assert [c.motion_id for c in weighted.clips] == ids[:4] + [i for i in ids[4:] for _ in range(3)]
    assert np.allclose(weighted.mean, train.mean) and np.allclose(weighted.std, train.std)
    val = MotionDataset(cfg.replace(dataset_repeats="1,3"), "val")
    assert [c.motion_id for c in val.clips] == [c.motion_id for c in MotionDataset(cfg, "val").clips]
    from config import ConfigError
    with pytest.raises(DataError, match="1 count.s. for the 2 folders"):
        MotionDataset(cfg.replace(dataset_repeats="3"), "train")
    for bad in ("0,1", "1,x"):
        with pytest.raises(ConfigError, match="whole numbers >= 1"):
            cfg.replace(dataset_repeats=bad)
