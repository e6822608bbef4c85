"""Keyframe maths for the in-betweener: interpolating pinned entries (linear or cubic Hermite)
and the envelope that keeps a residual from bending the motion at them. Pure tensor functions."""
from __future__ import annotations

import math
from typing import Literal

import torch


def _pinned_neighbours(keyframe_mask: torch.Tensor):
    """For every entry (b, t, d) of a mask (B, T, D): the frame index, the last pinned frame
    <= t (-1: none) and the first pinned frame >= t (T: none), long tensors (B, T, D), or
    (B, T, 1) when every feature of every frame is pinned alike (the keyframe grid of training
    and of plain sampling): the same values, broadcast, at 1/D of the scan's cost."""
    pinned = keyframe_mask > 0.5
    if bool((pinned == pinned[..., :1]).all()):
        pinned = pinned[..., :1]
    B, T, D = pinned.shape
    frame = torch.arange(T, device=keyframe_mask.device)[None, :, None].expand(B, T, D)
    prev_idx = torch.where(pinned, frame, -1).cummax(dim=1).values
    next_idx = torch.where(pinned, frame, T).flip(1).cummin(dim=1).values.flip(1)
    return frame, prev_idx, next_idx


def interpolate_keyframes(keyframe_values: torch.Tensor, keyframe_mask: torch.Tensor,
                          kind: Literal["linear", "cubic"] = "linear") -> torch.Tensor:
    """Per-feature interpolation between pinned entries, held constant outside them.

    keyframe_values: (B, T, D); keyframe_mask: (B, T, D) 0/1. Entry (b, t, d) interpolates
    between the nearest pinned frames before and after t in feature d: linearly, or with kind
    "cubic" by a cubic Hermite (Catmull-Rom) curve whose slope at each pinned frame is the
    difference quotient of its pinned neighbours (one-sided at the first and last), so the curve
    has no kink at the keyframes; before the first / after the last pinned frame it holds that
    frame's value; a feature with no pinned frame is 0 (the data mean). Returns (B, T, D),
    equal to keyframe_values at pinned entries.
    """
    T = keyframe_values.shape[1]
    frame, prev_idx, next_idx = _pinned_neighbours(keyframe_mask)  # last pinned <= t, first pinned >= t
    has_prev, has_next = prev_idx >= 0, next_idx < T
    p0, p1 = prev_idx.clamp(min=0), next_idx.clamp(max=T - 1)

    def take(idx: torch.Tensor) -> torch.Tensor:  # values at frame idx (B, T, D or 1) per feature
        return keyframe_values.gather(1, idx.expand_as(keyframe_values))

    prev_val, next_val = take(p0), take(p1)
    dtype = keyframe_values.dtype
    span = (next_idx - prev_idx).clamp(min=1).to(dtype)
    weight = ((frame - prev_idx).to(dtype) / span).clamp(0.0, 1.0)
    if kind == "linear":
        between = prev_val + weight * (next_val - prev_val)
    elif kind == "cubic":
        chord = (next_val - prev_val) / span  # slope of the segment
        before = prev_idx.gather(1, (p0 - 1).clamp(min=0))  # the pinned frame before p0 (if any)
        after = next_idx.gather(1, (p1 + 1).clamp(max=T - 1))  # the pinned frame after p1 (if any)
        has_before, has_after = (before >= 0) & (before < prev_idx), (after < T) & (after > next_idx)
        before_val, after_val = take(before.clamp(min=0)), take(after.clamp(max=T - 1))
        slope0 = torch.where(has_before, (next_val - before_val) / (next_idx - before).clamp(min=1).to(dtype), chord)
        slope1 = torch.where(has_after, (after_val - prev_val) / (after - prev_idx).clamp(min=1).to(dtype), chord)
        s, s2 = weight, weight * weight
        s3 = s2 * s
        between = ((2 * s3 - 3 * s2 + 1) * prev_val + (s3 - 2 * s2 + s) * span * slope0
                   + (3 * s2 - 2 * s3) * next_val + (s3 - s2) * span * slope1)
    else:
        raise ValueError(f"interpolation kind must be 'linear' or 'cubic', got {kind!r}")
    held = torch.where(has_prev, prev_val, torch.where(has_next, next_val, torch.zeros_like(prev_val)))
    return torch.where(has_prev & has_next, between, held)


def keyframe_envelope(keyframe_mask: torch.Tensor, ramp: int) -> torch.Tensor:
    """Weights (B, T, D) in [0, 1] that vanish with zero slope at pinned entries: sin^2(pi s) at
    the fraction s of the way between two pinned frames, sin^2(pi/2 min(1, distance / ramp))
    before the first / after the last pinned frame, 1 in a feature with no pinned frame. A
    residual multiplied by it leaves a smooth curve through the keyframes smooth."""
    T = keyframe_mask.shape[1]
    frame, prev_idx, next_idx = _pinned_neighbours(keyframe_mask)
    has_prev, has_next = prev_idx >= 0, next_idx < T
    span = (next_idx - prev_idx).clamp(min=1).float()
    between = torch.sin(math.pi * (frame - prev_idx).float() / span) ** 2
    distance = torch.where(has_prev, frame - prev_idx, next_idx - frame).float()
    outside = torch.sin(0.5 * math.pi * (distance / max(ramp, 1)).clamp(max=1.0)) ** 2
    envelope = torch.where(has_prev & has_next, between, torch.where(has_prev | has_next, outside, 1.0))
    return envelope.to(keyframe_mask.dtype).expand_as(keyframe_mask)
