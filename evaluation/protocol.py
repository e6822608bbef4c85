"""The whole evaluation: the test split's items, every row's motions, every metric, repeated
cfg.eval_repeats times, as one results dict (each metric's mean and 95% confidence interval)."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional

import numpy as np
import torch

import metrics
from config import CompositeConfig
from dataset import MotionClip, ensure_dataset, load_clips, load_mean_std
from evaluation import report
from evaluation.evaluators import Evaluators, evaluator_path, load_evaluators, train_evaluator
from evaluation.items import EvalError, EvalItem, LabelSet, draw_items, example_items, load_labels
from evaluation.official import load_official
from evaluation.rows import Generated, RowPlan, RowSpec, generate, generate_pinned, row_features, row_specs
from evaluation.scoring import (MM_PAIRS, SPEED_LABELS, Protocol, RowSample, Scorers, real_root_speeds, score_row,
                                style_speed_reference)
from pipeline import Composite, SamplingOptions, require_checkpoints
from runtime import select_device, stats_hash
from utils import features_to_joints, keyframe_indices

NUM_EXAMPLES = 4  # motions in the filmstrip picture
WARM_UP_PROMPT = "a person walks forward"


def load_generator(cfg: CompositeConfig, root: str, device: torch.device, cross_data: bool = False) -> Composite:
    """The trained composite, checked to be trained on this data set (unless cross_data: a model
    trained on other data, or on a mix, scored on this one), warmed up for fair timings."""
    composite = Composite.from_checkpoints(cfg, device)
    data_mean, data_std = load_mean_std(root)
    if not cross_data and stats_hash(composite.mean, composite.std) != stats_hash(data_mean, data_std):
        raise EvalError(f"the checkpoints in {cfg.checkpoint_dir} were trained on another data set than {root} "
                        "(pass the matching --dataset_root or --checkpoint_dir, or --cross_data to score them "
                        "on this data set anyway)")
    composite.sample(WARM_UP_PROMPT, min(40, cfg.max_generate_length), SamplingOptions(seed=0))
    return composite


def ready_evaluators(cfg: CompositeConfig, root: str, labels: LabelSet, device: torch.device) -> Evaluators:
    """The trained evaluators (trained first when there are none), checked against the data set."""
    if not os.path.exists(evaluator_path(cfg)):
        print(f"no evaluator at {evaluator_path(cfg)}: training it first (python evaluate.py --train_evaluator)",
              flush=True)
        train_evaluator(cfg, device)
    evaluators, payload = load_evaluators(cfg, device)
    data_mean, data_std = load_mean_std(root)
    if stats_hash(data_mean, data_std) != payload["data_hash"]:
        raise EvalError(f"{evaluator_path(cfg)} was trained on another data set ({payload['dataset_root']}) "
                        f"than {root}; run python evaluate.py --train_evaluator")
    if evaluators.class_names != labels.names:
        raise EvalError(f"the classifiers in {evaluator_path(cfg)} know other labels than {root}/labels.json; "
                        "run python evaluate.py --train_evaluator")
    return evaluators


def mean_ci(values: list[float]) -> Optional[dict]:
    """{"mean", "ci95"} of repeated runs; None when any run is NaN (the metric does not apply)."""
    if not values or any(math.isnan(v) for v in values):
        return None
    mean, ci95 = metrics.confidence_interval(values)
    return {"mean": mean, "ci95": ci95}


@dataclass
class EvalRun:
    """One evaluation in progress: what it scores with and the runs gathered so far."""
    cfg: CompositeConfig
    rows: list[RowSpec]
    composite: Optional[Composite]
    scorers: Scorers
    clips: list[MotionClip]
    labels: LabelSet
    num_samples: int
    runs: dict[str, list[dict]] = field(default_factory=dict)
    times: dict[str, list[float]] = field(default_factory=dict)

    @property
    def interval(self) -> int:
        return self.composite.keyframe_interval if self.composite is not None else self.cfg.keyframe_interval

    @property
    def num_mm_prompts(self) -> int:
        return min(self.cfg.eval_mm_num_prompts, self.num_samples) if self.cfg.eval_mm_repeats >= 2 else 0

    def repeat(self, repeat: int) -> None:
        """Draw this repeat's items and score every row on them."""
        cfg = self.cfg
        items = draw_items(self.clips, cfg, np.random.default_rng(cfg.seed + repeat), self.labels, self.num_samples)
        text_emb = self.scorers.evaluators.text_embeddings([it.caption for it in items])
        real_speeds = real_root_speeds(items, cfg.fps)
        official = self.scorers.official
        official_text = official.text_embeddings(items) if official is not None else None
        seed = cfg.seed + 100_003 * (repeat + 1)
        cache: dict[SamplingOptions, Generated] = {}
        for row in self.rows:
            sample = (self.ground_truth(items) if row.options is None
                      else self.generated(row, items, seed, cache))
            sample.text_emb, sample.official_text, sample.real_speeds = text_emb, official_text, real_speeds
            result = score_row(self.scorers, sample, np.random.default_rng(cfg.seed + 7 * repeat))
            self.runs.setdefault(row.key, []).append(result)
            print(f"  repeat {repeat + 1}/{cfg.eval_repeats} {row.name}: FID {result['fid']:.3f}, "
                  f"R@3 {result['r_precision_top3']:.3f}, skating {result['foot_skating']:.3f}, "
                  f"toe skate {result['toe_skating_cm_s']:.1f} cm/s", flush=True)

    def ground_truth(self, items: list[EvalItem]) -> RowSample:
        joints = [features_to_joints(it.features) for it in items]
        grid = [keyframe_indices(len(it.features), self.interval) for it in items]
        return RowSample(items, None, None, [it.features for it in items], joints, grid, [None] * len(items))

    def generated(self, row: RowSpec, items: list[EvalItem], seed: int, cache: dict) -> RowSample:
        """The row's motions (shared with an earlier row that samples the same way) and its
        MultiModality samples."""
        captions, lengths = [it.caption for it in items], [len(it.features) for it in items]
        if row.pinned:
            gen = generate_pinned(self.composite, captions, [features_to_joints(it.features) for it in items],
                                  row.options, seed)
        elif row.options not in cache:
            cache[row.options] = gen = generate(self.composite, captions, lengths, row.options, seed)
        else:
            gen = cache[row.options]
        self.times.setdefault(row.key, []).append(gen.seconds_per_motion)
        motions = gen.motions
        grid = [m.keyframe_idx if len(m.keyframe_idx) else keyframe_indices(len(m.joints), self.interval)
                for m in motions]
        sample = RowSample(items, None, None, row_features(row, gen), [m.joints for m in motions], grid,
                           [m.keyframe_model_error for m in motions], pin_errors=gen.pin_errors,
                           raw_joints=[features_to_joints(m.features) for m in motions],
                           control_errors=[m.control_errors or {} for m in motions] if row.pinned else None)
        if row.multimodality and self.num_mm_prompts:
            repeats = self.cfg.eval_mm_repeats
            mm_captions = [c for c in captions[:self.num_mm_prompts] for _ in range(repeats)]
            mm_lengths = [n for n in lengths[:self.num_mm_prompts] for _ in range(repeats)]
            sample.mm_features = generate(self.composite, mm_captions, mm_lengths, row.options, seed + 50_000).features
        return sample

    def summary_rows(self) -> list[dict]:
        table = []
        for row in self.rows:
            runs = self.runs[row.key]
            table.append({"key": row.key, "name": row.name, "mode": row.mode,
                          "ddim_steps": None if row.options is None else row.options.num_inbetween_steps,
                          "guidance_scale": None if row.options is None else row.options.guidance_scale,
                          "eta": None if row.options is None else row.options.eta,
                          "metrics": {name: mean_ci([run[name] for run in runs]) for name in runs[0]},
                          "seconds_per_motion": mean_ci(self.times[row.key]) if row.key in self.times else None})
        return table

    def examples(self, path: str) -> Optional[str]:
        """A picture of real and generated (composite) motions side by side, for a few labels."""
        if self.composite is None:
            return None
        chosen = example_items(draw_items(self.clips, self.cfg, None, self.labels), self.labels, NUM_EXAMPLES)
        gen = generate(self.composite, [it.caption for it in chosen], [len(it.features) for it in chosen],
                       SamplingOptions(mode="composite"), self.cfg.seed)
        strips = []
        for item, motion in zip(chosen, gen.motions):
            tags = " / ".join(self.labels.names[f][c] for f, c in item.labels.items())
            strips.append(report.Example(item.caption, tags, features_to_joints(item.features), motion.joints,
                                         motion.keyframe_idx))
        return report.save_filmstrips(strips, path)


