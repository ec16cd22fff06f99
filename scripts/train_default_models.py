#!/usr/bin/env python
"""Reproduce the bundled default models from synthetic data (no download).

Steps, each resumable (rerun the same command after an interruption):

1. ``lungcad synth`` training data (seed 1000) and held-out data (seed 5000; never used for training);
2. ``lungcad train unet`` with ``configs/unet.yaml`` into ``WORK/unet`` (1.0 mm in-plane grid, from scratch), then
   fine-tuned on a 0.7 mm grid (``--init WORK/unet --config unet_zoom``) into ``WORK/unet_zoom``, the bundled U-Net;
3. its merge settings chosen on the training run's validation scans (``scripts/tune_merge.py --apply``);
4. the U-Net's candidates on the training scans, plus the blob filter's (``lungcad detect --stage candidates
   --blobs``: vessel forks and crossings, small nodules): the FPR's mined hard negatives;
5. ``lungcad train fpr`` with ``configs/fpr.yaml`` on the synthetic ``candidates.csv`` plus those candidates (half
   the negatives drawn from the U-Net's own; the last epoch kept; the config also sets the 8 test-time views the
   saved model scores with; the U-Net fusion weight is chosen on validation; the risk model below is fitted on those
   scores);
6. detection on the held-out scans (U-Net alone, then the full pipeline) and ``lungcad evaluate froc``;
7. the nodule classifiers (``lungcad train classifier`` with ``configs/malignancy.yaml`` and ``configs/shape.yaml``)
   on the nodules of the training phantoms plus phantoms rich in nodules (seed 9000, ``configs/synth_malignancy.yaml``);
8. risk: new phantoms for its training (seed 7000) and held-out patients (seeds 8000, 8500, 8800, 8900), ``lungcad train
   risk`` with ``configs/risk_classifiers.yaml`` and those classifiers on the first (detections by the two models
   above), the full pipeline on the others and ``lungcad evaluate dsb`` of their ``patients.csv``;
9. models, configs, training curves and held-out metrics copied into ``lungcad/models/{unet,fpr,risk}/``.

    python scripts/train_default_models.py --work /work/runs/default [--train-scans 128] [--heldout-scans 10]

``--world`` (issue #32): the models above fine-tuned for the randomized world, starting from what is committed
(``--init``, default ``training_runs/2026-12-05_phantom_models``: the phantom recipe's models, bundled until then):

w1. ``lungcad synth`` of the training world (``configs/world_train.yaml``: LIDC-IDRI fit patients 0001-0700; seed
    32100, ``--world-scans`` scans, LUNA16 layout with cancer labels);
w2. ``unet``: ``lungcad train unet --init INIT/unet --config unet_world`` on them (scanner jitter, small nodules
    favoured), then its merge settings (``tune_merge.py``) on the run's validation scans;
w3. ``fpr``: the starting U-Net's candidates on the training scans (so this step can run beside w2: ``--world-steps
    fpr``), then ``lungcad train fpr --init INIT/fpr --config fpr_world`` with them as hard negatives;
w4. ``risk``: ``lungcad train risk --config risk_classifiers`` on the training scans' cancer labels, with the new
    U-Net and FPR and the starting model's nodule classifiers;
w5. ``validate``: ``scripts/cross_world.py --worlds validation`` of the new set against the starting one (the
    validation world: LIDC validation patients 0701-0800); by hand after it, for a bundle: ``--worlds phantoms``
    (no worse on today's phantoms) and, once, ``--worlds heldout``;
w6. ``bundle``: into ``lungcad/models/`` (by hand, after w5 says the new set is better: ``--world-steps bundle``).

    python scripts/train_default_models.py --work /work/runs/world --world [--world-steps unet,fpr,risk,validate]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from pipeline_steps import REPO, call, concat_tables, link_into, lungcad, tune_merge

from lungcad.fileio import write_json_atomic
from lungcad.synth import PHANTOM_VERSION

TRAIN_SEED, HELDOUT_SEED = 1000, 5000
WORLD_SEED = 32100  # the training world's phantoms (--world)
WORLD_STEPS = ("unet", "fpr", "risk", "validate", "bundle")
PHANTOM_MODELS = REPO / "training_runs" / "2026-12-05_phantom_models"
RISK_TRAIN_SEED, RISK_HELDOUT_SEED = 7000, 8000
RISK_MORE_HELDOUT_SEEDS = (8500, 8800, 8900)  # patients never looked at while the risk model's form was chosen
MALIGNANCY_SEED = 9000
LUNA_TABLES = ("annotations.csv", "annotations_excluded.csv", "candidates.csv", "nodules.csv")


UNET_FILES = ("model.keras", "detector.yaml", "merge_sweep.csv")
FPR_FILES = ("model.keras", "fpr.yaml")
KINDS_CSV = "sensitivity_by_kind.csv"  # evaluate froc --nodules: held-out sensitivity per nodule type/location
RISK_FILES = ("risk.json", "run.json", "cv_folds.csv", "cv_predictions.csv", "calibration.png", "classifiers")
CLASSIFIERS = ("malignancy", "shape")  # configs/<name>.yaml; the features <name>_logit of configs/risk_classifiers.yaml
RUN_FILES = ("train_config.yaml", "run.json", "history.csv", "metrics.json", "training_curve.png")


def synth(folder: Path, scans: int, seed: int, workers: int, *extra: str) -> Path:
    """``lungcad synth`` LUNA16-layout phantoms, compressed (the same voxels in half the disk); returns their
    ``luna16`` folder."""
    lungcad(
        "synth", "-o", str(folder), "--scans", str(scans), "--seed", str(seed), "--format", "luna",
        "--workers", str(workers), "--compress", *extra,
    )  # fmt: skip
    return folder / "luna16"


def merged_view(folder: Path, sources: list[Path]) -> Path:
    """One LUNA16-layout folder over several: ``subset0/`` links every scan file, the tables are concatenated."""
    scans = [f for src in sources for f in sorted(src.glob("subset*/*")) if f.suffix in (".mhd", ".raw", ".zraw")]
    link_into(folder / "subset0", scans)
    return concat_tables(folder, sources, LUNA_TABLES)


def train_classifiers(work: Path, train_luna: Path, scans: int, workers: int, epochs: int | None) -> dict[str, Path]:
    """The nodule classifiers on the training phantoms' nodules plus nodule-rich phantoms; returns their folders."""
    config = str(REPO / "configs" / "synth_malignancy.yaml")
    rich = synth(work / "malignancy_synth", scans, MALIGNANCY_SEED, workers, "--config", config)
    data = merged_view(work / "malignancy_data", [train_luna, rich])
    models = {name: work / f"classifier_{name}" for name in CLASSIFIERS}
    for name, model in models.items():
        train("classifier", data, model, epochs, "--config", name)
    return models


