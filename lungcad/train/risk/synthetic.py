"""``lungcad train classifier --synth CONFIG``: a nodule classifier on phantoms made on the fly.

Each phantom's nodules are labelled by the config's target as a ``nodules.csv`` would be
(:func:`lungcad.train.risk.classifiers.label_nodules`: malignant, or lobulated/spiculated), with
``non_nodules_per_scan`` of its class-0 candidate points as negatives
(:func:`lungcad.train.risk.classifiers.training_table`); the patches are drawn, cut and augmented by
:class:`lungcad.train.fpr.synthetic.PatchMaker`. Malignant nodules are rare in ``configs/synth.yaml``'s phantoms:
``--synth synth_malignancy`` (5-7 nodules per scan, more of them large, lobulated or spiculated) gives more positives
per phantom.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lungcad.train.fpr.synthetic import train_patch_synth
from lungcad.train.loop import FitResult
from lungcad.train.risk.classifiers import ClassifierTrainConfig, label_nodules, training_table
from lungcad.train.synthetic import SynthSource, phantom_candidates, phantom_nodules


def classifier_points(config: ClassifierTrainConfig, phantom, unet, seed: int) -> pd.DataFrame:
    """A phantom's labelled points for a nodule classifier: its usable nodules (label from the target column, once
    per diameter jitter factor with size-scaled patches) and ``non_nodules_per_scan`` seeded class-0 candidate
    points; with no usable nodule, that many class-0 points alone. ``unet`` is not used."""
    nodules = label_nodules(phantom_nodules(phantom), config)
    candidates = phantom_candidates(phantom)
    jitter = config.diameter_jitter if config.scorer.patches.diameters_across > 0 else (1.0,)
    table = training_table(
        nodules,
        candidates,
        config.non_nodules_per_scan,
        seed,
        jitter=jitter,
        unknown_diameter_mm=config.sampling.unknown_diameter_mm,
    )
    if table.empty:  # no usable nodule: a few non-nodules keep every phantom's patch count
        negatives = candidates[candidates["class"] == 0].head(max(config.non_nodules_per_scan, 1))
        table = negatives[["seriesuid", "coordX", "coordY", "coordZ"]].assign(
            label=0, diameter_mm=config.sampling.unknown_diameter_mm
        )
    return table


def train_classifier_synth(
    source: SynthSource,
    out_dir: str | Path,
    config: ClassifierTrainConfig,
    *,
    resume: bool = False,
    strategy=None,
    init: str | Path | None = None,
) -> FitResult:
    """``lungcad train classifier --synth``: a nodule classifier on phantoms made on the fly (``source``); each
    epoch reports ``val_auc`` (positives vs the rest) on the fixed validation phantoms."""
    info = {"target": config.target}
    return train_patch_synth(
        source, out_dir, config, classifier_points, info=info, resume=resume, strategy=strategy, init=init
    )
