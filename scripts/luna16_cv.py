#!/usr/bin/env python
"""LUNA16's 10-fold protocol: for each held-out subset, train the U-Net and the FPR on the other subsets,
detect on the held-out one; then evaluate every fold's detections together (FROC, CPM).

Per fold ``k`` (``WORK/fold<k>/``): a training view of ``DATA`` without ``subset<k>`` (symlinks, plus the
tables), ``lungcad train unet``, the merge settings tuned on its validation scans, the U-Net's candidates on the
training scans, ``lungcad train fpr`` on ``candidates.csv`` plus those, and ``lungcad detect --stage fpr`` on
``subset<k>``. Every step resumes. Finally ``WORK/candidates.csv`` (all folds) and ``lungcad evaluate froc``
into ``WORK/froc/``.

    python scripts/luna16_cv.py --data /data/LUNA16 --work /work/luna_cv [--folds 0 1 ...] [--epochs N]

The real dataset: ``DATA`` holds ``subset0..subset9/``, ``annotations.csv``, ``annotations_excluded.csv`` (or
the official ``evaluationScript/annotations/``) and ``candidates.csv`` (V2). A smoke run on synthetic data:
``lungcad synth -o W --scans 20 --seed 1 --format luna`` with ``luna_subsets: 10`` in a synth config, then
``--data W/luna16 --folds 0 --epochs 1 --steps 2``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from pipeline_steps import link_into, lungcad, tune_merge

TABLES = ("annotations.csv", "annotations_excluded.csv", "candidates.csv", "seriesuids.csv")


def view(data: Path, subsets: list[Path], folder: Path) -> Path:
    """A LUNA16-layout folder holding ``subsets`` (symlinks) and the dataset's tables."""
    return link_into(folder, [*subsets, *(data / name for name in TABLES if (data / name).exists())])


def run_fold(data: Path, work: Path, k: int, subsets: list[Path], train_extra: list[str]) -> Path:
    """Train both models without ``subset<k>`` and detect on it; returns the fold's candidates.csv."""
    held = [s for s in subsets if s.name == f"subset{k}"]
    if not held:
        raise SystemExit(f"{data}: no subset{k}/")
    fold = work / f"fold{k}"
    train = view(data, [s for s in subsets if s not in held], fold / "train")
    test = view(data, held, fold / "test")
    unet, fpr, mined = fold / "unet", fold / "fpr", fold / "train_candidates"
    lungcad("train", "unet", "--data", str(train), "-o", str(unet), "--resume", *train_extra)
    tune_merge(unet, train)
    lungcad("detect", str(train), "-o", str(mined), "--stage", "candidates", "--model", str(unet), "--no-pictures")
    lungcad("train", "fpr", "--data", str(train), "-o", str(fpr), "--resume", "--candidates",
            str(mined / "candidates.csv"), *train_extra)  # fmt: skip
    out = fold / "detect"
    lungcad("detect", str(test), "-o", str(out), "--stage", "fpr", "--model", str(unet), "--fpr-model", str(fpr))
    return out / "candidates.csv"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path, help="LUNA16 folder with subset0..9/ and the tables")
    ap.add_argument("--work", required=True, type=Path, help="folder for the folds' models and detections")
    ap.add_argument("--folds", type=int, nargs="+", help="held-out subsets to run (default: every subset found)")
    ap.add_argument("--epochs", type=int, help="override both models' epochs (smoke runs)")
    ap.add_argument("--steps", type=int, help="override both models' steps per epoch (smoke runs)")
    args = ap.parse_args()
    subsets = sorted(p for p in args.data.glob("subset*") if p.is_dir())
    folds = args.folds if args.folds is not None else [int(p.name[6:]) for p in subsets]
    extra = [
        *(["--epochs", str(args.epochs)] if args.epochs else []),
        *(["--steps", str(args.steps)] if args.steps else []),
    ]
    tables = [pd.read_csv(run_fold(args.data, args.work, k, subsets, extra)) for k in folds]
    merged = args.work / "candidates.csv"
    pd.concat(tables, ignore_index=True).to_csv(merged, index=False)
    ids = sorted({p.stem for k in folds for p in (args.data / f"subset{k}").glob("*.mhd")})
    (args.work / "seriesuids.csv").write_text("".join(f"{i}\n" for i in ids))
    evaluate = ["evaluate", "froc", "--annotations", str(args.data / "annotations.csv")]
    if (args.data / "annotations_excluded.csv").exists():
        evaluate += ["--excluded", str(args.data / "annotations_excluded.csv")]
    lungcad(*evaluate, "--seriesuids", str(args.work / "seriesuids.csv"), "--candidates", str(merged),
            "-o", str(args.work / "froc"))  # fmt: skip


if __name__ == "__main__":
    main()
