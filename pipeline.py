"""The composite text-to-motion pipeline as one object.

    composite = Composite.from_checkpoints(CompositeConfig())
    result = composite.sample(["a person walks forward"], 120, SamplingOptions(seed=3))
    result.motions[0].joints   # (120, 22, 3) metres, y up

A `Composite` owns the three trained models (keyframe VQ-VAE, keyframe GPT, diffusion
in-betweener), the text encoder, the feature statistics and the run config. `sample` runs
text -> keyframe tokens (GPT) -> keyframe poses (VQ-VAE decoder) -> dense motion (diffusion)
-> joints. Every sampling default is resolved once, in `SamplingOptions.resolve`.
"""
from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from typing import Literal, Optional, Sequence, Union, get_args

import numpy as np
import torch

from config import CompositeConfig
from control import (POSE_CHANNELS, ROOT_CHANNELS, RootControl, control_errors, correct_root, from_world,
                     raw_motion_joints, root_hook, steer_keyframes, to_world)
from models.diffusion import GaussianDiffusion, InbetweenDenoiser, InbetweenSampling
from models.keyframes import interpolate_keyframes
from models.gpt import MotionGPT, TokenSampling
from models.vqvae import KeyframeVQVAE
from runtime import CheckpointError, checkpoint_path, load_checkpoint, select_device, vqvae_identity
from feet import clean_feet
from effectors import (JointPins, check_joint_pins, compose_hooks, joint_pin_hook, joint_pin_report,
                       pelvis_trajectory, reach_joint_pins, release_keyframes)
from utils import (FEATURE_DIM, FOOT_SLICE, NUM_JOINTS, RIC_SLICE, delivered_joints, fit_bone_lengths,
                   keyframe_indices, place_keyframes, pose_features)

Mode = Literal["composite", "interpolate", "diffusion_only"]
MODES = get_args(Mode)
STAGES = ("vqvae", "gpt", "diffusion")
DEFAULT_PROMPT = "a person walks forward"
POSE_DIMS = slice(3, RIC_SLICE.stop)  # root height + root-relative joint positions
STAGE_SEED_OFFSETS = {"gpt": 0, "diffusion": 0x5DEECE66D}  # independent random streams per stage


# ---------------------------------------------------------------------------------------
# Options, pins and results
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SamplingOptions:
    """How to sample. None takes the run config's value (see `resolve`).

    seed: row b uses seed + b, so a batch equals its rows sampled one by one.
    temperature / top_k / top_p / gpt_guidance_scale: the keyframe GPT's token sampling.
    guidance_scale / num_inbetween_steps / sampler / eta: the diffusion in-betweener.
    fit_bones: decode joints (motion and keyframes) with the skeleton's exact bone lengths
    (each bone keeps the direction the features give it; utils.fit_bone_lengths).
    cleanup_feet: hold planted feet still on the final joints, the legs re-solved by IK (feet.py);
    the motion's `contacts` then holds the planted flags used.
    mode: "composite" (the product), "interpolate" (GPT keyframes linearly interpolated, no
    diffusion) or "diffusion_only" (text only, no keyframes): the evaluation's ablations.
    interpolation: the curve of mode "interpolate", "linear" or "cubic" (the Catmull-Rom one the
    default in-betweener refines, models/keyframes.py).
    """
    seed: Optional[int] = None
    temperature: Optional[float] = None
    top_k: Optional[int] = None
    top_p: Optional[float] = None
    gpt_guidance_scale: Optional[float] = None
    guidance_scale: Optional[float] = None
    num_inbetween_steps: Optional[int] = None
    sampler: Optional[Literal["ddim", "ddpm"]] = None
    eta: float = 0.0
    fit_bones: Optional[bool] = None
    cleanup_feet: Optional[bool] = None
    mode: Mode = "composite"
    interpolation: Literal["linear", "cubic"] = "linear"

    def inbetween_sampling(self) -> InbetweenSampling:
        """The diffusion's share of these (resolved) options."""
        return InbetweenSampling(self.num_inbetween_steps, self.guidance_scale, self.sampler, self.eta)

    def token_sampling(self) -> TokenSampling:
        """The GPT's share of these (resolved) options."""
        return TokenSampling(self.temperature, self.top_k, self.top_p, self.gpt_guidance_scale)

    def resolve(self, cfg: CompositeConfig) -> "SamplingOptions":
        """These options with every None replaced by cfg's field of the same name."""
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        filled = {f.name: getattr(cfg, f.name) for f in fields(self)
                  if getattr(self, f.name) is None and hasattr(cfg, f.name)}
        return replace(self, **filled)


