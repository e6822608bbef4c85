"""The training loop: any model, any loss, any data set, alone or under torchrun.

    trainer = Trainer(cfg, info, device, DataSpec(train_set, val_set, prepare=add_text))
    summary = trainer.run(StageJob("vqvae", model, loss_fn, total_steps=1000, seed=0,
                                   checkpoint=CheckpointPlan(path, model, payload)), resume=True)

One step reads top to bottom: take this rank's slice of the global batch, compute the loss,
agree with the other ranks (one all-reduce of a few numbers: each rank's loss and weight,
whether it saw a non-finite loss, failed, or was signalled), then either all ranks step, all
skip, all stop or all raise. Under DistributedDataParallel the gradient is that of the global
batch's loss: a loss_fn that reports `weight` (how many elements its loss averages) has its
loss rescaled by weight * world_size / (sum of weights), so W processes of batch B/W train
exactly like one process of batch B. Loss terms that are means over counts of their own (a
number of planted feet, of frame differences) are reported as `ratio_terms` and divided by
their count summed over the ranks (shared in the same all-reduce).
"""
from __future__ import annotations

import inspect
import math
import signal
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset
from tqdm import tqdm

from config import CompositeConfig
from dataset import collate_motions
from runtime import (DistInfo, autocast_context, load_checkpoint_on_main, print_main, rank_seed,
                     save_checkpoint, seed_everything)
from training.data import BatchStream, row_generators, validation_batches

LossFn = Callable[[nn.Module, dict], dict]
DDP_PARAMETERS = inspect.signature(DistributedDataParallel.__init__).parameters


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss stayed NaN); the message says why."""


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived; the loop saved a checkpoint and stops."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def cosine_lr(base_lr: float, step: int, total_steps: int, warmup_steps: int = 0) -> float:
    """Learning rate at `step`: linear warm-up over `warmup_steps`, then cosine decay from
    base_lr to 0.1 * base_lr at total_steps."""
    warm = min(1.0, (step + 1) / max(1, warmup_steps))
    progress = step / max(1, total_steps)
    return base_lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass
class CheckpointPlan:
    """Where a job's checkpoints go and what they hold besides what the Trainer adds (config,
    weights of `model`, optimiser, step, data position, every rank's RNG state, losses)."""
    path: str
    model: nn.Module  # whose state_dict is the checkpoint's "model"
    payload: dict = field(default_factory=dict)  # saved as is (config, statistics, ...)
    check: Callable[[dict], None] = lambda saved: None  # raises CheckpointError if `saved` cannot be resumed


@dataclass
class StageJob:
    """What to train. `loss_fn(module, batch)` returns {"loss": scalar tensor, optionally
    "weight": how many elements the loss averages (default 1), "ratio_terms": job.ratio_terms
    (weight w, sum s, count c) of terms included in loss as w * s / max(c, 1) whose counts are
    not `weight`, other scalars}; `module` is the
    job's module, wrapped in DistributedDataParallel when distributed; its parameters are the
    ones optimised. `batch` holds the collated tensors on the device, `sample_keys` and
    `generators` (one torch.Generator per row, keyed by sample) for the loss's own randomness."""
    name: str
    module: nn.Module
    loss_fn: LossFn
    total_steps: int
    seed: int = 0  # data order and keyed randomness; each rank's own RNG is rank_seed(seed, rank)
    lr: float | None = None  # peak learning rate; None: cfg.lr
    checkpoint: CheckpointPlan | None = None  # None: no checkpoints, no resume
    summary_fn: Callable[[], str] = lambda: ""  # appended to the closing log line
    ratio_terms: int = 0  # how many (weight, sum, count) terms loss_fn reports in "ratio_terms"
    length_buckets: int = 0  # >0: each run of this many global batches is regrouped by motion length


@dataclass
class DataSpec:
    """The data of a Trainer: items of `train` (and `val`) are collated by `collate`; `prepare`
    (optional) completes a batch once its tensors are on the device (e.g. adds text embeddings)."""
    train: Dataset
    val: Dataset | None = None
    collate: Callable[[list], dict] = collate_motions
    prepare: Callable[[dict], dict] | None = None


