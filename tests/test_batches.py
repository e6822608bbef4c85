"""training.data.BatchStream's epochs: every sample once, rank slices that make the single
process's batch, and length buckets that cut padding without changing any sample's key."""
import pytest
import torch

from dataset import DataError
from runtime import DistInfo
from training.data import BatchStream


class Lengths(torch.utils.data.Dataset):
    """Only what the stream's epoch plan reads: a size and each item's length."""

    def __init__(self, lengths):
        self.lengths = lengths

    def __len__(self):
        return len(self.lengths)

    def item_lengths(self):
        return list(self.lengths)


LENGTHS = torch.randint(20, 197, (1000,), generator=torch.Generator().manual_seed(0)).tolist()


def padded_frames(dataset, batches) -> int:
    return sum(max(dataset.lengths[i] for i, _ in batch) * len(batch) for batch in batches)


@pytest.mark.parametrize("buckets", [0, 8])
def test_an_epoch_shows_each_sample_once_and_two_ranks_split_the_single_batch(buckets):
    data = Lengths(LENGTHS)
    single = BatchStream(data, 64, DistInfo(), seed=3, length_buckets=buckets).epoch_batches()
    ranks = [BatchStream(data, 64, DistInfo(rank=r, world_size=2), seed=3, length_buckets=buckets).epoch_batches()
             for r in range(2)]
    assert len(single) == 1000 // 64
    for k, batch in enumerate(single):
        assert batch == ranks[0][k] + ranks[1][k]
    pairs = [pair for batch in single for pair in batch]
    assert len({i for i, _ in pairs}) == len(pairs) == 15 * 64


def test_length_buckets_cut_padding_and_keep_every_sample_key():
    data = Lengths(LENGTHS)
    plain = BatchStream(data, 64, DistInfo(), seed=3).epoch_batches()
    bucketed = BatchStream(data, 64, DistInfo(), seed=3, length_buckets=8).epoch_batches()
    assert sorted(p for b in plain for p in b) == sorted(p for b in bucketed for p in b)
    real = sum(LENGTHS[i] for b in plain for i, _ in b)
    assert padded_frames(data, bucketed) < 0.75 * padded_frames(data, plain)
    assert padded_frames(data, bucketed) >= real
    spreads = [max(LENGTHS[i] for i, _ in b) - min(LENGTHS[i] for i, _ in b) for b in bucketed]
    assert max(spreads[:-1]) < 100  # similar lengths in a batch (random batches span ~170 frames)
    first_lengths = [LENGTHS[b[0][0]] for b in bucketed]
    assert first_lengths != sorted(first_lengths)  # the batches themselves come in random order


def test_a_resumed_stream_continues_the_same_bucketed_epoch():
    data = Lengths(LENGTHS)
    whole = BatchStream(data, 64, DistInfo(), seed=3, length_buckets=4).epoch_batches()
    resumed = BatchStream(data, 64, DistInfo(), seed=3, length_buckets=4)
    resumed.load_state({"epoch": 0, "batches_taken": 5})
    assert resumed.epoch_batches() == whole[5:]


def test_length_buckets_need_item_lengths():
    with pytest.raises(DataError, match="length_buckets needs a data set with item_lengths"):
        BatchStream(list(range(100)), 8, DistInfo(), seed=0, length_buckets=4)


def test_motion_dataset_item_lengths_are_the_lengths_it_returns(tmp_path):
    from conftest import write_humanml3d_folder
    from config import CompositeConfig
    from dataset import MotionDataset
    write_humanml3d_folder(str(tmp_path), num_motions=12, frames=(45, 80))
    cfg = CompositeConfig(dataset_root=str(tmp_path), dataset_kind="humanml3d", max_motion_length=60)
    data = MotionDataset(cfg, "train")
    assert data.item_lengths() == [data[i]["length"] for i in range(len(data))]
    assert max(data.item_lengths()) == 60
