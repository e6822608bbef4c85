"""CompositeConfig: the single source of every hyperparameter and path of the project.

Every script builds one with `parse_config(argv)` (or `make_parser` + `config_from_args`), which
maps `--field value` overrides (and `--config FILE.json`) onto the dataclass fields. The config is
saved inside every checkpoint with `to_dict()` and restored with `from_dict()`.

Documenting a field: declare it with a trailing `# one-line description` comment, under the
`# ---- group ----` line it belongs to. `field_docs()` reads both from this file's source once,
so `--help` shows every field in its group with its description (tests fail on a field without).
The command line is plain argparse on purpose: tyro or simple-parsing would describe the fields
as well, but with their own flag syntax (`--flag/--no-flag`, `--list a b`) and error format,
while every existing command (`--fit_bones false`, `--eval_ddim_steps 5,10`) must keep working.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import functools
import hashlib
import inspect
import io
import json
import re
import sys
import tokenize
import typing
from dataclasses import dataclass, field, fields
from typing import Literal, Optional, Sequence


STAGE_STEPS = {"vqvae": "vqvae_steps", "gpt": "gpt_steps", "diffusion": "diffusion_steps"}  # stage -> its steps field


class ConfigError(ValueError):
    """A bad config key or value; the message is one line naming the key and the fix."""


RETIRED_FIELDS = ("compile",)  # fields of older versions, ignored when read from a checkpoint


def split_folders(text: str) -> list[str]:
    """The folders of a comma-joined path setting such as dataset_root (blank parts dropped)."""
    return [part.strip() for part in text.split(",") if part.strip()]


@dataclass
class CompositeConfig:
    # ---- data -------------------------------------------------------------------------
    dataset_root: str = "dataset/synthetic"  # folder in the HumanML3D layout
    dataset_kind: Literal["synthetic", "humanml3d"] = "synthetic"  # synthetic: built on first use
    dataset_repeats: str = ""  # several dataset_root folders: times each one's train motions enter an epoch ("1,3"; "": once each)
    synthetic_num_motions: int = 3000  # size of the embedded procedural data set
    synthetic_seed: int = 1234  # the embedded data set is a pure function of this seed
    fps: int = 20  # frames per second of every motion
    feature_dim: int = 263  # HumanML3D feature width for the 22-joint skeleton
    num_joints: int = 22  # joints of the skeleton (22: SMPL without hands)
    min_motion_length: int = 40  # frames; shorter motions are skipped (HumanML3D rule)
    max_motion_length: int = 196  # frames; longer motions are randomly cropped
    keyframe_interval: int = 5  # frames between keyframes (first, every interval, last)
    num_workers: int = 0  # DataLoader worker processes

    # ---- text conditioning ------------------------------------------------------------
    text_encoder: Literal["auto", "clip", "minilm"] = "auto"  # auto: CLIP if its weights exist
    clip_path: str = ""  # local ViT-B-32.pt; empty: CLIP's own cache (~/.cache/clip)
    text_batch_size: int = 256  # captions per batch when building the embedding cache

    # ---- VQ-VAE (stage 1a: keyframes -> tokens) -----------------------------------------
    vq_codebook_size: int = 256  # entries of the codebook (the GPT's vocabulary, plus end and pad tokens)
    vq_code_dim: int = 64  # width of each codebook vector
    vq_width: int = 128  # conv channels
    vq_depth: int = 2  # residual blocks in encoder and decoder
    vq_ema_decay: float = 0.99  # moving-average decay of the codebook's updates (EMA codebook)
    vq_commit_weight: float = 0.02  # weight of the commitment loss (encoder output to its code)
    vq_vel_loss_weight: float = 0.5  # weight of the keyframe-to-keyframe difference loss
    vq_foot_weight: float = 1.0  # the feet's channels (ankle/toe positions, velocities, contacts) weigh this many times more
    vqvae_steps: int = 1200  # training steps of the VQ-VAE stage

    # ---- GPT (stage 1b: text -> keyframe tokens) --------------------------------------
    gpt_n_layer: int = 3  # transformer blocks
    gpt_n_head: int = 4  # attention heads per block (must divide gpt_n_embd)
    gpt_n_embd: int = 128  # token embedding width
    gpt_dropout: float = 0.1  # dropout probability in training
    gpt_token_corruption: float = 0.1  # fraction of input tokens replaced at random (T2M-GPT)
    gpt_cond_drop: float = 0.1  # probability of dropping the text for classifier-free guidance
    gpt_steps: int = 1500  # training steps of the GPT stage
    # int8 (weight-only, per output channel) reads 4x fewer bytes per decoded token on CPU;
    # float32 reproduces training numerics exactly. Training always uses float32.
    gpt_weight_dtype: Literal["float32", "bfloat16", "int8"] = "float32"  # weights the GPT samples with
    # A batch-1 decoding step is a few small matrix-vector products; splitting them across cores
    # costs more in synchronisation than it saves when the cores are shared.
    gpt_decode_threads: int = 0  # torch threads while the GPT samples (0: all of torch's)

    # ---- diffusion (stage 2: keyframes -> dense motion) -------------------------------
    diff_n_layer: int = 4  # transformer blocks of the denoiser
    diff_n_head: int = 4  # attention heads per block (must divide diff_n_embd)
    diff_n_embd: int = 128  # token width of the denoiser
    diff_dropout: float = 0.1  # dropout probability in training
    diff_patch_size: int = 4  # frames per transformer token
    diff_timesteps: int = 1000  # training diffusion steps
    diff_noise_schedule: Literal["cosine", "linear"] = "cosine"  # noise variance schedule over the timesteps
    diff_cond_drop: float = 0.1  # probability of dropping the text for classifier-free guidance
    diff_vel_loss_weight: float = 1.0  # weight of the MSE of x0's frame-to-frame differences (velocity)
    diff_acc_loss_weight: float = 1.0  # weight of the MSE of x0's second frame differences (acceleration)
    diff_joint_vel_loss_weight: float = 1.0  # weight of the joints' frame-to-frame displacement MSE (cm^2)
    diff_foot_loss_weight: float = 10.0  # weight of the planted feet's displacement error (cm^2; a foot-contact loss)
    diff_ema_decay: float = 0.995  # moving average of the denoiser's weights used for sampling (0: off)
    diff_patch_conv: int = 5  # frames of a depthwise conv blending the output across patch borders (0: off)
    diff_patch_conv_sigma: float = 1.0  # its initial kernel: a Gaussian of this many frames (0: identity)
    diff_patch_conv_learned: bool = False  # false: the conv stays the fixed initial (low-pass) kernel
    diff_keyframe_interp: Literal["linear", "cubic"] = "cubic"  # the keyframe interpolation the denoiser refines
    diff_exact_keyframes: bool = False  # the denoiser's residual is 0 at pinned entries (prediction = keyframes)
    diff_residual_envelope: bool = True  # the residual vanishes with zero slope at pinned entries (implies exact)
    diffusion_steps: int = 1200  # training steps of the diffusion stage
    diff_length_buckets: int = 8  # as length_buckets, for the diffusion stage (steps ~1.85x faster on real takes)
    # bfloat16 runs its matmuls on the CPU's bf16 units (AMX) from a cached bf16 copy;
    # float32 reproduces training numerics exactly.
    diff_weight_dtype: Literal["float32", "bfloat16"] = "float32"  # weights the denoiser samples with

    # ---- sampling (generation defaults) -----------------------------------------------
    temperature: float = 1.0  # GPT sampling temperature (0: greedy)
    top_k: int = 0  # 0: no top-k filter
    top_p: float = 1.0  # 1.0: no nucleus filter
    gpt_guidance_scale: float = 2.0  # GPT classifier-free guidance (1: none)
    guidance_scale: float = 2.0  # diffusion classifier-free guidance
    num_inbetween_steps: int = 10  # DDIM steps
    # keep it <= the max_motion_length the models were trained with: longer motions are beyond the
    # trained positions (timelines of any length are windows of at most this)
    max_generate_length: int = 196  # frames; the longest motion one sampling call accepts
    sampler: Literal["ddim", "ddpm"] = "ddim"  # diffusion sampler (ddpm: all diff_timesteps steps)
    fit_bones: bool = True  # decode joints with the skeleton's exact bone lengths (utils.fit_bone_lengths)
    cleanup_feet: bool = False  # hold planted feet still, legs re-solved by IK: a post-process on the joints (feet.py)

    # ---- optimisation and training ----------------------------------------------------
    batch_size: int = 64  # motions per step, over all processes
    # fewer padded frames per batch; every sample is still seen once an epoch
    length_buckets: int = 0  # VQ-VAE and GPT stages: >0 regroups each run of this many global batches by motion length (0: random)
    lr: float = 5e-4  # peak learning rate (AdamW, cosine decay)
    weight_decay: float = 0.0  # AdamW weight decay
    warmup_steps: int = 100  # steps of linear learning-rate warm-up
    grad_clip: float = 1.0  # gradient norm clipping (0: off)
    eval_interval: int = 300  # steps between validation passes
    val_batches: int = 8  # batches per validation pass
    ckpt_interval: int = 300  # steps between checkpoints
    max_bad_steps: int = 5  # consecutive NaN/inf losses before training stops

    # ---- runtime ----------------------------------------------------------------------
    seed: int = 0  # seed of training, sampling and the data order
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA when present
    amp: bool = True  # bf16 autocast on CUDA
    checkpoint_dir: str = "checkpoints"  # folder of vqvae.pt, gpt.pt, diffusion.pt
    results_dir: str = "results"  # folder of evaluation reports and evaluator checkpoints

    # ---- evaluation -------------------------------------------------------------------
    # Protocol sizes: the defaults are a small CPU run; humanml3d() uses Guo et al.'s.
    evaluator_steps: int = 1500  # training steps of the in-house matching evaluator
    eval_repeats: int = 3  # repeated metric runs for the 95% confidence interval (Guo et al.: 20)
    eval_num_samples: int = 256  # test motions per run (Guo et al.: the whole test split)
    eval_mm_repeats: int = 5  # samples per prompt for MultiModality (Guo et al.: 30)
    eval_diversity_pairs: int = 300  # motion pairs for Diversity (Guo et al.: 300)
    evaluator_file: str = ""  # the in-house evaluator checkpoint; "": <checkpoint_dir>/evaluator.pt
    t2m_evaluator_path: str = ""  # the field's text-motion matching checkpoint, when present
    glove_path: str = ""  # GloVe folder that the field's evaluator uses
    evaluator_hidden: int = 128  # conv/GRU width of the in-house matching evaluator and action classifier
    evaluator_dim: int = 128  # embedding size of the in-house matching evaluator
    classifier_steps: int = 500  # training steps of the action classifier (embedded data set)
    evaluator_lr: float = 1e-3  # learning rate of the evaluator and classifiers
    evaluator_temperature: float = 0.1  # InfoNCE temperature over negative Euclidean distances
    evaluator_max_words: int = 24  # caption words the in-house text encoder reads
    eval_ddim_steps: str = "5,10,25,50"  # comma-separated DDIM step counts of the speed/quality rows
    eval_mm_num_prompts: int = 32  # prompts sampled eval_mm_repeats times each for MultiModality (Guo et al.: 100)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Check every field once: types, closed choices and ranges. Raises ConfigError."""
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            value = getattr(self, f.name)
            setattr(self, f.name, _coerce(f.name, hints[f.name], value))
        positive = ["fps", "feature_dim", "num_joints", "min_motion_length", "max_motion_length",
                    "keyframe_interval", "vq_codebook_size", "vq_code_dim", "vq_width",
                    "gpt_n_layer", "gpt_n_head", "gpt_n_embd", "diff_n_layer", "diff_n_head",
                    "diff_n_embd", "diff_patch_size", "diff_timesteps", "num_inbetween_steps", "max_generate_length",
                    "batch_size", "text_batch_size", "eval_interval", "ckpt_interval",
                    "max_bad_steps", "synthetic_num_motions", "eval_repeats", "eval_num_samples",
                    "eval_diversity_pairs"]
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"config field '{name}' must be > 0, got {getattr(self, name)}")
        non_negative = ["vqvae_steps", "gpt_steps", "diffusion_steps", "evaluator_steps", "top_k",
                        "diff_vel_loss_weight", "diff_acc_loss_weight", "diff_patch_conv", "diff_patch_conv_sigma",
                        "diff_joint_vel_loss_weight", "diff_foot_loss_weight",
                        "warmup_steps", "num_workers", "length_buckets", "diff_length_buckets", "vq_depth", "temperature", "lr", "gpt_decode_threads"]
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ConfigError(f"config field '{name}' must be >= 0, got {getattr(self, name)}")
        for name in ["gpt_token_corruption", "gpt_cond_drop", "diff_cond_drop", "gpt_dropout",
                     "diff_dropout", "diff_ema_decay"]:
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"config field '{name}' must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"config field 'top_p' must be in (0, 1], got {self.top_p}")
        if not 0.0 < self.vq_ema_decay < 1.0:
            raise ConfigError(f"config field 'vq_ema_decay' must be in (0, 1), got {self.vq_ema_decay}")
        if self.diff_patch_conv % 2 == 0 and self.diff_patch_conv:
            raise ConfigError(f"config field 'diff_patch_conv' must be odd (a centred kernel) or 0, "
                              f"got {self.diff_patch_conv}")
        self.dataset_repeat_counts()
        if self.min_motion_length > self.max_motion_length:
            raise ConfigError("config field 'min_motion_length' must be <= 'max_motion_length' "
                              f"({self.min_motion_length} > {self.max_motion_length})")
        if self.keyframe_interval >= self.min_motion_length:
            raise ConfigError("config field 'keyframe_interval' must be smaller than "
                              f"'min_motion_length' ({self.keyframe_interval} >= {self.min_motion_length})")
        if self.gpt_n_embd % self.gpt_n_head or self.diff_n_embd % self.diff_n_head:
            raise ConfigError("config fields 'gpt_n_embd'/'diff_n_embd' must be divisible by their "
                              "'*_n_head'")
        if self.feature_dim != 12 * self.num_joints - 1:
            raise ConfigError(f"config field 'feature_dim' must be 12*num_joints-1 = "
                              f"{12 * self.num_joints - 1} for the HumanML3D layout, got {self.feature_dim}")

    # ------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-safe dict of every field (str, int, float, bool only)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CompositeConfig":
        """Build a config from `to_dict()` output; unknown keys raise ConfigError (retired fields,
        which older checkpoints still hold, are dropped)."""
        data = {k: v for k, v in data.items() if k not in RETIRED_FIELDS}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config key '{unknown[0]}'{suggest(unknown[0], sorted(known))} "
                              "(see --help for the valid fields)")
        return cls(**data)

    def replace(self, **overrides) -> "CompositeConfig":
        """A copy with some fields changed (validated)."""
        return self.from_dict({**self.to_dict(), **overrides})

    def dataset_repeat_counts(self) -> list[int]:
        """The counts of dataset_repeats ([] when it is empty: each folder once). Raises ConfigError
        unless they are whole numbers >= 1 (dataset.load_clips checks there is one per folder)."""
        if not self.dataset_repeats.strip():
            return []
        try:
            counts = [int(part) for part in self.dataset_repeats.split(",")]
        except ValueError:
            counts = [0]
        if min(counts) < 1:
            raise ConfigError("config field 'dataset_repeats' must be whole numbers >= 1, comma-separated, one per "
                              f"dataset_root folder (e.g. 1,3); got '{self.dataset_repeats}'")
        return counts

    def length_buckets_of(self, stage: str) -> int:
        """The length-bucket setting of training stage `stage` (vqvae, gpt, diffusion)."""
        return self.diff_length_buckets if stage == "diffusion" else self.length_buckets

    def model_hash(self) -> str:
        """Short hash of the fields that shape the models and the data; equal for checkpoints
        that were trained together."""
        keys = [f.name for f in fields(self) if f.name.startswith(("vq_", "gpt_n_", "diff_n_",
                                                                   "diff_patch", "diff_timesteps",
                                                                   "diff_noise"))]
        keys += ["feature_dim", "num_joints", "keyframe_interval", "dataset_root", "max_motion_length"]
        payload = json.dumps({k: getattr(self, k) for k in sorted(keys)}, sort_keys=True)
        return hashlib.sha1(payload.encode()).hexdigest()[:12]

    @classmethod
    def medium(cls, **overrides) -> "CompositeConfig":
        """The sizes between the default (2.4M parameters in sampling) and humanml3d() (37M):
        9.7M take part in sampling, a 5 x 256 keyframe GPT (4.4M), a 4 x 256 in-betweener (4.5M)
        and a 256-wide VQ-VAE decoder over 512 codes of 128 dimensions (0.8M). Everything else is
        the default's (data, steps, learning rate)."""
        base = dict(vq_codebook_size=512, vq_code_dim=128, vq_width=256, gpt_n_layer=5, gpt_n_head=8,
                    gpt_n_embd=256, diff_n_layer=4, diff_n_head=8, diff_n_embd=256)
        base.update(overrides)
        return cls(**base)

    @classmethod
    def humanml3d(cls, **overrides) -> "CompositeConfig":
        """Sizes for the real HumanML3D (data in dataset/HumanML3D), right-sized for sampling speed.

        37M parameters take part in sampling (MoMask's released models: 35M): a 7 x 512 keyframe
        GPT (22.9M; MoMask's two transformers are 8 x 384, 25.4M), a 4 x 384 in-betweener with
        5-frame patches, one keyframe per patch (9.6M), and the keyframe VQ-VAE decoder (4.3M).
        The GPT decodes its 25 tokens per 120 frames from weight-only int8 copies on one thread
        and the in-betweener runs its matmuls in bf16 (bench/bench_generate.py --preset humanml3d).
        """
        base = dict(dataset_root="dataset/HumanML3D", dataset_kind="humanml3d",
                    vq_codebook_size=512, vq_code_dim=512, vq_width=512, vq_depth=3,
                    vqvae_steps=100_000, gpt_n_layer=7, gpt_n_head=8, gpt_n_embd=512,
                    gpt_weight_dtype="int8", gpt_decode_threads=1,
                    gpt_steps=150_000, diff_n_layer=4, diff_n_head=6, diff_n_embd=384, diff_patch_size=5,
                    diff_weight_dtype="bfloat16",
                    diffusion_steps=300_000, batch_size=128, lr=1e-4, warmup_steps=2000,
                    eval_interval=5000, ckpt_interval=5000, evaluator_steps=20_000,
                    # Guo et al. 2022's protocol: 20 repeats over the whole test split, Diversity
                    # over 300 pairs, MultiModality over 100 prompts x 30 samples
                    eval_repeats=20, eval_num_samples=100_000, eval_diversity_pairs=300,
                    eval_mm_num_prompts=100, eval_mm_repeats=30)
        base.update(overrides)
        return cls(**base)


