"""Evaluate the composite text-to-motion model with the HumanML3D protocol, against ground truth
and against its own parts.

    python evaluate.py --train_evaluator   # train checkpoints/evaluator.pt on the train split
    python evaluate.py                     # the metric table on the test split -> results/

The metrics come from a text-motion matching evaluator in the style of Guo et al. 2022 that is
trained here, contrastively, on the training split's ground truth only. Its text side is a
word-token bi-GRU over a vocabulary built from the training captions, NOT the generator's text
encoder (CLIP / MiniLM), so the numbers do not reward agreeing with the model under test. On
the embedded data set an action classifier trained on ground truth also scores whether generated
motions show the captioned action. When `--t2m_evaluator_path` and `--glove_path` name the
field's own evaluator checkpoint and GloVe files, its FID / R-precision / MM-Dist are reported too.

Rows: ground truth; composite (GPT keyframes + diffusion in-betweening); AR only (keyframes,
linear interpolation); diffusion only (text, no keyframes); composite at several DDIM step
counts with the generation time per motion. Every metric is the mean of cfg.eval_repeats runs
with its 95% confidence interval (1.96 * std / sqrt(n)).
"""
from __future__ import annotations

import json
import math
import os
import pickle
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

import metrics
from config import CompositeConfig, ConfigError, config_from_args, make_parser
from dataset import (DataError, MotionClip, MotionDataset, ensure_dataset, load_clips, load_mean_std,
                     make_loader)
from models.evaluator import (OFFICIAL_MAX_TEXT_LEN, OFFICIAL_SIZES, POS_ENUMERATOR, VIP_WORDS,
                              ActionClassifier, MatchingEvaluator, OfficialT2MEvaluator, build_vocabulary,
                              caption_words)
from runtime import (CheckpointError, load_checkpoint, save_checkpoint, seed_everything, select_device, stats_hash,
                     write_atomic)
from utils import features_to_joints

# The published protocol's constants (Guo et al. 2022), not tunable hyperparameters.
R_PRECISION_BATCH = 32  # each caption against its motion and 31 mismatched ones
DIVERSITY_PAIRS = 300
MM_PAIRS = 10  # sample pairs per prompt for MultiModality
UNIT_LENGTH = 4  # evaluated motions are cut to a multiple of 4 frames
GENERATOR_STAGES = ("vqvae", "gpt", "diffusion")
ROW_CHOICES = ("gt", "composite", "ar", "diffusion", "ddim")


class EvalError(ValueError):
    """Evaluation cannot run as asked; the one-line message says why and what to do."""


# ---------------------------------------------------------------------------------------
# The test items: features, caption, word/POS tokens, action label
# ---------------------------------------------------------------------------------------
@dataclass
class EvalItem:
    motion_id: str
    features: np.ndarray  # (T, 263) unnormalised, T a multiple of UNIT_LENGTH
    caption: str
    tokens: list[str]  # HumanML3D `word/POS` tokens of the caption ([] when the file has none)
    action: int  # index into the action list, -1 when unknown


def base_motion_id(clip_id: str) -> str:
    """The motion file id of a clip id (`012314@1.5-4` -> `012314`)."""
    return clip_id.split("@", 1)[0]


def read_caption_tokens(root: str, clips: list[MotionClip]) -> dict[tuple[str, str], list[str]]:
    """{(motion id, caption): `word/POS` tokens} from the clips' texts/<id>.txt files."""
    tokens = {}
    for motion_id in {base_motion_id(c.motion_id) for c in clips}:
        path = os.path.join(root, "texts", f"{motion_id}.txt")
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                parts = line.strip().split("#")
                if len(parts) >= 2 and parts[0].strip() and parts[1].strip():
                    tokens[(motion_id, parts[0].strip())] = parts[1].split()
    return tokens


def load_action_labels(root: str) -> tuple[list[str], dict[str, int]]:
    """Action names and {motion id: action index} from <root>/labels.json (embedded data set);
    ([], {}) when the data set has no labels."""
    path = os.path.join(root, "labels.json")
    if not os.path.exists(path):
        return [], {}
    try:
        with open(path) as fh:
            raw = json.load(fh)
        names = {str(k): str(v["action"]) for k, v in raw.items()}
    except (json.JSONDecodeError, AttributeError, KeyError, TypeError):
        raise DataError(f"{path} must map each motion id to {{\"action\": name, ...}}") from None
    actions = sorted(set(names.values()))
    index = {a: i for i, a in enumerate(actions)}
    return actions, {k: index[v] for k, v in names.items()}


def eval_length(num_frames: int, cfg: CompositeConfig) -> int:
    """Frames of a motion as evaluated: at most cfg.max_motion_length, cut to a multiple of 4."""
    return min(num_frames, cfg.max_motion_length) // UNIT_LENGTH * UNIT_LENGTH


def draw_items(clips: list[MotionClip], cfg: CompositeConfig, rng: Optional[np.random.Generator],
               tokens: dict, labels: dict[str, int], limit: Optional[int] = None) -> list[EvalItem]:
    """Test items in a random order with a random caption and crop each (rng), or every clip in
    order with its first caption and first frames (rng None)."""
    order = rng.permutation(len(clips)) if rng is not None else np.arange(len(clips))
    items = []
    for index in order[:limit]:
        clip = clips[int(index)]
        length = eval_length(len(clip.features), cfg)
        start = int(rng.integers(0, len(clip.features) - length + 1)) if rng is not None else 0
        caption = clip.captions[int(rng.integers(0, len(clip.captions)))] if rng is not None else clip.captions[0]
        motion_id = base_motion_id(clip.motion_id)
        items.append(EvalItem(clip.motion_id, clip.features[start:start + length], caption,
                              tokens.get((motion_id, caption), []), labels.get(motion_id, -1)))
    return items


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
def embed_motions(encode, features: list[np.ndarray], mean: np.ndarray, std: np.ndarray,
                  device: torch.device, batch_size: int = 128) -> np.ndarray:
    """Evaluator embeddings (N, D) of motions, via `encode(motion (B, T, 263), lengths (B,))`."""
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


