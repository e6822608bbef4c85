"""Quality against training compute and model size: train one size preset under a fixed wall
budget, evaluate it on the test split, and plot every run recorded so far.

    python bench/bench_scaling.py --size medium --budget_min 20 --dataset_root dataset/bandai
        --dataset_kind humanml3d --min_motion_length 24 --evaluator checkpoints/evaluator.pt
    python bench/bench_scaling.py --register DIR --train_min 15.0 --name default  # a run trained elsewhere
    python bench/bench_scaling.py --plot_only                                    # re-plot the table

A run: the preset's model sizes (SIZES; everything else from the command line) with every
stage's step count scaled by one factor so that steps x measured step time fills the budget (the
stages keep the default 1200 : 1500 : 1200 proportions; --budget_min 0 keeps the config's steps),
`train.py` and `evaluate.py --rows gt composite` in subprocesses, the training wall time measured
around the first. Each run appends an entry to results/scaling.json (cfg.results_dir) with its
parameters in sampling (GPT + VQ-VAE decoder + in-betweener), minutes, steps and the composite
row's metrics; results/scaling.png plots FID and content / style accuracy against training
minutes and against parameters, and the table prints as Markdown.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config import STAGE_STEPS, CompositeConfig, ConfigError, config_from_args, make_parser  # noqa: E402
from bench.json_report import write_json_report  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE_FIELDS = ("vq_codebook_size", "vq_code_dim", "vq_width", "vq_depth", "gpt_n_layer", "gpt_n_head", "gpt_n_embd",
               "diff_n_layer", "diff_n_head", "diff_n_embd", "diff_patch_size", "gpt_weight_dtype",
               "gpt_decode_threads", "diff_weight_dtype")
SIZES = {"default": {name: getattr(CompositeConfig(), name) for name in SIZE_FIELDS},
         "medium": {name: getattr(CompositeConfig.medium(), name) for name in SIZE_FIELDS},
         "humanml3d": {name: getattr(CompositeConfig.humanml3d(), name) for name in SIZE_FIELDS}}
STEP_FIELDS = tuple(STAGE_STEPS.values())
METRICS = ("fid", "r_precision_top3", "content_accuracy", "style_accuracy", "toe_skating_cm_s", "jerk")


def sampling_parameters(cfg: CompositeConfig, text_dim: int = 384) -> dict:
    """Parameters that take part in sampling, per model: the GPT, the VQ-VAE's decoder and the
    in-betweener's denoiser (the VQ-VAE encoder only trains)."""
    from models.diffusion import InbetweenDenoiser
    from models.gpt import MotionGPT
    from models.vqvae import KeyframeVQVAE

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())
    counts = {"gpt": count(MotionGPT(cfg, text_dim)), "vq_decoder": count(KeyframeVQVAE(cfg).decoder),
              "denoiser": count(InbetweenDenoiser(cfg, text_dim))}
    return {**counts, "total": sum(counts.values())}


def measured_step_seconds(cfg: CompositeConfig, steps: int = 3) -> dict:
    """Seconds per training step of each stage at cfg's sizes on its data (bench_train's timing,
    `steps` timed steps after warm-up), keyed by the stage's step field."""
    from bench import bench_train
    report = bench_train.main(["--config", write_config(cfg, os.path.join(cfg.results_dir, "scaling_probe.json")),
                               "--steps", str(steps)])
    return {STAGE_STEPS[stage]: timed["step_s"] for stage, timed in report["stages"].items()}


def budget_config(cfg: CompositeConfig, budget_min: float, step_seconds: dict) -> CompositeConfig:
    """cfg with every stage's steps scaled by one factor so that their time fills budget_min."""
    minutes = sum(getattr(cfg, field) * step_seconds[field] for field in STEP_FIELDS) / 60
    factor = budget_min / max(minutes, 1e-9)
    return cfg.replace(**{field: max(1, round(getattr(cfg, field) * factor)) for field in STEP_FIELDS})


