"""The field's own T2M evaluator (Guo et al. 2022): its checkpoint, its GloVe word vectors and
its feature statistics, read safely, so that published FID / R-precision / MM-Dist numbers
become comparable.

    --t2m_evaluator_path .../text_mot_match/model/finest.tar   (meta/mean.npy, meta/std.npy
                                                                beside model/, as released)
    --glove_path .../glove                                     (our_vab_data.npy, our_vab_words.pkl,
                                                                our_vab_idx.pkl)
"""
from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from config import CompositeConfig
from evaluation.evaluators import embed_motions
from evaluation.items import EvalError, EvalItem
from models.evaluator import OFFICIAL_MAX_TEXT_LEN, OFFICIAL_SIZES, POS_ENUMERATOR, VIP_WORDS, OfficialT2MEvaluator
from runtime import CheckpointError


class PlainDataUnpickler(pickle.Unpickler):
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
            return PlainDataUnpickler(fh).load()
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


def official_statistics(checkpoint_path: str) -> tuple[np.ndarray, np.ndarray]:
    """The feature statistics the official evaluator reads motions with: meta/mean.npy and
    meta/std.npy beside its model/ folder. A missing file is an EvalError naming it: the data
    set's own Mean/Std would silently give numbers that are not comparable."""
    meta = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(checkpoint_path))), "meta")
    stats = []
    for name in ("mean.npy", "std.npy"):
        path = os.path.join(meta, name)
        if not os.path.exists(path):
            raise EvalError(f"the official T2M evaluator needs its feature statistics {path} (released beside "
                            f"its model/ folder); without them its numbers are not comparable")
        array = np.load(path, allow_pickle=False).astype(np.float32)
        if array.shape != (263,) or not np.isfinite(array).all():
            raise EvalError(f"{path} must hold 263 finite numbers, got shape {array.shape}")
        stats.append(array)
    return stats[0], stats[1]


@dataclass
class OfficialEvaluator:
    """The official evaluator ready to score: model, GloVe, statistics, test-split reference."""
    model: OfficialT2MEvaluator
    glove: GloVe
    mean: np.ndarray
    std: np.ndarray
    reference: np.ndarray  # (N_test, 512) ground truth embeddings, for FID
    device: torch.device

    def motion_embeddings(self, features: list[np.ndarray]) -> np.ndarray:
        return embed_motions(self.model.encode_motion, features, self.mean, self.std, self.device)

    @torch.inference_mode()
    def text_embeddings(self, items: list[EvalItem], batch_size: int = 256) -> np.ndarray:
        """Embeddings (N, 512) of the items' captions from their word/POS tokens."""
        out = []
        for start in range(0, len(items), batch_size):
            words, pos, lengths = self.glove.encode([it.caption_tokens() for it in items[start:start + batch_size]])
            out.append(self.model.encode_text(words.to(self.device), pos.to(self.device), lengths).float().cpu())
        return torch.cat(out).numpy()


def load_official(cfg: CompositeConfig, reference: list[EvalItem], device: torch.device) -> Optional[OfficialEvaluator]:
    """The official evaluator when cfg names its checkpoint and GloVe folder (None otherwise,
    or with a note when they are not there)."""
    if not (cfg.t2m_evaluator_path and cfg.glove_path):
        return None
    if not (os.path.exists(cfg.t2m_evaluator_path) and os.path.isdir(cfg.glove_path)):
        print(f"note: official T2M evaluator skipped ({cfg.t2m_evaluator_path} or {cfg.glove_path} not found)",
              flush=True)
        return None
    mean, std = official_statistics(cfg.t2m_evaluator_path)
    model, glove = load_official_evaluator(cfg.t2m_evaluator_path, cfg.glove_path, device)
    official = OfficialEvaluator(model, glove, mean, std, np.zeros(0), device)
    official.reference = official.motion_embeddings([it.features for it in reference])
    print(f"official T2M evaluator loaded from {cfg.t2m_evaluator_path}", flush=True)
    return official