def train(stage: str, data: Path, model: Path, epochs: int | None, *extra: str) -> None:
    """``lungcad train STAGE --resume`` (``--epochs`` only for smoke runs)."""
    lungcad(
        "train",
        stage,
        "--data",
        str(data),
        "-o",
        str(model),
        "--resume",
        *extra,
        *(["--epochs", str(epochs)] if epochs else []),
    )


def heldout_froc(luna: Path, candidates: Path, out: Path) -> dict:
    """``lungcad evaluate froc`` of a candidates.csv on the held-out scans; returns froc.json."""
    tables = (
        "--annotations",
        "annotations.csv",
        "--excluded",
        "annotations_excluded.csv",
        "--seriesuids",
        "seriesuids.csv",
        "--nodules",
        "nodules.csv",  # sensitivity per nodule type, shape and location
    )
    args = [a if a.startswith("--") else str(luna / a) for a in tables]
    lungcad("evaluate", "froc", *args, "--candidates", str(candidates), "-o", str(out))
    return json.loads((out / "froc.json").read_text())


def bundle(stage: str, model: Path, files: tuple[str, ...], summary: dict, pictures: dict[Path, str]) -> None:
    """Copy a trained model directory's ``files``, its held-out summary and ``pictures`` (source -> name: plots and
    tables of the held-out evaluation) into ``lungcad/models/STAGE``."""
    target = REPO / "lungcad" / "models" / stage
    target.mkdir(parents=True, exist_ok=True)
    for name in files:
        if (model / name).is_dir():  # the risk model's nodule classifiers
            shutil.rmtree(target / name, ignore_errors=True)
            shutil.copytree(model / name, target / name)
        else:
            shutil.copy2(model / name, target / name)
    for source, name in pictures.items():
        shutil.copy2(source, target / name)
    summary = {**summary, "phantom_version": PHANTOM_VERSION}  # the generator version of the held-out phantoms
    write_json_atomic(target / "heldout_metrics.json", summary)
    headline = {k: summary[k] for k in ("cpm", "log_loss", "auc") if k in summary}
    print(f"bundled {target}: held-out {headline}")


