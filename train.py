"""Train the composite text-to-motion model: stage 1a keyframe VQ-VAE, stage 1b keyframe GPT,
stage 2 diffusion in-betweener, in sequence.

    python train.py                          # all stages, embedded data set, CompositeConfig defaults
    python train.py --stage gpt --resume     # continue one stage from checkpoints/gpt.pt
    torchrun --nproc_per_node=2 train.py     # DistributedDataParallel (gloo on CPU, NCCL on GPUs)

Checkpoints (checkpoints/vqvae.pt, gpt.pt, diffusion.pt) hold the weights, optimiser, step,
RNG and data-order state, config and data statistics; they are written atomically every
cfg.ckpt_interval steps, at each stage end and on Ctrl-C/SIGTERM.
"""
from __future__ import annotations

import math
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterator, Literal

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from config import CompositeConfig, ConfigError, config_from_args, make_parser
from dataset import DataError, MotionDataset, batch_keyframes, collate_motions
from runtime import (CheckpointError, DistInfo, architecture_mismatches, autocast_context,
                     init_distributed, load_checkpoint, print_main, save_checkpoint, seed_everything,
                     select_device, stats_hash, vqvae_identity)
from text_encoder import build_caption_embeddings, load_text_encoder

Stage = Literal["vqvae", "gpt", "diffusion"]
STAGES: tuple[Stage, ...] = ("vqvae", "gpt", "diffusion")
STAGE_PREFIXES = {"vqvae": ("vq_",), "gpt": ("vq_codebook", "gpt_n_"),
                  "diffusion": ("diff_n_", "diff_patch", "diff_timesteps", "diff_noise_schedule")}


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss stayed NaN); the message says why."""


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived; the loop saved a checkpoint and stops."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def checkpoint_path(cfg: CompositeConfig, stage: Stage) -> str:
    return os.path.join(cfg.checkpoint_dir, f"{stage}.pt")


# ---------------------------------------------------------------------------------------
# Data order that survives a restart: DistributedSampler epochs, skipping what was consumed
# ---------------------------------------------------------------------------------------
class ResumableSampler(DistributedSampler):
    """DistributedSampler (also for one process) that can start part-way through an epoch."""

    def __init__(self, dataset, info: DistInfo, seed: int):
        super().__init__(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                         seed=seed, drop_last=True)
        self.start_index = 0

    def __iter__(self):
        indices = list(super().__iter__())
        return iter(indices[self.start_index:])

    def __len__(self) -> int:
        return self.num_samples - self.start_index


class BatchStream:
    """Endless batches over epochs; `position` (epoch, batches taken) is saved and restored."""

    def __init__(self, dataset: MotionDataset, cfg: CompositeConfig, info: DistInfo, seed: int):
        self.dataset = dataset
        self.per_rank_batch = max(1, cfg.batch_size // info.world_size)
        self.sampler = ResumableSampler(dataset, info, seed)
        self.num_workers = cfg.num_workers
        self.epoch = 0
        self.batches_taken = 0
        self._iterator: Iterator | None = None

    def _start_epoch(self) -> None:
        self.sampler.set_epoch(self.epoch)
        self.sampler.start_index = self.batches_taken * self.per_rank_batch
        # A private generator: creating the loader must not draw from the global RNG, whose
        # state the checkpoint restores.
        worker_seed = torch.Generator().manual_seed(self.sampler.seed * 1000 + self.epoch)
        loader = torch.utils.data.DataLoader(self.dataset, batch_size=self.per_rank_batch,
                                             sampler=self.sampler, drop_last=True, generator=worker_seed,
                                             collate_fn=collate_motions, num_workers=self.num_workers)
        self._iterator = iter(loader)

    def next(self) -> dict:
        for _ in range(2):
            if self._iterator is None:
                self._start_epoch()
            try:
                batch = next(self._iterator)
                self.batches_taken += 1
                return batch
            except StopIteration:
                self.epoch += 1
                self.batches_taken = 0
                self._iterator = None
        raise DataError(f"the training split has fewer motions ({len(self.dataset)}) than one batch "
                        f"({self.per_rank_batch}); lower --batch_size")

    def state(self) -> dict:
        return {"epoch": self.epoch, "batches_taken": self.batches_taken}

    def load_state(self, state: dict) -> None:
        self.epoch, self.batches_taken = int(state["epoch"]), int(state["batches_taken"])
        self._iterator = None


# ---------------------------------------------------------------------------------------
# One stage = a model, how to compute its loss on a batch, and what else its checkpoint keeps
# ---------------------------------------------------------------------------------------
@dataclass
class StageJob:
    name: Stage
    module: nn.Module  # the module whose forward computes the loss dict (wrapped in DDP)
    trainable: nn.Module  # what the optimiser and checkpoint hold
    loss_fn: Callable[[nn.Module, dict], dict]  # (module or DDP, batch) -> {"loss": ..., ...}
    total_steps: int
    extra: dict = field(default_factory=dict)  # saved in the checkpoint
    summary_fn: Callable[[], str] = lambda: ""


class Trainer:
    """Shared loop: progress bar, validation, NaN guard, periodic atomic checkpoints, resume."""

    def __init__(self, cfg: CompositeConfig, info: DistInfo, device: torch.device,
                 train_set: MotionDataset, val_set: MotionDataset, text_table: "TextTable"):
        self.cfg, self.info, self.device = cfg, info, device
        self.train_set, self.val_set, self.text_table = train_set, val_set, text_table
        self.stop_signal: int | None = None

    def _on_signal(self, signum, frame) -> None:
        self.stop_signal = signum

    def base_payload(self) -> dict:
        return {"config": self.cfg.to_dict(), "mean": torch.from_numpy(self.train_set.mean),
                "std": torch.from_numpy(self.train_set.std),
                "data_hash": stats_hash(self.train_set.mean, self.train_set.std),
                "text_encoder": self.text_table.encoder_name, "text_dim": self.text_table.dim}

    def run(self, job: StageJob, resume: bool) -> dict:
        cfg, info = self.cfg, self.info
        path = checkpoint_path(cfg, job.name)
        model = job.trainable.to(self.device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                      betas=(0.9, 0.99), fused=True)
        stream = BatchStream(self.train_set, cfg, info, seed=cfg.seed + STAGES.index(job.name))
        step = 0
        run_id = uuid.uuid4().hex[:12]
        if resume and os.path.exists(path):
            saved = load_checkpoint(path, stage=job.name)
            mismatched = architecture_mismatches(saved["config"], cfg, STAGE_PREFIXES[job.name])
            if mismatched:
                raise CheckpointError(f"{path} was trained with a different config: "
                                      + "; ".join(mismatched) + " (pass the same values or train afresh)")
            if saved.get("text_encoder") != self.text_table.encoder_name:
                raise CheckpointError(f"{path} was trained with text encoder '{saved.get('text_encoder')}' "
                                      f"but '{self.text_table.encoder_name}' is in use "
                                      "(set --text_encoder to match or train afresh)")
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            step = int(saved["step"])
            run_id = saved.get("run_id", run_id)
            stream.load_state(saved["data_state"])
            torch.set_rng_state(saved["rng_cpu"])
            if self.device.type == "cuda" and "rng_cuda" in saved:
                torch.cuda.set_rng_state(saved["rng_cuda"], self.device)
            if step >= job.total_steps:
                print_main(info, f"[{job.name}] already trained ({step}/{job.total_steps} steps) in {path}; "
                                 f"pass a larger --{job.name}_steps to continue it")
                return {"stage": job.name, "steps": step, "seconds": 0.0,
                        "train_loss": saved.get("train_loss"), "val_loss": saved.get("val_loss")}
            print_main(info, f"[{job.name}] resuming from {path} at step {step}/{job.total_steps}")
        elif resume:
            print_main(info, f"[{job.name}] no checkpoint at {path}; starting from scratch")
        module = job.module.to(self.device)
        if info.enabled:
            module = DistributedDataParallel(module, device_ids=[self.device.index] if self.device.type == "cuda" else None)

        train_loss = float("nan")
        val_loss = float("nan")

        def save(final: bool) -> None:
            if not info.is_main:
                return
            payload = self.base_payload()
            payload.update(job.extra)
            payload.update({"stage": job.name, "model": model.state_dict(),
                            "optimizer": optimizer.state_dict(), "step": step, "run_id": run_id,
                            "finished": final and step >= job.total_steps, "data_state": stream.state(),
                            "train_loss": train_loss, "val_loss": val_loss,
                            "rng_cpu": torch.get_rng_state()})
            if self.device.type == "cuda":
                payload["rng_cuda"] = torch.cuda.get_rng_state(self.device)
            save_checkpoint(path, payload)

        def learning_rate(at_step: int) -> float:
            warm = min(1.0, (at_step + 1) / max(1, cfg.warmup_steps))
            progress = at_step / max(1, job.total_steps)
            return cfg.lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

        old_handlers = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        start_time = time.time()
        start_step = step
        bad_steps = 0
        bar = tqdm(total=job.total_steps, initial=step, desc=f"{job.name:9s}", disable=not info.is_main,
                   dynamic_ncols=True, mininterval=1.0)
        try:
            while step < job.total_steps:
                if self.stop_signal is not None:
                    save(final=False)
                    raise Interrupted(self.stop_signal)
                model.train()
                batch = self.to_device(stream.next())
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(step)
                with autocast_context(cfg, self.device):
                    logs = job.loss_fn(module, batch)
                loss = logs["loss"]
                if not torch.isfinite(loss):
                    bad_steps += 1
                    optimizer.zero_grad(set_to_none=True)
                    print_main(info, f"[{job.name}] non-finite loss at step {step} ({bad_steps} in a row); step skipped")
                    if bad_steps >= cfg.max_bad_steps:
                        raise TrainingError(f"[{job.name}] loss was NaN/inf for {bad_steps} steps in a row; "
                                            f"stopped, last good checkpoint kept at {path} (lower --lr)")
                    continue
                bad_steps = 0
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                step += 1
                train_loss = float(loss.detach())
                bar.update(1)
                bar.set_postfix(loss=f"{train_loss:.4f}", refresh=False)
                if step % cfg.eval_interval == 0 or step == job.total_steps:
                    val_loss = self.validate(job, module)
                    bar.set_postfix(loss=f"{train_loss:.4f}", val=f"{val_loss:.4f}", refresh=False)
                if step % cfg.ckpt_interval == 0 and step < job.total_steps:
                    save(final=False)
            if step == start_step and job.total_steps > 0:
                val_loss = self.validate(job, module)
            save(final=True)
        finally:
            bar.close()
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
        seconds = time.time() - start_time
        if info.enabled:
            self.check_ranks_agree(job.name, model)
        extra = job.summary_fn()
        print_main(info, f"[{job.name}] {step} steps ({step - start_step} this run) in {seconds:.0f}s: "
                         f"train loss {train_loss:.4f}, val loss {val_loss:.4f}{extra} -> {path}")
        return {"stage": job.name, "steps": step, "seconds": seconds, "train_loss": train_loss,
                "val_loss": val_loss}

    def check_ranks_agree(self, stage: str, model: nn.Module) -> None:
        """Compare a checksum of the weights across ranks; DDP must keep them identical."""
        flat = torch.cat([p.detach().double().flatten() for p in model.state_dict().values()
                          if p.is_floating_point()])
        weights = torch.arange(1, flat.numel() + 1, dtype=torch.float64, device=flat.device).sin()
        checksum = torch.stack([flat.sum(), (flat * weights).sum()])  # (2,)
        gathered = [torch.zeros_like(checksum) for _ in range(self.info.world_size)]
        torch.distributed.all_gather(gathered, checksum)
        if any(not torch.equal(g, gathered[0]) for g in gathered):
            raise TrainingError(f"[{stage}] ranks hold different weights after training (DDP desynchronised)")
        print_main(self.info, f"[{stage}] weights identical on all {self.info.world_size} ranks "
                              f"(checksum {float(gathered[0][1]):.6f})")

    def to_device(self, batch: dict) -> dict:
        out = dict(batch)
        for key in ("motion", "lengths", "padding_mask"):
            out[key] = batch[key].to(self.device)
        out["text_emb"] = self.text_table.lookup(batch["captions"]).to(self.device)
        return out

    @torch.no_grad()
    def validate(self, job: StageJob, module: nn.Module) -> float:
        """Mean loss over cfg.val_batches fixed batches of the validation split."""
        state = torch.get_rng_state()
        torch.manual_seed(self.cfg.seed + 12345)
        module.eval()
        loader = torch.utils.data.DataLoader(self.val_set, batch_size=self.cfg.batch_size, shuffle=False,
                                             collate_fn=collate_motions, generator=torch.Generator())
        losses = []
        for index, batch in enumerate(loader):
            if index >= self.cfg.val_batches:
                break
            with autocast_context(self.cfg, self.device):
                losses.append(float(job.loss_fn(module, self.to_device(batch))["loss"]))
        module.train()
        torch.set_rng_state(state)
        return sum(losses) / max(1, len(losses))


class TextTable:
    """Cached caption embeddings of the train and val splits, looked up by caption text."""

    def __init__(self, cfg: CompositeConfig, captions: list[str], cache_dir: str, info: DistInfo):
        encoder = load_text_encoder(cfg) if info.is_main else None
        if info.enabled:
            # rank 0 builds the cache file first, the others then read it without recomputing
            if info.is_main:
                build_caption_embeddings(encoder, captions, cache_dir)
            torch.distributed.barrier()
            if not info.is_main:
                encoder = load_text_encoder(cfg)
        self.row_of, self.embeddings = build_caption_embeddings(encoder, captions, cache_dir)
        self.encoder_name, self.dim = encoder.name, encoder.dim

    def lookup(self, captions: list[str]) -> torch.Tensor:
        """(B, D) embeddings of a batch of captions."""
        rows = torch.tensor([self.row_of[c] for c in captions], dtype=torch.long)
        return self.embeddings[rows]


# ---------------------------------------------------------------------------------------
# The three stages
# ---------------------------------------------------------------------------------------
def vqvae_job(cfg: CompositeConfig) -> StageJob:
    from models.vqvae import KeyframeVQVAE
    vqvae = KeyframeVQVAE(cfg)

    def loss_fn(module: nn.Module, batch: dict) -> dict:
        keyframes, _, keyframe_mask = batch_keyframes(batch["motion"], batch["lengths"], cfg.keyframe_interval)
        return module(keyframes, keyframe_mask)

    def summary() -> str:
        usage = vqvae.codebook_usage()
        return f", codebook perplexity {usage['perplexity']:.1f} ({100 * usage['used_fraction']:.0f}% of codes used)"

    return StageJob("vqvae", vqvae, vqvae, loss_fn, cfg.vqvae_steps, summary_fn=summary)


class GPTTrainingStep(nn.Module):
    """Wraps MotionGPT with the frozen VQ-VAE so that one forward maps a batch to the loss
    (the shape DistributedDataParallel needs)."""

    def __init__(self, cfg: CompositeConfig, gpt: nn.Module, vqvae: nn.Module):
        super().__init__()
        self.cfg, self.gpt = cfg, gpt
        self.vqvae = [vqvae]  # a list keeps the frozen tokenizer out of parameters() and state_dict()

    def forward(self, motion, lengths, text_emb) -> dict:
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
        _, loss = self.gpt(text_emb, tokens, num_tokens, targets=targets)
        return {"loss": loss}


def gpt_job(cfg: CompositeConfig, device: torch.device, text_dim: int) -> StageJob:
    from models.gpt import MotionGPT
    from models.vqvae import KeyframeVQVAE
    vq_path = checkpoint_path(cfg, "vqvae")
    saved = load_checkpoint(vq_path, stage="vqvae")
    if not saved.get("finished"):
        raise CheckpointError(f"{vq_path} is not finished (step {saved['step']}); finish stage 1a first "
                              "with `python train.py --stage vqvae --resume`")
    vq_cfg = CompositeConfig.from_dict(saved["config"])
    vqvae = KeyframeVQVAE(vq_cfg)
    vqvae.load_state_dict(saved["model"])
    vqvae.to(device).eval().requires_grad_(False)
    gpt = MotionGPT(cfg.replace(vq_codebook_size=vq_cfg.vq_codebook_size), text_dim)
    step_module = GPTTrainingStep(cfg, gpt, vqvae)
    return StageJob("gpt", step_module, gpt,
                    lambda module, batch: module(batch["motion"], batch["lengths"], batch["text_emb"]),
                    cfg.gpt_steps, extra={"vqvae_run_id": vqvae_identity(saved)})


class DiffusionTrainingStep(nn.Module):
    """One forward = the in-betweener's training loss with a sampled keyframe mask."""

    def __init__(self, cfg: CompositeConfig, diffusion: nn.Module):
        super().__init__()
        self.cfg, self.diffusion = cfg, diffusion

    def forward(self, motion, lengths, padding_mask, text_emb) -> dict:
        from models.diffusion import sample_training_keyframe_mask
        keyframe_mask = sample_training_keyframe_mask(lengths, motion.shape[1], self.cfg.keyframe_interval,
                                                      motion.shape[2]).to(motion)
        return self.diffusion.training_loss(motion, text_emb, keyframe_mask, padding_mask)


