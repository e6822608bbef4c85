"""How fast the people of a data set move: per action and style, the median / p10 / p90 of the
motions' root speed (m/s, standing frames included), their moving speed, cadence (steps/min),
step length (m), pelvis bounce and arm swing (m), as synthetic/speeds.py measures them;
--skating adds the data set's own feet (metrics.py: toe skating cm/s, toe speed where its
contact channels say planted, GMD's skating ratio) over all its motions and over the gait motions of the table.

    python bench/bench_speeds.py dataset/synthetic
    python bench/bench_speeds.py dataset/bandai --skating

Reads labels.json: the embedded set's single-action motions by their speed parameter, a
prepared take by its content and style (mirrored copies left out).
"""
import argparse
import json
import os
import sys
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import metrics  # noqa: E402
import utils  # noqa: E402
from synthetic.speeds import SpeedRange, dataset_gaits, motion_label  # noqa: E402

GAITS = ("walk", "jog", "run", "walk_backward", "dash", "walk-turn-left", "walk-turn-right", "walk-back")


def _cell(values, digits: int = 2) -> str:
    r = SpeedRange.of(values)
    return f"{r.median:.{digits}f} ({r.p10:.{digits}f}-{r.p90:.{digits}f})"


def print_table(rows: list, min_count: int) -> None:
    groups = defaultdict(list)
    for action, style, m in rows:
        groups[(action, style)].append(m)
        groups[(action, "(all)")].append(m)
    print("| action | style | n | speed m/s median (p10-p90) | moving speed m/s | cadence steps/min | step length m "
          "| bounce m | arm swing m |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (action, style), ms in sorted(groups.items(), key=lambda kv: (GAITS.index(kv[0][0]) if kv[0][0] in GAITS
                                                                      else 99, kv[0])):
        if len(ms) < min_count and style != "(all)":
            continue
        print(f"| {action} | {style} | {len(ms)} | {_cell([m.speed for m in ms])} | "
              f"{_cell([m.moving_speed for m in ms])} | {_cell([m.cadence for m in ms], 0)} | "
              f"{_cell([m.step_length for m in ms])} | {_cell([m.bounce for m in ms], 3)} | "
              f"{_cell([m.arm_swing for m in ms])} |")


def skating(root: str, actions: set) -> None:
    """The set's own feet: toe skating (cm/s), toe speed where its contact channels say planted
    (cm/s) and GMD's skating ratio, over all its motions and over the measured gait motions."""
    with open(os.path.join(root, "labels.json")) as fh:
        labels = json.load(fh)
    rows = []
    for motion in sorted(labels):
        action, _, usable = motion_label(labels[motion])
        features = np.load(os.path.join(root, "new_joint_vecs", motion + ".npy"))  # (T, 263)
        joints = utils.features_to_joints(features)
        rows.append((usable and action in actions, metrics.toe_skating_speed(joints),
                     metrics.flagged_toe_speed(joints, features), metrics.foot_skating_ratio(joints)))
    for name, keep in (("all motions", lambda r: True), ("gait motions", lambda r: r[0])):
        kept = np.array([r[1:] for r in rows if keep(r)], dtype=np.float64).reshape(-1, 3)
        print(f"{name} ({len(kept)}): toe skating {np.nanmean(kept[:, 0]):.2f} cm/s, planted-flag toe speed "
              f"{np.nanmean(kept[:, 1]):.2f} cm/s, GMD skating ratio {np.nanmean(kept[:, 2]):.4f}")


def make_cli_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", nargs="?", default="dataset/synthetic",
                        help="a HumanML3D-layout folder with labels.json")
    parser.add_argument("--actions", nargs="*", default=list(GAITS), help="actions (contents) to measure")
    parser.add_argument("--min_count", type=int, default=4, help="leave out styles with fewer motions")
    parser.add_argument("--skating", action="store_true", help="also the data set's own toe skating")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = make_cli_parser().parse_args(argv)
    if not os.path.isfile(os.path.join(args.root, "labels.json")):
        sys.exit(f"error: {args.root} has no labels.json; pass a built data set folder (python -m synthetic "
                 "or prepare_data.py makes one)")
    print(f"{args.root}:")
    print_table(dataset_gaits(args.root, set(args.actions)), args.min_count)
    if args.skating:
        skating(args.root, set(args.actions))


if __name__ == "__main__":
    main()
