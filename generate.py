"""Generate 3D human motion from text with the trained composite model.

    python generate.py                                   # "a person walks forward", 120 frames
    python generate.py --prompt "a person jumps" --seconds 4 --format npy gif

Notebook API:
    vqvae, gpt, inbetween_model, diff_inbetween, clip_model, mean, std, Fdim = load_models(cfg)
    motion, keyframes, keyframe_idx = generate_composite(vqvae, gpt, inbetween_model, diff_inbetween,
        clip_model, mean, std, Fdim, cfg, prompt="a person walks forward", length=120)
"""
from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import Literal, Optional, Sequence, Union

import numpy as np
import torch

from config import CompositeConfig, ConfigError, config_from_args, make_parser
from runtime import CheckpointError, load_checkpoint, select_device, vqvae_identity
from utils import (FEATURE_DIM, NUM_JOINTS, RIC_SLICE, _forward_direction, features_to_joints,
                   keyframe_indices, qbetween, qinv, qrot, recover_root_rot_pos)

Mode = Literal["composite", "interpolate", "diffusion_only"]
MODES = ("composite", "interpolate", "diffusion_only")
OUTPUT_FORMATS = ("npy", "features", "bvh", "gif", "mp4")
DEFAULT_PROMPT = "a person walks forward"
POSE_DIMS = slice(3, RIC_SLICE.stop)  # root height + root-relative joint positions


# ---------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------
def build_models(vq_cfg: CompositeConfig, gpt_cfg: CompositeConfig, diff_cfg: CompositeConfig,
                 text_dim: int, device: torch.device):
    """Freshly initialised (vqvae, gpt, inbetween_model, diff_inbetween) in eval mode on `device`,
    each shaped by its own stage's config."""
    from models.diffusion import GaussianDiffusion, InbetweenDenoiser
    from models.gpt import MotionGPT
    from models.vqvae import KeyframeVQVAE
    vqvae = KeyframeVQVAE(vq_cfg)
    gpt = MotionGPT(gpt_cfg, text_dim)
    inbetween_model = InbetweenDenoiser(diff_cfg, text_dim)
    for model in (vqvae, gpt, inbetween_model):
        model.to(device).eval().requires_grad_(False)
    diff_inbetween = GaussianDiffusion(diff_cfg, inbetween_model).to(device)
    return vqvae, gpt, inbetween_model, diff_inbetween


def load_models(cfg: CompositeConfig, device: Optional[torch.device] = None):
    """Load the three trained stages from cfg.checkpoint_dir and the text encoder they used.

    Returns (vqvae, gpt, inbetween_model, diff_inbetween, clip_model, mean, std, Fdim):
    the models in eval mode on `device` (default: cfg.device), the text encoder, the feature
    statistics mean/std as (263,) float32 numpy arrays, and the feature width Fdim (263).
    Raises CheckpointError when a checkpoint is missing, unsafe, or was not trained with the others.
    """
    from text_encoder import check_encoder_matches, load_text_encoder

    device = device or select_device(cfg)
    paths = {stage: os.path.join(cfg.checkpoint_dir, f"{stage}.pt") for stage in ("vqvae", "gpt", "diffusion")}
    missing = [p for p in paths.values() if not os.path.exists(p)]
    if missing:
        raise CheckpointError(f"no trained checkpoint at {missing[0]}; run `python train.py` first "
                              f"(or pass --checkpoint_dir)")
    saved = {stage: load_checkpoint(path, stage=stage) for stage, path in paths.items()}
    reference = saved["vqvae"]
    for stage in ("gpt", "diffusion"):
        if saved[stage].get("data_hash") != reference.get("data_hash"):
            raise CheckpointError(f"{paths[stage]} was trained on other data statistics than {paths['vqvae']} "
                                  "(retrain it, or point --checkpoint_dir at a set trained together)")
        if saved[stage].get("text_encoder") != reference.get("text_encoder"):
            raise CheckpointError(f"{paths[stage]} used text encoder '{saved[stage].get('text_encoder')}' but "
                                  f"{paths['vqvae']} used '{reference.get('text_encoder')}' (retrain it)")
    if saved["gpt"].get("vqvae_run_id") != vqvae_identity(reference):
        raise CheckpointError(f"{paths['gpt']} was trained on another VQ-VAE than {paths['vqvae']} "
                              "(retrain it with `python train.py --stage gpt`)")
    for stage, payload in saved.items():
        if not payload.get("finished"):
            print(f"warning: {paths[stage]} is an unfinished checkpoint (step {payload['step']})", file=sys.stderr)

    vq_cfg = CompositeConfig.from_dict(reference["config"])
    gpt_cfg = CompositeConfig.from_dict(saved["gpt"]["config"]).replace(vq_codebook_size=vq_cfg.vq_codebook_size)
    diff_cfg = CompositeConfig.from_dict(saved["diffusion"]["config"])
    text_dim = int(reference["text_dim"])
    vqvae, gpt, inbetween_model, diff_inbetween = build_models(vq_cfg, gpt_cfg, diff_cfg, text_dim, device)
    for model, stage in ((vqvae, "vqvae"), (gpt, "gpt"), (inbetween_model, "diffusion")):
        try:
            model.load_state_dict(saved[stage]["model"])
        except RuntimeError as exc:
            raise CheckpointError(f"{paths[stage]} does not fit its own config: "
                                  f"{str(exc).splitlines()[0][:200]}") from None
    clip_model = load_text_encoder(cfg, name=reference["text_encoder"])
    check_encoder_matches(reference["text_encoder"], text_dim, clip_model)
    mean = reference["mean"].numpy().astype(np.float32)
    std = reference["std"].numpy().astype(np.float32)
    return vqvae, gpt, inbetween_model, diff_inbetween, clip_model, mean, std, int(mean.shape[0])


