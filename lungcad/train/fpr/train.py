"""``lungcad train fpr``: train the WideResNet false-positive reducer (scoring: :mod:`lungcad.fpr.inference`).

Training data: the scans of a LUNA16-layout folder with its ``candidates.csv`` (class 0/1) and/or the
U-Net's candidates of the same scans (``--candidates``, labelled against ``annotations.csv``: mined
hard negatives). Patches are cut once into a cache per scan (resumable), scans are split into training
and held-out validation scans, batches are balanced between positives and negatives and augmented. Each
epoch reports the validation AUC over held-out candidates and, when U-Net candidates are given, the
held-out FROC CPM with FPR scores. A model directory holds ``model.keras`` and ``fpr.yaml``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from lungcad.errors import DataLayoutError
from lungcad.evaluate.tables import read_annotation_tables
from lungcad.fileio import write_atomic
from lungcad.fpr.fusion import UNET_SCORE_COLUMN, check_unet_weight, choose_unet_weight
from lungcad.fpr.inference import FPR_FILE, PatchScorer, ScorerConfig
from lungcad.fpr.wideresnet import build_wideresnet
from lungcad.io import find_scans, load_scan
from lungcad.patches import extract_patches
from lungcad.train.fpr.data import (
    HARD_SOURCE,
    XYZ,
    FprSamplingConfig,
    PatchSet,
    center_crop,
    cut_patches,
    hard_rows,
    label_candidates,
    make_dataset,
    table_spacing,
)
from lungcad.train.loop import FitResult, LoopConfig, Task, fit
from lungcad.train.modeldir import load_best_weights, start_from, write_run_record
from lungcad.train.split import split_ids

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FprTrainConfig:
    """``configs/fpr.yaml``: the scorer a training produces, and how it is trained.

    Attributes:
        scorer: what the model directory's ``fpr.yaml`` receives (patches, WideResNet, inference batch and
            test-time views), except ``unet_weight``, which training chooses from ``unet_weights``.
        sampling: training points and augmentation; train: the loop.
        validation_fraction: share of scans held out (seeded by ``train.seed``).
        unet_weights: the fusion weights tried after training on the validation scans' U-Net candidates (with
            ``scorer.test_time_transforms`` views); the best one is saved as the model's ``unet_weight``.
            ``[0.0]``: no fusion.
    """

    scorer: ScorerConfig
    sampling: FprSamplingConfig
    train: LoopConfig
    validation_fraction: float
    unet_weights: tuple[float, ...] = (0.0,)

    def __post_init__(self) -> None:
        if self.scorer.unet_weight != 0.0:
            raise ValueError(
                f"scorer.unet_weight {self.scorer.unet_weight}: training chooses it from unet_weights; remove it and "
                "list the weights to try in unet_weights"
            )
        for weight in self.unet_weights:
            check_unet_weight(weight)


def read_candidates_tables(data: Path, extra: pd.DataFrame | None) -> pd.DataFrame:
    """LUNA16 ``candidates.csv`` of ``data`` (if present) plus an extra candidate table (the U-Net's: its rows keep
    their ``source``, ``unet`` when it has none, so that :func:`lungcad.train.fpr.data.hard_rows` can find them)."""
    frames = []
    if (data / "candidates.csv").is_file():
        frames.append(pd.read_csv(data / "candidates.csv"))
    if extra is not None:
        source = extra["source"] if "source" in extra.columns else HARD_SOURCE
        frames.append(extra[["seriesuid", *XYZ]].assign(source=source))
    if not frames:
        raise DataLayoutError("no candidates: neither candidates.csv nor --candidates", path=data)
    return pd.concat(frames, ignore_index=True)


def build_patch_cache(data: Path, cache: Path, labelled: pd.DataFrame, config: FprTrainConfig) -> PatchSet:
    """Cut (margin-padded) patches per scan into ``cache/<id>.npz``, skipping scans already cut for the same
    candidates, labels and patch settings (a cache made for other ones is cut again, never reused)."""
    cache.mkdir(parents=True, exist_ok=True)
    parts = []
    for ref in find_scans([data]):
        table = labelled[labelled.seriesuid == ref.id]
        if table.empty:
            continue
        path = cache / f"{ref.id}.npz"
        key = _cache_key(table, config)
        part = _cached_patches(path, key)
        if part is None:
            part = cut_patches(load_scan(ref.path), table, config.scorer.patches, config.sampling.augment_margin)
            arrays = {"patches": part.patches, "labels": part.labels, "scan_ids": part.scan_ids, "key": key}
            write_atomic(path, functools.partial(np.savez, **arrays))
        part.hard = hard_rows(table)  # not cached: which rows are the U-Net's does not change the patches
        parts.append(part)
    if not parts:
        raise DataLayoutError("no candidate belongs to a scan in the folder", path=data)
    return PatchSet.concat(parts)


def _cache_key(table: pd.DataFrame, config: FprTrainConfig) -> str:
    """Hash of one scan's labelled candidates (mm, label) and the patch settings: what its cached patches depend on."""
    settings = repr((config.scorer.patches, config.sampling.augment_margin))
    columns = ["seriesuid", *XYZ, "label"] + (["diameter_mm"] if "diameter_mm" in table.columns else [])
    text = table[columns].to_csv(index=False) + settings
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _cached_patches(path: Path, key: str) -> PatchSet | None:
    """The patches cached in ``path`` if they were cut for ``key`` (None when missing, stale or of an older
    version without a key)."""
    if not path.exists():
        return None
    with np.load(path) as npz:
        if "key" not in npz.files or str(npz["key"]) != key:
            return None
        return PatchSet(npz["patches"], npz["labels"], npz["scan_ids"])