@dataclass
class KeyframePins:
    """Poses a user pins. keyframes: (P, 22, 3) joint positions in metres (pin the pose: root
    height and root-relative joints) or (P, 263) features (pin everything); keyframe_idx: (P,)
    sorted frame indices.

    space: "local" (the pose only, wherever the motion's root happens to be) or "world": the
    joints are where the body must be, so the root's position (x, z) and facing are pinned as
    well as the pose (see control.py; joints only). Frame 0 of a motion with world pins stands
    where a pin at frame 0 puts it, else at the origin facing +z."""
    keyframes: np.ndarray
    keyframe_idx: np.ndarray
    space: Literal["local", "world"] = "local"


@dataclass
class MotionSample:
    """One generated motion."""
    prompt: str
    joints: np.ndarray  # (T, 22, 3) metres, y up
    features: np.ndarray  # (T, 263) HumanML3D features (unnormalised)
    keyframes: np.ndarray  # (K, 22, 3) the keyframe poses the motion was in-betweened through
    keyframe_idx: np.ndarray  # (K,) their frames
    # Mean distance (m) between the root-relative joints the diffusion network itself predicted
    # at the keyframe frames (last step, before the keyframes overwrite them) and the keyframes'
    # own: how far the model is from the keyframes it was given. None without diffusion/keyframes.
    keyframe_model_error: Optional[float] = None
    # With world-space pins or a trajectory: control.control_errors of the motion (metres, degrees).
    control_errors: Optional[dict] = None
    # With cleanup_feet: (T, 4) bool, the frames feet.clean_feet held each foot joint still (left ankle,
    # left toe, right ankle, right toe); `joints` are the cleaned ones, `features` the network's own.
    contacts: Optional[np.ndarray] = None


@dataclass
class SampleResult:
    """What `Composite.sample` returns: one MotionSample per prompt and the seconds spent in
    each part (text, gpt, vq_decode, diffusion, joints)."""
    motions: list[MotionSample]
    timings: dict[str, float] = field(default_factory=dict)


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


def check_lengths(length: Union[int, Sequence[int]], num_prompts: int, interval: int, max_length: int) -> list[int]:
    """One checked length per prompt, from one length or a list of them."""
    lengths = list(length) if isinstance(length, (list, tuple)) else [length] * num_prompts
    if len(lengths) != num_prompts:
        raise ValueError(f"got {len(lengths)} lengths for {num_prompts} prompts; pass one length or one per prompt")
    return [check_length(n, interval, max_length) for n in lengths]


