"""``lungcad train fpr|classifier --synth CONFIG``: the WideResNet patch classifiers on phantoms made on the fly.

Each phantom gives labelled points (world mm): for the FPR its candidate points (class 1 at nodules, 0 at vessels,
lung and body points) and, with ``--unet MODEL_DIR``, the given U-Net's own candidates on it (run as ``lungcad detect
--stage candidates`` runs it: the hard negatives the FPR ranks at inference), labelled against the phantom's truth
as :func:`lungcad.train.fpr.data.label_candidates` labels a written dataset's; for a nodule classifier its nodules
labelled by the config's target (:mod:`lungcad.train.risk.synthetic`). ``patches_per_phantom`` of them are drawn (a
positive with probability ``positive_fraction`` when the phantom has one; a negative from the U-Net's with probability
``hard_negative_fraction``), cut from the phantom's scan as inference cuts them
(:func:`lungcad.patches.extract_patches`, with the augmentation margin) and augmented
(:func:`lungcad.train.fpr.data.augment`). Phantoms without a positive give negatives only, so an epoch's positive share
(``gen_positive_fraction`` in the history) is below ``positive_fraction`` for rare targets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lungcad.fpr.inference import PatchScorer
from lungcad.patches import extract_patches
from lungcad.schema import XYZ
from lungcad.train.fpr.data import augment, center_crop, cut_patches, hard_rows, label_candidates, table_spacing
from lungcad.train.fpr.train import (
    FprTrainConfig,
    ValidationMarks,
    choose_fusion,
    finish_patch_classifier,
    initial_wideresnet,
    monitored_loop,
    patch_loss,
    patch_validator,
)
from lungcad.train.loop import FitResult, Task, fit
from lungcad.train.synthetic import (
    Examples,
    ExampleStream,
    SynthSource,
    phantom_candidates,
    phantom_tables,
    speed_summary,
)

log = logging.getLogger(__name__)

#: U-Nets loaded in this (worker) process, by model directory.
_DETECTORS: dict[str, object] = {}


def unet_detector(model_dir: str | None):
    """The ``lungcad train unet`` model in ``model_dir`` (loaded once per process), or None."""
    if model_dir is None:
        return None
    if model_dir not in _DETECTORS:
        from lungcad.pipeline.detector import CandidateDetector

        _DETECTORS[model_dir] = CandidateDetector.load(model_dir)
    return _DETECTORS[model_dir]


def fpr_points(config: FprTrainConfig, phantom, unet: pd.DataFrame | None, seed: int) -> pd.DataFrame:
    """The FPR's labelled points of a phantom: its candidate points (class given) and the U-Net's candidates ``unet``
    (``source`` unet/blob, labelled against its nodules; ambiguous ones left out): (seriesuid, coordX..Z, label,
    source)."""
    frames = [phantom_candidates(phantom)]
    if unet is not None and len(unet):
        frames.append(unet[["seriesuid", *XYZ, "source"]].assign(**{"class": np.nan}))
    annotations, excluded = phantom_tables(phantom)
    return label_candidates(pd.concat(frames, ignore_index=True), annotations, excluded, config.sampling)


@dataclass(frozen=True)
class PatchMaker:
    """Phantom ``(synth_seed, index)`` -> ``per_phantom`` augmented patch examples (picklable: runs in workers).

    Attributes:
        synth: the :class:`lungcad.synth.SynthConfig`; size: the phantoms' matrix.
        config: the FPR's (or a classifier's) training config.
        per_phantom: examples per phantom; seed: the training seed.
        points: ``(config, phantom, unet candidates or None, seed) -> labelled points`` (seriesuid, coordX..Z mm,
            label, optional source and diameter_mm): :func:`fpr_points`, or a classifier's.
        unet: a U-Net model directory whose candidates are added (:func:`fpr_points`), or None.
    """

    synth: object
    size: int
    config: FprTrainConfig
    per_phantom: int
    seed: int
    points: Callable
    unet: str | None = None

    def labelled(self, synth_seed: int, index: int, rng):
        """(phantom, its labelled points, the U-Net's candidates or None)."""
        from lungcad.synth import make_phantom

        phantom = make_phantom(synth_seed, index, size=self.size, config=self.synth)
        detector = unet_detector(self.unet)
        unet = detector.detect(phantom.scan) if detector is not None else None
        table = self.points(self.config, phantom, unet, int(rng.integers(2**31)))
        return phantom, table.reset_index(drop=True), unet

    def __call__(self, synth_seed: int, index: int, validation: bool = False):
        """Training: :class:`Examples` with x (K, *model input), y (K, 1), w (K,). Validation: a dict of the centred
        patches (float16), their labels, and (with a U-Net) the marks for ``val_cpm``."""
        start = time.perf_counter()
        rng = np.random.default_rng([self.seed, synth_seed, index])
        phantom, table, unet = self.labelled(synth_seed, index, rng)
        patches, sampling = self.config.scorer.patches, self.config.sampling
        size, dims = patches.size, 3 if patches.mode == "3d" else 2
        if validation:
            return self.validation_part(phantom, table, unet)
        picks = draw_rows(table, self.per_phantom, sampling.positive_fraction, sampling.hard_negative_fraction, rng)
        unique, where = np.unique(picks, return_inverse=True)
        cut = cut_patches(phantom.scan, table.iloc[unique], patches, sampling.augment_margin).patches
        x = np.stack([augment(cut[j], size, dims, sampling, rng) for j in where]).astype(np.float32)
        labels = table.label.to_numpy(np.float32)[picks]
        w = np.ones(len(picks), np.float32)
        return Examples((x, labels[:, None], w), time.perf_counter() - start, int(labels.sum()))

    def validation_part(self, phantom, table: pd.DataFrame, unet: pd.DataFrame | None) -> dict:
        """A validation phantom's centred patches (float16) and labels, and its U-Net marks (rows and patches, the
        blob filter's left out as :func:`lungcad.train.fpr.train.validation_froc` does) with its truth tables."""
        patches = self.config.scorer.patches
        size, dims = patches.size, 3 if patches.mode == "3d" else 2
        cut = cut_patches(phantom.scan, table, patches, self.config.sampling.augment_margin).patches
        part = {"x": center_crop(cut, size, dims).astype(np.float16), "labels": table.label.to_numpy(np.int8)}
        if unet is not None:
            rows = unet[unet["source"] != "blob"].reset_index(drop=True) if "source" in unet.columns else unet
            marks = extract_patches(phantom.scan, rows[XYZ].to_numpy(float), patches, table_spacing(rows, patches))
            part |= {"rows": rows, "marks": marks.astype(np.float16), "truth": phantom_tables(phantom)}
        return part


def draw_rows(table: pd.DataFrame, count: int, positive_fraction: float, hard_fraction: float, rng) -> np.ndarray:
    """``count`` row numbers of a labelled table: a positive with probability ``positive_fraction`` (when there is
    one), else a negative: one of the U-Net's (:func:`lungcad.train.fpr.data.hard_rows`) with probability
    ``hard_fraction`` (when there is one), else any."""
    labels = table.label.to_numpy()
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    hard = np.flatnonzero((labels == 0) & hard_rows(table))
    if len(neg) == 0:
        neg = pos
    out = np.empty(count, dtype=int)
    for k in range(count):
        if len(pos) and rng.random() < positive_fraction:
            pool = pos
        else:
            pool = hard if len(hard) and rng.random() < hard_fraction else neg
        out[k] = pool[rng.integers(len(pool))]
    return out


def signature(config: FprTrainConfig):
    """The ``tf.TensorSpec`` of one patch example (x, y, w)."""
    import tensorflow as tf

    model = config.scorer.model
    shape = (model.patch_size,) * model.dims + (model.channels,)
    return (tf.TensorSpec(shape, tf.float32), tf.TensorSpec((1,), tf.float32), tf.TensorSpec((), tf.float32))


def validation_marks(parts: list[dict]) -> ValidationMarks | None:
    """The validation phantoms' U-Net marks for ``val_cpm`` (None without a U-Net or nodules)."""
    parts = [p for p in parts if "rows" in p and len(p["rows"])]
    if not parts:
        return None
    annotations = pd.concat([p["truth"][0] for p in parts], ignore_index=True)
    excluded = pd.concat([p["truth"][1] for p in parts], ignore_index=True)
    if annotations.empty:
        return None
    rows = pd.concat([p["rows"] for p in parts], ignore_index=True)
    scans = sorted(set(rows.seriesuid))
    return ValidationMarks(rows, np.concatenate([p["marks"] for p in parts]), annotations, excluded, scans)


def train_patch_synth(
    source: SynthSource,
    out_dir: str | Path,
    config: FprTrainConfig,
    points: Callable,
    *,
    unet: str | Path | None = None,
    info: dict | None = None,
    resume: bool = False,
    strategy=None,
    init: str | Path | None = None,
    finalize=None,
) -> FitResult:
    """Train a WideResNet patch classifier on phantoms made on the fly (``source``) at the ``points`` of each (see
    :class:`PatchMaker`) into the model directory ``out_dir``; the synthetic counterpart of
    :func:`lungcad.train.fpr.train.train_patch_classifier` (same validation, ``finalize`` and outputs)."""
    out = Path(out_dir)
    unet = str(unet) if unet else None
    maker = PatchMaker(
        source.synth_config(), source.size, config, source.patches_per_phantom, config.train.seed, points, unet
    )
    stream = ExampleStream(maker, source, config.train.steps_per_epoch, config.train.seed, signature(config))
    try:
        start = time.perf_counter()
        val = stream.validation()
        log.info("%d validation phantoms made in %.1f s", len(val), time.perf_counter() - start)
        val_x = np.concatenate([p["x"] for p in val]).astype(np.float32)
        labels = np.concatenate([p["labels"] for p in val])
        cpm = validation_marks(val)
        task = Task(
            build_model=lambda: initial_wideresnet(config.scorer, init),
            loss=patch_loss,
            dataset=None,
            validate=patch_validator(config, val_x, labels, cpm) if len(labels) else None,
            epoch_dataset=stream.epoch_dataset,
            data_stats=stream.stats,
        )
        result = fit(task, monitored_loop(config, cpm), out, strategy=strategy, resume=resume)
    finally:
        stream.close()
    info = {
        "data": f"synth:{source.config}",
        "synth": source.info(),
        **(info or {}),
        "validation_candidates": {"positive": int(labels.sum()), "total": len(labels)},
        "speed": speed_summary(result.history),
        "init": str(init) if init else None,
    }
    finish_patch_classifier(result, out, config, info, finalize, cpm)
    return result


def train_fpr_synth(
    source: SynthSource,
    out_dir: str | Path,
    config: FprTrainConfig,
    *,
    unet: str | Path | None = None,
    resume: bool = False,
    strategy=None,
    init: str | Path | None = None,
) -> FitResult:
    """``lungcad train fpr --synth``: the FPR on phantoms made on the fly, with the U-Net ``unet``'s candidates on
    each as hard negatives (and, on the validation phantoms, for ``val_cpm`` and the fusion weight's choice)."""

    def fusion(scorer: PatchScorer, marks: ValidationMarks | None):
        scorer, record = choose_fusion(marks, scorer, config.unet_weights)
        return scorer, {"fusion": record}

    return train_patch_synth(
        source,
        out_dir,
        config,
        fpr_points,
        unet=unet,
        info={"unet": str(unet) if unet else None},
        resume=resume,
        strategy=strategy,
        init=init,
        finalize=fusion,
    )
