"""Keyframe-conditioned diffusion in-betweener.

`InbetweenDenoiser` is a transformer over frames that predicts the clean motion x0 from a noisy
one x_t, the timestep, the text embedding and the known keyframes (given as extra input
channels with a per-feature mask, CondMDI-style, as their linear or cubic interpolation, which the
network refines). Frames are grouped into patches of `diff_patch_size` frames per token; a
timestep token and a text token are prepended.

The keyframe interpolation and the residual's envelope are in models/keyframes.py.
`GaussianDiffusion` holds the noise schedule, the x0-prediction training loss (with optional
velocity / acceleration terms that penalise frame-to-frame jitter) and the DDIM / DDPM samplers
with classifier-free guidance and keyframe imputation, so the sampled motion passes exactly
through the keyframes. Sampling uses the denoiser's exponential moving average of weights
(`WeightEMA`, updated by every training forward) once it has one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from config import CompositeConfig
from models.gpt import low_precision_linears
from models.keyframes import interpolate_keyframes, keyframe_envelope
from utils import FOOT_IDX_LEFT, FOOT_IDX_RIGHT, FOOT_SLICE, features_to_joints

POSITION_TABLE_FRAMES = 1024  # frames covered by the precomputed positional table (longer: computed)


def sinusoidal_embedding(positions: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer sinusoidal embedding of positions (N,) (int or float) -> (N, dim) float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32,
                                                           device=positions.device) / half)
    angles = positions.float()[:, None] * freqs[None]  # (N, half)
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class Block(nn.Module):
    """Pre-LN transformer encoder block with a key-padding mask."""

    def __init__(self, n_embd: int, n_head: int, dropout: float):
        super().__init__()
        self.n_head = n_head
        self.ln_attn = nn.LayerNorm(n_embd)
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.proj = nn.Linear(n_embd, n_embd)
        self.ln_mlp = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd))
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        """x (B, S, E); attn_mask (B, 1, 1, S) bool, True = key takes part, or None."""
        B, S, E = x.shape
        q, k, v = self.qkv(self.ln_attn(x)).view(B, S, 3, self.n_head, E // self.n_head).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        x = x + self.resid_drop(self.proj(y.transpose(1, 2).reshape(B, S, E)))
        return x + self.resid_drop(self.mlp(self.ln_mlp(x)))


def smoothing_kernel(size: int, sigma: float) -> torch.Tensor:
    """A normalised Gaussian of `sigma` frames over `size` (odd) frames, (size,); sigma 0: the
    identity (1 at the centre)."""
    offsets = torch.arange(size, dtype=torch.float32) - size // 2
    if sigma <= 0:
        return (offsets == 0).float()
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return weights / weights.sum()


class WeightEMA(nn.Module):
    """Exponential moving average of a module's parameters, held as buffers so that it is saved,
    loaded and moved with the module's state_dict.

    `update(named_parameters, decay)` blends the current weights in with the warm-up
    decay min(decay, (1 + n) / (10 + n)) at update n; `weights()` maps each parameter name to its
    average (for torch.func.functional_call). `steps` counts the updates (0: never updated).
    """

    def __init__(self, named_parameters: list[tuple[str, nn.Parameter]]):
        super().__init__()
        self.names = [name for name, _ in named_parameters]
        for name, param in named_parameters:
            self.register_buffer(self._key(name), param.detach().clone())
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @staticmethod
    def _key(name: str) -> str:
        return name.replace(".", "__")

    @torch.no_grad()
    def update(self, named_parameters, decay: float) -> None:
        n = int(self.steps)
        keep = min(decay, (1.0 + n) / (10.0 + n))
        params = dict(named_parameters)
        averages = [getattr(self, self._key(name)) for name in self.names]
        torch._foreach_lerp_(averages, [params[name].detach().to(a.dtype) for name, a in zip(self.names, averages)],
                             1.0 - keep)
        self.steps += 1

    def weights(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, self._key(name)) for name in self.names}


class InbetweenDenoiser(nn.Module):
    """Transformer x0-predictor conditioned on timestep, text and keyframes.

    The keyframe channels are the per-feature interpolation of the pinned entries
    (cfg.diff_keyframe_interp: linear, or cubic, which has no kinks at the keyframes) and
    the mask; the network predicts the residual over that interpolation (zero at init), so an
    untrained model already in-betweens (linearly or cubically) and training only has to learn the detail.
    With cfg.diff_patch_conv = k > 0, a depthwise convolution over k frames filters the
    un-patched residual, so neighbouring patches blend instead of meeting at a seam and
    frame-to-frame noise is damped: it starts as a normalised Gaussian of
    cfg.diff_patch_conv_sigma frames (0: the identity) and is trained unless
    cfg.diff_patch_conv_learned is false (then a fixed low-pass filter). With
    cfg.diff_exact_keyframes the residual is zero at pinned entries, so the prediction itself
    passes through the keyframes and the sampler's imputation changes nothing (the network
    then learns to meet them smoothly instead of being overwritten where it misses them).
    cfg.diff_residual_envelope goes further: the residual is multiplied by `keyframe_envelope`,
    which vanishes with zero slope at pinned entries, so the prediction meets the keyframes with
    the slope of the keyframe interpolation (with the cubic one: no kink at any keyframe).
    `ema` holds the moving average of the weights that sampling uses (see WeightEMA).
    """

    def __init__(self, cfg: CompositeConfig, text_dim: int):
        super().__init__()
        E = cfg.diff_n_embd
        self.feature_dim = cfg.feature_dim
        self.patch_size = cfg.diff_patch_size
        self.text_dim = text_dim
        self.n_embd = E
        self.in_proj = nn.Linear(3 * cfg.feature_dim * cfg.diff_patch_size, E)
        self.time_mlp = nn.Sequential(nn.Linear(E, E), nn.SiLU(), nn.Linear(E, E))
        self.text_proj = nn.Linear(text_dim, E)
        self.null_text = nn.Parameter(torch.randn(E) * 0.02)  # replaces dropped text (CFG)
        self.cond_type = nn.Parameter(torch.randn(2, E) * 0.02)  # tells the two cond tokens apart
        self.blocks = nn.ModuleList(Block(E, cfg.diff_n_head, cfg.diff_dropout) for _ in range(cfg.diff_n_layer))
        self.ln_f = nn.LayerNorm(E)
        self.out_proj = nn.Linear(E, cfg.feature_dim * cfg.diff_patch_size)
        nn.init.zeros_(self.out_proj.weight)  # start at x0 = the keyframe interpolation
        nn.init.zeros_(self.out_proj.bias)
        self.envelope_ramp = cfg.keyframe_interval
        # How the prediction is composed, saved with the weights, so that a checkpoint keeps the form
        # it was trained with (one from before these options loads as linear, not exact, no envelope).
        form = [cfg.diff_keyframe_interp == "cubic", cfg.diff_exact_keyframes, cfg.diff_residual_envelope]
        self.register_buffer("residual_form", torch.tensor(form, dtype=torch.bool))
        self._adopt_residual_form()
        self.patch_conv = None
        if cfg.diff_patch_conv > 0:
            k = cfg.diff_patch_conv
            self.patch_conv = nn.Conv1d(cfg.feature_dim, cfg.feature_dim, k, padding=k // 2,
                                        groups=cfg.feature_dim, bias=False)
            with torch.no_grad():
                self.patch_conv.weight.copy_(smoothing_kernel(k, cfg.diff_patch_conv_sigma).expand_as(
                    self.patch_conv.weight))
            self.patch_conv.weight.requires_grad_(cfg.diff_patch_conv_learned)
        num_patches = math.ceil(POSITION_TABLE_FRAMES / cfg.diff_patch_size)
        self.register_buffer("pos_table", sinusoidal_embedding(torch.arange(num_patches), E), persistent=False)
        self.ema = WeightEMA(list(self.named_parameters()))
        self._register_load_state_dict_pre_hook(self._fill_older_checkpoint)
        self.register_load_state_dict_post_hook(lambda module, keys: module._adopt_residual_form())

    def _adopt_residual_form(self) -> None:
        cubic, exact, envelope = self.residual_form.tolist()
        self.interp_kind = "cubic" if cubic else "linear"
        self.exact_keyframes, self.residual_envelope = exact, envelope

    @property
    def meets_keyframes(self) -> bool:
        """True when the prediction equals the keyframes at pinned entries by construction."""
        return self.exact_keyframes or self.residual_envelope

    def interpolate(self, keyframe_values: torch.Tensor, keyframe_mask: torch.Tensor) -> torch.Tensor:
        """The keyframe interpolation (B, T, D) this denoiser refines (cfg.diff_keyframe_interp)."""
        return interpolate_keyframes(keyframe_values, keyframe_mask, self.interp_kind)

    def _fill_older_checkpoint(self, state_dict, prefix, *args) -> None:
        """Checkpoints from before the options: the form they were trained with (linear, not exact,
        no envelope), an identity patch conv, and a weight average that starts at the loaded
        weights, never updated (so sampling uses those)."""
        if prefix + "residual_form" not in state_dict:
            state_dict[prefix + "residual_form"] = torch.zeros(3, dtype=torch.bool)
        if self.patch_conv is not None and prefix + "patch_conv.weight" not in state_dict:
            weight = self.patch_conv.weight
            state_dict[prefix + "patch_conv.weight"] = smoothing_kernel(weight.shape[-1], 0.0).expand_as(weight).clone()
        if prefix + "ema.steps" in state_dict:
            return
        for name in self.ema.names:
            if prefix + name in state_dict:
                state_dict[prefix + "ema." + WeightEMA._key(name)] = state_dict[prefix + name].clone()
        state_dict[prefix + "ema.steps"] = torch.zeros((), dtype=torch.long)

    def _positions(self, num_patches: int) -> torch.Tensor:
        """Sinusoidal encodings of patch positions 0..num_patches-1 -> (num_patches, E)."""
        if num_patches <= self.pos_table.shape[0]:
            return self.pos_table[:num_patches]
        return sinusoidal_embedding(torch.arange(num_patches, device=self.pos_table.device), self.n_embd)

    def forward(self, x_t: torch.Tensor, timesteps: torch.Tensor, text_emb: torch.Tensor,
                keyframe_values: torch.Tensor, keyframe_mask: torch.Tensor,
                padding_mask: torch.Tensor | None = None,
                drop_text: torch.Tensor | None = None,
                keyframe_interp: torch.Tensor | None = None) -> torch.Tensor:
        """Predict x0.

        x_t: (B, T, D) noisy motion; timesteps: (B,) long diffusion steps; text_emb: (B, Dt);
        keyframe_values: (B, T, D) known values (anything where the mask is 0);
        keyframe_mask: (B, T, D) float 0/1, 1 where a value is given; padding_mask: (B, T) bool,
        True at real frames (None: all real); drop_text: (B,) bool, True uses the null text;
        keyframe_interp: (B, T, D) `self.interpolate(keyframe_values, keyframe_mask)` when
        the caller already has it (samplers compute it once for all steps), else None.
        Returns x0_pred (B, T, D).
        """
        B, T, D = x_t.shape
        if D != self.feature_dim or keyframe_values.shape != x_t.shape or keyframe_mask.shape != x_t.shape:
            raise ValueError(f"denoiser inputs x_t, keyframe_values, keyframe_mask must all be "
                             f"(B, T, {self.feature_dim}), got {tuple(x_t.shape)}, "
                             f"{tuple(keyframe_values.shape)}, {tuple(keyframe_mask.shape)}")
        if text_emb.shape != (B, self.text_dim):
            raise ValueError(f"text_emb must be (B, {self.text_dim}) = ({B}, {self.text_dim}), "
                             f"got {tuple(text_emb.shape)}")
        P = self.patch_size
        pad = (-T) % P
        interp = (self.interpolate(keyframe_values, keyframe_mask) if keyframe_interp is None
                  else keyframe_interp)  # (B, T, D)
        h = torch.cat([x_t, interp, keyframe_mask], dim=-1)  # (B, T, 3D)
        if padding_mask is not None:  # padding frames read as zeros, as if the batch ended there
            h = h * padding_mask[..., None].to(h.dtype)
        if pad:
            h = F.pad(h, (0, 0, 0, pad))
        num_patches = (T + pad) // P
        h = self.in_proj(h.reshape(B, num_patches, P * 3 * D)) + self._positions(num_patches)  # (B, n, E)

        time_tok = self.time_mlp(sinusoidal_embedding(timesteps, self.n_embd))  # (B, E)
        text_tok = self.text_proj(text_emb)  # (B, E)
        if drop_text is not None:
            text_tok = torch.where(drop_text[:, None], self.null_text.to(text_tok.dtype), text_tok)
        cond = torch.stack([time_tok, text_tok], dim=1) + self.cond_type  # (B, 2, E)
        x = torch.cat([cond, h], dim=1)  # (B, 2+n, E)

        attn_mask = None
        if padding_mask is not None and not bool(padding_mask.all()):
            valid = F.pad(padding_mask.bool(), (0, pad), value=False)
            patch_valid = valid.view(B, num_patches, P).any(dim=-1)  # (B, n)
            keys = torch.cat([torch.ones(B, 2, dtype=torch.bool, device=x.device), patch_valid], dim=1)
            attn_mask = keys[:, None, None, :]  # (B, 1, 1, 2+n)
        for block in self.blocks:
            x = block(x, attn_mask)
        residual = self.out_proj(self.ln_f(x[:, 2:])).reshape(B, num_patches * P, D)[:, :T]  # (B, T, D)
        if self.patch_conv is not None:
            if padding_mask is not None:  # padding frames do not leak into real ones
                residual = residual * padding_mask[..., None].to(residual.dtype)
            residual = self.patch_conv(residual.transpose(1, 2)).transpose(1, 2)
        if self.residual_envelope:  # zero value and slope at the keyframes: no kink where they join
            residual = residual * keyframe_envelope(keyframe_mask, self.envelope_ramp)
        elif self.exact_keyframes:  # the prediction passes through the keyframes by construction
            residual = residual * (1.0 - keyframe_mask)
        return interp + residual


# ---------------------------------------------------------------------------------------
def make_beta_schedule(kind: Literal["cosine", "linear"], num_timesteps: int) -> torch.Tensor:
    """Noise variances beta_t (num_timesteps,) float64: cosine (Nichol & Dhariwal) or linear (DDPM)."""
    if kind == "cosine":
        steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
        alpha_bar = torch.cos((steps + 0.008) / 1.008 * math.pi / 2) ** 2
        return (1.0 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
    if kind == "linear":
        scale = 1000.0 / num_timesteps
        return torch.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=torch.float64)
    raise ValueError(f"noise schedule must be 'cosine' or 'linear', got {kind!r}")


Generators = Union[torch.Generator, Sequence[torch.Generator], None]


def difference_sq_error(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                        order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum, count): the squared error between the order-th frame differences of pred and target
    (B, T, D) summed over differences whose frames are all real (valid (B, T, 1) 0/1), and how
    many entries that sum holds."""
    for _ in range(order):
        pred, target = pred[:, 1:] - pred[:, :-1], target[:, 1:] - target[:, :-1]
        valid = valid[:, 1:] * valid[:, :-1]
    return ((pred - target).pow(2) * valid).sum(), valid.sum() * pred.shape[-1]


