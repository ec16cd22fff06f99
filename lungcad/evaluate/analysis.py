"""LUNA16 nodule-detection evaluation: tables in, :class:`FrocResult` out (no files written here)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lungcad.errors import DataLayoutError
from lungcad.evaluate.bootstrap import BootstrapResult, bootstrap_froc
from lungcad.evaluate.config import FrocConfig
from lungcad.evaluate.froc import FrocCurve, FrocEntries, froc_curve, sensitivity_at
from lungcad.evaluate.matching import FP, MatchResult, check_candidate_ids, match, resolve_scans
from lungcad.evaluate.tables import (
    ANNOTATION_COLUMNS,
    CANDIDATE_COLUMNS,
    empty_annotations,
    read_annotations,
    read_candidates,
    read_seriesuids,
    require_columns,
)
from lungcad.schema import XYZ


@dataclass(frozen=True)
class FrocResult:
    """Everything ``lungcad evaluate froc`` reports.

    Attributes:
        operating_points: FP rates (mean false positives per scan) of ``sensitivity``.
        sensitivity: sensitivity at each operating point (interpolated on the FROC curve).
        cpm: mean of ``sensitivity``.
        curve: the full FROC curve.
        match: per-nodule and per-mark outcome (see :class:`~lungcad.evaluate.matching.MatchResult`).
        entries: the scored FROC entries (for bootstrapping).
        by_size: per size bin: ``bin, min_mm, max_mm, nodules, detected``, sensitivity columns
            ``sens_<fps>`` and ``cpm`` (FROC of that bin's nodules against all false positives).
        bootstrap: confidence intervals, if requested.
        config: the settings used.
    """

    operating_points: tuple[float, ...]
    sensitivity: tuple[float, ...]
    cpm: float
    curve: FrocCurve
    match: MatchResult
    entries: FrocEntries
    by_size: pd.DataFrame
    bootstrap: BootstrapResult | None
    config: FrocConfig

    @property
    def n_scans(self) -> int:
        """Scans in the false-positive denominator (the series list)."""
        return len(self.match.scans)

    @property
    def n_nodules(self) -> int:
        """Included nodules of the evaluated scans (the sensitivity denominator)."""
        return len(self.match.nodules)

    @property
    def n_detected(self) -> int:
        """Nodules with at least one hit (at any score)."""
        return int(self.match.nodules["detected"].sum())

    def count(self, status: str) -> int:
        """Number of marks with that matching ``status`` (``tp``, ``fp``, ``double_hit`` ...)."""
        return int((self.match.candidates["status"] == status).sum())

    def __repr__(self) -> str:
        """One line (a notebook's view): CPM, sensitivity per FP rate, nodules detected, scans."""
        points = ", ".join(f"{point_label(p)}: {v:.3f}" for p, v in zip(self.operating_points, self.sensitivity))
        return (
            f"FrocResult(cpm={self.cpm:.4f}, sensitivity at FPs/scan {{{points}}}, "
            f"{self.n_detected}/{self.n_nodules} nodules detected, {self.n_scans} scan(s))"
        )


def point_label(fps: float) -> str:
    """``0.125 -> '0.125'``, ``1.0 -> '1'`` (JSON keys and column suffixes)."""
    return f"{fps:g}"


def froc_entries(m: MatchResult, nodule_mask: np.ndarray | None = None) -> FrocEntries:
    """FROC entries: one per detected nodule (its best score) and one per false-positive mark.

    ``nodule_mask`` restricts the nodules (e.g. a size bin); false positives are always all kept.
    """
    nod = m.nodules if nodule_mask is None else m.nodules[nodule_mask]
    det = nod[nod["detected"]]
    fps = m.candidates[m.candidates["status"] == FP]
    return FrocEntries(
        scores=np.r_[det["probability"].to_numpy(float), fps["probability"].to_numpy(float)],
        is_tp=np.r_[np.ones(len(det), bool), np.zeros(len(fps), bool)],
        scan=np.r_[det["scan"].to_numpy(int), fps["scan"].to_numpy(int)],
        nodules_per_scan=np.bincount(nod["scan"].to_numpy(int), minlength=len(m.scans)),
    )


def size_bins(diameter_mm: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Bin label per diameter (mm): ``<3``, ``3-5``, ..., ``>=20``; negative (unknown) -> ``unknown``."""
    labels = np.array(bin_labels(edges), dtype=object)
    out = labels[np.searchsorted(np.asarray(edges, float), diameter_mm, side="right")]
    out[np.asarray(diameter_mm) < 0] = "unknown"
    return out.astype(str)


def bin_labels(edges: Sequence[float]) -> list[str]:
    """Labels of the bins ``[-inf, e0), [e0, e1), ..., [e_last, inf)``."""
    e = [f"{x:g}" for x in edges]
    return [f"<{e[0]}"] + [f"{a}-{b}" for a, b in zip(e, e[1:])] + [f">={e[-1]}"]


def size_table(m: MatchResult, cfg: FrocConfig) -> pd.DataFrame:
    """Sensitivity per nodule size bin (FROC of that bin's nodules against all false positives).

    Bins ``[lo, hi)`` mm from ``cfg.size_bins_mm``; the ``<3`` and ``unknown`` rows appear only when
    such nodules exist.
    """
    edges = list(cfg.size_bins_mm)
    bins = size_bins(m.nodules["diameter_mm"].to_numpy(float), edges)
    bounds = list(zip([-np.inf, *edges], [*edges, np.inf]))
    rows = []
    for label, (lo, hi) in [*zip(bin_labels(edges), bounds), ("unknown", (np.nan, np.nan))]:
        mask = bins == label
        if not mask.any() and (label == "unknown" or lo == -np.inf):
            continue
        rows.append({"bin": label, "min_mm": lo, "max_mm": hi, **group_row(m, cfg, mask)})
    return pd.DataFrame(rows)


def group_row(m: MatchResult, cfg: FrocConfig, mask: np.ndarray) -> dict[str, float | int]:
    """``nodules, detected``, ``sens_<fps>`` and ``cpm`` of the nodules in ``mask`` (against all false positives)."""
    sens = np.full(len(cfg.operating_points), np.nan)
    if mask.any():
        sens = sensitivity_at(froc_curve(froc_entries(m, mask)), cfg.operating_points)
    row = {"nodules": int(mask.sum()), "detected": int(m.nodules.loc[mask, "detected"].sum())}
    row |= {f"sens_{point_label(p)}": float(s) for p, s in zip(cfg.operating_points, sens)}
    return row | {"cpm": float(np.mean(sens))}


def kind_table(r: FrocResult, kinds: pd.DataFrame, tolerance_mm: float = 0.5) -> pd.DataFrame:
    """Sensitivity per value of each attribute column of ``kinds`` (``seriesuid, coordX..Z`` + attributes, e.g.
    from :func:`~lungcad.evaluate.tables.read_nodule_kinds`): rows ``attribute, value`` + :func:`group_row`.

    Each annotated nodule takes the attributes of the ``kinds`` row of its scan nearest to it within
    ``tolerance_mm``; a nodule without one counts as ``unknown``. An attribute with one value for every nodule is
    left out.
    """
    m, attributes = r.match, [c for c in kinds.columns if c not in ("seriesuid", *XYZ)]
    nearest = np.full(len(m.nodules), -1)
    uids, xyz = kinds["seriesuid"].to_numpy(), kinds[XYZ].to_numpy(float)
    for i, (uid, point) in enumerate(zip(m.nodules["seriesuid"], m.nodules[XYZ].to_numpy(float))):
        rows = np.flatnonzero(uids == uid)
        if len(rows):
            d = np.linalg.norm(xyz[rows] - point, axis=1)
            if d.min() <= tolerance_mm:
                nearest[i] = rows[np.argmin(d)]
    out = []
    for attribute in attributes:
        values = np.where(nearest >= 0, kinds[attribute].to_numpy(dtype=object)[nearest], "unknown").astype(str)
        if len(set(values)) < 2:
            continue  # one value for every nodule (e.g. synth's 'excluded' = 0): no comparison to make
        for value in sorted(set(values)):
            out.append({"attribute": attribute, "value": value, **group_row(m, r.config, values == value)})
    points = [f"sens_{point_label(p)}" for p in r.config.operating_points]
    return pd.DataFrame(out, columns=["attribute", "value", "nodules", "detected", *points, "cpm"])


def compute_froc(
    annotations: pd.DataFrame,
    candidates: pd.DataFrame,
    seriesuids: Sequence[str] | None = None,
    *,
    excluded: pd.DataFrame | None = None,
    config: FrocConfig | None = None,
    candidates_source: str | None = None,
) -> FrocResult:
    """Evaluate CAD marks against LUNA16 annotations.

    Args:
        annotations: included nodules, ``seriesuid, coordX, coordY, coordZ`` (world mm), ``diameter_mm``.
        candidates: marks, ``seriesuid, coordX, coordY, coordZ`` (world mm), ``probability``.
        seriesuids: the scans evaluated (FP denominator); None: every uid in the tables (warned).
        excluded: annotations whose hits are ignored (same columns; negative diameter = unknown).
        config: settings (operating points, marks limit, bootstrap ...); default :class:`FrocConfig`.
        candidates_source: file name for error messages.
    """
    cfg = config or FrocConfig()
    excluded = excluded if excluded is not None else empty_annotations()
    require_columns(annotations, ANNOTATION_COLUMNS, "annotations")
    require_columns(excluded, ANNOTATION_COLUMNS, "excluded annotations")
    require_columns(candidates, CANDIDATE_COLUMNS, "candidates")
    scans = resolve_scans(seriesuids, annotations, excluded, candidates)
    candidates = check_candidate_ids(candidates, scans, cfg.unknown_ids, candidates_source)
    m = match(
        annotations,
        candidates,
        scans,
        excluded=excluded,
        max_marks_per_scan=cfg.max_marks_per_scan,
        unknown_diameter_mm=cfg.unknown_diameter_mm,
    )
    if m.nodules.empty:
        raise DataLayoutError(
            f"no annotated nodule in the {len(scans)} evaluated scan(s); sensitivity is undefined",
            expected="annotations whose seriesuid is in the series list",
        )
    entries = froc_entries(m)
    curve = froc_curve(entries)
    sens = sensitivity_at(curve, cfg.operating_points)
    return FrocResult(
        operating_points=tuple(cfg.operating_points),
        sensitivity=tuple(float(s) for s in sens),
        cpm=float(np.mean(sens)),
        curve=curve,
        match=m,
        entries=entries,
        by_size=size_table(m, cfg),
        bootstrap=_bootstrap(entries, cfg),
        config=cfg,
    )


def _bootstrap(entries: FrocEntries, cfg: FrocConfig) -> BootstrapResult | None:
    if cfg.bootstrap_samples <= 0:
        return None
    return bootstrap_froc(
        entries,
        cfg.operating_points,
        samples=cfg.bootstrap_samples,
        seed=cfg.bootstrap_seed,
        confidence=cfg.confidence,
        grid_fps=plot_grid(cfg),
    )


def plot_grid(cfg: FrocConfig) -> np.ndarray:
    """Log-spaced FP rates (per scan) over the operating range, for the curve plot and band."""
    return np.geomspace(cfg.operating_points[0], cfg.operating_points[-1], cfg.curve_points)


def compute_froc_files(
    annotations: str | Path,
    candidates: str | Path,
    *,
    excluded: str | Path | None = None,
    seriesuids: str | Path | None = None,
    config: FrocConfig | None = None,
) -> FrocResult:
    """:func:`compute_froc` on LUNA16-style CSV files (see :mod:`lungcad.evaluate.tables` for quirks)."""
    cfg = config or FrocConfig()
    return compute_froc(
        read_annotations(annotations),
        read_candidates(candidates, score_column=cfg.score_column),
        None if seriesuids is None else read_seriesuids(seriesuids),
        excluded=None if excluded is None else read_annotations(excluded, excluded=True),
        config=cfg,
        candidates_source=str(candidates),
    )
