"""Outputs of ``lungcad evaluate``: JSON summaries, CSV lists, plots and terminal tables.

Every file is written to a temporary name in the output folder and renamed into place (``os.replace``),
so an interrupted run never leaves a half-written file under the final name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lungcad.evaluate.analysis import FrocResult, point_label, size_bins
from lungcad.evaluate.dsb import DsbResult
from lungcad.evaluate.matching import DOUBLE, EXCLUDED, FP, OVER_LIMIT, TP
from lungcad.fileio import to_jsonable, write_json_atomic, write_text_atomic
from lungcad.schema import XYZ


def write_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` as CSV without index (floats at full precision), atomically."""
    return write_text_atomic(path, df.to_csv(index=False))


#: JSON-safe copy: NaN/inf -> None, numpy scalars -> Python, tuples -> lists (:func:`lungcad.fileio.to_jsonable`).
clean = to_jsonable


def froc_summary(r: FrocResult) -> dict[str, Any]:
    """The JSON object of ``evaluate froc --json`` (also written to ``froc.json``)."""
    out: dict[str, Any] = {
        "cpm": r.cpm,
        "sensitivity": {point_label(p): s for p, s in zip(r.operating_points, r.sensitivity)},
        "operating_points": list(r.operating_points),
        "nodules": r.n_nodules,
        "detected": r.n_detected,
        "scans": r.n_scans,
        "marks": int((r.match.candidates["status"] != OVER_LIMIT).sum()),
        "true_positive_marks": r.count(TP),
        "false_positives": r.count(FP),
        "ignored_double_hits": r.count(DOUBLE),
        "ignored_excluded_hits": r.count(EXCLUDED),
        "dropped_over_max_marks": r.count(OVER_LIMIT),
        "max_marks_per_scan": r.config.max_marks_per_scan,
        "by_size": size_summary(r),
    }
    out["bootstrap"] = None if r.bootstrap is None else bootstrap_summary(r)
    return clean(out)


def size_summary(r: FrocResult) -> dict[str, Any]:
    """Per size bin: ``min_mm, max_mm, nodules, detected, sensitivity{point: value}, cpm``."""
    out = {}
    for row in r.by_size.to_dict("records"):
        label = row.pop("bin")
        row["sensitivity"] = {point_label(p): row.pop(f"sens_{point_label(p)}") for p in r.operating_points}
        out[label] = row
    return out


def bootstrap_summary(r: FrocResult) -> dict[str, Any]:
    """Bootstrap part of the FROC JSON: mean and CI of CPM and of each operating point."""
    b = r.bootstrap
    assert b is not None
    return {
        "samples": b.samples,
        "used": b.used,
        "seed": b.seed,
        "confidence": b.confidence,
        "cpm": vars(b.cpm),
        "sensitivity": {point_label(p): vars(iv) for p, iv in zip(r.operating_points, b.sensitivity)},
    }


def operating_point_table(r: FrocResult) -> pd.DataFrame:
    """``froc.csv``: one row per operating point, then a ``CPM`` row; bootstrap columns when computed."""
    rows = [
        {"point": point_label(p), "fps_per_scan": p, "sensitivity": s}
        for p, s in zip(r.operating_points, r.sensitivity)
    ]
    rows.append({"point": "CPM", "fps_per_scan": np.nan, "sensitivity": r.cpm})
    df = pd.DataFrame(rows)
    if r.bootstrap is not None:
        ivs = [*r.bootstrap.sensitivity, r.bootstrap.cpm]
        df["bootstrap_mean"] = [iv.mean for iv in ivs]
        df["ci_low"] = [iv.low for iv in ivs]
        df["ci_high"] = [iv.high for iv in ivs]
    return df


def nodule_table(r: FrocResult) -> pd.DataFrame:
    """``nodules.csv``: every included nodule with its size bin, hit flag, best score and best-hit position."""
    n = r.match.nodules
    out = n[["seriesuid", *XYZ, "diameter_mm", "radius_mm"]].copy()
    out["size_bin"] = size_bins(n["diameter_mm"].to_numpy(float), r.config.size_bins_mm)
    out["detected"] = n["detected"].astype(int)
    out["probability"] = n["probability"]
    out["hits"] = n["hits"]
    for c in XYZ:
        out[f"hit_{c}"] = n[f"hit_{c}"]
    return out