def train_risk(work: Path, unet: Path, fpr: Path, classifiers: dict, scans: tuple[int, ...], workers: int) -> dict:
    """Train the risk model on new phantoms, score the held-out patients (``evaluate dsb``); returns its JSON."""
    models = ("--model", str(unet), "--fpr-model", str(fpr))
    data = synth(work / "risk_train", scans[0], RISK_TRAIN_SEED, workers)
    heldout = synth(work / "risk_heldout", scans[1], RISK_HELDOUT_SEED, workers)
    labels = data / "cancer_labels.csv"  # the phantoms' documented cancer rule, keyed by seriesuid
    extra = ["--config", "risk_classifiers", "--workers", str(workers)]
    extra += [a for name, folder in classifiers.items() for a in ("--classifier", f"{name}={folder}")]
    lungcad("train", "risk", "--data", str(data), "--labels", str(labels), "-o", str(work / "risk"), *models, *extra)
    summary = risk_heldout(heldout, work / "heldout_risk", models, work / "risk", workers)
    for rank, (seed, n) in enumerate(zip(RISK_MORE_HELDOUT_SEEDS, scans[2:], strict=True), start=2):
        more = synth(work / f"risk_heldout{rank}", n, seed, workers)
        summary[f"heldout_{rank}_seed_{seed}"] = risk_heldout(
            more, work / f"heldout{rank}_risk", (*models, "--no-pictures"), work / "risk", workers
        )
    return summary


def risk_heldout(luna: Path, out: Path, models: tuple[str, ...], risk: Path, workers: int) -> dict:
    """The full pipeline on held-out patients and ``lungcad evaluate dsb`` of its ``patients.csv``."""
    lungcad("detect", str(luna), "-o", str(out), "--stage", "risk", *models, "--risk-model", str(risk),
            "--workers", str(workers))  # fmt: skip
    labels = str(luna / "cancer_labels.csv")
    lungcad("evaluate", "dsb", "--labels", labels, "--predictions", str(out / "patients.csv"), "-o", str(out))
    return json.loads((out / "dsb.json").read_text())


