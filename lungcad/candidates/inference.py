"""U-Net inference on a scan: preprocess, batched slice inference restricted to the lungs, merge.

Only slices that contain lung are run, on the lung bounding box the preprocessing cropped to (plus its
margin), padded to a multiple of the U-Net's downsampling factor: nothing is spent outside the lungs.
The model is called through one ``tf.function`` (``model.predict`` has a large per-call overhead).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from scipy import ndimage

from lungcad.candidates.blobs import BlobConfig, blob_candidates
from lungcad.candidates.unet import UNetConfig
from lungcad.errors import ConfigError
from lungcad.merge import MergeConfig, merge_candidates
from lungcad.preprocess.config import PreprocessConfig
from lungcad.preprocess.pipeline import PreprocessedScan, preprocess_scan
from lungcad.scan import CTScan
from lungcad.train.modeldir import check_model_dir as check_dir
from lungcad.train.modeldir import load_model_dir, save_model_dir

log = logging.getLogger(__name__)

#: Inference config of a U-Net model directory (beside model.keras).
DETECTOR_FILE = "detector.yaml"


@dataclass(frozen=True)
class DetectorConfig:
    """What inference needs besides the weights (``detector.yaml`` in a model directory).

    Attributes:
        preprocess: the grid and HU window the U-Net was trained on.
        model: the U-Net's hyper-parameters (context slices, depth).
        merge: probability map -> candidates.
        batch_size: slices per inference call.
        lung_margin_mm: probabilities farther than this outside the lung mask are zeroed.
        test_time_flips: in-plane axes (``"x"``, ``"y"``) along which the slices are also mirrored and the U-Net's
            mirrored-back outputs averaged in (test-time augmentation; each costs one more U-Net pass).
        blobs: if set, blob-filter candidates (:mod:`lungcad.candidates.blobs`) away from the U-Net's are added
            after them (``source`` "blob", ``probability`` the U-Net's at the blob, ranked by ``blob_response``):
            a second detector for small nodules the U-Net misses, for the FPR to score.
    """

    preprocess: PreprocessConfig
    model: UNetConfig
    merge: MergeConfig
    batch_size: int
    lung_margin_mm: float
    test_time_flips: tuple[str, ...] = ()
    blobs: BlobConfig | None = None


class CandidateDetector:
    """A trained U-Net with its detector config; ``detect(scan)`` gives the candidate table."""

    def __init__(self, model: keras.Model, config: DetectorConfig, source: Path | None = None) -> None:
        self.model = model
        self.config = config
        self.source = source
        channels = config.model.channels
        self.infer = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec((None, None, None, channels), tf.float32)],
        )

    @classmethod
    def load(cls, model_dir: str | Path) -> CandidateDetector:
        """Load ``model.keras`` and ``detector.yaml`` from a directory written by ``lungcad train unet``."""
        model, config = load_model_dir(model_dir, DetectorConfig, DETECTOR_FILE, "unet")
        return cls(model, config, Path(model_dir))

    def save(self, model_dir: str | Path) -> Path:
        """Write ``model.keras`` and ``detector.yaml`` into ``model_dir``."""
        return save_model_dir(self.model, self.config, model_dir, DETECTOR_FILE)

    def probability(self, image: np.ndarray, lung_mask: np.ndarray) -> np.ndarray:
        """Nodule probability (Z, Y, X) float32 for a normalised cached volume; 0 on slices without lung."""
        return predict_volume(
            self.infer, image, lung_mask, self.config.model, self.config.batch_size, self.config.test_time_flips
        )

    def detect(self, scan: CTScan, timings: dict[str, float] | None = None) -> pd.DataFrame:
        """Candidates of ``scan`` in world mm (columns of :func:`lungcad.merge.z_merge` + ``seriesuid``)."""
        return self.detect_and_preprocess(scan, timings)[0]

    def detect_and_preprocess(
        self, scan: CTScan, timings: dict[str, float] | None = None
    ) -> tuple[pd.DataFrame, PreprocessedScan]:
        """:meth:`detect`, also returning the preprocessed scan (resampled grid, lung mask) it worked on."""
        timings = {} if timings is None else timings
        t0 = time.perf_counter()
        pre = preprocess_scan(scan, self.config.preprocess)
        t1 = time.perf_counter()
        table = self.detect_preprocessed(pre)
        timings.update(preprocess_s=t1 - t0, unet_and_merge_s=time.perf_counter() - t1)
        return table, pre

    def lung_probability(self, pre: PreprocessedScan) -> np.ndarray:
        """Nodule probability (Z, Y, X) of a preprocessed scan, zero farther than ``lung_margin_mm`` from the lungs:
        what :func:`lungcad.merge.merge_candidates` receives."""
        image, lung = np.asarray(pre.image), np.asarray(pre.lung_mask)
        prob = self.probability(image, lung)
        prob *= near_lung(lung, pre.scan.spacing, self.config.lung_margin_mm)
        return prob

    def detect_preprocessed(self, pre: PreprocessedScan) -> pd.DataFrame:
        """Candidates from an already preprocessed scan (e.g. the training cache): the U-Net's (``source``
        "unet"), then the blob filter's if configured (``source`` "blob")."""
        prob = self.lung_probability(pre)
        table = merge_candidates(prob, pre.scan, self.config.merge).assign(source="unet")
        if self.config.blobs is not None:
            table = pd.concat([table, self.blob_table(pre, prob, table)], ignore_index=True)
        table.insert(0, "seriesuid", pre.scan.id)
        return table

    def blob_table(self, pre: PreprocessedScan, prob: np.ndarray, unet: pd.DataFrame) -> pd.DataFrame:
        """Blob-filter candidates away from the U-Net's ``unet`` table, with the U-Net's probability at each."""
        xyz = unet[["coordX", "coordY", "coordZ"]].to_numpy(float)
        blobs = blob_candidates(pre.scan.array, pre.scan, np.asarray(pre.lung_mask), self.config.blobs, xyz)
        at = tuple(blobs[c].to_numpy(int) for c in ("voxel_z", "voxel_y", "voxel_x"))
        return blobs.assign(probability=prob[at].astype(float), source="blob")


