"""The test items the evaluation scores: features, caption, its word/POS tokens, and labels.

Labels come from `<root>/labels.json` ({motion id: {field: value, ...}}): the embedded
procedural set has an `action` per motion, the prepared Bandai Namco set a `content` and a
`style` (and an `action` that repeats the content). Each categorical field gets its own
classifier (see evaluation.evaluators).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from config import CompositeConfig
from dataset import DataError, MotionClip
from models.evaluator import caption_words

UNIT_LENGTH = 4  # evaluated motions are cut to a multiple of 4 frames (the evaluators' time step)
LABEL_FIELDS = ("content", "style", "action")  # label fields scored by a classifier, when present


class EvalError(ValueError):
    """Evaluation cannot run as asked; the one-line message says why and what to do."""


@dataclass
class EvalItem:
    motion_id: str
    features: np.ndarray  # (T, 263) unnormalised, T a multiple of UNIT_LENGTH
    caption: str
    tokens: list[str]  # HumanML3D `word/POS` tokens of the caption ([] when the file has none)
    labels: dict[str, int] = field(default_factory=dict)  # {label field: class index}, known ones only

    def caption_tokens(self) -> list[str]:
        """The `word/POS` tokens, or the caption's plain words (POS OTHER) when there are none."""
        return self.tokens or [f"{w}/OTHER" for w in caption_words(self.caption)]


@dataclass
class LabelSet:
    """The categorical labels of a data set: class names per field and each motion's classes."""
    names: dict[str, list[str]] = field(default_factory=dict)  # {field: sorted class names}
    index: dict[str, dict[str, int]] = field(default_factory=dict)  # {field: {motion id: class}}

    @property
    def fields(self) -> list[str]:
        return list(self.names)

    def of(self, motion_id: str) -> dict[str, int]:
        """{field: class index} of a motion or clip id (`012314@1.5-4` has 012314's labels)."""
        base = base_motion_id(motion_id)
        return {f: index[base] for f, index in self.index.items() if base in index}


def base_motion_id(clip_id: str) -> str:
    """The motion file id of a clip id (`012314@1.5-4` -> `012314`)."""
    return clip_id.split("@", 1)[0]


def read_labels_file(root: str) -> dict[str, dict]:
    """<root>/labels.json as {motion id: {field: value}}; {} when the data set has none."""
    path = os.path.join(root, "labels.json")
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as fh:
            raw = json.load(fh)
        if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
            raise TypeError
    except (json.JSONDecodeError, TypeError):
        raise DataError(f"{path} must map each motion id to {{\"action\": name, ...}}") from None
    return {str(k): v for k, v in raw.items()}


def label_field(raw: dict[str, dict], name: str) -> dict[str, str]:
    """{motion id: class name} of one field, for the motions whose value is a string."""
    return {k: v[name] for k, v in raw.items() if isinstance(v.get(name), str)}


def load_labels(root: str) -> LabelSet:
    """The label fields of LABEL_FIELDS found in <root>/labels.json, each with two or more
    classes, skipping a field that only repeats one kept before it (Bandai's action = content)."""
    raw = read_labels_file(root)
    labels = LabelSet()
    kept: list[dict[str, str]] = []
    for name in LABEL_FIELDS:
        values = label_field(raw, name)
        classes = sorted(set(values.values()))
        if len(classes) < 2 or values in kept:
            continue
        kept.append(values)
        lookup = {c: i for i, c in enumerate(classes)}
        labels.names[name] = classes
        labels.index[name] = {k: lookup[v] for k, v in values.items()}
    return labels


def load_action_labels(root: str) -> tuple[list[str], dict[str, int]]:
    """Action names and {motion id: action index} from <root>/labels.json; ([], {}) without."""
    actions = label_field(read_labels_file(root), "action")
    names = sorted(set(actions.values()))
    lookup = {a: i for i, a in enumerate(names)}
    return names, {k: lookup[v] for k, v in actions.items()}


def eval_length(num_frames: int, cfg: CompositeConfig) -> int:
    """Frames of a motion as evaluated: at most cfg.max_motion_length, cut to a multiple of 4."""
    return min(num_frames, cfg.max_motion_length) // UNIT_LENGTH * UNIT_LENGTH


def draw_items(clips: list[MotionClip], cfg: CompositeConfig, rng: Optional[np.random.Generator],
               labels: Optional[LabelSet] = None, limit: Optional[int] = None) -> list[EvalItem]:
    """Test items in a random order with a random caption and crop each (rng), or every clip in
    order with its first caption and first frames (rng None)."""
    labels = labels or LabelSet()
    order = rng.permutation(len(clips)) if rng is not None else np.arange(len(clips))
    items = []
    for index in order[:limit]:
        clip = clips[int(index)]
        length = eval_length(len(clip.features), cfg)
        start = int(rng.integers(0, len(clip.features) - length + 1)) if rng is not None else 0
        which = int(rng.integers(0, len(clip.captions))) if rng is not None else 0
        tokens = clip.tokens[which] if which < len(clip.tokens) else []
        items.append(EvalItem(clip.motion_id, clip.features[start:start + length], clip.captions[which],
                              tokens, labels.of(clip.motion_id)))
    return items


def example_items(items: list[EvalItem], labels: LabelSet, count: int) -> list[EvalItem]:
    """Up to `count` items for pictures: each of another class of the first label field, and
    where possible of another class of the second field too; the first items without labels."""
    if not labels.fields:
        return items[:count]
    first = labels.fields[0]
    second = labels.fields[1] if len(labels.fields) > 1 else None
    chosen: list[EvalItem] = []
    for strict in (True, False):
        for item in items:
            if len(chosen) == count:
                return chosen
            if first not in item.labels or any(c is item or c.labels[first] == item.labels[first] for c in chosen):
                continue
            if strict and second and any(c.labels.get(second) == item.labels.get(second) for c in chosen):
                continue
            chosen.append(item)
    return chosen or items[:count]
