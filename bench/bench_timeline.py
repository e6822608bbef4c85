"""Timelines and control, measured: what each segment's text says, smoothness at the seams,
root and trajectory errors, and time and memory at 15/30/60 s.

    python bench/bench_timeline.py                                  # checkpoints in --checkpoint_dir
    python bench/bench_timeline.py --checkpoint_dir /path/to/set --lengths 15,30,60

Uses the trained checkpoints in --checkpoint_dir when there are any, else random weights at the
config's sizes (then the per-segment checks mean nothing, the seam, control and time numbers
still do). Prints the numbers and writes results/bench_timeline.json (cfg.results_dir).

- Segment checks, on the joints: a walking-forward segment moves the root forward (metres
  along the facing at its start), a waving segment raises that hand's wrist above its shoulder
  (fraction of frames), a sitting-down segment lowers the pelvis (lowest vs first frame), a
  jump lifts it.
- Seams: the worst joint's acceleration (m/s^2) within 3 frames of every segment boundary and
  over every diffusion-window overlap, against the ground-truth range: the same measure over
  the data set's motions (percentiles), and the generated motion away from seams.
- Control: world-space pins (root position error at pinned frames) and a trajectory (mean
  root error at its frames).
- Time per length (seconds, and seconds per second of motion: constant when linear) and peak
  memory (each length in a fresh process: peak RSS above the loaded models, or CUDA's peak).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from config import CompositeConfig, config_from_args, make_parser  # noqa: E402
from control import to_world  # noqa: E402
from pipeline import Composite, KeyframePins, SamplingOptions  # noqa: E402
from runtime import CheckpointError  # noqa: E402
from timeline import TimelineResult, generate_timeline  # noqa: E402
from utils import facing_direction  # noqa: E402

STORY = [("a person walks forward", 4.0), ("a person waves with the right hand", 3.0), ("a person sits down", 3.5)]
CYCLE = ["a person walks forward", "a person waves with the right hand", "a person jumps",
         "a person walks backwards", "a person raises both arms", "a person turns around"]
SEAM_REACH = 3  # frames either side of a segment boundary
PELVIS, R_SHOULDER, L_SHOULDER, R_WRIST, L_WRIST = 0, 17, 16, 21, 20


# ---------------------------------------------------------------------------------------
def load(cfg: CompositeConfig) -> tuple[Composite, str]:
    try:
        return Composite.from_checkpoints(cfg), f"trained checkpoints in {cfg.checkpoint_dir}"
    except CheckpointError as exc:
        print(f"no usable checkpoints ({exc}); random weights at the config's sizes", file=sys.stderr)
    from text_encoder import load_text_encoder
    torch.manual_seed(0)
    mean, std = np.zeros(263, np.float32), np.ones(263, np.float32)
    stats = [os.path.join(cfg.dataset_root, name) for name in ("Mean.npy", "Std.npy")]
    if all(os.path.exists(p) for p in stats):
        mean, std = (np.load(p).astype(np.float32) for p in stats)
    return Composite.build(cfg, load_text_encoder(cfg), mean, std), "random weights (segment checks are meaningless)"


def accelerations(joints: np.ndarray, fps: int) -> np.ndarray:
    """Worst joint's acceleration magnitude per frame (T-2,) in m/s^2."""
    return np.linalg.norm(np.diff(joints, 2, axis=0), axis=-1).max(-1) * fps ** 2


def ground_truth_accelerations(cfg: CompositeConfig, limit: int = 300) -> tuple[np.ndarray, str]:
    """Per-frame accelerations of up to `limit` data-set motions (new_joints), or of freshly
    generated embedded motions when the data set is not on disk."""
    files = sorted(glob.glob(os.path.join(cfg.dataset_root, "new_joints", "*.npy")))[:limit]
    if files:
        return np.concatenate([accelerations(np.load(f).astype(np.float64), cfg.fps) for f in files]), \
            f"{len(files)} motions of {cfg.dataset_root}"
    from synthetic import generate_motion
    motions = [generate_motion(cfg.synthetic_seed, i, cfg.fps).joints for i in range(min(limit, 100))]
    return np.concatenate([accelerations(m, cfg.fps) for m in motions]), f"{len(motions)} embedded motions"


