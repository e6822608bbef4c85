"""Timelines and control, measured: what each segment's text says, smoothness at the seams,
root and trajectory errors, and time and memory at 15/30/60 s.

    python bench/bench_timeline.py                                  # checkpoints in --checkpoint_dir
    python bench/bench_timeline.py --checkpoint_dir /path/to/set --lengths 15,30,60

Uses the trained checkpoints in --checkpoint_dir when there are any, else random weights at the
config's sizes (then the per-segment checks and the seams, which are judged against ground
truth, mean nothing; the control and time numbers still do). Prints the numbers and writes
results/bench_timeline.json (cfg.results_dir).

- Segment checks, on the joints: a walking-forward segment moves the root forward (metres
  along the facing at its start), a waving segment raises that hand's wrist above its shoulder
  (fraction of frames), a sitting-down segment lowers the pelvis (lowest vs first frame), a
  jump lifts it.
- Seams (metrics.seam_displacement_ratio, transition_jerk), at every segment boundary and diffusion-window overlap: the worst
  ratio of a joint's step beyond the root's steady pace to ground truth's largest at the same root
  speed (above 1: a pop no real motion makes at that pace), and FlowMDM's Peak Jerk and Area Under
  the Jerk of the transitions (Barquero et al. 2024), beside ground truth's mean jerk.
- Feet: toe skating in cm/s near the floor (Kimodo's foot skate from height), the toe speed where
  the motion's own contact channels say planted, how often those agree with the height test, and
  GMD's ratio, for the timelines and for ground truth.
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
from bench.json_report import write_json_report  # noqa: E402
import metrics  # noqa: E402
from control import to_world  # noqa: E402
from pipeline import Composite, KeyframePins, SamplingOptions  # noqa: E402
from runtime import CheckpointError  # noqa: E402
from timeline import TimelineResult, generate_timeline  # noqa: E402
from utils import facing_direction, features_to_joints, joints_to_features  # noqa: E402

STORY = [("a person walks forward", 4.0), ("a person waves with the right hand", 3.0), ("a person sits down", 3.5)]
CYCLE = ["a person walks forward", "a person waves with the right hand", "a person jumps",
         "a person walks backwards", "a person raises both arms", "a person turns around"]
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


def ground_truth(cfg: CompositeConfig, limit: int = 300) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """(joints (T, 22, 3), features (T, 263)) of up to `limit` data-set motions (new_joint_vecs, the
    joints their features give, as the evaluation reads them), or of freshly generated embedded
    motions when the data set is not on disk; and where they came from."""
    files = sorted(glob.glob(os.path.join(cfg.dataset_root, "new_joint_vecs", "*.npy")))[:limit]
    if files:
        features = [np.load(f).astype(np.float64) for f in files]
        source = f"{len(files)} motions of {cfg.dataset_root}"
    else:
        from synthetic import generate_motion
        features = [joints_to_features(generate_motion(cfg.synthetic_seed, i, cfg.fps).joints)
                    for i in range(min(limit, 100))]
        source = f"{len(features)} embedded motions"
    return [(features_to_joints(f).astype(np.float64), f) for f in features if len(f) >= 4], source


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


def seam_frames(result: TimelineResult) -> list[tuple[str, int, int]]:
    """(kind, centre frame, reach in steps) of every segment boundary and diffusion-window overlap
    (an overlap's cross-fade can pop anywhere in it: its whole width is checked)."""
    spans = [("segment", s.start, metrics.SEAM_REACH) for s in result.segments[1:]]
    spans += [("window", (start + prev_end) // 2, (prev_end - start) // 2 + metrics.SEAM_REACH)
              for (_, prev_end), (start, _) in zip(result.diffusion_windows[:-1], result.diffusion_windows[1:])]
    return spans


def seams(result: TimelineResult, reference: metrics.SeamReference) -> dict:
    """Every seam's displacement ratio against ground truth (above 1 fails), and FlowMDM's Peak
    Jerk and Area Under the Jerk over the seams' transition curves."""
    spans = seam_frames(result)
    rows = []
    for kind, centre, reach in spans:
        ratio = metrics.seam_displacement_ratio(result.joints, centre, reference, reach)
        rows.append(dict(kind=kind, frame=int(centre), reach=int(reach), displacement_ratio=ratio, passed=ratio <= 1.0))
    curves = metrics.transition_jerk(result.joints, [c for _, c, _ in spans], result.fps)
    return dict(rows=rows, peak_jerk=metrics.peak_jerk(curves),
                area_under_jerk=metrics.area_under_jerk(curves, reference.jerk_level, result.fps))


def feet(joints: np.ndarray, features: np.ndarray, fps: int) -> dict:
    """Toe skating near the floor (cm/s), toe speed where the contact channels say planted (cm/s),
    their agreement with the height test, GMD's ratio: of one motion."""
    return dict(toe_skating_cm_s=metrics.toe_skating_speed(joints, fps),
                flagged_toe_speed_cm_s=metrics.flagged_toe_speed(joints, features, fps),
                contact_agreement=metrics.contact_agreement(joints, features),
                gmd_skating_ratio=metrics.foot_skating_ratio(joints, fps))


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


def ground_truth_report(cfg: CompositeConfig) -> tuple[metrics.SeamReference, dict]:
    """(the seam reference of the ground-truth motions, its summary and their feet); prints them."""
    motions, source = ground_truth(cfg)
    reference = metrics.seam_reference([j for j, _ in motions], cfg.fps)
    per_motion = [feet(j, f, cfg.fps) for j, f in motions]
    foot = {k: float(np.nanmean([m[k] for m in per_motion])) for k in per_motion[0]}
    print(f"\nground truth ({source}): mean jerk curve {reference.jerk_level:.0f} m/s^3 (FlowMDM's, the AUJ baseline); "
          f"steps per root speed bin {reference.steps.tolist()}; feet: {fmt(foot)}")
    return reference, dict(source=source, jerk_level=reference.jerk_level, steps_per_speed_bin=reference.steps.tolist(),
                           speed_edges=list(reference.speed_edges), feet=foot)


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


def seam_report(composite: Composite, cfg: CompositeConfig, story: TimelineResult,
                reference: metrics.SeamReference) -> dict:
    """Seams and feet of the story and of a 60 s timeline against ground truth; prints them."""
    long_segments = [(CYCLE[i % len(CYCLE)], 5.0) for i in range(12)]
    long = generate_timeline(composite, long_segments, SamplingOptions(seed=cfg.seed))
    out = {}
    print("\nseams (worst joint step beyond the root's pace / ground truth's largest at that root speed; "
          "above 1 fails) and feet:")
    for name, result in (("story", story), ("timeline_60s", long)):
        judged = seams(result, reference)
        judged["feet"] = feet(result.joints, result.features, cfg.fps)
        out[name] = judged
        for row in judged["rows"]:
            print(f"  {name:12s} {row['kind']:8s} frame {row['frame']:5d} (+-{row['reach']:2d})  "
                  f"ratio {row['displacement_ratio']:5.2f}  {'pass' if row['passed'] else 'FAIL (a pop)'}")
        print(f"  {name:12s} Peak Jerk {judged['peak_jerk']:.0f} m/s^3, Area Under the Jerk {judged['area_under_jerk']:.0f} "
              f"m/s^2 (ground truth's mean jerk {reference.jerk_level:.0f}); feet: {fmt(judged['feet'])}")
    rows = out["story"]["rows"] + out["timeline_60s"]["rows"]
    out["fraction_passed"] = float(np.mean([r["passed"] for r in rows])) if rows else float("nan")
    return out


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
    write_json_report(report, path)
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
    reference, report["ground_truth"] = ground_truth_report(cfg)
    story, report["segment_checks"] = story_checks(composite, cfg)
    report["seams"] = seam_report(composite, cfg, story, reference)
    report["control"] = control_report(composite, cfg.seed)
    report["timing"] = timing_report(args.lengths, argv)
    save_report(report, os.path.join(cfg.results_dir, "bench_timeline.json"))
    return 0


def fmt(values: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in values.items())


if __name__ == "__main__":
    sys.exit(main())
