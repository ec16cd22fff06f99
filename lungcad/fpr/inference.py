"""The patch classifier at inference: a trained WideResNet scores candidates of a scan.

One scorer serves the false-positive reducer (``lungcad train fpr``) and the nodule classifiers the risk model uses
(malignancy, shape: ``lungcad train classifier``): each is a model directory holding ``model.keras`` and ``fpr.yaml``
(:class:`ScorerConfig`). Patches are cut around world (mm) centres by :func:`lungcad.patches.extract_patches`, scored in
``test_time_transforms`` in-plane views (rotations, mirrors: the training augmentation's) whose probabilities are
averaged; the FPR's probability is fused with the U-Net's by :func:`lungcad.fpr.fusion.fuse`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from lungcad.fpr.fusion import check_unet_weight, fuse
from lungcad.fpr.wideresnet import WRNConfig
from lungcad.modeldir import CONFIG_FILES, inference_graph, load_model_dir, mixed_precision_model, save_model_dir
from lungcad.modeldir import check_model_dir as check_dir
from lungcad.patches import PatchConfig, candidate_spacing, extract_patches
from lungcad.scan import CTScan

FPR_FILE = CONFIG_FILES["fpr"]


def check_patches_fit_model(patches: PatchConfig, model: WRNConfig) -> None:
    """ValueError unless the WideResNet's input (dims, side, channels) is what ``patches`` produces."""
    dims = 3 if patches.mode == "3d" else 2
    found = (model.dims, model.patch_size, model.channels)
    if found != (dims, patches.size, patches.channels):
        raise ValueError(
            f"model (dims, patch_size, channels) {found} does not fit patches.mode {patches.mode!r} of size "
            f"{patches.size}: expected {(dims, patches.size, patches.channels)}"
        )


#: Allowed ``ScorerConfig.test_time_transforms``.
TEST_TIME_TRANSFORMS = (1, 4, 8)


def in_plane_views(patches: np.ndarray, count: int, dims: int) -> np.ndarray:
    """``count`` in-plane views of ``patches`` (N, S, S, C) or (N, S, S, S, 1), stacked view-major (count*N, ...):
    rotations by k*90 degrees (k = 0..3) in the last two spatial axes, then (count 8) the same mirrored along the
    first of them. View 0 is ``patches`` itself."""
    axes = (dims - 1, dims)
    views = [np.rot90(patches, k, axes=axes) for k in range(min(count, 4))]
    if count == 8:
        views += [np.flip(v, axes[0]) for v in views]
    return np.ascontiguousarray(np.concatenate(views))


@dataclass(frozen=True)
class ScorerConfig:
    """What scoring needs besides the weights (``fpr.yaml`` in a model directory).

    Attributes:
        patches, model: the patch settings and the network they fit.
        batch_size: patches per inference call.
        test_time_transforms: how many in-plane views of each patch are scored and averaged: 1 (the patch as
            cut), 4 (its 90-degree rotations) or 8 (those and their mirror images), as in training's
            augmentation; each costs one more network pass. Inference only: validation during training scores
            each patch once.
        unet_weight: weight ``w`` of the U-Net's mean probability in the stage's probability,
            ``fpr ** (1 - w) * unet ** w`` (:mod:`lungcad.fpr.fusion`); 0 = the FPR alone.
    """

    patches: PatchConfig
    model: WRNConfig
    batch_size: int
    test_time_transforms: int = 1
    unet_weight: float = 0.0

    def __post_init__(self) -> None:
        check_patches_fit_model(self.patches, self.model)
        check_unet_weight(self.unet_weight)
        if self.test_time_transforms not in TEST_TIME_TRANSFORMS:
            raise ValueError(
                f"test_time_transforms {self.test_time_transforms}: expected one of {list(TEST_TIME_TRANSFORMS)}"
            )


class PatchScorer:
    """A trained WideResNet: ``score(scan, candidates)`` gives each candidate's nodule probability."""

    def __init__(self, model: keras.Model, config: ScorerConfig) -> None:
        self.model = model
        self.config = config
        # One graph for every batch size: 30% less time than eager calls (2.2 vs 3.2 s for 240 views of
        # WideResNet-16-4 on 2 cores), the same scores.
        self.infer = inference_graph(model, [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)])

    @classmethod
    def load(cls, model_dir: str | Path, policy: str = "float32") -> PatchScorer:
        """Load a directory written by ``lungcad train fpr``; the network computes under the Keras dtype
        ``policy`` ("float32", or "mixed_bfloat16" on CPUs with bfloat16 units: 2.9x faster with AMX)."""
        model, config = load_model_dir(model_dir, ScorerConfig, FPR_FILE, "fpr")
        return cls(mixed_precision_model(model, policy), config)

    def save(self, model_dir: str | Path) -> Path:
        """Write ``model.keras`` and ``fpr.yaml`` into ``model_dir``."""
        return save_model_dir(self.model, self.config, model_dir, FPR_FILE)

    def score_patches(self, patches: np.ndarray) -> np.ndarray:
        """Nodule probability (N,) of ready patches (N, ...) in [0, 1], averaged over the configured
        ``test_time_transforms`` views of each patch."""
        count, n = self.config.test_time_transforms, len(patches)
        views = in_plane_views(patches, count, self.config.model.dims) if count > 1 else patches
        out = [
            np.asarray(self.infer(tf.constant(views[i : i + self.config.batch_size], tf.float32)))[:, 0]
            for i in range(0, len(views), self.config.batch_size)
        ]
        if not out:
            return np.zeros(0, np.float32)
        return np.concatenate(out).reshape(count, n).mean(axis=0).astype(np.float32)

    def fuse(self, fpr: np.ndarray, unet: np.ndarray | None) -> np.ndarray:
        """The stage's probability (N,) from FPR probabilities (N,) and the candidates' mean U-Net probabilities
        (N,; None or NaN where unknown), with the model's ``unet_weight`` (:func:`lungcad.fpr.fusion.fuse`)."""
        return fuse(fpr, unet, self.config.unet_weight)

    def score(self, scan: CTScan, centres_xyz: np.ndarray, diameters_mm: np.ndarray | None = None) -> np.ndarray:
        """Nodule probability (N,) of candidates at world centres (N, 3) mm of ``scan``; ``diameters_mm`` (N,)
        are needed by size-scaled patches (``patches.diameters_across > 0``)."""
        if len(centres_xyz) == 0:
            return np.zeros(0, np.float32)
        spacing = candidate_spacing(self.config.patches, diameters_mm)
        return self.score_patches(extract_patches(scan, np.asarray(centres_xyz, float), self.config.patches, spacing))


def check_model_dir(model_dir: str | Path) -> Path:
    """``model_dir`` if it holds an FPR model (``model.keras`` + ``fpr.yaml``), else ConfigError."""
    return check_dir(model_dir, FPR_FILE, "fpr")
