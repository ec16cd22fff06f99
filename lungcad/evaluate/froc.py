"""FROC curve, sensitivity at fixed false-positive rates, and CPM, computed as the official LUNA16 script.

The curve has one point per distinct score ``t`` (highest first) plus the origin: at ``t`` it counts the
detected nodules whose best hit scores ``>= t`` (TP) and the false-positive marks scoring ``>= t`` (FP),
so ties form one point. With ``D`` detected nodules, ``N`` nodules, ``F`` false positives and ``S``
scans, the official script (through scikit-learn's ``roc_curve``) computes, in this float order::

    fps  = (FP / F) * F / S          # mean false positives per scan (0 everywhere if F == 0)
    sens = (TP / D) * D / N          # sensitivity

and reads the sensitivity at an FP rate ``x`` with ``numpy.interp(x, fps, sens)`` on the curve without
scikit-learn's collinear points: linear interpolation between curve points, the *highest* sensitivity
when ``x`` falls exactly on a vertical step, and the final sensitivity beyond the last point. CPM is the
mean of the sensitivities at the operating points. This module repeats all of that, float for float.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FrocEntries:
    """The marks that enter the FROC analysis (the official ``FROCGTList``/``FROCProbList`` less missed nodules).

    Attributes:
        scores: one score per detected nodule (its best hit) and per false-positive mark.
        is_tp: True for the detected-nodule entries.
        scan: scan index of each entry (for bootstrap resampling of scans).
        nodules_per_scan: number of included nodules (detected or not) of each scan; its length is the
            number of scans in the FP denominator.
    """

    scores: np.ndarray
    is_tp: np.ndarray
    scan: np.ndarray
    nodules_per_scan: np.ndarray

    @property
    def n_scans(self) -> int:
        """Scans in the false-positive denominator."""
        return len(self.nodules_per_scan)

    @property
    def n_nodules(self) -> int:
        """Included nodules (the sensitivity denominator)."""
        return int(self.nodules_per_scan.sum())


@dataclass(frozen=True)
class FrocCurve:
    """FROC curve points, highest threshold first (the first point is the origin at threshold +inf).

    Attributes:
        thresholds: score thresholds (a mark counts when its score is ``>=`` the threshold).
        tp, fp: detected nodules / false-positive marks at each threshold (counts, float).
        fps: mean false positives per scan, official float formula.
        sensitivity: fraction of nodules detected, official float formula.
    """

    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fps: np.ndarray
    sensitivity: np.ndarray


class SortedEntries:
    """Entries sorted once by descending score, so curves of many resamplings cost O(n) each."""

    def __init__(self, entries: FrocEntries) -> None:
        order = np.argsort(-np.asarray(entries.scores, dtype=np.float64), kind="stable")
        self.scores = np.asarray(entries.scores, dtype=np.float64)[order]
        self.is_tp = np.asarray(entries.is_tp, dtype=bool)[order]
        self.scan = np.asarray(entries.scan, dtype=np.intp)[order]
        self.nodules_per_scan = np.asarray(entries.nodules_per_scan, dtype=np.float64)
        n = len(self.scores)
        self.starts = np.flatnonzero(np.r_[True, self.scores[1:] != self.scores[:-1]]) if n else np.zeros(0, int)
        self.ends = np.r_[self.starts[1:], n] - 1 if n else np.zeros(0, int)

    def curve(self, scan_weights: np.ndarray | None = None) -> FrocCurve:
        """The curve, each scan counted ``scan_weights[s]`` times (None: once; bootstrap: 0, 1, 2 ...)."""
        n_scans = len(self.nodules_per_scan)
        if scan_weights is None:
            w = np.ones(len(self.scores))
            n_nodules = float(self.nodules_per_scan.sum())
        else:
            w = np.asarray(scan_weights, dtype=np.float64)[self.scan]
            n_nodules = float(np.asarray(scan_weights, dtype=np.float64) @ self.nodules_per_scan)
        tp = np.cumsum(w * self.is_tp)[self.ends]
        fp = np.cumsum(w * ~self.is_tp)[self.ends]
        keep = np.add.reduceat(w, self.starts) > 0 if len(w) else np.zeros(0, bool)
        thresholds = np.r_[np.inf, self.scores[self.ends][keep]]
        return curve_from_counts(thresholds, np.r_[0.0, tp[keep]], np.r_[0.0, fp[keep]], n_nodules, n_scans)


def curve_from_counts(
    thresholds: np.ndarray, tp: np.ndarray, fp: np.ndarray, n_nodules: float, n_scans: int
) -> FrocCurve:
    """Rates from cumulative counts with the official float formulas (see module doc).

    With no detected nodule the sensitivity is 0 (the official script gives NaN); with no nodule at all
    it is NaN.
    """
    d, f = tp[-1], fp[-1]
    fps = np.zeros_like(fp) if f == 0 else fp / f * f / n_scans
    sens = np.zeros_like(tp) if d == 0 else tp / d * d / n_nodules
    if n_nodules <= 0:
        sens = np.full_like(tp, np.nan)
    return FrocCurve(thresholds, tp, fp, fps, sens)


def froc_curve(entries: FrocEntries) -> FrocCurve:
    """The FROC curve of ``entries`` (every scan once)."""
    return SortedEntries(entries).curve()


def official_points(curve: FrocCurve) -> np.ndarray:
    """Mask of the points scikit-learn's ``roc_curve(drop_intermediate=True)`` keeps.

    Interior points whose FP and TP counts both have a zero second difference (evenly spaced on a line)
    are dropped; the origin, first and last points are kept. Interpolation is unchanged up to rounding.
    """
    keep = np.ones(len(curve.tp), dtype=bool)
    fp, tp = curve.fp[1:], curve.tp[1:]
    if len(fp) > 2:
        keep[2:-1] = (np.diff(fp, 2) != 0) | (np.diff(tp, 2) != 0)
    return keep


def sensitivity_at(curve: FrocCurve, fp_rates: Sequence[float] | np.ndarray) -> np.ndarray:
    """Sensitivity at mean false-positive rates per scan, interpolated as the official script."""
    keep = official_points(curve)
    return np.interp(np.asarray(fp_rates, dtype=np.float64), curve.fps[keep], curve.sensitivity[keep])


def cpm(curve: FrocCurve, operating_points: Sequence[float]) -> float:
    """Competition performance metric: mean sensitivity at ``operating_points`` (FPs per scan)."""
    return float(np.mean(sensitivity_at(curve, operating_points)))