def difference_mse(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, order: int) -> torch.Tensor:
    """Mean squared error between the order-th frame differences of pred and target (B, T, D),
    over differences whose frames are all real (valid (B, T, 1) 0/1). 0 when none are."""
    total, count = difference_sq_error(pred, target, valid, order)
    return total / count.clamp_min(1.0)


def _noise(shape, generator: Generators, device, dtype=torch.float32,
           lengths: Sequence[int] | None = None) -> torch.Tensor:
    """Standard normal noise (B, T, D) drawn from `generator` and moved to `device`.

    A list of B generators draws each row from its own generator, only over its `lengths[b]`
    real frames (padding stays zero), so a row's noise does not depend on the rest of the batch.
    """
    if generator is None or isinstance(generator, torch.Generator):
        gen_device = generator.device if generator is not None else device
        return torch.randn(shape, generator=generator, device=gen_device, dtype=dtype).to(device)
    B, T, D = shape
    if len(generator) != B:
        raise ValueError(f"got {len(generator)} generators for a batch of {B}")
    noise = torch.zeros(shape, device=device, dtype=dtype)
    for row, (gen, n) in enumerate(zip(generator, lengths if lengths is not None else [T] * B)):
        noise[row, :n] = torch.randn((n, D), generator=gen, device=gen.device, dtype=dtype).to(device)
    return noise


