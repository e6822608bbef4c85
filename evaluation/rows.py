"""The table's rows and the motions each generates.

Rows: ground truth; the composite (GPT keyframes + diffusion in-betweening); AR only (GPT
keyframes, linear interpolation, and the same keyframes through the cubic interpolation the
default in-betweener refines, so its KF accel ratio compares like with like); diffusion only (text, no keyframes); the composite at several
DDIM step counts; the composite with the test motion's own poses pinned in world space (how far
the result is from poses a user pins at places); and, on request, the composite at several
classifier-free guidance scales (--guidance_sweep) and DDIM eta values (--eta_sweep) for tuning.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from config import CompositeConfig
from evaluation.items import EvalError
import metrics
from pipeline import Composite, KeyframePins, MotionSample, SamplingOptions
from utils import joints_to_features

ROW_CHOICES = ("gt", "composite", "ar", "diffusion", "ddim", "pinned", "guidance", "eta")
DEFAULT_ROWS = ("gt", "composite", "ar", "diffusion", "ddim", "pinned")
MAIN_ROWS = ("composite", "ar_only", "diffusion_only")  # the rows with MultiModality


@dataclass(frozen=True)
class RowPlan:
    """Which rows to evaluate: row groups of ROW_CHOICES, and the values of the sweeps
    (DDIM steps from cfg.eval_ddim_steps when None; the guidance and eta rows need values)."""
    groups: tuple[str, ...] = DEFAULT_ROWS
    ddim_steps: Optional[tuple[int, ...]] = None
    guidance_scales: tuple[float, ...] = ()
    etas: tuple[float, ...] = ()


@dataclass(frozen=True)
class RowSpec:
    key: str  # stable id in the JSON
    name: str  # table label
    options: Optional[SamplingOptions]  # how the row samples; None for ground truth
    multimodality: bool = False  # also measure MultiModality
    pinned: bool = False  # pin each test motion's own poses (world space) at pinned_frames
    joint_features: bool = False  # the evaluator reads features rebuilt from the delivered joints, not the network's

    @property
    def mode(self) -> Optional[str]:
        return None if self.options is None else self.options.mode


def parse_numbers(text: str, name: str, kind=int) -> tuple:
    """Comma-separated numbers (kind int: positive; float: non-negative); EvalError naming the option."""
    try:
        values = tuple(kind(s) for s in str(text).split(",") if s.strip())
    except ValueError:
        values = ()
    if not values or min(values) < (1 if kind is int else 0):
        example = "5,10,25,50" if kind is int else "1,2,3"
        raise EvalError(f"--{name} must be comma-separated {'positive integers' if kind is int else 'numbers >= 0'} "
                        f"like {example}, got {text!r}")
    return values


def row_specs(cfg: CompositeConfig, plan: RowPlan) -> list[RowSpec]:
    """The table's rows in order, for the chosen row groups."""
    steps = cfg.num_inbetween_steps
    composite = SamplingOptions(mode="composite", num_inbetween_steps=steps, cleanup_feet=False)
    rows = []
    if "gt" in plan.groups:
        rows.append(RowSpec("ground_truth", "Ground truth", None))
    if "composite" in plan.groups:
        rows.append(RowSpec("composite", f"Composite (DDIM {steps})", composite, True))
    if "ar" in plan.groups:
        rows.append(RowSpec("ar_only", "AR only (linear interpolation)", SamplingOptions(mode="interpolate"), True))
        rows.append(RowSpec("ar_only_cubic", "AR only (cubic interpolation)",
                            SamplingOptions(mode="interpolate", interpolation="cubic")))
    if "diffusion" in plan.groups:
        rows.append(RowSpec("diffusion_only", f"Diffusion only (DDIM {steps})",
                            replace(composite, mode="diffusion_only"), True))
    if "ddim" in plan.groups:
        sweep = plan.ddim_steps or parse_numbers(cfg.eval_ddim_steps, "eval_ddim_steps")
        rows += [RowSpec(f"composite_ddim{s}", f"Composite, DDIM {s}", replace(composite, num_inbetween_steps=s))
                 for s in sweep]
    if "pinned" in plan.groups:
        rows.append(RowSpec("composite_pinned", "Composite, real poses pinned (world)", composite, pinned=True))
    # the foot cleanup (feet.py) acts on joints and the evaluator reads features: the cleaned rows are read
    # through utils.joints_to_features, and so is the uncleaned composite, so FID shows the cleanup's change
    if "composite" in plan.groups:
        rows += [RowSpec("composite_roundtrip", "Composite, joints -> features round trip, not cleaned", composite,
                         joint_features=True),
                 RowSpec("composite_cleaned", "Composite, cleaned", replace(composite, cleanup_feet=True),
                         joint_features=True)]
    if "pinned" in plan.groups:
        rows.append(RowSpec("composite_pinned_cleaned", "Composite, real poses pinned (world), cleaned",
                            replace(composite, cleanup_feet=True), pinned=True, joint_features=True))
    if "guidance" in plan.groups:
        rows += [RowSpec(f"composite_cfg{g:g}", f"Composite, CFG {g:g}", replace(composite, guidance_scale=g))
                 for g in plan.guidance_scales]
    if "eta" in plan.groups:
        rows += [RowSpec(f"composite_eta{e:g}", f"Composite, DDIM eta {e:g}", replace(composite, eta=e))
                 for e in plan.etas]
    return rows


