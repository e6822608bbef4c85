"""Generate 3D human motion from text with the trained composite model.

    python generate.py                                   # "a person walks forward", 120 frames
    python generate.py --prompt "a person jumps" --seconds 4 --format npy gif
    python generate.py --format smpl                     # joint rotations, SMPL's poses/trans (.npz)
    python generate.py --timeline "a person walks forward:4; a person waves with the right hand:3" --format npy gif

Notebook API:
    vqvae, gpt, inbetween_model, diff_inbetween, clip_model, mean, std, Fdim = load_models(cfg)
    motion, keyframes, keyframe_idx = generate_composite(vqvae, gpt, inbetween_model, diff_inbetween,
        clip_model, mean, std, Fdim, cfg, prompt="a person walks forward", length=120)
"""
from __future__ import annotations

import os
import sys
from typing import Optional, Sequence, Union

import numpy as np
import torch

from config import CompositeConfig, ConfigError, config_from_args, make_parser
from pipeline import (DEFAULT_PROMPT, Composite, KeyframePins, Mode, MotionSample, SamplingOptions,
                      check_length, check_prompts)
from runtime import CheckpointError, check_out_path

OUTPUT_FORMATS = ("npy", "features", "bvh", "smpl", "gif", "mp4", "filmstrip")


# ---------------------------------------------------------------------------------------
# The notebook API: thin wrappers over pipeline.Composite
# ---------------------------------------------------------------------------------------
def load_models(cfg: CompositeConfig, device: Optional[torch.device] = None):
    """Load the three trained stages from cfg.checkpoint_dir and the text encoder they used.

    Returns (vqvae, gpt, inbetween_model, diff_inbetween, clip_model, mean, std, Fdim):
    the models in eval mode on `device` (default: cfg.device), the text encoder, the feature
    statistics mean/std as (263,) float32 numpy arrays, and the feature width Fdim (263).
    Raises CheckpointError when a checkpoint is missing, unsafe, or was not trained with the others.
    (`pipeline.Composite.from_checkpoints(cfg)` gives the same as one object.)
    """
    c = Composite.from_checkpoints(cfg, device)
    return c.vqvae, c.gpt, c.denoiser, c.diffusion, c.text_encoder, c.mean, c.std, int(c.mean.shape[0])


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
    in-betweens the dense motion through them. (The notebook API; `pipeline.Composite.sample`
    does the work and returns a result object.)

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
    if Fdim != len(mean):
        raise ValueError(f"Fdim must equal the width of mean/std ({len(mean)}), got {Fdim}")
    if (keyframes is None) != (keyframe_idx is None):
        raise ValueError("pass keyframes and keyframe_idx together")
    if keyframes is not None and not isinstance(prompt, str):
        raise ValueError("pinned keyframes work with one prompt per call; pass prompt as a string")
    composite = Composite(vqvae, gpt, inbetween_model, diff_inbetween, clip_model, np.asarray(mean, np.float32),
                          np.asarray(std, np.float32), cfg)
    options = SamplingOptions(seed=seed, temperature=temperature, top_k=top_k, top_p=top_p,
                              guidance_scale=guidance_scale, gpt_guidance_scale=gpt_guidance_scale,
                              num_inbetween_steps=num_inbetween_steps, mode=mode)
    pins = None if keyframes is None else KeyframePins(keyframes, keyframe_idx)
    result = composite.sample(prompt, length, options, pins, return_timings=timings is not None)
    if timings is not None:
        for name, seconds in result.timings.items():
            timings[name] = timings.get(name, 0.0) + seconds
    rows = [(m.joints, m.keyframes, m.keyframe_idx) + ((m.features,) if return_features else ())
            for m in result.motions]
    return rows[0] if isinstance(prompt, str) else [list(items) for items in zip(*rows)]