class GaussianDiffusion(nn.Module):
    """Gaussian diffusion around an x0-predicting `InbetweenDenoiser` (held as `self.model`)."""

    def __init__(self, cfg: CompositeConfig, model: InbetweenDenoiser):
        super().__init__()
        self.cfg = cfg
        self.model = model
        self.num_timesteps = cfg.diff_timesteps
        self.cond_drop = cfg.diff_cond_drop
        self.vel_loss_weight = cfg.diff_vel_loss_weight
        self.acc_loss_weight = cfg.diff_acc_loss_weight
        self.ema_decay = cfg.diff_ema_decay
        self.joint_vel_loss_weight = cfg.diff_joint_vel_loss_weight
        self.foot_loss_weight = cfg.diff_foot_loss_weight
        self.weight_dtype = cfg.diff_weight_dtype  # weights sample() runs the denoiser with
        # Feature statistics for the joint-space loss terms (set_feature_statistics); not saved.
        self.register_buffer("feature_mean", torch.zeros(cfg.feature_dim), persistent=False)
        self.register_buffer("feature_std", torch.ones(cfg.feature_dim), persistent=False)
        self.has_feature_statistics = False
        betas = make_beta_schedule(cfg.diff_noise_schedule, cfg.diff_timesteps)
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        self.register_buffer("betas", betas.float(), persistent=False)
        self.register_buffer("alphas_cumprod", alphas_cumprod.float(), persistent=False)
        self.register_buffer("sqrt_alphas_cumprod", alphas_cumprod.sqrt().float(), persistent=False)
        self.register_buffer("sqrt_one_minus_alphas_cumprod", (1.0 - alphas_cumprod).sqrt().float(),
                             persistent=False)
        self._alphas_cumprod_list = alphas_cumprod.tolist()  # python floats for the samplers

    def set_feature_statistics(self, mean, std) -> "GaussianDiffusion":
        """The data set's feature mean and std (263,) that un-normalise x0 for the joint-space
        loss terms (diff_joint_vel_loss_weight, diff_foot_loss_weight); returns self. The
        training job passes the statistics its data are normalised with."""
        self.feature_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.feature_std.copy_(torch.as_tensor(std, dtype=torch.float32))
        self.has_feature_statistics = True
        return self

    def joint_losses(self, imputed: torch.Tensor, x0: torch.Tensor, valid: torch.Tensor) -> tuple:
        """(joint_vel, foot): joint-space terms of normalised predicted / clean motions (B, T, D)
        over real frames (valid (B, T, 1)), in centimetres per frame, squared.

        joint_vel: MSE of the frame-to-frame displacement of every joint (utils.features_to_joints,
        root included) against the clean motion's. foot: the same for the foot joints (ankles,
        toes) alone, over the steps where the clean motion's foot-contact features say they are
        planted: a planted foot must move as little as the clean one does (a foot-contact loss in
        the spirit of MDM's, against the clean motion's displacement instead of 0, because
        HumanML3D's contact labels also mark slowly moving feet)."""
        (joint_sum, joint_count), (foot_sum, foot_count) = self.joint_loss_sums(imputed, x0, valid)
        return joint_sum / joint_count.clamp_min(1.0), foot_sum / foot_count.clamp_min(1.0)

    def joint_loss_sums(self, imputed: torch.Tensor, x0: torch.Tensor, valid: torch.Tensor) -> tuple:
        """((sum, count) of joint_vel, (sum, count) of foot): joint_losses before the division."""
        if not self.has_feature_statistics:
            raise ValueError("the joint-space loss terms (diff_joint_vel_loss_weight, diff_foot_loss_weight) need the "
                             "training data's feature statistics: call GaussianDiffusion.set_feature_statistics(mean, std)")
        mean, std = self.feature_mean, self.feature_std
        joints_pred = features_to_joints(imputed.float() * std + mean) * 100.0  # (B, T, 22, 3) cm
        joints_true = features_to_joints(x0.float() * std + mean) * 100.0
        step_valid = (valid[:, 1:] * valid[:, :-1])[..., None]  # (B, T-1, 1, 1)
        step_pred, step_true = joints_pred[:, 1:] - joints_pred[:, :-1], joints_true[:, 1:] - joints_true[:, :-1]
        joint_sum = ((step_pred - step_true).pow(2) * step_valid).sum()
        feet = FOOT_IDX_LEFT + FOOT_IDX_RIGHT  # the order of the contact features
        planted = ((x0[:, :-1, FOOT_SLICE].float() * std[FOOT_SLICE] + mean[FOOT_SLICE]) > 0.5).float()
        planted = planted * step_valid[..., 0, 0, None]  # (B, T-1, 4)
        foot_err = (step_pred[:, :, feet] - step_true[:, :, feet]).pow(2).sum(-1)  # (B, T-1, 4)
        return (joint_sum, step_valid.sum() * 66), ((foot_err * planted).sum(), planted.sum())

    @property
    def term_weights(self) -> dict[str, float]:
        """The weight of each loss term beside the MSE (the config's diff_*_loss_weight)."""
        return {"vel": self.vel_loss_weight, "acc": self.acc_loss_weight,
                "joint_vel": self.joint_vel_loss_weight, "foot": self.foot_loss_weight}

    @property
    def ratio_term_names(self) -> list[str]:
        """The weighted loss terms whose means are over their own counts (not the real frames):
        training_loss reports them as `ratio_terms` so that processes can share the counts."""
        return [name for name, weight in self.term_weights.items() if weight > 0]

    @staticmethod
    def _full_mask(keyframe_mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Keyframe mask (B, T) or (B, T, D) -> (B, T, D) float 0/1 shaped like x."""
        if keyframe_mask.dim() == 2:
            keyframe_mask = keyframe_mask[..., None].expand_as(x)
        if keyframe_mask.shape != x.shape:
            raise ValueError(f"keyframe_mask must be (B, T) or (B, T, D) = {tuple(x.shape)}, "
                             f"got {tuple(keyframe_mask.shape)}")
        return (keyframe_mask > 0.5).to(x.dtype)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Noise clean x0 (B, T, D) to step t (B,) long: sqrt(ab_t) x0 + sqrt(1 - ab_t) noise."""
        return (self.sqrt_alphas_cumprod[t][:, None, None] * x0
                + self.sqrt_one_minus_alphas_cumprod[t][:, None, None] * noise)

    def training_loss(self, x0: torch.Tensor, text_emb: torch.Tensor, keyframe_mask: torch.Tensor,
                      padding_mask: torch.Tensor, generator: Sequence[torch.Generator] | None = None) -> dict:
        """x0-prediction loss on a batch.

        x0: (B, T, D) normalised clean motions (padding frames anything); text_emb: (B, Dt);
        keyframe_mask: (B, T) or (B, T, D) 0/1, the entries given to the model as keyframes
        (e.g. from `sample_training_keyframe_mask`); padding_mask: (B, T) bool, True at real frames.
        Draws t uniformly, drops the text with probability diff_cond_drop (with `generator`, a list
        of B generators, row b draws its t, its noise over its real frames and its drop from
        generator b alone, whatever the rest of the batch), and returns
        dict(loss: MSE over real frames + diff_vel_loss_weight * vel + diff_acc_loss_weight * acc,
        mse: the MSE, vel / acc: MSE of the frame-to-frame first / second differences of x0
        over real frames (x0's velocity and acceleration in feature space), taken after the
        keyframe entries are replaced by their values as the sampler does, so that a prediction
        that bends where it meets a keyframe costs; with diff_joint_vel_loss_weight or
        diff_foot_loss_weight > 0 also joint_vel and foot (see joint_losses and
        set_feature_statistics), added to loss with those weights; mse_inbetween: MSE over real
        entries that are not keyframes; all but loss detached; ratio_terms: (weight, sum, count)
        of each weighted term whose mean is over its own count, for training.loop's sharing of
        counts between processes).
        A training forward (model in training mode, gradients on) first blends the current
        weights into the denoiser's weight average when diff_ema_decay > 0.
        """
        B, T, D = x0.shape
        if padding_mask.shape != (B, T):
            raise ValueError(f"padding_mask must be (B, T) = ({B}, {T}), got {tuple(padding_mask.shape)}")
        if self.ema_decay > 0 and self.model.training and torch.is_grad_enabled():
            self.model.ema.update(self.model.named_parameters(), self.ema_decay)
        valid = padding_mask[..., None].to(x0.dtype)  # (B, T, 1)
        keyframe_mask = self._full_mask(keyframe_mask, x0) * valid  # (B, T, D)
        if generator is None:
            t = torch.randint(0, self.num_timesteps, (B,), device=x0.device)
            x_t = self.q_sample(x0, t, torch.randn_like(x0))
            drop_text = torch.rand(B, device=x0.device) < self.cond_drop
        else:
            t = torch.cat([torch.randint(0, self.num_timesteps, (1,), generator=g, device=g.device)
                           for g in generator]).to(x0.device)
            x_t = self.q_sample(x0, t, _noise(x0.shape, generator, x0.device, x0.dtype, padding_mask.sum(1).tolist()))
            drop_text = torch.cat([_uniform(1, g, x0.device) for g in generator]) < self.cond_drop
        x0_pred = self.model(x_t, t, text_emb, x0 * keyframe_mask, keyframe_mask, padding_mask, drop_text)
        sq_err = (x0_pred - x0).pow(2) * valid  # (B, T, D)
        mse = sq_err.sum() / (valid.sum() * D).clamp_min(1.0)
        imputed = torch.where(keyframe_mask > 0, x0, x0_pred)  # what the sampler makes of the prediction
        parts = {"vel": difference_sq_error(imputed, x0, valid, order=1),
                 "acc": difference_sq_error(imputed, x0, valid, order=2)}  # name: (sum, count)
        if self.joint_vel_loss_weight > 0 or self.foot_loss_weight > 0:
            parts["joint_vel"], parts["foot"] = self.joint_loss_sums(imputed, x0, valid)
        means = {name: total / count.clamp_min(1.0) for name, (total, count) in parts.items()}
        weights = self.term_weights
        loss = mse
        for name in means:
            loss = loss + weights[name] * means[name]
        free = valid - keyframe_mask
        mse_inbetween = (sq_err.detach() * free).sum() / free.sum().clamp_min(1.0)
        ratio_terms = [(weights[name], *parts[name]) for name in self.ratio_term_names]
        return dict(loss=loss, mse=mse.detach(), **{k: v.detach() for k, v in means.items()},
                    mse_inbetween=mse_inbetween, ratio_terms=ratio_terms)

    def denoise(self, *args, **kwargs) -> torch.Tensor:
        """The denoiser's x0 prediction (same arguments as InbetweenDenoiser.forward) with the
        sampling weights: the weight average once it has been updated, else the weights."""
        if int(self.model.ema.steps) == 0:
            return self.model(*args, **kwargs)
        return torch.func.functional_call(self.model, self.model.ema.weights(), args, kwargs)

    # ------------------------------------------------------------------------------------
    def sample_timesteps(self, num_steps: int) -> list[int]:
        """Strided descending timesteps ("trailing" spacing): T-1, ..., T/num_steps - 1."""
        if not 1 <= num_steps <= self.num_timesteps:
            raise ValueError(f"num_steps must be in [1, {self.num_timesteps}], got {num_steps}")
        stride = self.num_timesteps / num_steps
        return [int(round(self.num_timesteps - i * stride)) - 1 for i in range(num_steps)]

    @torch.inference_mode()
    def sample(self, text_emb: torch.Tensor, keyframe_values: torch.Tensor, keyframe_mask: torch.Tensor,
               padding_mask: torch.Tensor | None = None, *, sampling: "InbetweenSampling",
               generator: Generators = None, prediction_out: dict | None = None,
               x0_hook: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Sample motions that pass through the given keyframes.

        text_emb: (B, Dt) text embeddings.
        keyframe_values: (B, T, D) normalised feature values of the keyframes (ignored where
            keyframe_mask is 0).
        keyframe_mask: (B, T, D) or (B, T) 0/1; 1 marks a pinned entry. A per-feature mask pins
            part of a frame (e.g. only the position dims).
        padding_mask: (B, T) bool, True at real frames; None: all frames real.
        sampling: InbetweenSampling (steps, guidance scale, method, eta); its defaults live in
            pipeline.SamplingOptions.
        generator: torch.Generator for reproducible noise, or one per row (each row's noise is
            then drawn from its own generator over its real frames only, so a batch reproduces
            its rows sampled one by one).
        Every step replaces the predicted x0 by keyframe_values at pinned entries before
        stepping, and the result equals keyframe_values exactly there.
        prediction_out: a dict that receives "x0_prediction" (B, T, D), the network's own
            prediction of x0 at the last step before the keyframes overwrite it, so callers can
            measure how far the model is from the keyframes it was given.
        x0_hook: None, or a function x0 (B, T, D) -> x0 applied to every step's x0 after the
            keyframe imputation and to the result (e.g. control.root_hook, which moves the root
            channels so that the integrated root meets world-space goals). None changes nothing.
        Returns x0 (B, T, D); padding frames are zero.
        """
        if sampling.method not in ("ddim", "ddpm"):
            raise ValueError(f"method must be 'ddim' or 'ddpm', got {sampling.method!r}")
        if keyframe_values.dim() != 3:
            raise ValueError(f"keyframe_values must be (B, T, D), got {tuple(keyframe_values.shape)}")
        B, T, _ = keyframe_values.shape
        if padding_mask is None:
            padding_mask = torch.ones(B, T, dtype=torch.bool, device=keyframe_values.device)
        if padding_mask.shape != (B, T):
            raise ValueError(f"padding_mask must be (B, T) = ({B}, {T}), got {tuple(padding_mask.shape)}")
        was_training = self.model.training
        self.model.eval()
        try:
            with low_precision_linears(self.model, self.weight_dtype):  # float32: unchanged
                return self._sample(text_emb, keyframe_values, keyframe_mask, padding_mask, sampling,
                                    generator, prediction_out, x0_hook)
        finally:
            self.model.train(was_training)

    def _sample(self, text_emb, keyframe_values, keyframe_mask, padding_mask, sampling, generator,
                prediction_out, x0_hook) -> torch.Tensor:
        B, T, D = keyframe_values.shape
        mask = self._full_mask(keyframe_mask, keyframe_values) * padding_mask[..., None]  # (B, T, D)
        pinned = mask.bool()
        values = keyframe_values * mask  # (B, T, D)
        predict = self._guided_predictor(text_emb, values, mask, padding_mask, sampling.guidance_scale)
        timesteps = self.sample_timesteps(sampling.num_steps)
        lengths = padding_mask.sum(1).tolist()
        x = _noise((B, T, D), generator, values.device, values.dtype, lengths)  # x_T
        for i, t in enumerate(timesteps):
            pred = predict(x, t)
            if prediction_out is not None:
                prediction_out["x0_prediction"] = pred * padding_mask[..., None].to(pred.dtype)
            x0 = torch.where(pinned, values, pred)  # keyframe imputation
            if x0_hook is not None:
                x0 = x0_hook(x0)
            if i + 1 == len(timesteps):
                x = x0
                break
            x = self._step(x, x0, t, timesteps[i + 1], sampling, generator, lengths)
        x = torch.where(pinned, values, x)
        if x0_hook is not None:
            x = x0_hook(x)
        return x * padding_mask[..., None].to(x.dtype)

    def _guided_predictor(self, text_emb, values, mask, padding_mask, guidance_scale):
        """x0 prediction (B, T, D) at (x_t, t) with classifier-free guidance on the text: the
        conditional and unconditional rows run as one batch; guidance 1.0 runs no unconditional rows."""
        interp = self.model.interpolate(values, mask)  # (B, T, D), fixed over the steps
        B = values.shape[0]
        if guidance_scale == 1.0:
            return lambda x, t: self.denoise(x, torch.full((B,), t, dtype=torch.long, device=x.device), text_emb,
                                             values, mask, padding_mask, None, keyframe_interp=interp)
        two = lambda tensor: torch.cat([tensor, tensor])
        rows = (two(text_emb), two(values), two(mask), two(padding_mask))
        drop_text = torch.arange(2 * B, device=values.device) >= B
        rows_interp = two(interp)

        def predict(x, t):
            t_rows = torch.full((2 * B,), t, dtype=torch.long, device=x.device)
            pred = self.denoise(two(x), t_rows, *rows, drop_text, keyframe_interp=rows_interp)
            pred_cond, pred_uncond = pred[:B], pred[B:]
            return pred_uncond + guidance_scale * (pred_cond - pred_uncond)
        return predict

    def _step(self, x, x0, t: int, t_prev: int, sampling: "InbetweenSampling", generator, lengths) -> torch.Tensor:
        """x_{t_prev} from x_t and the (imputed) x0 by DDIM (with eta) or DDPM's posterior."""
        ab_t, ab_prev = self._alphas_cumprod_list[t], self._alphas_cumprod_list[t_prev]
        eps = (x - math.sqrt(ab_t) * x0) / math.sqrt(1.0 - ab_t)
        if sampling.method == "ddim":
            sigma = sampling.eta * math.sqrt((1.0 - ab_prev) / (1.0 - ab_t) * (1.0 - ab_t / ab_prev))
            x = math.sqrt(ab_prev) * x0 + math.sqrt(max(1.0 - ab_prev - sigma ** 2, 0.0)) * eps
            if sigma > 0:
                x = x + sigma * _noise(x.shape, generator, x.device, x.dtype, lengths)
            return x
        beta = 1.0 - ab_t / ab_prev  # the strided step's effective beta
        coef_x0 = math.sqrt(ab_prev) * beta / (1.0 - ab_t)
        coef_xt = math.sqrt(1.0 - beta) * (1.0 - ab_prev) / (1.0 - ab_t)
        std = math.sqrt(beta * (1.0 - ab_prev) / (1.0 - ab_t))
        return coef_x0 * x0 + coef_xt * x + std * _noise(x.shape, generator, x.device, x.dtype, lengths)


@dataclass(frozen=True)
class InbetweenSampling:
    """How `GaussianDiffusion.sample` denoises.

    num_steps: denoising steps over a strided subsequence of the training timesteps.
    guidance_scale: classifier-free guidance s on text, x0 = u + s * (c - u); 1.0 runs no
        unconditional rows.
    method: "ddim" (deterministic for eta=0) or "ddpm" (ancestral posterior sampling on the
        same strided timesteps).
    eta: DDIM noise level (0: deterministic, 1: DDPM-like); ignored by "ddpm".
    """
    num_steps: int
    guidance_scale: float
    method: Literal["ddim", "ddpm"] = "ddim"
    eta: float = 0.0


# ---------------------------------------------------------------------------------------
# Mixture of keyframe patterns seen in training (probabilities per motion).
_P_REAL, _P_SPARSE, _P_DENSE, _P_RANDOM = 0.55, 0.15, 0.05, 0.15  # the rest: no keyframes
_P_POSITIONS_ONLY = 0.1  # of motions with keyframes: pin only root height + joint positions


def _uniform(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    gen_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=gen_device).to(device)


def sample_training_keyframe_mask(lengths: torch.Tensor, T: int, interval: int, feature_dim: int,
                                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Random keyframe masks for training the in-betweener.

    lengths: (B,) long real frame counts (<= T); T: padded frame count; interval: the real
    keyframe interval; feature_dim: D. Per motion: with prob 0.55 the real pattern (every
    `interval` frames from 0, plus the last real frame), 0.15 a sparser one (2x or 3x interval),
    0.05 a denser one, 0.15 random frames, 0.10 no keyframes (text-only in-betweening). Of
    motions with keyframes, 10% pin only the position dims [3 : 4 + 3*(J-1)] (root height and
    root-relative joint positions). Returns (B, T, D) float 0/1, zero at padding frames.
    """
    B = lengths.shape[0]
    device = lengths.device
    frame = torch.arange(T, device=device)[None]  # (1, T)
    valid = frame < lengths[:, None]  # (B, T)
    last = frame == (lengths - 1)[:, None]

    mode = _uniform(B, generator, device)
    sparse = (mode >= _P_REAL) & (mode < _P_REAL + _P_SPARSE)
    dense = (mode >= _P_REAL + _P_SPARSE) & (mode < _P_REAL + _P_SPARSE + _P_DENSE)
    random_frames = (mode >= _P_REAL + _P_SPARSE + _P_DENSE) & (mode < _P_REAL + _P_SPARSE + _P_DENSE + _P_RANDOM)
    no_frames = mode >= _P_REAL + _P_SPARSE + _P_DENSE + _P_RANDOM

    step = torch.full((B,), interval, dtype=torch.long, device=device)
    sparse_factor = 2 + (_uniform(B, generator, device) < 0.5).long()  # 2 or 3
    dense_step = (1 + (_uniform(B, generator, device) * (interval - 1)).long()).clamp(1, max(interval - 1, 1))
    step = torch.where(sparse, interval * sparse_factor, step)
    step = torch.where(dense, dense_step, step)
    structured = (frame % step[:, None] == 0) | last  # (B, T)
    density = 0.05 + 0.25 * _uniform(B, generator, device)  # (B,)
    scattered = _uniform((B, T), generator, device) < density[:, None]
    frames = torch.where(random_frames[:, None], scattered, structured) & valid & ~no_frames[:, None]

    num_joints = (feature_dim + 1) // 12
    position_dims = torch.zeros(feature_dim, device=device)
    position_dims[3:4 + 3 * (num_joints - 1)] = 1.0
    positions_only = _uniform(B, generator, device) < _P_POSITIONS_ONLY  # (B,)
    dims = torch.where(positions_only[:, None], position_dims[None], torch.ones_like(position_dims)[None])
    return frames[..., None].float() * dims[:, None, :]  # (B, T, D)