# ---------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------
def check_prompts(prompt: Union[str, Sequence[str]]) -> list[str]:
    """A list of non-empty prompts from one prompt or a list; ValueError otherwise."""
    prompts = [prompt] if isinstance(prompt, str) else list(prompt) if isinstance(prompt, (list, tuple)) else None
    if not prompts:
        raise ValueError("prompt must be a non-empty string or a non-empty list of strings")
    for index, text in enumerate(prompts):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"prompt {index} is empty; describe a motion, e.g. '{DEFAULT_PROMPT}'")
    return prompts


def check_length(length, interval: int, max_length: int) -> int:
    """A valid motion length in frames or a ValueError saying which bound it breaks."""
    if isinstance(length, (bool, np.bool_)) or not isinstance(length, (int, np.integer)):
        if isinstance(length, float) and length.is_integer():
            length = int(length)
        else:
            raise ValueError(f"length must be a whole number of frames, got {length!r}")
    length = int(length)
    if length <= interval:
        raise ValueError(f"length {length} is too short: it must exceed one keyframe interval "
                         f"({interval} frames)")
    if length > max_length:
        raise ValueError(f"length {length} is above the maximum of {max_length} frames "
                         f"({max_length / 20:.1f} s at 20 fps); ask for a shorter motion")
    return length


def _pose_features(joints: torch.Tensor) -> torch.Tensor:
    """Root height and root-relative joint positions in the facing frame of single poses:
    joints (P, 22, 3) -> (P, 64), the feature dims 3:67 that a pose fixes."""
    facing = _forward_direction(joints, smooth=False, hips_swapped=True)  # (P, 3)
    to_facing = qbetween(facing, facing.new_tensor([0.0, 0.0, 1.0]).expand_as(facing))  # (P, 4)
    local = joints[:, 1:] - joints[:, :1] * joints.new_tensor([1.0, 0.0, 1.0])
    local = qrot(to_facing[:, None].expand(local.shape[:-1] + (4,)), local)
    return torch.cat([joints[:, 0, 1:2], local.reshape(len(joints), -1)], dim=-1)


