"""Evaluator networks for the text-to-motion metrics.

Two families, both after the text-motion matching model of Guo et al. 2022 ("Generating
Diverse and Natural 3D Human Motions from Texts"): a movement encoder (two strided 1D
convolutions, time / 4) feeding a bidirectional GRU motion encoder, and a bidirectional GRU
text encoder, whose embeddings are compared by Euclidean distance.

- `MatchingEvaluator`: the in-house evaluator trained here (`python evaluate.py
  --train_evaluator`) on the active data set's training split. Its text side is a word-token
  embedding + bi-GRU over a vocabulary built from the training captions, deliberately NOT the
  generator's text encoder (CLIP / MiniLM), so the metric is independent of the model under test.
- `LabelClassifier`: the same motion backbone with a softmax head over one label field of the
  data set (the embedded set's action; the Bandai Namco set's content and style), trained on
  ground truth, to score whether generated motions show the captioned action / style.
- `OfficialT2MEvaluator`: the field's own evaluator (movement encoder over 259 dims = features
  without foot contacts, bi-GRU motion encoder, bi-GRU text encoder over 300-dim GloVe vectors +
  15-dim part-of-speech one-hots), built with its published sizes so that its released checkpoint
  (keys `movement_encoder`, `motion_encoder`, `text_encoder`) loads and published numbers
  become comparable.
"""
from __future__ import annotations

import re

import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence

from config import CompositeConfig

UNIT_LENGTH = 4  # frames per movement-encoder step (two stride-2 convolutions)
PAD_TOKEN, UNK_TOKEN = "<pad>", "<unk>"


# ---------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------
class MovementConvEncoder(nn.Module):
    """Per-frame features (B, T, input_size) -> movement codes (B, T // 4, output_size)."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int, dropout: float = 0.2):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv1d(input_size, hidden_size, 4, 2, 1), nn.Dropout(dropout), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv1d(hidden_size, output_size, 4, 2, 1), nn.Dropout(dropout), nn.LeakyReLU(0.2, inplace=True),
        )
        self.out_net = nn.Linear(output_size, output_size)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        codes = self.main(features.transpose(1, 2)).transpose(1, 2)  # (B, T // 4, output_size)
        return self.out_net(codes)


class BiGRUEncoder(nn.Module):
    """A padded sequence (B, L, input_size) with lengths (B,) -> one vector (B, output_size):
    the last forward and backward GRU states through a small MLP."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int):
        super().__init__()
        self.input_emb = nn.Linear(input_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True, bidirectional=True)
        self.output_net = nn.Sequential(
            nn.Linear(hidden_size * 2, hidden_size), nn.LayerNorm(hidden_size),
            nn.LeakyReLU(0.2, inplace=True), nn.Linear(hidden_size, output_size),
        )
        self.hidden = nn.Parameter(torch.randn(2, 1, hidden_size))  # learned initial state

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.input_emb(inputs)  # (B, L, H)
        lengths = lengths.clamp(1, inputs.shape[1]).cpu()
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        _, last = self.gru(packed, self.hidden.expand(-1, len(inputs), -1).contiguous())  # (2, B, H)
        return self.output_net(torch.cat([last[0], last[1]], dim=-1))  # (B, output_size)