@dataclass
class RunState:
    """Everything one `Trainer.run` changes as it goes."""
    job: StageJob
    optimizer: torch.optim.Optimizer
    stream: BatchStream
    run_id: str
    step: int = 0
    start_step: int = 0
    bad_steps: int = 0
    train_loss: float = float("nan")
    val_loss: float = float("nan")
    stop_signal: int | None = None  # agreed by all ranks; acted on before the next batch
    resumed: bool = False
    started: float = field(default_factory=time.time)


@dataclass
class StepVerdict:
    """What all ranks agreed on after computing this step's losses."""
    loss: float  # weighted mean over ranks (nan when some rank's loss was not finite)
    scale: float  # this rank's loss multiplier that makes DDP's mean gradient the global one
    nonfinite: bool
    failed: bool
    stop_signal: int | None
    term_counts: list[float] = field(default_factory=list)  # each ratio term's count over all ranks


class Trainer:
    """Shared loop: progress bar, validation, agreed NaN guard and stop, periodic atomic
    checkpoints, resume, DistributedDataParallel."""

    def __init__(self, cfg: CompositeConfig, info: DistInfo, device: torch.device, data: DataSpec):
        self.cfg, self.info, self.device, self.data = cfg, info, device, data
        self.stop_signal: int | None = None  # seen by this rank's signal handler

    # ---- the run, top to bottom -----------------------------------------------------------
    def run(self, job: StageJob, resume: bool = False) -> dict:
        """Train `job` up to job.total_steps, continuing its checkpoint when `resume`.
        Returns {"stage", "steps", "seconds", "train_loss", "val_loss"}."""
        state = self.restore(job, resume)
        if state.resumed and state.step >= job.total_steps:
            print_main(self.info, f"[{job.name}] already trained ({state.step}/{job.total_steps} steps) in "
                                  f"{job.checkpoint.path}; pass a larger --{job.name}_steps to continue it")
            return self.summary(state, seconds=0.0)
        module = self.wrap(job.module)
        with self.signals_caught(), self.progress_bar(state) as bar:
            while state.step < job.total_steps:
                self.stop_if_signalled(state)
                self.train_step(state, module)
                self.after_step(state, bar)
            if state.step == state.start_step and job.total_steps > 0:
                state.val_loss = self.validate(job)
            self.save(state, final=True)
        return self.finish(state)

    def restore(self, job: StageJob, resume: bool) -> RunState:
        """Optimiser, data stream and RNG for `job`: fresh, or from its checkpoint as rank 0
        reads it (sent to all ranks)."""
        job.module.to(self.device)
        optimizer = torch.optim.AdamW(job.module.parameters(), lr=self.peak_lr(job),
                                      weight_decay=self.cfg.weight_decay, betas=(0.9, 0.99), fused=True)
        stream = BatchStream(self.data.train, self.cfg.batch_size, self.info, job.seed, self.cfg.num_workers,
                             self.data.collate, job.length_buckets)
        state = RunState(job, optimizer, stream, run_id=uuid.uuid4().hex[:12])
        seed_everything(rank_seed(job.seed, self.info.rank))
        saved = None
        if resume and job.checkpoint is not None:
            saved = load_checkpoint_on_main(self.info, job.checkpoint.path, stage=job.name, missing_ok=True)
            if saved is None:
                print_main(self.info, f"[{job.name}] no checkpoint at {job.checkpoint.path}; starting from scratch")
        if saved is not None:
            self.continue_from(state, saved)
        return state

    def continue_from(self, state: RunState, saved: dict) -> None:
        plan = state.job.checkpoint
        plan.check(saved)
        plan.model.load_state_dict(saved["model"])
        state.optimizer.load_state_dict(saved["optimizer"])
        state.step = state.start_step = int(saved["step"])
        state.run_id = saved.get("run_id", state.run_id)
        state.stream.load_state(saved["data_state"])
        state.train_loss = saved.get("train_loss", state.train_loss)
        state.val_loss = saved.get("val_loss", state.val_loss)
        state.resumed = True
        self.restore_rng(saved, state.job.seed + state.step)
        if state.step < state.job.total_steps:
            print_main(self.info, f"[{state.job.name}] resuming from {plan.path} at step "
                                  f"{state.step}/{state.job.total_steps}")

    def wrap(self, module: nn.Module) -> nn.Module:
        """DistributedDataParallel when distributed. Buffers are not broadcast before each forward
        (broadcast_buffers=False, called forward_sync_buffers=False since torch 2.13): those that
        change in training (the VQ-VAE codebook) are synchronised by the module itself."""
        if not self.info.enabled:
            return module
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        no_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in DDP_PARAMETERS
                   else {"broadcast_buffers": False})
        return DistributedDataParallel(module, device_ids=device_ids, **no_sync)

    def stop_if_signalled(self, state: RunState) -> None:
        if state.stop_signal is not None:
            self.save(state, final=False)
            raise Interrupted(state.stop_signal)

    def train_step(self, state: RunState, module: nn.Module) -> None:
        """One batch: loss, agreement across ranks, then one optimiser step or an agreed skip."""
        job = state.job
        batch = self.next_batch(state)
        for group in state.optimizer.param_groups:
            group["lr"] = cosine_lr(self.peak_lr(job), state.step, job.total_steps, self.cfg.warmup_steps)
        job.module.train()
        logs, failure = self.compute_loss(job, module, batch)
        verdict = self.agree(logs, failure, job.ratio_terms)
        state.stop_signal = verdict.stop_signal
        if verdict.failed:
            if failure is not None:
                raise failure
            raise TrainingError(f"[{job.name}] another rank failed at step {state.step}; its error is in its log")
        if verdict.nonfinite:
            self.skip_step(state)
            return
        state.bad_steps = 0
        state.optimizer.zero_grad(set_to_none=True)
        self.global_loss(logs, verdict).backward()
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(job.module.parameters(), self.cfg.grad_clip)
        state.optimizer.step()
        state.step += 1
        state.train_loss = verdict.loss

    def skip_step(self, state: RunState) -> None:
        """Some rank's loss was NaN/inf: every rank skips the step; too many in a row stop all."""
        state.bad_steps += 1
        state.optimizer.zero_grad(set_to_none=True)
        name = state.job.name
        print_main(self.info, f"[{name}] non-finite loss at step {state.step} ({state.bad_steps} in a row); "
                              "step skipped")
        if state.bad_steps >= self.cfg.max_bad_steps:
            where = f", last good checkpoint kept at {state.job.checkpoint.path}" if state.job.checkpoint else ""
            raise TrainingError(f"[{name}] loss was NaN/inf for {state.bad_steps} steps in a row; "
                                f"stopped{where} (lower --lr)")

    def after_step(self, state: RunState, bar: tqdm) -> None:
        """Progress, validation every cfg.eval_interval steps, a checkpoint every cfg.ckpt_interval."""
        if not bar.disable and state.step > bar.n:
            bar.update(state.step - bar.n)
            bar.set_postfix(loss=f"{state.train_loss:.4f}", refresh=False)
        step, total = state.step, state.job.total_steps
        if state.bad_steps == 0 and (step % self.cfg.eval_interval == 0 or step == total):
            state.val_loss = self.validate(state.job)
            bar.set_postfix(loss=f"{state.train_loss:.4f}", val=f"{state.val_loss:.4f}", refresh=False)
        if state.bad_steps == 0 and step % self.cfg.ckpt_interval == 0 and step < total:
            self.save(state, final=False)

    def finish(self, state: RunState) -> dict:
        seconds = time.time() - state.started
        if self.info.enabled:
            self.check_ranks_agree(state.job)
        job = state.job
        where = f" -> {job.checkpoint.path}" if job.checkpoint else ""
        print_main(self.info, f"[{job.name}] {state.step} steps ({state.step - state.start_step} this run) in "
                              f"{seconds:.0f}s: train loss {state.train_loss:.4f}, val loss {state.val_loss:.4f}"
                              f"{job.summary_fn()}{where}")
        return self.summary(state, seconds)

    @staticmethod
    def summary(state: RunState, seconds: float) -> dict:
        return {"stage": state.job.name, "steps": state.step, "seconds": seconds,
                "train_loss": state.train_loss, "val_loss": state.val_loss}

    # ---- the parts of a step ----------------------------------------------------------------
    def peak_lr(self, job: StageJob) -> float:
        return self.cfg.lr if job.lr is None else job.lr

    def next_batch(self, state: RunState) -> dict:
        return self.prepare(state.stream.next(), state.job.seed)

    def prepare(self, batch: dict, seed: int) -> dict:
        """Tensors to the device, the per-row generators, then DataSpec.prepare."""
        out = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        out["generators"] = row_generators(seed, batch["sample_keys"], self.device)
        return self.data.prepare(out) if self.data.prepare is not None else out

    def compute_loss(self, job: StageJob, module: nn.Module, batch: dict) -> tuple[dict | None, Exception | None]:
        """job.loss_fn under autocast; when distributed, an exception is returned (to be agreed
        on by all ranks before anyone raises) instead of raised."""
        try:
            with autocast_context(self.cfg, self.device):
                return job.loss_fn(module, batch), None
        except Exception as exc:  # noqa: BLE001 - re-raised once every rank knows
            if not self.info.enabled:
                raise
            return None, exc

    def agree(self, logs: dict | None, failure: Exception | None, num_ratio_terms: int = 0) -> StepVerdict:
        """One all-reduce of [weight, weight * the loss without its ratio terms, non-finite,
        failed, SIGINT, SIGTERM, the ratio terms' sums, their counts]."""
        loss = float(logs["loss"].detach()) if logs is not None else float("nan")
        weight = float(logs.get("weight", 1.0)) if logs is not None else 0.0
        terms = logs.get("ratio_terms", []) if logs is not None else []
        if logs is not None and len(terms) != num_ratio_terms:
            raise TrainingError(f"loss_fn reported {len(terms)} ratio terms, the job declares {num_ratio_terms}")
        sums = [float(s.detach()) for _, s, _ in terms] or [0.0] * num_ratio_terms
        counts = [float(c) for _, _, c in terms] or [0.0] * num_ratio_terms
        main = loss - sum(w * s / max(c, 1.0) for (w, _, _), s, c in zip(terms, sums, counts))
        finite = math.isfinite(loss)
        flags = torch.tensor([weight, weight * main if finite else 0.0, not finite, failure is not None,
                              self.stop_signal == signal.SIGINT, self.stop_signal == signal.SIGTERM, *sums, *counts],
                             dtype=torch.float64, device=self.device)
        if self.info.enabled:
            dist.all_reduce(flags)
        total_weight, weighted_main, nonfinite, failed, sigint, sigterm, *shared = flags.tolist()
        term_sums, term_counts = shared[:num_ratio_terms], shared[num_ratio_terms:]
        stop = signal.SIGINT if sigint else signal.SIGTERM if sigterm else None
        scale = weight * self.info.world_size / total_weight if total_weight > 0 else 1.0
        mean = float("nan")
        if total_weight > 0 and not nonfinite:
            mean = weighted_main / total_weight + sum(w * s / max(c, 1.0) for (w, _, _), s, c
                                                      in zip(terms, term_sums, term_counts))
        return StepVerdict(mean, scale, bool(nonfinite), bool(failed), stop, term_counts)

    def global_loss(self, logs: dict, verdict: StepVerdict) -> torch.Tensor:
        """This rank's share of the global batch's loss: DDP's mean of its gradients over the
        ranks is the gradient of the loss one process would compute on the whole batch. Alone,
        the loss itself."""
        if not self.info.enabled:
            return logs["loss"]
        terms = logs.get("ratio_terms", [])
        local = sum((w * s / max(float(c), 1.0) for w, s, c in terms), torch.zeros((), device=logs["loss"].device))
        shared = sum((w * s * self.info.world_size / max(total, 1.0) for (w, s, _), total in zip(terms, verdict.term_counts)),
                     torch.zeros((), device=logs["loss"].device))
        return (logs["loss"] - local) * verdict.scale + shared

    @torch.no_grad()
    def validate(self, job: StageJob) -> float:
        """Weighted mean loss over cfg.val_batches fixed batches of the validation split, shared
        out over the ranks; the same value on every rank and for any number of ranks."""
        if self.data.val is None or self.cfg.val_batches <= 0:
            return float("nan")
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)  # sum of weight * loss, of weight
        job.module.eval()
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            for batch in validation_batches(self.data.val, self.cfg.batch_size, self.cfg.val_batches, self.info,
                                            self.data.collate):
                with autocast_context(self.cfg, self.device):
                    logs = job.loss_fn(job.module, self.prepare(batch, job.seed))
                weight = float(logs.get("weight", 1.0))
                totals += torch.tensor([weight * float(logs["loss"]), weight], dtype=torch.float64,
                                       device=self.device)
        job.module.train()
        if self.info.enabled:
            dist.all_reduce(totals)
        return float(totals[0] / totals[1]) if totals[1] > 0 else float("nan")

    # ---- checkpoints, RNG, ranks --------------------------------------------------------------
    def save(self, state: RunState, final: bool) -> None:
        """Every rank sends its RNG state; rank 0 writes the checkpoint atomically."""
        plan = state.job.checkpoint
        if plan is None:
            return
        rng = self.gather_rng_states()
        if not self.info.is_main:
            return
        payload = {"config": self.cfg.to_dict(), **plan.payload}
        payload.update({"stage": state.job.name, "model": plan.model.state_dict(),
                        "optimizer": state.optimizer.state_dict(), "step": state.step, "run_id": state.run_id,
                        "finished": final and state.step >= state.job.total_steps,
                        "data_state": state.stream.state(), "train_loss": state.train_loss,
                        "val_loss": state.val_loss, **rng})
        save_checkpoint(plan.path, payload)

    def gather_rng_states(self) -> dict:
        """{"rng_cpu": (world_size, n) uint8, and "rng_cuda" on GPUs}: row r is rank r's state."""
        mine = {"rng_cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            mine["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        every = [mine]
        if self.info.enabled:
            every = [None] * self.info.world_size
            dist.all_gather_object(every, mine)
        return {key: torch.stack([states[key] for states in every]) for key in mine}

    def restore_rng(self, saved: dict, fallback_seed: int) -> None:
        """This rank's saved RNG state; reseeded when the checkpoint came from another world size."""
        states = saved.get("rng_cpu")
        if states is not None and states.dim() == 1:  # written by one process before per-rank states
            states = states[None]
        if states is None or states.shape[0] != self.info.world_size:
            print_main(self.info, "note: the checkpoint was written by another number of processes; "
                                  "each rank's own random stream starts afresh")
            seed_everything(rank_seed(fallback_seed, self.info.rank))
            return
        torch.set_rng_state(states[self.info.rank].clone())  # a row of its own (set_rng_state reads the storage)
        cuda_states = saved.get("rng_cuda")
        if self.device.type == "cuda" and cuda_states is not None:
            torch.cuda.set_rng_state(cuda_states.reshape(self.info.world_size, -1)[self.info.rank].clone(), self.device)

    def check_ranks_agree(self, job: StageJob) -> None:
        """Compare a checksum of the weights and buffers across ranks; they must be identical."""
        flat = torch.cat([p.detach().double().flatten() for p in job.module.state_dict().values()
                          if p.is_floating_point()])
        weights = torch.arange(1, flat.numel() + 1, dtype=torch.float64, device=flat.device).sin()
        checksum = torch.stack([flat.sum(), (flat * weights).sum()])  # (2,)
        gathered = [torch.zeros_like(checksum) for _ in range(self.info.world_size)]
        dist.all_gather(gathered, checksum)
        if any(not torch.equal(g, gathered[0]) for g in gathered):
            raise TrainingError(f"[{job.name}] ranks hold different weights after training (DDP desynchronised)")
        print_main(self.info, f"[{job.name}] weights identical on all {self.info.world_size} ranks "
                              f"(checksum {float(gathered[0][1]):.6f})")

    # ---- context ------------------------------------------------------------------------------
    @contextmanager
    def signals_caught(self):
        """SIGINT/SIGTERM set self.stop_signal (agreed at the next step) instead of killing."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        old = {sig: signal.signal(sig, self.on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)

    def on_signal(self, signum, frame) -> None:
        self.stop_signal = signum

    @contextmanager
    def progress_bar(self, state: RunState):
        bar = tqdm(total=state.job.total_steps, initial=state.step, desc=f"{state.job.name:9s}",
                   disable=not self.info.is_main, dynamic_ncols=True, mininterval=1.0)
        try:
            yield bar
        finally:
            bar.close()
