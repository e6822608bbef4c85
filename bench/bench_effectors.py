"""End-effector targets (effectors.py): how well they are met and how much of the motion they change.

    python bench/bench_effectors.py                          # tiny random-weight models, a few seconds each
    python bench/bench_effectors.py --checkpoint_dir checkpoints --seeds 5

For each seed: a motion without targets, then the same seed with targets taken from it and moved
(right wrist +(0.10, 0.15, 0.05) m, left toe 0.10 m up, head 0.05 m down in y only, pelvis 0.06 m
down in y only) at frames 30/50/70/90 of a 120-frame motion. Printed per model: the delivered,
pre-IK and raw errors (metres over the pinned axes, max over reachable pins), the share of
reachable pins, and the mean joint change against the untargeted motion over frames further
than 0.5 s from every target (absolute, and root-relative: the pose alone), and the peak
acceleration of the pinned joints within 0.5 s of the targets against the untargeted motion's,
max over seeds.
The same for a 12 s timeline with the targets in two diffusion windows.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

sys.path[:0] = [os.path.join(os.path.dirname(__file__), ".."), os.path.join(os.path.dirname(__file__), "..", "tests")]

from effectors import JointPins, check_joint_pins, joint_pin_distances  # noqa: E402
from pipeline import SamplingOptions  # noqa: E402
from timeline import generate_timeline  # noqa: E402

JOINTS = ["right_wrist", "left_foot", "head", "pelvis"]
OFFSETS = np.array([[0.10, 0.15, 0.05], [0.0, 0.10, 0.0], [0.0, -0.05, 0.0], [0.0, -0.06, 0.0]])
AXES = ["xyz", "xyz", "y", "y"]
WINDOW = 10  # frames: +-0.5 s


def outside(joints, reference, frames) -> tuple[float, float]:
    far = np.ones(len(joints), dtype=bool)
    for f in frames:
        far[max(0, f - WINDOW):f + WINDOW + 1] = False
    absolute = np.linalg.norm(joints[far] - reference[far], axis=-1).mean()
    pose = np.linalg.norm((joints - joints[:, :1])[far] - (reference - reference[:, :1])[far], axis=-1).mean()
    return float(absolute), float(pose)


def measure(make, frames) -> dict:
    """make(joint_pins) -> result with .joints / .control_errors; targets from the untargeted motion."""
    base = make(None)
    idx = [0 if name == "pelvis" else {"right_wrist": 21, "left_foot": 10, "head": 15}[name] for name in JOINTS]
    pins = JointPins(JOINTS, frames, base.joints[frames, idx] + OFFSETS, AXES)
    result = make(pins)
    errors = result.control_errors
    reachable = np.array(errors["joint_pin_reachable"])
    delivered = joint_pin_distances(result.joints, check_joint_pins(pins, len(result.joints)))
    absolute, pose = outside(result.joints, base.joints, frames)
    near = np.zeros(len(base.joints) - 2, dtype=bool)
    for f in frames:
        near[max(0, f - WINDOW - 1):f + WINDOW] = True
    accel = lambda j: np.linalg.norm(np.diff(j[:, idx], 2, axis=0), axis=-1)[near].max() * 400.0  # m/s^2 at 20 fps
    return dict(accel=accel(result.joints), accel_base=accel(base.joints),delivered=float(delivered[reachable].max()) if reachable.any() else float("nan"),
                pre_ik=errors["pre_ik_joint_pin_error_max"], raw=errors["raw_joint_pin_error_max"],
                reachable=float(reachable.mean()), outside=absolute, outside_pose=pose)


def report(name: str, rows: list[dict]) -> None:
    agg = {k: (np.nanmax([r[k] for r in rows]) if k != "reachable" else np.mean([r[k] for r in rows])) for k in rows[0]}
    print(f"{name:34s} delivered {agg['delivered'] * 100:6.2f} cm | pre-IK {agg['pre_ik'] * 100:6.2f} cm | "
          f"raw {agg['raw'] * 100:6.1f} cm | reachable {agg['reachable']:.0%} | outside +-0.5 s: "
          f"{agg['outside'] * 100:5.2f} cm (pose {agg['outside_pose'] * 100:5.2f} cm) | peak accel of the pinned joints "
          f"within 0.5 s: {agg['accel']:.0f} m/s^2 (untargeted {agg['accel_base']:.0f})")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint_dir", default=None, help="a trained model (default: tiny random-weight models)")
    parser.add_argument("--seeds", type=int, default=3, help="motions per model (seeds 0..N-1)")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    if args.checkpoint_dir:
        from config import CompositeConfig
        from pipeline import Composite
        models = {"trained": Composite.from_checkpoints(CompositeConfig(checkpoint_dir=args.checkpoint_dir))}
    else:
        from test_timeline import build
        models = {"random weights (out std 0.05)": build(0.05), "fresh in-betweener (interpolation)": build(0.0)}
    frames = np.array([30, 50, 70, 90])
    for name, model in models.items():
        rows = [measure(lambda p, s=seed: model.sample("a person waves", 120, SamplingOptions(seed=s),
                                                      joint_pins=p).motions[0], frames) for seed in range(args.seeds)]
        report(f"{name}, 6 s", rows)
        segments = [("a person walks forward", 6.0), ("a person waves", 6.0)]
        rows = [measure(lambda p, s=seed: generate_timeline(model, segments, SamplingOptions(seed=s), joint_pins=p),
                        np.array([40, 100, 160, 220])) for seed in range(args.seeds)]
        report(f"{name}, 12 s timeline", rows)


if __name__ == "__main__":
    main()
