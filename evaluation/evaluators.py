"""The in-house evaluators: a text-motion matching evaluator in the style of Guo et al. 2022 and
one classifier per label field, trained on the train split's ground truth by the project's one
training loop (training.Trainer), saved together in checkpoints/evaluator.pt.

The matching evaluator's text side is a word-token bi-GRU over a vocabulary built from the
training captions, NOT the generator's text encoder (CLIP / MiniLM), so the numbers do not
reward agreeing with the model under test.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

import metrics
from config import CompositeConfig
from dataset import MotionClip, MotionDataset, load_clips
from evaluation.items import EvalError, LabelSet, draw_items, load_labels
from models.evaluator import LabelClassifier, MatchingEvaluator, build_vocabulary
from runtime import (CheckpointError, DistInfo, checkpoint_path, load_checkpoint, save_checkpoint,
                     seed_everything, select_device, stats_hash)
from training import DataSpec, StageJob, Trainer

R_PRECISION_BATCH = 32  # Guo et al.: each caption against its motion and 31 mismatched ones
IGNORE = -100  # cross-entropy target of a motion without a label in a field


def evaluator_path(cfg: CompositeConfig) -> str:
    """cfg.evaluator_file, or evaluator.pt beside the generator's checkpoints."""
    return cfg.evaluator_file or checkpoint_path(cfg, "evaluator")


