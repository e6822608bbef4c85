"""Generation speed at a size preset: one 120-frame motion per stage in seconds, GFLOP, MB of
weights read and parameters used; batch throughput, length scaling, peak memory, cold start,
and the diffusion forward's FLOP/s against a matmul peak measured in the same run.

    python bench/bench_generate.py --preset default      # CompositeConfig() sizes
    python bench/bench_generate.py --preset humanml3d    # CompositeConfig.humanml3d() sizes

Trained checkpoints in --checkpoint_dir are used when their sizes match the preset; otherwise
the models get random weights (speed and costs do not depend on the weights' values). Prints a
per-stage table and writes results/bench_generate.json (cfg.results_dir), one entry per preset.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from config import CONFIG_DEST, CompositeConfig, ConfigError, make_parser  # noqa: E402
from bench.json_report import write_json_report  # noqa: E402
from costs import StageCosts  # noqa: E402
from pipeline import STAGES, Composite  # noqa: E402
from runtime import CheckpointError, select_device  # noqa: E402

PROMPT = "a person walks forward and then waves with the right hand"
PRESETS = ("default", "humanml3d")
PARTS = ("text", "gpt", "vq_decode", "diffusion", "joints")
SIZE_FIELDS = {"vqvae": ("vq_codebook_size", "vq_code_dim", "vq_width", "vq_depth"),
               "gpt": ("gpt_n_layer", "gpt_n_head", "gpt_n_embd"),
               "diffusion": ("diff_n_layer", "diff_n_head", "diff_n_embd", "diff_patch_size")}


def preset_config(preset: str, overrides: dict | None = None) -> CompositeConfig:
    """The preset's config with `--field value` overrides on top."""
    if preset not in PRESETS:
        raise ConfigError(f"preset must be one of {list(PRESETS)}, got {preset!r}")
    overrides = dict(overrides or {})
    return CompositeConfig.humanml3d(**overrides) if preset == "humanml3d" else CompositeConfig.from_dict(overrides)


def sizes_match(cfg: CompositeConfig) -> bool:
    """True when cfg.checkpoint_dir holds a trained set whose every stage has cfg's sizes."""
    from pipeline import load_stage_checkpoints
    try:
        saved = load_stage_checkpoints(cfg)
    except CheckpointError:
        return False
    for stage in STAGES:
        stage_cfg = saved[stage]["config"]
        if any(stage_cfg.get(name) != getattr(cfg, name) for name in SIZE_FIELDS[stage]):
            return False
    return True


def build_composite(cfg: CompositeConfig, device: torch.device, encoder=None,
                    random_init: bool = False) -> tuple[Composite, str]:
    """(Composite, where its weights came from): trained checkpoints of cfg's sizes, else random."""
    if not random_init and sizes_match(cfg):
        return Composite.from_checkpoints(cfg, device), f"trained checkpoints in {cfg.checkpoint_dir}"
    if encoder is None:
        from text_encoder import load_text_encoder
        encoder = load_text_encoder(cfg)
    torch.manual_seed(0)
    composite = Composite.build(cfg, encoder, np.zeros(263, np.float32), np.ones(263, np.float32), device)
    return composite, "random weights at the preset's sizes"


def stage_costs(composite: Composite, prompts, length: int = 120) -> dict:
    """{stage: {gflop, mb_weights_read, params_m}} of one sample call (see bench/costs.py)."""
    composite.sample(PROMPT, length)  # builds any packed low-precision weight copies first
    costs = StageCosts([composite.gpt, composite.vqvae, composite.denoiser])
    with costs.stage(composite.gpt, "sample", "gpt"), costs.stage(composite.vqvae, "decode", "vq_decode"), \
            costs.stage(composite.diffusion, "sample", "diffusion"):
        composite.sample(prompts, length)
    return costs.report()


