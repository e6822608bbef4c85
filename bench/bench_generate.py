"""Generation speed: end-to-end time of one 120-frame motion and its breakdown, batch
throughput, length scaling, peak memory, cold start, and the diffusion forward's FLOP/s
against a matmul peak measured in the same run.

    python bench/bench_generate.py                 # trained checkpoints in checkpoints/
    python bench/bench_generate.py --random_init   # default-size models with random weights

Prints a table and writes results/bench_generate.json (cfg.results_dir).
"""
from __future__ import annotations

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

from config import config_from_args, make_parser  # noqa: E402
from pipeline import Composite  # noqa: E402
from runtime import select_device  # noqa: E402

PROMPT = "a person walks forward and then waves with the right hand"


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
    """Seconds for a fresh interpreter to import generate and run load_models."""
    code = ("import time; t=time.perf_counter(); import sys; sys.argv=['x']+sys.argv[1:]; "
            "from config import parse_config; from pipeline import Composite; "
            "Composite.from_checkpoints(parse_config(sys.argv[1:])); print(time.perf_counter()-t)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", code, *cfg_args], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        return float("nan")
    return float(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = make_parser(__doc__.split("\n\n")[0], prog="bench_generate.py")
    parser.add_argument("--random_init", action="store_true", help="benchmark default-size untrained models")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    cfg = config_from_args(args, parser)
    torch.set_num_threads(args.threads)
    device = select_device(cfg)
    if args.random_init:
        from text_encoder import load_text_encoder
        encoder = load_text_encoder(cfg)
        composite = Composite.build(cfg, encoder, np.zeros(263, np.float32), np.ones(263, np.float32), device)
        source = "random-init models at the config's sizes"
    else:
        composite = Composite.from_checkpoints(cfg, device)
        source = f"trained checkpoints in {cfg.checkpoint_dir}"

    def run(prompt, length, timings=None):
        result = composite.sample(prompt, length, return_timings=timings is not None)
        if timings is not None:
            timings.update(result.timings)
    report = {"device": str(device), "threads": torch.get_num_threads(), "source": source,
              "num_inbetween_steps": cfg.num_inbetween_steps,
              "torch": torch.__version__, "cpu_count": os.cpu_count()}

    # one 120-frame motion, end to end, and without text encoding
    end_to_end = time_calls(lambda: run(prompt=PROMPT, length=120), args.repeats)
    parts: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        timings: dict = {}
        run(prompt=PROMPT, length=120, timings=timings)
        for name, seconds in timings.items():
            parts.setdefault(name, []).append(seconds)
    breakdown = {name: statistics.median(values) for name, values in parts.items()}
    report["one_120_frames"] = {"median_s": statistics.median(end_to_end), "min_s": min(end_to_end),
                                "breakdown_median_s": breakdown,
                                "without_text_median_s": statistics.median(end_to_end) - breakdown.get("text", 0.0)}
    # batch throughput
    batch = [PROMPT] * 32
    batch_times = time_calls(lambda: run(prompt=batch, length=120), max(3, args.repeats // 5), warmup=1)
    report["batch_32"] = {"median_s": statistics.median(batch_times),
                          "motions_per_s": 32 / statistics.median(batch_times)}
    # length scaling
    report["length_scaling_median_s"] = {
        str(n): statistics.median(time_calls(lambda n=n: run(prompt=PROMPT, length=n), max(5, args.repeats // 2)))
        for n in (60, 120, 196, 400)}
    # achieved FLOP/s of the diffusion forward vs matmul peak
    flops, seconds = diffusion_forward_flops(composite.denoiser, composite.text_encoder.dim, device)
    peak = matmul_peak_gflops(device)
    report["diffusion_forward"] = {"gflop": flops / 1e9, "median_s": seconds, "gflops": flops / 1e9 / seconds,
                                   "matmul_peak_gflops": peak, "fraction_of_peak": flops / 1e9 / seconds / peak}
    if device.type == "cuda":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bf16 = time_calls(lambda: run(prompt=PROMPT, length=120), args.repeats)
        report["one_120_frames_bf16_median_s"] = statistics.median(bf16)
        report["peak_gpu_memory_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
    report["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if not args.random_init:
        report["cold_start_s"] = cold_start_seconds(["--checkpoint_dir", cfg.checkpoint_dir,
                                                     "--device", cfg.device])

    os.makedirs(cfg.results_dir, exist_ok=True)
    path = os.path.join(cfg.results_dir, "bench_generate.json")
    with open(path, "w") as fh:
        json.dump(report, fh, indent=2)
    one = report["one_120_frames"]
    print(f"device {report['device']} ({report['threads']} threads), {source}, {cfg.num_inbetween_steps} DDIM steps")
    print(f"one 120-frame motion: median {one['median_s'] * 1000:.1f} ms, min {one['min_s'] * 1000:.1f} ms, "
          f"without text {one['without_text_median_s'] * 1000:.1f} ms")
    print("  breakdown (median ms): " + ", ".join(f"{k} {v * 1000:.1f}" for k, v in breakdown.items()))
    print(f"batch of 32: {report['batch_32']['motions_per_s']:.1f} motions/s")
    print("length scaling (ms): " + ", ".join(f"{k} frames {v * 1000:.1f}"
                                              for k, v in report["length_scaling_median_s"].items()))
    diff = report["diffusion_forward"]
    print(f"diffusion forward (2 x 120 frames): {diff['gflop']:.3f} GFLOP in {diff['median_s'] * 1000:.2f} ms = "
          f"{diff['gflops']:.1f} GFLOP/s, {100 * diff['fraction_of_peak']:.0f}% of the measured matmul peak "
          f"{diff['matmul_peak_gflops']:.0f} GFLOP/s")
    print(f"peak RSS {report['peak_rss_mib']:.0f} MiB"
          + (f", cold start {report['cold_start_s']:.2f} s" if "cold_start_s" in report else ""))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