@torch.inference_mode()
def classify_actions(classifier: ActionClassifier, features: list[np.ndarray], mean: np.ndarray,
                     std: np.ndarray, device: torch.device) -> np.ndarray:
    """Predicted action indices (N,) of motions."""
    logits = embed_motions(classifier, features, mean, std, device)
    return logits.argmax(axis=1)


# ---------------------------------------------------------------------------------------
# Training the in-house evaluator and the action classifier (ground truth, train split)
# ---------------------------------------------------------------------------------------
def evaluator_path(cfg: CompositeConfig) -> str:
    return os.path.join(cfg.checkpoint_dir, "evaluator.pt")


def _batches(loader):
    while True:
        yield from loader


def _cosine_lr(base_lr: float, step: int, total: int) -> float:
    return base_lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / max(total, 1))))


def _train_loop(name: str, module: torch.nn.Module, loss_fn, loader, cfg: CompositeConfig, steps: int) -> None:
    """Optimise `module` for `steps` steps with AdamW and a cosine learning rate, logging 5 times."""
    optimizer = torch.optim.AdamW(module.parameters(), lr=cfg.evaluator_lr, weight_decay=cfg.weight_decay)
    module.train()
    running, log_every = [], max(1, steps // 5)
    started = time.perf_counter()
    for step, batch in zip(range(steps), _batches(loader)):
        for group in optimizer.param_groups:
            group["lr"] = _cosine_lr(cfg.evaluator_lr, step, steps)
        loss, accuracy = loss_fn(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else 1e9)
        optimizer.step()
        running.append((loss.item(), accuracy.item()))
        if (step + 1) % log_every == 0 or step + 1 == steps:
            loss_mean, acc_mean = np.mean(running, axis=0)
            print(f"[{name}] step {step + 1}/{steps}: loss {loss_mean:.4f}, batch accuracy "
                  f"{acc_mean:.3f} ({time.perf_counter() - started:.0f}s)", flush=True)
            running = []
    module.eval()


def chance_text(num_samples: int) -> str:
    """R-precision top-1/2/3 of a random matcher with batches of min(32, num_samples)."""
    batch = min(R_PRECISION_BATCH, num_samples)
    return "/".join(f"{k / batch:.3f}" for k in (1, 2, 3))


def evaluator_r_precision(evaluator: MatchingEvaluator, clips: list[MotionClip], cfg: CompositeConfig,
                          mean: np.ndarray, std: np.ndarray, device: torch.device) -> np.ndarray:
    """The evaluator's R-precision top-1/2/3 (3,) on ground truth, mean over cfg.eval_repeats draws."""
    runs = []
    for repeat in range(cfg.eval_repeats):
        items = draw_items(clips, cfg, np.random.default_rng(cfg.seed + repeat), {}, {}, cfg.eval_num_samples)
        text_emb = embed_captions(evaluator, [it.caption for it in items])
        motion_emb = embed_motions(evaluator.encode_motion, [it.features for it in items], mean, std, device)
        runs.append(metrics.r_precision(text_emb, motion_emb, R_PRECISION_BATCH))
    return np.mean(runs, axis=0)


def train_evaluator(cfg: CompositeConfig, device: Optional[torch.device] = None) -> dict:
    """Train the matching evaluator (and, on a labelled data set, the action classifier) on the
    train split's ground truth; save cfg.checkpoint_dir/evaluator.pt atomically and return its
    payload (which holds the test-split R-precision and classifier accuracy)."""
    if cfg.evaluator_steps < 1 or cfg.classifier_steps < 1:
        raise EvalError("--evaluator_steps and --classifier_steps must be >= 1 to train the evaluator")
    device = device or select_device(cfg)
    seed_everything(cfg.seed)
    train_set = MotionDataset(cfg, "train")
    test_clips = load_clips(train_set.root, "test", cfg)
    mean, std = train_set.mean, train_set.std
    vocab = build_vocabulary(train_set.all_captions())
    print(f"evaluator: {len(train_set)} train clips, {len(test_clips)} test clips from {train_set.root}, "
          f"vocabulary of {len(vocab) - 2} words, device {device}", flush=True)

    matcher = MatchingEvaluator(cfg, vocab).to(device)
    loader = make_loader(train_set, cfg, shuffle=True, seed=cfg.seed)

    def matching_loss(batch):
        out = matcher(batch["motion"].to(device), batch["lengths"].to(device), batch["captions"])
        return out["loss"], out["accuracy"]

    _train_loop("matching evaluator", matcher, matching_loss, loader, cfg, cfg.evaluator_steps)
    r_prec = evaluator_r_precision(matcher, test_clips, cfg, mean, std, device)
    print(f"evaluator test-split R-precision on ground truth: top-1 {r_prec[0]:.3f}, top-2 {r_prec[1]:.3f}, "
          f"top-3 {r_prec[2]:.3f} (chance {chance_text(min(cfg.eval_num_samples, len(test_clips)))})", flush=True)

    actions, labels = load_action_labels(train_set.root)
    classifier_state, classifier_accuracy = {}, None
    if actions:
        classifier = ActionClassifier(cfg, len(actions)).to(device)

        def classification_loss(batch):
            target = torch.tensor([labels.get(base_motion_id(m), -100) for m in batch["motion_ids"]], device=device)
            logits = classifier(batch["motion"].to(device), batch["lengths"].to(device))
            known = target >= 0
            hits = (logits.argmax(1)[known] == target[known]).float()
            accuracy = hits.mean() if known.any() else logits.new_zeros(())
            return F.cross_entropy(logits, target, ignore_index=-100), accuracy

        seed_everything(cfg.seed + 1)
        _train_loop("action classifier", classifier, classification_loss,
                    make_loader(train_set, cfg, shuffle=True, seed=cfg.seed + 1), cfg, cfg.classifier_steps)
        test_items = [it for it in draw_items(test_clips, cfg, None, {}, labels) if it.action >= 0]
        predicted = classify_actions(classifier, [it.features for it in test_items], mean, std, device)
        classifier_accuracy = metrics.accuracy(predicted, [it.action for it in test_items])
        classifier_state = {k: v.detach().cpu() for k, v in classifier.state_dict().items()}
        print(f"action classifier test accuracy on ground truth: {classifier_accuracy:.3f} "
              f"({len(actions)} actions, chance {1 / len(actions):.3f})", flush=True)

    payload = {"model": {k: v.detach().cpu() for k, v in matcher.state_dict().items()},
               "classifier": classifier_state, "actions": actions, "vocab": vocab,
               "config": cfg.to_dict(), "step": cfg.evaluator_steps, "stage": "evaluator",
               "mean": torch.from_numpy(mean), "std": torch.from_numpy(std),
               "data_hash": stats_hash(mean, std), "dataset_root": train_set.root,
               "test_r_precision": [float(x) for x in r_prec], "classifier_test_accuracy": classifier_accuracy}
    save_checkpoint(evaluator_path(cfg), payload)
    print(f"wrote {evaluator_path(cfg)}", flush=True)
    return payload


def load_evaluator(cfg: CompositeConfig, device: torch.device
                   ) -> tuple[MatchingEvaluator, Optional[ActionClassifier], dict]:
    """The trained evaluator (and action classifier, None without labels) from evaluator.pt."""
    payload = load_checkpoint(evaluator_path(cfg), stage="evaluator")
    saved_cfg = CompositeConfig.from_dict(payload["config"])
    evaluator = MatchingEvaluator(saved_cfg, payload["vocab"])
    classifier = ActionClassifier(saved_cfg, len(payload["actions"])) if payload["actions"] else None
    try:
        evaluator.load_state_dict(payload["model"])
        if classifier is not None:
            classifier.load_state_dict(payload["classifier"])
    except RuntimeError as exc:
        raise CheckpointError(f"{evaluator_path(cfg)} does not fit its own config ({str(exc).splitlines()[0][:160]}); "
                              "retrain it with `python evaluate.py --train_evaluator`") from None
    evaluator.to(device).eval().requires_grad_(False)
    if classifier is not None:
        classifier.to(device).eval().requires_grad_(False)
    return evaluator, classifier, payload


# ---------------------------------------------------------------------------------------
# The field's official evaluator: checkpoint + GloVe files
# ---------------------------------------------------------------------------------------
class _PlainDataUnpickler(pickle.Unpickler):
    """Reads pickles of plain containers (list, dict, str, int, float) only: any class or
    function reference is refused, so a pickle with code in it is never executed."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refused to load '{module}.{name}' (only plain lists/dicts/strings)")


def read_plain_data(folder: str, stem: str):
    """`<stem>.json`, or else `<stem>.pkl` read with the restricted unpickler."""
    json_path, pkl_path = os.path.join(folder, stem + ".json"), os.path.join(folder, stem + ".pkl")
    if os.path.exists(json_path):
        with open(json_path) as fh:
            return json.load(fh)
    if not os.path.exists(pkl_path):
        raise EvalError(f"GloVe folder {folder} has no {stem}.pkl or {stem}.json")
    try:
        with open(pkl_path, "rb") as fh:
            return _PlainDataUnpickler(fh).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise EvalError(f"cannot read {pkl_path}: {str(exc)[:160]}") from None


class GloVe:
    """The T2M text pipeline's word vectors: `our_vab_data.npy` (V, 300), `our_vab_words.pkl`
    (list of V words) and `our_vab_idx.pkl` ({word: row}), in cfg.glove_path."""

    def __init__(self, folder: str):
        data_path = os.path.join(folder, "our_vab_data.npy")
        if not os.path.exists(data_path):
            raise EvalError(f"GloVe folder {folder} has no our_vab_data.npy "
                            "(point --glove_path at the T2M glove/ folder)")
        vectors = np.load(data_path, allow_pickle=False).astype(np.float32)
        words = read_plain_data(folder, "our_vab_words")
        index = read_plain_data(folder, "our_vab_idx")
        if (vectors.ndim != 2 or vectors.shape[1] != OFFICIAL_SIZES["word_size"] or not isinstance(words, list)
                or not isinstance(index, dict)):
            raise EvalError(f"GloVe files in {folder} must be a (V, 300) array, a word list and a word->row dict")
        bad = [w for w in words if not isinstance(w, str) or not isinstance(index.get(w), int)
               or not 0 <= index[w] < len(vectors)]
        if bad:
            raise EvalError(f"GloVe word {bad[0]!r} has no valid row in {folder}/our_vab_idx")
        if "unk" not in index:
            raise EvalError(f"GloVe vocabulary in {folder} lacks the 'unk' word")
        self.vectors = {w: vectors[index[w]] for w in words}

    def word_and_pos(self, token: str) -> tuple[np.ndarray, np.ndarray]:
        """GloVe vector (300,) and POS one-hot (15,) of one `word/POS` token, as the T2M pipeline
        builds them: unknown words -> 'unk'/OTHER; known motion words get their VIP class."""
        word, _, pos = token.rpartition("/") if "/" in token else (token, "", "OTHER")
        onehot = np.zeros(len(POS_ENUMERATOR), dtype=np.float32)
        if word in self.vectors:
            vip = next((name for name, group in VIP_WORDS.items() if word in group), None)
            onehot[POS_ENUMERATOR.get(vip or pos, POS_ENUMERATOR["OTHER"])] = 1.0
            return self.vectors[word], onehot
        onehot[POS_ENUMERATOR["OTHER"]] = 1.0
        return self.vectors["unk"], onehot

    def encode(self, token_lists: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Word vectors (B, 22, 300), POS one-hots (B, 22, 15) and lengths (B,) of token lists:
        at most 20 words between sos/eos, padded with unk/OTHER."""
        words, poses, lengths = [], [], []
        for tokens in token_lists:
            tokens = ["sos/OTHER"] + list(tokens)[:OFFICIAL_MAX_TEXT_LEN] + ["eos/OTHER"]
            lengths.append(len(tokens))
            tokens += ["unk/OTHER"] * (OFFICIAL_MAX_TEXT_LEN + 2 - len(tokens))
            pairs = [self.word_and_pos(t) for t in tokens]
            words.append(np.stack([p[0] for p in pairs]))
            poses.append(np.stack([p[1] for p in pairs]))
        return (torch.from_numpy(np.stack(words)), torch.from_numpy(np.stack(poses)),
                torch.tensor(lengths, dtype=torch.long))


def caption_tokens(item: EvalItem) -> list[str]:
    """The item's `word/POS` tokens, or its plain words (POS OTHER) when the data set has none."""
    return item.tokens or [f"{w}/OTHER" for w in caption_words(item.caption)]


def load_official_evaluator(checkpoint_path: str, glove_folder: str, device: torch.device
                            ) -> tuple[OfficialT2MEvaluator, GloVe]:
    """The field's T2M evaluator (weights-only load of `movement_encoder`, `motion_encoder`,
    `text_encoder`) and its GloVe vocabulary; EvalError/CheckpointError on bad files."""
    try:
        payload = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure of the weights-only reader means: not loadable
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot load T2M evaluator {checkpoint_path}: {reason[:160]}") from None
    evaluator = OfficialT2MEvaluator()
    evaluator.load_official_state(payload, checkpoint_path)
    return evaluator.to(device).eval().requires_grad_(False), GloVe(glove_folder)


@torch.inference_mode()
def official_text_embeddings(evaluator: OfficialT2MEvaluator, glove: GloVe, items: list[EvalItem],
                             device: torch.device, batch_size: int = 256) -> np.ndarray:
    """Official evaluator embeddings (N, 512) of the items' captions."""
    out = []
    for start in range(0, len(items), batch_size):
        words, pos, lengths = glove.encode([caption_tokens(it) for it in items[start:start + batch_size]])
        out.append(evaluator.encode_text(words.to(device), pos.to(device), lengths).float().cpu())
    return torch.cat(out).numpy()


def official_statistics(checkpoint_path: str, dataset_mean: np.ndarray, dataset_std: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, str]:
    """The feature statistics the official evaluator expects: meta/mean.npy, meta/std.npy beside
    its model folder when present, else the data set's Mean.npy/Std.npy."""
    meta = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(checkpoint_path))), "meta")
    mean_path, std_path = os.path.join(meta, "mean.npy"), os.path.join(meta, "std.npy")
    if os.path.exists(mean_path) and os.path.exists(std_path):
        return (np.load(mean_path, allow_pickle=False).astype(np.float32),
                np.load(std_path, allow_pickle=False).astype(np.float32), meta)
    return dataset_mean, dataset_std, "the data set's Mean.npy/Std.npy"