def diffusion_job(cfg: CompositeConfig, text_dim: int) -> StageJob:
    from models.diffusion import GaussianDiffusion, InbetweenDenoiser
    denoiser = InbetweenDenoiser(cfg, text_dim)
    diffusion = GaussianDiffusion(cfg, denoiser)
    step_module = DiffusionTrainingStep(cfg, diffusion)
    return StageJob("diffusion", step_module, denoiser,
                    lambda module, batch: module(batch["motion"], batch["lengths"], batch["padding_mask"],
                                                 batch["text_emb"]),
                    cfg.diffusion_steps)


# ---------------------------------------------------------------------------------------
def train(cfg: CompositeConfig, stage: str = "all", resume: bool = False) -> list[dict]:
    """Run the chosen stage(s); returns one summary dict per stage."""
    device = select_device(cfg)
    info = init_distributed(device.type)
    if device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // info.world_size))
    seed_everything(cfg.seed)
    if info.is_main:
        train_set = MotionDataset(cfg, "train")
    if info.enabled:
        torch.distributed.barrier()  # rank 0 builds the embedded data set once
    if not info.is_main:
        train_set = MotionDataset(cfg, "train")
    val_set = MotionDataset(cfg, "val")
    print_main(info, f"data: {len(train_set)} train / {len(val_set)} val motions from {train_set.root}; "
                     f"device {device}{f', {info.world_size} processes' if info.enabled else ''}")
    text_table = TextTable(cfg, train_set.all_captions() + val_set.all_captions(), train_set.root, info)
    trainer = Trainer(cfg, info, device, train_set, val_set, text_table)
    summaries = []
    for name in (STAGES if stage == "all" else (stage,)):
        seed_everything(cfg.seed + STAGES.index(name))
        if name == "vqvae":
            job = vqvae_job(cfg)
        elif name == "gpt":
            job = gpt_job(cfg, device, text_table.dim)
        else:
            job = diffusion_job(cfg, text_table.dim)
        summaries.append(trainer.run(job, resume))
    if info.enabled:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return summaries


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__.split("\n\n")[0], prog="train.py")
    parser.add_argument("--stage", choices=["vqvae", "gpt", "diffusion", "all"], default="all",
                        help="which stage to train")
    parser.add_argument("--resume", action="store_true", help="continue each stage from its checkpoint")
    args = parser.parse_args(argv)
    cfg = config_from_args(args, parser)
    try:
        train(cfg, args.stage, args.resume)
    except Interrupted as stop:
        print(f"train.py: interrupted by {stop}; checkpoint saved in {cfg.checkpoint_dir}/ "
              "(continue with `python train.py --resume`)", file=sys.stderr)
        return 128 + stop.signum
    except (DataError, CheckpointError, ConfigError, TrainingError) as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
