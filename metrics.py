"""Evaluation metrics of text-to-motion generation: pure maths on arrays, no I/O.

Embedding metrics follow the HumanML3D protocol of Guo et al. 2022 (FID, R-precision,
MM-Dist, Diversity, MultiModality) and take evaluator embeddings (N, D). Motion-quality metrics
take joint positions (T, 22, 3) in metres, y up, floor at y = 0 (HumanML3D puts every motion on
the floor), and return metres / seconds-based units stated per function.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from utils import BONE_LENGTHS, FOOT_IDX_LEFT, FOOT_IDX_RIGHT, FOOT_SLICE, PARENTS

FOOT_JOINTS = FOOT_IDX_LEFT + FOOT_IDX_RIGHT  # ankles and feet (toes), for penetration
# Foot skating as GMD defines it (see foot_skating_ratio).
SKATING_FEET = (10, 11)  # left foot, right foot
CONTACT_HEIGHT = 0.05  # m: a foot below this height touches the floor
SKATING_SPEED = 0.5  # m/s: a touching foot moving faster than this horizontally slides
SKATING_WINDOW = 5  # steps over which the speed is averaged as well
STILL_ACCELERATION = 1e-6  # m/s^2: mean joint accelerations below this are round-off, not motion
# Toe skating as Kimodo measures it (see toe_skating_speed), and the features' own contact flags.
TOE_JOINTS = (10, 11)  # left toe (foot), right toe
TOE_CONTACT_CHANNELS = (FOOT_SLICE.start + 1, FOOT_SLICE.start + 3)  # 260, 262: left / right toe of 259:263
PLANTED_FLAG = 0.5  # a contact channel above this marks the joint planted (ground truth's are 0 or 1)
# Seams: a joint's displacement against ground truth's at the same root speed (see SeamReference).
ROOT_SPEED_EDGES = (0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)  # m/s, inner edges of the speed bins
ROOT_CONTEXT_STEPS = 4  # the root's velocity at a step: the median over this many steps either side
SEAM_PERCENTILE = 100.0  # ground truth's displacement limit per speed bin and joint: its largest
MIN_BIN_STEPS = 50  # a speed bin with fewer ground-truth steps borrows the limits of the nearest fuller bin
SEAM_REACH = 2  # steps either side of a seam whose displacements are checked
MOVING_SPEED = 0.3  # m/s: a motion whose root averages at least this pace is going somewhere (walks, runs)
TRANSITION_REACH = 15  # jerk entries either side of a seam in FlowMDM's transition curve (1.5 s at 20 fps)


def _as_float64(x) -> np.ndarray:
    """Any array-like (numpy or torch, any device) as a float64 numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