# ---------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------
def save_outputs(stem: str, formats: list[str], motion: MotionSample, fps: int,
                 bvh_fps: Optional[int] = None) -> list[str]:
    """Write one generated motion in the requested formats; returns the paths written. A
    timeline (timeline.TimelineResult) also writes its segments into the .npz (segment_texts,
    segment_start, segment_end frames) and draws the current segment's text on every frame."""
    written = []
    segments = getattr(motion, "segments", None) or []
    if "npy" in formats:
        np.save(stem + ".npy", motion.joints.astype(np.float32))
        extra = {} if not segments else dict(segment_texts=np.array([s.text for s in segments]),
                                             segment_start=np.array([s.start for s in segments], np.int64),
                                             segment_end=np.array([s.end for s in segments], np.int64))
        if motion.contacts is not None:  # the planted flags the foot cleanup used (T, 4)
            extra["contacts"] = np.asarray(motion.contacts, bool)
        np.savez(stem + ".npz", motion=motion.joints.astype(np.float32), keyframes=motion.keyframes.astype(np.float32),
                 keyframe_idx=motion.keyframe_idx.astype(np.int64), features=motion.features.astype(np.float32),
                 prompt=np.array(motion.prompt), fps=np.array(fps), **extra)
        written += [stem + ".npy", stem + ".npz"]
    if "features" in formats:
        np.save(stem + "_features.npy", motion.features.astype(np.float32))
        written.append(stem + "_features.npy")
    if "bvh" in formats:
        from bvh import write_bvh
        write_bvh(stem + ".bvh", motion.joints, fps=fps, bvh_fps=bvh_fps)
        written.append(stem + ".bvh")
    if "smpl" in formats:  # SMPL-layout joint rotations: poses (T, 72), trans, y up, fps (motion_io.smpl)
        from motion_io.smpl import write_smpl_npz
        cleaned = motion.contacts is not None  # the features' rot6d are the uncleaned legs'
        written.append(write_smpl_npz(stem + "_smpl.npz", motion.joints, features=None if cleaned else motion.features,
                                      fps=fps, prompt=motion.prompt))
    for video in ("gif", "mp4"):
        if video in formats:
            from visualize import save_animation, segment_captions
            captions = None if not segments else segment_captions(
                [s.text for s in segments], [s.start for s in segments], [s.end for s in segments], len(motion.joints))
            written.append(save_animation(motion.joints, stem + "." + video, fps=fps,
                                          title=None if segments else motion.prompt, keyframe_idx=motion.keyframe_idx,
                                          keyframes=motion.keyframes, captions=captions))
    if "filmstrip" in formats:
        from visualize import save_filmstrip
        written.append(save_filmstrip(motion.joints, stem + "_filmstrip.png", title=motion.prompt,
                                      keyframe_idx=motion.keyframe_idx, fps=fps))
    return written


def parse_number(text: str, kind: type, option: str, expected: str):
    """kind(text) (int or float), or a ValueError saying what `option` expects."""
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{option} must be {expected}, got {text!r}") from None


def read_prompts(args) -> list[str]:
    """The prompts asked for: --prompts_file (one a line), --prompt, or the default."""
    if not args.prompts_file:
        return check_prompts([DEFAULT_PROMPT if args.prompt is None else args.prompt])
    if not os.path.isfile(args.prompts_file):
        raise ValueError(f"prompts file not found: {args.prompts_file}")
    with open(args.prompts_file, encoding="utf-8") as fh:
        prompts = [line.strip() for line in fh if line.strip()]
    if not prompts:
        raise ValueError(f"prompts file {args.prompts_file} has no prompts (one a line)")
    return check_prompts(prompts)


def requested_length(args, cfg: CompositeConfig) -> int:
    """Frames from --length or --seconds (default 120), checked against the model's limits."""
    if args.length is not None and args.seconds is not None:
        raise ValueError("pass --length or --seconds, not both")
    if args.seconds is not None:
        length = int(round(parse_number(args.seconds, float, "--seconds", "a number") * cfg.fps))
    elif args.length is not None:
        length = parse_number(args.length, int, "--length", "a whole number of frames")
    else:
        length = 120
    return check_length(length, cfg.keyframe_interval, cfg.max_generate_length)