def matmul_peak_gflops(device: torch.device, dtype=torch.float32, size: int = 1024, repeats: int = 20) -> float:
    """Best achieved GFLOP/s of a square matmul: the machine's practical peak."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


def time_calls(fn, repeats: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def diffusion_forward_flops(inbetween_model, text_dim: int, device, length: int = 120, rows: int = 2):
    """(FLOPs, seconds) of one denoiser forward on a CFG batch of `rows` x `length` frames."""
    from torch.utils.flop_counter import FlopCounterMode
    x = torch.randn(rows, length, 263, device=device)
    args = (x, torch.full((rows,), 500, device=device), torch.randn(rows, text_dim, device=device),
            torch.zeros_like(x), torch.zeros_like(x), torch.ones(rows, length, dtype=torch.bool, device=device))
    with torch.inference_mode():
        counter = FlopCounterMode(display=False)
        with counter:
            inbetween_model(*args)
        seconds = statistics.median(time_calls(lambda: inbetween_model(*args), repeats=20))
    return counter.get_total_flops(), seconds


def cold_start_seconds(cfg_args: list[str]) -> float:
    """Seconds for a fresh interpreter to import the pipeline and load the checkpoints."""
    code = ("import time; t=time.perf_counter(); import sys; sys.argv=['x']+sys.argv[1:]; "
            "from config import parse_config; from pipeline import Composite; "
            "Composite.from_checkpoints(parse_config(sys.argv[1:])); print(time.perf_counter()-t)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", code, *cfg_args], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        return float("nan")
    return float(proc.stdout.strip().splitlines()[-1])


def one_motion_table(composite: Composite, repeats: int) -> dict:
    """Median seconds per part of one 120-frame motion, with its costs per stage."""
    parts: dict[str, list[float]] = {}
    totals = []
    for _ in range(2):
        composite.sample(PROMPT, 120)
    for _ in range(repeats):
        start = time.perf_counter()
        result = composite.sample(PROMPT, 120, return_timings=True)
        totals.append(time.perf_counter() - start)
        for name, seconds in result.timings.items():
            parts.setdefault(name, []).append(seconds)
        parts.setdefault("without_text", []).append(totals[-1] - result.timings.get("text", 0.0))
    costs = stage_costs(composite, PROMPT)
    table = {name: {"median_s": statistics.median(parts[name]), **costs.get(name, {})}
             for name in PARTS if name in parts}
    table["total_without_text"] = {"median_s": statistics.median(parts["without_text"]), **costs["total"]}
    return {"median_s": statistics.median(totals), "min_s": min(totals), "stages": table}


LEVERS = {  # name -> (attribute of the Composite, value with the lever on, value with it off)
    "gpt int8 weights": ("gpt.weight_dtype", "int8", "float32"),
    "gpt bf16 weights": ("gpt.weight_dtype", "bfloat16", "float32"),
    "gpt decode on 1 thread": ("gpt.decode_threads", 1, 0),
    "diffusion bf16 weights": ("diffusion.weight_dtype", "bfloat16", "float32"),
}


def lever_ablation(composite: Composite, repeats: int, batch: int = 1) -> dict:
    """Median seconds of one sample call (`batch` prompts, 120 frames) as configured, and with each
    lever of LEVERS flipped alone (turned off where the config has it on, else on), interleaved.
    Note that "with gpt bf16 weights" replaces whatever GPT weights the config uses."""
    def owner(path):
        name, attribute = path.split(".")
        return getattr(composite, name), attribute

    def run(change=None):
        obj, attribute = owner(change[0]) if change else (composite, "cfg")
        saved = getattr(obj, attribute)
        if change:
            setattr(obj, attribute, change[1])
        try:
            start = time.perf_counter()
            composite.sample([PROMPT] * batch, 120)
            return time.perf_counter() - start
        finally:
            setattr(obj, attribute, saved)

    variants = {"as configured": None}
    for lever, (path, on, off) in LEVERS.items():
        current = getattr(*owner(path))
        if current == on:
            variants[f"without {lever}"] = (path, off)
        else:
            variants[f"with {lever}"] = (path, on)
    for change in variants.values():  # warm-up (builds the packed weight copies)
        run(change)
    times = {name: [] for name in variants}
    names = list(variants)
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(run(variants[name]))
    return {name: statistics.median(values) for name, values in times.items()}


def profile_top_ops(composite: Composite, rows: int = 12) -> str:
    """torch.profiler's table of the ops with the most self CPU time in one 120-frame motion."""
    from torch.profiler import ProfilerActivity, profile
    composite.sample(PROMPT, 120)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        composite.sample(PROMPT, 120)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def print_table(report: dict) -> None:
    print(f"{'stage':<20} {'median s':>9} {'GFLOP':>8} {'MB read':>9} {'params M':>9}")
    for name, row in report["one_120_frames"]["stages"].items():
        cost = [f"{row[k]:>{w}.{p}f}" if k in row else f"{'-':>{w}}"
                for k, w, p in (("gflop", 8, 2), ("mb_weights_read", 9, 1), ("params_m", 9, 2))]
        print(f"{name:<20} {row['median_s']:>9.3f} " + " ".join(cost))