# ---------------------------------------------------------------------------------------
# Embeddings in batches
# ---------------------------------------------------------------------------------------
def pad_features(features: list[np.ndarray], mean: np.ndarray, std: np.ndarray,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised, zero-padded batch (B, T, 263) and lengths (B,) of feature arrays (T_i, 263)."""
    lengths = torch.tensor([len(f) for f in features], dtype=torch.long)
    batch = torch.zeros(len(features), int(lengths.max()), features[0].shape[-1])  # (B, T, 263)
    for row, feats in enumerate(features):
        batch[row, :len(feats)] = torch.from_numpy((feats - mean) / std)
    return batch.to(device), lengths.to(device)


@torch.inference_mode()
def embed_motions(encode: Callable, features: list[np.ndarray], mean: np.ndarray, std: np.ndarray,
                  device: torch.device, batch_size: int = 128) -> np.ndarray:
    """Embeddings (N, D) of motions via `encode(motion (B, T, 263), lengths (B,))` (an
    evaluator's encode_motion, or a classifier: then logits)."""
    out = []
    order = np.argsort([-len(f) for f in features])  # similar lengths together: less padding
    for start in range(0, len(features), batch_size):
        chunk = [features[i] for i in order[start:start + batch_size]]
        out.append(encode(*pad_features(chunk, mean, std, device)).float().cpu())
    embeddings = torch.cat(out).numpy()
    result = np.empty_like(embeddings)
    result[order] = embeddings
    return result


@torch.inference_mode()
def embed_captions(evaluator: MatchingEvaluator, captions: list[str], batch_size: int = 256) -> np.ndarray:
    """In-house evaluator embeddings (N, D) of captions."""
    return torch.cat([evaluator.encode_text(captions[i:i + batch_size]).float().cpu()
                      for i in range(0, len(captions), batch_size)]).numpy()


# ---------------------------------------------------------------------------------------
# The trained evaluator as one object
# ---------------------------------------------------------------------------------------
@dataclass
class Evaluators:
    """The matching evaluator, the label classifiers and the statistics they read features with."""
    matcher: MatchingEvaluator
    classifiers: dict[str, LabelClassifier]  # {label field: classifier}
    class_names: dict[str, list[str]]  # {label field: class names}
    mean: np.ndarray  # (263,) the train split's feature statistics
    std: np.ndarray
    device: torch.device
    info: dict = field(default_factory=dict)  # steps, test_r_precision, classifier_test_accuracy, dataset_root

    def motion_embeddings(self, features: list[np.ndarray]) -> np.ndarray:
        return embed_motions(self.matcher.encode_motion, features, self.mean, self.std, self.device)

    def text_embeddings(self, captions: list[str]) -> np.ndarray:
        return embed_captions(self.matcher, captions)

    def accuracy(self, name: str, features: list[np.ndarray], labels: list[dict[str, int]]) -> float:
        """Classifier `name`'s accuracy on the motions labelled in that field; NaN when none is."""
        known = [i for i, lab in enumerate(labels) if name in lab]
        if not known:
            return float("nan")
        logits = embed_motions(self.classifiers[name], [features[i] for i in known], self.mean, self.std,
                               self.device)
        return metrics.accuracy(logits.argmax(axis=1), [labels[i][name] for i in known])


def state_of(module: torch.nn.Module) -> dict:
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


def load_evaluators(cfg: CompositeConfig, device: torch.device) -> tuple[Evaluators, dict]:
    """The trained evaluators from evaluator.pt, and the checkpoint payload."""
    path = evaluator_path(cfg)
    payload = load_checkpoint(path, stage="evaluator")
    if "class_names" not in payload:
        raise CheckpointError(f"{path} was written by an older version (one action classifier); "
                              "retrain it with `python evaluate.py --train_evaluator`")
    saved_cfg = CompositeConfig.from_dict(payload["config"])
    matcher = MatchingEvaluator(saved_cfg, payload["vocab"])
    names = {k: list(v) for k, v in payload["class_names"].items()}
    classifiers = {k: LabelClassifier(saved_cfg, len(v)) for k, v in names.items()}
    try:
        matcher.load_state_dict(payload["model"])
        for name, classifier in classifiers.items():
            classifier.load_state_dict(payload["classifiers"][name])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{path} does not fit its own config ({str(exc).splitlines()[0][:160]}); "
                              "retrain it with `python evaluate.py --train_evaluator`") from None
    for module in (matcher, *classifiers.values()):
        module.to(device).eval().requires_grad_(False)
    info = {k: payload[k] for k in ("test_r_precision", "classifier_test_accuracy", "dataset_root", "step")}
    return Evaluators(matcher, classifiers, names, payload["mean"].numpy(), payload["std"].numpy(), device,
                      info), payload


# ---------------------------------------------------------------------------------------
# Training on the train split's ground truth
# ---------------------------------------------------------------------------------------
def fit(trainer: Trainer, name: str, module: torch.nn.Module, loss_fn: Callable, steps: int, seed: int) -> dict:
    """Train `module` for `steps` steps with the shared Trainer (AdamW, warm-up and cosine
    learning rate, gradient clipping, NaN guard) at cfg.evaluator_lr; no checkpoints of its own."""
    seed_everything(seed)
    summary = trainer.run(StageJob(name, module, loss_fn, total_steps=steps, seed=seed, lr=trainer.cfg.evaluator_lr))
    module.eval()
    return summary


def matching_loss(module: MatchingEvaluator, batch: dict) -> dict:
    return module(batch["motion"], batch["lengths"], batch["captions"])


def classification_loss(labels: LabelSet, name: str) -> Callable:
    """loss_fn(module, batch) of the classifier of label field `name` (unlabelled motions ignored)."""
    def loss_fn(module: LabelClassifier, batch: dict) -> dict:
        target = torch.tensor([labels.of(m).get(name, IGNORE) for m in batch["motion_ids"]],
                              device=batch["motion"].device)
        logits = module(batch["motion"], batch["lengths"])
        known = target != IGNORE
        accuracy = (logits.argmax(1)[known] == target[known]).float().mean() if known.any() else logits.new_zeros(())
        return {"loss": F.cross_entropy(logits, target, ignore_index=IGNORE), "accuracy": accuracy}
    return loss_fn


def evaluator_r_precision(evaluators: Evaluators, clips: list[MotionClip], cfg: CompositeConfig) -> np.ndarray:
    """The evaluator's R-precision top-1/2/3 (3,) on ground truth, mean over cfg.eval_repeats draws."""
    runs = []
    for repeat in range(cfg.eval_repeats):
        items = draw_items(clips, cfg, np.random.default_rng(cfg.seed + repeat), limit=cfg.eval_num_samples)
        text_emb = evaluators.text_embeddings([it.caption for it in items])
        motion_emb = evaluators.motion_embeddings([it.features for it in items])
        runs.append(metrics.r_precision(text_emb, motion_emb, R_PRECISION_BATCH))
    return np.mean(runs, axis=0)


def chance_text(num_samples: int) -> str:
    """R-precision top-1/2/3 of a random matcher with batches of min(32, num_samples)."""
    batch = min(R_PRECISION_BATCH, num_samples)
    return "/".join(f"{k / batch:.3f}" for k in (1, 2, 3))


def train_evaluator(cfg: CompositeConfig, device: Optional[torch.device] = None) -> dict:
    """Train the matching evaluator and one classifier per label field on the train split's
    ground truth; save evaluator.pt atomically and return its payload (with the test split's
    R-precision and classifier accuracies on ground truth)."""
    if cfg.evaluator_steps < 1 or cfg.classifier_steps < 1:
        raise EvalError("--evaluator_steps and --classifier_steps must be >= 1 to train the evaluator")
    device = device or select_device(cfg)
    seed_everything(cfg.seed)
    train_set, val_set = MotionDataset(cfg, "train"), MotionDataset(cfg, "val")
    test_clips = load_clips(train_set.root, "test", cfg)
    labels = load_labels(train_set.root)
    vocab = build_vocabulary(train_set.all_captions())
    print(f"evaluator: {len(train_set)} train clips, {len(test_clips)} test clips from {train_set.root}, "
          f"vocabulary of {len(vocab) - 2} words, label fields {labels.fields or 'none'}, device {device}", flush=True)
    # The evaluators' own schedule: no warm-up, full precision (small GRUs), the Trainer's loop.
    trainer = Trainer(cfg.replace(warmup_steps=0, amp=False), DistInfo(), device, DataSpec(train_set, val_set))
    matcher = MatchingEvaluator(cfg, vocab)
    fit(trainer, "evaluator", matcher, matching_loss, cfg.evaluator_steps, cfg.seed)
    classifiers = {}
    for offset, name in enumerate(labels.fields, start=1):
        seed_everything(cfg.seed + offset)
        classifiers[name] = LabelClassifier(cfg, len(labels.names[name]))
        fit(trainer, f"{name}_classifier", classifiers[name], classification_loss(labels, name),
            cfg.classifier_steps, cfg.seed + offset)
    evaluators = Evaluators(matcher, classifiers, labels.names, train_set.mean, train_set.std, device)
    r_prec = evaluator_r_precision(evaluators, test_clips, cfg)
    test_items = draw_items(test_clips, cfg, None, labels)
    accuracy = {name: evaluators.accuracy(name, [it.features for it in test_items], [it.labels for it in test_items])
                for name in labels.fields}
    accuracy = {name: None if np.isnan(value) else value for name, value in accuracy.items()}
    print(f"evaluator test-split R-precision on ground truth: top-1 {r_prec[0]:.3f}, top-2 {r_prec[1]:.3f}, "
          f"top-3 {r_prec[2]:.3f} (chance {chance_text(min(cfg.eval_num_samples, len(test_clips)))})", flush=True)
    for name, value in accuracy.items():
        measured = "no labelled test motion" if value is None else f"{value:.3f}"
        print(f"{name} classifier test accuracy on ground truth: {measured} ({len(labels.names[name])} classes, "
              f"chance {1 / len(labels.names[name]):.3f})", flush=True)
    payload = {"model": state_of(matcher), "classifiers": {k: state_of(v) for k, v in classifiers.items()},
               "class_names": labels.names, "vocab": vocab, "config": cfg.to_dict(), "step": cfg.evaluator_steps,
               "stage": "evaluator", "mean": torch.from_numpy(train_set.mean), "std": torch.from_numpy(train_set.std),
               "data_hash": stats_hash(train_set.mean, train_set.std), "dataset_root": train_set.root,
               "test_r_precision": [float(x) for x in r_prec], "classifier_test_accuracy": accuracy}
    save_checkpoint(evaluator_path(cfg), payload)
    print(f"wrote {evaluator_path(cfg)}", flush=True)
    return payload
