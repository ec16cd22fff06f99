#!/usr/bin/env python
"""Quality of whole model sets world by world: the measuring stick of "quality that holds across worlds".

Worlds, each generated once and seeded, none ever drawn by training:

- ``heldout``: ``configs/world_heldout.yaml``: generator settings outside every training range (kernel, slice
  profile, HU calibration, heart, lungs, vessels, disease) with LIDC-IDRI **test** nodules only (patients
  0801-1012); LUNA16 layout (seed 9100, 30 scans of 3-6 nodules) and DSB 2017 layout (DICOM; seed 9200, 72
  patients of ``world_heldout_patients.yaml``, about 60% of them labelled);
- ``validation``: ``configs/world_val.yaml``: the training world's ranges with LIDC-IDRI validation nodules
  (patients 0701-0800, never drawn by ``world_train``); LUNA16 layout (seed 7300, 30 scans of 3-6 nodules) and DSB
  2017 layout (``world_train`` patients, LIDC validation nodules; seed 7400, 60 patients). Every choice of the
  retraining is measured here, so its figures are not an unbiased estimate of anything: that is the held-out world's;
- ``phantoms``: today's held-out phantoms (``configs/synth.yaml``, phantom version 2): the seven sets of the FPR
  table (seeds 5000, 5700, 5500, 6000, 8000, 8500, 8800; 200 scans), LUNA16 layout.

For each model set (``--models DIR``, a folder with ``unet/``, ``fpr/`` and ``risk/`` like ``lungcad/models``;
default the bundled models) every set runs through ``lungcad detect`` (all stages), then, pooled per world:

- **candidate recall** at <= 30 candidates per scan: the share of nodules within a nodule radius of one of the
  scan's 30 most probable U-Net candidates (``unet_probability``);
- **CPM** and **sensitivity at 1 FP per scan** (``lungcad evaluate froc``'s LUNA16 rules) with bootstrap 95% CIs
  over scans; the FROC picture in ``WORK/results/NAME/WORLD/froc.png``;
- **lung-mask coverage**: for each nodule, the share of its voxels (its sphere within the phantom's lung labels)
  inside the lung mask the U-Net's preprocessing computes; the worst nodule and the 5th percentile;
- **per-patient log loss** against the base rate's (the labelled patients' cancer rate as a constant prediction),
  its reduction, and the AUC; the calibration picture in ``WORK/results/NAME/WORLD/calibration.png``.

Every step is resumable (rerun the same command). Prints the table and writes ``WORK/cross_world.md`` / ``.csv``.

    python scripts/cross_world.py --work /work/runs/xworld [--models DIR ...] [--worlds heldout,phantoms]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from pipeline_steps import concat_tables, lungcad
from tqdm import tqdm

from lungcad.config import load_config
from lungcad.evaluate import compute_dsb_files, compute_froc_files, load_evaluate_config
from lungcad.evaluate.matching import radius_squared, within
from lungcad.evaluate.plots import plot_calibration
from lungcad.evaluate.report import write_froc_outputs
from lungcad.evaluate.segmentation import nodule_mask_coverage
from lungcad.fileio import write_atomic
from lungcad.io import load_scan
from lungcad.pipeline import default_model_dir
from lungcad.pipeline.detector import DETECTOR_FILE, DetectorConfig
from lungcad.preprocess.pipeline import preprocess_scan

MAX_CANDIDATES = 30
LUNA_TABLES = ("annotations.csv", "annotations_excluded.csv", "nodules.csv", "seriesuids.csv")


@dataclass(frozen=True)
class World:
    """A world: its sets ``(seed, scans)`` in each layout and the synth config of each layout."""

    name: str
    luna_synth: str
    luna: tuple[tuple[int, int], ...]
    dsb_synth: str
    dsb: tuple[tuple[int, int], ...]


WORLDS = {
    "heldout": World("heldout", "world_heldout", ((9100, 30),), "world_heldout_patients", ((9200, 72),)),
    "validation": World("validation", "world_val", ((7300, 30),), "world_val_patients", ((7400, 60),)),
    "phantoms": World(
        "phantoms",
        "synth",
        ((5000, 10), (5700, 20), (5500, 20), (6000, 20), (8000, 50), (8500, 40), (8800, 40)),
        "synth",
        (),
    ),
}


def parse_sets(text: str) -> tuple[tuple[int, int], ...]:
    """``"5000:10,5700:20"`` -> ``((5000, 10), (5700, 20))``; empty text -> ``()``."""
    try:
        sets = tuple(tuple(int(v) for v in item.split(":")) for item in text.split(",") if item)
    except ValueError:
        sets = ((-1,),)
    if any(len(s) != 2 or s[1] < 1 for s in sets):
        raise SystemExit(f"expected SEED:SCANS[,SEED:SCANS...], got {text!r}")
    return sets  # type: ignore[return-value]


# --------------------------------------------------------------------------- data and detections
def synth_set(work: Path, world: World, layout: str, seed: int, scans: int, workers: int) -> Path:
    """The set's data folder (``luna16`` or ``dsb2017``), generated once."""
    out = work / "data" / world.name / f"{layout}_{seed}"
    compress = ["--compress"] if layout == "luna" else []
    config = world.luna_synth if layout == "luna" else world.dsb_synth
    lungcad("synth", "-o", str(out), "--scans", str(scans), "--seed", str(seed), "--format", layout, "--config", config,
            "--workers", str(workers), "--no-progress", *compress)  # fmt: skip
    return out / ("luna16" if layout == "luna" else "dsb2017")


