"""Smooth curves over frames (numpy, vectorised) and the small random draws shared by the
generator: every animation channel is built from these ramps, envelopes and splines."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def pick(rng: np.random.Generator, options: Sequence):
    """One element of `options`, uniformly (one draw from rng)."""
    return options[int(rng.integers(len(options)))]


def minjerk(u: np.ndarray) -> np.ndarray:
    """Minimum-jerk ramp 0 -> 1 on u in [0, 1] (zero velocity and acceleration at both ends)."""
    u = np.clip(u, 0.0, 1.0)
    return u * u * u * (10.0 - 15.0 * u + 6.0 * u * u)


def ramp(t: np.ndarray, start: float, length: float) -> np.ndarray:
    """Minimum-jerk ramp from 0 at frame `start` to 1 at `start + length` (frames)."""
    return minjerk((t - start) / max(length, 1e-6))


def envelope(t: np.ndarray, t0: float, t1: float, ramp_in: float, ramp_out: float) -> np.ndarray:
    """0 -> 1 over [t0, t0+ramp_in], 1, then 1 -> 0 over [t1-ramp_out, t1] (frames)."""
    return ramp(t, t0, ramp_in) * (1.0 - ramp(t, t1 - ramp_out, ramp_out))


def _hermite_basis(u: np.ndarray) -> tuple:
    """The four cubic Hermite basis functions (h00, h10, h01, h11) at u in [0, 1]."""
    return 2 * u ** 3 - 3 * u ** 2 + 1, u ** 3 - 2 * u ** 2 + u, -2 * u ** 3 + 3 * u ** 2, u ** 3 - u ** 2


def spline(key_t, key_v, t: np.ndarray) -> np.ndarray:
    """C1 cubic through keyframes (Catmull-Rom tangents, zero slope at the first and last key).

    key_t: (K,) increasing frame times; key_v: (K, ...) values; t: (N,) frames -> (N, ...).
    Outside [key_t[0], key_t[-1]] the end values are held.
    """
    key_t = np.asarray(key_t, dtype=np.float64)
    key_v = np.asarray(key_v, dtype=np.float64)
    slopes = np.zeros_like(key_v)  # (K, ...)
    if len(key_t) > 2:
        span = (key_t[2:] - key_t[:-2]).reshape((-1,) + (1,) * (key_v.ndim - 1))
        slopes[1:-1] = (key_v[2:] - key_v[:-2]) / span
    tc = np.clip(t, key_t[0], key_t[-1])
    seg = np.clip(np.searchsorted(key_t, tc, side="right") - 1, 0, len(key_t) - 2)  # (N,)
    h = key_t[seg + 1] - key_t[seg]
    u = (tc - key_t[seg]) / h
    shape = (-1,) + (1,) * (key_v.ndim - 1)
    u, h = u.reshape(shape), h.reshape(shape)
    h00, h10, h01, h11 = _hermite_basis(u)
    return h00 * key_v[seg] + h10 * h * slopes[seg] + h01 * key_v[seg + 1] + h11 * h * slopes[seg + 1]


def hermite(p0: float, v0: float, p1: float, v1: float, n: int) -> np.ndarray:
    """Cubic from p0 (velocity v0, per frame) to p1 (velocity v1) over n frames: n+1 values."""
    u = np.arange(n + 1) / n  # (n+1,)
    h00, h10, h01, h11 = _hermite_basis(u)
    return h00 * p0 + h10 * n * v0 + h01 * p1 + h11 * n * v1


def smooth_noise(rng: np.random.Generator, n: int, fps: int, amplitude: float,
                 freq=(0.12, 0.5)) -> np.ndarray:
    """Smooth random signal (n,): three sines of random frequency (Hz) and phase."""
    t = np.arange(n) / fps
    out = np.zeros(n)
    for _ in range(3):
        f = rng.uniform(*freq)
        out += np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    return amplitude * out / 3.0
