"""Match CAD marks to nodule annotations with the LUNA16 rules.

A mark hits an annotation when its squared distance to the annotation centre is strictly below the
squared radius ``(diameter_mm / 2) ** 2`` (world mm; negative diameter -> ``unknown_diameter_mm``). Per
scan, as in the official ``noduleCADEvaluationLUNA16.py``:

- every mark hitting an included nodule is taken off the false-positive list; the nodule is detected
  with the *highest* score among its hits (one true positive per nodule); other hits are ignored;
- a mark hitting an included nodule counts for it even if it also hits an excluded annotation or
  another included nodule (one mark can detect two overlapping nodules, as officially);
- a mark hitting only excluded annotations is ignored;
- every other mark is a false positive; a nodule without hits is missed and stays in the denominator.

Before matching, each scan keeps at most ``max_marks_per_scan`` marks with the official rule: when a
scan has more, only marks scoring strictly above the ``(max + 1)``-th highest score are kept (so ties at
the cut drop all tied marks).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lungcad.errors import DataLayoutError
from lungcad.evaluate.tables import few
from lungcad.schema import XYZ

log = logging.getLogger(__name__)

#: Candidate ``status`` values.
TP, DOUBLE, EXCLUDED, FP, OVER_LIMIT = "tp", "double_hit", "excluded_hit", "fp", "over_max_marks"


@dataclass(frozen=True)
class MatchResult:
    """Outcome of matching.

    Attributes:
        scans: the evaluated seriesuids (the FP denominator), in series-list order.
        nodules: included annotations of those scans, columns ``seriesuid, coordX..Z, diameter_mm,
            radius_mm, scan, detected, probability`` (best hit score, NaN if missed), ``hits``,
            ``hit_coordX..Z`` (best hit, first in file order among equal scores; NaN if missed).
        candidates: marks of those scans, columns ``seriesuid, coordX..Z, probability, scan, status``
            (``tp``, ``double_hit``, ``excluded_hit``, ``fp``, ``over_max_marks``).
    """

    scans: tuple[str, ...]
    nodules: pd.DataFrame
    candidates: pd.DataFrame


def resolve_scans(
    seriesuids: Sequence[str] | None, annotations: pd.DataFrame, excluded: pd.DataFrame, candidates: pd.DataFrame
) -> tuple[str, ...]:
    """The series list; without one, every uid seen in the three tables (with a warning)."""
    if seriesuids is not None:
        return tuple(seriesuids)
    seen = pd.concat([annotations["seriesuid"], excluded["seriesuid"], candidates["seriesuid"]])
    log.warning(
        "no series list given: the FP rate is averaged over the %d scans named in annotations or "
        "candidates; scans with neither are not counted (pass --seriesuids for official numbers)",
        seen.nunique(),
    )
    return tuple(pd.unique(seen))


def check_candidate_ids(
    candidates: pd.DataFrame, scans: Sequence[str], unknown_ids: str, source: str | None
) -> pd.DataFrame:
    """Drop (``ignore``) or refuse (``error``) marks of scans not in the series list."""
    known = candidates["seriesuid"].isin(set(scans))
    if known.all():
        return candidates
    unknown = pd.unique(candidates.loc[~known, "seriesuid"])
    if unknown_ids == "error":
        raise DataLayoutError(
            f"{int((~known).sum())} marks of {len(unknown)} scan(s) not in the series list: {few(unknown)}",
            path=source,
            fix="pass the matching --seriesuids, or --ignore-unknown-ids to drop them as the official script does",
        )
    log.warning("ignoring %d marks of %d scans not in the series list", int((~known).sum()), len(unknown))
    return candidates[known]


def limit_marks(probability: np.ndarray, max_marks: int) -> np.ndarray:
    """Bool mask of the marks of one scan kept by the official ``maxNumberOfCADMarks`` rule."""
    if max_marks <= 0 or len(probability) <= max_marks:
        return np.ones(len(probability), dtype=bool)
    threshold = np.sort(probability)[::-1][max_marks]
    return probability > threshold


def radius_squared(diameter_mm: np.ndarray, unknown_diameter_mm: float) -> np.ndarray:
    """``(diameter / 2) ** 2`` in mm², negative diameters replaced by ``unknown_diameter_mm``."""
    d = np.where(diameter_mm < 0.0, unknown_diameter_mm, diameter_mm)
    return (d / 2.0) ** 2


def within(centres: np.ndarray, r2: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``(n_centres, n_points)`` bool: squared distance (mm²) strictly below ``r2`` of the centre."""
    c = centres[:, None, :]
    p = points[None, :, :]
    d2 = (c[..., 0] - p[..., 0]) ** 2 + (c[..., 1] - p[..., 1]) ** 2 + (c[..., 2] - p[..., 2]) ** 2
    return d2 < r2[:, None]