# ---------------------------------------------------------------------------------------
# Generation of the rows
# ---------------------------------------------------------------------------------------
@dataclass
class RowSpec:
    key: str  # stable id in the JSON
    name: str  # table label
    mode: Optional[str]  # generate_composite mode, None for ground truth
    steps: Optional[int]  # DDIM steps
    multimodality: bool  # also measure MultiModality


@dataclass
class Generated:
    features: list[np.ndarray]  # (T_i, 263)
    joints: list[np.ndarray]  # (T_i, 22, 3)
    keyframes: list[np.ndarray]  # (K_i, 22, 3)
    keyframe_idx: list[np.ndarray]  # (K_i,)
    seconds_per_motion: float


def row_specs(cfg: CompositeConfig, chosen: tuple[str, ...]) -> list[RowSpec]:
    """The table's rows in order, for the chosen row groups."""
    rows = []
    if "gt" in chosen:
        rows.append(RowSpec("ground_truth", "Ground truth", None, None, False))
    if "composite" in chosen:
        rows.append(RowSpec("composite", f"Composite (DDIM {cfg.num_inbetween_steps})", "composite",
                            cfg.num_inbetween_steps, True))
    if "ar" in chosen:
        rows.append(RowSpec("ar_only", "AR only (interpolated keyframes)", "interpolate", None, True))
    if "diffusion" in chosen:
        rows.append(RowSpec("diffusion_only", f"Diffusion only (DDIM {cfg.num_inbetween_steps})",
                            "diffusion_only", cfg.num_inbetween_steps, True))
    if "ddim" in chosen:
        rows += [RowSpec(f"composite_ddim{s}", f"Composite, DDIM {s}", "composite", s, False)
                 for s in parse_ddim_steps(cfg.eval_ddim_steps)]
    return rows


