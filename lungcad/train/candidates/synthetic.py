"""``lungcad train unet --synth CONFIG``: the candidate U-Net trained on phantoms generated on the fly.

Each phantom is preprocessed exactly as ``lungcad detect`` preprocesses a scan
(:func:`lungcad.preprocess.pipeline.preprocess_scan` with the U-Net's grid), its nodules (>= 3 mm) become the
targets and its tiny excluded findings the ignore mask (:func:`lungcad.train.candidates.data.training_scan`), and
``patches_per_phantom`` 2.5-D patches are drawn and augmented as from a cached scan
(:func:`lungcad.train.candidates.data.patch_stream`). The machinery (workers, epochs, seeds) is
:mod:`lungcad.train.synthetic`'s.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path

import numpy as np
import pandas as pd

from lungcad.errors import ConfigError
from lungcad.pipeline.detector import CandidateDetector
from lungcad.preprocess.pipeline import geometry_dict, preprocess_scan
from lungcad.train.candidates.data import dice_bce_loss, patch_stream, training_scan
from lungcad.train.candidates.train import UNetTrainConfig, initial_unet, make_validator
from lungcad.train.loop import FitResult, Task, fit
from lungcad.train.modeldir import finish_run
from lungcad.train.synthetic import Examples, ExampleStream, SynthSource, phantom_tables, speed_summary

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UNetMaker:
    """Phantom ``(synth_seed, index)`` -> ``per_phantom`` U-Net training examples (picklable: runs in workers).

    Attributes:
        synth: the :class:`lungcad.synth.SynthConfig`; size: the phantoms' matrix.
        config: the U-Net's training config (preprocessing, sampling, context slices).
        per_phantom: examples per phantom; seed: the training seed (with ``(synth_seed, index)`` seeds the draws).
    """

    synth: object
    size: int
    config: UNetTrainConfig
    per_phantom: int
    seed: int

    def __call__(self, synth_seed: int, index: int, validation: bool = False):
        """Training: :class:`Examples` with x (K, P, P, 2c+1), y and w (K, P, P, 1). Validation: (the preprocessed
        scan, its :class:`lungcad.train.candidates.data.TrainingScan`, its annotations table)."""
        from lungcad.synth import make_phantom

        start = time.perf_counter()
        phantom = make_phantom(synth_seed, index, size=self.size, config=self.synth)
        pre = preprocess_scan(phantom.scan, self.config.detector.preprocess)
        pre = replace(pre, info=geometry_dict(pre))  # what the training cache holds (its HU window)
        annotations, excluded = phantom_tables(phantom)
        rng = np.random.default_rng([self.seed, synth_seed, index])
        scan = training_scan(pre, annotations, excluded, self.config.sampling, rng)
        if validation:
            return pre, scan, annotations
        stream = patch_stream(
            [scan], self.config.detector.model.context_slices, self.config.sampling, int(rng.integers(2**62))
        )
        x, y, w = (np.stack(a) for a in zip(*islice(stream, self.per_phantom)))
        positives = int((y.reshape(len(y), -1).max(axis=1) > 0).sum())
        return Examples((x, y, w), time.perf_counter() - start, positives)


def signature(config: UNetTrainConfig):
    """The ``tf.TensorSpec`` of one U-Net example (x, y, w)."""
    import tensorflow as tf

    p, channels = config.sampling.patch_size, config.detector.model.channels
    return (
        tf.TensorSpec((p, p, channels), tf.float32),
        tf.TensorSpec((p, p, 1), tf.float32),
        tf.TensorSpec((p, p, 1), tf.float32),
    )


def train_unet_synth(
    source: SynthSource,
    out_dir: str | Path,
    config: UNetTrainConfig,
    *,
    resume: bool = False,
    strategy=None,
    init: str | Path | None = None,
) -> FitResult:
    """Train the U-Net on phantoms generated on the fly (``source``) into the model directory ``out_dir``.

    Validation: ``source.validation_scans`` phantoms (indices 0..n-1, generated at the start): fixed unaugmented
    patches (val_loss, val_dice) and the top-``recall_at`` candidate recall on the first ``recall_scans`` of them.
    ``resume`` continues from ``out_dir/checkpoints`` with the next epoch's phantoms."""
    if config.sampling.positive_miss_boost > 0:
        raise ConfigError(
            "sampling.positive_miss_boost mines the nodules of a fixed training set: not with --synth",
            fix="set it to 0, or train on a written dataset (--data)",
        )
    out = Path(out_dir)
    maker = UNetMaker(source.synth_config(), source.size, config, source.patches_per_phantom, config.train.seed)
    stream = ExampleStream(maker, source, config.train.steps_per_epoch, config.train.seed, signature(config))
    try:
        start = time.perf_counter()
        val = stream.validation()
        log.info("%d validation phantoms made in %.1f s", len(val), time.perf_counter() - start)
        annotations = pd.concat([v[2] for v in val], ignore_index=True)
        task = Task(
            build_model=lambda: initial_unet(config.detector.model, init),
            loss=functools.partial(dice_bce_loss, pos_weight=config.pos_weight),
            dataset=None,
            validate=make_validator(
                config, [v[1] for v in val], [v[0] for v in val[: config.recall_scans]], annotations
            ),
            epoch_dataset=stream.epoch_dataset,
            data_stats=stream.stats,
        )
        result = fit(task, config.train, out, strategy=strategy, resume=resume)
    finally:
        stream.close()
    info = {
        "data": f"synth:{source.config}",
        "synth": source.info(),
        "validation_scans": [v[0].scan.id for v in val],
        "speed": speed_summary(result.history),
        "init": str(init) if init else None,
    }
    finish_run(result, out, config, info)
    CandidateDetector(result.model, config.detector).save(out)
    return result
