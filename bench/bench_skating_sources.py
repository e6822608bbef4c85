"""Where foot skating enters the composite: the test split's motions through each part of the chain.

    python bench/bench_skating_sources.py --checkpoint_dir /path/to/set --dataset_root dataset/bandai \
        --dataset_kind humanml3d --min_motion_length 24 --num_prompts 132

Each row starts from the test motions' own keyframes (or the GPT's) and replaces one part:

- ground truth: the take itself (cropped to max_generate_length);
- real keyframes, cubic: the take's keyframe grid, cubic-interpolated (what the grid alone keeps);
- real keyframes -> VQ, cubic: the same keyframes through the VQ-VAE (encode, decode) first;
- real keyframes -> in-betweener: the trained in-betweener on the take's own keyframes;
- real keyframes -> VQ -> in-betweener: both;
- GPT keyframes, cubic / GPT keyframes -> in-betweener: the text-to-motion chain (the evaluation's
  AR-only cubic and composite rows), same caption and length, seed cfg.seed + i.

Columns: toe skating cm/s (metrics.toe_skating_speed, Kimodo 2026's "foot skate from height"),
GMD's skating ratio, jerk m/s^3, and the keyframe joint error (cm, mean over the keyframe
frames' root-relative joints against the take's) for the rows that change the keyframes.
Raw joints (no foot cleanup). Prints a table, writes results/bench_skating_sources.json.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import metrics  # noqa: E402
from bench.json_report import write_json_report  # noqa: E402
from config import config_from_args, make_parser  # noqa: E402
from dataset import first_caption_motions  # noqa: E402
from evaluation.scoring import nan_mean  # noqa: E402
from models.keyframes import interpolate_keyframes  # noqa: E402
from pipeline import Composite, SamplingOptions  # noqa: E402
from utils import delivered_joints, keyframe_indices  # noqa: E402

ROWS = ("ground truth", "real keyframes, cubic", "real keyframes -> VQ, cubic", "real keyframes -> in-betweener",
        "real keyframes -> VQ -> in-betweener", "GPT keyframes, cubic", "GPT keyframes -> in-betweener")


def make_cli_parser():
    parser = make_parser(__doc__.split("\n\n")[0], prog="bench_skating_sources.py")
    parser.add_argument("--num_prompts", type=int, default=132, help="test-split motions (each file's first caption)")
    return parser


def joints_of(composite: Composite, normalised: torch.Tensor) -> np.ndarray:
    """(T, 22, 3) joints, bones fitted as the pipeline delivers them, of normalised features (T, 263)."""
    return delivered_joints(composite.denormalise(normalised)).cpu().numpy()


@torch.inference_mode()
def chain_rows(composite: Composite, item: dict, seed: int) -> dict[str, tuple[np.ndarray, float]]:
    """Each row's joints (T, 22, 3) and keyframe error (cm, NaN where the keyframes are the take's)."""
    cfg, device = composite.cfg, composite.device
    mean, std = (torch.from_numpy(a).to(device) for a in (composite.mean, composite.std))
    real = (torch.from_numpy(item["features"]).to(device) - mean) / std  # (T, 263)
    T = len(real)
    idx = torch.from_numpy(keyframe_indices(T, composite.keyframe_interval)).to(device)  # (K,)
    mask = torch.zeros(1, T, real.shape[1], device=device)
    mask[0, idx] = 1.0
    real_kf = torch.zeros_like(mask)
    real_kf[0, idx] = real[idx]
    vq_kf = torch.zeros_like(mask)
    vq_kf[0, idx] = composite.vqvae.decode(composite.vqvae.encode(real[idx][None]))[0]
    options = SamplingOptions(seed=seed).resolve(cfg)
    text_emb = composite.text_encoder.encode([item["caption"]]).to(device)
    inbetween = lambda values: composite.inbetween(text_emb, values.clone(), mask, [T], options, None)[0]  # noqa: E731
    cubic = lambda values: interpolate_keyframes(values, mask, "cubic")[0]  # noqa: E731
    gpt_kf, _ = composite.keyframes(text_emb, [T], options, None, None)  # (1, T, 263), on the grid of mask
    nan = float("nan")
    # mean root-relative joint distance (cm) at the keyframe frames to the take's own keyframes
    keyframe_err_cm = lambda values: 100 * composite.keyframe_model_error(values[0], real, mask[0])  # noqa: E731
    vq_err, gpt_err = keyframe_err_cm(vq_kf), keyframe_err_cm(gpt_kf)
    return {"ground truth": (joints_of(composite, real), nan),
            "real keyframes, cubic": (joints_of(composite, cubic(real_kf)), nan),
            "real keyframes -> VQ, cubic": (joints_of(composite, cubic(vq_kf)), vq_err),
            "real keyframes -> in-betweener": (joints_of(composite, inbetween(real_kf)), nan),
            "real keyframes -> VQ -> in-betweener": (joints_of(composite, inbetween(vq_kf)), vq_err),
            "GPT keyframes, cubic": (joints_of(composite, cubic(gpt_kf)), gpt_err),
            "GPT keyframes -> in-betweener": (joints_of(composite, inbetween(gpt_kf)), gpt_err)}


def summarise(joints: list[np.ndarray], errors: list[float], fps: int) -> dict:
    return dict(toe_skate_cm_s=nan_mean([metrics.toe_skating_speed(j, fps) for j in joints]),
                gmd_ratio=nan_mean([metrics.foot_skating_ratio(j, fps) for j in joints]),
                jerk=nan_mean([metrics.jerk(j, fps) for j in joints]), keyframe_err_cm=nan_mean(errors))


def main(argv=None) -> int:
    parser = make_cli_parser()
    args = parser.parse_args(argv)
    cfg = config_from_args(args, parser)
    composite = Composite.from_checkpoints(cfg)
    items = first_caption_motions(cfg.dataset_root, "test", cfg.min_motion_length, cfg.max_generate_length,
                                  args.num_prompts)
    start = time.perf_counter()
    collected = {row: ([], []) for row in ROWS}
    for i, item in enumerate(items):
        for row, (joints, err) in chain_rows(composite, item, cfg.seed + i).items():
            collected[row][0].append(joints)
            collected[row][1].append(err)
    report = {row: summarise(j, e, cfg.fps) for row, (j, e) in collected.items()}
    report = dict(rows=report, count=len(items), checkpoint_dir=cfg.checkpoint_dir, seconds=time.perf_counter() - start)
    gt = report["rows"]["ground truth"]["toe_skate_cm_s"]
    print(f"{len(items)} test motions of {cfg.dataset_root}, checkpoints {cfg.checkpoint_dir}")
    print(f"{'':40s} {'toe cm/s':>9s} {'x GT':>6s} {'GMD':>6s} {'jerk':>7s} {'kf err cm':>10s}")
    for row, q in report["rows"].items():
        print(f"{row:40s} {q['toe_skate_cm_s']:9.1f} {q['toe_skate_cm_s'] / gt:6.2f} {q['gmd_ratio']:6.3f} "
              f"{q['jerk']:7.1f} {q['keyframe_err_cm']:10.2f}")
    path = write_json_report(report, os.path.join(cfg.results_dir, "bench_skating_sources.json"))
    print(f"wrote {path} ({report['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