def parse_args(argv=None) -> tuple[argparse.Namespace, CompositeConfig]:
    """The command line: this script's options and the preset's config with any overrides."""
    parser = make_parser(__doc__.split("\n\n")[0], prog="bench_generate.py")
    parser.add_argument("--preset", choices=PRESETS, default="default", help="size preset")
    parser.add_argument("--random_init", action="store_true", help="random weights even if checkpoints exist")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--quick", action="store_true", help="skip length scaling, cold start and the FLOP/s probe")
    parser.add_argument("--levers", action="store_true",
                        help="also time the preset with each speed lever "
                             "(low-precision weights, decode threads) undone")
    parser.add_argument("--profile", action="store_true", help="also print torch.profiler's top ops of one motion")
    args = parser.parse_args(argv)
    overrides = {k[len(CONFIG_DEST):]: v for k, v in vars(args).items() if k.startswith(CONFIG_DEST)}
    if args.config:
        with open(args.config) as fh:
            overrides = {**json.load(fh), **overrides}
    try:
        cfg = preset_config(args.preset, overrides)
    except ConfigError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    return args, cfg


def run_header(args: argparse.Namespace, cfg: CompositeConfig, device: torch.device, source: str) -> dict:
    """What the numbers were measured on: preset, device, threads, weights, levers, versions, load."""
    return {"preset": args.preset, "device": str(device), "threads": torch.get_num_threads(), "source": source,
            "num_inbetween_steps": cfg.num_inbetween_steps,
            "levers": {name: getattr(cfg, name)
                       for name in ("gpt_weight_dtype", "gpt_decode_threads", "diff_weight_dtype")},
            "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d %H:%M"), "load_average": os.getloadavg()}