# ---------------------------------------------------------------------------------------
def coerce_number(name: str, value, kind: type):
    """value as an int or a float (kind), from a number or its text; ConfigError otherwise.
    Booleans are refused, and an int field takes a float only when it is whole."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if kind is float:
            return float(value)
        if isinstance(value, int) or value.is_integer():
            return int(value)
    elif isinstance(value, str):
        try:
            return kind(value)
        except ValueError:
            pass
    noun = "an int" if kind is int else "a number"
    raise ConfigError(f"config field '{name}' must be {noun}, got {value!r}")


def _coerce(name: str, hint, value):
    """Convert `value` to the field's declared type or raise a one-line ConfigError."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"config field '{name}' must be one of {list(choices)}, got {value!r}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"config field '{name}' must be a bool (true/false), got {value!r}")
    if hint in (int, float):
        return coerce_number(name, value, hint)
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"config field '{name}' must be a string, got {value!r}")
    return value


# ---------------------------------------------------------------------------------------
# Command line: one `--field value` option per field, described by the field's trailing comment
# ---------------------------------------------------------------------------------------
CONFIG_DEST = "cfg__"  # argparse dest prefix of the config fields' options
_SECTION = re.compile(r"#\s*-{3,}\s*(\S.*?)\s*-{3,}\s*$")  # `# ---- group name ----`


