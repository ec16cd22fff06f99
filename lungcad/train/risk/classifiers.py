"""Nodule classifiers: a WideResNet on each candidate's patch, trained on nodule-level labels, as risk features.

The risk stage's hand-made features (size, density, compactness) see spiculation and lobulation only roughly, and
the synthetic cancer rule turns on them (solid AND (>= 15 mm, or spiculated >= 8 mm, or lobulated >= 12 mm)). A
classifier learns such a nodule attribute from the patches. Its labels come from a ``nodules.csv``
(``id,coordX,coordY,coordZ,diameter_mm,type,shape,...,malignant,excluded``: ``lungcad synth`` writes one beside the
LUNA16 tables; on real data, e.g. LIDC-IDRI's radiologist ratings of malignancy, spiculation and lobulation): a
nodule is positive when its ``target`` column holds one of ``positive_values``, and only nodules of the configured
types and sizes are used. ``non_nodules_per_scan`` class-0 rows of ``candidates.csv`` per scan can be added as
negatives, so that the false positives the FPR lets through also score low. Two configs ship:
``configs/malignancy.yaml`` (malignant vs every other nodule and a few non-nodules) and ``configs/shape.yaml``
(lobulated or spiculated vs smooth, solid and part-solid nodules >= 6 mm: the cue the malignancy classifier, which
learns size first, misses).

Patches, model and training loop are the FPR's (:func:`lungcad.train.fpr.train.train_patch_classifier`). A risk model
uses classifier ``NAME`` through the feature ``NAME_logit`` and keeps it in ``classifiers/NAME/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lungcad.errors import ConfigError, DataLayoutError
from lungcad.schema import XYZ
from lungcad.train.fpr.train import FprTrainConfig, train_patch_classifier
from lungcad.train.loop import FitResult

NODULE_COLUMNS = ("id", *XYZ)


@dataclass(frozen=True)
class ClassifierTrainConfig(FprTrainConfig):
    """``configs/malignancy.yaml`` / ``configs/shape.yaml``: the FPR's settings plus what the classifier learns.

    Attributes:
        target: the ``nodules.csv`` column holding the label.
        positive_values: values of ``target`` (as text) that make a positive; every other value is a negative.
        types: nodule ``type`` values used (empty: all).
        min_diameter_mm: smaller nodules are left out.
        non_nodules_per_scan: class-0 ``candidates.csv`` rows per scan added as negatives.
        diameter_jitter: with size-scaled patches (``patches.diameters_across > 0``) each nodule is cut once per
            factor, at its diameter times the factor: inference scales by the U-Net's estimate, ~+-30% off.
    """

    target: str = "malignant"
    positive_values: tuple[str, ...] = ("1",)
    types: tuple[str, ...] = ()
    min_diameter_mm: float = 0.0
    non_nodules_per_scan: int = 3
    diameter_jitter: tuple[float, ...] = (1.0,)


def read_nodules(path: str | Path, config: ClassifierTrainConfig) -> pd.DataFrame:
    """A ``nodules.csv`` as (seriesuid, coordX..Z mm, label 0/1): excluded findings dropped, the configured types
    and sizes kept, ``label`` from the ``target`` column."""
    path = Path(path)
    if not path.is_file():
        raise DataLayoutError("nodule table not found", path=path, expected=",".join([*NODULE_COLUMNS, config.target]))
    return label_nodules(pd.read_csv(path, dtype={"id": str}), config, path)


def label_nodules(table: pd.DataFrame, config: ClassifierTrainConfig, path: str | Path | None = None) -> pd.DataFrame:
    """Rows of a nodule table (``nodules.csv`` columns) as (seriesuid, coordX..Z mm, label 0/1, diameter_mm):
    excluded findings dropped, the configured types and sizes kept, ``label`` from the ``target`` column; ``path``
    names the table in errors."""
    needed = [*NODULE_COLUMNS, config.target]
    needed += ["type"] if config.types else []
    needed += ["diameter_mm"] if config.min_diameter_mm > 0 else []
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise DataLayoutError(f"missing column(s) {missing}", path=path, expected=",".join(needed))
    if "excluded" in table.columns:
        table = table[table["excluded"].fillna(0).astype(int) == 0]
    if config.types:
        table = table[table["type"].isin(config.types)]
    if config.min_diameter_mm > 0:
        table = table[table["diameter_mm"] >= config.min_diameter_mm]
    label = table[config.target].astype(str).isin(config.positive_values).astype(int)
    diameter = table["diameter_mm"].astype(float) if "diameter_mm" in table.columns else np.nan
    return pd.DataFrame(
        {"seriesuid": table["id"], **{c: table[c].astype(float) for c in XYZ}, "label": label, "diameter_mm": diameter}
    ).reset_index(drop=True)


def training_table(
    nodules: pd.DataFrame,
    candidates: pd.DataFrame | None,
    per_scan: int,
    seed: int,
    *,
    jitter: tuple[float, ...] = (1.0,),
    unknown_diameter_mm: float = 10.0,
) -> pd.DataFrame:
    """Training points: every nodule (with its label and diameter; once per ``jitter`` factor, the diameter times
    it) plus ``per_scan`` seeded non-nodule candidates (``candidates`` rows of class 0, of diameter
    ``unknown_diameter_mm``) of each scan that has nodules."""
    diameter = nodules["diameter_mm"] if "diameter_mm" in nodules.columns else np.nan
    frames = [nodules.assign(diameter_mm=diameter * factor) for factor in jitter]
    if candidates is not None and per_scan > 0:
        rng = np.random.default_rng(seed)
        negatives = candidates[(candidates["class"] == 0) & candidates.seriesuid.isin(set(nodules.seriesuid))]
        for _, rows in negatives.groupby("seriesuid", sort=True):
            pick = rows.iloc[rng.permutation(len(rows))[:per_scan]]
            frames.append(pick[["seriesuid", *XYZ]].assign(label=0, diameter_mm=unknown_diameter_mm))
    return pd.concat(frames, ignore_index=True)


def train_classifier(
    data: str | Path,
    out_dir: str | Path,
    config: ClassifierTrainConfig,
    *,
    nodules: str | Path | None = None,
    cache: str | Path | None = None,
    resume: bool = False,
    strategy=None,
    init: str | Path | None = None,
) -> FitResult:
    """Train a nodule classifier on the scans of ``data`` (LUNA16 layout) into ``out_dir``.

    ``nodules`` defaults to ``data/nodules.csv``; ``data/candidates.csv`` (if present) gives the non-nodules.
    Each epoch reports ``val_auc`` (positives vs the rest) on held-out scans.
    """
    data = Path(data)
    path = Path(nodules) if nodules else data / "nodules.csv"
    table = read_nodules(path, config)
    if table.label.nunique() < 2:
        raise DataLayoutError(f"need both positive and negative nodules for {config.target}", path=path)
    cands = pd.read_csv(data / "candidates.csv") if (data / "candidates.csv").is_file() else None
    labelled = training_table(
        table,
        cands,
        config.non_nodules_per_scan,
        config.train.seed,
        jitter=config.diameter_jitter if config.scorer.patches.diameters_across > 0 else (1.0,),
        unknown_diameter_mm=config.sampling.unknown_diameter_mm,
    )
    info = {"nodules": str(path), "target": config.target, "positive_nodules": int(table.label.sum())}
    return train_patch_classifier(
        data, out_dir, labelled, config, info=info, cache=cache, resume=resume, strategy=strategy, init=init
    )


def parse_classifier_options(options: list[str] | None) -> dict[str, str]:
    """``["NAME=DIR", ...]`` (``lungcad train risk --classifier``) as ``{NAME: DIR}``; ConfigError when malformed."""
    out: dict[str, str] = {}
    for option in options or []:
        name, sep, folder = option.partition("=")
        if not sep or not name.isidentifier() or not folder:
            raise ConfigError(f"--classifier {option!r}: expected NAME=DIR, e.g. malignancy=models/malignancy")
        out[name] = folder
    return out