# ---------------------------------------------------------------------------------------
# Embedding-distribution metrics
# ---------------------------------------------------------------------------------------
def activation_statistics(activations) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of activations (N, D), N >= 2."""
    acts = _as_float64(activations)
    if acts.ndim != 2 or len(acts) < 2:
        raise ValueError(f"activation_statistics needs (N>=2, D) activations, got shape {acts.shape}")
    return acts.mean(axis=0), np.cov(acts, rowvar=False)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (negative
    eigenvalues from round-off are clipped to 0)."""
    eigvals, eigvecs = np.linalg.eigh((matrix + matrix.T) / 2)
    return (eigvecs * np.sqrt(np.clip(eigvals, 0.0, None))) @ eigvecs.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between Gaussians N(mu1, sigma1) and N(mu2, sigma2):
    ||mu1 - mu2||^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)).

    tr((sigma1 sigma2)^(1/2)) is computed as tr((s1^(1/2) sigma2 s1^(1/2))^(1/2)) with
    s1 = sigma1, whose matrices are symmetric PSD, so it stays real and stable.
    """
    mu1, mu2 = _as_float64(mu1), _as_float64(mu2)
    sigma1, sigma2 = np.atleast_2d(_as_float64(sigma1)), np.atleast_2d(_as_float64(sigma2))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"frechet_distance needs matching shapes, got {mu1.shape}/{mu2.shape} and "
                         f"{sigma1.shape}/{sigma2.shape}")
    root1 = _psd_sqrt(sigma1)
    cross = _psd_sqrt(root1 @ sigma2 @ root1)
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(cross)
    return float(max(value, 0.0))


def fid(activations_a, activations_b) -> float:
    """Fréchet Inception-style Distance between two sets of evaluator embeddings (Na, D), (Nb, D)."""
    mu_a, sigma_a = activation_statistics(activations_a)
    mu_b, sigma_b = activation_statistics(activations_b)
    return frechet_distance(mu_a, sigma_a, mu_b, sigma_b)


def euclidean_distance_matrix(a, b) -> np.ndarray:
    """Pairwise Euclidean distances (N, M) between rows of a (N, D) and b (M, D)."""
    a, b = _as_float64(a), _as_float64(b)
    sq = (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.clip(sq, 0.0, None))


def r_precision(text_emb, motion_emb, batch_size: int = 32, top_k: int = 3) -> np.ndarray:
    """R-precision top-1..top_k (top_k,) of matched pairs text_emb[i] <-> motion_emb[i], (N, D) each.

    Published protocol: the pairs are cut into batches of `batch_size` (32: each text against
    its motion and 31 mismatched ones); a text scores at k when its own motion is among the k
    nearest motions of its batch (Euclidean). Incomplete last batches are dropped, unless
    there is only one batch, which is then used whole (chance is then 1/N instead of 1/32).
    """
    text_emb, motion_emb = _as_float64(text_emb), _as_float64(motion_emb)
    if text_emb.shape != motion_emb.shape or len(text_emb) < 2:
        raise ValueError(f"r_precision needs two (N>=2, D) arrays of equal shape, got {text_emb.shape} "
                         f"and {motion_emb.shape}")
    n = len(text_emb)
    starts = list(range(0, n - batch_size + 1, batch_size)) or [0]
    hits = np.zeros(top_k)
    count = 0
    for start in starts:
        stop = start + batch_size if n >= batch_size else n
        dist = euclidean_distance_matrix(text_emb[start:stop], motion_emb[start:stop])  # (b, b)
        own = np.diag(dist)[:, None]
        rank = (dist < own).sum(axis=1)  # motions strictly nearer than the matching one
        hits += (rank[:, None] < np.arange(1, top_k + 1)[None, :]).sum(axis=0)
        count += len(dist)
    return hits / count


def matching_score(text_emb, motion_emb) -> float:
    """MM-Dist: mean Euclidean distance between matched text and motion embeddings (N, D)."""
    text_emb, motion_emb = _as_float64(text_emb), _as_float64(motion_emb)
    return float(np.linalg.norm(text_emb - motion_emb, axis=1).mean())


def diversity(activations, num_pairs: int = 300, rng: np.random.Generator | None = None) -> float:
    """Diversity (Guo et al. 2022): mean distance between embeddings (N, D) at two independent
    draws of min(num_pairs, N) indices without replacement (as their `calculate_diversity`; a
    pair may be one embedding twice, with probability 1/N)."""
    acts = _as_float64(activations)
    if acts.ndim != 2 or len(acts) < 2:
        raise ValueError(f"diversity needs (N>=2, D) embeddings, got shape {acts.shape}")
    rng = rng or np.random.default_rng(0)
    num_pairs = min(num_pairs, len(acts))
    first = rng.choice(len(acts), num_pairs, replace=False)
    second = rng.choice(len(acts), num_pairs, replace=False)
    return float(np.linalg.norm(acts[first] - acts[second], axis=1).mean())


def multimodality(activations, num_pairs: int = 10, rng: np.random.Generator | None = None) -> float:
    """MultiModality (Guo et al. 2022): mean distance between samples of the same prompt.

    activations (P, R, D): R >= 2 samples for each of P prompts. As their
    `calculate_multimodality`: two independent draws of min(num_pairs, R) sample indices without
    replacement, shared by all prompts, are paired up (a sample may pair with itself)."""
    acts = _as_float64(activations)
    if acts.ndim != 3 or acts.shape[1] < 2:
        raise ValueError(f"multimodality needs (P, R>=2, D) activations, got shape {acts.shape}")
    rng = rng or np.random.default_rng(0)
    repeats = acts.shape[1]
    num_pairs = min(num_pairs, repeats)
    first = rng.choice(repeats, num_pairs, replace=False)
    second = rng.choice(repeats, num_pairs, replace=False)
    return float(np.linalg.norm(acts[:, first] - acts[:, second], axis=-1).mean())


def confidence_interval(values: Sequence[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% confidence interval 1.96 * std / sqrt(n)) of repeated runs."""
    vals = np.asarray(values, dtype=np.float64)
    if vals.size == 0:
        raise ValueError("confidence_interval needs at least one value")
    return float(vals.mean()), float(1.96 * vals.std() / np.sqrt(vals.size))


