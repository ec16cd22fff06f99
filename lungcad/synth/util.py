"""Small numeric helpers shared by the phantom modules.

Per-voxel maths in :mod:`lungcad.synth` uses only ``+ - * /``, ``sqrt``, ``floor``, ``min``/``max`` and
``clip``: these are correctly rounded on every CPU, unlike vectorised ``exp``/``sin``/``cbrt`` whose SIMD
implementations may differ in the last bit between machines. That keeps a seed's bytes stable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def uniform(rng: np.random.Generator, bounds: Sequence[float]) -> float:
    """One draw uniform in ``[bounds[0], bounds[1])``."""
    return float(rng.uniform(bounds[0], bounds[1]))


def choice(rng: np.random.Generator, options: Sequence[T], weights: Sequence[float]) -> T:
    """One of ``options`` drawn with (unnormalised) ``weights``."""
    w = np.asarray(weights, dtype=np.float64)
    cdf = np.cumsum(w / w.sum())
    i = int(np.searchsorted(cdf, rng.random(), side="right"))
    return options[min(i, len(options) - 1)]


def normalize(v: np.ndarray) -> np.ndarray:
    """Unit vectors along the last axis (zero vectors stay zero)."""
    n = np.sqrt(np.sum(v * v, axis=-1, keepdims=True))
    return v / np.maximum(n, 1e-12)


def random_unit(rng: np.random.Generator, n: int) -> np.ndarray:
    """``(n, 3)`` isotropic random unit vectors."""
    return normalize(rng.standard_normal((n, 3)))


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3x3 rotation matrix (from a random unit quaternion, no trigonometry)."""
    q = normalize(rng.standard_normal(4))
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def cbrt(x: np.ndarray | float, iterations: int = 8) -> np.ndarray:
    """Cube root of positive values in ``[0.05, 10]`` by Newton steps (arithmetic only)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.ones_like(x)
    for _ in range(iterations):
        y = y - (y * y * y - x) / (3.0 * y * y)
    return y


def smoothstep(t: np.ndarray) -> np.ndarray:
    """``3t^2 - 2t^3`` of ``t`` clipped to [0, 1]."""
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def segment_distance(
    px: np.ndarray, py: np.ndarray, pz: np.ndarray, a: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Distance (mm) from points ``(px, py, pz)`` (broadcastable) to the segment ``a``-``b`` (xyz mm).

    Returns ``(distance, t)`` where ``t`` in [0, 1] is the position of the closest point along the segment.
    """
    d = b - a
    dd = float(d @ d)
    ax, ay, az = (px - a[0]), (py - a[1]), (pz - a[2])
    if dd <= 0:
        t = np.zeros(np.broadcast_shapes(np.shape(ax), np.shape(ay), np.shape(az)))
    else:
        t = np.clip((ax * d[0] + ay * d[1] + az * d[2]) / dd, 0.0, 1.0)
    ex, ey, ez = ax - t * d[0], ay - t * d[1], az - t * d[2]
    return np.sqrt(ex * ex + ey * ey + ez * ez), t


def binomial_passes(sigma_px: float) -> tuple[float, ...]:
    """3-tap smoothing passes ``[a, 1 - 2a, a]`` whose combined standard deviation is ``sigma_px`` pixels.

    Each pass adds variance ``2a`` (``a <= 0.25``); ``sigma_px <= 0`` gives no pass.
    """
    var = float(sigma_px) ** 2
    if var <= 1e-6:
        return ()
    n = int(np.ceil(var / 0.5))
    return (var / (2 * n),) * n


def passes_kernel(passes: Sequence[float]) -> np.ndarray:
    """The 1-D kernel equivalent to ``passes`` (``[1.0]`` for none)."""
    kernel = np.ones(1)
    for a in passes:
        kernel = np.convolve(kernel, np.array([a, 1 - 2 * a, a]))
    return kernel


def smooth_pass(x: np.ndarray, a: float, axis: int) -> np.ndarray:
    """One pass of ``[a, 1 - 2a, a]`` along ``axis`` with nearest-edge handling; returns a new array.

    Pure element-wise arithmetic in the array's dtype (float32 stays float32), so it is fast and
    bit-reproducible.
    """
    n = x.shape[axis]
    if n < 2:
        return x.copy()

    def s(start: int | None, stop: int | None) -> tuple:
        index = [slice(None)] * x.ndim
        index[axis] = slice(start, stop)
        return tuple(index)

    out = x * np.float32(1 - 2 * a) if x.dtype == np.float32 else x * (1 - 2 * a)
    w = np.asarray(a, dtype=x.dtype)
    out[s(1, None)] += w * x[s(0, -1)]
    out[s(0, -1)] += w * x[s(1, None)]
    out[s(0, 1)] += w * x[s(0, 1)]
    out[s(n - 1, n)] += w * x[s(n - 1, n)]
    return out