def batch_throughput(composite: Composite, repeats: int) -> dict:
    """Median seconds and motions per second of one call with 32 prompts, with its costs."""
    batch = [PROMPT] * 32
    batch_times = time_calls(lambda: composite.sample(batch, 120), max(3, repeats // 5), warmup=1)
    return {"median_s": statistics.median(batch_times),
            "motions_per_s": 32 / statistics.median(batch_times),
            "costs": stage_costs(composite, batch)}


def slow_probes(composite: Composite, cfg: CompositeConfig, device: torch.device, source: str,
                repeats: int) -> dict:
    """Length scaling, the diffusion forward's FLOP/s against the matmul peak, and (for trained
    checkpoints) the cold start: what --quick skips."""
    out = {"length_scaling_median_s": {
        str(n): statistics.median(time_calls(lambda n=n: composite.sample(PROMPT, n), max(5, repeats // 2)))
        for n in (60, 120, 196)}}
    flops, seconds = diffusion_forward_flops(composite.denoiser, composite.text_encoder.dim, device)
    peak = matmul_peak_gflops(device)
    out["diffusion_forward"] = {"gflop": flops / 1e9, "median_s": seconds, "gflops": flops / 1e9 / seconds,
                                "matmul_peak_gflops": peak, "fraction_of_peak": flops / 1e9 / seconds / peak}
    if source.startswith("trained"):
        out["cold_start_s"] = cold_start_seconds(["--checkpoint_dir", cfg.checkpoint_dir, "--device", cfg.device])
    return out


def cuda_numbers(composite: Composite, repeats: int) -> dict:
    """One 120-frame motion under bf16 autocast, and the peak GPU memory so far."""
    with torch.autocast("cuda", dtype=torch.bfloat16):
        bf16 = time_calls(lambda: composite.sample(PROMPT, 120), repeats)
    return {"one_120_frames_bf16_median_s": statistics.median(bf16),
            "peak_gpu_memory_mib": torch.cuda.max_memory_allocated() / 2 ** 20}


def measure(composite: Composite, cfg: CompositeConfig, args: argparse.Namespace, device: torch.device,
            source: str) -> dict:
    """The report of one preset: every number the options ask for."""
    report = run_header(args, cfg, device, source)
    report["one_120_frames"] = one_motion_table(composite, args.repeats)
    report["batch_32"] = batch_throughput(composite, args.repeats)
    if args.levers:
        report["levers_one_120_frames_median_s"] = lever_ablation(composite, max(5, args.repeats // 2))
        report["levers_batch_32_median_s"] = lever_ablation(composite, 2, batch=32)
    if args.profile:
        report["profile_top_ops"] = profile_top_ops(composite)
    if not args.quick:
        report.update(slow_probes(composite, cfg, device, source, args.repeats))
    if device.type == "cuda":
        report.update(cuda_numbers(composite, args.repeats))
    report["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return report


def save_report(report: dict, path: str, key: str) -> None:
    """Write report as entry `key` of the JSON file at path, keeping the other presets' entries."""
    saved = {}
    if os.path.exists(path):
        try:
            with open(path) as fh:
                saved = json.load(fh)
        except (OSError, json.JSONDecodeError):
            saved = {}
        if not isinstance(saved, dict) or "preset" in saved:  # a single-run file of an older version
            saved = {}
    saved[key] = report
    write_json_report(saved, path)


def print_report(report: dict, path: str) -> None:
    one = report["one_120_frames"]
    print(f"preset {report['preset']}: {report['source']}; device {report['device']} ({report['threads']} threads), "
          f"{report['num_inbetween_steps']} DDIM steps, load average {report['load_average'][0]:.1f}; "
          + ", ".join(f"{k}={v}" for k, v in report["levers"].items()))
    print(f"one 120-frame motion: median {one['median_s']:.3f} s, min {one['min_s']:.3f} s")
    print_table(report)
    print(f"batch of 32: {report['batch_32']['motions_per_s']:.1f} motions/s "
          f"({report['batch_32']['costs']['total']['gflop'] / 32:.2f} GFLOP per motion)")
    for key, label in (("levers_one_120_frames_median_s", "one 120-frame motion"),
                       ("levers_batch_32_median_s", "batch of 32")):
        if key in report:
            print(f"levers, {label} (median s): " + ", ".join(f"{k} {v:.3f}" for k, v in report[key].items()))
    if "profile_top_ops" in report:
        print(report["profile_top_ops"])
    if "length_scaling_median_s" in report:
        print("length scaling (s): "
              + ", ".join(f"{k} frames {v:.3f}" for k, v in report["length_scaling_median_s"].items()))
        diff = report["diffusion_forward"]
        print(f"diffusion forward (2 x 120 frames): {diff['gflop']:.3f} GFLOP in {diff['median_s'] * 1000:.2f} ms = "
              f"{diff['gflops']:.1f} GFLOP/s, {100 * diff['fraction_of_peak']:.0f}% of the measured matmul peak "
              f"{diff['matmul_peak_gflops']:.0f} GFLOP/s")
    print(f"peak RSS {report['peak_rss_mib']:.0f} MiB"
          + (f", cold start {report['cold_start_s']:.2f} s" if "cold_start_s" in report else ""))
    print(f"wrote {path} (entry '{report['preset']}')")


def main() -> None:
    args, cfg = parse_args()
    torch.set_num_threads(args.threads)
    device = select_device(cfg)
    composite, source = build_composite(cfg, device, random_init=args.random_init)
    report = measure(composite, cfg, args, device, source)
    path = os.path.join(cfg.results_dir, "bench_generate.json")
    save_report(report, path, args.preset)
    print_report(report, path)


if __name__ == "__main__":
    main()
