"""The evaluation's report: Markdown tables with every metric's definition, the JSON results, a
PNG of the key metrics, and filmstrips of real and generated motions side by side."""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from typing import Optional

import numpy as np

from evaluation.evaluators import R_PRECISION_BATCH, chance_text
from runtime import write_atomic

# (metric key, header, scale, digits). Arrows: lower / higher is better, or closer to ground truth.
TEXT_COLUMNS = [
    ("fid", "FID ↓", 1.0, 3), ("r_precision_top1", "R@1 ↑", 1.0, 3), ("r_precision_top2", "R@2 ↑", 1.0, 3),
    ("r_precision_top3", "R@3 ↑", 1.0, 3), ("mm_dist", "MM-Dist ↓", 1.0, 3), ("diversity", "Diversity →GT", 1.0, 3),
    ("multimodality", "MModality ↑", 1.0, 3),
]
QUALITY_COLUMNS = [
    ("foot_skating", "Skating ↓", 1.0, 3), ("toe_skating_cm_s", "Toe skate cm/s ↓", 1.0, 1),
    ("flagged_toe_speed_cm_s", "Flagged toe cm/s ↓", 1.0, 1), ("contact_agreement", "Flag/height agree →GT", 1.0, 2),
    ("foot_penetration_m", "Penetr. cm ↓", 100.0, 2),
    ("jerk", "Jerk m/s³ →GT", 1.0, 1), ("keyframe_accel_ratio", "KF accel ratio →1", 1.0, 2),
    ("bone_length_std_m", "Bone std cm ↓", 100.0, 2), ("bone_length_std_raw_m", "Bone std raw cm ↓", 100.0, 2),
    ("bone_length_error_m", "Bone err cm ↓", 100.0, 2),
    ("keyframe_model_error_m", "KF model err cm ↓", 100.0, 2),
]
SPEED_COLUMNS = [("moving_speed_ratio", "Speed ratio →1", 1.0, 2), ("style_speed_rank", "Style speed ρ →GT", 1.0, 2)]
OFFICIAL_COLUMNS = [("t2m_fid", "FID ↓", 1.0, 3), ("t2m_r_precision_top1", "R@1 ↑", 1.0, 3),
                    ("t2m_r_precision_top2", "R@2 ↑", 1.0, 3), ("t2m_r_precision_top3", "R@3 ↑", 1.0, 3),
                    ("t2m_mm_dist", "MM-Dist ↓", 1.0, 3)]