def accuracy(predictions, labels) -> float:
    """Fraction of predictions (N,) equal to labels (N,)."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if predictions.shape != labels.shape or predictions.size == 0:
        raise ValueError(f"accuracy needs equal non-empty shapes, got {predictions.shape} and {labels.shape}")
    return float((predictions == labels).mean())


# ---------------------------------------------------------------------------------------
# Motion-quality metrics on joint positions
# ---------------------------------------------------------------------------------------
def _check_joints(joints, min_frames: int, name: str) -> np.ndarray:
    joints = _as_float64(joints)
    if joints.ndim != 3 or joints.shape[1:] != (len(PARENTS), 3) or len(joints) < min_frames:
        raise ValueError(f"{name} needs joints (T>={min_frames}, {len(PARENTS)}, 3), got shape {joints.shape}")
    return joints


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over the last axis with zeros beyond both ends, divided by
    `window` everywhere: scipy.ndimage.uniform_filter1d(mode="constant", origin=0) for odd
    windows. values (..., N) -> (..., N)."""
    kernel = np.ones(window) / window
    return np.apply_along_axis(lambda row: np.convolve(row, kernel, mode="same"), -1, values)


def foot_skating_ratio(joints, fps: int = 20, contact_height: float = CONTACT_HEIGHT,
                       skating_speed: float = SKATING_SPEED, window: int = SKATING_WINDOW) -> float:
    """Fraction of frame steps (t -> t+1) in which a foot skates, as GMD defines it (Karunratanakul
    et al. 2023, "Guided Motion Diffusion", `calculate_skating_ratio` in
    data_loaders/humanml/utils/metrics.py; OmniControl uses the same code):

    - the feet are joints 10 and 11 (left/right foot), y up, floor at y = 0;
    - a foot is in contact over a step when its height is below contact_height (5 cm) at both frames;
    - it skates when, in contact, its horizontal (xz) speed over the step exceeds skating_speed
      (0.5 m/s) and so does that speed averaged over `window` (5) steps centred on it (zeros
      beyond the ends, as their `uniform_filter1d(mode="constant")`);
    - a step skates when either foot does; the ratio is over the T - 1 steps of the motion.

    joints (T >= 2, 22, 3). 0 for a still pose; 1 for planted feet that slide all the time.
    """
    joints = _check_joints(joints, 2, "foot_skating_ratio")
    feet = joints[:, SKATING_FEET].transpose(1, 0, 2)  # (2, T, 3)
    speed = np.linalg.norm(feet[:, 1:, [0, 2]] - feet[:, :-1, [0, 2]], axis=-1) * fps  # (2, T-1) m/s
    averaged = moving_average(speed, window)
    height = feet[..., 1]  # (2, T)
    contact = (height[:, :-1] < contact_height) & (height[:, 1:] < contact_height)  # (2, T-1)
    skating = contact & (speed > skating_speed) & (averaged > skating_speed)
    return float(skating.any(axis=0).mean())


def toe_height_contact(joints, height: float = CONTACT_HEIGHT) -> np.ndarray:
    """(2, T-1) bool: toe (joints 10, 11) within `height` of the floor y = 0 at both frames of
    step t -> t+1. joints (T >= 2, 22, 3)."""
    joints = _check_joints(joints, 2, "toe_height_contact")
    toe_y = joints[:, TOE_JOINTS, 1].T  # (2, T)
    return (toe_y[:, :-1] < height) & (toe_y[:, 1:] < height)