@dataclass(frozen=True)
class FieldDoc:
    group: str  # the `# ---- group ----` section the field is declared under
    help: str  # the field's trailing `# comment` ("" when it has none)


@functools.lru_cache(maxsize=None)
def field_docs() -> dict[str, FieldDoc]:
    """{field name: FieldDoc}, read once from CompositeConfig's source: each field's trailing
    comment and the section line above it. Empty when the source cannot be read (frozen apps)."""
    try:
        source = inspect.getsource(CompositeConfig)
    except (OSError, TypeError):
        return {}
    comments = {}  # line -> (text, trailing: code precedes it on its line)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = (tok.string, bool(tok.line[:tok.start[1]].strip()))
    sections = [(line, m.group(1)) for line, (text, trailing) in sorted(comments.items())
                if not trailing and (m := _SECTION.match(text))]
    docs = {}
    for node in ast.parse(source).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            group = next((name for line, name in reversed(sections) if line < node.lineno), "other")
            trailing = [comments[line][0] for line in range(node.lineno, node.end_lineno + 1)
                        if line in comments and comments[line][1]]  # a declaration may span lines
            docs[node.target.id] = FieldDoc(group, trailing[-1].lstrip("#").strip() if trailing else "")
    return docs


def suggest(name: str, valid: Sequence[str]) -> str:
    """' (did you mean X?)' for the valid name closest to a misspelt one, else ''."""
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports errors as one line on stderr, with the nearest valid option or
    choice for a misspelt one, and exits with code 2."""

    def parse_known_args(self, args=None, namespace=None):
        self.argv_seen = list(sys.argv[1:] if args is None else args)  # for error(): misspelt options
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> typing.NoReturn:
        valid = [s for action in self._actions for s in action.option_strings]
        if message.startswith("unrecognized arguments: "):
            unknown = [a.split("=")[0] for a in message.split(": ", 1)[1].split() if a.startswith("-")]
            if unknown:
                message = "; ".join(f"unknown option {name}{suggest(name, valid)}" for name in unknown)
            else:
                message = message.replace("unrecognized arguments:", "unexpected argument(s):")
        elif message.startswith("the following arguments are required"):
            unknown = [a.split("=")[0] for a in getattr(self, "argv_seen", []) if a.startswith("--")
                       and a.split("=")[0] not in valid]
            message += "".join(f"; unknown option {name}{suggest(name, valid)}" for name in unknown)
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        if choice:
            message += suggest(choice.group(1), [c.strip("'") for c in choice.group(2).split(", ")])
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds '(default: X)' to an option's help unless it says it already or there is none to show;
    option names up to 28 characters share their line with the help."""

    def __init__(self, prog: str, max_help_position: int = 30, **kwargs) -> None:
        super().__init__(prog, max_help_position=max_help_position, **kwargs)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, "", argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


