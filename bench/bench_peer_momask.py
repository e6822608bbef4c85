"""MoMask beside ours in one process: one 120-frame motion, text encoding excluded, random weights.

    python bench/bench_peer_momask.py --momask_dir /path/to/momask-codes [--threads 2] [--repeats 9]

MoMask's code is not part of this project: fetch github.com/EricGuo5513/momask-codes into a
folder of your own and pass it with --momask_dir. This script builds its MaskTransformer,
ResidualTransformer and RVQVAE at the released HumanML3D sizes (the options of
t2m_nlayer8_nhead6_ld384_ff1024_cdp0.1_rvq6ns, tres_nlayer8_ld384_ff1024_rvq6ns_cdp0.2_sw and
rvq_nq6_dc512_nc512_noshare_qdp0.2: 8 layers, 6 heads, width 384, feed-forward 1024; 6 residual
quantizers of 512 codes x 512 dims; conv width 512, depth 3, two 2x upsamplings) with random
weights, and times gen_t2m.py's chain: mask transformer generate (10 and 18 iterations, guidance
4, top-k 0.9), residual transformer generate (guidance 5), RVQ decode. Our presets run
interleaved with it, repeat by repeat, so both see the same machine load.

MoMask imports OpenAI's `clip` package only to load and run CLIP's text tower; since text
encoding is excluded on both sides, a stub `clip` module (a weightless placeholder model) is put
in sys.modules before its import, and each transformer's `encode_text` returns a fixed 512-d
embedding. It also needs `einops` (used while sampling; pip install einops).
Prints a table and writes results/bench_peer_momask.json.
"""
from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time
import types
from types import SimpleNamespace

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_generate import build_composite, preset_config, stage_costs  # noqa: E402
from bench.json_report import write_json_report  # noqa: E402
from costs import StageCosts  # noqa: E402
from pipeline import SamplingOptions  # noqa: E402

PROMPT = "a person walks forward and then waves with the right hand"
LENGTH = 120
CLIP_DIM = 512


class FixedTextEncoder:
    """A text encoder that returns one fixed unit vector: text encoding is outside the timing."""
    name = "fixed-512"
    dim = CLIP_DIM

    def __init__(self):
        generator = torch.Generator().manual_seed(0)
        self.embedding = torch.nn.functional.normalize(torch.randn(1, CLIP_DIM, generator=generator), dim=-1)

    def encode(self, prompts):
        return self.embedding.expand(len(prompts), -1).clone()


def import_momask(momask_dir: str) -> dict:
    """MoMask's model classes, imported from momask_dir without clashing with our `models` package."""
    if not os.path.isfile(os.path.join(momask_dir, "models", "mask_transformer", "transformer.py")):
        raise SystemExit(f"--momask_dir {momask_dir} does not hold momask-codes "
                         "(models/mask_transformer/transformer.py)")
    stub = types.ModuleType("clip")  # construction calls clip.load; sampling never runs CLIP here
    stub.load = lambda *args, **kwargs: (nn.Module(), None)
    stub.tokenize = lambda *args, **kwargs: (_ for _ in ()).throw(RuntimeError("text encoding is excluded"))
    ours = {k: sys.modules.pop(k) for k in list(sys.modules) if k == "models" or k.startswith("models.")}
    saved_clip = sys.modules.get("clip")
    sys.modules["clip"] = stub
    sys.path.insert(0, momask_dir)
    try:
        transformer = importlib.import_module("models.mask_transformer.transformer")
        vq_model = importlib.import_module("models.vq.model")
        classes = {"MaskTransformer": transformer.MaskTransformer,
                   "ResidualTransformer": transformer.ResidualTransformer, "RVQVAE": vq_model.RVQVAE}
    finally:
        sys.path.remove(momask_dir)
        for k in [k for k in sys.modules if k == "models" or k.startswith("models.")]:
            sys.modules.pop(k)
        sys.modules.update(ours)
        if saved_clip is not None:
            sys.modules["clip"] = saved_clip
        else:
            sys.modules.pop("clip", None)
    return classes