def patch_fingerprint(patches: PatchSet) -> str:
    """Hash of the training and validation patches, labels and scan ids: changes when the data, the candidates or
    the patch settings change."""
    digest = hashlib.sha256()
    for array in (patches.patches, patches.labels, patches.scan_ids.astype(str)):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (ties count half)."""
    from lungcad.evaluate import auc

    return float(auc(labels, scores)) if 0 < labels.sum() < len(labels) else float("nan")


@dataclass
class ValidationMarks:
    """The validation scans' U-Net candidates, their patches (cut once) and the FROC they are counted in.
    ``marks(scorer)`` is the val_cpm of a scorer (one view per patch as configured by the caller)."""

    rows: pd.DataFrame  # seriesuid, coordX..Z (mm) and the U-Net's columns, in ``patches`` order
    patches: np.ndarray  # (N, ...) float16
    annotations: pd.DataFrame
    excluded: pd.DataFrame
    scans: list[str]

    def cpm(self, probability: np.ndarray) -> float:
        """FROC CPM of the rows scored with ``probability`` (N,)."""
        from lungcad.evaluate import compute_froc

        marks = self.rows[["seriesuid", *XYZ]].assign(probability=np.asarray(probability, float))
        return compute_froc(self.annotations, marks, self.scans, excluded=self.excluded).cpm

    def scores(self, scorer: PatchScorer) -> np.ndarray:
        """``scorer``'s probability (N,) of every row."""
        return scorer.score_patches(self.patches.astype(np.float32))

    def __call__(self, scorer: PatchScorer) -> float:
        return self.cpm(self.scores(scorer))


def validation_froc(
    data: Path, unet: pd.DataFrame, annotations: pd.DataFrame, excluded: pd.DataFrame, val_ids: list[str], config
) -> ValidationMarks | None:
    """Every U-Net candidate of the validation scans (ambiguous ones included, as the FROC counts them) ready to
    be scored (``marks(scorer) -> val_cpm``), or None without U-Net candidates.

    Only validation scans that appear in ``unet`` count: a scan the U-Net was not run on (e.g. extra training
    phantoms with only ``candidates.csv``) would otherwise add its nodules as misses whatever the scorer does.
    Rows whose ``source`` is ``blob`` (``detect --blobs``: extra hard negatives for training) are left out: the
    FPR stage scores the U-Net's candidates, and the CPM that picks the epoch is measured on those."""
    if "source" in unet.columns:
        unet = unet[unet["source"] != "blob"]
    rows = unet[unet.seriesuid.isin(val_ids)].reset_index(drop=True)
    refs = {ref.id: ref.path for ref in find_scans([data]) if ref.id in set(val_ids)}
    if rows.empty or not refs:
        return None
    parts = [
        extract_patches(
            load_scan(refs[uid]),
            group[XYZ].to_numpy(float),
            config.scorer.patches,
            table_spacing(group, config.scorer.patches),
        ).astype(np.float16)
        for uid, group in rows.groupby("seriesuid", sort=False)
    ]
    order = np.concatenate([g for g in rows.groupby("seriesuid", sort=False).indices.values()])
    patches, rows = np.concatenate(parts), rows.iloc[order].reset_index(drop=True)
    scans = sorted(set(refs) & set(rows.seriesuid))
    ann, exc = (t[t.seriesuid.isin(scans)] for t in (annotations, excluded))
    return None if ann.empty else ValidationMarks(rows, patches, ann, exc, scans)