def detect_set(work: Path, models: Path, name: str, world: World, data: Path, workers: int) -> Path:
    """``lungcad detect`` (every stage) of one set with the model set ``models``; resumable."""
    out = work / "detections" / name / world.name / data.parent.name
    source = data if data.name == "luna16" else data / "stage1"
    stages = ["--model", str(models / "unet"), "--fpr-model", str(models / "fpr"), "--risk-model", str(models / "risk")]
    lungcad("detect", str(source), "-o", str(out), *stages, "--no-pictures", "--workers", str(workers))
    return out


# --------------------------------------------------------------------------- measures
def candidate_recall(annotations: pd.DataFrame, candidates: pd.DataFrame, max_candidates: int) -> tuple[int, int]:
    """(nodules hit, nodules) by each scan's ``max_candidates`` most probable U-Net candidates."""
    hit = 0
    unknown = load_evaluate_config().froc.unknown_diameter_mm
    for uid, nodules in annotations.groupby("seriesuid"):
        mine = candidates[candidates["seriesuid"] == uid].nlargest(max_candidates, "unet_probability")
        if mine.empty:
            continue
        centres = nodules[["coordX", "coordY", "coordZ"]].to_numpy(float)
        r2 = radius_squared(nodules["diameter_mm"].to_numpy(float), unknown)
        hit += int(within(centres, r2, mine[["coordX", "coordY", "coordZ"]].to_numpy(float)).any(axis=1).sum())
    return hit, len(annotations)


def mask_coverage(luna: Path, models: Path, out: Path) -> pd.DataFrame:
    """Per nodule of a LUNA16-layout set: the share of its voxels inside the preprocessing's lung mask (cached)."""
    if out.is_file():
        return pd.read_csv(out)
    config = load_config(DetectorConfig, models / "unet" / DETECTOR_FILE).preprocess
    annotations = pd.read_csv(luna / "annotations.csv")
    rows = []
    for uid, nodules in tqdm(annotations.groupby("seriesuid"), desc=f"lung masks {luna.parent.name}", unit="scan"):
        pre = preprocess_scan(load_scan(next(luna.glob(f"subset*/{uid}.mhd"))), config)
        labels = load_scan(luna / "seg-lungs-LUNA16" / f"{uid}.mhd")
        fractions = nodule_mask_coverage(
            pre.scan, pre.lung_mask, labels, nodules[["coordX", "coordY", "coordZ"]].to_numpy(float),
            nodules["diameter_mm"].to_numpy(float),
        )  # fmt: skip
        rows += [{"seriesuid": uid, "diameter_mm": d, "inside": f} for d, f in zip(nodules["diameter_mm"], fractions)]
    table = pd.DataFrame(rows, columns=["seriesuid", "diameter_mm", "inside"])
    write_atomic(out, lambda f: table.to_csv(f, index=False))
    return table