def check_model_dir(model_dir: str | Path) -> Path:
    """``model_dir`` if it holds a U-Net model (``model.keras`` + ``detector.yaml``), else ConfigError."""
    return check_dir(model_dir, DETECTOR_FILE, "unet")


def near_lung(lung: np.ndarray, spacing_zyx, margin_mm: float) -> np.ndarray:
    """Bool mask of voxels within ``margin_mm`` (in-plane) of the lung mask."""
    if margin_mm <= 0:
        return lung
    iterations = max(1, int(round(margin_mm / min(spacing_zyx[1:]))))
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)
    return ndimage.binary_dilation(lung, structure, iterations=iterations)


#: Batch axis of an in-plane flip of a (B, Y, X, C) input.
FLIP_AXES = {"y": 1, "x": 2}


def predict_volume(
    infer,
    image: np.ndarray,
    lung: np.ndarray,
    model_config: UNetConfig,
    batch_size: int,
    flips: tuple[str, ...] = (),
) -> np.ndarray:
    """Run ``infer`` over every slice with lung, ``batch_size`` slices at a time, with 2.5-D context; ``flips``
    (``"x"``, ``"y"``) average in the outputs of mirrored slices, mirrored back."""
    unknown = set(flips) - set(FLIP_AXES)
    if unknown:
        raise ConfigError(f"test_time_flips {sorted(unknown)}: expected in-plane axes among {sorted(FLIP_AXES)}")
    nz, ny, nx = image.shape
    multiple = 2 ** (model_config.depth - 1)
    py, px = (-ny) % multiple, (-nx) % multiple
    context = model_config.context_slices
    prob = np.zeros(image.shape, np.float32)
    zs = np.flatnonzero(lung.reshape(nz, -1).any(axis=1))
    fill = float(np.min(image)) if image.size else 0.0
    for start in range(0, len(zs), batch_size):
        chunk = zs[start : start + batch_size]
        idx = np.clip(chunk[:, None] + np.arange(-context, context + 1)[None, :], 0, nz - 1)
        x = np.moveaxis(image[idx].astype(np.float32), 1, -1)  # (B, Y, X, C)
        pb = batch_size - len(chunk)  # a full last batch keeps one input shape per scan
        if py or px or pb:
            x = np.pad(x, ((0, pb), (0, py), (0, px), (0, 0)), constant_values=fill)
        out = np.asarray(infer(tf.constant(x)))
        for axis in (FLIP_AXES[f] for f in flips):
            out = out + np.flip(np.asarray(infer(tf.constant(np.flip(x, axis).copy()))), axis)
        prob[chunk] = out[: len(chunk), :ny, :nx, 0] / (1 + len(flips))
    return prob