def segment_check(text: str, joints: np.ndarray, fps: int) -> dict:
    """What the text says, measured on the segment's joints (T, 22, 3)."""
    words = text.lower()
    seconds = len(joints) / fps
    out: dict = {}
    if "walk" in words and "forward" in words:
        forward = facing_direction(torch.from_numpy(joints[:1].astype(np.float64)))[0].numpy()[[0, 2]]
        move = joints[-1, PELVIS, [0, 2]] - joints[0, PELVIS, [0, 2]]
        along = float(move @ forward)
        side = float(abs(move[0] * forward[1] - move[1] * forward[0]))
        out.update(check="root moves forward", forward_m=along, sideways_m=side,
                   passed=along > 0.25 * seconds and along > 2 * side)
    elif "wave" in words:
        right = "left" not in words
        wrist, shoulder = (R_WRIST, R_SHOULDER) if right else (L_WRIST, L_SHOULDER)
        raised = joints[:, wrist, 1] > joints[:, shoulder, 1]
        other = joints[:, L_WRIST if right else R_WRIST, 1] > joints[:, L_SHOULDER if right else R_SHOULDER, 1]
        out.update(check=f"{'right' if right else 'left'} wrist above its shoulder",
                   fraction_raised=float(raised.mean()), other_hand_fraction=float(other.mean()),
                   passed=bool(raised.mean() >= 0.2))
    elif "sit" in words:
        drop = float(joints[0, PELVIS, 1] - joints[:, PELVIS, 1].min())
        out.update(check="pelvis lowers", pelvis_drop_m=drop, passed=drop > 0.25)
    elif "jump" in words:
        rise = float(joints[:, PELVIS, 1].max() - joints[0, PELVIS, 1])
        out.update(check="pelvis rises", pelvis_rise_m=rise, passed=rise > 0.1)
    else:
        out.update(check="n/a")
    return out


def seams(result, gt: np.ndarray) -> list[dict]:
    """Peak acceleration at every segment boundary and diffusion-window overlap vs ground truth."""
    acc = accelerations(result.joints, result.fps)  # acc[t] is centred on frame t + 1
    spans = [("segment", s.start - SEAM_REACH, s.start + SEAM_REACH) for s in result.segments[1:]]
    spans += [("window", start, prev_end) for (_, prev_end), (start, _) in
              zip(result.diffusion_windows[:-1], result.diffusion_windows[1:])]
    rows = []
    for kind, lo, hi in spans:
        peak = float(acc[max(lo - 1, 0):max(hi, lo + 1)].max())
        rows.append(dict(kind=kind, frames=[int(lo), int(hi)], peak_acc=peak,
                         gt_percentile=float((gt < peak).mean() * 100), within_gt_p99=peak <= np.percentile(gt, 99)))
    return rows


