"""The composite model's three training stages as StageJobs for the Trainer, and the caption
embedding table they look text up in."""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn

from config import CompositeConfig
from dataset import MotionDataset, batch_keyframes
from runtime import (CheckpointError, DistInfo, architecture_mismatches, checkpoint_path, load_checkpoint_on_main,
                     main_first, seed_everything, stats_hash, vqvae_identity)
from text_encoder import build_caption_embeddings, load_text_encoder
from training.loop import CheckpointPlan, DataSpec, StageJob

Stage = Literal["vqvae", "gpt", "diffusion"]
STAGES: tuple[Stage, ...] = ("vqvae", "gpt", "diffusion")
STAGE_PREFIXES = {"vqvae": ("vq_",), "gpt": ("vq_codebook", "gpt_n_"),
                  "diffusion": ("diff_n_", "diff_patch", "diff_timesteps", "diff_noise_schedule")}


class TextTable:
    """Cached caption embeddings of the train and val splits, looked up by caption text.

    Rank 0 computes the cache file, then one rank per machine reads or computes it, then the rest
    read it (no shared file system needed)."""

    def __init__(self, cfg: CompositeConfig, captions: list[str], cache_dir: str, info: DistInfo = DistInfo()):
        def build():
            encoder = load_text_encoder(cfg)
            return encoder, build_caption_embeddings(encoder, captions, cache_dir, cfg.text_batch_size)

        encoder, (self.row_of, self.embeddings) = main_first(info, build)
        self.encoder_name, self.dim = encoder.name, encoder.dim

    def lookup(self, captions: list[str]) -> torch.Tensor:
        """(B, D) embeddings of a batch of captions."""
        rows = torch.tensor([self.row_of[c] for c in captions], dtype=torch.long)
        return self.embeddings[rows]


def stage_data(cfg: CompositeConfig, info: DistInfo, device: torch.device) -> tuple[DataSpec, TextTable]:
    """The train/val splits (the embedded set built once per file system) and their text table."""
    train_set = main_first(info, lambda: MotionDataset(cfg, "train"))
    val_set = MotionDataset(cfg, "val")
    table = TextTable(cfg, train_set.all_captions() + val_set.all_captions(), train_set.root, info)

    def add_text(batch: dict) -> dict:
        batch["text_emb"] = table.lookup(batch["captions"]).to(device)
        return batch

    return DataSpec(train_set, val_set, prepare=add_text), table


def stage_checkpoint(cfg: CompositeConfig, stage: Stage, model: nn.Module, data: DataSpec, table: TextTable,
                     extra: dict | None = None) -> CheckpointPlan:
    """checkpoints/<stage>.pt with the config, data statistics and text encoder; resuming it
    needs the same architecture fields and text encoder."""
    path = checkpoint_path(cfg, stage)
    mean, std = data.train.mean, data.train.std
    payload = {"config": cfg.to_dict(), "mean": torch.from_numpy(mean), "std": torch.from_numpy(std),
               "data_hash": stats_hash(mean, std), "text_encoder": table.encoder_name, "text_dim": table.dim,
               **(extra or {})}

    def check(saved: dict) -> None:
        mismatched = architecture_mismatches(saved["config"], cfg, STAGE_PREFIXES[stage])
        if mismatched:
            raise CheckpointError(f"{path} was trained with a different config: "
                                  + "; ".join(mismatched) + " (pass the same values or train afresh)")
        if saved.get("text_encoder") != table.encoder_name:
            raise CheckpointError(f"{path} was trained with text encoder '{saved.get('text_encoder')}' "
                                  f"but '{table.encoder_name}' is in use (set --text_encoder to match or train afresh)")

    return CheckpointPlan(path, model, payload, check)


# ---------------------------------------------------------------------------------------
# The three stages: a module whose forward maps a batch to the loss, and the job around it
# ---------------------------------------------------------------------------------------
def vqvae_job(cfg: CompositeConfig, data: DataSpec, table: TextTable, seed: int) -> StageJob:
    from models.vqvae import KeyframeVQVAE
    vqvae = KeyframeVQVAE(cfg)

    def loss_fn(module: nn.Module, batch: dict) -> dict:
        keyframes, _, keyframe_mask = batch_keyframes(batch["motion"], batch["lengths"], cfg.keyframe_interval)
        return {**module(keyframes, keyframe_mask), "weight": keyframe_mask.sum()}

    def summary() -> str:
        usage = vqvae.codebook_usage()
        return f", codebook perplexity {usage['perplexity']:.1f} ({100 * usage['used_fraction']:.0f}% of codes used)"

    return StageJob("vqvae", vqvae, loss_fn, cfg.vqvae_steps, seed=seed,
                    length_buckets=cfg.length_buckets_of("vqvae"),
                    checkpoint=stage_checkpoint(cfg, "vqvae", vqvae, data, table), summary_fn=summary)


class GPTTrainingStep(nn.Module):
    """Wraps MotionGPT with the frozen VQ-VAE so that one forward maps a batch to the loss
    (the shape DistributedDataParallel needs)."""

    def __init__(self, cfg: CompositeConfig, gpt: nn.Module, vqvae: nn.Module):
        super().__init__()
        self.cfg, self.gpt = cfg, gpt
        self.vqvae = [vqvae]  # a list keeps the frozen tokenizer out of parameters() and state_dict()

    def forward(self, motion, lengths, text_emb, generators: list[torch.Generator] | None = None) -> dict:
        """Loss dict; `weight` is the number of predicted tokens (the loss is their mean)."""
        vqvae = self.vqvae[0]
        keyframes, _, keyframe_mask = batch_keyframes(motion, lengths, self.cfg.keyframe_interval)
        with torch.no_grad():
            codes = vqvae.encode(keyframes, keyframe_mask)  # (B, K)
        num_tokens = keyframe_mask.sum(1)  # (B,)
        pad_id, end_id = self.gpt.pad_id, self.gpt.end_id
        tokens = torch.where(keyframe_mask, codes, torch.full_like(codes, pad_id))
        targets = torch.full((codes.shape[0], codes.shape[1] + 1), -100, dtype=torch.long, device=codes.device)
        targets[:, :-1] = torch.where(keyframe_mask, codes, torch.full_like(codes, -100))
        targets.scatter_(1, num_tokens[:, None], end_id)
        _, loss = self.gpt(text_emb, tokens, num_tokens, targets=targets, generator=generators)
        return {"loss": loss, "weight": (targets != -100).sum()}