def pinned_feature_values(pins: KeyframePins, length: int, mean: np.ndarray, std: np.ndarray):
    """Check user keyframes and turn them into normalised pinned values.

    Returns (frame_idx (P,) long, values (P, 263) normalised, dims_mask (P, 263) bool: which
    feature dims each keyframe pins; joints pin 3:67).
    """
    if pins.space not in ("local", "world"):
        raise ValueError(f"pins.space must be 'local' or 'world', got {pins.space!r}")
    frame_idx = np.asarray(pins.keyframe_idx)
    if frame_idx.ndim != 1 or frame_idx.size == 0 or not np.issubdtype(frame_idx.dtype, np.integer):
        raise ValueError(f"keyframe_idx must be a 1-D list of frame indices, got {frame_idx.tolist()!r:.80}")
    if (frame_idx < 0).any() or (frame_idx >= length).any():
        raise ValueError(f"keyframe_idx must lie in [0, {length - 1}] for a {length}-frame motion, "
                         f"got {frame_idx.tolist()}")
    if (np.diff(frame_idx) <= 0).any():
        raise ValueError(f"keyframe_idx must be sorted and without repeats, got {frame_idx.tolist()}")
    values = np.asarray(pins.keyframes, dtype=np.float64)
    if values.shape not in ((len(frame_idx), NUM_JOINTS, 3), (len(frame_idx), FEATURE_DIM)):
        raise ValueError(f"keyframes must be ({len(frame_idx)}, {NUM_JOINTS}, 3) joint positions or "
                         f"({len(frame_idx)}, {FEATURE_DIM}) features to match keyframe_idx, got {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("keyframes contain NaN or infinite values; pass finite positions")
    if pins.space == "world" and values.ndim != 3:
        raise ValueError(f"world-space pins must be joints ({len(frame_idx)}, {NUM_JOINTS}, 3) in metres, "
                         f"got features {values.shape}")
    full = np.zeros((len(frame_idx), FEATURE_DIM))
    dims_mask = np.zeros((len(frame_idx), FEATURE_DIM), dtype=bool)
    if values.ndim == 3:
        full[:, POSE_DIMS] = pose_features(torch.from_numpy(values)).numpy()
        dims_mask[:, POSE_DIMS] = True
    else:
        full = values
        dims_mask[:] = True
    normalised = np.where(dims_mask, (full - mean) / std, 0.0)
    return (torch.from_numpy(frame_idx.astype(np.int64)), torch.from_numpy(normalised).float(),
            torch.from_numpy(dims_mask))


def apply_pins(values: torch.Tensor, mask: torch.Tensor, pinned) -> None:
    """Write user pins (from pinned_feature_values) into one motion's normalised keyframe
    values (T, 263) and 0/1 mask (T, 263), in place; a pin's unpinned dims keep their values."""
    frame_idx, pin_values, dims_mask = (t.to(values.device) for t in pinned)
    values[frame_idx] = torch.where(dims_mask, pin_values, values[frame_idx])
    mask[frame_idx] = torch.maximum(mask[frame_idx], dims_mask.float())


def row_generators(seed: int, batch: int, device: torch.device, stage: str) -> list[torch.Generator]:
    """One generator per batch row and stage, from seed, seed+1, ...: each row's draws depend
    only on its own seed, so a batch equals its rows generated one by one."""
    return [torch.Generator(device=device).manual_seed((seed + row) ^ STAGE_SEED_OFFSETS[stage])
            for row in range(batch)]


@contextmanager
def timed(timings: Optional[dict], name: str, device: torch.device):
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


# ---------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------
@dataclass
class Delivery:
    """What the last steps of a single prompt's sample need (Composite.deliver): its root goals,
    joint pins and start transform (heading half-angle, xz), and the raw joints, in the motion's
    own frame, that the control errors are measured on."""
    control: Optional[RootControl] = None
    joint_pins: Optional[JointPins] = None
    start: tuple = (0.0, np.zeros(2))
    raw_joints: Optional[np.ndarray] = None  # (T, 22, 3) root integrated from the raw x0 (control.raw_motion_joints)
    raw_pins: Optional[np.ndarray] = None  # (T, 22, 3) the network's own pose before the hooks (effectors)


@dataclass
class Composite:
    """The three models, the text encoder and the statistics that turn text into motion.

    cfg is the run config: sampling defaults, max_generate_length, device. Each model was
    built from its own stage's config (saved in its checkpoint).
    """
    vqvae: KeyframeVQVAE
    gpt: MotionGPT
    denoiser: InbetweenDenoiser
    diffusion: GaussianDiffusion
    text_encoder: object  # text_encoder.TextEncoder: encode(list[str]) -> (B, Dt)
    mean: np.ndarray  # (263,) float32 feature mean
    std: np.ndarray  # (263,) float32 feature std
    cfg: CompositeConfig

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    @property
    def keyframe_interval(self) -> int:
        return self.gpt.keyframe_interval

    @classmethod
    def build(cls, cfg: CompositeConfig, text_encoder, mean: np.ndarray, std: np.ndarray,
              device: Optional[torch.device] = None, stage_configs: Optional[dict] = None) -> "Composite":
        """Freshly initialised models (eval mode) sized by cfg, or by stage_configs[stage]
        (a CompositeConfig per stage in STAGES) where given."""
        stage_cfg = {stage: (stage_configs or {}).get(stage, cfg) for stage in STAGES}
        device = device or select_device(cfg)
        vqvae = KeyframeVQVAE(stage_cfg["vqvae"])
        gpt = MotionGPT(stage_cfg["gpt"], text_encoder.dim)
        denoiser = InbetweenDenoiser(stage_cfg["diffusion"], text_encoder.dim)
        for model in (vqvae, gpt, denoiser):
            model.to(device).eval().requires_grad_(False)
        diffusion = GaussianDiffusion(stage_cfg["diffusion"], denoiser).to(device)
        return cls(vqvae, gpt, denoiser, diffusion, text_encoder, np.asarray(mean, np.float32),
                   np.asarray(std, np.float32), cfg)

    @classmethod
    def from_checkpoints(cls, cfg: CompositeConfig, device: Optional[torch.device] = None) -> "Composite":
        """Load the three trained stages from cfg.checkpoint_dir and the text encoder they used.
        Raises CheckpointError when a checkpoint is missing, unsafe, or was not trained with the others."""
        from text_encoder import check_encoder_matches, load_text_encoder
        saved = load_stage_checkpoints(cfg)
        reference = saved["vqvae"]
        stage_configs = stage_configs_of(saved, cfg)
        trained_length = min(stage_configs["gpt"].max_motion_length, stage_configs["diffusion"].max_motion_length)
        if cfg.max_generate_length > trained_length:  # positions beyond the training crop are untrained
            cfg = cfg.replace(max_generate_length=trained_length)
        text_encoder = load_text_encoder(cfg, name=reference["text_encoder"])
        check_encoder_matches(reference["text_encoder"], int(reference["text_dim"]), text_encoder)
        composite = cls.build(cfg, text_encoder, reference["mean"].numpy(), reference["std"].numpy(),
                              device, stage_configs)
        for model, stage in ((composite.vqvae, "vqvae"), (composite.gpt, "gpt"), (composite.denoiser, "diffusion")):
            try:
                model.load_state_dict(saved[stage]["model"])
            except RuntimeError as exc:
                raise CheckpointError(f"{checkpoint_path(cfg, stage)} does not fit its own config: "
                                      f"{str(exc).splitlines()[0][:200]}") from None
        return composite

    # ------------------------------------------------------------------------------------
    @torch.inference_mode()
    def sample(self, prompts: Union[str, Sequence[str]], lengths: Union[int, Sequence[int]] = 120,
               options: Optional[SamplingOptions] = None, pins: Optional[KeyframePins] = None,
               return_timings: bool = False, trajectory=None, joint_pins: Optional[JointPins] = None) -> SampleResult:
        """Text -> motion for a batch of prompts.

        prompts: one description or a list (one batch row each).
        lengths: frames at 20 fps, one for all or one per prompt (each in
            (keyframe_interval, cfg.max_generate_length]).
        options: SamplingOptions (None: all from cfg).
        pins: KeyframePins for a single prompt: the GPT completes the other keyframes and the
            diffusion passes through all of them; space="world" pins also put the root there.
        return_timings: fill result.timings (synchronises CUDA around each part).
        trajectory: a root path for a single prompt, (T, 2) xz per frame or (P, 3) rows
            (frame, x, z) in metres: the root passes through it (see control.py).
        joint_pins: effectors.JointPins for a single prompt: joints reach world positions at
            frames (steered in sampling, met by IK before the foot cleanup; errors in control_errors).
        """
        prompts = check_prompts(prompts)
        options = (options or SamplingOptions()).resolve(self.cfg)
        lengths = check_lengths(lengths, len(prompts), self.keyframe_interval, self.cfg.max_generate_length)
        if pins is not None and len(prompts) != 1:
            raise ValueError("pinned keyframes work with one prompt per call; pass one prompt")
        pinned = None if pins is None else pinned_feature_values(pins, lengths[0], self.mean, self.std)
        if trajectory is not None and len(prompts) != 1:
            raise ValueError("a trajectory works with one prompt per call; pass one prompt")
        if joint_pins is not None and len(prompts) != 1:
            raise ValueError("joint pins work with one prompt per call; pass one prompt")
        joint_pins = None if joint_pins is None else check_joint_pins(joint_pins, lengths[0])
        trajectory = pelvis_trajectory(trajectory, joint_pins, lengths[0])  # a pelvis x/z pin is a root goal
        control = RootControl.build(lengths[0], pins, trajectory, fps=self.cfg.fps)
        targets = None if control is None else control.local()
        delivery = Delivery(control, joint_pins)
        if control is not None:
            delivery.start = (control.start_heading, control.start_xz)
        timings = {} if return_timings else None
        device = self.device
        with timed(timings, "text", device):
            text_emb = self.text_encoder.encode(prompts).to(device)  # (B, Dt)
        values, mask = self.keyframes(text_emb, lengths, options, pinned, timings)  # (B, T, 263) x2
        hook = self.steering(values, mask, targets, delivery, pinned)
        prediction: dict = {}
        dense = self.inbetween(text_emb, values, mask, lengths, options, timings, prediction, hook)  # (B, T, 263)
        features = self.denormalise(dense)  # (B, T, 263)
        if joint_pins is not None or targets is not None:  # the network's own motion, before the hooks
            x0 = prediction.get("x0_prediction")
            raw_x0 = None if x0 is None else torch.where(mask[0] > 0.5, values[0], x0[0])  # (T, 263)
            raw = lambda channels: raw_motion_joints(features[0], raw_x0, self.mean, self.std,  # noqa: E731
                                                     options.fit_bones, channels)
            delivery.raw_pins = None if joint_pins is None else raw(POSE_CHANNELS)
            delivery.raw_joints = None if targets is None else raw(ROOT_CHANNELS)
        if targets is not None:  # exact, also without diffusion
            features[0, :, :3] = torch.from_numpy(correct_root(features[0].cpu().numpy(), targets)[:, :3]).to(features)
        with timed(timings, "joints", device):
            joints = delivered_joints(features, options.fit_bones)  # (B, T, 22, 3)
        motions = [self.motion_sample(prompt, joints[row, :n], features[row, :n], values[row, :n], mask[row, :n],
                                      options.fit_bones)
                   for row, (prompt, n) in enumerate(zip(prompts, lengths))]
        if "x0_prediction" in prediction:
            for row, motion in enumerate(motions):
                motion.keyframe_model_error = self.keyframe_model_error(
                    prediction["x0_prediction"][row], values[row], mask[row])
        self.deliver(motions, options, delivery)
        return SampleResult(motions, timings or {})

    def steering(self, values: torch.Tensor, mask: torch.Tensor, targets, delivery: Delivery, pinned):
        """Row 0's x0 hook (None without goals): the GPT's keyframes values (B, T, 263) are first
        steered towards the root goals `targets` (RootTargets) and the in-betweener's x0 corrected
        onto them; then the pinned joints head for their targets (effectors.py), whose keyframe
        poses are released in mask (B, T, 263). values and mask change in place."""
        hook = None
        if targets is not None:
            values[0] = steer_keyframes(values[0], mask[0], targets, self.mean, self.std)
            hook = root_hook(targets, self.mean, self.std)
        if delivery.joint_pins is not None:
            pin_hook = joint_pin_hook(delivery.joint_pins, self.mean, self.std, *delivery.start)
            mask[0] = release_keyframes(mask[0], delivery.joint_pins, None if pinned is None else pinned[0])
            hook = compose_hooks(hook, pin_hook)
        return hook

    def deliver(self, motions: list[MotionSample], options: SamplingOptions, delivery: Delivery) -> None:
        """The last steps on the final joints, in this order: the joint pins' IK (world space), the
        foot cleanup (every row; the root's x/z stay, so do the goals), the move of row 0 to its
        start transform, and its control errors (raw, correction, delivered; effectors' too)."""
        joint_pins, control, start = delivery.joint_pins, delivery.control, delivery.start
        if joint_pins is not None:
            pre_ik = motions[0].joints
            world, reachable = reach_joint_pins(to_world(pre_ik, *start), joint_pins)
            motions[0].joints = from_world(world, *start).astype(pre_ik.dtype)
        if options.cleanup_feet:
            for motion in motions:
                cleaned = clean_feet(motion.joints, motion.features[:, FOOT_SLICE], self.cfg.fps)
                motion.joints, motion.contacts = cleaned.joints, cleaned.contacts
        motion = motions[0]
        if control is not None:
            motion.joints, motion.keyframes = control.place(motion.joints), control.place(motion.keyframes)
            motion.control_errors = control_errors(motion.joints, control, control.place(delivery.raw_joints))
        if joint_pins is not None:
            report = joint_pin_report(motion.joints, joint_pins, reachable,  # joints: world space by now
                                      to_world(delivery.raw_pins, *start), to_world(pre_ik, *start))
            motion.control_errors = {**(motion.control_errors or {}), **report}

    def keyframe_model_error(self, predicted: torch.Tensor, keyframe_values: torch.Tensor,
                             keyframe_mask: torch.Tensor) -> Optional[float]:
        """Mean joint distance (m) between predicted (T, 263) and keyframe (T, 263) root-relative
        joint positions (feature dims 4:67, facing frame) at frames whose positions are pinned."""
        frames = keyframe_mask[:, RIC_SLICE].all(-1)  # (T,)
        if not frames.any():
            return None
        ric = lambda normalised: self.denormalise(normalised[frames])[:, RIC_SLICE].reshape(-1, NUM_JOINTS - 1, 3)
        return float((ric(predicted) - ric(keyframe_values)).norm(dim=-1).mean())

    def denormalise(self, normalised: torch.Tensor) -> torch.Tensor:
        """Features (..., 263) from normalised ones."""
        mean = torch.from_numpy(self.mean).to(normalised.device)
        std = torch.from_numpy(self.std).to(normalised.device)
        return normalised * std + mean

    def motion_sample(self, prompt: str, joints: torch.Tensor, features: torch.Tensor,
                      keyframe_values: torch.Tensor, keyframe_mask: torch.Tensor,
                      fit_bones: bool = False) -> MotionSample:
        """One row's result: joints (T, 22, 3), features (T, 263), keyframe values/mask (T, 263);
        fit_bones: the keyframe poses get the skeleton's bone lengths, as the joints did."""
        keyframe_joints, frames = self.keyframe_poses(features, keyframe_values, keyframe_mask, fit_bones)
        return MotionSample(prompt, joints.cpu().numpy(), features.cpu().numpy(),
                            keyframe_joints.cpu().numpy(), frames.cpu().numpy())

    def keyframe_poses(self, features: torch.Tensor, keyframe_values: torch.Tensor, keyframe_mask: torch.Tensor,
                       fit_bones: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """World joints (K, 22, 3) of the keyframes of a motion (features (T, 263), normalised
        keyframe values/mask (T, 263)) placed along its root, and their frames (K,)."""
        frames = torch.nonzero(keyframe_mask.any(-1)).squeeze(-1)  # (K,)
        keyframe_joints = place_keyframes(self.denormalise(keyframe_values[frames]), features, frames)  # (K, 22, 3)
        return (fit_bone_lengths(keyframe_joints) if fit_bones else keyframe_joints), frames

    def keyframes(self, text_emb: torch.Tensor, lengths: list[int], options: SamplingOptions,
                  pinned, timings: Optional[dict]) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised keyframe values (B, T, 263) and their 0/1 mask (B, T, 263): the GPT's
        keyframes on the keyframe grid (unless mode is diffusion_only), then user pins."""
        device, B, max_len = text_emb.device, len(lengths), max(lengths)
        values = torch.zeros(B, max_len, FEATURE_DIM, device=device)  # (B, T, 263)
        mask = torch.zeros(B, max_len, FEATURE_DIM, device=device)
        if options.mode != "diffusion_only":
            grid_idx = [torch.from_numpy(keyframe_indices(n, self.keyframe_interval)).to(device) for n in lengths]
            grid_values = self.gpt_keyframes(text_emb, grid_idx, pinned, options, timings)  # (B, K, 263)
            for row, idx in enumerate(grid_idx):
                values[row, idx] = grid_values[row, :len(idx)]
                mask[row, idx] = 1.0
        if pinned is not None:
            apply_pins(values[0], mask[0], pinned)
        return values, mask

    def gpt_keyframes(self, text_emb: torch.Tensor, grid_idx: list[torch.Tensor], pinned,
                      options: SamplingOptions, timings: Optional[dict]) -> torch.Tensor:
        """Sample keyframe tokens (completing any pinned on-grid ones) and decode them:
        (B, K, 263) normalised, K the most keyframes of any row."""
        device = text_emb.device
        num_tokens = torch.tensor([len(g) for g in grid_idx], device=device)  # (B,)
        max_k = int(num_tokens.max())
        pinned_tokens = None if pinned is None else self.pinned_tokens(pinned, grid_idx[0], max_k)
        with timed(timings, "gpt", device):
            tokens = self.gpt.sample(text_emb, num_tokens, options.token_sampling(),
                                     generator=row_generators(options.seed, len(grid_idx), device, "gpt"),
                                     pinned_tokens=pinned_tokens)  # (B, K)
        with timed(timings, "vq_decode", device):
            token_mask = torch.arange(max_k, device=device)[None] < num_tokens[:, None]
            codes = torch.where(token_mask, tokens, torch.zeros_like(tokens))
            return self.vqvae.decode(codes, token_mask)

    def pinned_tokens(self, pinned, grid_idx: torch.Tensor, max_k: int) -> Optional[torch.Tensor]:
        """(1, K) long: the VQ code of each user pin that falls on a keyframe-grid frame, -1
        elsewhere (the GPT samples those); None when no pin is on the grid."""
        device = grid_idx.device
        frame_idx, values, dims_mask = (t.to(device) for t in pinned)
        slot_of_frame = {int(f): s for s, f in enumerate(grid_idx.tolist())}
        on_grid = [(p, slot_of_frame[int(f)]) for p, f in enumerate(frame_idx.tolist()) if int(f) in slot_of_frame]
        if not on_grid:
            return None
        sketch = torch.zeros(1, max_k, FEATURE_DIM, device=device)  # unknown dims at the data mean
        for p, slot in on_grid:
            sketch[0, slot] = torch.where(dims_mask[p], values[p], sketch[0, slot])
        codes = self.vqvae.encode(sketch)  # (1, K)
        tokens = torch.full((1, max_k), -1, dtype=torch.long, device=device)
        for _, slot in on_grid:
            tokens[0, slot] = codes[0, slot]
        return tokens

    def inbetween(self, text_emb: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, lengths: list[int],
                  options: SamplingOptions, timings: Optional[dict], prediction: Optional[dict] = None,
                  x0_hook=None) -> torch.Tensor:
        """Dense normalised motion (B, T, 263) through the keyframes; padding frames are zero.
        prediction: receives the network's last x0 prediction (see GaussianDiffusion.sample).
        x0_hook: changes every step's x0 (e.g. control.root_hook); None: the plain sampler."""
        device = text_emb.device
        lengths_t = torch.tensor(lengths, device=device)
        padding_mask = torch.arange(values.shape[1], device=device)[None] < lengths_t[:, None]  # (B, T)
        if options.mode == "interpolate":
            return interpolate_keyframes(values, mask, options.interpolation) * padding_mask[..., None]
        with timed(timings, "diffusion", device):
            return self.diffusion.sample(text_emb, values, mask, padding_mask,
                                         sampling=options.inbetween_sampling(),
                                         generator=row_generators(options.seed, len(lengths), device, "diffusion"),
                                         prediction_out=prediction,
                                         **({} if x0_hook is None else {"x0_hook": x0_hook}))


def stage_configs_of(saved: dict[str, dict], cfg: CompositeConfig) -> dict[str, CompositeConfig]:
    """Each stage's config as saved in its checkpoint (the architecture it was trained with),
    with the run-time sampling choices (weight precision, decode threads) taken from cfg."""
    vq_cfg = CompositeConfig.from_dict(saved["vqvae"]["config"])
    gpt_cfg = CompositeConfig.from_dict(saved["gpt"]["config"]).replace(
        vq_codebook_size=vq_cfg.vq_codebook_size, gpt_weight_dtype=cfg.gpt_weight_dtype,
        gpt_decode_threads=cfg.gpt_decode_threads)
    diff_cfg = CompositeConfig.from_dict(saved["diffusion"]["config"]).replace(diff_weight_dtype=cfg.diff_weight_dtype)
    return {"vqvae": vq_cfg, "gpt": gpt_cfg, "diffusion": diff_cfg}


def require_checkpoints(cfg: CompositeConfig) -> dict[str, str]:
    """The three stages' checkpoint paths; CheckpointError naming the first missing one (a cheap
    check that commands make before any slow work)."""
    paths = {stage: checkpoint_path(cfg, stage) for stage in STAGES}
    missing = [p for p in paths.values() if not os.path.exists(p)]
    if missing:
        raise CheckpointError(f"no trained checkpoint at {missing[0]}; run `python train.py` first "
                              f"(or pass --checkpoint_dir)")
    return paths


def load_stage_checkpoints(cfg: CompositeConfig) -> dict[str, dict]:
    """The three stages' checkpoint payloads from cfg.checkpoint_dir, checked to belong together
    (same data statistics, text encoder and VQ-VAE). Raises CheckpointError naming the file."""
    paths = require_checkpoints(cfg)
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
    return saved
