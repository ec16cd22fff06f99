#!/usr/bin/env python
"""Kaggle Data Science Bowl 2017: train the risk model on the labelled stage-1 patients, write a submission.

1. ``lungcad train risk --data STAGE1 --labels stage1_labels.csv -o WORK/risk`` (detections of every labelled
   patient with the U-Net and FPR models given, or the bundled ones; cross-validated log loss and AUC; with
   ``--classifier NAME=DIR`` (e.g. the bundled ``lungcad/models/risk/classifiers/{malignancy,shape}``) the
   configuration ``configs/risk_classifiers.yaml`` and those nodule classifiers' logits as features);
2. the patients to predict (``--submission-ids``: the sample submission, e.g. ``stage1_sample_submission.csv``;
   default: every patient folder without a label) through ``lungcad detect --stage risk`` with that model;
3. ``WORK/submission.csv`` (``id,cancer`` in the sample submission's order) and, with ``--test-labels``,
   ``lungcad evaluate dsb`` of it.

    python scripts/dsb2017.py --stage1 /data/dsb2017/stage1 --labels /data/dsb2017/stage1_labels.csv \\
        --work /work/dsb [--submission-ids stage1_sample_submission.csv] [--test-labels FILE]

Smoke run on synthetic data: ``lungcad synth -o W --scans 12 --seed 3 --format dsb``; keep 8 rows of
``W/dsb2017/stage1_labels.csv`` as the training labels and the other 4 as ``--test-labels``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from pipeline_steps import link_into, lungcad


def patients_view(stage1: Path, ids: list[str], folder: Path) -> Path:
    """A folder of symlinks to the patient folders ``ids`` of ``stage1``."""
    return link_into(folder, [stage1 / pid for pid in ids])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage1", required=True, type=Path, help="one DICOM folder per patient")
    ap.add_argument("--labels", required=True, type=Path, help="stage1_labels.csv (id,cancer)")
    ap.add_argument("--work", required=True, type=Path)
    ap.add_argument("--submission-ids", type=Path, help="CSV whose 'id' column lists the patients to predict")
    ap.add_argument("--test-labels", type=Path, help="labels of the predicted patients, to score the submission")
    ap.add_argument("--model", help="U-Net model directory (default: bundled)")
    ap.add_argument("--fpr-model", help="FPR model directory (default: bundled)")
    ap.add_argument(
        "--classifier",
        action="append",
        metavar="NAME=DIR",
        help="nodule classifier for the risk features (malignancy=DIR and shape=DIR: the bundled ones in "
        "lungcad/models/risk/classifiers/, or 'lungcad train classifier' models); uses configs/risk_classifiers.yaml. "
        "Default: none (configs/risk.yaml)",
    )
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    labels = pd.read_csv(args.labels, dtype={"id": str})
    models = [
        *(["--model", args.model] if args.model else []),
        *(["--fpr-model", args.fpr_model] if args.fpr_model else []),
    ]
    train = patients_view(args.stage1, list(labels["id"]), args.work / "train_patients")
    risk = args.work / "risk"
    classifiers = ["--config", "risk_classifiers"] if args.classifier else []
    classifiers += [a for option in args.classifier or [] for a in ("--classifier", option)]
    lungcad("train", "risk", "--data", str(train), "--labels", str(args.labels), "-o", str(risk), *models,
            *classifiers, "--workers", str(args.workers))  # fmt: skip
    if args.submission_ids:
        ids = list(pd.read_csv(args.submission_ids, dtype={"id": str})["id"])
    else:
        ids = sorted(p.name for p in args.stage1.iterdir() if p.is_dir() and p.name not in set(labels["id"]))
    test = patients_view(args.stage1, ids, args.work / "test_patients")
    out = args.work / "detect"
    lungcad("detect", str(test), "-o", str(out), "--stage", "risk", *models, "--risk-model", str(risk),
            "--workers", str(args.workers))  # fmt: skip
    predicted = pd.read_csv(out / "patients.csv", dtype={"id": str}).set_index("id")["cancer"]
    submission = pd.DataFrame({"id": ids, "cancer": [predicted.get(i, float("nan")) for i in ids]})
    missing = submission.cancer.isna().sum()
    if missing:
        raise SystemExit(f"{missing} patient(s) without a prediction: see {out / 'errors.csv'}")
    submission.to_csv(args.work / "submission.csv", index=False)
    print(f"submission: {len(submission)} patients -> {args.work / 'submission.csv'}")
    if args.test_labels:
        predictions = str(args.work / "submission.csv")
        lungcad("evaluate", "dsb", "--labels", str(args.test_labels), "--predictions", predictions,
                "-o", str(args.work / "dsb"))  # fmt: skip


if __name__ == "__main__":
    main()