def user_keyframes_to_features(keyframes, keyframe_idx, length: int, mean: np.ndarray, std: np.ndarray):
    """Check user keyframes and turn them into normalised pinned values.

    keyframes: (P, 22, 3) joint positions in metres or (P, 263) features; keyframe_idx: (P,)
    sorted frame indices in [0, length). Returns (frame_idx (P,) long, values (P, 263) normalised,
    dims_mask (P, 263) bool: which feature dims each keyframe pins; joints pin 3:67).
    """
    frame_idx = np.asarray(keyframe_idx)
    if frame_idx.ndim != 1 or frame_idx.size == 0 or not np.issubdtype(frame_idx.dtype, np.integer):
        raise ValueError(f"keyframe_idx must be a 1-D list of frame indices, got {np.asarray(keyframe_idx).tolist()!r:.80}")
    if (frame_idx < 0).any() or (frame_idx >= length).any():
        raise ValueError(f"keyframe_idx must lie in [0, {length - 1}] for a {length}-frame motion, "
                         f"got {frame_idx.tolist()}")
    if (np.diff(frame_idx) <= 0).any():
        raise ValueError(f"keyframe_idx must be sorted and without repeats, got {frame_idx.tolist()}")
    values = np.asarray(keyframes, dtype=np.float64)
    if values.shape not in ((len(frame_idx), NUM_JOINTS, 3), (len(frame_idx), FEATURE_DIM)):
        raise ValueError(f"keyframes must be ({len(frame_idx)}, {NUM_JOINTS}, 3) joint positions or "
                         f"({len(frame_idx)}, {FEATURE_DIM}) features to match keyframe_idx, got {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("keyframes contain NaN or infinite values; pass finite positions")
    full = np.zeros((len(frame_idx), FEATURE_DIM))
    dims_mask = np.zeros((len(frame_idx), FEATURE_DIM), dtype=bool)
    if values.ndim == 3:
        full[:, POSE_DIMS] = _pose_features(torch.from_numpy(values)).numpy()
        dims_mask[:, POSE_DIMS] = True
    else:
        full = values
        dims_mask[:] = True
    normalised = np.where(dims_mask, (full - mean) / std, 0.0)
    return (torch.from_numpy(frame_idx.astype(np.int64)), torch.from_numpy(normalised).float(),
            torch.from_numpy(dims_mask))


STAGE_SEED_OFFSETS = {"gpt": 0, "diffusion": 0x5DEECE66D}  # independent streams per stage


def _row_generators(seed: int, batch: int, device: torch.device, stage: str) -> list[torch.Generator]:
    """One generator per batch row and stage, from seed, seed+1, ...: each row's draws depend
    only on its own seed, so a batch equals its rows generated one by one."""
    return [torch.Generator(device=device).manual_seed((seed + row) ^ STAGE_SEED_OFFSETS[stage])
            for row in range(batch)]


def interpolate_keyframes(values: torch.Tensor, frame_idx: torch.Tensor, length: int) -> torch.Tensor:
    """Linear interpolation of keyframe features over frames: values (K, D) at sorted
    frame_idx (K,) -> (length, D); constant before the first and after the last keyframe."""
    frames = torch.arange(length, device=values.device)
    right = torch.searchsorted(frame_idx, frames).clamp(1, len(frame_idx) - 1)  # (T,)
    left = right - 1
    span = (frame_idx[right] - frame_idx[left]).clamp_min(1).to(values.dtype)
    weight = ((frames - frame_idx[left]).to(values.dtype) / span).clamp(0.0, 1.0)[:, None]
    return values[left] * (1 - weight) + values[right] * weight


# ---------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------
@contextmanager
def _timed(timings: Optional[dict], name: str, device: torch.device):
    """Add the wall time of the block to timings[name] (seconds) when timings is a dict."""
    if timings is None:
        yield
        return
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    yield
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


@torch.inference_mode()
def generate_composite(vqvae, gpt, inbetween_model, diff_inbetween, clip_model, mean, std, Fdim,
                       cfg: CompositeConfig, prompt: Union[str, Sequence[str]] = DEFAULT_PROMPT,
                       length: Union[int, Sequence[int]] = 120, *, seed: Optional[int] = None,
                       temperature: Optional[float] = None, top_k: Optional[int] = None,
                       top_p: Optional[float] = None, guidance_scale: Optional[float] = None,
                       gpt_guidance_scale: Optional[float] = None,
                       num_inbetween_steps: Optional[int] = None, keyframes=None, keyframe_idx=None,
                       return_features: bool = False, mode: Mode = "composite",
                       timings: Optional[dict] = None):
    """Text -> motion: the GPT writes keyframe tokens, the VQ-VAE decodes them, the diffusion
    in-betweens the dense motion through them.

    prompt: a description, or a list of them (one batch). length: frames (20 fps), one int or
    one per prompt. seed: per-row seeds seed, seed+1, ... (default cfg.seed); the sampling
    options default to cfg's. keyframes/keyframe_idx (one prompt only): pin poses, (P, 22, 3)
    joints (pin the pose: root height and root-relative joints) or (P, 263) features (pin
    everything) at sorted frames (P,); the GPT completes the other keyframes and the diffusion
    passes through all of them. mode: "composite" (the product), "interpolate" (keyframes
    linearly interpolated, no diffusion) or "diffusion_only" (text only, no keyframes).
    timings: a dict that receives the seconds spent in each part (text, gpt, vq_decode,
    diffusion, joints), for benchmarks.
    Returns numpy (motion (T, 22, 3) metres y-up, keyframes (K, 22, 3), keyframe_idx (K,)),
    plus features (T, 263) when return_features; lists of those for a list of prompts.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    single = isinstance(prompt, str)
    prompts = check_prompts(prompt)
    interval = gpt.keyframe_interval
    lengths_in = [length] * len(prompts) if not isinstance(length, (list, tuple)) else list(length)
    if len(lengths_in) != len(prompts):
        raise ValueError(f"got {len(lengths_in)} lengths for {len(prompts)} prompts; pass one length or one per prompt")
    lengths = [check_length(n, interval, cfg.max_generate_length) for n in lengths_in]
    if Fdim != FEATURE_DIM:
        raise ValueError(f"Fdim must be {FEATURE_DIM} (HumanML3D features), got {Fdim}")
    if (keyframes is None) != (keyframe_idx is None):
        raise ValueError("pass keyframes and keyframe_idx together")
    if keyframes is not None and not single:
        raise ValueError("pinned keyframes work with one prompt per call; pass prompt as a string")
    pinned = None
    if keyframes is not None:
        pinned = user_keyframes_to_features(keyframes, keyframe_idx, lengths[0], mean, std)
    seed = cfg.seed if seed is None else int(seed)
    device = next(inbetween_model.parameters()).device
    B, max_len = len(prompts), max(lengths)

    with _timed(timings, "text", device):
        text_emb = clip_model.encode(prompts).to(device)  # (B, Dt)
    grid_idx = [torch.from_numpy(keyframe_indices(n, interval)).to(device) for n in lengths]
    num_tokens = torch.tensor([len(g) for g in grid_idx], device=device)  # (B,)
    mean_t = torch.from_numpy(np.asarray(mean, dtype=np.float32)).to(device)
    std_t = torch.from_numpy(np.asarray(std, dtype=np.float32)).to(device)

    keyframe_values = torch.zeros(B, max_len, FEATURE_DIM, device=device)  # (B, T, 263) normalised
    keyframe_mask = torch.zeros(B, max_len, FEATURE_DIM, device=device)
    if mode != "diffusion_only":
        grid_values = _keyframes_from_gpt(vqvae, gpt, text_emb, num_tokens, grid_idx, pinned, cfg,
                                          _row_generators(seed, B, device, "gpt"),
                                          temperature, top_k, top_p, gpt_guidance_scale, timings)  # (B, K, 263)
        for row, idx in enumerate(grid_idx):
            keyframe_values[row, idx] = grid_values[row, :len(idx)]
            keyframe_mask[row, idx] = 1.0
    if pinned is not None:
        frame_idx, values, dims_mask = (t.to(device) for t in pinned)
        rows = keyframe_values[0, frame_idx]
        keyframe_values[0, frame_idx] = torch.where(dims_mask, values, rows)
        keyframe_mask[0, frame_idx] = torch.maximum(keyframe_mask[0, frame_idx], dims_mask.float())
    padding_mask = torch.arange(max_len, device=device)[None] < torch.tensor(lengths, device=device)[:, None]

    if mode == "interpolate":
        dense = torch.zeros_like(keyframe_values)
        for row, (n, idx) in enumerate(zip(lengths, grid_idx)):
            dense[row, :n] = interpolate_keyframes(keyframe_values[row, idx], idx, n)
    else:
        with _timed(timings, "diffusion", device):
            dense = diff_inbetween.sample(
                text_emb, keyframe_values, keyframe_mask, padding_mask,
                num_steps=cfg.num_inbetween_steps if num_inbetween_steps is None else num_inbetween_steps,
                guidance_scale=cfg.guidance_scale if guidance_scale is None else guidance_scale,
                method=cfg.sampler, generator=_row_generators(seed, B, device, "diffusion"))  # (B, T, 263)
    features = dense * std_t + mean_t  # (B, T, 263)
    with _timed(timings, "joints", device):
        joints = features_to_joints(features.float())  # (B, T, 22, 3)

    outputs = []
    for row, n in enumerate(lengths):
        kf_frames = torch.nonzero(keyframe_mask[row, :n].any(-1)).squeeze(-1)  # (K,)
        kf_features = keyframe_values[row, kf_frames] * std_t + mean_t  # (K, 263)
        kf_joints = place_keyframes(kf_features, features[row, :n], kf_frames)  # (K, 22, 3)
        result = (joints[row, :n].cpu().numpy(), kf_joints.cpu().numpy(), kf_frames.cpu().numpy())
        if return_features:
            result = result + (features[row, :n].cpu().numpy(),)
        outputs.append(result)
    return outputs[0] if single else [list(items) for items in zip(*outputs)]


def _keyframes_from_gpt(vqvae, gpt, text_emb, num_tokens, grid_idx, pinned, cfg, generators,
                        temperature, top_k, top_p, gpt_guidance_scale, timings) -> torch.Tensor:
    """Sample keyframe tokens (completing any pinned ones) and decode them: (B, K, 263) normalised."""
    B, max_k = len(grid_idx), int(num_tokens.max())
    device = text_emb.device
    pinned_tokens = None
    if pinned is not None:
        frame_idx, values, dims_mask = (t.to(device) for t in pinned)
        slot_of_frame = {int(f): s for s, f in enumerate(grid_idx[0].tolist())}
        on_grid = [(p, slot_of_frame[int(f)]) for p, f in enumerate(frame_idx.tolist()) if int(f) in slot_of_frame]
        if on_grid:
            sketch = torch.zeros(1, max_k, FEATURE_DIM, device=device)  # unknown dims at the data mean
            for p, slot in on_grid:
                sketch[0, slot] = torch.where(dims_mask[p], values[p], sketch[0, slot])
            codes = vqvae.encode(sketch)  # (1, K)
            pinned_tokens = torch.full((1, max_k), -1, dtype=torch.long, device=device)
            for _, slot in on_grid:
                pinned_tokens[0, slot] = codes[0, slot]
    with _timed(timings, "gpt", device):
        tokens = gpt.sample(text_emb, num_tokens,
                            temperature=cfg.temperature if temperature is None else temperature,
                            top_k=cfg.top_k if top_k is None else top_k,
                            top_p=cfg.top_p if top_p is None else top_p,
                            guidance_scale=cfg.gpt_guidance_scale if gpt_guidance_scale is None else gpt_guidance_scale,
                            generator=generators, pinned_tokens=pinned_tokens)  # (B, K)
    with _timed(timings, "vq_decode", device):
        token_mask = torch.arange(max_k, device=device)[None] < num_tokens[:, None]
        codes = torch.where(token_mask, tokens, torch.zeros_like(tokens))
        return vqvae.decode(codes, token_mask)


def place_keyframes(keyframe_features: torch.Tensor, motion_features: torch.Tensor,
                    frame_idx: torch.Tensor) -> torch.Tensor:
    """World joint positions (K, 22, 3) of keyframe poses (K, 263), placed with the root
    rotation and position that the whole motion (T, 263) has at their frames (K,)."""
    root_quat, root_pos = recover_root_rot_pos(motion_features)  # (T, 4), (T, 3)
    quat, pos = root_quat[frame_idx], root_pos[frame_idx]
    local = keyframe_features[:, RIC_SLICE].reshape(len(frame_idx), NUM_JOINTS - 1, 3)
    world = qrot(qinv(quat)[:, None].expand(local.shape[:-1] + (4,)), local)
    world = world + pos[:, None] * world.new_tensor([1.0, 0.0, 1.0])
    root = torch.cat([pos[:, :1], keyframe_features[:, 3:4], pos[:, 2:]], dim=-1)
    return torch.cat([root[:, None], world], dim=1)


# ---------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------
def _check_output_path(path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"output folder does not exist: {folder} (create it or pass another --out)")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"output folder is not writable: {folder} (pass another --out)")


def _save_outputs(stem: str, formats: list[str], prompt: str, motion, keyframes, keyframe_idx, features,
                  fps: int) -> list[str]:
    written = []
    if "npy" in formats:
        np.save(stem + ".npy", motion.astype(np.float32))
        np.savez(stem + ".npz", motion=motion.astype(np.float32), keyframes=keyframes.astype(np.float32),
                 keyframe_idx=keyframe_idx.astype(np.int64), features=features.astype(np.float32),
                 prompt=np.array(prompt), fps=np.array(fps))
        written += [stem + ".npy", stem + ".npz"]
    if "features" in formats:
        np.save(stem + "_features.npy", features.astype(np.float32))
        written.append(stem + "_features.npy")
    if "bvh" in formats:
        from bvh import write_bvh
        write_bvh(stem + ".bvh", motion, fps=fps)
        written.append(stem + ".bvh")
    for video in ("gif", "mp4"):
        if video in formats:
            from visualize import save_animation
            written.append(save_animation(motion, stem + "." + video, fps=fps, title=prompt,
                                          keyframe_idx=keyframe_idx, keyframes=keyframes))
    return written


def main(argv: Optional[list[str]] = None) -> int:
    parser = make_parser(__doc__.split("\n\n")[0], prog="generate.py")
    opts = parser.add_argument_group("generation")
    opts.add_argument("--prompt", default=None, help=f"text description (default: '{DEFAULT_PROMPT}')")
    opts.add_argument("--prompts_file", default=None, help="a text file with one prompt a line")
    opts.add_argument("--length", default=None, help="motion length in frames (default 120)")
    opts.add_argument("--seconds", default=None, help="motion length in seconds (instead of --length)")
    opts.add_argument("--num_samples", default="1", help="samples per prompt")
    opts.add_argument("--out", default="sample_composite_output.npy",
                      help="output path; more samples get _<i> suffixes")
    opts.add_argument("--format", nargs="+", default=["npy"], choices=OUTPUT_FORMATS,
                      help="what to write (several allowed)")
    args = parser.parse_args(argv)
    cfg = config_from_args(args, parser)
    try:
        if args.prompts_file:
            if not os.path.isfile(args.prompts_file):
                raise ValueError(f"prompts file not found: {args.prompts_file}")
            with open(args.prompts_file, encoding="utf-8") as fh:
                prompts = [line.strip() for line in fh if line.strip()]
            if not prompts:
                raise ValueError(f"prompts file {args.prompts_file} has no prompts (one a line)")
        else:
            prompts = [DEFAULT_PROMPT if args.prompt is None else args.prompt]
        check_prompts(prompts)
        if args.length is not None and args.seconds is not None:
            raise ValueError("pass --length or --seconds, not both")
        if args.seconds is not None:
            try:
                seconds = float(args.seconds)
            except ValueError:
                raise ValueError(f"--seconds must be a number, got {args.seconds!r}") from None
            length = int(round(seconds * cfg.fps))
        elif args.length is not None:
            try:
                length = int(args.length)
            except ValueError:
                raise ValueError(f"--length must be a whole number of frames, got {args.length!r}") from None
        else:
            length = 120
        check_length(length, cfg.keyframe_interval, cfg.max_generate_length)
        try:
            num_samples = int(args.num_samples)
        except ValueError:
            raise ValueError(f"--num_samples must be a whole number, got {args.num_samples!r}") from None
        if num_samples < 1:
            raise ValueError(f"--num_samples must be >= 1, got {num_samples}")
        _check_output_path(args.out)
        models = load_models(cfg)
        jobs = [(p, s) for p in prompts for s in range(num_samples)]
        stem = os.path.splitext(args.out)[0]
        out = generate_composite(*models, cfg, prompt=[p for p, _ in jobs], length=length, return_features=True)
        # rows of one call get seeds cfg.seed + row, so each sample differs
        written = []
        for row, (prompt, _) in enumerate(jobs):
            row_stem = stem if len(jobs) == 1 else f"{stem}_{row}"
            motion, keyframes, keyframe_idx, features = (items[row] for items in out)
            written += _save_outputs(row_stem, args.format, prompt, motion, keyframes, keyframe_idx,
                                     features, cfg.fps)
    except (ValueError, CheckpointError, ConfigError) as exc:
        print(f"generate.py: error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