def child_run(cfg: CompositeConfig, seconds: float, seed: int) -> dict:
    """One timeline of `seconds` in this process: time and peak memory above the loaded models."""
    composite, _ = load(cfg)
    segments = [(CYCLE[i % len(CYCLE)], 5.0) for i in range(int(seconds // 5))]
    generate_timeline(composite, segments[:2], SamplingOptions(seed=seed))  # warm-up
    device = composite.device
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    start = time.perf_counter()
    result = generate_timeline(composite, segments, SamplingOptions(seed=seed))
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    out = dict(seconds=seconds, frames=len(result.joints), wall_s=wall, per_motion_second=wall / seconds,
               windows=len(result.diffusion_windows), gpt_windows=len(result.gpt_windows),
               timings={k: round(v, 4) for k, v in result.timings.items()},
               peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               rss_before_mb=rss_before, device=str(device))
    out["peak_extra_mb"] = out["peak_rss_mb"] - rss_before
    if device.type == "cuda":
        out["cuda_peak_extra_mb"] = (torch.cuda.max_memory_allocated() - base) / 2 ** 20
    return out


def control_numbers(composite: Composite, seed: int) -> dict:
    """Root error at world pins over a 20 s timeline, trajectory error on a 10 s circle."""
    reference = generate_timeline(composite, [("a person walks forward", 5.0)], SamplingOptions(seed=seed))
    frames = np.array([60, 200, 390])
    goals = to_world(reference.joints[[20, 50, 90]], 0.0, [0.0, 0.0])
    goals[..., 0] += np.array([1.0, 4.0, -2.0])[:, None]
    goals[..., 2] += np.array([3.0, 8.0, 12.0])[:, None]
    pinned = generate_timeline(composite, [("a person walks forward", 10.0), ("a person walks to the left", 10.0)],
                               SamplingOptions(seed=seed), pins=KeyframePins(goals, frames, space="world"))
    t = np.arange(200)
    circle = 2.0 * np.stack([1 - np.cos(t / 200 * 2 * np.pi), np.sin(t / 200 * 2 * np.pi)], axis=-1)  # 12.6 m
    traced = generate_timeline(composite, [("a person walks in a circle", 10.0)], SamplingOptions(seed=seed),
                               trajectory=circle)
    return dict(world_pins=pinned.control_errors, trajectory=traced.control_errors,
                pin_seam_peak_acc=float(accelerations(pinned.joints, pinned.fps).max()))


# ---------------------------------------------------------------------------------------
def parse_args(argv=None) -> tuple[argparse.Namespace, CompositeConfig]:
    parser = make_parser(__doc__.split("\n\n")[0], prog="bench_timeline.py")
    parser.add_argument("--lengths", default="15,30,60", help="timeline lengths in seconds to time")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    return args, config_from_args(args, parser)


def ground_truth_report(cfg: CompositeConfig) -> tuple[np.ndarray, dict]:
    """(per-frame ground-truth accelerations, their percentiles and source); prints the percentiles."""
    gt, gt_source = ground_truth_accelerations(cfg)
    gt_stats = {f"p{p}": float(np.percentile(gt, p)) for p in (50, 95, 99, 99.9)} | {"max": float(gt.max())}
    print(f"\nground-truth acceleration (worst joint, m/s^2) over {gt_source}: "
          + ", ".join(f"{k} {v:.1f}" for k, v in gt_stats.items()))
    return gt, dict(source=gt_source, **gt_stats)


def story_checks(composite: Composite, cfg: CompositeConfig) -> tuple[TimelineResult, list[dict]]:
    """(the STORY timeline, each segment's check of what its text says); prints the checks."""
    story = generate_timeline(composite, STORY, SamplingOptions(seed=cfg.seed))
    print(f"\nstory '{story.prompt}' ({len(story.joints)} frames):")
    checks = []
    for segment in story.segments:
        check = dict(text=segment.text, frames=[segment.start, segment.end],
                     **segment_check(segment.text, story.joints[segment.start:segment.end], cfg.fps))
        checks.append(check)
        numbers = ", ".join(f"{k} {v:.2f}" for k, v in check.items() if isinstance(v, float))
        verdict = "PASS" if check.get("passed") else "FAIL" if "passed" in check else ""
        print(f"  {segment.text:40s} {check['check']:32s} {numbers}  {verdict}")
    return story, checks


def seam_report(composite: Composite, cfg: CompositeConfig, story: TimelineResult, gt: np.ndarray,
                gt_stats: dict) -> dict:
    """Seams of the story and of a 60 s timeline against ground truth, and that timeline away
    from its seams; prints them."""
    long_segments = [(CYCLE[i % len(CYCLE)], 5.0) for i in range(12)]
    long = generate_timeline(composite, long_segments, SamplingOptions(seed=cfg.seed))
    rows = seams(story, gt) + seams(long, gt)
    acc = accelerations(long.joints, cfg.fps)
    near = np.zeros(len(acc), bool)
    for row in seams(long, gt):
        near[max(row["frames"][0] - 1, 0):row["frames"][1]] = True
    print(f"\nseams (peak worst-joint acceleration, m/s^2; ground truth p99 {gt_stats['p99']:.1f}, "
          f"max {gt_stats['max']:.1f}):")
    for row in rows:
        print(f"  {row['kind']:8s} frames {row['frames'][0]:5d}-{row['frames'][1]:5d}  {row['peak_acc']:7.1f}  "
              f"(ground-truth percentile {row['gt_percentile']:5.1f}{'' if row['within_gt_p99'] else ', ABOVE p99'})")
    away = dict(p99=float(np.percentile(acc[~near], 99)), max=float(acc[~near].max()))
    print(f"  the 60 s timeline away from seams: p99 {away['p99']:.1f}, max {away['max']:.1f}")
    return dict(rows=rows, away_from_seams=away,
                fraction_within_gt_p99=float(np.mean([r["within_gt_p99"] for r in rows])))


def control_report(composite: Composite, seed: int) -> dict:
    control = control_numbers(composite, seed)
    print(f"\ncontrol: world pins {fmt(control['world_pins'])}; trajectory {fmt(control['trajectory'])}")
    return control


def timing_report(lengths: str, argv=None) -> list[dict]:
    """Time and memory of one timeline per length, each in a fresh process (--child); prints them."""
    print("\ntime and memory per length (each in a fresh process):")
    passthrough = [a for a in (argv if argv is not None else sys.argv[1:])]
    timing = []
    for seconds in [float(s) for s in lengths.split(",") if s.strip()]:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), *passthrough, "--child", str(seconds)],
                              capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            print(f"  {seconds:g} s: failed: {proc.stderr.strip().splitlines()[-1:]}")
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        timing.append(row)
        memory = f"CUDA +{row['cuda_peak_extra_mb']:.0f} MB" if "cuda_peak_extra_mb" in row else \
            f"peak RSS +{row['peak_extra_mb']:.0f} MB over {row['rss_before_mb']:.0f} MB"
        print(f"  {seconds:5g} s ({row['frames']} frames, {row['windows']} diffusion / {row['gpt_windows']} GPT "
              f"windows): {row['wall_s']:.2f} s, {row['per_motion_second']:.3f} s per second of motion, {memory}")
    return timing


def save_report(report: dict, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(report, fh, indent=2, default=float)
    print(f"\nwrote {path}")


def main(argv=None) -> int:
    args, cfg = parse_args(argv)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1))))
    if args.child is not None:
        print(json.dumps(child_run(cfg, float(args.child), cfg.seed)))
        return 0
    composite, source = load(cfg)
    print(f"models: {source}; device {composite.device}")
    report: dict = dict(models=source, device=str(composite.device))
    gt, report["ground_truth_acc"] = ground_truth_report(cfg)
    story, report["segment_checks"] = story_checks(composite, cfg)
    report["seams"] = seam_report(composite, cfg, story, gt, report["ground_truth_acc"])
    report["control"] = control_report(composite, cfg.seed)
    report["timing"] = timing_report(args.lengths, argv)
    save_report(report, os.path.join(cfg.results_dir, "bench_timeline.json"))
    return 0


def fmt(errors: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in errors.items())


if __name__ == "__main__":
    sys.exit(main())
