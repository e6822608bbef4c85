"""Foot cleanup, measured: toe skating, jerk and foot penetration of generated motions before and
after `cleanup_feet` (feet.py), beside ground truth, and the same with world pins and a root path.

    python bench/bench_feet.py --checkpoint_dir /path/to/set --dataset_root dataset/bandai \
        --dataset_kind humanml3d --min_motion_length 24 --num_prompts 50

Test-split captions and lengths of --dataset_root (lengths up to max_generate_length), one
motion each (seed cfg.seed + i); the cleaned motion is the raw one through feet.clean_feet (what
SamplingOptions(cleanup_feet=True) returns, tests/test_feet.py). Columns:

- Toe skate cm/s: Kimodo's foot skating from height (NVIDIA 2026), metrics.toe_skating_speed:
  mean horizontal toe speed over steps where the toe is within 5 cm of the floor, no threshold.
- GMD ratio: metrics.foot_skating_ratio. Jerk m/s^3: metrics.jerk. Penetr. cm: metrics.foot_penetration.
- Control rows, on the test motions that stay in place (ground-truth root travels < IN_PLACE_M):
  their own last pose pinned in world space PIN offsets to the side at the last frame; and on
  the walking ones, a root path along a CIRCLE_RADIUS circle at the ground truth's own speed.
  Delivered error: control.control_errors of the returned (cleaned) joints (pin_root_error_max;
  for the path, trajectory_error_mean / _max; raw_* and correction_* beside them); the targets
  compare cleaned toe skating with the same motions' ground truth.
- Disturbed real takes (no model needed; what the cleanup does to a known fault): the test
  takes themselves with their root dragged sideways 0.5 m and 1.5 m over the take (what a root
  correction does to planted feet), and with a smooth random root-velocity error of 0.25 m/s
  (the kind of mismatch between root and legs that makes generated feet skate); cleaned with
  their own contact channels.
Prints a table and writes results/bench_feet.json (cfg.results_dir). Without checkpoints in
--checkpoint_dir only the disturbed-takes rows run.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import replace

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import metrics  # noqa: E402
from bench.json_report import write_json_report  # noqa: E402
from scipy.ndimage import gaussian_filter1d  # noqa: E402

from config import CompositeConfig, config_from_args, make_parser  # noqa: E402
from dataset import first_caption_motions  # noqa: E402
from feet import clean_feet  # noqa: E402
from pipeline import Composite, KeyframePins, SamplingOptions  # noqa: E402
from runtime import CheckpointError  # noqa: E402
from utils import FOOT_SLICE, features_to_joints  # noqa: E402

IN_PLACE_M = 0.3  # m: a test motion whose root ends closer than this to where it started stays in place
PINS = (0.5, 1.5)  # m: world pins this far to the side of an in-place motion's own last pose
CIRCLE_RADIUS = 3.0  # m
WALK_WORDS = ("walk", "run", "dash")


# ---------------------------------------------------------------------------------------
def test_items(cfg: CompositeConfig, limit: int) -> list[dict]:
    """Test-split motions: id, caption (each file's first), ground-truth joints (T, 22, 3), length."""
    items = first_caption_motions(cfg.dataset_root, "test", cfg.min_motion_length, cfg.max_generate_length, limit)
    return [dict(id=it["id"], caption=it["caption"], joints=features_to_joints(it["features"].astype(np.float64)),
                 channels=it["features"][:, FOOT_SLICE], length=len(it["features"])) for it in items]


def quality(joints_list: list[np.ndarray], fps: int) -> dict:
    """Mean toe skating (cm/s), GMD ratio, jerk (m/s^3), penetration (cm) over motions."""
    def mean(values):
        values = [v for v in values if np.isfinite(v)]
        return float(np.mean(values)) if values else float("nan")
    return dict(toe_skate_cm_s=mean([metrics.toe_skating_speed(j, fps) for j in joints_list]),
                gmd_ratio=mean([metrics.foot_skating_ratio(j, fps) for j in joints_list]),
                jerk=mean([metrics.jerk(j, fps) for j in joints_list]),
                penetration_cm=100 * mean([metrics.foot_penetration(j) for j in joints_list]))


def cleaned(motion, fps: int) -> np.ndarray:
    return clean_feet(motion.joints, motion.features[:, FOOT_SLICE], fps).joints


def max_bone_change(raw: list[np.ndarray], clean: list[np.ndarray]) -> float:
    """Largest change (m) of any bone's length in any frame."""
    return max(float(np.abs(metrics.bone_lengths(c) - metrics.bone_lengths(r)).max()) for r, c in zip(raw, clean))


# ---------------------------------------------------------------------------------------
def text_rows(composite: Composite, items: list[dict], cfg: CompositeConfig, options: SamplingOptions) -> dict:
    """Ground truth, raw and cleaned motions for the items' captions and lengths."""
    raw, clean = [], []
    for i, item in enumerate(items):
        motion = composite.sample(item["caption"], item["length"], replace(options, seed=cfg.seed + i)).motions[0]
        raw.append(motion.joints)
        clean.append(cleaned(motion, cfg.fps))
    return dict(ground_truth=quality([it["joints"] for it in items], cfg.fps), raw=quality(raw, cfg.fps),
                cleaned=quality(clean, cfg.fps), bone_change_m=max_bone_change(raw, clean), count=len(items))


def disturbed_rows(items: list[dict], cfg: CompositeConfig) -> dict:
    """The items' real takes, disturbed (dragged / root-velocity error), raw and cleaned."""
    rng = np.random.default_rng(cfg.seed)
    cases: dict = {"dragged 0.5 m sideways": [], "dragged 1.5 m sideways": [], "root velocity error 0.25 m/s": []}
    for item in items:
        joints, steps = item["joints"], len(item["joints"])
        for metres in (0.5, 1.5):
            dragged = joints.copy()
            dragged[..., 0] += np.linspace(0.0, metres, steps)[:, None]
            cases[f"dragged {metres:g} m sideways"].append((dragged, item["channels"]))
        velocity = gaussian_filter1d(rng.normal(size=(steps, 2)), 4.0, axis=0)
        velocity *= 0.25 / max(velocity.std(), 1e-9)  # m/s
        wobbly = joints.copy()
        wobbly[..., [0, 2]] += np.cumsum(velocity, axis=0)[:, None] / cfg.fps
        cases["root velocity error 0.25 m/s"].append((wobbly, item["channels"]))
    out = {}
    for name, motions in cases.items():
        raw = [m for m, _ in motions]
        clean = [clean_feet(m, c, cfg.fps).joints for m, c in motions]
        out[name] = dict(ground_truth=quality([it["joints"] for it in items], cfg.fps), raw=quality(raw, cfg.fps),
                         cleaned=quality(clean, cfg.fps), bone_change_m=max_bone_change(raw, clean), count=len(items))
    return out


def circle_path(joints: np.ndarray) -> np.ndarray:
    """(T, 2) xz: a CIRCLE_RADIUS circle from the origin (heading +z, turning towards +x) travelled
    at the ground truth's own root speed."""
    step = np.linalg.norm(np.diff(joints[:, 0, [0, 2]], axis=0), axis=-1)
    angle = np.concatenate([[0.0], np.cumsum(step)]) / CIRCLE_RADIUS
    return CIRCLE_RADIUS * np.stack([1.0 - np.cos(angle), np.sin(angle)], axis=-1)


def control_row(composite: Composite, items: list[dict], cfg: CompositeConfig, options: SamplingOptions,
                goal) -> dict:
    """One control case over items: goal(item) -> (pins, trajectory); raw / cleaned quality,
    ground truth's, and the delivered control errors (mean over motions of each key)."""
    if not items:
        return dict(count=0)
    raw, clean, errors, clean_errors = [], [], [], []
    for i, item in enumerate(items):
        pins, trajectory = goal(item)
        motion = composite.sample(item["caption"], item["length"], replace(options, seed=cfg.seed + i), pins=pins,
                                  trajectory=trajectory).motions[0]
        raw.append(motion.joints)
        errors.append(motion.control_errors)
        clean_motion = composite.sample(item["caption"], item["length"],
                                        replace(options, seed=cfg.seed + i, cleanup_feet=True), pins=pins,
                                        trajectory=trajectory).motions[0]
        clean.append(clean_motion.joints)
        clean_errors.append(clean_motion.control_errors)
    mean_errors = lambda rows: {k: float(np.mean([r[k] for r in rows])) for k in rows[0]
                                if all(isinstance(r.get(k), float) for r in rows)}
    return dict(ground_truth=quality([it["joints"] for it in items], cfg.fps), raw=quality(raw, cfg.fps),
                cleaned=quality(clean, cfg.fps), raw_errors=mean_errors(errors), delivered=mean_errors(clean_errors),
                bone_change_m=max_bone_change(raw, clean), count=len(items))


def pin_goal(offset: float):
    def goal(item):
        pose = item["joints"][-1:].copy()
        pose[..., 0] += offset
        return KeyframePins(pose, np.array([item["length"] - 1]), space="world"), None
    return goal


# ---------------------------------------------------------------------------------------
def print_rows(name: str, row: dict) -> None:
    if not row["count"]:
        print(f"\n{name}: no such test motions")
        return
    print(f"\n{name} ({row['count']} motions; largest bone-length change from cleanup {row['bone_change_m']:.1e} m)")
    print(f"  {'':14s} {'toe skate cm/s':>15s} {'GMD ratio':>10s} {'jerk m/s^3':>11s} {'penetr. cm':>11s}")
    for key in ("ground_truth", "raw", "cleaned"):
        q = row[key]
        print(f"  {key:14s} {q['toe_skate_cm_s']:15.2f} {q['gmd_ratio']:10.3f} {q['jerk']:11.1f} "
              f"{q['penetration_cm']:11.3f}")
    for key, label in (("raw_errors", "the uncleaned run"), ("delivered", "the cleaned run")):
        if key in row:
            print(f"  control_errors of {label} (m, degrees; mean over motions): "
                  + ", ".join(f"{k} {v:.4f}" for k, v in row[key].items()))


def verdicts(report: dict) -> list[str]:
    text = report["text"]
    gt, raw, clean = text["ground_truth"], text["raw"], text["cleaned"]
    lines = [("toe skating after cleanup <= ground truth's", clean["toe_skate_cm_s"] <= gt["toe_skate_cm_s"],
              f"{clean['toe_skate_cm_s']:.2f} vs {gt['toe_skate_cm_s']:.2f} cm/s (raw {raw['toe_skate_cm_s']:.2f})"),
             ("jerk within +10% of raw", clean["jerk"] <= 1.1 * raw["jerk"], f"{clean['jerk']:.1f} vs {raw['jerk']:.1f}"),
             ("foot penetration not worse", clean["penetration_cm"] <= raw["penetration_cm"] + 1e-9,
              f"{clean['penetration_cm']:.3f} vs {raw['penetration_cm']:.3f} cm")]
    for key, row in report["control"].items():
        if not row["count"]:
            continue
        delivered = max(v for k, v in row["delivered"].items() if k in ("pin_root_error_max", "trajectory_error_max"))
        limit = 1.5 * row["ground_truth"]["toe_skate_cm_s"]
        lines += [(f"{key}: delivered error < 1 cm", delivered < 0.01, f"{delivered * 100:.3f} cm"),
                  (f"{key}: toe skating after cleanup <= 1.5x ground truth's", row["cleaned"]["toe_skate_cm_s"] <= limit,
                   f"{row['cleaned']['toe_skate_cm_s']:.2f} vs {limit:.2f} cm/s (raw {row['raw']['toe_skate_cm_s']:.2f})")]
    return [f"  {'MET ' if ok else 'MISSED'}  {name}: {numbers}" for name, ok, numbers in lines]


def make_cli_parser():
    parser = make_parser(__doc__.split("\n\n")[0], prog="bench_feet.py")
    parser.add_argument("--num_prompts", type=int, default=50, help="test-split motions for the text rows")
    parser.add_argument("--num_control", type=int, default=15, help="motions per control case")
    parser.add_argument("--mode", default="composite", choices=("composite", "interpolate"),
                        help="how the generated rows sample (interpolate: the GPT's keyframes, no diffusion)")
    parser.add_argument("--interpolation", default="cubic", choices=("linear", "cubic"),
                        help="the curve of --mode interpolate")
    return parser


def main(argv=None) -> int:
    parser = make_cli_parser()
    args = parser.parse_args(argv)
    cfg = config_from_args(args, parser)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1))))
    items = test_items(cfg, 10 ** 9)
    began = time.perf_counter()
    print(f"{len(items)} usable test motions in {cfg.dataset_root}")
    report = dict(checkpoint_dir=cfg.checkpoint_dir, dataset_root=cfg.dataset_root)
    report["disturbed"] = disturbed_rows(items[:args.num_prompts], cfg)
    for name, row in report["disturbed"].items():
        print_rows(f"real test takes, {name}", row)
    try:
        composite = Composite.from_checkpoints(cfg)
    except CheckpointError as exc:
        print(f"\nno generated rows: {exc}")
        return save(report, cfg)
    print(f"\nmodels: {cfg.checkpoint_dir}; device {composite.device}; mode {args.mode}"
          + (f" ({args.interpolation} interpolation)" if args.mode == "interpolate" else ""))
    report["device"] = str(composite.device)
    options = SamplingOptions(mode=args.mode, interpolation=args.interpolation, cleanup_feet=False)
    report["options"] = dict(mode=args.mode, interpolation=args.interpolation if args.mode == "interpolate" else None)
    report["text"] = text_rows(composite, items[:args.num_prompts], cfg, options)
    print_rows("test-split captions", report["text"])
    travel = lambda it: float(np.linalg.norm(it["joints"][-1, 0, [0, 2]] - it["joints"][0, 0, [0, 2]]))
    in_place = [it for it in items if travel(it) < IN_PLACE_M][:args.num_control]
    walks = [it for it in items if any(w in it["caption"] for w in WALK_WORDS) and travel(it) > 1.0][:args.num_control]
    report["control"] = {}
    for offset in PINS:
        key = f"world pin {offset:g} m off an in-place motion"
        report["control"][key] = control_row(composite, in_place, cfg, options, pin_goal(offset))
        print_rows(key, report["control"][key])
    key = f"{CIRCLE_RADIUS:g} m-radius circle path"
    report["control"][key] = control_row(composite, walks, cfg, options, lambda it: (None, circle_path(it["joints"])))
    print_rows(key, report["control"][key])
    report["verdicts"] = verdicts(report)
    print("\ntargets (issue 20):\n" + "\n".join(report["verdicts"]))
    print(f"\n{time.perf_counter() - began:.0f} s")
    return save(report, cfg)


def save(report: dict, cfg: CompositeConfig) -> int:
    path = write_json_report(report, os.path.join(cfg.results_dir, "bench_feet.json"))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
