"""Keyframe VQ-VAE: one discrete token per keyframe.

A 1-D convolutional encoder maps the normalised 263-dim features of the K keyframes of a
motion, (B, K, 263), to K latent vectors; each is snapped to the nearest entry of a codebook
trained by exponential moving averages (EMA) with dead-code reset; a mirror-image decoder maps
the K codes back to K feature vectors. There is no temporal down-sampling, so a motion of K
keyframes is exactly K tokens, which is what makes exact length control in the GPT trivial.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from config import CompositeConfig
from utils import FOOT_IDX_LEFT, FOOT_IDX_RIGHT, FOOT_SLICE, NUM_JOINTS, RIC_SLICE, VEL_SLICE


def feature_group_weights(feature_dim: int, foot_weight: float = 1.0) -> torch.Tensor:
    """Per-dimension reconstruction weights (feature_dim,) for the HumanML3D layout, mean 1.

    Root motion, joint positions and joint velocities decide what a motion looks like, so they
    weigh more than the 6D rotations (redundant with positions) and the foot contacts.
    foot_weight multiplies the feet's dimensions (ankle and toe positions and velocities, the
    four contact channels; 22-joint layout) before the mean is brought back to 1.
    """
    num_joints = (feature_dim + 1) // 12
    groups = [  # (width, weight) in feature order
        (4, 2.0),                     # root angular velocity, xz velocity, height
        ((num_joints - 1) * 3, 2.0),  # root-relative joint positions
        ((num_joints - 1) * 6, 0.5),  # joint 6D rotations
        (num_joints * 3, 1.5),        # joint velocities
        (4, 0.5),                     # foot contacts
    ]
    weights = torch.cat([torch.full((width,), weight) for width, weight in groups])  # (D,)
    if foot_weight != 1.0 and num_joints == NUM_JOINTS:
        feet = FOOT_IDX_LEFT + FOOT_IDX_RIGHT
        dims = [RIC_SLICE.start + 3 * (j - 1) + k for j in feet for k in range(3)]
        dims += [VEL_SLICE.start + 3 * j + k for j in feet for k in range(3)]
        dims += list(range(FOOT_SLICE.start, FOOT_SLICE.stop))
        weights[dims] *= foot_weight
    return weights / weights.mean()


class ResBlock(nn.Module):
    """Pre-activation residual block: dilated kernel-3 conv, then a 1x1 conv."""

    def __init__(self, width: int, dilation: int):
        super().__init__()
        self.conv_dilated = nn.Conv1d(width, width, 3, padding=dilation, dilation=dilation)
        self.conv_pointwise = nn.Conv1d(width, width, 1)

    def forward(self, h: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """h (B, W, K); valid (B, 1, K) float 0/1 zeroes padding before the kernel-3 conv."""
        r = self.conv_dilated(F.relu(h) * valid)
        return h + self.conv_pointwise(F.relu(r))


class ConvStack(nn.Module):
    """Conv in -> `depth` residual blocks (dilation 1, 3, 9, ...) -> conv out, length preserved."""

    def __init__(self, in_dim: int, width: int, out_dim: int, depth: int):
        super().__init__()
        self.conv_in = nn.Conv1d(in_dim, width, 3, padding=1)
        self.blocks = nn.ModuleList(ResBlock(width, 3 ** i) for i in range(depth))
        self.conv_out = nn.Conv1d(width, out_dim, 3, padding=1)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """x (B, C_in, K), valid (B, 1, K) -> (B, C_out, K)."""
        h = self.conv_in(x * valid)
        for block in self.blocks:
            h = block(h, valid)
        return self.conv_out(F.relu(h) * valid)


def _across_ranks() -> bool:
    """True inside a torch.distributed group of several processes (DDP training)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class EMACodebook(nn.Module):
    """Nearest-neighbour codebook updated by EMA of assigned latents, with dead-code reset.

    A code is dead when its EMA assignment count falls below one per batch; it is then moved
    onto a random latent of the current batch. The first training batch initialises the whole
    codebook from its latents. The codebook works in float32 whatever the autocast.

    Under torch.distributed (training with several processes) the batch is the global batch:
    the counts and sums of all ranks are all-reduced before the EMA step, and the random
    latents (initialisation, dead-code reset) are drawn by rank 0 from all ranks' latents and
    sent to every rank, so the buffers stay identical on all ranks without DDP broadcasting them.
    """

    def __init__(self, num_codes: int, code_dim: int, decay: float):
        super().__init__()
        self.num_codes = num_codes
        self.decay = decay
        self.register_buffer("codebook", torch.randn(num_codes, code_dim) * 0.1)  # (N, C)
        self.register_buffer("ema_count", torch.ones(num_codes))  # (N,)
        self.register_buffer("ema_sum", self.codebook.clone())  # (N, C)
        self.register_buffer("initialised", torch.tensor(False))
        self.register_buffer("usage", torch.zeros(num_codes), persistent=False)  # counts since reset

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """z (M, C) -> index of the closest code (M,) long (squared Euclidean distance, float32)."""
        with torch.autocast(z.device.type, enabled=False):
            z = z.float()
            distance = (z.pow(2).sum(1, keepdim=True) - 2.0 * z @ self.codebook.t()
                        + self.codebook.pow(2).sum(1)[None])  # (M, N)
            return distance.argmin(dim=1)

    @torch.no_grad()
    def random_rows(self, z: torch.Tensor, n: int) -> torch.Tensor:
        """n rows drawn with replacement from the latents z (M, C) -> (n, C).

        Across ranks the rows come from the concatenation of every rank's z in rank order:
        rank 0 draws the indices, and each row is filled in by the rank that holds it.
        """
        if not _across_ranks():
            return z[torch.randint(z.shape[0], (n,), device=z.device)]
        rank = dist.get_rank()
        sizes = torch.zeros(dist.get_world_size(), dtype=torch.long, device=z.device)
        sizes[rank] = z.shape[0]
        dist.all_reduce(sizes)
        picks = torch.randint(int(sizes.sum()), (n,), device=z.device)  # used on rank 0 only
        dist.broadcast(picks, src=0)
        local = picks - int(sizes[:rank].sum())
        mine = (local >= 0) & (local < z.shape[0])
        rows = torch.zeros(n, z.shape[1], dtype=z.dtype, device=z.device)
        rows[mine] = z[local[mine]]
        dist.all_reduce(rows)
        return rows

    @torch.no_grad()
    def _ema_update(self, z: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """EMA step of counts and sums with the (global) batch assignments, then dead-code reset.

        Returns the batch's code counts (N,). A non-finite batch on any rank leaves the codebook
        unchanged (the trainer skips that step).
        """
        if not bool(self.initialised):
            fresh = self.random_rows(z, self.num_codes)
            if not bool(torch.isfinite(fresh).all()):
                return torch.zeros_like(self.ema_count)
            self.codebook.copy_(fresh)
            self.ema_sum.copy_(self.codebook)
            self.ema_count.fill_(1.0)
            self.initialised.fill_(True)
            codes = self.nearest(z)
        ones = torch.ones(z.shape[0], 1, dtype=z.dtype, device=z.device)
        stats = torch.zeros(self.num_codes, z.shape[1] + 1, dtype=z.dtype, device=z.device)
        stats.index_add_(0, codes, torch.cat([z, ones], dim=1))  # (N, C+1) sums, then counts
        if _across_ranks():
            dist.all_reduce(stats)
        if not bool(torch.isfinite(stats).all()):
            return torch.zeros_like(self.ema_count)
        batch_sum, batch_count = stats[:, :-1], stats[:, -1]
        self.ema_count.mul_(self.decay).add_(batch_count, alpha=1.0 - self.decay)
        self.ema_sum.mul_(self.decay).add_(batch_sum, alpha=1.0 - self.decay)
        total = self.ema_count.sum()
        smoothed = (self.ema_count + 1e-5) / (total + self.num_codes * 1e-5) * total  # Laplace
        self.codebook.copy_(self.ema_sum / smoothed[:, None])
        dead = self.ema_count < 1.0  # (N,) fewer than one expected use per batch
        num_dead = int(dead.sum())
        if num_dead:
            fresh = self.random_rows(z, num_dead)
            self.codebook[dead] = fresh
            self.ema_sum[dead] = fresh
            self.ema_count[dead] = 1.0
        return batch_count

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quantise valid latents z (M, C) -> (z_q (M, C) float32, codes (M,), perplexity).

        In training mode the codebook takes one EMA step (with all ranks' latents when
        distributed). z_q is read before that step.
        """
        with torch.autocast(z.device.type, enabled=False):
            z = z.float()
            codes = self.nearest(z)  # (M,)
            z_q = self.codebook[codes]  # (M, C), read before this step's EMA update
            with torch.no_grad():
                batch_count = torch.bincount(codes, minlength=self.num_codes).float()
                probs = batch_count / batch_count.sum().clamp_min(1.0)
                perplexity = torch.exp(-(probs * torch.log(probs.clamp_min(1e-10))).sum())
                if self.training:
                    batch_count = self._ema_update(z.detach(), codes)
                self.usage.add_(batch_count)
        return z_q, codes, perplexity


class KeyframeVQVAE(nn.Module):
    """Convolutional VQ-VAE over keyframe sequences (B, K, feature_dim), one code per keyframe."""

    def __init__(self, cfg: CompositeConfig):
        super().__init__()
        self.feature_dim = cfg.feature_dim
        self.commit_weight = cfg.vq_commit_weight
        self.vel_loss_weight = cfg.vq_vel_loss_weight
        self.encoder = ConvStack(cfg.feature_dim, cfg.vq_width, cfg.vq_code_dim, cfg.vq_depth)
        self.decoder = ConvStack(cfg.vq_code_dim, cfg.vq_width, cfg.feature_dim, cfg.vq_depth)
        self.quantizer = EMACodebook(cfg.vq_codebook_size, cfg.vq_code_dim, cfg.vq_ema_decay)
        self.register_buffer("loss_weights", feature_group_weights(cfg.feature_dim, cfg.vq_foot_weight),
                             persistent=False)

    # ------------------------------------------------------------------------------------
    def _check(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Validate x (B, K, D) and return the mask (B, K) bool (all True when None)."""
        if x.dim() != 3 or x.shape[-1] != self.feature_dim:
            raise ValueError(f"VQ-VAE input must be (B, K, {self.feature_dim}) keyframe features, "
                             f"got shape {tuple(x.shape)}")
        if mask is None:
            return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        if mask.shape != x.shape[:2]:
            raise ValueError(f"VQ-VAE mask must be (B, K) = {tuple(x.shape[:2])}, got {tuple(mask.shape)}")
        return mask.bool()

    def _quantize(self, x: torch.Tensor, mask: torch.Tensor):
        """Encode and quantise: x (B, K, D) -> (z_e, z_q straight-through, codes, perplexity)."""
        valid = mask[:, None, :].to(x.dtype)  # (B, 1, K)
        z_e = self.encoder(x.transpose(1, 2), valid).transpose(1, 2).float()  # (B, K, C) float32 under autocast
        z_q_valid, codes_valid, perplexity = self.quantizer(z_e[mask])  # (M, C), (M,)
        z_q = torch.zeros_like(z_e).index_put((mask,), z_q_valid)  # (B, K, C)
        codes = torch.zeros(mask.shape, dtype=torch.long, device=x.device).index_put((mask,), codes_valid)
        z_st = z_e + (z_q - z_e).detach()  # straight-through estimator
        return z_e, z_q, z_st, codes, perplexity

    def _decode_latent(self, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """z (B, K, C) -> features (B, K, D)."""
        valid = mask[:, None, :].to(z.dtype)
        return self.decoder(z.transpose(1, 2), valid).transpose(1, 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> dict:
        """Reconstruct keyframes and compute the training losses.

        x: (B, K, D) normalised keyframe features; mask: (B, K) bool, True at valid keyframes.
        Returns dict(recon (B, K, D), loss, loss_recon, loss_vel, loss_commit, codes (B, K) long
        (0 at padding), perplexity (batch code perplexity)).
        """
        mask = self._check(x, mask)
        z_e, z_q, z_st, codes, perplexity = self._quantize(x, mask)
        recon = self._decode_latent(z_st, mask)  # (B, K, D)

        num_dims = float(self.feature_dim)
        frame_valid = mask[..., None].to(x.dtype)  # (B, K, 1)
        err = F.smooth_l1_loss(recon, x, reduction="none") * self.loss_weights  # (B, K, D)
        loss_pos = (err * frame_valid).sum() / (frame_valid.sum() * num_dims).clamp_min(1.0)
        pair_valid = (mask[:, 1:] & mask[:, :-1])[..., None].to(x.dtype)  # (B, K-1, 1)
        err_vel = F.smooth_l1_loss(recon[:, 1:] - recon[:, :-1], x[:, 1:] - x[:, :-1],
                                   reduction="none") * self.loss_weights  # (B, K-1, D)
        # per valid keyframe like the other terms, so that the whole loss is a sum over keyframes
        # divided by their number (what lets several processes add up to one batch exactly)
        loss_vel = (err_vel * pair_valid).sum() / (frame_valid.sum() * num_dims).clamp_min(1.0)
        loss_recon = loss_pos + self.vel_loss_weight * loss_vel
        latent_valid = mask[..., None].to(x.dtype)
        loss_commit = ((z_e - z_q.detach()).pow(2) * latent_valid).sum() / (
            latent_valid.sum() * z_e.shape[-1]).clamp_min(1.0)
        loss = loss_recon + self.commit_weight * loss_commit
        return dict(recon=recon, loss=loss, loss_recon=loss_recon, loss_vel=loss_vel,
                    loss_commit=loss_commit, codes=codes, perplexity=perplexity)

    # ------------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Keyframe features x (B, K, D) -> codes (B, K) long (0 where mask is False)."""
        mask = self._check(x, mask)
        valid = mask[:, None, :].to(x.dtype)
        z_e = self.encoder(x.transpose(1, 2), valid).transpose(1, 2)  # (B, K, C)
        codes = self.quantizer.nearest(z_e[mask])
        with torch.no_grad():
            self.quantizer.usage.add_(torch.bincount(codes, minlength=self.quantizer.num_codes).to(x.dtype))
        return torch.zeros(mask.shape, dtype=torch.long, device=x.device).index_put((mask,), codes)

    def decode(self, codes: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Codes (B, K) long in [0, codebook_size) -> keyframe features (B, K, D)."""
        if codes.dim() != 2:
            raise ValueError(f"VQ-VAE decode expects codes of shape (B, K), got {tuple(codes.shape)}")
        if mask is None:
            mask = torch.ones(codes.shape, dtype=torch.bool, device=codes.device)
        codes = codes.masked_fill(~mask, 0)
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.quantizer.num_codes):
            raise ValueError(f"VQ-VAE codes must lie in [0, {self.quantizer.num_codes}); strip END/PAD "
                             "tokens before decoding")
        z_q = self.quantizer.codebook[codes]  # (B, K, C)
        return self._decode_latent(z_q, mask.bool())

    def reset_usage(self) -> None:
        """Start a new window for `codebook_usage`."""
        self.quantizer.usage.zero_()

    def codebook_usage(self) -> dict:
        """Code use since the last `reset_usage`: perplexity (1..N) and fraction of codes used."""
        usage = self.quantizer.usage
        total = float(usage.sum())
        if total == 0.0:
            return dict(perplexity=0.0, used_fraction=0.0)
        probs = usage / total
        perplexity = float(torch.exp(-(probs * torch.log(probs.clamp_min(1e-10))).sum()))
        return dict(perplexity=perplexity, used_fraction=float((usage > 0).float().mean()))