def choose_fusion(
    marks: ValidationMarks | None, scorer: PatchScorer, weights: tuple[float, ...]
) -> tuple[PatchScorer, dict]:
    """``scorer`` with the ``unet_weight`` of ``weights`` that ranks the validation marks best (scored with the
    scorer's own test-time views), and a record of the choice for ``run.json``; unchanged without a choice to
    make (one weight, no validation marks, or candidates without the U-Net's mean probability)."""
    if len(weights) < 2 or marks is None or UNET_SCORE_COLUMN not in marks.rows.columns:
        return scorer, {"unet_weight": scorer.config.unet_weight, "chosen_from": None}
    fpr = marks.scores(scorer)
    weight, table = choose_unet_weight(marks.cpm, fpr, marks.rows[UNET_SCORE_COLUMN].to_numpy(float), weights)
    log.info("fusion on %d validation scans: %s -> unet_weight %g", len(marks.scans), table, weight)
    record = {
        "unet_weight": weight,
        "column": UNET_SCORE_COLUMN,
        "validation_cpm": {str(w): c for w, c in table.items()},
        "test_time_transforms": scorer.config.test_time_transforms,
        "validation_scans": len(marks.scans),
    }
    return PatchScorer(scorer.model, replace(scorer.config, unet_weight=weight)), record


def initial_wideresnet(config: ScorerConfig, init: str | Path | None = None) -> keras.Model:
    """A new WideResNet, or one starting from the weights of the model directory ``init`` (fine-tuning; it must have
    the same architecture and patches)."""
    model = build_wideresnet(config.model)
    if init is None:
        return model
    source = PatchScorer.load(init)
    found, expected = (source.config.model, source.config.patches), (config.model, config.patches)
    return start_from(model, source.model, "model/patch settings", found, expected, Path(init) / FPR_FILE)


def train_fpr(
    data: str | Path,
    out_dir: str | Path,
    config: FprTrainConfig,
    *,
    candidates: str | Path | None = None,
    cache: str | Path | None = None,
    resume: bool = False,
    strategy=None,
    init: str | Path | None = None,
) -> FitResult:
    """Train the WideResNet on ``data`` (LUNA16 layout) into the model directory ``out_dir`` (from the weights of the
    model directory ``init`` when given: fine-tuning).

    Validation (each epoch, held-out scans): ``val_auc`` over their labelled candidates and, with U-Net
    ``candidates``, ``val_cpm``: the FROC CPM of those scans' U-Net candidates ranked by the FPR score. After
    training, the fusion weight is chosen on the same candidates (:func:`choose_fusion`; ``fusion`` in
    ``run.json``).
    """
    data = Path(data)
    annotations, excluded = read_annotation_tables(data)
    unet = pd.read_csv(candidates) if candidates else None
    labelled = label_candidates(read_candidates_tables(data, unet), annotations, excluded, config.sampling)

    def val_cpm(val_ids: list[str]):
        return None if unet is None else validation_froc(data, unet, annotations, excluded, val_ids, config)

    def fusion(scorer: PatchScorer, marks: ValidationMarks | None) -> tuple[PatchScorer, dict]:
        scorer, record = choose_fusion(marks, scorer, config.unet_weights)
        return scorer, {"fusion": record}

    info = {"unet_candidates": str(candidates) if candidates else None}
    return train_patch_classifier(
        data,
        out_dir,
        labelled,
        config,
        val_cpm=val_cpm,
        info=info,
        cache=cache,
        resume=resume,
        strategy=strategy,
        init=init,
        finalize=fusion,
    )


