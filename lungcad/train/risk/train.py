"""``lungcad train risk``: fit the per-patient cancer model on detections of labelled patients.

1. ``lungcad detect --stage fpr`` over the scans of ``--data`` (resumable, into ``MODEL_DIR/detections``
   unless ``--detections`` names an existing detect output);
2. features of each scan's top-k candidates (cached per scan in ``MODEL_DIR/features/<id>-<key>.csv``, the key a
   hash of the scan's detections, the feature settings and the classifiers' files);
3. ``folds``-fold cross-validation (stratified, seeded): log loss, base-rate log loss and AUC per fold, the
   out-of-fold predictions and their calibration plot;
4. the final model fitted on every patient, written as ``MODEL_DIR/risk.json``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lungcad.errors import ConfigError, DataLayoutError
from lungcad.fileio import write_json_atomic, write_text_atomic
from lungcad.io import find_scans, load_scan
from lungcad.progress import progress
from lungcad.risk.features import FeatureConfig, candidate_features, classifier_names
from lungcad.risk.model import CLASSIFIERS_DIR, NoisyOrConfig, RiskConfig, RiskModel, load_classifiers
from lungcad.schema import by_probability

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RiskTrainConfig:
    """``configs/risk.yaml``: features, model, and the cross-validation (``folds``, ``seed``)."""

    features: FeatureConfig
    model: NoisyOrConfig
    folds: int
    seed: int
    calibration_bins: int

    def risk(self) -> RiskConfig:
        return RiskConfig(self.features, self.model)


def read_labels(path: str | Path) -> pd.Series:
    """``stage1_labels.csv`` (``id,cancer``) as a 0/1 Series indexed by id (str)."""
    from lungcad.evaluate.tables import read_dsb_table

    table = read_dsb_table(path, "id", "cancer")
    bad = table.loc[~table["value"].isin([0.0, 1.0]), "id"]
    if len(bad):
        raise DataLayoutError(f"cancer labels must be 0 or 1, not so for {list(bad)[:3]}", path=path)
    return pd.Series(table["value"].to_numpy(float), index=table["id"].astype(str), name="cancer")


def features_key(config: RiskConfig, classifier_dirs: dict[str, str | Path] | None = None) -> str:
    """Hash of what a scan's features depend on besides its detections: the feature and top-k settings and each
    nodule classifier's files (weights and patch settings)."""
    digest = hashlib.sha256(repr((config.features, config.model.top_k)).encode())
    for name, folder in sorted((classifier_dirs or {}).items()):
        digest.update(name.encode())
        for file in ("model.keras", "fpr.yaml"):
            digest.update((Path(folder) / file).read_bytes())
    return digest.hexdigest()


def scan_features(
    scan_csv: Path, scan_path: Path, cache: Path, config: RiskConfig, classifiers=None, key: str = ""
) -> pd.DataFrame:
    """Features of one scan's top-k candidates from its detect CSV, cached in ``cache/<id>-<hash>.csv``, the hash
    over ``key`` (:func:`features_key`) and the detections: other detections, settings or classifiers are
    measured again, never taken from a stale cache."""
    text = scan_csv.read_bytes()
    out = cache / f"{scan_csv.stem}-{hashlib.sha256(key.encode() + text).hexdigest()[:16]}.csv"
    if out.exists():
        return pd.read_csv(out, dtype={"seriesuid": str})
    table = pd.read_csv(io.BytesIO(text), dtype={"seriesuid": str})  # the bytes just hashed, not a second read
    top = by_probability(table).head(config.model.top_k)
    feats = candidate_features(load_scan(scan_path), top, config.features, classifiers) if len(top) else top
    write_text_atomic(out, feats.to_csv(index=False))
    return feats


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold index (N,) per patient: each class dealt round-robin in a seeded order."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), int)
    for value in (0, 1):
        idx = rng.permutation(np.flatnonzero(labels == value))
        fold[idx] = np.arange(len(idx)) % folds
    return fold


def cross_validate(candidates: pd.DataFrame, labels: pd.Series, config: RiskTrainConfig):
    """(per-fold table, out-of-fold predictions Series) of ``config.folds``-fold cross-validation."""
    from lungcad.evaluate.dsb import auc, base_rate_log_loss, log_loss

    y = labels.to_numpy(float)
    fold = stratified_folds(y.astype(int), config.folds, config.seed)
    oof = np.zeros(len(y))
    rows = []
    for k in range(config.folds):
        test = fold == k
        model = RiskModel.fit(candidates, labels[~test], config.risk())
        oof[test] = model.predict(candidates, list(labels.index[test]))
        yt, pt = y[test], oof[test]
        row = {"fold": k, "n": int(test.sum()), "positives": int(yt.sum()), "log_loss": log_loss(yt, pt)}
        row.update(base_rate_log_loss=base_rate_log_loss(yt), auc=auc(yt, pt) if 0 < yt.sum() < len(yt) else np.nan)
        rows.append(row)
    return pd.DataFrame(rows), pd.Series(oof, index=labels.index, name="cancer")


