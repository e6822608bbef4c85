"""Timelines: several prompts in a row, each with its duration, as one continuous motion of any length.

    from timeline import generate_timeline
    result = generate_timeline(composite, [("a person walks forward", 4.0),
                                           ("a person waves with the right hand", 3.0)])
    result.joints              # (140, 22, 3) metres, y up, one continuous motion
    result.segments            # [TimelineSegment(text, start=0, end=80), TimelineSegment(text, 80, 140)]
    result.frame_captions()    # the text of the segment each frame belongs to

`composite` is a `pipeline.Composite`; `generate.py --timeline "text:4; text:3"` is the CLI.

How a timeline is made (the models never see more than the length they were trained on):

1. Keyframes. The timeline has one keyframe grid (every keyframe_interval frames and the last
   frame). Each grid keyframe belongs to the segment its frame falls in. The GPT writes a
   segment's keyframe tokens conditioned on that segment's text, in windows of at most the
   trained length; every window starts with the CONTEXT_KEYFRAMES tokens before it pinned
   (pinned tokens), so a segment starts from where the previous one ended and a long segment
   continues its own previous window. The whole token sequence is decoded by the VQ-VAE once
   (its decoder is convolutional), so keyframes shared by two windows decode identically.
2. In-betweening. The diffusion in-betweens the dense motion in windows of the trained length
   (`window_plan`) that overlap by ~`overlap` frames, so every seam, between segments or
   between windows, lies inside a window. Each window gets the text of the segment that covers
   most of its new frames; the first part of its overlap with the previous window is pinned to
   the previous result (all features, imputation), and over the rest the two results are
   cross-faded. Time and memory grow linearly with the length.
3. Root. Features store the root as velocities; the windows' features are assembled into one
   (T, 263) array and integrated once from frame 0, so the global root is continuous across
   windows. World-space pins and trajectories (`control.py`) are met per window inside the
   sampling loop (goals in the window's own frame, from the root state at its first frame)
   and exactly on the assembled motion.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch

from control import (POSE_CHANNELS, ROOT_CHANNELS, RootControl, control_errors, correct_root, integrate_root,
                     raw_motion_joints, root_hook, steer_keyframes, to_world)
from models.keyframes import interpolate_keyframes
from pipeline import (STAGE_SEED_OFFSETS, Composite, KeyframePins, MotionSample, SamplingOptions, apply_pins,
                      pinned_feature_values, timed)
from feet import clean_feet
from effectors import (JointPins, check_joint_pins, compose_hooks, joint_pin_hook, joint_pin_report,
                       pelvis_trajectory, reach_joint_pins, release_keyframes)
from utils import FEATURE_DIM, FOOT_SLICE, delivered_joints, keyframe_indices, num_keyframes

MAX_TIMELINE_SECONDS = 600.0  # longest timeline accepted (time and memory grow linearly)
CONTEXT_KEYFRAMES = 4  # keyframe tokens of what came before, pinned at the start of a GPT window
DEFAULT_OVERLAP = 40  # frames shared by neighbouring diffusion windows
EXAMPLE = "a person walks forward:4; a person waves with the right hand:3"


@dataclass
class TimelineSegment:
    """One prompt of a timeline: its text and its frames [start, end)."""
    text: str
    start: int
    end: int

    @property
    def num_frames(self) -> int:
        return self.end - self.start


@dataclass
class TimelineResult(MotionSample):
    """A generated timeline: a MotionSample (prompt = the timeline as 'text:seconds; ...',
    joints (T, 22, 3) in world space, features (T, 263), keyframes (K, 22, 3), keyframe_idx (K,))
    plus its segments, the windows the GPT and the diffusion worked in ([start, end) frames),
    and the seconds spent in each part."""
    segments: list = field(default_factory=list)  # [TimelineSegment]
    fps: int = 20
    gpt_windows: list = field(default_factory=list)  # [(start, end)]
    diffusion_windows: list = field(default_factory=list)  # [(start, end)]
    timings: dict = field(default_factory=dict)

    @property
    def segment_bounds(self) -> np.ndarray:
        """(S, 2) int64: each segment's [start, end) frames."""
        return np.array([[s.start, s.end] for s in self.segments], dtype=np.int64).reshape(-1, 2)

    @property
    def segment_texts(self) -> list[str]:
        return [s.text for s in self.segments]

    def segment_at(self, frame: int) -> int:
        """Index of the segment that frame belongs to."""
        ends = [s.end for s in self.segments]
        return min(int(np.searchsorted(ends, frame, side="right")), len(ends) - 1)

    def frame_captions(self) -> list[str]:
        """The text of the current segment for every frame (T strings)."""
        return [s.text for s in self.segments for _ in range(s.num_frames)]