class ConfigParser(OneLineParser):
    """OneLineParser whose help reads: the purpose, the script's own options, then the config
    fields in their groups; the usage line lists the script's own options only."""

    def __init__(self, *args, **kwargs) -> None:
        self.config_groups: list = []  # argument groups of the config fields, listed last
        super().__init__(*args, **kwargs)

    def add_argument_group(self, *args, **kwargs):
        """A script's own groups are listed before the config fields' groups."""
        group = super().add_argument_group(*args, **kwargs)
        if self.config_groups:
            self._action_groups.remove(group)
            self._action_groups.insert(self._action_groups.index(self.config_groups[0]), group)
        return group

    def add_config_group(self, title: str, description: Optional[str] = None):
        """A group of config fields, listed after every group of the script's own."""
        group = super().add_argument_group(title, description)
        self.config_groups.append(group)
        return group

    def compact_usage(self) -> str:
        own = [a for a in self._actions if not a.dest.startswith(CONFIG_DEST) and a.dest != "config"]
        formatter = self._get_formatter()
        formatter.add_usage(None, own, [], prefix="usage: ")
        indent = " " * (len("usage: ") + len(self.prog) + 1)
        text = formatter.format_help().strip()[len("usage: "):] + f"\n{indent}[--config FILE.json] [--FIELD VALUE ...]"
        return text.replace("%", "%%")

    def format_usage(self) -> str:
        return self.with_compact_usage(super().format_usage)

    def format_help(self) -> str:
        return self.with_compact_usage(super().format_help)

    def with_compact_usage(self, fmt: typing.Callable[[], str]) -> str:
        saved = self.usage
        self.usage = saved or self.compact_usage()
        try:
            return fmt()
        finally:
            self.usage = saved