def parse_ddim_steps(text: str) -> list[int]:
    try:
        steps = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        steps = []
    if not steps or min(steps) < 1:
        raise EvalError(f"--eval_ddim_steps must be comma-separated positive integers like 5,10,25,50, got {text!r}")
    return steps


def generate_rows(models: tuple, cfg: CompositeConfig, captions: list[str], lengths: list[int], mode: str,
                  steps: Optional[int], seed: int) -> Generated:
    """Generate one motion per (caption, length) in batches of cfg.batch_size (sorted by length,
    item i seeded seed + its sorted position); returns them in input order with the mean
    wall-clock generation time per motion."""
    from generate import generate_composite
    order = np.argsort(lengths, kind="stable")
    out = {name: [None] * len(captions) for name in ("joints", "keyframes", "keyframe_idx", "features")}
    elapsed = 0.0
    for start in range(0, len(order), cfg.batch_size):
        rows = order[start:start + cfg.batch_size]
        began = time.perf_counter()
        joints, keyframes, keyframe_idx, features = generate_composite(
            *models, cfg, prompt=[captions[i] for i in rows], length=[int(lengths[i]) for i in rows],
            seed=seed + start, mode=mode, num_inbetween_steps=steps, return_features=True)
        elapsed += time.perf_counter() - began
        for j, i in enumerate(rows):
            out["joints"][i], out["keyframes"][i] = joints[j], keyframes[j]
            out["keyframe_idx"][i], out["features"][i] = keyframe_idx[j], features[j]
    return Generated(out["features"], out["joints"], out["keyframes"], out["keyframe_idx"],
                     elapsed / max(len(captions), 1))


