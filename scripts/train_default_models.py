#!/usr/bin/env python
"""Reproduce the bundled default models from synthetic data (no download).

Steps, each resumable (rerun the same command after an interruption):

1. ``lungcad synth`` training data (seed 1000) and held-out data (seed 5000; never used for training);
2. ``lungcad train unet`` with ``configs/unet.yaml`` into ``WORK/unet``;
3. the merge settings chosen on the training run's validation scans (``scripts/tune_merge.py --apply``);
4. detection on the held-out scans and ``lungcad evaluate froc`` against their annotations;
5. the model, its config, training curve and held-out metrics copied into ``lungcad/models/unet/``.

    python scripts/train_default_models.py --work /work/runs/default [--train-scans 128] [--heldout-scans 10]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "lungcad" / "models" / "unet"
TRAIN_SEED, HELDOUT_SEED = 1000, 5000


def call(command: list[str], name: str) -> None:
    """Run ``command``; stop on any non-zero exit, 3 (some scans failed) too: a bundle must never come from a
    partial run."""
    code = subprocess.call(command)
    if code != 0:
        raise SystemExit(f"{name} failed with exit code {code}")


def run(*args: str) -> None:
    """``lungcad ARGS...`` in this interpreter."""
    print("+ lungcad", " ".join(args), flush=True)
    call([sys.executable, "-m", "lungcad.cli.main", *args], f"lungcad {args[0]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, type=Path, help="folder for data, caches and runs")
    ap.add_argument("--train-scans", type=int, default=128)
    ap.add_argument("--heldout-scans", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, help="override train.epochs (smoke runs)")
    args = ap.parse_args()
    work = args.work
    train_data, heldout = work / "synth_train", work / "synth_heldout"
    run(
        "synth",
        str(train_data),
        "--scans",
        str(args.train_scans),
        "--seed",
        str(TRAIN_SEED),
        "--format",
        "luna",
        "--workers",
        str(args.workers),
    )
    run(
        "synth",
        str(heldout),
        "--scans",
        str(args.heldout_scans),
        "--seed",
        str(HELDOUT_SEED),
        "--format",
        "luna",
        "--workers",
        str(args.workers),
    )
    model = work / "unet"
    epochs = ["--epochs", str(args.epochs)] if args.epochs else []
    run(
        "train",
        "unet",
        "--data",
        str(train_data / "luna16"),
        "-o",
        str(model),
        "--workers",
        str(args.workers),
        "--resume",
        *epochs,
    )
    if not (model / "detector.untuned.yaml").exists():
        tune = [str(REPO / "scripts" / "tune_merge.py"), "--model", str(model), "--data", str(train_data / "luna16")]
        call([sys.executable, *tune, "--apply"], "tune_merge.py")
    detections = work / "heldout_candidates"
    run("detect", str(heldout / "luna16"), "-o", str(detections), "--stage", "candidates", "--model", str(model))
    froc = work / "heldout_froc"
    luna = heldout / "luna16"
    run(
        "evaluate",
        "froc",
        "--annotations",
        str(luna / "annotations.csv"),
        "--excluded",
        str(luna / "annotations_excluded.csv"),
        "--seriesuids",
        str(luna / "seriesuids.csv"),
        "--candidates",
        str(detections / "candidates.csv"),
        "-o",
        str(froc),
    )
    BUNDLE.mkdir(parents=True, exist_ok=True)
    for name in (
        "model.keras",
        "detector.yaml",
        "train_config.yaml",
        "run.json",
        "history.csv",
        "metrics.json",
        "training_curve.png",
        "merge_sweep.csv",
    ):
        shutil.copy2(model / name, BUNDLE / name)
    shutil.copy2(froc / "froc.png", BUNDLE / "heldout_froc.png")
    summary = json.loads((froc / "froc.json").read_text())
    (BUNDLE / "heldout_metrics.json").write_text(json.dumps(summary, indent=1))
    print(f"bundled {BUNDLE}: held-out CPM {summary.get('cpm')}")


if __name__ == "__main__":
    main()
