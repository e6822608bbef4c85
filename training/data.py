"""Batches for the training loop that do not depend on how many processes train.

Two rules make a run with W processes of batch B/W equal a run with one process of batch B:

- **Global batches.** Every epoch has one shuffled order, the same on all ranks. Global batch k
  is order[k*B : (k+1)*B]; rank r takes the contiguous slice r of it. The ranks' batches at a
  step are thus exactly the single process's batch, split in rank order.
- **Randomness keyed by sample.** Each sample drawn for training has a key (the epoch and its
  position in that epoch's order; for validation, its position in the split). The item's own
  randomness (the data set's random crop and caption) runs under a torch seed made from that
  key, and the loss's per-sample randomness (noise, timesteps, text-drop flags, keyframe masks,
  token corruption) comes from one generator per row, also seeded from the key. A sample's
  draws therefore do not depend on which rank holds it, on the batch size, or on the
  number of data workers.

Optionally (cfg.length_buckets = n), each run of n global batches of the shuffled order is
sorted by motion length and cut again into n global batches, and the epoch's batches are then
shuffled: batches hold motions of similar length, so they carry fewer padded frames, while each
sample keeps its key and is still seen once an epoch.
"""
from __future__ import annotations

import hashlib
from typing import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from dataset import DataError, collate_motions
from runtime import DistInfo

Collate = Callable[[list], dict]


def keyed_seed(*parts) -> int:
    """A 63-bit seed that is a fixed function of `parts` (ints, strings, tuples of those)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def row_generators(seed: int, keys: list, device: torch.device) -> list[torch.Generator]:
    """One generator per batch row, on `device`, seeded from (seed, the row's sample key)."""
    return [torch.Generator(device=device).manual_seed(keyed_seed(seed, "row", key)) for key in keys]


class KeyedItems(Dataset):
    """A data set read by (index, key) pairs: item `index` is built under a torch seed made from
    (seed, key), so its random crop and caption depend on the key alone. Returns (item, key)."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, pair: tuple[int, tuple]) -> tuple[dict, tuple]:
        index, key = pair
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(keyed_seed(self.seed, "item", key))
            return self.dataset[index], key


class KeyedCollate:
    """collate(items) of (item, key) pairs, plus `sample_keys`: the batch's keys in row order."""

    def __init__(self, collate: Collate):
        self.collate = collate

    def __call__(self, pairs: list[tuple[dict, tuple]]) -> dict:
        batch = self.collate([item for item, _ in pairs])
        batch["sample_keys"] = [key for _, key in pairs]
        return batch


def keyed_loader(dataset: Dataset, batches: list[list[tuple[int, tuple]]], seed: int,
                 collate: Collate = collate_motions, num_workers: int = 0) -> DataLoader:
    """A DataLoader over given batches of (index, key) pairs. Its private generator keeps the
    loader from drawing on the global RNG, whose state checkpoints restore."""
    return DataLoader(KeyedItems(dataset, seed), batch_sampler=batches, collate_fn=KeyedCollate(collate),
                      num_workers=num_workers, generator=torch.Generator().manual_seed(seed))


class BatchStream:
    """Endless training batches of this rank over epochs of global batches (see the module
    docstring). `state()` (epoch, global batches taken) is the same on every rank and for any
    number of ranks; `load_state` continues from it."""

    def __init__(self, dataset: Dataset, batch_size: int, info: DistInfo, seed: int,
                 num_workers: int = 0, collate: Collate = collate_motions, length_buckets: int = 0):
        self.dataset, self.seed, self.collate, self.num_workers = dataset, seed, collate, num_workers
        self.length_buckets = length_buckets
        if length_buckets > 0 and not hasattr(dataset, "item_lengths"):
            raise DataError(f"length_buckets needs a data set with item_lengths(); {type(dataset).__name__} "
                            "has none (set length_buckets=0)")
        self.rank = info.rank
        self.per_rank_batch = max(1, batch_size // info.world_size)
        self.global_batch = self.per_rank_batch * info.world_size
        self.batches_per_epoch = len(dataset) // self.global_batch
        if self.batches_per_epoch == 0:
            raise DataError(f"the training split has fewer motions ({len(dataset)}) than one batch "
                            f"({self.global_batch}); lower --batch_size")
        self.epoch = 0
        self.batches_taken = 0
        self._iterator: Iterator | None = None

    def epoch_positions(self, order: list[int]) -> list[list[int]]:
        """The epoch's global batches as positions in its shuffled `order` (the same on every rank)."""
        G, n = self.global_batch, self.batches_per_epoch
        positions = [list(range(k * G, (k + 1) * G)) for k in range(n)]
        if self.length_buckets <= 0:
            return positions
        lengths = self.dataset.item_lengths()
        span = G * self.length_buckets
        regrouped = []
        for start in range(0, n * G, span):
            run = sorted(range(start, min(start + span, n * G)), key=lambda p: lengths[order[p]])
            regrouped += [run[i:i + G] for i in range(0, len(run), G)]
        shuffle = torch.randperm(n, generator=torch.Generator().manual_seed(
            keyed_seed(self.seed, "buckets", self.epoch))).tolist()
        return [regrouped[k] for k in shuffle]

    def epoch_order(self) -> list[int]:
        return torch.randperm(len(self.dataset), generator=torch.Generator().manual_seed(
            keyed_seed(self.seed, "epoch", self.epoch))).tolist()

    def epoch_batches(self) -> list[list[tuple[int, tuple]]]:
        """This rank's remaining batches of the current epoch as (index, key) pairs."""
        order = self.epoch_order()
        first = self.rank * self.per_rank_batch
        return [[(order[p], ("train", self.epoch, p)) for p in batch[first:first + self.per_rank_batch]]
                for batch in self.epoch_positions(order)[self.batches_taken:]]

    def next(self) -> dict:
        """The next batch (collated, with `sample_keys`)."""
        if self._iterator is None:
            loader = keyed_loader(self.dataset, self.epoch_batches(), keyed_seed(self.seed, "workers", self.epoch),
                                  self.collate, self.num_workers)
            self._iterator = iter(loader)
        try:
            batch = next(self._iterator)
        except StopIteration:
            self.epoch += 1
            self.batches_taken = 0
            self._iterator = None
            return self.next()
        self.batches_taken += 1
        return batch

    def state(self) -> dict:
        return {"epoch": self.epoch, "batches_taken": self.batches_taken}

    def load_state(self, state: dict) -> None:
        self.epoch, self.batches_taken = int(state["epoch"]), int(state["batches_taken"])
        self._iterator = None


def validation_batches(dataset: Dataset, batch_size: int, num_batches: int, info: DistInfo,
                       collate: Collate = collate_motions) -> DataLoader:
    """This rank's share of the first `num_batches` batches of `dataset` in order (batch i goes
    to rank i % world_size), keyed ("val", position) so every pass draws the same randomness."""
    indices = list(range(min(len(dataset), num_batches * batch_size)))
    batches = [[(i, ("val", i)) for i in indices[start:start + batch_size]]
               for start in range(0, len(indices), batch_size)]
    return keyed_loader(dataset, batches[info.rank::info.world_size], keyed_seed("val"), collate)