# ---------------------------------------------------------------------------------------
# One row's metrics in one repeat
# ---------------------------------------------------------------------------------------
@dataclass
class Scorers:
    """Everything that turns motions into numbers."""
    evaluator: MatchingEvaluator
    classifier: Optional[ActionClassifier]
    mean: np.ndarray  # the evaluator's feature statistics (263,)
    std: np.ndarray
    reference_emb: np.ndarray  # (N_test, D) ground truth of the whole test split, for FID
    official: Optional[tuple]  # (OfficialT2MEvaluator, GloVe, mean, std, reference (N, 512)) or None
    device: torch.device


def motion_quality(joints: list[np.ndarray], keyframes: Optional[list[np.ndarray]],
                   keyframe_idx: Optional[list[np.ndarray]], fps: int) -> dict[str, float]:
    """Mean joint-based quality metrics over motions (keyframe error NaN without keyframes)."""
    out = {"foot_skating": np.mean([metrics.foot_skating_ratio(j, fps) for j in joints]),
           "foot_penetration_m": np.mean([metrics.foot_penetration(j) for j in joints]),
           "jerk": np.mean([metrics.jerk(j, fps) for j in joints]),
           "bone_length_error_m": np.mean([metrics.bone_length_error(j) for j in joints])}
    errors = [] if keyframes is None else [metrics.keyframe_adherence(j, k, i) for j, k, i
                                           in zip(joints, keyframes, keyframe_idx) if len(i)]
    out["keyframe_error_m"] = float(np.mean(errors)) if errors else float("nan")
    return {k: float(v) for k, v in out.items()}


def score_row(scorers: Scorers, items: list[EvalItem], text_emb: np.ndarray, features: list[np.ndarray],
              joints: list[np.ndarray], keyframes, keyframe_idx, mm_features: Optional[list[np.ndarray]],
              mm_repeats: int, rng: np.random.Generator, fps: int, official_text: Optional[np.ndarray]) -> dict:
    """All metrics of one row in one repeat (NaN where a metric does not apply)."""
    s = scorers
    motion_emb = embed_motions(s.evaluator.encode_motion, features, s.mean, s.std, s.device)
    r_prec = metrics.r_precision(text_emb, motion_emb, R_PRECISION_BATCH)
    result = {"fid": metrics.fid(motion_emb, s.reference_emb),
              "r_precision_top1": r_prec[0], "r_precision_top2": r_prec[1], "r_precision_top3": r_prec[2],
              "mm_dist": metrics.matching_score(text_emb, motion_emb),
              "diversity": metrics.diversity(motion_emb, DIVERSITY_PAIRS, rng),
              "multimodality": float("nan")}
    if mm_features is not None:
        mm_emb = embed_motions(s.evaluator.encode_motion, mm_features, s.mean, s.std, s.device)
        result["multimodality"] = metrics.multimodality(mm_emb.reshape(-1, mm_repeats, mm_emb.shape[-1]),
                                                        MM_PAIRS, rng)
    result.update(motion_quality(joints, keyframes, keyframe_idx, fps))
    result["action_accuracy"] = float("nan")
    labelled = [i for i, it in enumerate(items) if it.action >= 0]
    if s.classifier is not None and labelled:
        predicted = classify_actions(s.classifier, [features[i] for i in labelled], s.mean, s.std, s.device)
        result["action_accuracy"] = metrics.accuracy(predicted, [items[i].action for i in labelled])
    if s.official is not None:
        official, _, o_mean, o_std, o_reference = s.official
        o_motion = embed_motions(official.encode_motion, features, o_mean, o_std, s.device)
        o_rprec = metrics.r_precision(official_text, o_motion, R_PRECISION_BATCH)
        result.update({"t2m_fid": metrics.fid(o_motion, o_reference), "t2m_r_precision_top1": o_rprec[0],
                       "t2m_r_precision_top2": o_rprec[1], "t2m_r_precision_top3": o_rprec[2],
                       "t2m_mm_dist": metrics.matching_score(official_text, o_motion)})
    return {k: float(v) for k, v in result.items()}


# ---------------------------------------------------------------------------------------
# The whole evaluation
# ---------------------------------------------------------------------------------------
def check_generator_checkpoints(cfg: CompositeConfig) -> None:
    for stage in GENERATOR_STAGES:
        path = os.path.join(cfg.checkpoint_dir, f"{stage}.pt")
        if not os.path.exists(path):
            raise CheckpointError(f"no trained checkpoint at {path}; run python train.py first "
                                  "(or pass --checkpoint_dir)")


def _mean_ci(values: list[float]) -> dict:
    mean, ci95 = metrics.confidence_interval(values)
    return {"mean": mean, "ci95": ci95}