def toe_speeds(joints, fps: int = 20) -> np.ndarray:
    """(2, T-1) horizontal (xz) speed (m/s) of each toe over step t -> t+1. joints (T >= 2, 22, 3)."""
    joints = _check_joints(joints, 2, "toe_speeds")
    toes = joints[:, TOE_JOINTS][..., [0, 2]].transpose(1, 0, 2)  # (2, T, 2)
    return np.linalg.norm(np.diff(toes, axis=1), axis=-1) * fps


def toe_skating_speed(joints, fps: int = 20, height: float = CONTACT_HEIGHT) -> float:
    """Foot skating as Kimodo measures it (NVIDIA, 2026: "foot skate from height"): the mean
    horizontal speed (cm/s) of the toes (joints 10, 11) over the steps in which the toe is within
    `height` (5 cm) of the floor y = 0 (at both frames of the step), both toes pooled, with no
    speed threshold (unlike GMD's ratio, a slow drag counts). 0 for planted toes that stay put;
    NaN when no toe comes near the floor. joints (T >= 2, 22, 3) metres, y up."""
    near = toe_height_contact(joints, height)  # (2, T-1)
    return float(toe_speeds(joints, fps)[near].mean() * 100) if near.any() else float("nan")


def toe_contact_flags(features) -> np.ndarray:
    """(2, T) bool: the features' own contact channels of the left / right toe (260, 262 of the
    263: HumanML3D sets them from the joint's velocity, not its height) mark it planted.
    features (T, 263)."""
    features = _as_float64(features)
    if features.ndim != 2 or features.shape[1] <= max(TOE_CONTACT_CHANNELS):
        raise ValueError(f"toe_contact_flags needs features (T, 263), got shape {features.shape}")
    return features[:, TOE_CONTACT_CHANNELS].T > PLANTED_FLAG