DEFINITIONS = [
    "FID, R@k, MM-Dist, Diversity, MultiModality: Guo et al. 2022's protocol on the matching evaluator's embeddings "
    "(FID against the whole test split's ground truth; R@k: the caption's own motion among the k nearest of 32; "
    "MM-Dist: caption-motion distance; Diversity: mean distance of random motion pairs; MultiModality: mean "
    "distance between two samples of one prompt).",
    "Skating: GMD's foot skating ratio (Karunratanakul et al. 2023): the fraction of frame steps in which a foot "
    "(joints 10, 11) below 5 cm at both frames moves horizontally faster than 0.5 m/s, on the step and on its "
    "5-step average.",
    "Toe skate: Kimodo's foot skating from height (NVIDIA 2026): the mean horizontal speed (cm/s) of the toes "
    "(joints 10, 11) over the frame steps in which the toe is within 5 cm of the floor y = 0, with no speed "
    "threshold, so a slow drag counts (GMD's ratio does not see one below 0.5 m/s); a motion whose toes never come "
    "that near the floor has none and is left out of the mean. Flagged toe: the same speed over "
    "the steps that the motion's own toe contact channels (features 260, 262 of 259:263) mark planted. Flag/height "
    "agree: how often those channels and the 5 cm height test agree; HumanML3D sets the channels from the joint's "
    "speed, so ground truth does not score 1.",
    "Penetr.: mean depth of the lowest foot joint below the floor. Jerk: mean |d³x/dt³| over joints and frames.",
    "KF accel ratio: mean joint acceleration at the interior keyframe frames / at the other frames (kinks at "
    "keyframes push it above 1; ground truth on the same keyframe grid is about 1). It sees kinks at the keyframes "
    "only: jitter everywhere raises both means alike and leaves it unmoved (Jerk sees that), and an in-betweener "
    "whose residual vanishes at the keyframes (diff_residual_envelope) is smoother there than between them by "
    "construction, which biases it below 1. Compare a row with the AR-only row of the interpolation it refines.",
    "Bone std: per-bone length standard deviation over a motion, mean over bones, of the joints a user gets "
    "(with fit_bones on they carry the canonical bone lengths: 0 by construction); Bone std raw: the same of the "
    "joints the features alone give (the network's own). Bone err: mean |bone length - canonical length|.",
    "KF model err: mean distance between the root-relative joints the diffusion network itself predicts at the "
    "keyframe frames (last step, before the keyframes overwrite them) and the keyframes it was given; "
    "the final motion matches its keyframes by construction, so that is not a column.",
    "Pinned row: each test motion's own pose pinned in world space at its middle and last frames; its columns "
    "show what meeting pins costs (the distance to the pins is 0 by construction and is a note, not a column).",
    "Cleaned rows: the same motions (same seeds) through the foot cleanup (cleanup_feet, feet.py: planted feet held "
    "still, legs re-solved by IK), a post-process on the joints. The evaluator reads features, so the cleaned rows "
    "are read through utils.joints_to_features of their joints, and so is the 'round trip, not cleaned' row of "
    "the raw composite: FID between those two rows is what the cleanup changes, not what the conversion does.",
    "Speed ratio: the mean horizontal root speed of the motions whose real take (the test motion of the same "
    "caption) moves at 0.3 m/s or more, over those takes' mean speed (0.5: half their pace). Style speed ρ: "
    "within each content whose takes move and that has 3 or more styles in the row, Spearman's rank correlation "
    "between the row's mean speed per style and the train split's takes' (are tired runs slower than active "
    "ones, as in the real takes?), averaged over those contents; only for data sets with content and style labels.",
    "<label> acc: accuracy of a classifier of that label field, trained on the train split's ground truth.",
]
GUO_PROTOCOL = {"repeats": 20, "diversity_pairs": 300, "mm_prompts": 100, "mm_repeats": 30}


# Columns that cannot fail under a results["by_construction"] flag: (flag, metric keys, the note
# that replaces them in the report).
CONSTANT_COLUMNS = [
    ("fit_bones", ("bone_length_std_m", "bone_length_error_m"),
     "Bone std and Bone err of the delivered joints are not columns: with fit_bones on they carry the "
     "canonical bone lengths (0 by construction); Bone std raw is the network's own."),
    ("prediction_meets_keyframes", ("keyframe_model_error_m",),
     "KF model err is not a column: this in-betweener's residual vanishes at the keyframes "
     "(diff_residual_envelope / diff_exact_keyframes), so its prediction equals them by construction."),
]


def constant_metrics(results: dict) -> set:
    flags = results.get("by_construction", {})
    return {key for flag, keys, _ in CONSTANT_COLUMNS if flags.get(flag) for key in keys}


def quality_columns(results: dict) -> list:
    """QUALITY_COLUMNS without those that cannot fail for this model and config."""
    constant = constant_metrics(results)
    return [c for c in QUALITY_COLUMNS if c[0] not in constant]


def constant_notes(results: dict) -> list[str]:
    flags = results.get("by_construction", {})
    return [f"- {note}" for flag, _, note in CONSTANT_COLUMNS if flags.get(flag)]


def label_columns(results: dict) -> list:
    return [(f"{name}_accuracy", f"{name.capitalize()} acc ↑", 1.0, 3) for name in results.get("labels", {})]


def cell(stat: Optional[dict], scale: float, digits: int) -> str:
    if stat is None:
        return "-"
    return f"{stat['mean'] * scale:.{digits}f} ± {stat['ci95'] * scale:.{digits}f}"


