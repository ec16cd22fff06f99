"""``lungcad train unet``: train the candidate U-Net on LUNA16-layout data (real or ``lungcad synth``).

Steps: every scan under ``data`` is preprocessed into a cache (resumable); scans are split into training
and held-out validation scans (seeded); patches are sampled as :mod:`lungcad.train.candidates.data` says; the
shared loop (:func:`lungcad.train.loop.fit`) trains with Dice + BCE. After each epoch the model is
validated on fixed held-out patches (loss, Dice) and, on up to ``recall_scans`` held-out scans, by what
matters downstream: the fraction of nodules hit by the top ``recall_at`` candidates (``val_recall``)
and the candidates per scan. The model directory receives ``model.keras`` (best epoch) and
``detector.yaml`` (what inference needs) beside the loop's outputs and ``train_config.yaml``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

from lungcad.candidates.unet import UNetConfig, build_unet, transfer_weights, widens_context
from lungcad.errors import ConfigError, DataLayoutError
from lungcad.evaluate.tables import read_annotation_tables
from lungcad.pipeline.detector import DETECTOR_FILE, CandidateDetector, DetectorConfig
from lungcad.preprocess.config import PreprocessConfig
from lungcad.preprocess.pipeline import cache_folder, load_preprocessed, preprocess_scans
from lungcad.train.candidates.data import SamplingConfig, dice_bce_loss, make_dataset, sample_patch, training_scan
from lungcad.train.candidates.mining import mine_hard_positives, write_mined
from lungcad.train.loop import FitResult, LoopConfig, Task, fit
from lungcad.train.modeldir import finish_run, start_from
from lungcad.train.split import split_ids

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UNetTrainConfig:
    """``configs/unet.yaml``: the detector a training produces, and how it is trained.

    Attributes:
        detector: what the model directory's ``detector.yaml`` receives (grid, U-Net, merge, inference settings);
            its merge also counts the validation recall.
        sampling: training patches; train: the loop.
        pos_weight: BCE weight of nodule pixels.
        validation_fraction: share of scans held out (seeded by ``train.seed``).
        validation_patches: fixed held-out patches scored each epoch (loss, Dice).
        recall_scans, recall_at: the validation recall: nodules hit by each of up to ``recall_scans`` held-out
            scans' top ``recall_at`` candidates (the detector's merge, without test-time flips or blobs).
    """

    detector: DetectorConfig
    sampling: SamplingConfig
    train: LoopConfig
    pos_weight: float
    validation_fraction: float
    validation_patches: int
    recall_scans: int
    recall_at: int


def build_cache(data: Path, cache: Path, config: PreprocessConfig, workers: int = 1) -> list[str]:
    """Preprocess every scan under ``data`` into ``cache`` (skipping finished ones); returns the usable ids."""
    refs, summary = preprocess_scans([data], cache, config, workers=workers)
    log.info("cache: %s", summary.line())
    return [r.id for r in refs if r.id not in summary.failed]


def data_fingerprint(cache: Path, ids: list[str]) -> str:
    """Hash of the cached grids' geometry files: changes when the data or its preprocessing changes."""
    digest = hashlib.sha256()
    for sid in sorted(ids):
        digest.update((cache / sid / "geometry.json").read_bytes())
    return digest.hexdigest()[:16]


def candidate_recall(
    tables: list[pd.DataFrame], annotations: pd.DataFrame, ids: list[str], top: int | None
) -> tuple[float, float]:
    """Fraction of the scans' annotated nodules hit (LUNA16 rule, :mod:`lungcad.evaluate`) by one of each scan's
    top-``top`` candidates (all of them when ``top`` is None); and the mean number of candidates per scan."""
    from lungcad.evaluate import compute_froc

    per_scan = float(np.mean([len(t) for t in tables])) if tables else 0.0
    nodules = annotations[annotations.seriesuid.isin(ids)]
    if nodules.empty:
        return float("nan"), per_scan
    marks = pd.concat([t if top is None else t.head(top) for t in tables], ignore_index=True)
    result = compute_froc(nodules, marks[["seriesuid", "coordX", "coordY", "coordZ", "probability"]], ids)
    return result.n_detected / result.n_nodules, per_scan


