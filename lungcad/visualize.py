"""Pictures of detections and an HTML index across a batch (opened from disk, no server).

Per scan, in ``OUT/pictures/<id>/``:

- ``overview.png``: axial maximum-intensity projection of the lungs (:func:`lung_mip`) with every shown finding
  marked at its (x, y) position and numbered by rank;
- ``finding_<rank>.png``: the axial slice through each finding's centre, cropped around it, with a circle of its
  estimated diameter and its probability.

``OUT/index.html`` lists the scans by cancer probability (or by their top finding's probability when there is
no risk stage), with the overview as thumbnail and links to the findings.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lungcad.fileio import write_text_atomic
from lungcad.scan import CTScan
from lungcad.schema import XYZ

LUNG_WINDOW_HU = (-1350.0, 150.0)


@dataclass(frozen=True)
class PictureConfig:
    """``configs/pictures.yaml``: how many findings are drawn per scan, from which probability, crop side (mm)."""

    max_findings: int
    min_probability: float
    crop_mm: float


def _gray(hu: np.ndarray) -> np.ndarray:
    lo, hi = LUNG_WINDOW_HU
    return np.clip((hu.astype(np.float32) - lo) / (hi - lo), 0.0, 1.0)


def finding_picture(scan: CTScan, row: pd.Series, rank: int, path: Path, crop_mm: float = 80.0) -> Path:
    """PNG of the axial slice through a finding (world centre ``coordX..Z`` mm, ``diameter_mm``, ``probability``)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle

    from lungcad.evaluate.plots import save_figure

    z, y, x = scan.world_to_voxel(row[XYZ].to_numpy(float), outside="keep")
    k = int(np.clip(round(z), 0, scan.shape[0] - 1))
    half_y, half_x = (int(crop_mm / 2 / s) for s in scan.spacing[1:])
    y0, x0 = max(0, int(y) - half_y), max(0, int(x) - half_x)
    image = _gray(scan.array[k, y0 : int(y) + half_y, x0 : int(x) + half_x])
    fig = Figure(figsize=(3.2, 3.4))
    ax = fig.add_subplot()
    ax.imshow(image, cmap="gray", vmin=0, vmax=1, aspect=scan.spacing[1] / scan.spacing[2])
    radius_px = max(float(row.get("diameter_mm", 6.0)), 3.0) / 2 / scan.spacing[2] + 2
    ax.add_patch(Circle((x - x0, y - y0), radius_px, fill=False, color="yellow", lw=1.2))
    size = f"{row.get('diameter_mm', float('nan')):.1f} mm"
    ax.set_title(f"#{rank}  p={row['probability']:.2f}  {size}  slice {k}", fontsize=8)
    ax.set_axis_off()
    return save_figure(fig, path, dpi=110)


def lung_mip(hu: np.ndarray, lung: np.ndarray) -> np.ndarray:
    """Axial maximum-intensity projection (Y, X) of HU inside the lung mask (outside counts as -1024), so the
    chest wall does not hide the vessels and nodules."""
    return np.where(lung, hu, -1024).max(axis=0)


def overview_picture(scan: CTScan, lung: np.ndarray, table: pd.DataFrame, path: Path) -> Path:
    """PNG of the axial lung MIP of ``scan`` (e.g. the preprocessed grid, with its lung mask (Z, Y, X)) with the
    findings of ``table`` numbered by rank."""
    from matplotlib.figure import Figure

    from lungcad.evaluate.plots import save_figure

    mip = _gray(lung_mip(scan.array, lung))
    fig = Figure(figsize=(4.0, 4.2))
    ax = fig.add_subplot()
    ax.imshow(mip, cmap="gray", vmin=0, vmax=1, aspect=scan.spacing[1] / scan.spacing[2])
    if len(table):
        zyx = scan.world_to_voxel(table[XYZ].to_numpy(float), outside="keep")
        ax.scatter(zyx[:, 2], zyx[:, 1], s=80, facecolors="none", edgecolors="yellow", linewidths=1.0)
        for rank, (yy, xx) in enumerate(zyx[:, 1:], start=1):
            ax.annotate(str(rank), (xx, yy), xytext=(4, 4), textcoords="offset points", color="yellow", fontsize=7)
    ax.set_title(f"{scan.id[-24:]}: {len(table)} finding(s)", fontsize=8)
    ax.set_axis_off()
    return save_figure(fig, path, dpi=100)


def reported_findings(table: pd.DataFrame, config: PictureConfig) -> pd.DataFrame:
    """The findings a scan reports (pictures, DICOM SR): the ``max_findings`` most probable at or above
    ``min_probability`` (``table`` sorted by probability, highest first)."""
    return table[table["probability"] >= config.min_probability].head(config.max_findings)


def scan_pictures(scan: CTScan, pre, shown: pd.DataFrame, folder: Path, config: PictureConfig) -> dict:
    """Overview (on the preprocessed scan ``pre``: its grid and lung mask) and finding PNGs (on ``scan``) of the
    findings ``shown`` (:func:`reported_findings`, in rank order); returns ``{"overview": name, "findings": [names]}``
    relative to ``folder``'s parent."""
    overview = overview_picture(pre.scan, np.asarray(pre.lung_mask), shown, folder / "overview.png")
    findings = [
        finding_picture(scan, row, rank, folder / f"finding_{rank}.png", config.crop_mm)
        for rank, (_, row) in enumerate(shown.iterrows(), start=1)
    ]
    rel = folder.name
    return {"overview": f"{rel}/{overview.name}", "findings": [f"{rel}/{p.name}" for p in findings]}


def write_index(out: Path, records: list[dict]) -> Path | None:
    """``OUT/index.html`` from the finished scans' JSON ``records`` (those with pictures); None when there are none."""
    records = [r for r in records if "pictures" in r]
    if not records:
        return None

    def key(r: dict) -> float:
        top = max((c["probability"] for c in r.get("candidates", [])), default=0.0)
        return r.get("cancer_probability", top)

    rows = []
    for r in sorted(records, key=key, reverse=True):
        pics = r["pictures"]
        links = " ".join(
            f'<a href="pictures/{html.escape(p)}"><img src="pictures/{html.escape(p)}" height="96"></a>'
            for p in pics["findings"]
        )
        cancer = f"{r['cancer_probability']:.3f}" if "cancer_probability" in r else "&ndash;"
        overview = f"pictures/{html.escape(pics['overview'])}"
        rows.append(
            f"<tr><td>{html.escape(r['id'])}</td><td>{cancer}</td><td>{len(pics['findings'])}</td>"
            f'<td><a href="{overview}"><img src="{overview}" height="160"></a></td><td>{links}</td></tr>'
        )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>lungcad detections</title><style>"
        "body{font-family:sans-serif}td,th{border-bottom:1px solid #ccc;padding:4px;vertical-align:top}</style>"
        f"</head><body><h1>lungcad detections: {len(records)} scan(s)</h1><table><tr><th>id</th>"
        "<th>P(cancer)</th><th>findings</th><th>overview (axial MIP)</th><th>findings (axial slices)</th></tr>"
        + "".join(rows)
        + "</table></body></html>"
    )
    path = out / "index.html"
    write_text_atomic(path, page)
    return path