def write_froc_outputs(r: FrocResult, out_dir: str | Path, *, title: str = "FROC") -> dict[str, Path]:
    """Write every FROC output into ``out_dir``; returns name -> path."""
    from lungcad.evaluate.plots import plot_froc

    out = Path(out_dir)
    c = r.curve
    cands = r.match.candidates
    nodules = nodule_table(r)
    curve = pd.DataFrame(
        {
            "threshold": c.thresholds,
            "false_positives": c.fp,
            "detected": c.tp,
            "fps_per_scan": c.fps,
            "sensitivity": c.sensitivity,
        }
    )
    missed = nodules.loc[nodules["detected"] == 0, ["seriesuid", *XYZ, "diameter_mm", "size_bin"]]
    fps = cands[cands["status"] == FP].sort_values("probability", ascending=False, kind="stable")
    ignored = cands[cands["status"].isin([DOUBLE, EXCLUDED, OVER_LIMIT])].rename(columns={"status": "reason"})
    paths = {
        "json": write_json_atomic(out / "froc.json", froc_summary(r), indent=2),
        "csv": write_csv(operating_point_table(r), out / "froc.csv"),
        "curve": write_csv(curve, out / "froc_curve.csv"),
        "nodules": write_csv(nodules, out / "nodules.csv"),
        "missed": write_csv(missed, out / "missed_nodules.csv"),
        "false_positives": write_csv(fps[["seriesuid", *XYZ, "probability"]], out / "false_positives.csv"),
        "ignored": write_csv(ignored[["seriesuid", *XYZ, "probability", "reason"]], out / "ignored_marks.csv"),
        "by_size": write_csv(r.by_size, out / "sensitivity_by_size.csv"),
    }
    if r.bootstrap is not None:
        b = r.bootstrap
        band = pd.DataFrame(
            {"fps_per_scan": b.grid_fps, "mean": b.grid_mean, "ci_low": b.grid_low, "ci_high": b.grid_high}
        )
        paths["bootstrap"] = write_csv(band, out / "froc_bootstrap.csv")
    paths["png"] = plot_froc(r, out / "froc.png", title=title)
    return paths


def format_froc(r: FrocResult) -> str:
    """Terminal summary: operating-point table, CPM, counts, per-size sensitivity."""
    b = r.bootstrap
    head = f"{'FPs/scan':>9}  {'sensitivity':>11}" + (f"  {'boot. mean':>10}  {'CI':>15}" if b else "")
    lines = [head]
    ivs = list(b.sensitivity) + [b.cpm] if b else [None] * (len(r.sensitivity) + 1)
    labels = [point_label(p) for p in r.operating_points] + ["CPM"]
    for label, s, iv in zip(labels, [*r.sensitivity, r.cpm], ivs):
        line = f"{label:>9}  {s:>11.4f}"
        if iv is not None:
            line += f"  {iv.mean:>10.4f}  [{iv.low:.4f}, {iv.high:.4f}]"
        lines.append(line)
    n_fp, limit = r.count(FP), r.config.max_marks_per_scan
    lines.append(
        f"nodules {r.n_nodules}, detected {r.n_detected} ({r.n_detected / r.n_nodules:.1%}), scans {r.n_scans}, "
        f"false positives {n_fp} ({n_fp / r.n_scans:.2f}/scan)"
    )
    lines.append(
        f"ignored marks: {r.count(DOUBLE)} double hits, {r.count(EXCLUDED)} on excluded annotations, "
        f"{r.count(OVER_LIMIT)} over the {limit}-marks-per-scan limit"
    )
    sizes = ", ".join(
        f"{row.bin} mm {row.detected}/{row.nodules} (CPM {row.cpm:.3f})" for row in r.by_size.itertuples()
    )
    lines.append(f"by size: {sizes}")
    return "\n".join(lines)


def format_kinds(by_kind: pd.DataFrame) -> str:
    """One line per attribute of :func:`~lungcad.evaluate.analysis.kind_table`: ``value detected/nodules``."""
    lines = []
    for attribute, rows in by_kind.groupby("attribute", sort=False):
        values = ", ".join(f"{row.value} {row.detected}/{row.nodules}" for row in rows.itertuples())
        lines.append(f"by {attribute}: {values}")
    return "\n".join(lines) or "by kind: no attribute tells the nodules apart"


def dsb_summary(r: DsbResult) -> dict[str, Any]:
    """The JSON object of ``evaluate dsb`` (also written to ``dsb.json``)."""
    return clean(
        {
            "log_loss": r.log_loss,
            "base_rate_log_loss": r.base_rate_log_loss,
            "base_rate": r.base_rate,
            "auc": r.auc,
            "n": r.n,
            "positives": r.positives,
            "clip": r.clip,
        }
    )


def write_dsb_outputs(r: DsbResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``dsb.json``, ``calibration.csv`` and ``calibration.png`` into ``out_dir``."""
    from lungcad.evaluate.plots import plot_calibration

    out = Path(out_dir)
    return {
        "json": write_json_atomic(out / "dsb.json", dsb_summary(r), indent=2),
        "calibration": write_csv(r.calibration, out / "calibration.csv"),
        "png": plot_calibration(r, out / "calibration.png"),
    }


def format_dsb(r: DsbResult) -> str:
    """Terminal summary of the DSB scores."""
    return (
        f"log loss {r.log_loss:.5f}  (base rate {r.base_rate:.3f} -> {r.base_rate_log_loss:.5f})\n"
        f"AUC {r.auc:.4f}  n {r.n} ({r.positives} with cancer)"
    )