def field_help(name: str, default) -> str:
    """The --help line of one field: its description and default."""
    shown = str(default).lower() if isinstance(default, bool) else repr(default) if isinstance(default, str) else default
    doc = field_docs().get(name)
    text = f"{doc.help} (default: {shown})" if doc and doc.help else f"(default: {shown})"
    return text.replace("%", "%%")


def make_parser(description: str, prog: Optional[str] = None) -> argparse.ArgumentParser:
    """An ArgumentParser with `--config FILE.json` and one `--field value` option per field, in
    the groups of config.py, each described by its field's comment.

    Scripts add their own options (and groups) to it before calling `config_from_args`; their
    options come first in --help.
    """
    parser = ConfigParser(prog=prog, description=description, formatter_class=HelpFormatter)
    config = parser.add_config_group(
        "config", "every field below is a --FIELD VALUE option and a key of --config FILE.json "
                  "(defaults < file < options); booleans take true/false")
    config.add_argument("--config", default=None, metavar="FILE.json",
                        help="JSON file of config fields (command-line options override it)")
    hints = typing.get_type_hints(CompositeConfig)
    docs = field_docs()
    groups: dict[str, typing.Any] = {}
    for f in fields(CompositeConfig):
        title = docs[f.name].group if f.name in docs else "other"
        if title not in groups:
            groups[title] = parser.add_config_group(f"config: {title}")
        hint = hints[f.name]
        kwargs = dict(default=argparse.SUPPRESS, dest=f"{CONFIG_DEST}{f.name}", help=field_help(f.name, f.default))
        if typing.get_origin(hint) is Literal:
            kwargs["choices"] = list(typing.get_args(hint))
        elif hint in (int, float):
            kwargs["metavar"] = hint.__name__.upper()
        elif hint is bool:
            kwargs["metavar"] = "BOOL"
        else:
            kwargs["metavar"] = "STR"
        groups[title].add_argument(f"--{f.name}", **kwargs)
    return parser