@dataclass
class Generated:
    motions: list[MotionSample]  # in input order
    seconds_per_motion: float
    pin_errors: Optional[list[float]] = None  # pinned rows: mean joint distance (m) at the pinned frames

    @property
    def features(self) -> list[np.ndarray]:
        return [m.features for m in self.motions]


def row_features(row: RowSpec, gen: Generated) -> list[np.ndarray]:
    """What the evaluator reads of a row's motions: the network's features (T, 263), or with
    row.joint_features the features of the delivered (e.g. cleaned) joints (utils.joints_to_features
    gives T-1 frames; the last is repeated so that they stay one per joint frame, as the network's)."""
    if not row.joint_features:
        return gen.features
    rebuilt = [joints_to_features(m.joints) for m in gen.motions]  # (T-1, 263) each
    return [np.concatenate([f, f[-1:]]) for f in rebuilt]


def generate(composite: Composite, captions: list[str], lengths: list[int], options: SamplingOptions,
             seed: int) -> Generated:
    """One motion per (caption, length), in batches of cfg.batch_size sorted by length (the
    motion at sorted position i is seeded seed + i); returns them in input order with the mean
    wall-clock generation time per motion."""
    order = np.argsort(lengths, kind="stable")
    motions: list[Optional[MotionSample]] = [None] * len(captions)
    elapsed, batch_size = 0.0, composite.cfg.batch_size
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        began = time.perf_counter()
        result = composite.sample([captions[i] for i in rows], [int(lengths[i]) for i in rows],
                                  replace(options, seed=seed + start))
        elapsed += time.perf_counter() - began
        for j, i in enumerate(rows):
            motions[i] = result.motions[j]
    return Generated(motions, elapsed / max(len(captions), 1))


def pinned_frames(length: int) -> np.ndarray:
    """The frames whose real pose a pinned row pins: the middle and the last."""
    return np.array([length // 2, length - 1])


def generate_pinned(composite: Composite, captions: list[str], poses: list[np.ndarray], options: SamplingOptions,
                    seed: int) -> Generated:
    """One motion per caption with the poses (T_i, 22, 3) of its real motion (world space, frame
    0 at the origin facing +z) pinned at pinned_frames; motion i is seeded seed + i (pins take
    one prompt per call). pin_errors: the global joint distance at the pinned frames."""
    motions, errors, elapsed = [], [], 0.0
    for i, (caption, pose) in enumerate(zip(captions, poses)):
        frames = pinned_frames(len(pose))
        began = time.perf_counter()
        result = composite.sample([caption], [len(pose)], replace(options, seed=seed + i),
                                  pins=KeyframePins(pose[frames], frames, space="world"))
        elapsed += time.perf_counter() - began
        motions.append(result.motions[0])
        errors.append(metrics.keyframe_adherence(result.motions[0].joints, pose[frames], frames))
    return Generated(motions, elapsed / max(len(captions), 1), errors)
