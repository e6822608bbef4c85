"""CompositeConfig: the single source of every hyperparameter and path of the project.

Every script builds one with `parse_config(argv)`, which maps `--field value` overrides
(and `--config FILE.json`) onto the dataclass fields. The config is saved inside every
checkpoint with `to_dict()` and restored with `from_dict()`.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import typing
from dataclasses import dataclass, field, fields
from typing import Literal, Optional, Sequence


class ConfigError(ValueError):
    """A bad config key or value; the message is one line naming the key and the fix."""


RETIRED_FIELDS = ("compile",)  # fields of older versions, ignored when read from a checkpoint


@dataclass
class CompositeConfig:
    # ---- data -------------------------------------------------------------------------
    dataset_root: str = "dataset/synthetic"  # folder in the HumanML3D layout
    dataset_kind: Literal["synthetic", "humanml3d"] = "synthetic"  # synthetic: built on first use
    synthetic_num_motions: int = 3000  # size of the embedded procedural data set
    synthetic_seed: int = 1234  # the embedded data set is a pure function of this seed
    fps: int = 20  # frames per second of every motion
    feature_dim: int = 263  # HumanML3D feature width for the 22-joint skeleton
    num_joints: int = 22
    min_motion_length: int = 40  # frames; shorter motions are skipped (HumanML3D rule)
    max_motion_length: int = 196  # frames; longer motions are randomly cropped
    keyframe_interval: int = 5  # frames between keyframes (first, every interval, last)
    num_workers: int = 0  # DataLoader worker processes

    # ---- text conditioning ------------------------------------------------------------
    text_encoder: Literal["auto", "clip", "minilm"] = "auto"  # auto: CLIP if its weights exist
    clip_path: str = ""  # local ViT-B-32.pt; empty: CLIP's own cache (~/.cache/clip)
    text_batch_size: int = 256  # captions per batch when building the embedding cache

    # ---- stage 1a: keyframe VQ-VAE ------------------------------------------------------
    vq_codebook_size: int = 256
    vq_code_dim: int = 64
    vq_width: int = 128  # conv channels
    vq_depth: int = 2  # residual blocks in encoder and decoder
    vq_ema_decay: float = 0.99
    vq_commit_weight: float = 0.02
    vq_vel_loss_weight: float = 0.5  # weight of the keyframe-to-keyframe difference loss
    vqvae_steps: int = 1200

    # ---- stage 1b: keyframe GPT -------------------------------------------------------
    gpt_n_layer: int = 3
    gpt_n_head: int = 4
    gpt_n_embd: int = 128
    gpt_dropout: float = 0.1
    gpt_token_corruption: float = 0.1  # fraction of input tokens replaced at random (T2M-GPT)
    gpt_cond_drop: float = 0.1  # probability of dropping the text for classifier-free guidance
    gpt_steps: int = 1500
    # weights the GPT samples with: int8 (weight-only, per output channel) reads 4x fewer bytes per
    # decoded token on CPU; float32 reproduces training numerics exactly. Training always uses float32.
    gpt_weight_dtype: Literal["float32", "bfloat16", "int8"] = "float32"
    # torch threads while the GPT samples (0: all of torch's). A batch-1 decoding step is a few
    # small matrix-vector products; splitting them across cores costs more in synchronisation
    # than it saves when the cores are shared.
    gpt_decode_threads: int = 0

    # ---- stage 2: diffusion in-betweener ----------------------------------------------
    diff_n_layer: int = 4
    diff_n_head: int = 4
    diff_n_embd: int = 128
    diff_dropout: float = 0.1
    diff_patch_size: int = 4  # frames per transformer token
    diff_timesteps: int = 1000  # training diffusion steps
    diff_noise_schedule: Literal["cosine", "linear"] = "cosine"
    diff_cond_drop: float = 0.1  # probability of dropping the text for classifier-free guidance
    diff_vel_loss_weight: float = 1.0  # weight of the MSE of x0's frame-to-frame differences (velocity)
    diff_acc_loss_weight: float = 1.0  # weight of the MSE of x0's second frame differences (acceleration)
    diff_joint_vel_loss_weight: float = 1.0  # weight of the joints' frame-to-frame displacement MSE (cm^2)
    diff_foot_loss_weight: float = 1.0  # weight of the planted feet's displacement error (cm^2; a foot-contact loss)
    diff_ema_decay: float = 0.995  # moving average of the denoiser's weights used for sampling (0: off)
    diff_patch_conv: int = 5  # frames of a depthwise conv blending the output across patch borders (0: off)
    diff_patch_conv_sigma: float = 1.0  # its initial kernel: a Gaussian of this many frames (0: identity)
    diff_patch_conv_learned: bool = False  # false: the conv stays the fixed initial (low-pass) kernel
    diff_keyframe_interp: Literal["linear", "cubic"] = "cubic"  # the keyframe interpolation the denoiser refines
    diff_exact_keyframes: bool = False  # the denoiser's residual is 0 at pinned entries (prediction = keyframes)
    diff_residual_envelope: bool = True  # the residual vanishes with zero slope at pinned entries (implies exact)
    diffusion_steps: int = 1200
    # weights the denoiser samples with: bfloat16 runs its matmuls on the CPU's bf16 units (AMX)
    # from a cached bf16 copy; float32 reproduces training numerics exactly.
    diff_weight_dtype: Literal["float32", "bfloat16"] = "float32"

    # ---- sampling defaults ------------------------------------------------------------
    temperature: float = 1.0
    top_k: int = 0  # 0: no top-k filter
    top_p: float = 1.0  # 1.0: no nucleus filter
    gpt_guidance_scale: float = 2.0
    guidance_scale: float = 2.0  # diffusion classifier-free guidance
    num_inbetween_steps: int = 10  # DDIM steps
    max_generate_length: int = 196  # frames; the longest motion generate_composite accepts (keep it
    # <= the max_motion_length the models were trained with: longer motions are beyond the trained positions)
    sampler: Literal["ddim", "ddpm"] = "ddim"
    fit_bones: bool = True  # decode joints with the skeleton's exact bone lengths (utils.fit_bone_lengths)

    # ---- optimisation -----------------------------------------------------------------
    batch_size: int = 64
    length_buckets: int = 0  # >0: each run of this many global batches is regrouped by motion length
    # (fewer padded frames per batch; every sample still seen once an epoch; 0: random batches)
    lr: float = 5e-4
    weight_decay: float = 0.0
    warmup_steps: int = 100
    grad_clip: float = 1.0
    eval_interval: int = 300  # steps between validation passes
    val_batches: int = 8  # batches per validation pass
    ckpt_interval: int = 300  # steps between checkpoints
    max_bad_steps: int = 5  # consecutive NaN/inf losses before training stops

    # ---- runtime ----------------------------------------------------------------------
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True  # bf16 autocast on CUDA
    checkpoint_dir: str = "checkpoints"
    results_dir: str = "results"

    # ---- evaluation -------------------------------------------------------------------
    evaluator_steps: int = 1500
    # Protocol sizes: the defaults are a small CPU run; humanml3d() uses Guo et al.'s.
    eval_repeats: int = 3  # repeated metric runs for the 95% confidence interval (Guo et al.: 20)
    eval_num_samples: int = 256  # test motions per run (Guo et al.: the whole test split)
    eval_mm_repeats: int = 5  # samples per prompt for MultiModality (Guo et al.: 30)
    eval_diversity_pairs: int = 300  # motion pairs for Diversity (Guo et al.: 300)
    t2m_evaluator_path: str = ""  # the field's text-motion matching checkpoint, when present
    glove_path: str = ""  # GloVe folder that the field's evaluator uses
    evaluator_hidden: int = 128  # conv/GRU width of the in-house matching evaluator and action classifier
    evaluator_dim: int = 128  # embedding size of the in-house matching evaluator
    classifier_steps: int = 500  # training steps of the action classifier (embedded data set)
    evaluator_lr: float = 1e-3
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
                        "warmup_steps", "num_workers", "length_buckets", "vq_depth", "temperature", "lr", "gpt_decode_threads"]
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
            raise ConfigError(f"unknown config key '{unknown[0]}' (see --help for the valid fields)")
        return cls(**data)

    def replace(self, **overrides) -> "CompositeConfig":
        """A copy with some fields changed (validated)."""
        return self.from_dict({**self.to_dict(), **overrides})

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


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports errors as one line on stderr and exits with code 2."""

    def error(self, message: str) -> typing.NoReturn:
        message = message.replace("unrecognized arguments:", "unknown option(s):")
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def make_parser(description: str, prog: Optional[str] = None) -> argparse.ArgumentParser:
    """An ArgumentParser with `--config FILE.json` and one `--field value` option per field.

    Scripts add their own options to it before calling `parse_config`.
    """
    parser = OneLineParser(prog=prog, description=description,
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", default=None, metavar="FILE.json",
                        help="JSON file of config fields (command-line options override it)")
    group = parser.add_argument_group("CompositeConfig fields")
    hints = typing.get_type_hints(CompositeConfig)
    for f in fields(CompositeConfig):
        hint = hints[f.name]
        kwargs = dict(default=argparse.SUPPRESS, dest=f"cfg__{f.name}",
                      help=f"(default: {f.default!r})")
        if typing.get_origin(hint) is Literal:
            kwargs["choices"] = list(typing.get_args(hint))
        elif hint in (int, float):
            kwargs["metavar"] = hint.__name__.upper()
        elif hint is bool:
            kwargs["metavar"] = "BOOL"
        else:
            kwargs["metavar"] = "STR"
        group.add_argument(f"--{f.name}", **kwargs)
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
            if key.startswith("cfg__"):
                data[key[len("cfg__"):]] = value
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
