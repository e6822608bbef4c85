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

import os
import signal
import sys

import torch

from config import CompositeConfig, ConfigError, config_from_args, make_parser
from dataset import DataError
from runtime import (CheckpointError, DistInfo, checkpoint_path, init_distributed, print_main, seed_everything,
                     select_device, shutdown_distributed)
from training.data import BatchStream
from training.loop import CheckpointPlan, DataSpec, Interrupted, StageJob, Trainer, TrainingError, cosine_lr
from training.stages import (STAGE_PREFIXES, STAGES, DiffusionTrainingStep, GPTTrainingStep, Stage, TextTable,
                             stage_data, stage_job)

__all__ = ["train", "main", "TrainingError", "Interrupted", "Trainer", "StageJob", "CheckpointPlan", "DataSpec",
           "BatchStream", "TextTable", "DistInfo", "GPTTrainingStep", "DiffusionTrainingStep", "STAGES",
           "STAGE_PREFIXES", "Stage", "cosine_lr"]


def train(cfg: CompositeConfig, stage: str = "all", resume: bool = False) -> list[dict]:
    """Run the chosen stage(s); returns one summary dict per stage."""
    device = select_device(cfg)
    info = init_distributed(device.type)
    try:
        if device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
            per_machine = int(os.environ.get("LOCAL_WORLD_SIZE", info.world_size))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // per_machine))
        seed_everything(cfg.seed)
        data, table = stage_data(cfg, info, device)
        print_main(info, f"data: {len(data.train)} train / {len(data.val)} val motions from {data.train.root}; "
                         f"device {device}{f', {info.world_size} processes' if info.enabled else ''}")
        trainer = Trainer(cfg, info, device, data)
        names = STAGES if stage == "all" else (stage,)
        return [trainer.run(stage_job(name, cfg, data, table, info, device), resume) for name in names]
    except Interrupted:
        if info.enabled:  # every rank is leaving with 128 + signum; torchrun SIGTERMs the others as soon
            # as the first has exited, which must not turn a rank's documented code into -15
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_IGN)
        raise
    finally:
        shutdown_distributed(info)


def make_cli_parser():
    """train.py's options, then every config field."""
    parser = make_parser(__doc__.split("\n\n")[0], prog="train.py")
    parser.add_argument("--stage", choices=["vqvae", "gpt", "diffusion", "all"], default="all",
                        help="which stage to train")
    parser.add_argument("--resume", action="store_true", help="continue each stage from its checkpoint")
    return parser


def overwrite_warning(cfg: CompositeConfig, stage: str, resume: bool) -> str | None:
    """One line when a fresh run would overwrite the stages' existing checkpoints, else None."""
    names = STAGES if stage == "all" else (stage,)
    existing = [path for path in (checkpoint_path(cfg, name) for name in names) if os.path.isfile(path)]
    if resume or not existing:
        return None
    return (f"train.py: warning: {', '.join(existing)} exist{'s' if len(existing) == 1 else ''}; this run starts "
            f"afresh and overwrites {'it' if len(existing) == 1 else 'them'} at its first checkpoint "
            f"(step {cfg.ckpt_interval}, --ckpt_interval, or a stage's end if sooner); to continue "
            f"{'it' if len(existing) == 1 else 'them'} instead, run python train.py --resume "
            "(or pass another --checkpoint_dir)")


def main(argv: list[str] | None = None) -> int:
    parser = make_cli_parser()
    args = parser.parse_args(argv)
    cfg = config_from_args(args, parser)
    warning = overwrite_warning(cfg, args.stage, args.resume)
    if warning and os.environ.get("RANK", "0") == "0":  # torchrun: rank 0 speaks for all
        print(warning, file=sys.stderr, flush=True)
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