def _flags_and_steps(joints, features, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(toe contact flags (2, T-1) of steps t -> t+1, joints (T, 22, 3)) of one motion."""
    joints = _check_joints(joints, 2, name)
    flags = toe_contact_flags(features)
    if flags.shape[1] != len(joints):
        raise ValueError(f"{name} needs features and joints of one length, got {flags.shape[1]} and {len(joints)}")
    return flags[:, :-1], joints  # the flag of frame t is about step t -> t+1 (HumanML3D's rule)


def flagged_toe_speed(joints, features, fps: int = 20) -> float:
    """Mean horizontal toe speed (cm/s) over the steps t -> t+1 whose frame t the features'
    contact channel marks planted (toes 10, 11 and channels 260, 262, both pooled): how still a
    foot is where the motion itself says it is planted. NaN when no toe is flagged.
    joints (T, 22, 3), features (T, 263) of the same motion."""
    flags, joints = _flags_and_steps(joints, features, "flagged_toe_speed")
    return float(toe_speeds(joints, fps)[flags].mean() * 100) if flags.any() else float("nan")


def contact_agreement(joints, features, height: float = CONTACT_HEIGHT) -> float:
    """Fraction of (toe, step) pairs in which the features' toe contact channel and the height
    test (toe within `height` of the floor, see toe_height_contact) agree. Ground truth does not
    score 1: its channels come from the toe's speed. joints (T, 22, 3), features (T, 263)."""
    flags, joints = _flags_and_steps(joints, features, "contact_agreement")
    return float((flags == toe_height_contact(joints, height)).mean())


def foot_penetration(joints) -> float:
    """Mean depth (m) of the lowest foot joint (ankles, feet) below the floor y = 0, over
    frames (0 when the feet never go under the floor). joints (T, 22, 3)."""
    joints = _check_joints(joints, 1, "foot_penetration")
    lowest = joints[:, FOOT_JOINTS, 1].min(axis=1)  # (T,)
    return float(np.clip(-lowest, 0.0, None).mean())


def jerk(joints, fps: int = 20) -> float:
    """Mean magnitude of the third time derivative of joint positions (m/s^3), over joints and
    frames (finite differences). joints (T >= 4, 22, 3). 0 for constant-velocity motion."""
    joints = _check_joints(joints, 4, "jerk")
    third = np.diff(joints, n=3, axis=0) * fps ** 3  # (T-3, 22, 3)
    return float(np.linalg.norm(third, axis=-1).mean())


def acceleration_magnitude(joints, fps: int = 20) -> np.ndarray:
    """Mean over joints of |x[t+1] - 2 x[t] + x[t-1]| * fps^2 (m/s^2) at frames t = 1 .. T-2:
    (T-2,), entry i belonging to frame i + 1. joints (T >= 3, 22, 3)."""
    joints = _check_joints(joints, 3, "acceleration_magnitude")
    second = np.diff(joints, n=2, axis=0) * fps ** 2  # (T-2, 22, 3)
    return np.linalg.norm(second, axis=-1).mean(axis=1)


def keyframe_acceleration_ratio(joints, keyframe_idx, fps: int = 20) -> float:
    """Kinks at keyframes: the mean acceleration magnitude (see acceleration_magnitude) at the
    interior keyframe frames divided by that at the other interior frames. About 1 for motion
    that does not notice its keyframes (ground truth on the same keyframe grid); well above 1
    when the motion bends sharply at them. NaN without an interior keyframe or other frame, or
    when the other frames do not accelerate (below STILL_ACCELERATION: a ratio of round-off).
    joints (T >= 3, 22, 3), keyframe_idx (K,) frame indices."""
    accel = acceleration_magnitude(joints, fps)  # frames 1 .. T-2
    idx = np.asarray(keyframe_idx, dtype=np.int64).reshape(-1)
    at_key = np.zeros(len(accel), dtype=bool)
    interior = idx[(idx >= 1) & (idx <= len(accel))]
    at_key[interior - 1] = True
    if not at_key.any() or at_key.all():
        return float("nan")
    others = accel[~at_key].mean()
    return float(accel[at_key].mean() / others) if others > STILL_ACCELERATION else float("nan")


def bone_lengths(joints, parents: Sequence[int] = PARENTS) -> np.ndarray:
    """Length (m) of each bone (joint j to parents[j], j with a parent) per frame: (T, 21)."""
    joints = _check_joints(joints, 1, "bone_lengths")
    children = np.array([j for j, p in enumerate(parents) if p >= 0])
    parent_idx = np.array([parents[j] for j in children])
    return np.linalg.norm(joints[:, children] - joints[:, parent_idx], axis=-1)


def bone_length_std(joints, parents: Sequence[int] = PARENTS) -> float:
    """Mean over bones of each bone's length standard deviation over the motion's frames (m):
    0 for a rigid skeleton, whatever its proportions. joints (T, 22, 3)."""
    return float(bone_lengths(joints, parents).std(axis=0).mean())


def bone_length_error(joints, bone_lengths_ref=BONE_LENGTHS, parents: Sequence[int] = PARENTS) -> float:
    """Mean absolute difference (m) between each bone's length and the canonical skeleton's
    (bone_lengths_ref (22,), length of joint j's bone to parents[j]), over bones and frames.
    joints (T, 22, 3)."""
    children = np.array([j for j, p in enumerate(parents) if p >= 0])
    reference = np.asarray(bone_lengths_ref, dtype=np.float64)[children]
    return float(np.abs(bone_lengths(joints, parents) - reference).mean())


def keyframe_adherence(motion, keyframes, keyframe_idx) -> float:
    """Mean per-joint distance (m) between keyframes (K, 22, 3) and the motion (T, 22, 3) at
    their frames keyframe_idx (K,): the global position error of pinned poses. NaN when there
    are no keyframes. (Keyframes the sampler imputes and whose root it takes from the motion
    itself score 0 by construction; use it for poses pinned at places.)"""
    motion = _check_joints(motion, 1, "keyframe_adherence")
    keyframes = _as_float64(keyframes)
    idx = np.asarray(keyframe_idx, dtype=np.int64)
    if len(idx) == 0:
        return float("nan")
    if keyframes.shape != (len(idx),) + motion.shape[1:]:
        raise ValueError(f"keyframe_adherence needs keyframes ({len(idx)}, 22, 3), got {keyframes.shape}")
    if idx.min() < 0 or idx.max() >= len(motion):
        raise ValueError(f"keyframe_idx must lie in [0, {len(motion) - 1}], got {idx.min()}..{idx.max()}")
    return float(np.linalg.norm(motion[idx] - keyframes, axis=-1).mean())


# ---------------------------------------------------------------------------------------
# Speed: does a motion move as fast as real motion, and do styles order speed as real ones do?
# ---------------------------------------------------------------------------------------
def root_speed(joints, fps: int = 20) -> float:
    """Mean horizontal speed (m/s) of the root joint over a motion: the mean length of its
    x-z steps times fps. joints (T >= 2, 22, 3)."""
    joints = _check_joints(joints, 2, "root_speed")
    return float(np.linalg.norm(np.diff(joints[:, 0, [0, 2]], axis=0), axis=-1).mean() * fps)


def moving_speed_ratio(speeds, real_speeds, moving_speed: float = MOVING_SPEED) -> float:
    """Mean root speed of the motions whose real counterpart moves (real speed >= moving_speed,
    m/s) over the mean real speed of those: 1 moves as fast as the real takes, 0.5 at half their
    pace. speeds, real_speeds (N,) m/s, pairwise (a motion and the real take of its caption).
    NaN when no real take moves."""
    speeds, real_speeds = np.asarray(speeds, np.float64), np.asarray(real_speeds, np.float64)
    if speeds.shape != real_speeds.shape:
        raise ValueError(f"speeds {speeds.shape} and real_speeds {real_speeds.shape} must pair up")
    moving = real_speeds >= moving_speed
    if not moving.any():
        return float("nan")
    return float(speeds[moving].mean() / real_speeds[moving].mean())


def ranks(values) -> np.ndarray:
    """1-based ranks of values (N,), ties sharing their mean rank (scipy's rankdata, method average)."""
    from scipy.stats import rankdata
    return rankdata(np.asarray(values, np.float64), method="average")


def rank_correlation(a, b) -> float:
    """Spearman's rank correlation of two paired sequences (N,): Pearson's correlation of their
    ranks, in [-1, 1]. NaN with fewer than 2 pairs or when one side is constant."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"rank_correlation needs two (N,) sequences of one length, got {a.shape} and {b.shape}")
    if len(a) < 2:
        return float("nan")
    ra, rb = ranks(a) - (len(a) + 1) / 2, ranks(b) - (len(b) + 1) / 2
    scale = np.sqrt((ra ** 2).sum() * (rb ** 2).sum())
    return float((ra * rb).sum() / scale) if scale > 0 else float("nan")


def style_speed_agreement(speeds, contents, styles, reference: dict, min_styles: int = 3,
                          moving_speed: float = MOVING_SPEED) -> float:
    """Do the motions order their styles by speed within a content as the reference takes do?

    speeds (N,) root speeds (m/s); contents, styles (N,) each motion's labels; reference
    {(content, style): mean real speed}. For each content whose reference styles move on average
    (mean >= moving_speed) and that has at least min_styles styles both here and in the
    reference: Spearman's correlation between the mean speed per style here and the reference's.
    Returns the mean over those contents (1: the same order, 0: unrelated, -1: reversed); NaN
    when no content qualifies."""
    if not len(speeds) == len(contents) == len(styles):
        raise ValueError("speeds, contents and styles must have one entry per motion")
    groups: dict = {}
    for speed, content, style in zip(speeds, contents, styles):
        groups.setdefault(content, {}).setdefault(style, []).append(float(speed))
    correlations = []
    for content, by_style in groups.items():
        known = {s: np.mean(v) for s, v in by_style.items() if (content, s) in reference}
        ref_all = [v for (c, _), v in reference.items() if c == content]
        if len(known) < min_styles or np.mean(ref_all) < moving_speed:
            continue
        names = sorted(known)
        value = rank_correlation([known[s] for s in names], [reference[(content, s)] for s in names])
        if not np.isnan(value):
            correlations.append(value)
    return float(np.mean(correlations)) if correlations else float("nan")


# ---------------------------------------------------------------------------------------
# Seams: does a motion pop where two pieces of it meet?
# ---------------------------------------------------------------------------------------
def root_context_velocity(joints, reach: int = ROOT_CONTEXT_STEPS) -> np.ndarray:
    """(T-1, 3) the root's steady velocity (m per step) around each step t -> t+1: the
    per-coordinate median of its steps t-reach .. t+reach (one odd step does not move it).
    joints (T >= 2, 22, 3)."""
    joints = _check_joints(joints, 2, "root_context_velocity")
    steps = np.diff(joints[:, 0], axis=0)  # (T-1, 3)
    return np.stack([np.median(steps[max(t - reach, 0):t + reach + 1], axis=0) for t in range(len(steps))])


def relative_displacements(joints, reach: int = ROOT_CONTEXT_STEPS) -> np.ndarray:
    """(T-1, 22) how far (m) each joint moves in step t -> t+1 beyond the root's steady motion
    around it: |x_j[t+1] - x_j[t] - root_context_velocity[t]|. A whole-body pop of d metres adds
    d to every joint, while the torso of a real motion stays within a few cm of its root's pace."""
    joints = _check_joints(joints, 2, "relative_displacements")
    return np.linalg.norm(np.diff(joints, axis=0) - root_context_velocity(joints, reach)[:, None], axis=-1)


def speed_bins(joints, fps: int = 20, edges: Sequence[float] = ROOT_SPEED_EDGES) -> np.ndarray:
    """(T-1,) the root speed bin (0 .. len(edges)) of each step: the speed (m/s) of its
    root_context_velocity against the bins' inner edges."""
    speed = np.linalg.norm(root_context_velocity(joints), axis=-1) * fps
    return np.digitize(speed, np.asarray(edges))


@dataclass(frozen=True)
class SeamReference:
    """What ground truth does, for judging seams: per root speed bin and joint, a high percentile
    of the joint's relative displacement per step (see relative_displacements), and the mean of
    FlowMDM's jerk curve (see jerk_curve), the baseline of the area under the jerk."""
    limits: np.ndarray  # (B, 22) m per step, B = len(speed_edges) + 1
    steps: np.ndarray  # (B,) ground-truth steps that fell in each bin
    jerk_level: float  # m/s^3
    fps: int
    speed_edges: tuple = ROOT_SPEED_EDGES


def seam_reference(motions: Sequence, fps: int = 20, percentile: float = SEAM_PERCENTILE,
                   speed_edges: Sequence[float] = ROOT_SPEED_EDGES) -> SeamReference:
    """The SeamReference of ground-truth motions (each (T_i >= 4, 22, 3)). A bin with fewer than
    MIN_BIN_STEPS steps takes the limits of the nearest bin that has enough."""
    motions = [_check_joints(m, 4, "seam_reference") for m in motions]
    displacement = np.concatenate([relative_displacements(m) for m in motions])  # (N, 22)
    bins = np.concatenate([speed_bins(m, fps, speed_edges) for m in motions])  # (N,)
    num_bins = len(speed_edges) + 1
    steps = np.bincount(bins, minlength=num_bins)
    full = np.flatnonzero(steps >= MIN_BIN_STEPS)
    if not len(full):
        raise ValueError(f"seam_reference needs at least {MIN_BIN_STEPS} steps in one root speed bin, "
                         f"got {steps.tolist()}: pass more or longer motions")
    limits = np.zeros((num_bins, displacement.shape[1]))
    for b in range(num_bins):
        source = full[np.argmin(np.abs(full - b))]
        limits[b] = np.percentile(displacement[bins == source], percentile, axis=0)
    level = float(np.concatenate([jerk_curve(m, fps) for m in motions]).mean())
    return SeamReference(limits, steps, level, fps, tuple(speed_edges))


def seam_displacement_ratio(joints, seam: int, reference: SeamReference, reach: int = SEAM_REACH) -> float:
    """The worst ratio, over the joints and the steps within `reach` of the seam step (s-1 -> s
    for a seam at frame s), of a joint's relative displacement to ground truth's limit for that
    joint at the step's root speed. Above 1: some joint jumps further in one step at the seam than
    ground truth does at that pace (a pop). joints (T, 22, 3)."""
    joints = _check_joints(joints, 4, "seam_displacement_ratio")
    if not 1 <= seam <= len(joints) - 1:
        raise ValueError(f"seam frame must lie in [1, {len(joints) - 1}], got {seam}")
    lo, hi = max(seam - 1 - reach, 0), min(seam + reach, len(joints) - 1)  # steps lo .. hi-1
    bins = speed_bins(joints, reference.fps, reference.speed_edges)[lo:hi]
    ratio = relative_displacements(joints)[lo:hi] / reference.limits[bins]  # (steps, 22)
    return float(ratio.max())


def jerk_curve(joints, fps: int = 20) -> np.ndarray:
    """FlowMDM's per-frame jerk (Barquero et al. 2024, "Seamless Human Motion Composition with
    Blended Positional Encodings"): the largest, over joints, L1 norm (|x| + |y| + |z|) of the
    third difference of joint positions, here scaled to m/s^3. (T-3,): entry i spans frames
    i .. i+3. joints (T >= 4, 22, 3)."""
    joints = _check_joints(joints, 4, "jerk_curve")
    return np.abs(np.diff(joints, n=3, axis=0)).sum(-1).max(-1) * fps ** 3


def transition_jerk(joints, seams: Sequence[int], fps: int = 20, reach: int = TRANSITION_REACH) -> np.ndarray:
    """(S, 2 reach + 1) jerk_curve around each seam frame s: entries s - 2 + k for k = -reach ..
    reach (k = 0 spans frames s-2 .. s+1, centred on the seam step s-1 -> s); NaN beyond the motion."""
    curve = jerk_curve(joints, fps)
    out = np.full((len(seams), 2 * reach + 1), np.nan)
    for row, seam in enumerate(seams):
        idx = np.arange(seam - 2 - reach, seam - 1 + reach)
        inside = (idx >= 0) & (idx < len(curve))
        out[row, inside] = curve[idx[inside]]
    return out


def peak_jerk(curves) -> float:
    """FlowMDM's Peak Jerk: the maximum of the transition jerk curves (S, L) averaged over seams (m/s^3)."""
    return float(np.nanmax(np.nanmean(_as_float64(curves), axis=0)))


def area_under_jerk(curves, level: float, fps: int = 20) -> float:
    """FlowMDM's Area Under the Jerk: the seam-averaged transition jerk curve's absolute distance
    from ground truth's mean jerk `level`, summed over the curve (here times 1/fps: m/s^2)."""
    mean = np.nanmean(_as_float64(curves), axis=0)
    return float(np.abs(mean[~np.isnan(mean)] - level).sum() / fps)


@dataclass
class SeamScores:
    """A motion's seams judged against ground truth."""
    seams: list  # seam frames
    displacement_ratios: list  # seam_displacement_ratio per seam (above 1: a pop)
    peak_jerk: float  # m/s^3 over the seams' transition curves
    area_under_jerk: float  # m/s^2
    jerk_level: float  # ground truth's mean jerk curve (m/s^3), the AUJ baseline

    @property
    def passed(self) -> bool:
        return all(r <= 1.0 for r in self.displacement_ratios)


def score_seams(joints, seams: Sequence[int], reference: SeamReference) -> SeamScores:
    """Displacement ratio per seam, Peak Jerk and Area Under the Jerk over them. joints (T, 22, 3)."""
    seams = [int(s) for s in seams]
    curves = transition_jerk(joints, seams, reference.fps)
    return SeamScores(seams, [seam_displacement_ratio(joints, s, reference) for s in seams],
                      peak_jerk(curves), area_under_jerk(curves, reference.jerk_level, reference.fps),
                      reference.jerk_level)