def labels_of(data: Path) -> Path:
    """The set's cancer labels: the DSB layout's ``stage1_labels.csv`` or the LUNA16 layout's ``cancer_labels.csv``."""
    return data / ("cancer_labels.csv" if data.name == "luna16" else "stage1_labels.csv")


def measure_world(
    work: Path, name: str, models: Path, world: World, sets: list[tuple[Path, Path]], bootstrap: int
) -> dict:
    """One row of the table: the world's sets pooled."""
    results = work / "results" / name / world.name
    row: dict = {"models": name, "world": world.name}
    luna = [(data, det) for data, det in sets if data.name == "luna16"]
    if luna:
        tables = concat_tables(results / "tables", [d for d, _ in luna], LUNA_TABLES[:3])
        uids = pd.concat([pd.read_csv(d / "seriesuids.csv", header=None) for d, _ in luna], ignore_index=True)
        uids.to_csv(tables / "seriesuids.csv", index=False, header=False)
        candidates = pd.concat([pd.read_csv(det / "candidates.csv") for _, det in luna], ignore_index=True)
        candidates.to_csv(results / "candidates.csv", index=False)
        annotations = pd.read_csv(tables / "annotations.csv")
        hit, total = candidate_recall(annotations, candidates, MAX_CANDIDATES)
        froc = compute_froc_files(
            tables / "annotations.csv", results / "candidates.csv", excluded=tables / "annotations_excluded.csv",
            seriesuids=tables / "seriesuids.csv",
            config=replace(load_evaluate_config().froc, bootstrap_samples=bootstrap),
        )  # fmt: skip
        write_froc_outputs(froc, results, title=f"{name} on {world.name}")
        one = froc.operating_points.index(1.0)
        boot = froc.bootstrap
        coverage = pd.concat([mask_coverage(d, models, results / f"mask_{d.parent.name}.csv") for d, _ in luna])
        inside = coverage["inside"].dropna().to_numpy()
        row.update(
            scans=len(uids),
            nodules=total,
            recall_at_30=round(hit / max(total, 1), 3),
            cpm=round(froc.cpm, 3),
            cpm_ci=f"{boot.cpm.low:.3f}-{boot.cpm.high:.3f}" if boot else "",
            sens_1fp=round(froc.sensitivity[one], 3),
            sens_1fp_ci=f"{boot.sensitivity[one].low:.3f}-{boot.sensitivity[one].high:.3f}" if boot else "",
            mask_worst=round(float(inside.min()), 3) if len(inside) else np.nan,
            mask_p5=round(float(np.percentile(inside, 5)), 3) if len(inside) else np.nan,
            mask_under_95=int((inside < 0.95).sum()),
        )
    labelled = [(labels_of(d), det / "patients.csv") for d, det in sets if (det / "patients.csv").is_file()]
    if labelled:
        lab = pd.concat([pd.read_csv(a, dtype={"id": str}) for a, _ in labelled], ignore_index=True)
        pred = pd.concat([pd.read_csv(p, dtype={"id": str}) for _, p in labelled], ignore_index=True)
        pred = pred[pred["id"].isin(lab["id"])]  # patients left unlabelled (indeterminate LIDC nodules) not scored
        lab.to_csv(results / "labels.csv", index=False)
        pred.to_csv(results / "patients.csv", index=False)
        dsb = compute_dsb_files(results / "labels.csv", results / "patients.csv", only_predicted=False)
        plot_calibration(dsb, results / "calibration.png")
        row.update(
            patients=dsb.n,
            cancer_rate=round(dsb.base_rate, 3),
            log_loss=round(dsb.log_loss, 3),
            base_rate_log_loss=round(dsb.base_rate_log_loss, 3),
            log_loss_reduction=f"{1 - dsb.log_loss / dsb.base_rate_log_loss:.0%}",
            auc=round(dsb.auc, 3),
        )
    (results / "row.json").write_text(json.dumps(row, indent=1, default=str))
    return row


