"""Data Science Bowl 2017 per-patient scoring: Kaggle log loss, AUC, calibration.

Kaggle's metric is the binary log loss with predictions clipped to ``[1e-15, 1 - 1e-15]``::

    logloss = -mean(y * ln(p) + (1 - y) * ln(1 - p))

The *base-rate* log loss is that of predicting the labels' own cancer rate for every patient (about
0.57 for stage 1's 26 %): a model must beat it to have learned anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from lungcad.errors import DataLayoutError
from lungcad.evaluate.config import DsbConfig
from lungcad.evaluate.tables import few, read_dsb_table


def log_loss(labels: np.ndarray, predictions: np.ndarray, clip: float = 1e-15) -> float:
    """Kaggle binary log loss (natural log) of 0/1 ``labels`` and probabilities clipped to ``[clip, 1-clip]``."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(predictions, dtype=np.float64), clip, 1.0 - clip)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log(1.0 - p)))


def base_rate_log_loss(labels: np.ndarray, clip: float = 1e-15) -> float:
    """Log loss of predicting the labels' mean (the cancer rate) for everyone."""
    y = np.asarray(labels, dtype=np.float64)
    return log_loss(y, np.full(len(y), y.mean()), clip)


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count 1/2); NaN when only one class is present."""
    y = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def calibration_table(labels: np.ndarray, predictions: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Reliability table over ``bins`` equal-width probability bins (``p = 1`` falls in the last).

    Columns: ``bin_low, bin_high, n, mean_prediction, observed_rate`` (NaN for empty bins).
    """
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(predictions, dtype=np.float64)
    idx = np.clip((p * bins).astype(int), 0, bins - 1)
    n = np.bincount(idx, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(idx, weights=p, minlength=bins) / n
        rate = np.bincount(idx, weights=y, minlength=bins) / n
    edges = np.round(np.linspace(0.0, 1.0, bins + 1), 12)
    return pd.DataFrame(
        {"bin_low": edges[:-1], "bin_high": edges[1:], "n": n, "mean_prediction": mean_p, "observed_rate": rate}
    )


@dataclass(frozen=True)
class DsbResult:
    """Per-patient scores.

    Attributes:
        log_loss: Kaggle log loss of the predictions (clipped).
        base_rate_log_loss: log loss of predicting ``base_rate`` for everyone.
        base_rate: fraction of patients with cancer.
        auc: ROC AUC (NaN if one class only).
        n, positives: patients scored, of whom with cancer.
        calibration: reliability table (see :func:`calibration_table`).
        table: ``id, label, prediction`` in labels-file order.
    """

    log_loss: float
    base_rate_log_loss: float
    base_rate: float
    auc: float
    n: int
    positives: int
    clip: float
    calibration: pd.DataFrame
    table: pd.DataFrame


def join_labels(
    labels: pd.DataFrame,
    predictions: pd.DataFrame,
    *,
    labels_path: str | None = None,
    predictions_path: str | None = None,
    only_predicted: bool = False,
) -> pd.DataFrame:
    """``id, label, prediction``: every label matched to one prediction; clear errors otherwise.

    Predictions for ids not in the labels are an error; labelled ids without a prediction are an
    error unless ``only_predicted`` (then only predicted patients are scored).
    """
    unknown = predictions.loc[~predictions["id"].isin(set(labels["id"])), "id"]
    if len(unknown):
        where = f"labels file {labels_path}" if labels_path else "labels"
        raise DataLayoutError(
            f"{len(unknown)} predicted id(s) not in the {where}: {few(unknown)}",
            path=predictions_path,
            fix="predict only labelled patients, or give the matching labels file",
        )
    missing = labels.loc[~labels["id"].isin(set(predictions["id"])), "id"]
    if len(missing) and not only_predicted:
        raise DataLayoutError(
            f"no prediction for {len(missing)} labelled id(s): {few(missing)}",
            path=predictions_path,
            fix="predict every patient of the labels file, or pass --only-predicted to score a subset",
        )
    joined = labels.merge(predictions, on="id", how="inner", suffixes=("_label", "_pred"))
    return joined.rename(columns={"value_label": "label", "value_pred": "prediction"})


def validate_values(table: pd.DataFrame, labels_path: str | None, predictions_path: str | None) -> None:
    """Labels must be 0/1 and predictions probabilities in [0, 1]."""
    bad = table.loc[~table["label"].isin([0.0, 1.0]), "id"]
    if len(bad):
        raise DataLayoutError(f"labels must be 0 or 1; not so for {few(bad)}", path=labels_path)
    bad = table.loc[~table["prediction"].between(0.0, 1.0), "id"]
    if len(bad):
        raise DataLayoutError(
            f"predictions must be probabilities in [0, 1]; not so for {few(bad)}", path=predictions_path
        )


def compute_dsb(table: pd.DataFrame, config: DsbConfig | None = None) -> DsbResult:
    """Scores of a joined ``id, label, prediction`` table."""
    cfg = config or DsbConfig()
    y, p = table["label"].to_numpy(float), table["prediction"].to_numpy(float)
    return DsbResult(
        log_loss=log_loss(y, p, cfg.clip),
        base_rate_log_loss=base_rate_log_loss(y, cfg.clip),
        base_rate=float(y.mean()),
        auc=auc(y, p),
        n=len(y),
        positives=int(y.sum()),
        clip=cfg.clip,
        calibration=calibration_table(y, p, cfg.calibration_bins),
        table=table[["id", "label", "prediction"]].reset_index(drop=True),
    )


def compute_dsb_files(
    labels: str | Path, predictions: str | Path, *, config: DsbConfig | None = None, only_predicted: bool = False
) -> DsbResult:
    """:func:`compute_dsb` on ``stage1_labels.csv``-style files (``id,cancer``; quirks as in :mod:`.tables`)."""
    cfg = config or DsbConfig()
    lab = read_dsb_table(labels, cfg.id_column, cfg.label_column)
    pred = read_dsb_table(predictions, cfg.id_column, cfg.prediction_column)
    table = join_labels(
        lab, pred, labels_path=str(labels), predictions_path=str(predictions), only_predicted=only_predicted
    )
    validate_values(table, str(labels), str(predictions))
    return compute_dsb(table, cfg)