def evaluate(cfg: CompositeConfig, chosen: tuple[str, ...] = ROW_CHOICES) -> dict:
    """Run the protocol on the test split; returns the results dict (rows with mean and ci95)."""
    rows = row_specs(cfg, chosen)
    if not rows:
        raise EvalError("--rows selected no rows")
    generative = [r for r in rows if r.mode is not None]
    if generative:
        check_generator_checkpoints(cfg)
    device = select_device(cfg)
    root = ensure_dataset(cfg)
    data_mean, data_std = load_mean_std(root)
    models = None
    if generative:
        from generate import generate_composite, load_models
        models = load_models(cfg, device)
        generate_composite(*models, cfg, prompt="a person walks forward", length=40)  # warm-up: fair timings
        generator_mean, generator_std = models[5], models[6]
        if stats_hash(generator_mean, generator_std) != stats_hash(data_mean, data_std):
            raise EvalError(f"the checkpoints in {cfg.checkpoint_dir} were trained on another data set than {root} "
                            "(pass the matching --dataset_root or --checkpoint_dir)")
    if not os.path.exists(evaluator_path(cfg)):
        print(f"no evaluator at {evaluator_path(cfg)}: training it first (python evaluate.py --train_evaluator)",
              flush=True)
        train_evaluator(cfg, device)
    evaluator, classifier, eval_payload = load_evaluator(cfg, device)
    if stats_hash(data_mean, data_std) != eval_payload["data_hash"]:
        raise EvalError(f"{evaluator_path(cfg)} was trained on another data set ({eval_payload['dataset_root']}) "
                        f"than {root}; run python evaluate.py --train_evaluator")
    clips = load_clips(root, "test", cfg)
    tokens = read_caption_tokens(root, clips)
    actions, labels = load_action_labels(root)
    if classifier is not None and list(eval_payload["actions"]) != actions:
        raise EvalError(f"the action classifier in {evaluator_path(cfg)} knows other actions than {root}/labels.json; "
                        "run python evaluate.py --train_evaluator")
    ev_mean, ev_std = eval_payload["mean"].numpy(), eval_payload["std"].numpy()
    reference = draw_items(clips, cfg, None, tokens, labels)
    reference_emb = embed_motions(evaluator.encode_motion, [it.features for it in reference], ev_mean, ev_std, device)

    official = None
    if cfg.t2m_evaluator_path and cfg.glove_path:
        if not (os.path.exists(cfg.t2m_evaluator_path) and os.path.isdir(cfg.glove_path)):
            print(f"note: official T2M evaluator skipped ({cfg.t2m_evaluator_path} or {cfg.glove_path} not found)",
                  flush=True)
        else:
            official_model, glove = load_official_evaluator(cfg.t2m_evaluator_path, cfg.glove_path, device)
            o_mean, o_std, stats_from = official_statistics(cfg.t2m_evaluator_path, data_mean, data_std)
            o_reference = embed_motions(official_model.encode_motion, [it.features for it in reference],
                                        o_mean, o_std, device)
            official = (official_model, glove, o_mean, o_std, o_reference)
            print(f"official T2M evaluator loaded from {cfg.t2m_evaluator_path} (statistics: {stats_from})", flush=True)
    scorers = Scorers(evaluator, classifier, ev_mean, ev_std, reference_emb, official, device)

    num_samples = min(cfg.eval_num_samples, len(clips))
    if num_samples < 2:
        raise EvalError(f"the test split of {root} has {len(clips)} usable motion(s); evaluation needs at least 2")
    runs = {r.key: [] for r in rows}
    times = {r.key: [] for r in rows if r.mode is not None}
    print(f"evaluating {len(rows)} rows x {cfg.eval_repeats} repeats on {num_samples} of {len(clips)} test "
          f"motions from {root} (device {device})", flush=True)
    for repeat in range(cfg.eval_repeats):
        rng = np.random.default_rng(cfg.seed + repeat)
        items = draw_items(clips, cfg, rng, tokens, labels, num_samples)
        captions, lengths = [it.caption for it in items], [len(it.features) for it in items]
        text_emb = embed_captions(evaluator, captions)
        official_text = (official_text_embeddings(official[0], official[1], items, device)
                         if official is not None else None)
        num_mm = min(cfg.eval_mm_num_prompts, len(items))
        mm_captions = [c for c in captions[:num_mm] for _ in range(cfg.eval_mm_repeats)]
        mm_lengths = [n for n in lengths[:num_mm] for _ in range(cfg.eval_mm_repeats)]
        seed = cfg.seed + 100_003 * (repeat + 1)
        cache: dict[tuple, Generated] = {}
        for row in rows:
            started = time.perf_counter()
            metric_rng = np.random.default_rng(cfg.seed + 7 * repeat)
            if row.mode is None:
                joints = [features_to_joints(it.features) for it in items]
                result = score_row(scorers, items, text_emb, [it.features for it in items], joints, None, None,
                                   None, cfg.eval_mm_repeats, metric_rng, cfg.fps, official_text)
            else:
                key = (row.mode, row.steps)
                if key not in cache:
                    cache[key] = generate_rows(models, cfg, captions, lengths, row.mode, row.steps, seed)
                gen = cache[key]
                mm_features = None
                if row.multimodality and cfg.eval_mm_repeats >= 2:
                    mm_features = generate_rows(models, cfg, mm_captions, mm_lengths, row.mode, row.steps,
                                                seed + 50_000).features
                times[row.key].append(gen.seconds_per_motion)
                result = score_row(scorers, items, text_emb, gen.features, gen.joints,
                                   gen.keyframes if row.mode != "diffusion_only" else None, gen.keyframe_idx,
                                   mm_features, cfg.eval_mm_repeats, metric_rng, cfg.fps, official_text)
            runs[row.key].append(result)
            print(f"  repeat {repeat + 1}/{cfg.eval_repeats} {row.name}: FID {result['fid']:.3f}, "
                  f"R@3 {result['r_precision_top3']:.3f} ({time.perf_counter() - started:.0f}s)", flush=True)

    table_rows = []
    for row in rows:
        summary = {}
        for name in runs[row.key][0]:
            values = [run[name] for run in runs[row.key]]
            summary[name] = None if any(math.isnan(v) for v in values) else _mean_ci(values)
        table_rows.append({"key": row.key, "name": row.name, "mode": row.mode, "ddim_steps": row.steps,
                           "metrics": summary,
                           "seconds_per_motion": _mean_ci(times[row.key]) if row.key in times else None})
    return {"timestamp": datetime.now().strftime("%Y%m%d-%H%M%S"), "dataset_root": root,
            "checkpoint_dir": cfg.checkpoint_dir, "device": str(device), "num_test_motions": len(clips),
            "num_samples": num_samples, "repeats": cfg.eval_repeats,
            "mm_prompts": min(cfg.eval_mm_num_prompts, num_samples),
            "mm_repeats": cfg.eval_mm_repeats,
            "evaluator": {"path": evaluator_path(cfg), "test_r_precision": eval_payload["test_r_precision"],
                          "classifier_test_accuracy": eval_payload["classifier_test_accuracy"],
                          "actions": list(eval_payload["actions"]), "steps": eval_payload["step"]},
            "official_t2m": official is not None, "rows": table_rows, "config": cfg.to_dict()}