def gpt_job(cfg: CompositeConfig, data: DataSpec, table: TextTable, seed: int, info: DistInfo,
            device: torch.device) -> StageJob:
    """The GPT on the finished VQ-VAE's tokens; rank 0 reads vqvae.pt and sends it to all ranks."""
    from models.gpt import MotionGPT
    from models.vqvae import KeyframeVQVAE
    vq_path = checkpoint_path(cfg, "vqvae")
    saved = load_checkpoint_on_main(info, vq_path, stage="vqvae")
    if not saved.get("finished"):
        raise CheckpointError(f"{vq_path} is not finished (step {saved['step']}); finish stage 1a first "
                              "with `python train.py --stage vqvae --resume`")
    vq_cfg = CompositeConfig.from_dict(saved["config"])
    vqvae = KeyframeVQVAE(vq_cfg)
    vqvae.load_state_dict(saved["model"])
    vqvae.to(device).eval().requires_grad_(False)
    gpt = MotionGPT(cfg.replace(vq_codebook_size=vq_cfg.vq_codebook_size), table.dim)
    step_module = GPTTrainingStep(cfg, gpt, vqvae)

    def loss_fn(module: nn.Module, batch: dict) -> dict:
        return module(batch["motion"], batch["lengths"], batch["text_emb"], batch.get("generators"))

    plan = stage_checkpoint(cfg, "gpt", gpt, data, table, extra={"vqvae_run_id": vqvae_identity(saved)})
    return StageJob("gpt", step_module, loss_fn, cfg.gpt_steps, seed=seed, checkpoint=plan,
                    length_buckets=cfg.length_buckets_of("gpt"))


def training_keyframe_masks(lengths: torch.Tensor, num_frames: int, cfg: CompositeConfig,
                            generators: list[torch.Generator]) -> torch.Tensor:
    """(B, T, D) in-betweening keyframe masks, row b drawn from generators[b] over
    max(T, cfg.max_motion_length) frames, so that it does not depend on the batch's padding."""
    from models.diffusion import sample_training_keyframe_mask
    width = max(num_frames, cfg.max_motion_length)
    rows = [sample_training_keyframe_mask(lengths[b:b + 1], width, cfg.keyframe_interval, cfg.feature_dim,
                                          generator=gen)[:, :num_frames] for b, gen in enumerate(generators)]
    return torch.cat(rows)


class DiffusionTrainingStep(nn.Module):
    """One forward = the in-betweener's training loss with a sampled keyframe mask."""

    def __init__(self, cfg: CompositeConfig, diffusion: nn.Module):
        super().__init__()
        self.cfg, self.diffusion = cfg, diffusion

    def forward(self, motion, lengths, padding_mask, text_emb,
                generators: list[torch.Generator] | None = None) -> dict:
        """Loss dict; `weight` is the number of real frames (the loss is their mean)."""
        from models.diffusion import sample_training_keyframe_mask
        if generators is None:
            keyframe_mask = sample_training_keyframe_mask(lengths, motion.shape[1], self.cfg.keyframe_interval,
                                                          motion.shape[2])
        else:
            keyframe_mask = training_keyframe_masks(lengths, motion.shape[1], self.cfg, generators)
        out = self.diffusion.training_loss(motion, text_emb, keyframe_mask.to(motion), padding_mask,
                                           generator=generators)
        return {**out, "weight": padding_mask.sum()}


def diffusion_job(cfg: CompositeConfig, data: DataSpec, table: TextTable, seed: int) -> StageJob:
    from models.diffusion import GaussianDiffusion, InbetweenDenoiser
    denoiser = InbetweenDenoiser(cfg, table.dim)
    # the joint-space loss terms un-normalise x0 with the statistics the training data use
    diffusion = GaussianDiffusion(cfg, denoiser).set_feature_statistics(data.train.mean, data.train.std)
    step_module = DiffusionTrainingStep(cfg, diffusion)

    def loss_fn(module: nn.Module, batch: dict) -> dict:
        return module(batch["motion"], batch["lengths"], batch["padding_mask"], batch["text_emb"],
                      batch.get("generators"))

    return StageJob("diffusion", step_module, loss_fn, cfg.diffusion_steps, seed=seed,
                    length_buckets=cfg.length_buckets_of("diffusion"),
                    checkpoint=stage_checkpoint(cfg, "diffusion", denoiser, data, table),
                    ratio_terms=len(diffusion.ratio_term_names))


def stage_job(name: Stage, cfg: CompositeConfig, data: DataSpec, table: TextTable, info: DistInfo,
              device: torch.device) -> StageJob:
    """The job of stage `name`, its model initialised from cfg.seed + the stage's index (the
    same on every rank)."""
    seed = cfg.seed + STAGES.index(name)
    seed_everything(seed)
    if name == "vqvae":
        return vqvae_job(cfg, data, table, seed)
    if name == "gpt":
        return gpt_job(cfg, data, table, seed, info, device)
    return diffusion_job(cfg, data, table, seed)