def write_config(cfg: CompositeConfig, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(cfg.to_dict(), fh, indent=1)
    return path


def run_script(script: str, config_path: str, *extra: str) -> float:
    """Run `python script --config config_path extra...` from the project root; its wall seconds.
    A failure ends this program with the script's own exit code."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, os.path.join(ROOT, script), "--config", config_path, *extra], cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"bench_scaling.py: {script} failed (exit {done.returncode}); its output is above")
    return time.perf_counter() - start


def composite_metrics(checkpoint_dir: str) -> dict:
    """The composite row of checkpoint_dir/eval/eval_latest.json: mean and ci95 of METRICS, and
    the sampling seconds per motion."""
    path = os.path.join(checkpoint_dir, "eval", "eval_latest.json")
    if not os.path.exists(path):
        raise SystemExit(f"bench_scaling.py: no evaluation at {path}; run evaluate.py --rows gt composite "
                         f"--results_dir {os.path.join(checkpoint_dir, 'eval')} first")
    with open(path) as fh:
        report = json.load(fh)
    row = next(r for r in report["rows"] if r["key"] == "composite")
    metrics = {name: row["metrics"].get(name) for name in METRICS}  # None: not measured (no labels)
    return {**metrics, "seconds_per_motion": row["seconds_per_motion"]}


def run_entry(name: str, cfg: CompositeConfig, train_min: float) -> dict:
    return {"name": name, "checkpoint_dir": cfg.checkpoint_dir, "dataset_root": cfg.dataset_root,
            "train_min": train_min, "steps": {field: getattr(cfg, field) for field in STEP_FIELDS},
            "sizes": {field: getattr(cfg, field) for field in SIZE_FIELDS},
            "parameters": sampling_parameters(cfg), "metrics": composite_metrics(cfg.checkpoint_dir)}


def train_and_evaluate(cfg: CompositeConfig, size: str | None, budget_min: float, evaluator: str) -> tuple:
    """Train the size preset (None: cfg's own sizes) within the budget and evaluate it; (its
    config, training minutes)."""
    cfg = cfg.replace(**SIZES[size]) if size else cfg
    if budget_min > 0:
        cfg = budget_config(cfg, budget_min, measured_step_seconds(cfg))
    os.makedirs(cfg.checkpoint_dir, exist_ok=True)
    if evaluator:  # scored with it where it lies (config field evaluator_file), not a copy
        if not os.path.isfile(evaluator):
            raise ConfigError(f"--evaluator {evaluator} not found (pass an evaluator.pt trained on this data set)")
        cfg = cfg.replace(evaluator_file=os.path.abspath(evaluator))
    config_path = write_config(cfg, os.path.join(cfg.checkpoint_dir, "scaling_run.json"))
    print(f"[{size or 'config sizes'}] {sampling_parameters(cfg)['total'] / 1e6:.2f}M parameters in sampling, steps "
          f"{', '.join(f'{f} {getattr(cfg, f)}' for f in STEP_FIELDS)} (budget {budget_min} min)", flush=True)
    seconds = run_script("train.py", config_path)
    run_script("evaluate.py", config_path, "--rows", "gt", "composite", "--results_dir",
               os.path.join(cfg.checkpoint_dir, "eval"))
    return cfg, seconds / 60


def load_table(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        return json.load(fh)["runs"]


def markdown_table(runs: list[dict]) -> str:
    lines = ["| run | parameters in sampling | training min | FID | R@3 | content / style acc | toe skate cm/s "
             "| jerk | s / motion |", "|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        m = run["metrics"]

        def mean(name: str, digits: int) -> str:
            return "-" if m.get(name) is None else f"{m[name]['mean']:.{digits}f}"
        fid = "-" if m["fid"] is None else f"{m['fid']['mean']:.3f} ± {m['fid']['ci95']:.3f}"
        lines.append(f"| {run['name']} | {run['parameters']['total'] / 1e6:.1f}M | {run['train_min']:.1f} | {fid} | "
                     f"{mean('r_precision_top3', 3)} | {mean('content_accuracy', 3)} / {mean('style_accuracy', 3)} | "
                     f"{mean('toe_skating_cm_s', 1)} | {mean('jerk', 1)} | {mean('seconds_per_motion', 3)} |")
    return "\n".join(lines)


def label_points(axis, xs: list, ys: list, names: list) -> None:
    for x, y, name in zip(xs, ys, names):
        axis.annotate(name, (x, y), fontsize=8, xytext=(4, 4), textcoords="offset points")


def plot(runs: list[dict], path: str) -> None:
    """Four panels against training minutes (top) and parameters (bottom, log): FID with its CI,
    and content / style accuracy; each point labelled with its run's name."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, NullFormatter
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    names = [run["name"] for run in runs]
    fids = [run["metrics"]["fid"]["mean"] for run in runs]
    for row, label in enumerate(("training minutes (2-core CPU wall)", "parameters in sampling (M)")):
        xs = [run["train_min"] for run in runs] if row == 0 else [run["parameters"]["total"] / 1e6 for run in runs]
        fid, acc = axes[row]
        fid.errorbar(xs, fids, yerr=[run["metrics"]["fid"]["ci95"] for run in runs], fmt="o", capsize=3)
        fid.set(xlabel=label, ylabel="composite FID (lower is better)")
        label_points(fid, xs, fids, names)
        for metric, marker in (("content_accuracy", "o"), ("style_accuracy", "s")):
            ys = [(run["metrics"].get(metric) or {"mean": float("nan")})["mean"] for run in runs]
            acc.plot(xs, ys, marker, label=metric.replace("_", " "))
            label_points(acc, xs, ys, names)
        acc.set(xlabel=label, ylabel="accuracy on generated motions")
        acc.legend(loc="best", fontsize=8)
        if row == 1:  # log axis, ticked at the runs' sizes
            for axis in (fid, acc):
                axis.set_xscale("log")
                axis.set_xticks(sorted(set(xs)))
                axis.xaxis.set_major_formatter(FormatStrFormatter("%.1f"))
                axis.xaxis.set_minor_formatter(NullFormatter())
    fig.suptitle("Composite quality against training compute and size (test split)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def make_cli_parser():
    """bench_scaling.py's options, then every config field."""
    parser = make_parser(__doc__.split("\n\n")[0], prog="bench_scaling.py")
    parser.add_argument("--size", choices=list(SIZES), default=None,
                        help="model size preset to train (default: the sizes the config fields give)")
    parser.add_argument("--budget_min", type=float, default=0.0,
                        help="training wall minutes to fill by scaling every stage's steps (0: the config's steps)")
    parser.add_argument("--name", default="", help="the run's name in the table (default: the size)")
    parser.add_argument("--evaluator", default="", metavar="FILE",
                        help="an evaluator.pt trained on the same data to score the run with (sets evaluator_file)")
    parser.add_argument("--register", default="", metavar="DIR",
                        help="add a run trained and evaluated elsewhere (its checkpoints and eval/ in DIR)")
    parser.add_argument("--train_min", type=float, default=0.0, help="with --register: its training wall minutes")
    parser.add_argument("--plot_only", action="store_true", help="only re-plot and print the recorded runs")
    return parser


def main(argv: list[str] | None = None) -> list[dict]:
    parser = make_cli_parser()
    args = parser.parse_args(argv)
    cfg = config_from_args(args, parser)
    table_path = os.path.join(cfg.results_dir, "scaling.json")
    runs = load_table(table_path)
    try:
        if args.register:
            from runtime import load_checkpoint
            saved = CompositeConfig.from_dict(load_checkpoint(os.path.join(args.register, "gpt.pt"))["config"])
            runs.append(run_entry(args.name or "registered", saved.replace(checkpoint_dir=args.register), args.train_min))
        elif not args.plot_only:
            trained, minutes = train_and_evaluate(cfg, args.size, args.budget_min, args.evaluator)
            runs.append(run_entry(args.name or args.size or "config sizes", trained, minutes))
    except ConfigError as exc:
        parser.exit(2, f"bench_scaling.py: error: {exc}\n")
    if not runs:
        parser.exit(2, f"bench_scaling.py: error: no runs recorded in {table_path}; train one with --size first\n")
    write_json_report({"runs": runs}, table_path)
    plot(runs, os.path.join(cfg.results_dir, "scaling.png"))
    print(markdown_table(runs))
    print(f"wrote {table_path} and {os.path.join(cfg.results_dir, 'scaling.png')}")
    return runs


if __name__ == "__main__":
    main()
