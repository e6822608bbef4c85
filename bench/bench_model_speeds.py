"""How fast a trained model's people move: each prompt sampled with several seeds, its motions'
speed, cadence and step length (synthetic/speeds.py's gait_measures), beside a reference data
set's takes of the same action (the real Bandai Namco takes by default).

    python bench/bench_model_speeds.py --checkpoint_dir checkpoints --reference dataset/bandai

A motion's speed is the median horizontal pelvis speed over all its frame steps (standing ones
included), as the data set tables measure it. The verdicts are issue 21's targets: the walk
prompts' median within the reference walks' p10-p90, the run prompts' median at or above the
reference runs' p10. Prints a table, writes results/bench_model_speeds.json (cfg.results_dir).
"""
from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config import config_from_args, make_parser  # noqa: E402
from bench.json_report import write_json_report  # noqa: E402
from pipeline import Composite, SamplingOptions  # noqa: E402
from synthetic.speeds import SpeedRange, dataset_gaits, gait_measures  # noqa: E402

PROMPTS = {"walk": ("a person walks forward", "a person walks forward slowly", "a person walks forward briskly"),
           "run": ("a person runs forward", "a person runs forward quickly", "a person runs forward slowly")}


def make_cli_parser():
    parser = make_parser(__doc__.split("\n\n")[0], prog="bench_model_speeds.py")
    parser.add_argument("--reference", default="dataset/bandai", help="prepared data set of the reference takes")
    parser.add_argument("--seeds", type=int, default=8, help="samples per prompt (seeds cfg.seed .. + n-1)")
    parser.add_argument("--length", type=int, default=120, help="frames per sample (120: 6 s at 20 fps)")
    return parser


def sample_speeds(composite: Composite, prompt: str, seeds: list[int], length: int) -> list[dict]:
    rows = []
    for seed in seeds:
        joints = composite.sample(prompt, length, SamplingOptions(seed=seed)).motions[0].joints
        m = gait_measures(joints, composite.cfg.fps)
        rows.append(dict(speed=m.speed, moving_speed=m.moving_speed, cadence=m.cadence, step_length=m.step_length))
    return rows


def reference_ranges(root: str) -> dict[str, SpeedRange]:
    """Per action of PROMPTS: the reference takes' speed percentiles (NaN without the data set)."""
    if not os.path.isfile(os.path.join(root, "labels.json")):
        return {action: SpeedRange.of([]) for action in PROMPTS}
    gaits = dataset_gaits(root, set(PROMPTS))
    return {action: SpeedRange.of([m.speed for a, _, m in gaits if a == action]) for action in PROMPTS}


def verdict(action: str, median: float, ref: SpeedRange) -> str:
    if not np.isfinite(ref.p10):
        return "no reference"
    if action == "walk":
        ok = ref.p10 <= median <= ref.p90
        return f"{'met' if ok else 'missed'}: within the reference walks' p10-p90 {ref.p10:.2f}-{ref.p90:.2f}"
    ok = median >= ref.p10
    return f"{'met' if ok else 'missed'}: at or above the reference runs' p10 {ref.p10:.2f}"


def main(argv=None) -> int:
    parser = make_cli_parser()
    args = parser.parse_args(argv)
    cfg = config_from_args(args, parser)
    composite = Composite.from_checkpoints(cfg)
    seeds = [cfg.seed + i for i in range(args.seeds)]
    refs = reference_ranges(args.reference)
    report = {"checkpoint_dir": cfg.checkpoint_dir, "reference": args.reference, "length": args.length,
              "seeds": len(seeds), "prompts": {}, "actions": {}}
    print(f"| prompt | speed m/s median (p10-p90) | cadence steps/min | step length m |\n|---|---|---|---|")
    for action, prompts in PROMPTS.items():
        speeds = []
        for prompt in prompts:
            rows = sample_speeds(composite, prompt, seeds, args.length)
            r = SpeedRange.of([row["speed"] for row in rows])
            report["prompts"][prompt] = dict(rows=rows, speed=r.__dict__)
            speeds += [row["speed"] for row in rows]
            cadence = np.nanmedian([row["cadence"] for row in rows])
            step = np.nanmedian([row["step_length"] for row in rows])
            print(f"| {prompt} | {r.median:.2f} ({r.p10:.2f}-{r.p90:.2f}) | {cadence:.0f} | {step:.2f} |")
        median = float(np.median(speeds))
        ref = refs[action]
        report["actions"][action] = dict(median=median, reference=ref.__dict__, verdict=verdict(action, median, ref))
        print(f"| **{action}, all prompts** | {median:.2f} | reference {ref.median:.2f} ({ref.p10:.2f}-{ref.p90:.2f}) "
              f"| {report['actions'][action]['verdict']} |")
    path = write_json_report(report, os.path.join(cfg.results_dir, "bench_model_speeds.json"))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
