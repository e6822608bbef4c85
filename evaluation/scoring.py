"""One row's metrics in one repeat: the embedding metrics of Guo et al. 2022 from the in-house
(and, when loaded, the official) evaluator, the motion-quality metrics on joints, and each
label classifier's accuracy. Every value is a float, NaN where a metric does not apply."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

import metrics
from dataset import MotionClip
from evaluation.evaluators import R_PRECISION_BATCH, Evaluators
from evaluation.items import EvalItem, LabelSet
from evaluation.official import OfficialEvaluator
from utils import features_to_joints

MM_PAIRS = 10  # Guo et al.'s multimodality_times: sample pairs per prompt


@dataclass
class Protocol:
    """The sizes that are not per-row: frames per second, Diversity pairs, MultiModality samples."""
    fps: int
    diversity_pairs: int
    mm_repeats: int


@dataclass
class Scorers:
    """Everything that turns motions into numbers."""
    evaluators: Evaluators
    reference: np.ndarray  # (N_test, D) in-house embeddings of the whole test split's ground truth, for FID
    official: Optional[OfficialEvaluator]
    protocol: Protocol
    # {(content, style): mean root speed (m/s)} of the train split's takes; {} without both labels
    speed_reference: dict = field(default_factory=dict)
    label_names: dict = field(default_factory=dict)  # {label field: class names}


@dataclass
class RowSample:
    """One row's motions in one repeat, for the items drawn in that repeat."""
    items: list[EvalItem]
    text_emb: np.ndarray  # (N, D) in-house embeddings of the items' captions
    official_text: Optional[np.ndarray]  # (N, 512) official embeddings of the captions, or None
    features: list[np.ndarray]  # (T_i, 263)
    joints: list[np.ndarray]  # (T_i, 22, 3)
    keyframe_idx: list[np.ndarray]  # (K_i,) keyframe frames (the keyframe grid where a row has none)
    keyframe_model_errors: list[Optional[float]]  # MotionSample.keyframe_model_error (None: not measured)
    mm_features: Optional[list[np.ndarray]] = None  # P prompts x mm_repeats samples, prompt-major
    pin_errors: Optional[list[float]] = None  # pinned rows: global joint distance (m) at the pinned frames
    raw_joints: Optional[list[np.ndarray]] = None  # joints decoded from the features alone (None: = joints)
    control_errors: Optional[list[dict]] = None  # pinned rows: MotionSample.control_errors (raw, correction, delivered)
    real_speeds: Optional[list[float]] = None  # root speed (m/s) of each item's real motion (real_root_speeds)