def collect_features(
    detections: Path, refs, ids: set[str], out: Path, config: RiskConfig, classifiers=None, key: str = ""
) -> pd.DataFrame:
    """Top-k candidate features of every labelled scan with a finished detection (``key``: :func:`features_key`)."""
    cache = out / "features"
    frames = []
    for ref in progress([r for r in refs if r.id in ids], desc="risk features", unit="scan"):
        scan_csv = detections / "scans" / f"{ref.id}.csv"
        if scan_csv.exists():
            frames.append(scan_features(scan_csv, ref.path, cache, config, classifiers, key))
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["seriesuid", "probability"])


def train_risk(
    data: str | Path,
    labels_path: str | Path,
    out_dir: str | Path,
    config: RiskTrainConfig,
    *,
    detections: str | Path | None = None,
    model_dir: str | Path | None = None,
    fpr_model_dir: str | Path | None = None,
    classifiers: dict[str, str | Path] | None = None,
    workers: int = 1,
) -> dict:
    """Detect (unless ``detections`` is given), cross-validate and fit; returns the summary in ``run.json``.

    ``classifiers`` (``{NAME: model dir}`` of ``lungcad train classifier``): each one's logit ``NAME_logit`` is
    measured for every candidate and the classifier is copied into ``out_dir/classifiers/NAME``; the config's
    features must use exactly these (``configs/risk_classifiers.yaml``: malignancy and shape).
    """
    from lungcad.pipeline import detect_scans

    out = Path(out_dir)
    scorers = _classifiers_for(config, classifiers or {})
    labels = read_labels(labels_path)
    refs = find_scans([data])
    if detections is None:
        detections = out / "detections"
        detect_scans(
            [data],
            detections,
            stage="fpr",
            model_dir=model_dir,
            fpr_model_dir=fpr_model_dir,
            workers=workers,
            pictures=False,
        )
    detections = Path(detections)
    found = {r.id for r in refs if (detections / "scans" / f"{r.id}.json").exists()}
    labels = labels[labels.index.isin(found)]
    if labels.nunique() < 2 or len(labels) < config.folds:
        raise DataLayoutError(
            f"{len(labels)} labelled patients with detections ({int(labels.sum())} with cancer): need both classes "
            f"and at least {config.folds}",
            path=labels_path,
        )
    key = features_key(config.risk(), classifiers)
    candidates = collect_features(detections, refs, set(labels.index), out, config.risk(), scorers, key)
    folds, oof = cross_validate(candidates, labels, config)
    model = RiskModel.fit(candidates, labels, config.risk())
    model.save(out)
    for name, folder in (classifiers or {}).items():
        copy_classifier(Path(folder), out / CLASSIFIERS_DIR / name)
    return write_report(out, folds, oof, labels, model, config)


def _classifiers_for(config: RiskTrainConfig, folders: dict[str, str | Path]) -> dict:
    """The nodule classifiers the config's features need, loaded from ``folders``; ConfigError on a mismatch."""
    needed = set(classifier_names(config.model.features))
    if needed != set(folders):
        raise ConfigError(
            f"the config's features use classifiers {sorted(needed) or 'none'}, "
            f"--classifier gave {sorted(folders) or 'none'}",
            fix="give --classifier NAME=DIR for each NAME_logit in model.features ('lungcad train classifier')",
        )
    return load_classifiers({name: Path(folder) for name, folder in folders.items()})


def copy_classifier(source: Path, target: Path) -> None:
    """Copy a classifier's model directory (weights, configs, metrics and curves; no checkpoints or caches)."""
    ignore = shutil.ignore_patterns("checkpoints", "patch_cache", "tensorboard", "*.weights.h5")
    tmp = target.with_name(f".tmp-{target.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp, ignore=ignore)
    shutil.rmtree(target, ignore_errors=True)
    tmp.replace(target)


def write_report(out: Path, folds: pd.DataFrame, oof: pd.Series, labels: pd.Series, model: RiskModel, config) -> dict:
    """``cv_folds.csv``, ``cv_predictions.csv``, ``calibration.png`` and ``run.json`` (summary)."""
    from lungcad import __version__
    from lungcad.config import to_dict
    from lungcad.evaluate.config import DsbConfig
    from lungcad.evaluate.dsb import compute_dsb
    from lungcad.evaluate.plots import plot_calibration

    write_text_atomic(out / "cv_folds.csv", folds.to_csv(index=False))
    table = pd.DataFrame({"id": labels.index, "label": labels.to_numpy(), "prediction": oof.to_numpy()})
    write_text_atomic(out / "cv_predictions.csv", table.to_csv(index=False))
    pooled = compute_dsb(table, DsbConfig(calibration_bins=config.calibration_bins))
    plot_calibration(pooled, out / "calibration.png")
    summary = {
        "lungcad_version": __version__,
        "patients": len(labels),
        "positives": int(labels.sum()),
        "cv": {
            "folds": config.folds,
            "log_loss": pooled.log_loss,
            "base_rate_log_loss": pooled.base_rate_log_loss,
            "auc": pooled.auc,
            "per_fold": folds.to_dict(orient="records"),
        },
        "weights": dict(zip(config.model.features, model.noisy_or.weights.round(4).tolist(), strict=True)),
        "leak": float(1 / (1 + np.exp(-model.noisy_or.leak_logit))),
        "config": to_dict(config),
    }
    write_json_atomic(out / "run.json", summary)
    return summary