def by_construction(cfg: CompositeConfig, composite) -> dict:
    """Metrics that cannot fail with this model and config: the delivered bones carry the canonical
    lengths (fit_bones), the in-betweener's prediction equals its keyframes (its residual form)."""
    return {"fit_bones": bool(cfg.fit_bones),
            "prediction_meets_keyframes": composite is not None and composite.denoiser.meets_keyframes}


def evaluate(cfg: CompositeConfig, plan: RowPlan = RowPlan(), cross_data: bool = False) -> dict:
    """Run the protocol on the test split; returns the results dict (rows with mean and ci95 of
    every metric, the protocol sizes, the evaluator's own scores, the filmstrip picture's path).
    cross_data: the checkpoints may come from training on other data (another set, or a mix that
    holds this one); the motions are still scored with this data set's evaluator."""
    rows = row_specs(cfg, plan)
    if not rows:
        raise EvalError("--rows selected no rows")
    generative = any(r.options is not None for r in rows)
    if generative:
        require_checkpoints(cfg)  # before building or reading any data
    device = select_device(cfg)
    root = ensure_dataset(cfg)
    composite = load_generator(cfg, root, device, cross_data) if generative else None
    labels = load_labels(root)
    evaluators = ready_evaluators(cfg, root, labels, device)
    clips = load_clips(root, "test", cfg)
    num_samples = min(cfg.eval_num_samples, len(clips))
    if num_samples < 2:
        raise EvalError(f"the test split of {root} has {len(clips)} usable motion(s); evaluation needs at least 2")
    reference = draw_items(clips, cfg, None, labels)
    has_speed_labels = all(name in labels.names for name in SPEED_LABELS)
    speed_reference = style_speed_reference(load_clips(root, "train", cfg), labels, cfg.fps) if has_speed_labels else {}
    scorers = Scorers(evaluators, evaluators.motion_embeddings([it.features for it in reference]),
                      load_official(cfg, reference, device),
                      Protocol(cfg.fps, cfg.eval_diversity_pairs, cfg.eval_mm_repeats),
                      speed_reference=speed_reference, label_names=labels.names)
    run = EvalRun(cfg, rows, composite, scorers, clips, labels, num_samples)
    print(f"evaluating {len(rows)} rows x {cfg.eval_repeats} repeats on {num_samples} of {len(clips)} test "
          f"motions from {root} (device {device})", flush=True)
    for repeat in range(cfg.eval_repeats):
        run.repeat(repeat)
    timestamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    results = {"timestamp": timestamp, "dataset_root": root, "checkpoint_dir": cfg.checkpoint_dir,
               "device": str(device), "num_test_motions": len(clips), "num_samples": num_samples,
               "repeats": cfg.eval_repeats, "diversity_pairs": min(cfg.eval_diversity_pairs, num_samples),
               "mm_prompts": run.num_mm_prompts, "mm_repeats": cfg.eval_mm_repeats,
               "mm_pairs": min(MM_PAIRS, cfg.eval_mm_repeats), "keyframe_interval": run.interval,
               "labels": labels.names,
               "evaluator": {"path": evaluator_path(cfg), **evaluators.info},
               "cross_data": cross_data, "official_t2m": scorers.official is not None, "rows": run.summary_rows(), "config": cfg.to_dict(),
               "by_construction": by_construction(cfg, composite)}
    os.makedirs(cfg.results_dir, exist_ok=True)
    results["filmstrips"] = run.examples(os.path.join(cfg.results_dir, f"eval_{timestamp}_filmstrips.png"))
    return results
