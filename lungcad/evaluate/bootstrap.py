"""Bootstrap confidence intervals of the FROC, as the LUNA16 challenge computed them.

Each resampling draws ``S`` scans with replacement from the ``S`` scans of the series list (a scan drawn
twice counts twice: its nodules, its marks and in the FP denominator, which stays ``S``), builds the
FROC curve of that set and reads the sensitivity at the operating points and along a grid of FP rates.
The interval is the official one: with ``n`` resamplings sorted, ``lower = v[floor(a * n)]`` and
``upper = v[floor((1 - a) * n)]``, ``a = (1 - confidence) / 2``; the centre is the mean.
Resamplings without any nodule (possible only in tiny sets) are left out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lungcad.evaluate.froc import FrocEntries, SortedEntries, sensitivity_at


@dataclass(frozen=True)
class Interval:
    """Bootstrap mean and confidence bounds of one quantity (NaN when no resampling was usable)."""

    mean: float
    low: float
    high: float


@dataclass(frozen=True)
class BootstrapResult:
    """Bootstrap statistics.

    Attributes:
        samples: resamplings drawn; ``used`` of them had at least one nodule.
        seed: generator seed (``numpy.random.default_rng``).
        confidence: two-sided level of the intervals.
        sensitivity: one :class:`Interval` per operating point.
        cpm: interval of the per-resampling CPM.
        grid_fps: FP rates (per scan) of the band; ``grid_mean/low/high`` the sensitivity band there.
    """

    samples: int
    used: int
    seed: int
    confidence: float
    sensitivity: tuple[Interval, ...]
    cpm: Interval
    grid_fps: np.ndarray
    grid_mean: np.ndarray
    grid_low: np.ndarray
    grid_high: np.ndarray


def mean_ci(values: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column-wise mean and official percentile bounds of ``values`` (resamplings x quantities); NaN rows dropped."""
    v = values[~np.isnan(values).any(axis=1)]
    if len(v) == 0:
        nan = np.full(values.shape[1], np.nan)
        return nan, nan.copy(), nan.copy()
    v = np.sort(v, axis=0)
    a = (1.0 - confidence) / 2.0
    n = len(v)
    return v.mean(axis=0), v[int(math.floor(a * n))], v[int(math.floor((1.0 - a) * n))]


def resample_weights(rng: np.random.Generator, n_scans: int) -> np.ndarray:
    """How often each scan is drawn in one resampling of ``n_scans`` scans with replacement."""
    return np.bincount(rng.integers(n_scans, size=n_scans), minlength=n_scans).astype(np.float64)


def bootstrap_froc(
    entries: FrocEntries,
    operating_points: Sequence[float],
    *,
    samples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    grid_fps: np.ndarray | None = None,
) -> BootstrapResult:
    """Bootstrap the FROC of ``entries`` over scans; reproducible for a given ``seed``.

    Args:
        entries: FROC entries with their scan indices (from :func:`lungcad.evaluate.report.compute_froc`).
        operating_points: FP rates (per scan) of the sensitivity intervals; CPM is their mean.
        samples: number of resamplings (the challenge: 1000).
        grid_fps: FP rates of the band (default: 241 log-spaced over the operating range).
    """
    points = np.asarray(operating_points, dtype=np.float64)
    grid = np.geomspace(points[0], points[-1], 241) if grid_fps is None else np.asarray(grid_fps, float)
    sorted_entries = SortedEntries(entries)
    rng = np.random.default_rng(seed)
    sens = np.full((samples, len(points)), np.nan)
    band = np.full((samples, len(grid)), np.nan)
    for b in range(samples):
        curve = sorted_entries.curve(resample_weights(rng, entries.n_scans))
        if not np.isnan(curve.sensitivity).any():
            sens[b] = sensitivity_at(curve, points)
            band[b] = sensitivity_at(curve, grid)
    used = int((~np.isnan(sens).any(axis=1)).sum())
    s_mean, s_low, s_high = mean_ci(sens, confidence)
    c_mean, c_low, c_high = mean_ci(sens.mean(axis=1, keepdims=True), confidence)
    g_mean, g_low, g_high = mean_ci(band, confidence)
    return BootstrapResult(
        samples=samples,
        used=used,
        seed=seed,
        confidence=confidence,
        sensitivity=tuple(Interval(float(m), float(lo), float(hi)) for m, lo, hi in zip(s_mean, s_low, s_high)),
        cpm=Interval(float(c_mean[0]), float(c_low[0]), float(c_high[0])),
        grid_fps=grid,
        grid_mean=g_mean,
        grid_low=g_low,
        grid_high=g_high,
    )