def make_validator(config: UNetTrainConfig, val_scans, val_pre, annotations):
    """Validation callback: fixed held-out patches (loss, Dice) and held-out scan recall."""
    rng = np.random.default_rng(config.train.seed + 1)
    kinds = ["pos", "hard", "neg"]
    samples = (
        [
            sample_patch(
                val_scans[i % len(val_scans)],
                kinds[i % 3],
                config.detector.model.context_slices,
                replace(
                    config.sampling,
                    flip=False,
                    rotation_deg=0.0,
                    scale_range=(1.0, 1.0),
                    hu_offset=0.0,
                    contrast_range=(1.0, 1.0),
                    noise_hu=0.0,
                    kernel_probability=0.0,
                ),
                rng,
            )
            for i in range(config.validation_patches)
        ]
        if val_scans
        else []
    )
    x, y, w = (np.stack(a) for a in zip(*samples)) if samples else (None, None, None)

    def validate(model) -> dict[str, float]:
        if x is None:
            return {}
        pred = np.asarray(model(x, training=False))
        loss = float(tf.reduce_mean(dice_bce_loss(y, pred, w, config.pos_weight)))
        inter = float(np.sum((pred > 0.5) * y * w))
        dice = 2 * inter / max(float(np.sum((pred > 0.5) * w) + np.sum(y * w)), 1e-6)
        alone = replace(config.detector, test_time_flips=(), blobs=None)  # the network alone
        detector = CandidateDetector(model, alone)
        tables = [detector.detect_preprocessed(pre) for pre in val_pre]
        recall, per_scan = candidate_recall(tables, annotations, [p.scan.id for p in val_pre], config.recall_at)
        return {"val_loss": loss, "val_dice": dice, "val_recall": recall, "val_candidates": per_scan}

    return validate


def initial_unet(config: UNetConfig, init: str | Path | None = None):
    """A new U-Net, or one starting from the weights of the U-Net model directory ``init`` (fine-tuning; its
    ``detector.yaml`` must describe the same architecture, or one with fewer context slices: see
    :func:`lungcad.candidates.unet.transfer_weights`)."""
    model = build_unet(config)
    if init is None:
        return model
    source = CandidateDetector.load(init)
    found = source.config.model
    if widens_context(found, config):  # the added slices start at zero
        transfer_weights(model, source.model, found, config)
        return model
    return start_from(model, source.model, "model settings", found, config, Path(init) / DETECTOR_FILE)


def check_mining(init: str | Path | None, config: UNetTrainConfig) -> None:
    """Hard-positive mining needs a starting model: fail before any preprocessing when it has none."""
    boost = config.sampling.positive_miss_boost
    if boost > 0 and init is None:
        raise ConfigError(
            f"sampling.positive_miss_boost {boost} mines the nodules a starting model misses, but no model was given",
            fix="add --init MODEL_DIR (e.g. lungcad/models/unet), also when resuming, or set the boost to 0",
        )


def mine_from(init: str | Path | None, train_scans: list, config: UNetTrainConfig) -> pd.DataFrame | None:
    """Hard-positive mining (``sampling.positive_miss_boost`` > 0) with the starting model ``init`` (present:
    :func:`check_mining` ran first): reweights the training scans' nodules in place
    (:func:`lungcad.train.candidates.mining.mine_hard_positives`); None when off."""
    boost = config.sampling.positive_miss_boost
    if boost <= 0:
        return None
    source = CandidateDetector.load(init)
    return mine_hard_positives(train_scans, source.infer, source.config.model, boost, config.detector.batch_size)


def train_unet(
    data: str | Path,
    out_dir: str | Path,
    config: UNetTrainConfig,
    *,
    cache: str | Path | None = None,
    resume: bool = False,
    strategy=None,
    workers: int = 1,
    init: str | Path | None = None,
) -> FitResult:
    """Train the U-Net on the LUNA16-layout folder ``data``; write the model directory ``out_dir``.

    ``init``: a U-Net model directory whose weights the training starts from (fine-tuning, e.g. the bundled
    model on real data); a resumed run continues from its own checkpoint instead."""
    check_mining(init, config)
    data, out = Path(data), Path(out_dir)
    cache = Path(cache) if cache else out / "cache"
    annotations, excluded = read_annotation_tables(data)
    ids = build_cache(data, cache, config.detector.preprocess, workers)
    if len(ids) < 2:
        raise DataLayoutError(f"{len(ids)} usable scan(s); training needs at least 2", path=data)
    train_ids, val_ids = split_ids(ids, config.validation_fraction, config.train.seed)
    rng = np.random.default_rng(config.train.seed)
    pre = {sid: load_preprocessed(cache_folder(cache, sid)) for sid in ids}
    scans = {sid: training_scan(pre[sid], annotations, excluded, config.sampling, rng) for sid in ids}
    train_scans = [scans[s] for s in train_ids]
    mined = mine_from(init, train_scans, config)
    task = Task(
        build_model=lambda: initial_unet(config.detector.model, init),
        loss=functools.partial(dice_bce_loss, pos_weight=config.pos_weight),
        dataset=lambda batch, seed: make_dataset(
            train_scans, config.detector.model.context_slices, config.sampling, batch, seed
        ),
        validate=make_validator(
            config, [scans[s] for s in val_ids], [pre[s] for s in val_ids[: config.recall_scans]], annotations
        ),
    )
    result = fit(task, config.train, out, strategy=strategy, resume=resume)
    info = {
        "data": str(data),
        "train_scans": train_ids,
        "validation_scans": val_ids,
        "data_fingerprint": data_fingerprint(cache, ids),
        "init": str(init) if init else None,
    }
    finish_run(result, out, config, info)
    if mined is not None:
        write_mined(mined, out)
    CandidateDetector(result.model, config.detector).save(out)
    return result