def table(results: dict, columns: list, with_time: bool = False) -> str:
    header = ["Row"] + [c[1] for c in columns] + (["s / motion"] if with_time else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in results["rows"]:
        cells = [row["name"]] + [cell(row["metrics"].get(key), scale, digits) for key, _, scale, digits in columns]
        if with_time:
            cells.append(cell(row["seconds_per_motion"], 1.0, 3))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def composite_verdict(results: dict) -> str:
    """One line: does the composite row beat both ablations on FID and on R-precision top-3,
    and is each margin larger than the two 95% confidence intervals together?"""
    by_key = {r["key"]: r["metrics"] for r in results["rows"]}
    rows = {"composite": "composite", "ar_only": "AR only", "diffusion_only": "diffusion only"}
    if not all(k in by_key for k in rows):
        return "Composite vs ablations: not all three rows were evaluated."
    parts, wins = [], []
    for key, label, sign in (("fid", "FID", -1), ("r_precision_top3", "R-precision top-3", 1)):
        ours = by_key["composite"][key]
        comparisons = []
        for other in ("ar_only", "diffusion_only"):
            theirs = by_key[other][key]
            better = sign * (ours["mean"] - theirs["mean"]) > 0
            clear = abs(ours["mean"] - theirs["mean"]) > ours["ci95"] + theirs["ci95"]
            wins.append(better)
            comparisons.append(f"{'better' if better else 'worse'} than {rows[other]} {theirs['mean']:.3f} "
                               f"({'beyond' if clear else 'within'} the CIs)")
        parts.append(f"{label} {ours['mean']:.3f} ± {ours['ci95']:.3f}: " + ", ".join(comparisons))
    verdict = "beats both ablations" if all(wins) else "does NOT beat both ablations"
    return f"Composite {verdict} on FID and R-precision. " + "; ".join(parts) + "."


def protocol_note(results: dict) -> str:
    """The sizes used, and whether they are smaller than Guo et al.'s."""
    used = (f"{results['num_samples']} of {results['num_test_motions']} test motions per run, {results['repeats']} runs; "
            f"Diversity over {results['diversity_pairs']} pairs; MultiModality over {results['mm_prompts']} prompts x "
            f"{results['mm_repeats']} samples ({results['mm_pairs']} pairs each, main rows only); R-precision "
            f"batches of {min(R_PRECISION_BATCH, results['num_samples'])}")
    smaller = [k for k, v in GUO_PROTOCOL.items() if results[k] < v]
    if results["num_samples"] < results["num_test_motions"]:
        smaller.append("num_samples")
    if not smaller:
        return f"Protocol: Guo et al.'s sizes ({used})."
    return (f"Protocol: {used}. SMALLER than Guo et al.'s (whole test split, 20 runs, Diversity 300 pairs, "
            f"MultiModality 100 prompts x 30 samples; `CompositeConfig.humanml3d()` uses those): the intervals are "
            f"wider and the numbers are not comparable with published ones.")


def pinned_note(results: dict) -> list[str]:
    """The pinned rows' distance to their pins: the pose (a check: imputation and the root
    correction meet them) and the root raw / corrected / delivered (README, control errors)."""
    lines = []
    for row in results["rows"]:
        stats = row["metrics"]
        if not row["key"].startswith("composite_pinned") or stats.get("pinned_pose_error_m") is None:
            continue
        cm = lambda key: "n/a" if stats.get(key) is None else f"{stats[key]['mean'] * 100:.3f} cm"  # noqa: E731
        lines.append(f"- {row['name']}: the motions pass {cm('pinned_pose_error_m')} (mean over all joints) from the "
                     f"poses pinned in world space. Root at the pins: raw {cm('pin_root_raw_m')} (the in-betweener's "
                     f"own root), correction {cm('pin_root_correction_m')} per frame (max {cm('pin_root_correction_max_m')}"
                     f"), delivered {cm('pin_root_delivered_m')} (0 by construction, so not a column).")
    return lines


def evaluator_notes(results: dict) -> list[str]:
    ev = results["evaluator"]
    r_prec = ", ".join(f"{x:.3f}" for x in ev["test_r_precision"])
    lines = [f"- In-house matching evaluator ({ev['step']} steps, word-token text encoder independent of the "
             f"generator's): test-split R-precision top-1/2/3 on ground truth {r_prec} "
             f"(chance {chance_text(results['num_samples'])})."]
    accuracy = ev.get("classifier_test_accuracy") or {}
    for name, classes in results.get("labels", {}).items():
        measured = "-" if accuracy.get(name) is None else f"{accuracy[name]:.3f}"
        lines.append(f"- {name.capitalize()} classifier test accuracy on ground truth: {measured} over "
                     f"{len(classes)} classes (chance {1 / len(classes):.3f}).")
    if not results.get("labels"):
        lines.append("- No labels.json fields (action / content / style) in this data set: no label accuracy.")
    return lines


def format_report(results: dict) -> str:
    """The Markdown report: header, the two metric tables, the official table when present, notes."""
    lines = [f"# Evaluation {results['timestamp']}", "",
             f"Data: {results['dataset_root']} test split. Checkpoints: {results['checkpoint_dir']}"
             f"{' (trained on other data: --cross_data)' if results.get('cross_data') else ''}. "
             f"Device: {results['device']}. Every cell: mean ± 95% CI over the runs.", "",
             protocol_note(results), "", "Text-motion metrics:", "",
             table(results, TEXT_COLUMNS + label_columns(results) + SPEED_COLUMNS, with_time=True), "",
             "Motion quality:", "", table(results, quality_columns(results)), ""]
    if results["official_t2m"]:
        lines += ["Official T2M evaluator (HumanML3D protocol):", "", table(results, OFFICIAL_COLUMNS), ""]
    if results.get("filmstrips"):
        lines += [f"Real and generated motions side by side: {results['filmstrips']}", ""]
    lines += [f"- {composite_verdict(results)}", *pinned_note(results), *constant_notes(results),
              *evaluator_notes(results), "",
              "Definitions:", ""]
    lines += [f"- {text}" for text in DEFINITIONS]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# Pictures
# ---------------------------------------------------------------------------------------
PLOT_PANELS = [("fid", "FID ↓"), ("r_precision_top3", "R-precision top-3 ↑"), ("mm_dist", "MM-Dist ↓"),
               ("diversity", "Diversity"), ("multimodality", "MultiModality"), ("foot_skating", "Foot skating ↓"),
               ("toe_skating_cm_s", "Toe skating (cm/s)"), ("jerk", "Jerk (m/s³)"),
               ("keyframe_accel_ratio", "Keyframe accel. ratio"),
               ("bone_length_std_raw_m", "Bone length std, raw (m) ↓"), ("keyframe_model_error_m", "KF model error (m) ↓")]


def bar_panel(ax, rows: list[dict], key: str, title: str) -> None:
    names = [r["name"] for r in rows]
    means = [r["metrics"][key]["mean"] if r["metrics"].get(key) else 0.0 for r in rows]
    errs = [r["metrics"][key]["ci95"] if r["metrics"].get(key) else 0.0 for r in rows]
    import matplotlib.pyplot as plt
    ax.bar(range(len(names)), means, yerr=errs, color=plt.cm.tab10(np.arange(len(names)) % 10), capsize=3)
    ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=7)
    ax.set_title(title)