def config_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> CompositeConfig:
    """Build the config from parsed args: defaults < --config file < --field overrides.

    Bad keys or values end the program with one line on stderr and exit code 2.
    """
    data: dict = {}
    try:
        if args.config:
            try:
                with open(args.config) as fh:
                    data.update(json.load(fh))
            except FileNotFoundError:
                raise ConfigError(f"config file not found: {args.config} (pass an existing --config FILE.json)")
            except json.JSONDecodeError as exc:
                raise ConfigError(f"config file {args.config} is not valid JSON ({exc.msg}, line {exc.lineno})")
            if not isinstance(data, dict):
                raise ConfigError(f"config file {args.config} must hold a JSON object of field: value")
        for key, value in vars(args).items():
            if key.startswith(CONFIG_DEST):
                data[key[len(CONFIG_DEST):]] = value
        return CompositeConfig.from_dict(data)
    except ConfigError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")


def parse_config(argv: Optional[Sequence[str]] = None, description: str = "") -> CompositeConfig:
    """Parse `--field value` overrides (and `--config FILE.json`) into a CompositeConfig."""
    parser = make_parser(description)
    args = parser.parse_args(argv)
    return config_from_args(args, parser)


if __name__ == "__main__":
    print(json.dumps(parse_config(sys.argv[1:]).to_dict(), indent=2))