def make_cli_parser():
    parser = make_parser(__doc__.split("\n\n")[0], prog="generate.py")
    opts = parser.add_argument_group("generation")
    opts.add_argument("--prompt", default=None, help=f"text description (default: '{DEFAULT_PROMPT}')")
    opts.add_argument("--prompts_file", default=None, help="a text file with one prompt a line")
    opts.add_argument("--length", default=None, help="motion length in frames (default 120)")
    opts.add_argument("--seconds", default=None, help="motion length in seconds (instead of --length)")
    opts.add_argument("--num_samples", default="1", help="samples per prompt")
    opts.add_argument("--out", default="sample_composite_output.npy",
                      help="output path; more samples get _<i> suffixes")
    opts.add_argument("--format", nargs="+", default=["npy"], choices=OUTPUT_FORMATS, metavar="FORMAT",
                      help=f"what to write, one or several of: {', '.join(OUTPUT_FORMATS)} (default: npy)")
    opts.add_argument("--timeline", default=None,
                      help="prompts in a row with their seconds, one continuous motion of any length: "
                           "'a person walks forward:4; a person waves with the right hand:3' "
                           "(instead of --prompt and --length)")
    opts.add_argument("--split_then", action="store_true", help="--prompt's actions chained with 'then' become timeline segments sharing its length")
    opts.add_argument("--session", default=None, metavar="FILE.json", help="a session saved by app.py's page (the API's request JSON): prompts, pins, path, seeds")
    opts.add_argument("--trajectory", default=None,
                      help="a .npy root path for the root to follow: (T, 2) xz per frame or (P, 3) rows "
                           "(frame, x, z), metres")
    opts.add_argument("--joint_pins", default=None,
                      help="a .json list of joint targets in world metres: [{\"joint\": \"right_wrist\", "
                           "\"seconds\": 2.5, \"position\": [0.3, 1.5, 0.4], \"axes\": \"xyz\"}] (effectors.py)")
    opts.add_argument("--bvh_fps", type=int, default=None,
                      help="frame rate of the .bvh (e.g. 30 or 24 for tools that assume one; resampled); "
                           "default: the model's")
    return parser


def read_timeline(args, cfg: CompositeConfig):
    """The checked segments of --timeline (it replaces --prompt, --prompts_file, --length, --seconds)."""
    from timeline import check_segments
    clashing = [name for name in ("prompt", "prompts_file", "length", "seconds") if getattr(args, name) is not None]
    if clashing:
        raise ValueError(f"--timeline sets the prompts and their durations; drop --{clashing[0]}")
    return check_segments(args.timeline, cfg.fps, cfg.keyframe_interval)


def read_trajectory(path: Optional[str]) -> Optional[np.ndarray]:
    """The array in --trajectory's .npy file (its shape is checked against the length later)."""
    if path is None:
        return None
    if not os.path.isfile(path):
        raise ValueError(f"trajectory file not found: {path} (pass a .npy of (T, 2) or (P, 3) rows)")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"cannot read trajectory {path}: not a NumPy .npy array ({str(exc)[:80]})") from None


def then_segments(args, cfg: CompositeConfig):
    """--split_then: the actions of --prompt chained with 'then' as timeline segments that share its
    length (None without --split_then)."""
    if not args.split_then:
        return None
    from authoring.session import split_then
    from timeline import check_segments
    parts = split_then(read_prompts(args)[0])
    seconds = requested_length(args, cfg) / cfg.fps / len(parts)
    return check_segments([(part, seconds) for part in parts], cfg.fps, cfg.keyframe_interval)