# ---------------------------------------------------------------------------------------
# Report: Markdown table, JSON, PNG
# ---------------------------------------------------------------------------------------
COLUMNS = [  # (metric key, header, scale, digits)
    ("fid", "FID ↓", 1.0, 3), ("r_precision_top1", "R@1 ↑", 1.0, 3), ("r_precision_top2", "R@2 ↑", 1.0, 3),
    ("r_precision_top3", "R@3 ↑", 1.0, 3), ("mm_dist", "MM-Dist ↓", 1.0, 3), ("diversity", "Diversity →", 1.0, 3),
    ("multimodality", "MModality ↑", 1.0, 3), ("foot_skating", "Skating ↓", 1.0, 3),
    ("foot_penetration_m", "Penetr. cm ↓", 100.0, 2), ("jerk", "Jerk m/s³ ↓", 1.0, 1),
    ("bone_length_error_m", "Bone err cm ↓", 100.0, 2), ("keyframe_error_m", "KF err cm ↓", 100.0, 2),
    ("action_accuracy", "Action acc ↑", 1.0, 3),
]
OFFICIAL_COLUMNS = [("t2m_fid", "FID ↓", 1.0, 3), ("t2m_r_precision_top1", "R@1 ↑", 1.0, 3),
                    ("t2m_r_precision_top2", "R@2 ↑", 1.0, 3), ("t2m_r_precision_top3", "R@3 ↑", 1.0, 3),
                    ("t2m_mm_dist", "MM-Dist ↓", 1.0, 3)]


def _cell(stat: Optional[dict], scale: float, digits: int) -> str:
    if stat is None:
        return "-"
    return f"{stat['mean'] * scale:.{digits}f} ± {stat['ci95'] * scale:.{digits}f}"