def match_scan(
    nod_xyz: np.ndarray,
    nod_r2: np.ndarray,
    exc_xyz: np.ndarray,
    exc_r2: np.ndarray,
    cand_xyz: np.ndarray,
    cand_p: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Match one scan's marks (coordinates in world mm) to its annotations.

    Returns:
        detected (per nodule), best (index of the best-scored hit, -1 if missed), hits (number of hits
        per nodule), status (per mark).
    """
    hits = within(nod_xyz, nod_r2, cand_xyz)
    on_included = hits.any(axis=0)
    on_excluded = within(exc_xyz, exc_r2, cand_xyz).any(axis=0)
    detected = hits.any(axis=1)
    best = np.full(len(nod_xyz), -1)
    if len(cand_p):
        best = np.where(detected, np.where(hits, cand_p[None, :], -np.inf).argmax(axis=1), -1)
    status = np.full(len(cand_p), FP, dtype=object)
    status[on_excluded & ~on_included] = EXCLUDED
    status[on_included] = DOUBLE
    status[best[detected]] = TP
    return detected, best, hits.sum(axis=1), status


def _groups(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """seriesuid -> row positions (file order)."""
    return {k: np.asarray(v) for k, v in df.groupby("seriesuid", sort=False).indices.items()}


def _xyz(df: pd.DataFrame) -> np.ndarray:
    return df[XYZ].to_numpy(dtype=np.float64).reshape(-1, 3)


def match(
    annotations: pd.DataFrame,
    candidates: pd.DataFrame,
    scans: Sequence[str],
    *,
    excluded: pd.DataFrame,
    max_marks_per_scan: int = 100,
    unknown_diameter_mm: float = 10.0,
) -> MatchResult:
    """Apply the LUNA16 rules to every listed scan (frames as from :mod:`lungcad.evaluate.tables`;
    candidates must all belong to ``scans``)."""
    index = {uid: i for i, uid in enumerate(scans)}
    nod = annotations[annotations["seriesuid"].isin(index)].reset_index(drop=True)
    exc = excluded[excluded["seriesuid"].isin(index)].reset_index(drop=True)
    cand = candidates.reset_index(drop=True)
    n_r2 = radius_squared(nod["diameter_mm"].to_numpy(float), unknown_diameter_mm)
    e_r2 = radius_squared(exc["diameter_mm"].to_numpy(float), unknown_diameter_mm)
    n_xyz, e_xyz, c_xyz, c_p = _xyz(nod), _xyz(exc), _xyz(cand), cand["probability"].to_numpy()
    detected, hits = np.zeros(len(nod), dtype=bool), np.zeros(len(nod), dtype=int)
    best = np.full(len(nod), -1)
    status = np.full(len(cand), OVER_LIMIT, dtype=object)
    empty = np.zeros(0, dtype=int)
    cgroups, ngroups, egroups = _groups(cand), _groups(nod), _groups(exc)
    for uid in set(cgroups) | set(ngroups):
        crows = cgroups.get(uid, empty)
        crows = crows[limit_marks(c_p[crows], max_marks_per_scan)]
        nrows, erows = ngroups.get(uid, empty), egroups.get(uid, empty)
        d, b, h, s = match_scan(n_xyz[nrows], n_r2[nrows], e_xyz[erows], e_r2[erows], c_xyz[crows], c_p[crows])
        detected[nrows], hits[nrows], status[crows] = d, h, s
        if len(crows):
            best[nrows] = np.where(b >= 0, crows[b], -1)
    nodules = _nodule_table(nod, n_r2, detected, hits, best, cand, index)
    return MatchResult(tuple(scans), nodules, _mark_table(cand, status, index))


def _nodule_table(
    nod: pd.DataFrame,
    r2: np.ndarray,
    detected: np.ndarray,
    hits: np.ndarray,
    best: np.ndarray,
    cand: pd.DataFrame,
    index: dict[str, int],
) -> pd.DataFrame:
    out = nod.copy()
    out["scan"] = out["seriesuid"].map(index).astype(int)
    out["radius_mm"] = np.sqrt(r2)
    out["detected"] = detected
    out["hits"] = hits
    picked = cand.reindex(best)  # -1 -> NaN row
    out["probability"] = picked["probability"].to_numpy()
    for c in XYZ:
        out[f"hit_{c}"] = picked[c].to_numpy()
    return out


def _mark_table(cand: pd.DataFrame, status: np.ndarray, index: dict[str, int]) -> pd.DataFrame:
    out = cand.copy()
    out["scan"] = out["seriesuid"].map(index).astype(int)
    out["status"] = status.astype(str)
    return out