class MoMask:
    """The released HumanML3D MoMask at random weights, sampled as in its gen_t2m.py."""

    def __init__(self, classes: dict):
        torch.manual_seed(0)
        vq_opt = SimpleNamespace(num_quantizers=6, shared_codebook=False, quantize_dropout_prob=0.2, mu=0.99,
                                 device=torch.device("cpu"))
        self.vq = classes["RVQVAE"](vq_opt, 263, 512, 512, 512, 2, 2, 512, 3, 3, "relu", None)
        for layer in self.vq.quantizer.layers:  # trained codebooks are not zero; give them values
            layer.codebook.normal_()
        t2m_opt = SimpleNamespace(num_tokens=512, num_quantizers=6, code_dim=512, device=torch.device("cpu"))
        self.t2m = classes["MaskTransformer"](code_dim=512, cond_mode="text", latent_dim=384, ff_size=1024,
                                              num_layers=8, num_heads=6, dropout=0.2, clip_dim=CLIP_DIM,
                                              cond_drop_prob=0.1, clip_version="ViT-B/32", opt=t2m_opt)
        res_opt = SimpleNamespace(num_tokens=512, num_quantizers=6, device=torch.device("cpu"))
        self.res = classes["ResidualTransformer"](code_dim=512, cond_mode="text", latent_dim=384, ff_size=1024,
                                                  num_layers=8, num_heads=6, dropout=0.2, clip_dim=CLIP_DIM,
                                                  shared_codebook=False, cond_drop_prob=0.2, share_weight=True,
                                                  clip_version="ViT-B/32", opt=res_opt)
        text = FixedTextEncoder()
        for model in (self.vq, self.t2m, self.res):
            model.eval().requires_grad_(False)
        self.t2m.encode_text = text.encode
        self.res.encode_text = text.encode

    def modules(self):
        return [self.t2m, self.res, self.vq]

    @torch.no_grad()
    def sample(self, timesteps: int, length: int = LENGTH, batch: int = 1):
        captions = [PROMPT] * batch
        token_lens = torch.full((batch,), length // 4, dtype=torch.long)
        ids = self.t2m.generate(captions, token_lens, timesteps=timesteps, cond_scale=4, temperature=1.0,
                                topk_filter_thres=0.9, gsample=False)
        ids = self.res.generate(ids, captions, token_lens, temperature=1, cond_scale=5)
        return self.vq.forward_decoder(ids)

    def costs(self, timesteps: int) -> dict:
        costs = StageCosts(self.modules())
        with costs.stage(self.t2m, "generate", "mask_transformer"), costs.stage(self.res, "generate", "residual"), \
                costs.stage(self.vq, "forward_decoder", "rvq_decode"):
            self.sample(timesteps)
        return costs.report()


def our_system(preset: str, overrides: dict):
    cfg = preset_config(preset, overrides)
    composite, _ = build_composite(cfg, torch.device("cpu"), encoder=FixedTextEncoder(), random_init=True)
    return composite


def time_ours(composite, parts: dict) -> float:
    """Seconds of one sample call without its text encoding; adds each part's seconds to parts."""
    start = time.perf_counter()
    result = composite.sample(PROMPT, LENGTH, SamplingOptions(seed=0), return_timings=True)
    seconds = time.perf_counter() - start - result.timings.get("text", 0.0)
    for name, value in result.timings.items():
        parts.setdefault(name, []).append(value)
    return seconds


def time_call(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--momask_dir", required=True, help="a checkout of EricGuo5513/momask-codes")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--ours", default="default,humanml3d",
                        help="comma-separated presets of ours to run beside it")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="config overrides applied to our presets (e.g. gpt_weight_dtype=int8)")
    parser.add_argument("--out", default="results/bench_peer_momask.json")
    return parser.parse_args(argv)