def markdown(table: pd.DataFrame) -> str:
    """The table as Markdown."""
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join("" if pd.isna(v) else str(v) for v in r) + " |" for r in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def model_sets(folders: list[str] | None) -> dict[str, Path]:
    """``{name: folder}``: ``bundled`` for the bundled models, else the folder's name."""
    bundled = default_model_dir("unet").parent.resolve()
    paths = [Path(f).resolve() for f in folders] if folders else [bundled]
    names = {("bundled" if p == bundled else p.name): p for p in paths}
    if len(names) < len(paths):
        raise SystemExit(f"--models: two model folders share a name, their results would mix: {folders}")
    for p in paths:
        missing = [s for s in ("unet", "fpr", "risk") if not (p / s).is_dir()]
        if missing:
            raise SystemExit(f"--models {p}: no {', '.join(missing)} folder (a model set holds unet/, fpr/, risk/)")
    return names


def run(work: Path, models: dict[str, Path], worlds: list[World], bootstrap: int, workers: int) -> pd.DataFrame:
    """Generate, detect and measure; returns the table (also written to ``WORK/cross_world.{md,csv}``)."""
    data = {
        w.name: [synth_set(work, w, "luna", s, n, workers) for s, n in w.luna]
        + [synth_set(work, w, "dsb", s, n, workers) for s, n in w.dsb]
        for w in worlds
    }
    rows = []
    for name, folder in models.items():
        for world in worlds:
            sets = [(d, detect_set(work, folder, name, world, d, workers)) for d in data[world.name]]
            rows.append(measure_world(work, name, folder, world, sets, bootstrap))
    table = pd.DataFrame(rows)
    table.to_csv(work / "cross_world.csv", index=False)
    (work / "cross_world.md").write_text(markdown(table))
    return table


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True, help="work folder (data, detections, results)")
    ap.add_argument("--models", action="append", help="model set folder (unet/, fpr/, risk/), repeatable")
    ap.add_argument("--worlds", default="heldout,phantoms", help="comma-separated: " + ", ".join(WORLDS))
    for w in WORLDS.values():
        for layout in ("luna", "dsb"):
            sets = ",".join(f"{s}:{n}" for s, n in getattr(w, layout))
            ap.add_argument(f"--{w.name}-{layout}", help=f"{w.name}'s {layout} sets SEED:SCANS,... (default {sets})")
    ap.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamplings of scans for the FROC CIs")
    ap.add_argument("--workers", type=int, default=1, help="scans in parallel for synth and detect")
    args = ap.parse_args(argv)
    worlds = []
    for name in args.worlds.split(","):
        if name not in WORLDS:
            raise SystemExit(f"--worlds: unknown world {name!r}; known: {', '.join(WORLDS)}")
        w = WORLDS[name]
        luna, dsb = getattr(args, f"{name}_luna"), getattr(args, f"{name}_dsb")
        worlds.append(replace(w, luna=w.luna if luna is None else parse_sets(luna),
                              dsb=w.dsb if dsb is None else parse_sets(dsb)))  # fmt: skip
    args.work.mkdir(parents=True, exist_ok=True)
    table = run(args.work, model_sets(args.models), worlds, args.bootstrap, args.workers)
    print(markdown(table), flush=True)
    print(f"table: {args.work / 'cross_world.md'}; pictures: {args.work / 'results'}/MODELS/WORLD/")


if __name__ == "__main__":
    main()
