"""Training speed: samples per second of each stage (forward, backward, optimiser step) at the
config's sizes on the config's data set (the embedded one by default), on CPU (all cores) or
CUDA (also bf16). Batches come from the training loop's own stream with each stage's length
buckets (`--length_buckets` for the VQ-VAE and GPT, `--diff_length_buckets` for the diffusion); the time per step is the mean over distinct batches.

    python bench/bench_train.py [--steps 20] [--field value ...]

Prints one line per stage and writes results/bench_train.json (cfg.results_dir).
"""
from __future__ import annotations

import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config import STAGE_STEPS, config_from_args, make_parser  # noqa: E402
from bench.json_report import write_json_report  # noqa: E402
from dataset import MotionDataset  # noqa: E402
from runtime import DistInfo, autocast_context, select_device  # noqa: E402
from train import DiffusionTrainingStep, GPTTrainingStep  # noqa: E402
from training.data import BatchStream  # noqa: E402


def stage_modules(cfg, text_dim: int, device, mean, std):
    """(name, module whose forward gives the loss dict, forward-argument picker) per stage; mean
    and std (263,) are the training data's feature statistics (the diffusion's joint-space terms)."""
    from models.diffusion import GaussianDiffusion, InbetweenDenoiser
    from models.gpt import MotionGPT
    from models.vqvae import KeyframeVQVAE
    from dataset import batch_keyframes
    vqvae = KeyframeVQVAE(cfg).to(device)

    def vq_args(batch):
        keyframes, _, mask = batch_keyframes(batch["motion"], batch["lengths"], cfg.keyframe_interval)
        return keyframes, mask

    frozen_vq = KeyframeVQVAE(cfg).to(device).eval().requires_grad_(False)
    gpt_step = GPTTrainingStep(cfg, MotionGPT(cfg, text_dim), frozen_vq).to(device)
    diffusion = GaussianDiffusion(cfg, InbetweenDenoiser(cfg, text_dim)).set_feature_statistics(mean, std)
    diff_step = DiffusionTrainingStep(cfg, diffusion).to(device)
    return [("vqvae", vqvae, vq_args),
            ("gpt", gpt_step, lambda b: (b["motion"], b["lengths"], b["text_emb"])),
            ("diffusion", diff_step, lambda b: (b["motion"], b["lengths"], b["padding_mask"], b["text_emb"]))]


def training_batches(train_set, cfg, length_buckets: int, count: int, text_dim: int, device) -> list[dict]:
    """The first `count` batches the training loop's stream gives with `length_buckets`, on
    `device`, with random unit text embeddings (B, text_dim)."""
    stream = BatchStream(train_set, cfg.batch_size, DistInfo(), seed=0, length_buckets=length_buckets)
    batches = []
    for _ in range(count):
        batch = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in stream.next().items()}
        batch["text_emb"] = torch.nn.functional.normalize(torch.randn(len(batch["captions"]), text_dim), dim=-1).to(device)
        batches.append(batch)
    return batches


def make_cli_parser():
    """bench_train.py's options, then every config field."""
    parser = make_parser(__doc__.split("\n\n")[0], prog="bench_train.py")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per stage (after 3 warm-up steps)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--text_dim", type=int, default=384, help="text embedding width (384 MiniLM, 512 CLIP)")
    parser.add_argument("--cpu_bf16", action="store_true",
                        help="on CPU, run the forward under bf16 autocast (a lever to measure; training does not)")
    return parser


def main(argv: list[str] | None = None) -> dict:
    parser = make_cli_parser()
    args = parser.parse_args(argv)
    cfg = config_from_args(args, parser)
    torch.set_num_threads(args.threads)
    device = select_device(cfg)
    train_set = MotionDataset(cfg, "train")
    stage_buckets = {name: cfg.length_buckets_of(name) for name in STAGE_STEPS}
    batches_of = {buckets: training_batches(train_set, cfg, buckets, max(4, args.steps), args.text_dim, device)
                  for buckets in set(stage_buckets.values())}
    report = {"device": str(device), "threads": torch.get_num_threads(), "batch_size": cfg.batch_size,
              "dataset_root": cfg.dataset_root, "length_buckets": stage_buckets, "real_frame_fraction": {},
              "stages": {}}
    for name, buckets in stage_buckets.items():
        batches = batches_of[buckets]
        real = sum(int(b["lengths"].sum()) for b in batches)
        padded = sum(b["motion"].shape[0] * b["motion"].shape[1] for b in batches)
        report["real_frame_fraction"][name] = real / padded
        print(f"{name:9s}: {len(batches)} batches of {cfg.dataset_root} (length buckets {buckets}): "
              f"{real / padded:.0%} of the padded frames are real")
    cpu_bf16 = args.cpu_bf16 and device.type == "cpu"

    def precision():
        return torch.autocast("cpu", dtype=torch.bfloat16) if cpu_bf16 else autocast_context(cfg, device)
    report["cpu_bf16"] = cpu_bf16
    for name, module, pick in stage_modules(cfg, args.text_dim, device, train_set.mean, train_set.std):
        batches = batches_of[stage_buckets[name]]
        optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=cfg.lr)
        module.train()
        times = []
        for step in range(args.steps + 3):
            batch = batches[(step - 3) % len(batches)]
            start = time.perf_counter()
            with precision():
                loss = module(*pick(batch))["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if step >= 3:
                times.append(time.perf_counter() - start)
        seconds = statistics.mean(times)
        report["stages"][name] = {"step_s": seconds, "samples_per_s": cfg.batch_size / seconds,
                                  "parameters": sum(p.numel() for p in module.parameters() if p.requires_grad)}
        steps_cfg = getattr(cfg, STAGE_STEPS[name])
        print(f"{name:9s}: {cfg.batch_size / seconds:8.1f} samples/s ({seconds * 1000:.0f} ms/step, "
              f"{report['stages'][name]['parameters'] / 1e6:.2f} M params) -> {steps_cfg} steps ~ "
              f"{steps_cfg * seconds / 60:.1f} min")
    path = write_json_report(report, os.path.join(cfg.results_dir, "bench_train.json"))
    print(f"device {device} ({torch.get_num_threads()} threads); wrote {path}")
    return report


if __name__ == "__main__":
    main()