def sweep_panel(ax, rows: list[dict]) -> None:
    """FID against generation time over the DDIM-step rows."""
    sweep = [r for r in rows if r["key"].startswith("composite_ddim") and r["seconds_per_motion"]]
    if sweep:
        xs = [r["seconds_per_motion"]["mean"] for r in sweep]
        ys = [r["metrics"]["fid"]["mean"] for r in sweep]
        ax.errorbar(xs, ys, yerr=[r["metrics"]["fid"]["ci95"] for r in sweep], marker="o", capsize=3)
        for x, y, r in zip(xs, ys, sweep):
            ax.annotate(f"{r['ddim_steps']} steps", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel("generation time per motion (s)")
        ax.set_ylabel("FID")
    ax.set_title("FID / time over DDIM steps")


def plot_results(results: dict, path: str) -> None:
    """PNG: key metrics as bars per row (with 95% CI), the first label accuracy, and FID against
    generation time over DDIM steps."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [p for p in PLOT_PANELS if p[0] not in constant_metrics(results)]
    panels += [(key, header) for key, header, _, _ in label_columns(results)[:1]]
    rows = -(-(len(panels) + 1) // 4)  # the panels and the sweep, four a row
    fig, axes = plt.subplots(rows, 4, figsize=(20, 4.4 * rows))
    for ax, (key, title) in zip(axes.flat, panels):
        bar_panel(ax, results["rows"], key, title)
    for ax in list(axes.flat)[len(panels):-1]:
        ax.set_axis_off()
    sweep_panel(axes.flat[-1], results["rows"])
    fig.suptitle(f"Evaluation {results['timestamp']} on {results['dataset_root']} ({results['device']})")
    fig.tight_layout()
    fig.savefig(path, dpi=90, format="png")
    plt.close(fig)


@dataclass
class Example:
    """A test motion and the composite's motion for its caption, for the filmstrip picture."""
    caption: str
    tags: str  # its labels, e.g. "walk / happy" ('' without)
    real: np.ndarray  # (T, 22, 3)
    generated: np.ndarray  # (T, 22, 3)
    keyframe_idx: np.ndarray  # (K,) the generated motion's keyframes


def save_filmstrips(examples: list[Example], path: str, num_poses: int = 8) -> str:
    """One PNG: for each example, the real motion's filmstrip beside the generated one's
    (visualize.save_filmstrip, keyframes marked), one example a row. Returns path."""
    from PIL import Image

    from visualize import save_filmstrip
    with tempfile.TemporaryDirectory() as folder:
        rows = []
        for i, ex in enumerate(examples):
            label = f"{ex.tags}: " if ex.tags else ""
            caption = ex.caption if len(ex.caption) <= 60 else ex.caption[:57] + "..."
            real = save_filmstrip(ex.real, os.path.join(folder, f"{i}_real.png"), num_poses,
                                  title=f"real: {label}{caption}")
            fake = save_filmstrip(ex.generated, os.path.join(folder, f"{i}_gen.png"), num_poses,
                                  title="composite, same caption", keyframe_idx=ex.keyframe_idx)
            rows.append([Image.open(real).convert("RGB"), Image.open(fake).convert("RGB")])
        width = max(a.width + b.width for a, b in rows)
        sheet = Image.new("RGB", (width, sum(max(a.height, b.height) for a, b in rows)), "white")
        top = 0
        for a, b in rows:
            sheet.paste(a, (0, top))
            sheet.paste(b, (a.width, top))
            top += max(a.height, b.height)
        write_atomic(path, lambda tmp: sheet.save(tmp, format="PNG"))
    return path


# ---------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------
def write_text(path: str, text: str) -> None:
    """Write `text` to `path` atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            fh.write(text)
    write_atomic(path, write)


def write_results(results: dict, results_dir: str) -> dict[str, str]:
    """Write results_dir/eval_<timestamp>.{md,json,png} and the eval_latest.* copies; returns the paths."""
    os.makedirs(results_dir, exist_ok=True)
    stem = os.path.join(results_dir, f"eval_{results['timestamp']}")
    latest = os.path.join(results_dir, "eval_latest")
    report = format_report(results)
    payload = json.dumps(results, indent=2, allow_nan=False)
    for base in (stem, latest):  # the picture first: a plotting failure leaves no half-written run
        write_atomic(base + ".png", lambda tmp: plot_results(results, tmp))
        write_text(base + ".md", report)
        write_text(base + ".json", payload)
    return {"md": stem + ".md", "json": stem + ".json", "png": stem + ".png"}