def build_systems(momask: MoMask, presets: list[str], overrides: dict) -> tuple[dict, dict, dict]:
    """({name: a call that returns one sample's seconds}, {preset: our Composite},
    {name: {part: seconds}} that our systems' calls fill)."""
    systems = {"momask_10": lambda: time_call(lambda: momask.sample(10)),
               "momask_18": lambda: time_call(lambda: momask.sample(18))}
    ours, parts = {}, {}
    for preset in presets:
        ours[preset] = our_system(preset, overrides)
        parts[f"ours_{preset}"] = {}
        systems[f"ours_{preset}"] = lambda c=ours[preset], p=parts[f"ours_{preset}"]: time_ours(c, p)
    return systems, ours, parts


def time_interleaved(systems: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds of each system's call per repeat, after one warm-up call each."""
    for fn in systems.values():  # warm-up
        fn()
    times = {name: [] for name in systems}
    names = list(systems)
    for r in range(repeats):  # interleaved, rotating the order so no system always runs first
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(systems[name]())
    return times


def build_report(times: dict, momask: MoMask, ours: dict, parts: dict, overrides: dict, repeats: int) -> dict:
    """The run's settings and, per system, its times against MoMask-10, its costs and its parts."""
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "threads": torch.get_num_threads(), "repeats": repeats,
              "torch": torch.__version__, "load_average": os.getloadavg(), "length": LENGTH,
              "text_encoding": "excluded", "overrides": overrides, "systems": {}}
    reference = statistics.median(times["momask_10"])
    for name, values in times.items():
        if name.startswith("momask"):
            costs = momask.costs(int(name.split("_")[1]))
        else:
            costs = stage_costs(ours[name[len("ours_"):]], PROMPT, LENGTH)
        report["systems"][name] = {"median_s": statistics.median(values), "min_s": min(values),
                                   "times_s": values, "vs_momask_10": statistics.median(values) / reference,
                                   "costs": costs}
        if name in parts:
            report["systems"][name]["parts_median_s"] = {k: statistics.median(v) for k, v in parts[name].items()}
    return report


def save_report(report: dict, path: str) -> None:
    write_json_report(report, path)


def print_report(report: dict, path: str) -> None:
    print(f"{report['date']}, {report['threads']} threads, {report['repeats']} interleaved repeats, load average "
          f"{report['load_average'][0]:.1f}; one {LENGTH}-frame motion, text excluded, random weights")
    print(f"{'system':<18} {'params M':>9} {'median s':>9} {'min s':>7} {'x MoMask-10':>12} {'GFLOP':>7} "
          f"{'MB read':>8}")
    for name, row in report["systems"].items():
        total = row["costs"]["total"]
        print(f"{name:<18} {total['params_m']:>9.1f} {row['median_s']:>9.3f} {row['min_s']:>7.3f} "
              f"{row['vs_momask_10']:>12.2f} {total['gflop']:>7.2f} {total['mb_weights_read']:>8.0f}")
        seconds = row.get("parts_median_s", {})
        print("    " + ", ".join(f"{stage} " + (f"{seconds[stage]:.3f} s / " if stage in seconds else "")
                                + f"{c['gflop']:.2f} GFLOP / {c['mb_weights_read']:.0f} MB / {c['params_m']:.1f} M"
                                for stage, c in row["costs"].items() if stage != "total"))
    print(f"wrote {path}")


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    overrides = dict(item.split("=", 1) for item in args.set)
    momask = MoMask(import_momask(os.path.abspath(args.momask_dir)))
    systems, ours, parts = build_systems(momask, [p for p in args.ours.split(",") if p], overrides)
    times = time_interleaved(systems, args.repeats)
    report = build_report(times, momask, ours, parts, overrides, args.repeats)
    save_report(report, args.out)
    print_report(report, args.out)


if __name__ == "__main__":
    main()