def _table(results: dict, columns: list, with_time: bool) -> str:
    header = ["Row"] + [c[1] for c in columns] + (["s / motion"] if with_time else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in results["rows"]:
        cells = [row["name"]] + [_cell(row["metrics"].get(key), scale, digits) for key, _, scale, digits in columns]
        if with_time:
            cells.append(_cell(row["seconds_per_motion"], 1.0, 3))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def composite_verdict(results: dict) -> str:
    """One line: does the composite row beat both ablations on FID and on R-precision top-3,
    and is each margin larger than the two 95% confidence intervals together?"""
    by_key = {r["key"]: r["metrics"] for r in results["rows"]}
    rows = {"composite": "composite", "ar_only": "AR only", "diffusion_only": "diffusion only"}
    if not all(k in by_key for k in rows):
        return "Composite vs ablations: not all three rows were evaluated."
    parts, wins = [], []
    for key, label, sign in (("fid", "FID", -1), ("r_precision_top3", "R-precision top-3", 1)):
        ours = by_key["composite"][key]
        comparisons = []
        for other in ("ar_only", "diffusion_only"):
            theirs = by_key[other][key]
            better = sign * (ours["mean"] - theirs["mean"]) > 0
            clear = abs(ours["mean"] - theirs["mean"]) > ours["ci95"] + theirs["ci95"]
            wins.append(better)
            comparisons.append(f"{'better' if better else 'worse'} than {rows[other]} {theirs['mean']:.3f} "
                               f"({'beyond' if clear else 'within'} the CIs)")
        parts.append(f"{label} {ours['mean']:.3f} ± {ours['ci95']:.3f}: " + ", ".join(comparisons))
    verdict = "beats both ablations" if all(wins) else "does NOT beat both ablations"
    return f"Composite {verdict} on FID and R-precision. " + "; ".join(parts) + "."


def format_report(results: dict) -> str:
    """The Markdown report: header, the metric table, the official table when present, notes."""
    ev = results["evaluator"]
    r_prec = ", ".join(f"{x:.3f}" for x in ev["test_r_precision"])
    lines = [f"# Evaluation {results['timestamp']}", "",
             f"Data: {results['dataset_root']} test split ({results['num_test_motions']} motions; "
             f"{results['num_samples']} per run, {results['repeats']} runs, mean ± 95% CI). "
             f"Checkpoints: {results['checkpoint_dir']}. Device: {results['device']}.", "",
             _table(results, COLUMNS, with_time=True), ""]
    if results["official_t2m"]:
        lines += ["Official T2M evaluator (HumanML3D protocol):", "", _table(results, OFFICIAL_COLUMNS, False), ""]
    accuracy = ev["classifier_test_accuracy"]
    lines += [f"- {composite_verdict(results)}",
              f"- In-house evaluator ({ev['steps']} steps, word-token text encoder independent of the generator's): "
              f"test-split R-precision top-1/2/3 on ground truth {r_prec} "
              f"(chance {chance_text(results['num_samples'])}).",
              (f"- Action classifier test accuracy on ground truth: {accuracy:.3f} over {len(ev['actions'])} actions."
               if accuracy is not None else "- No action labels in this data set: no action accuracy."),
              f"- FID is against the whole test split's ground truth; MultiModality uses {results['mm_prompts']} "
              f"prompts x {results['mm_repeats']} samples (main rows only); Diversity uses up to {DIVERSITY_PAIRS} "
              f"pairs; R-precision batches of {min(R_PRECISION_BATCH, results['num_samples'])}.",
              "- Skating: fraction of frames with a grounded foot joint sliding > 0.5 m/s; jerk: mean |d³x/dt³|; "
              "KF err: mean joint distance between the GPT keyframes and the final motion at keyframe frames."]
    return "\n".join(lines) + "\n"


def plot_results(results: dict, path: str) -> None:
    """PNG: key metrics as bars per row (with 95% CI) and FID against generation time over DDIM steps."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [("fid", "FID ↓"), ("r_precision_top3", "R-precision top-3 ↑"), ("mm_dist", "MM-Dist ↓"),
              ("diversity", "Diversity"), ("multimodality", "MultiModality"), ("foot_skating", "Foot skating ↓"),
              ("action_accuracy", "Action accuracy ↑")]
    fig, axes = plt.subplots(2, 4, figsize=(20, 9))
    names = [r["name"] for r in results["rows"]]
    colors = plt.cm.tab10(np.arange(len(names)) % 10)
    for ax, (key, title) in zip(axes.flat, panels):
        means = [r["metrics"][key]["mean"] if r["metrics"].get(key) else 0.0 for r in results["rows"]]
        errs = [r["metrics"][key]["ci95"] if r["metrics"].get(key) else 0.0 for r in results["rows"]]
        ax.bar(range(len(names)), means, yerr=errs, color=colors, capsize=3)
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=7)
        ax.set_title(title)
    ax = axes.flat[-1]
    sweep = [r for r in results["rows"] if r["key"].startswith("composite_ddim") and r["seconds_per_motion"]]
    if sweep:
        xs = [r["seconds_per_motion"]["mean"] for r in sweep]
        ys = [r["metrics"]["fid"]["mean"] for r in sweep]
        ax.errorbar(xs, ys, yerr=[r["metrics"]["fid"]["ci95"] for r in sweep], marker="o", capsize=3)
        for x, y, r in zip(xs, ys, sweep):
            ax.annotate(f"{r['ddim_steps']} steps", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel("generation time per motion (s)")
        ax.set_ylabel("FID")
    ax.set_title("FID / time over DDIM steps")
    fig.suptitle(f"Evaluation {results['timestamp']} on {results['dataset_root']} ({results['device']})")
    fig.tight_layout()
    fig.savefig(path, dpi=90, format="png")
    plt.close(fig)


def _write_text(path: str, text: str) -> None:
    """Write `text` to `path` atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            fh.write(text)
    write_atomic(path, write)


def write_results(results: dict, cfg: CompositeConfig) -> dict[str, str]:
    """Write results/eval_<timestamp>.{md,json,png} and the eval_latest.* copies; returns the paths."""
    os.makedirs(cfg.results_dir, exist_ok=True)
    stem = os.path.join(cfg.results_dir, f"eval_{results['timestamp']}")
    latest = os.path.join(cfg.results_dir, "eval_latest")
    report = format_report(results)
    payload = json.dumps(results, indent=2, allow_nan=False)
    paths = {}
    for base in (stem, latest):  # the picture first: a plotting failure leaves no half-written run
        write_atomic(base + ".png", lambda tmp: plot_results(results, tmp))
        _write_text(base + ".md", report)
        _write_text(base + ".json", payload)
    paths.update(md=stem + ".md", json=stem + ".json", png=stem + ".png")
    return paths


# ---------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------
def check_eval_config(cfg: CompositeConfig) -> None:
    for name in ("evaluator_hidden", "evaluator_dim", "evaluator_max_words", "eval_mm_repeats", "eval_mm_num_prompts"):
        if getattr(cfg, name) < 1:
            raise EvalError(f"config field '{name}' must be >= 1, got {getattr(cfg, name)}")
    if cfg.evaluator_temperature <= 0 or cfg.evaluator_lr <= 0:
        raise EvalError("config fields 'evaluator_temperature' and 'evaluator_lr' must be > 0")
    parse_ddim_steps(cfg.eval_ddim_steps)


def main(argv: Optional[list[str]] = None) -> int:
    parser = make_parser(__doc__.split("\n\n")[0], prog="evaluate.py")
    parser.add_argument("--train_evaluator", action="store_true",
                        help="train checkpoints/evaluator.pt (and the action classifier) on the train split, then stop")
    parser.add_argument("--rows", nargs="+", choices=ROW_CHOICES, default=list(ROW_CHOICES),
                        help="row groups to evaluate (ddim: the composite at each of --eval_ddim_steps)")
    args = parser.parse_args(argv)
    cfg = config_from_args(args, parser)
    try:
        check_eval_config(cfg)
        if args.train_evaluator:
            train_evaluator(cfg)
            return 0
        results = evaluate(cfg, tuple(args.rows))
        paths = write_results(results, cfg)
    except (ValueError, DataError, CheckpointError, ConfigError) as exc:
        print(f"evaluate.py: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    print()
    print(format_report(results))
    print(f"wrote {paths['md']}, {paths['json']}, {paths['png']} (and eval_latest.*)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