# ---------------------------------------------------------------------------------------
# Input
# ---------------------------------------------------------------------------------------
def parse_timeline(text: str) -> list[tuple[str, float]]:
    """'text:seconds; text:seconds' -> [(text, seconds), ...]; one-line ValueError otherwise.
    The duration follows the last ':' of a segment, so a text may contain ':' itself."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"the timeline is empty; write 'text:seconds; text:seconds', e.g. '{EXAMPLE}'")
    parts = [p.strip() for p in text.split(";")]
    segments = []
    for number, part in enumerate([p for p in parts if p], start=1):
        words, colon, seconds = part.rpartition(":")
        if not colon:
            raise ValueError(f"timeline segment {number} ('{part[:60]}') has no duration; write 'text:seconds', "
                             f"e.g. '{EXAMPLE}'")
        if not words.strip():
            raise ValueError(f"timeline segment {number} ('{part[:60]}') has no text before its duration")
        try:
            value = float(seconds)
        except ValueError:
            raise ValueError(f"timeline segment {number} ('{words.strip()[:60]}'): duration '{seconds.strip()[:20]}' "
                             "is not a number of seconds") from None
        segments.append((words.strip(), value))
    if not segments:
        raise ValueError(f"the timeline has no segments; write 'text:seconds; text:seconds', e.g. '{EXAMPLE}'")
    return segments


def format_timeline(segments: Sequence[TimelineSegment], fps: int) -> str:
    """The 'text:seconds; ...' form of segments (what parse_timeline reads)."""
    return "; ".join(f"{s.text}:{s.num_frames / fps:g}" for s in segments)


def check_segments(segments, fps: int, interval: int,
                   max_seconds: float = MAX_TIMELINE_SECONDS) -> list[TimelineSegment]:
    """[(text, seconds), ...] (or a 'text:seconds; ...' string) -> TimelineSegments with their
    frames; a one-line ValueError naming the bad segment otherwise."""
    if isinstance(segments, str):
        segments = parse_timeline(segments)
    if not isinstance(segments, (list, tuple)) or not segments:
        raise ValueError(f"segments must be a non-empty list of (text, seconds) pairs, e.g. "
                         f"[('a person walks forward', 4.0), ('a person waves', 3.0)]")
    out, start = [], 0
    for number, item in enumerate(segments, start=1):
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise ValueError(f"timeline segment {number} must be a (text, seconds) pair, got {item!r:.80}")
        text, seconds = item
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"timeline segment {number} has no text; describe a motion, e.g. 'a person walks forward'")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float, np.integer, np.floating)) \
                or not math.isfinite(seconds):
            raise ValueError(f"timeline segment {number} ('{text[:60]}'): seconds must be a finite number, "
                             f"got {seconds!r:.40}")
        frames = int(round(float(seconds) * fps))
        if frames <= interval:
            raise ValueError(f"timeline segment {number} ('{text[:60]}') lasts {float(seconds):g} s; each segment "
                             f"needs more than {interval / fps:g} s ({interval} frames at {fps} fps)")
        out.append(TimelineSegment(text.strip(), start, start + frames))
        start += frames
    if start > max_seconds * fps:
        raise ValueError(f"the timeline lasts {start / fps:g} s; the longest accepted is {max_seconds:g} s")
    return out


def trained_length(composite: Composite) -> int:
    """The longest window (frames) the models work in: the length they were trained on (and
    cfg.max_generate_length), rounded down so its last frame is on the keyframe grid."""
    interval = composite.keyframe_interval
    longest = min(composite.cfg.max_generate_length, composite.diffusion.cfg.max_motion_length)
    return (longest - 1) // interval * interval + 1


def window_plan(length: int, window: int, overlap: int, interval: int) -> list[tuple[int, int]]:
    """Diffusion windows [start, end) over `length` frames: `window` frames long, starts a
    multiple of `interval` apart so they overlap by at least `overlap` frames; the last one
    ends at the last frame (and may overlap more)."""
    if length <= window:
        return [(0, length)]
    stride = max(interval, (window - overlap) // interval * interval)
    starts = [0]
    while starts[-1] + window < length:
        starts.append(min(starts[-1] + stride, length - window))
    return [(s, s + window) for s in starts]


def _generator(seed: int, stage: str, index: int, device: torch.device) -> torch.Generator:
    """The random stream of one window of one stage: a function of (seed, stage, index)."""
    value = ((int(seed) * 1_000_003 + 7_919 * index) ^ STAGE_SEED_OFFSETS[stage]) & 0x7FFF_FFFF_FFFF_FFFF
    return torch.Generator(device=device).manual_seed(value)


def _segment_of(frames: np.ndarray, segments: list[TimelineSegment]) -> np.ndarray:
    ends = np.array([s.end for s in segments])
    return np.minimum(np.searchsorted(ends, frames, side="right"), len(segments) - 1)


@dataclass
class TimelineRun:
    """What every step of one timeline shares."""
    composite: Composite
    segments: list[TimelineSegment]
    text_emb: torch.Tensor  # (S, Dt) one row per segment
    options: SamplingOptions  # resolved
    control: Optional[RootControl]
    timings: dict = field(default_factory=dict)
    joint_pins: Optional[JointPins] = None  # checked, frames over the whole timeline

    def start(self) -> tuple[float, np.ndarray]:
        """Where frame 0 stands: (heading half-angle, xz) of the start transform."""
        return (0.0, np.zeros(2)) if self.control is None else (self.control.start_heading, self.control.start_xz)

    @property
    def device(self) -> torch.device:
        return self.text_emb.device


# ---------------------------------------------------------------------------------------
# The two stages over windows
# ---------------------------------------------------------------------------------------
def timeline_tokens(run: TimelineRun, grid: np.ndarray, window: int, pinned
                    ) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Keyframe tokens (K,) of the whole grid (K,) and the GPT windows ([start, end) frames).

    Segment by segment, window by window: the GPT gets the segment's text and the number of
    tokens of its window; the window's first tokens (up to CONTEXT_KEYFRAMES already written
    ones) and the user's on-grid pins are pinned, the rest is sampled."""
    composite, segments, text_emb, options, device = run.composite, run.segments, run.text_emb, run.options, run.device
    max_tokens = num_keyframes(window, composite.keyframe_interval)
    owner = _segment_of(grid, segments)
    tokens = torch.full((len(grid),), -1, dtype=torch.long, device=device)
    windows = []
    for index, _ in enumerate(segments):
        owned = np.nonzero(owner == index)[0]
        if not owned.size:
            continue
        nxt, last = int(owned[0]), int(owned[-1])
        while nxt <= last:
            a = max(0, nxt - CONTEXT_KEYFRAMES)
            b = min(a + max_tokens - 1, last)
            n = b - a + 1
            window_grid = torch.from_numpy(grid[a:b + 1] - grid[a]).to(device)
            pins = None if pinned is None else _window_pins(pinned, int(grid[a]), int(grid[b]))
            fixed = None if pins is None else composite.pinned_tokens(pins, window_grid, n)
            fixed = torch.full((1, n), -1, dtype=torch.long, device=device) if fixed is None else fixed
            fixed[0, :nxt - a] = tokens[a:nxt]
            with timed(run.timings, "gpt", device):
                drawn = composite.gpt.sample(
                    text_emb[index:index + 1], torch.tensor([n], device=device), options.token_sampling(),
                    generator=[_generator(options.seed, "gpt", len(windows), device)], pinned_tokens=fixed)
            tokens[nxt:b + 1] = drawn[0, nxt - a:]
            windows.append((int(grid[a]), int(grid[b]) + 1))
            nxt = b + 1
    return tokens, windows