def run_session(args, cfg: CompositeConfig) -> int:
    """--session FILE.json: the motions of a session saved by the page (or an API request body)."""
    from authoring.jobs import generate_request
    from authoring.session import RequestError, decode_body, parse_request
    try:
        clashing = [name for name in ("prompt", "prompts_file", "timeline", "length", "seconds", "trajectory")
                    if getattr(args, name) is not None]
        if clashing:
            raise ValueError(f"--session holds the prompts, pins and path; drop --{clashing[0]}")
        with open(args.session, "rb") as fh:
            request = parse_request(decode_body(fh.read()), cfg.fps, cfg.keyframe_interval)
        check_out_path(args.out)
        jobs = generate_request(Composite.from_checkpoints(cfg), request)
        stem = os.path.splitext(args.out)[0]
        written = [path for row, motion in enumerate(jobs)
                   for path in save_outputs(stem if len(jobs) == 1 else f"{stem}_{row}", args.format, motion,
                                            cfg.fps, args.bvh_fps)]
    except OSError as exc:
        print(f"generate.py: error: cannot read session {args.session}: {exc.strerror}", file=sys.stderr)
        return 2
    except (ValueError, RequestError, CheckpointError, ConfigError) as exc:
        print(f"generate.py: error: session {args.session}: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


def read_joint_pins(path: Optional[str], fps: int):
    """The JointPins of --joint_pins's .json file (seconds there, frames here; checked against the length later)."""
    if path is None:
        return None
    import json
    from effectors import pins_from_records
    if not os.path.isfile(path):
        raise ValueError(f"joint pins file not found: {path} (pass a .json list of pins)")
    try:
        with open(path, encoding="utf-8") as handle:
            records = json.load(handle)
    except (ValueError, OSError) as exc:
        raise ValueError(f"cannot read joint pins {path}: not valid JSON ({str(exc)[:80]})") from None
    return pins_from_records(records, fps)


def main(argv: Optional[list[str]] = None) -> int:
    parser = make_cli_parser()
    args = parser.parse_args(argv)
    cfg = config_from_args(args, parser)
    if args.session is not None:
        return run_session(args, cfg)
    try:
        segments = read_timeline(args, cfg) if args.timeline is not None else then_segments(args, cfg)
        prompts = None if segments else read_prompts(args)
        length = segments[-1].end if segments else requested_length(args, cfg)
        num_samples = parse_number(args.num_samples, int, "--num_samples", "a whole number")
        if num_samples < 1:
            raise ValueError(f"--num_samples must be >= 1, got {num_samples}")
        check_out_path(args.out)
        trajectory = read_trajectory(args.trajectory)
        if trajectory is not None:
            from control import check_trajectory
            check_trajectory(trajectory, length)
        joint_pins = read_joint_pins(args.joint_pins, cfg.fps)
        if joint_pins is not None:
            from effectors import check_joint_pins
            check_joint_pins(joint_pins, length)
        composite = Composite.from_checkpoints(cfg)
        if segments:  # sample i gets seed cfg.seed + i
            from timeline import generate_timeline
            jobs = [generate_timeline(composite, [(s.text, s.num_frames / cfg.fps) for s in segments],
                                      SamplingOptions(seed=cfg.seed + i), trajectory=trajectory,
                                      joint_pins=joint_pins)
                    for i in range(num_samples)]
        elif trajectory is not None or joint_pins is not None:  # one call per motion, with the seed its batch row would get
            jobs = [composite.sample(prompt, length, SamplingOptions(seed=cfg.seed + row), trajectory=trajectory,
                                     joint_pins=joint_pins).motions[0]
                    for row, prompt in enumerate(p for p in prompts for _ in range(num_samples))]
        else:
            # rows of one call get seeds cfg.seed + row, so each sample differs
            jobs = composite.sample([p for p in prompts for _ in range(num_samples)], length).motions
        stem = os.path.splitext(args.out)[0]
        written = []
        for row, motion in enumerate(jobs):
            written += save_outputs(stem if len(jobs) == 1 else f"{stem}_{row}", args.format, motion, cfg.fps,
                                    args.bvh_fps)
    except (ValueError, CheckpointError, ConfigError) as exc:
        print(f"generate.py: error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