def model_set(folder: Path, unet: Path, fpr: Path, risk: Path) -> Path:
    """A model-set folder (``unet/``, ``fpr/``, ``risk/`` links) as ``cross_world.py --models`` takes it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in (("unet", unet), ("fpr", fpr), ("risk", risk)):
        link = folder / name
        if link.is_symlink():
            link.unlink()
        link.symlink_to(source.resolve(), target_is_directory=True)
    return folder


def train_world(work: Path, init: Path, scans: int, steps: set[str], workers: int, epochs: int | None) -> None:
    """The ``--world`` steps (module docstring, w1-w6), each resumable."""
    luna = synth(work / "world_train", scans, WORLD_SEED, workers, "--config", "world_train")
    unet, fpr, risk = work / "world_unet", work / "world_fpr", work / "world_risk"
    if "unet" in steps:
        train("unet", luna, unet, epochs, "--workers", str(workers), "--init", str(init / "unet"),
              "--config", "unet_world")  # fmt: skip
        tune_merge(unet, luna)
    if "fpr" in steps:
        mined = work / "world_train_candidates"
        lungcad("detect", str(luna), "-o", str(mined), "--stage", "candidates", "--model", str(init / "unet"),
                "--no-pictures", "--workers", str(workers))  # fmt: skip
        train("fpr", luna, fpr, epochs, "--candidates", str(mined / "candidates.csv"), "--init", str(init / "fpr"),
              "--config", "fpr_world")  # fmt: skip
    if "risk" in steps:
        classifiers = init / "risk" / "classifiers"
        lungcad("train", "risk", "--data", str(luna), "--labels", str(luna / "cancer_labels.csv"), "-o", str(risk),
                "--model", str(unet), "--fpr-model", str(fpr), "--config", "risk_classifiers",
                "--workers", str(workers),
                *[a for name in CLASSIFIERS for a in ("--classifier", f"{name}={classifiers / name}")])  # fmt: skip
    new = work / "models_world"
    if "validate" in steps:
        model_set(new, unet, fpr, risk)
        command = [sys.executable, str(REPO / "scripts" / "cross_world.py"), "--work", str(work / "cross_world"),
                   "--worlds", "validation", "--models", str(init), "--models", str(new),
                   "--workers", str(workers)]  # fmt: skip
        call(command, "cross_world.py")
    if "bundle" in steps:  # what each model's heldout_metrics.json records: the set's validation-world row
        row = work / "cross_world" / "results" / new.name / "validation" / "row.json"
        if not row.is_file():
            raise SystemExit(f"{row}: no validation-world figures of the new set; run --world-steps validate first")
        summary = {"validation_world": json.loads(row.read_text())}
        for name, model, files in (("unet", unet, UNET_FILES), ("fpr", fpr, FPR_FILES), ("risk", risk, RISK_FILES)):
            bundle(name, model, files + (RUN_FILES if name != "risk" else ()), summary, {})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, type=Path, help="folder for data, caches and runs")
    ap.add_argument("--train-scans", type=int, default=128)
    ap.add_argument("--heldout-scans", type=int, default=10)
    ap.add_argument(
        "--risk-scans", type=int, nargs=5, default=(200, 50, 40, 40, 200), metavar=("TRAIN", "HO", "HO2", "HO3", "HO4")
    )
    ap.add_argument("--malignancy-scans", type=int, default=200, help="nodule-rich phantoms for the classifiers")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, help="override train.epochs of both models (smoke runs)")
    ap.add_argument("--world", action="store_true", help="the randomized-world steps w1-w6 (module docstring)")
    ap.add_argument("--init", type=Path, default=PHANTOM_MODELS, help="--world: the model set to start from")
    ap.add_argument("--world-scans", type=int, default=80, help="--world: training-world phantoms")
    ap.add_argument("--world-steps", default="unet,fpr,risk,validate", help=f"--world: of {','.join(WORLD_STEPS)}")
    args = ap.parse_args()
    work = args.work
    if args.world:
        steps = set(args.world_steps.split(","))
        if steps - set(WORLD_STEPS):
            raise SystemExit(f"--world-steps: unknown {sorted(steps - set(WORLD_STEPS))}; known: {WORLD_STEPS}")
        train_world(work, args.init, args.world_scans, steps, args.workers, args.epochs)
        return
    train_luna = synth(work / "synth_train", args.train_scans, TRAIN_SEED, args.workers)
    heldout = synth(work / "synth_heldout", args.heldout_scans, HELDOUT_SEED, args.workers)
    base, unet, fpr = work / "unet", work / "unet_zoom", work / "fpr"
    train("unet", train_luna, base, args.epochs, "--workers", str(args.workers))
    train("unet", train_luna, unet, args.epochs, "--workers", str(args.workers), "--init", str(base),
          "--config", "unet_zoom")  # fmt: skip
    tune_merge(unet, train_luna)
    mined = work / "train_candidates"
    lungcad("detect", str(train_luna), "-o", str(mined), "--stage", "candidates", "--model", str(unet), "--blobs",
            "--no-pictures")  # fmt: skip
    train("fpr", train_luna, fpr, args.epochs, "--candidates", str(mined / "candidates.csv"))
    stages = {"unet": ("candidates", ()), "fpr": ("fpr", ("--fpr-model", str(fpr)))}
    results = {}
    for name, (stage, extra) in stages.items():
        detections = work / f"heldout_{name}"
        lungcad("detect", str(heldout), "-o", str(detections), "--stage", stage, "--model", str(unet), *extra)
        results[name] = heldout_froc(heldout, detections / "candidates.csv", work / f"heldout_{name}_froc")
    for name, model, files in (("unet", unet, UNET_FILES), ("fpr", fpr, FPR_FILES)):
        froc = work / f"heldout_{name}_froc"
        extras = {froc / "froc.png": "heldout_froc.png", froc / KINDS_CSV: f"heldout_{KINDS_CSV}"}
        if name == "unet":  # the from-scratch run the bundled U-Net was fine-tuned from
            extras |= {base / f: f"base_{f}" for f in RUN_FILES}
        bundle(name, model, files + RUN_FILES, results[name], extras)
    classifiers = train_classifiers(work, train_luna, args.malignancy_scans, args.workers, args.epochs)
    risk = train_risk(work, unet, fpr, classifiers, args.risk_scans, args.workers)
    calibration = work / "heldout_risk" / "calibration.png"
    bundle("risk", work / "risk", RISK_FILES, risk, {calibration: "heldout_calibration.png"})


if __name__ == "__main__":
    main()