def _window_pins(pinned, first: int, last: int):
    """The user pins of frames [first, last], with frames relative to `first`, or None."""
    frame_idx, values, dims = pinned
    inside = (frame_idx >= first) & (frame_idx <= last)
    if not bool(inside.any()):
        return None
    return frame_idx[inside] - first, values[inside], dims[inside]


def inbetween_windows(run: TimelineRun, values: torch.Tensor, mask: torch.Tensor, window: int, overlap: int
                      ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    """The dense normalised motion (T, 263) through keyframe values/mask (T, 263), in-betweened
    window by window (see the module doc); the raw motion (T, 263) joined the same way from each
    window's last x0 prediction with its keyframes imputed, before any root hook (what
    control.raw_motion_joints reads); and the windows."""
    composite, segments, text_emb, options, control = (run.composite, run.segments, run.text_emb, run.options,
                                                       run.control)
    device, T = values.device, len(values)
    plan = window_plan(T, window, overlap, composite.keyframe_interval)
    blend = max(1, overlap // 2)
    out = torch.zeros(T, FEATURE_DIM, device=device)
    raw = torch.zeros(T, FEATURE_DIM, device=device)
    mean3, std3 = composite.mean[:3].astype(np.float64), composite.std[:3].astype(np.float64)
    state_frame, (heading, xz) = 0, run.start()
    prev_end = 0
    for index, (start, end) in enumerate(plan):
        shared = max(0, prev_end - start)
        faded = min(blend, shared)
        held = shared - faded  # frames pinned to the previous window's result
        window_values, window_mask = values[start:end].clone(), mask[start:end].clone()
        window_values[:held], window_mask[:held] = out[start:start + held], 1.0
        counts = np.bincount(_segment_of(np.arange(start + held, end), segments), minlength=len(segments))
        text = int(counts.argmax())
        prediction: dict = {}
        extra = {"prediction_out": prediction}
        if control is not None or run.joint_pins is not None:  # the root state at the window's first frame
            root = out[state_frame:start, :3].double().cpu().numpy() * std3 + mean3
            states = _advance(root, heading, xz)
            state_frame, heading, xz = start, states[0], states[1]
        if control is not None:  # the root goals in the window's own frame
            extra["x0_hook"] = root_hook(control.local(start, end, heading, xz), composite.mean,
                                         composite.std, free_from=held)
        pins = None if run.joint_pins is None else run.joint_pins.window(start, end)
        if pins is not None:  # then the joint targets (effectors.py)
            extra["x0_hook"] = compose_hooks(extra.get("x0_hook"), joint_pin_hook(
                pins, composite.mean, composite.std, heading, xz, free_from=held))
        with timed(run.timings, "diffusion", device):
            dense = composite.diffusion.sample(
                text_emb[text:text + 1], window_values[None], window_mask[None], None,
                sampling=options.inbetween_sampling(),
                generator=[_generator(options.seed, "diffusion", index, device)], **extra)[0]
        own = torch.where(window_mask > 0.5, window_values, prediction["x0_prediction"][0])  # (Tw, 263)
        for joined, piece in ((out, dense), (raw, own)):
            if faded:
                weight = (torch.arange(1, faded + 1, device=device, dtype=out.dtype) / (faded + 1))[:, None]
                joined[start + held:prev_end] = (1 - weight) * joined[start + held:prev_end] + weight * piece[held:shared]
            joined[start + shared:end] = piece[shared:]
        prev_end = end
    return out, raw, plan


def _advance(root: np.ndarray, heading: float, xz) -> tuple[float, np.ndarray]:
    """The root state after root features root (N, 3), starting from (heading, xz)."""
    headings, positions = integrate_root(root, heading, xz)
    return float(headings[-1]), positions[-1]


# ---------------------------------------------------------------------------------------
# The API
# ---------------------------------------------------------------------------------------
@torch.inference_mode()
def generate_timeline(composite: Composite, segments, options: Optional[SamplingOptions] = None,
                      trajectory=None, pins: Optional[KeyframePins] = None, *, window: Optional[int] = None,
                      overlap: int = DEFAULT_OVERLAP, joint_pins: Optional[JointPins] = None) -> TimelineResult:
    """One continuous motion from prompts in a row.

    segments: [(text, seconds), ...] (or 'text:seconds; text:seconds'); each segment lasts
        round(seconds * fps) frames, more than one keyframe interval; the whole timeline at
        most MAX_TIMELINE_SECONDS.
    options: SamplingOptions (None: all from composite.cfg); the seed fixes every window.
    trajectory: a root path over the whole timeline, (T, 2) xz per frame or (P, 3) rows
        (frame, x, z) in metres, followed by the root (control.py).
    pins: KeyframePins with frames over the whole timeline ("local" poses, or "world" poses
        that also pin where the root is and where it faces).
    window / overlap: diffusion window length (default and maximum: the trained length) and
        overlap in frames.
    joint_pins: effectors.JointPins with frames over the whole timeline (world positions of
        joints; steered per window, met by IK before the foot cleanup; errors in control_errors).
    Returns a TimelineResult (joints in world space: the origin facing +z at frame 0, unless a
    world pin or the trajectory says otherwise).
    """
    cfg = composite.cfg
    options = (options or SamplingOptions()).resolve(cfg)
    segs = check_segments(segments, cfg.fps, composite.keyframe_interval)
    T = segs[-1].end
    window = check_window(window, overlap, trained_length(composite), composite.keyframe_interval)
    pinned = None if pins is None else pinned_feature_values(pins, T, composite.mean, composite.std)
    joint_pins = None if joint_pins is None else check_joint_pins(joint_pins, T)
    trajectory = pelvis_trajectory(trajectory, joint_pins, T)  # a pelvis x/z pin is a root goal
    control = RootControl.build(T, pins, trajectory, fps=cfg.fps)
    timings: dict = {}
    with timed(timings, "text", composite.device):
        text_emb = composite.text_encoder.encode([s.text for s in segs]).to(composite.device)  # (S, Dt)
    run = TimelineRun(composite, segs, text_emb, options, control, timings, joint_pins)
    values, mask, gpt_windows = timeline_keyframes(run, T, pinned)  # (T, 263) x2
    if options.mode == "interpolate":
        dense, raw_x0, diffusion_windows = interpolate_keyframes(values[None], mask[None])[0], None, []
    else:
        dense, raw_x0, diffusion_windows = inbetween_windows(run, values, mask, window, overlap)
    features = composite.denormalise(dense)  # (T, 263)
    raw_joints = None
    raw = lambda channels: raw_motion_joints(features, raw_x0, composite.mean, composite.std,  # noqa: E731
                                             options.fit_bones, channels)  # the network's own motion, before the hooks
    if joint_pins is not None:
        raw_pins = to_world(raw(POSE_CHANNELS), *run.start())
    if control is not None:
        raw_joints = control.place(raw(ROOT_CHANNELS))
        features[:, :3] = torch.from_numpy(correct_root(features.cpu().numpy(), control.local())[:, :3]).to(features)
    with timed(run.timings, "joints", composite.device):
        joints = delivered_joints(features, options.fit_bones)  # (T, 22, 3)
        keyframes, frames = composite.keyframe_poses(features, values, mask, options.fit_bones)
    joints, keyframes = joints.cpu().numpy(), keyframes.cpu().numpy()
    if control is not None:
        joints, keyframes = control.place(joints), control.place(keyframes)
    if joint_pins is not None:  # the final IK, before the foot cleanup
        pre_ik = to_world(joints, *run.start()) if control is None else joints
        joints, reachable = reach_joint_pins(pre_ik, joint_pins)
        joints = joints.astype(pre_ik.dtype)
    contacts = None
    if options.cleanup_feet:  # once, on the joined and placed timeline (feet.py)
        cleaned = clean_feet(joints, features[:, FOOT_SLICE].cpu().numpy(), cfg.fps)
        joints, contacts = cleaned.joints, cleaned.contacts
    errors = None if control is None else control_errors(joints, control, raw_joints)
    if joint_pins is not None:
        errors = {**(errors or {}), **joint_pin_report(joints, joint_pins, reachable, raw_pins, pre_ik)}
    return TimelineResult(prompt=format_timeline(segs, cfg.fps), joints=joints, features=features.cpu().numpy(),
                          keyframes=keyframes, keyframe_idx=frames.cpu().numpy(), control_errors=errors,
                          segments=segs, fps=cfg.fps, gpt_windows=gpt_windows,
                          diffusion_windows=diffusion_windows, timings=run.timings, contacts=contacts)


def check_window(window, overlap, longest: int, interval: int) -> int:
    """The diffusion window length (default: the trained length `longest`), checked with the overlap."""
    window = longest if window is None else window
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or not 4 * interval <= window <= longest:
        raise ValueError(f"window must be a whole number of frames in [{4 * interval}, {longest}] (the trained "
                         f"length), got {window!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, (int, np.integer)) or not 2 <= overlap <= window // 2:
        raise ValueError(f"overlap must be a whole number of frames in [2, {window // 2}], got {overlap!r}")
    return int(window)


def timeline_keyframes(run: TimelineRun, length: int, pinned) -> tuple[torch.Tensor, torch.Tensor, list]:
    """Normalised keyframe values (T, 263) and 0/1 mask (T, 263) of the whole timeline: the
    GPT's keyframes on the grid (unless diffusion_only), the user's pins, steered towards the
    root goals; and the GPT windows."""
    composite, device = run.composite, run.device
    values = torch.zeros(length, FEATURE_DIM, device=device)
    mask = torch.zeros(length, FEATURE_DIM, device=device)
    gpt_windows: list = []
    if run.options.mode != "diffusion_only":
        grid = keyframe_indices(length, composite.keyframe_interval)
        tokens, gpt_windows = timeline_tokens(run, grid, trained_length(composite), pinned)
        with timed(run.timings, "vq_decode", device):
            decoded = composite.vqvae.decode(tokens[None])[0]  # (K, 263)
        values[torch.from_numpy(grid).to(device)] = decoded
        mask[torch.from_numpy(grid).to(device)] = 1.0
    if pinned is not None:
        apply_pins(values, mask, pinned)
    if run.control is not None:
        values = steer_keyframes(values, mask, run.control.local(), composite.mean, composite.std)
    if run.joint_pins is not None:  # the in-betweener's own pose around joint targets (effectors.py)
        mask = release_keyframes(mask, run.joint_pins, None if pinned is None else pinned[0])
    return values, mask, gpt_windows
