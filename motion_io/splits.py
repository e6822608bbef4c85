"""Train/val/test split of labelled takes: by take, stratified by (content, style), with every
content and every style label in every split.

1. Takes are grouped into (content, style) cells; each cell is shuffled (seeded by the cell's
   name, so a cell's order does not depend on the other cells) and the cells are laid end to end.
   Walking that list, each take goes to the split furthest below its share so far (systematic
   stratified sampling): a cell of 16 takes gives about 13/1-2/1-2, and cells of one take are
   spread evenly over the splits.
2. Repair: while a split lacks a label, a take carrying it moves there from a split that keeps
   the label (and the take's other label) without it, preferring takes that bring two missing
   labels and the split with the most takes. Labels with fewer than 3 takes cannot be in every
   split; they are left where step 1 put them (prepare_data.py drops them by default).
"""
from __future__ import annotations

import zlib
from typing import Optional

import numpy as np

SPLITS = ("train", "val", "test")


def _cell_order(labels: dict, seed: int) -> list:
    cells: dict = {}
    for take in sorted(labels):
        cells.setdefault(labels[take], []).append(take)
    order = []
    for cell in sorted(cells):
        takes = cells[cell]
        rng = np.random.default_rng([seed, zlib.crc32("|".join(cell).encode())])
        order.extend(takes[i] for i in rng.permutation(len(takes)))
    return order


def _systematic(order: list, fractions: tuple) -> dict:
    assigned = {}
    counts = np.zeros(len(SPLITS))
    for i, take in enumerate(order):
        deficit = np.asarray(fractions) * (i + 1) - counts
        k = int(np.argmax(deficit))
        counts[k] += 1
        assigned[take] = SPLITS[k]
    return assigned


def _label_counts(assigned: dict, labels: dict) -> dict:
    """{(split, family, label): count} with family 0 = content, 1 = style."""
    counts: dict = {}
    for take, split in assigned.items():
        for family, label in enumerate(labels[take]):
            counts[(split, family, label)] = counts.get((split, family, label), 0) + 1
    return counts


def _best_move(split: str, family: int, label: str, assigned: dict, labels: dict, counts: dict):
    """The take to move into `split` so that it gains `label`, or None."""
    sizes = {s: 0 for s in SPLITS}
    for s in assigned.values():
        sizes[s] += 1
    best, best_key = None, None
    for take in sorted(assigned):
        donor = assigned[take]
        if donor == split or labels[take][family] != label:
            continue
        if any(counts.get((donor, f, lab), 0) < 2 for f, lab in enumerate(labels[take])):
            continue  # the donor would lose one of the take's labels
        other = labels[take][1 - family]
        brings_two = counts.get((split, 1 - family, other), 0) == 0
        key = (brings_two, sizes[donor])
        if best_key is None or key > best_key:
            best, best_key = take, key
    return best


def _repair(assigned: dict, labels: dict) -> None:
    families = [sorted({lab[f] for lab in labels.values()}) for f in (0, 1)]
    totals = _label_counts({t: "all" for t in labels}, labels)
    for split in SPLITS:
        for family in (0, 1):
            for label in families[family]:
                if totals[("all", family, label)] < len(SPLITS):
                    continue
                counts = _label_counts(assigned, labels)
                if counts.get((split, family, label), 0):
                    continue
                take = _best_move(split, family, label, assigned, labels, counts)
                if take is not None:
                    assigned[take] = split


def stratified_split(labels: dict, fractions: tuple = (0.8, 0.1, 0.1), seed: int = 0) -> dict:
    """{'train': [take ids], 'val': [...], 'test': [...]} (sorted) from {take id: (content, style)}.

    No take is in two splits; every label with at least 3 takes is in every split (see the
    module docstring for how).
    """
    if len(fractions) != len(SPLITS) or min(fractions) <= 0:
        raise ValueError(f"split fractions must be three positive numbers, got {fractions}")
    fractions = tuple(f / sum(fractions) for f in fractions)
    assigned = _systematic(_cell_order(labels, seed), fractions)
    _repair(assigned, labels)
    return {split: sorted(t for t, s in assigned.items() if s == split) for split in SPLITS}


def missing_labels(splits: dict, labels: dict, min_takes: int = 3) -> Optional[str]:
    """A one-line description of labels (with >= min_takes takes) absent from some split, or None."""
    assigned = {take: split for split, takes in splits.items() for take in takes}
    counts = _label_counts(assigned, labels)
    totals = _label_counts({t: "all" for t in labels}, labels)
    gaps = [f"{label} not in {split}" for (_, family, label), n in sorted(totals.items())
            if n >= min_takes for split in SPLITS if not counts.get((split, family, label))]
    return "; ".join(gaps) if gaps else None