class TextEncoderBiGRUCo(BiGRUEncoder):
    """Word vectors (B, L, word_size) + part-of-speech one-hots (B, L, pos_size), lengths (B,)
    -> text embedding (B, output_size); the POS one-hot is projected and added to the word."""

    def __init__(self, word_size: int, pos_size: int, hidden_size: int, output_size: int):
        super().__init__(word_size, hidden_size, output_size)
        self.pos_emb = nn.Linear(pos_size, word_size)

    def forward(self, word_embs: torch.Tensor, pos_onehot: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return super().forward(word_embs + self.pos_emb(pos_onehot), lengths)


def motion_steps(lengths: torch.Tensor) -> torch.Tensor:
    """Movement-encoder steps (B,) of motions with `lengths` (B,) frames."""
    return torch.div(lengths, UNIT_LENGTH, rounding_mode="floor").clamp_min(1)


# ---------------------------------------------------------------------------------------
# The in-house matching evaluator
# ---------------------------------------------------------------------------------------
def caption_words(caption: str) -> list[str]:
    """Lower-case alphabetic words of a caption."""
    return re.findall(r"[a-z]+", caption.lower())


def build_vocabulary(captions: list[str]) -> list[str]:
    """Sorted word list of the captions, after the padding and unknown tokens."""
    return [PAD_TOKEN, UNK_TOKEN] + sorted({w for c in captions for w in caption_words(c)})


class MatchingEvaluator(nn.Module):
    """Text-motion matching evaluator: motion (normalised features) and caption embeddings in
    one Euclidean space, where a caption lies near the motions it describes."""

    def __init__(self, cfg: CompositeConfig, vocab: list[str]):
        super().__init__()
        if len(vocab) < 3 or vocab[:2] != [PAD_TOKEN, UNK_TOKEN]:
            raise ValueError("the evaluator vocabulary must start with '<pad>', '<unk>' and hold words "
                             "(build it with build_vocabulary)")
        self.vocab = list(vocab)
        self.word_index = {w: i for i, w in enumerate(self.vocab)}
        self.max_words = cfg.evaluator_max_words
        self.temperature = cfg.evaluator_temperature
        h, d = cfg.evaluator_hidden, cfg.evaluator_dim
        self.movement_encoder = MovementConvEncoder(cfg.feature_dim, h, h)
        self.motion_encoder = BiGRUEncoder(h, h, d)
        self.word_emb = nn.Embedding(len(self.vocab), h, padding_idx=0)
        self.text_encoder = BiGRUEncoder(h, h, d)

    def tokenize(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Word ids (B, L) long (0-padded) and word counts (B,) of captions (unknown words -> <unk>)."""
        rows = [[self.word_index.get(w, 1) for w in caption_words(c)][:self.max_words] or [1] for c in captions]
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        tokens = torch.zeros(len(rows), int(lengths.max()), dtype=torch.long)  # (B, L)
        for i, row in enumerate(rows):
            tokens[i, :len(row)] = torch.tensor(row)
        return tokens, lengths

    def encode_text(self, captions: list[str]) -> torch.Tensor:
        """Caption embeddings (B, evaluator_dim)."""
        tokens, lengths = self.tokenize(captions)
        device = self.word_emb.weight.device
        return self.text_encoder(self.word_emb(tokens.to(device)), lengths)

    def encode_motion(self, motion: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Motion embeddings (B, evaluator_dim) of normalised features (B, T, 263) with lengths (B,)."""
        return self.motion_encoder(self.movement_encoder(motion), motion_steps(lengths))

    def forward(self, motion: torch.Tensor, lengths: torch.Tensor, captions: list[str]) -> dict:
        """Symmetric InfoNCE loss over the batch, logits = -distance / temperature; pairs
        with identical captions count as positives of each other. Returns {'loss', 'accuracy'}."""
        text_emb = self.encode_text(captions)  # (B, D)
        motion_emb = self.encode_motion(motion, lengths)  # (B, D)
        logits = -torch.cdist(text_emb, motion_emb) / self.temperature  # (B, B)
        index = {c: i for i, c in enumerate(dict.fromkeys(captions))}
        ids = torch.tensor([index[c] for c in captions], device=logits.device)
        targets = (ids[:, None] == ids[None, :]).float()
        targets = targets / targets.sum(1, keepdim=True)  # symmetric, rows sum to 1
        loss = 0.5 * (torch.sum(-targets * logits.log_softmax(1), 1).mean()
                      + torch.sum(-targets * logits.log_softmax(0), 0).mean())
        accuracy = (targets.gather(1, logits.argmax(1, keepdim=True)) > 0).float().mean()
        return {"loss": loss, "accuracy": accuracy}


class LabelClassifier(nn.Module):
    """Class logits (B, num_classes) of one label field from normalised motion features (B, T, 263)."""

    def __init__(self, cfg: CompositeConfig, num_classes: int):
        super().__init__()
        h = cfg.evaluator_hidden
        self.movement_encoder = MovementConvEncoder(cfg.feature_dim, h, h)
        self.motion_encoder = BiGRUEncoder(h, h, h)
        self.head = nn.Sequential(nn.LeakyReLU(0.2), nn.Linear(h, num_classes))

    def forward(self, motion: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.head(self.motion_encoder(self.movement_encoder(motion), motion_steps(lengths)))


# ---------------------------------------------------------------------------------------
# The field's official T2M evaluator (HumanML3D protocol)
# ---------------------------------------------------------------------------------------
POS_ENUMERATOR = {"VERB": 0, "NOUN": 1, "DET": 2, "ADP": 3, "NUM": 4, "AUX": 5, "PRON": 6, "ADJ": 7,
                  "ADV": 8, "Loc_VIP": 9, "Body_VIP": 10, "Obj_VIP": 11, "Act_VIP": 12, "Desc_VIP": 13,
                  "OTHER": 14}
# Words whose part of speech the official text pipeline replaces by a motion-specific class.
VIP_WORDS = {
    "Loc_VIP": {"left", "right", "clockwise", "counterclockwise", "anticlockwise", "forward", "back",
                "backward", "up", "down", "straight", "curve"},
    "Body_VIP": {"arm", "chin", "foot", "feet", "face", "hand", "mouth", "leg", "waist", "eye", "knee",
                 "shoulder", "thigh"},
    "Obj_VIP": {"stair", "dumbbell", "chair", "window", "floor", "car", "ball", "handrail", "baseball",
                "basketball"},
    "Act_VIP": {"walk", "run", "swing", "pick", "bring", "kick", "put", "squat", "throw", "hop", "dance",
                "jump", "turn", "stumble", "stop", "sit", "lift", "lower", "raise", "wash", "stand", "kneel",
                "stroll", "rub", "bend", "balance", "flap", "jog", "shuffle", "lean", "rotate", "spin",
                "spread", "climb"},
    "Desc_VIP": {"slowly", "carefully", "fast", "careful", "slow", "quickly", "happy", "angry", "sad",
                 "happily", "angrily", "sadly"},
}
OFFICIAL_SIZES = dict(pose_dim=259, movement_hidden=512, movement_latent=512, motion_hidden=1024,
                      word_size=300, pos_size=len(POS_ENUMERATOR), text_hidden=512, output_size=512)
OFFICIAL_MAX_TEXT_LEN = 20  # words, before the sos/eos tokens


class OfficialT2MEvaluator(nn.Module):
    """The HumanML3D text-motion matching evaluator, with its published sizes."""

    def __init__(self):
        super().__init__()
        s = OFFICIAL_SIZES
        self.pose_dim = s["pose_dim"]
        self.movement_encoder = MovementConvEncoder(s["pose_dim"], s["movement_hidden"], s["movement_latent"])
        self.motion_encoder = BiGRUEncoder(s["movement_latent"], s["motion_hidden"], s["output_size"])
        self.text_encoder = TextEncoderBiGRUCo(s["word_size"], s["pos_size"], s["text_hidden"], s["output_size"])

    def encode_motion(self, motion: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Embeddings (B, 512) of normalised 263-dim features (B, T, 263) (the foot contacts
        are dropped, as the official evaluator does) with lengths (B,) frames."""
        return self.motion_encoder(self.movement_encoder(motion[..., :self.pose_dim]), motion_steps(lengths))

    def encode_text(self, word_embs: torch.Tensor, pos_onehot: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Embeddings (B, 512) of GloVe word vectors (B, L, 300), POS one-hots (B, L, 15), lengths (B,)."""
        return self.text_encoder(word_embs, pos_onehot, lengths)

    def load_official_state(self, payload: dict, path: str) -> None:
        """Load the `movement_encoder`, `motion_encoder`, `text_encoder` state dicts of a
        checkpoint payload; raises ValueError (one line naming `path`) when they do not fit."""
        keys = ("movement_encoder", "motion_encoder", "text_encoder")
        for key in keys:
            if not isinstance(payload, dict) or not isinstance(payload.get(key), dict):
                raise ValueError(f"{path} is not a T2M evaluator checkpoint (missing '{key}'); point "
                                 "--t2m_evaluator_path at text_mot_match/model/finest.tar")
        for key in keys:
            try:
                getattr(self, key).load_state_dict(payload[key])
            except RuntimeError as exc:
                first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
                raise ValueError(f"{path}: '{key}' does not have the T2M evaluator's shapes ({first[:160]})") from None
