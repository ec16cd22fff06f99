"""Settings of ``lungcad evaluate`` (``configs/evaluate.yaml``), loaded with :func:`lungcad.config.load_config`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lungcad.config import load_config

#: The seven FROC operating points of LUNA16, in mean false positives per scan.
LUNA16_OPERATING_POINTS: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


@dataclass(frozen=True)
class FrocConfig:
    """LUNA16 FROC settings.

    Attributes:
        operating_points: FP rates (mean false positives per scan) where sensitivity is read; CPM is their mean.
        max_marks_per_scan: keep only the most suspicious marks per scan, as the official script (100);
            0 or negative keeps every mark.
        unknown_diameter_mm: hit-radius diameter (mm) for annotations with a negative diameter (``-1``).
        size_bins_mm: increasing bin edges (mm) for the per-size breakdown; bins are ``[lo, hi)``.
        score_column: candidate column holding the CAD score.
        unknown_ids: candidates of scans not in the series list: ``error`` or ``ignore`` (official).
        bootstrap_samples: bootstrap resamplings of scans (0 = none; the challenge used 1000).
        bootstrap_seed: seed of the bootstrap generator (results are reproducible).
        confidence: two-sided confidence level of the bootstrap interval.
        curve_points: FP rates (log-spaced over the operating range) for the plotted curve and band.
    """

    operating_points: tuple[float, ...] = LUNA16_OPERATING_POINTS
    max_marks_per_scan: int = 100
    unknown_diameter_mm: float = 10.0
    size_bins_mm: tuple[float, ...] = (3.0, 5.0, 10.0, 20.0)
    score_column: str = "probability"
    unknown_ids: Literal["error", "ignore"] = "error"
    bootstrap_samples: int = 0
    bootstrap_seed: int = 0
    confidence: float = 0.95
    curve_points: int = 241

    def __post_init__(self) -> None:
        pts = self.operating_points
        if not pts or any(not (math.isfinite(p) and p > 0) for p in pts):
            raise ValueError("froc.operating_points must be positive FP rates")
        if any(b <= a for a, b in zip(pts, pts[1:])):
            raise ValueError("froc.operating_points must be strictly increasing")
        if any(b <= a for a, b in zip(self.size_bins_mm, self.size_bins_mm[1:])):
            raise ValueError("froc.size_bins_mm must be strictly increasing")
        if not self.unknown_diameter_mm > 0:
            raise ValueError("froc.unknown_diameter_mm must be positive")
        if self.bootstrap_samples < 0:
            raise ValueError("froc.bootstrap_samples must be >= 0")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError("froc.confidence must be between 0 and 1")
        if self.curve_points < 2:
            raise ValueError("froc.curve_points must be >= 2")


@dataclass(frozen=True)
class DsbConfig:
    """Data Science Bowl 2017 per-patient scoring settings.

    Attributes:
        clip: predictions are clipped to ``[clip, 1 - clip]`` before the log loss (Kaggle: 1e-15).
        calibration_bins: equal-width probability bins of the reliability diagram.
        id_column: patient id column in both files.
        label_column: 0/1 cancer label column of the labels file.
        prediction_column: probability column of the predictions file.
    """

    clip: float = 1e-15
    calibration_bins: int = 10
    id_column: str = "id"
    label_column: str = "cancer"
    prediction_column: str = "cancer"

    def __post_init__(self) -> None:
        if not 0.0 < self.clip < 0.5:
            raise ValueError("dsb.clip must be in (0, 0.5)")
        if self.calibration_bins < 1:
            raise ValueError("dsb.calibration_bins must be >= 1")


@dataclass(frozen=True)
class EvaluateConfig:
    """All evaluation settings: ``froc`` (LUNA16) and ``dsb`` (DSB 2017)."""

    froc: FrocConfig = field(default_factory=FrocConfig)
    dsb: DsbConfig = field(default_factory=DsbConfig)


def load_evaluate_config(name_or_path: str | Path | None = "evaluate") -> EvaluateConfig:
    """Load ``configs/evaluate.yaml`` (or a YAML path); None gives the built-in defaults."""
    return load_config(EvaluateConfig, name_or_path)