def patch_loss(y: tf.Tensor, p: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
    """Per-example (B,) weighted binary cross-entropy of the patch classifiers."""
    return keras.losses.binary_crossentropy(y, p) * w


def monitored_loop(config: FprTrainConfig, cpm: ValidationMarks | None) -> LoopConfig:
    """The loop settings, monitoring ``val_auc`` instead of ``val_cpm`` when there are no U-Net marks to rank."""
    if cpm is None and config.train.monitor == "val_cpm":
        log.info("no U-Net candidates of validation scans: best epoch by val_auc instead of val_cpm")
        return replace(config.train, monitor="val_auc", monitor_mode="max")
    return config.train


def patch_validator(config: FprTrainConfig, val_x: np.ndarray, labels: np.ndarray, cpm: ValidationMarks | None):
    """Validation callback: ``val_auc`` of the centred validation patches ``val_x`` (N, ...) with ``labels`` (N,)
    and, with U-Net marks, ``val_cpm``; one view per patch, so the epoch choice does not depend on test-time views."""

    def validate(model) -> dict[str, float]:
        scorer = PatchScorer(model, replace(config.scorer, test_time_transforms=1))
        metrics = {"val_auc": roc_auc(labels, scorer.score_patches(val_x))}
        if cpm is not None:
            metrics["val_cpm"] = cpm(scorer)
        return metrics

    return validate


def train_patch_classifier(
    data: str | Path,
    out_dir: str | Path,
    labelled: pd.DataFrame,
    config: FprTrainConfig,
    *,
    val_cpm=None,
    info: dict | None = None,
    cache: str | Path | None = None,
    resume: bool = False,
    strategy=None,
    init: str | Path | None = None,
    finalize=None,
) -> FitResult:
    """Train a WideResNet on patches at the ``labelled`` points (seriesuid, coordX..Z mm, label 0/1) of the scans
    in ``data`` into the model directory ``out_dir`` (the FPR; also the risk stage's nodule classifiers).

    Args:
        val_cpm: optional ``val_ids -> (scorer -> CPM) | None``: the per-epoch ``val_cpm`` of the held-out scans.
        info: extra entries for ``run.json``.
        finalize: optional ``(scorer with the best weights, what val_cpm gave) -> (scorer to save, extra run.json
            entries)``: a last step before the model directory is written (the FPR's fusion weight).
        init: a model directory (FPR or classifier, same WideResNet and patches) whose weights training starts from.
    """
    data, out = Path(data), Path(out_dir)
    patches = build_patch_cache(data, Path(cache) if cache else out / "patch_cache", labelled, config)
    train_ids, val_ids = split_ids(sorted(set(patches.scan_ids)), config.validation_fraction, config.train.seed)
    train_set = patches.subset(np.isin(patches.scan_ids, train_ids))
    val_set = patches.subset(np.isin(patches.scan_ids, val_ids))
    size, dims = config.scorer.patches.size, 3 if config.scorer.patches.mode == "3d" else 2
    val_x = center_crop(val_set.patches, size, dims).astype(np.float32)
    cpm = val_cpm(val_ids) if val_cpm is not None else None
    loop = monitored_loop(config, cpm)
    task = Task(
        build_model=lambda: initial_wideresnet(config.scorer, init),
        loss=patch_loss,
        dataset=lambda batch, seed: make_dataset(train_set, size, dims, config.sampling, batch, seed),
        validate=patch_validator(config, val_x, val_set.labels, cpm) if len(val_set.labels) else None,
    )
    result = fit(task, loop, out, strategy=strategy, resume=resume)
    info = {
        "data": str(data),
        **(info or {}),
        "train_scans": train_ids,
        "validation_scans": val_ids,
        "train_candidates": {"positive": int(train_set.labels.sum()), "total": len(train_set.labels)},
        "validation_candidates": {"positive": int(val_set.labels.sum()), "total": len(val_set.labels)},
        "data_fingerprint": patch_fingerprint(patches),
        "init": str(init) if init else None,
    }
    finish_patch_classifier(result, out, config, info, finalize, cpm)
    return result


def finish_patch_classifier(result, out: Path, config, info: dict, finalize, cpm) -> None:
    """The end of a patch classifier's training: the kept epoch's weights, the ``finalize`` hook (e.g. the FPR's
    fusion choice; its entries join ``info``), ``run.json`` and the scorer's files in ``out``."""
    load_best_weights(result, out)
    scorer = PatchScorer(result.model, config.scorer)
    if finalize is not None:
        scorer, extra = finalize(scorer, cpm)
        info |= extra
    write_run_record(result, out, config, info)
    scorer.save(out)