def nan_mean(values) -> float:
    values = [v for v in values if v is not None and not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def motion_quality(sample: RowSample, fps: int) -> dict[str, float]:
    """Joint-based quality metrics, means over the row's motions."""
    joints = sample.joints
    return {"foot_skating": nan_mean([metrics.foot_skating_ratio(j, fps) for j in joints]),
            "toe_skating_cm_s": nan_mean([metrics.toe_skating_speed(j, fps) for j in joints]),
            "flagged_toe_speed_cm_s": nan_mean([metrics.flagged_toe_speed(j, f, fps)
                                                for j, f in zip(joints, sample.features)]),
            "contact_agreement": nan_mean([metrics.contact_agreement(j, f) for j, f in zip(joints, sample.features)]),
            "foot_penetration_m": nan_mean([metrics.foot_penetration(j) for j in joints]),
            "jerk": nan_mean([metrics.jerk(j, fps) for j in joints]),
            "keyframe_accel_ratio": nan_mean([metrics.keyframe_acceleration_ratio(j, k, fps)
                                              for j, k in zip(joints, sample.keyframe_idx)]),
            "bone_length_std_m": nan_mean([metrics.bone_length_std(j) for j in joints]),
            "bone_length_std_raw_m": nan_mean([metrics.bone_length_std(j) for j in sample.raw_joints or joints]),
            "bone_length_error_m": nan_mean([metrics.bone_length_error(j) for j in joints]),
            "keyframe_model_error_m": nan_mean(sample.keyframe_model_errors),
            "pinned_pose_error_m": nan_mean(sample.pin_errors or []),
            **control_quality(sample.control_errors or [])}


def control_quality(errors: list[dict]) -> dict[str, float]:
    """Means over a pinned row's motions of the root's distance to its world pins (m): raw (the
    in-betweener's own root), the correction that moved it there (per-frame mean and max) and
    delivered (control.control_errors); {} for rows without pins."""
    if not errors:
        return {}
    mean = lambda key: nan_mean([e.get(key) for e in errors])  # noqa: E731
    return {"pin_root_raw_m": mean("raw_pin_root_error_mean"), "pin_root_correction_m": mean("correction_mean"),
            "pin_root_correction_max_m": mean("correction_max"), "pin_root_delivered_m": mean("pin_root_error_mean")}


SPEED_LABELS = ("content", "style")  # the label fields whose speed order style_speed_rank compares


def style_speed_reference(clips: list[MotionClip], labels: LabelSet, fps: int) -> dict[tuple[str, str], float]:
    """{(content, style): mean root speed (m/s)} over the clips' real motions (the train split),
    the order style_speed_rank compares against; {} for a data set without content and style labels."""
    if not all(name in labels.names for name in SPEED_LABELS):
        return {}
    speeds: dict[tuple[str, str], list[float]] = {}
    for clip in clips:
        classes = labels.of(clip.motion_id)
        if all(name in classes for name in SPEED_LABELS) and len(clip.features) >= 2:
            key = tuple(labels.names[name][classes[name]] for name in SPEED_LABELS)
            speeds.setdefault(key, []).append(metrics.root_speed(features_to_joints(clip.features), fps))
    return {key: float(np.mean(values)) for key, values in speeds.items()}


def real_root_speeds(items: list[EvalItem], fps: int) -> list[float]:
    """Root speed (m/s) of each item's real motion: computed once per repeat, shared by its rows."""
    return [metrics.root_speed(features_to_joints(it.features), fps) for it in items]


def speed_metrics(scorers: Scorers, sample: RowSample) -> dict[str, float]:
    """moving_speed_ratio (the row's root speed over its real takes' (sample.real_speeds), where
    those move) and style_speed_rank (metrics.style_speed_agreement with the train split's takes;
    NaN without content and style labels)."""
    speeds = [metrics.root_speed(j, scorers.protocol.fps) for j in sample.joints]
    result = {"moving_speed_ratio": metrics.moving_speed_ratio(speeds, sample.real_speeds),
              "style_speed_rank": float("nan")}
    if scorers.speed_reference:
        named = [[scorers.label_names[f][it.labels[f]] if f in it.labels else None for f in SPEED_LABELS]
                 for it in sample.items]
        contents, styles = zip(*named)
        result["style_speed_rank"] = metrics.style_speed_agreement(speeds, contents, styles, scorers.speed_reference)
    return result


def embedding_metrics(motion_emb: np.ndarray, text_emb: np.ndarray, reference: np.ndarray, prefix: str = "") -> dict:
    """FID against reference, R-precision top-1/2/3 and MM-Dist, keys prefixed by `prefix`."""
    r_prec = metrics.r_precision(text_emb, motion_emb, R_PRECISION_BATCH)
    return {f"{prefix}fid": metrics.fid(motion_emb, reference),
            **{f"{prefix}r_precision_top{k}": r_prec[k - 1] for k in (1, 2, 3)},
            f"{prefix}mm_dist": metrics.matching_score(text_emb, motion_emb)}


def score_row(scorers: Scorers, sample: RowSample, rng: np.random.Generator) -> dict[str, float]:
    """All metrics of one row in one repeat (NaN where a metric does not apply)."""
    evaluators, protocol = scorers.evaluators, scorers.protocol
    motion_emb = evaluators.motion_embeddings(sample.features)
    result = embedding_metrics(motion_emb, sample.text_emb, scorers.reference)
    result["diversity"] = metrics.diversity(motion_emb, protocol.diversity_pairs, rng)
    result["multimodality"] = float("nan")
    if sample.mm_features is not None:
        mm_emb = evaluators.motion_embeddings(sample.mm_features)
        result["multimodality"] = metrics.multimodality(
            mm_emb.reshape(-1, protocol.mm_repeats, mm_emb.shape[-1]), MM_PAIRS, rng)
    result.update(motion_quality(sample, protocol.fps))
    result.update(speed_metrics(scorers, sample))
    labels = [it.labels for it in sample.items]
    for name in evaluators.classifiers:
        result[f"{name}_accuracy"] = evaluators.accuracy(name, sample.features, labels)
    if scorers.official is not None:
        official = scorers.official
        result.update(embedding_metrics(official.motion_embeddings(sample.features), sample.official_text,
                                        official.reference, prefix="t2m_"))
    return {k: float(v) for k, v in result.items()}
