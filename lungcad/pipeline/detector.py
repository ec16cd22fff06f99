"""The candidate stage as ``lungcad detect`` runs it: preprocess -> U-Net probability -> merge (-> blob filter).

A U-Net model directory (``lungcad train unet``) holds ``model.keras`` and ``detector.yaml``
(:class:`DetectorConfig`: the preprocessing grid, the U-Net's settings, the merge, inference settings). The stages
themselves live in :mod:`lungcad.preprocess`, :mod:`lungcad.candidates.inference` and :mod:`lungcad.merge`; this
module composes them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from lungcad.candidates.blobs import BlobConfig, blob_candidates
from lungcad.candidates.inference import near_lung, predict_volume
from lungcad.candidates.unet import UNetConfig
from lungcad.merge import MergeConfig, merge_candidates
from lungcad.modeldir import CONFIG_FILES, inference_graph, load_model_dir, mixed_precision_model, save_model_dir
from lungcad.modeldir import check_model_dir as check_dir
from lungcad.pipeline.precision import keras_policy
from lungcad.preprocess.config import PreprocessConfig
from lungcad.preprocess.pipeline import PreprocessedScan, preprocess_scan
from lungcad.scan import CTScan
from lungcad.schema import GRID_ZYX, centres_xyz

#: Inference config of a U-Net model directory (beside model.keras).
DETECTOR_FILE = CONFIG_FILES["unet"]


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
        self.infer = inference_graph(model, [tf.TensorSpec((None, None, None, channels), tf.float32)])

    @classmethod
    def load(cls, model_dir: str | Path, precision: str = "float32") -> CandidateDetector:
        """Load ``model.keras`` and ``detector.yaml`` from a directory written by ``lungcad train unet``; the U-Net
        computes in ``precision`` ("float32" or "bfloat16": :mod:`lungcad.pipeline.precision`)."""
        model, config = load_model_dir(model_dir, DetectorConfig, DETECTOR_FILE, "unet")
        return cls(mixed_precision_model(model, keras_policy(precision)), config, Path(model_dir))

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
        timings["preprocess_s"] = t1 - t0  # each step's time as it ends: a caller may show progress
        table = self.detect_preprocessed(pre)
        timings["unet_and_merge_s"] = time.perf_counter() - t1
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
        xyz = centres_xyz(unet)
        blobs = blob_candidates(pre.scan.array, pre.scan, np.asarray(pre.lung_mask), self.config.blobs, xyz)
        at = tuple(blobs[c].to_numpy(int) for c in GRID_ZYX)
        return blobs.assign(probability=prob[at].astype(float), source="blob")


def check_model_dir(model_dir: str | Path) -> Path:
    """``model_dir`` if it holds a U-Net model (``model.keras`` + ``detector.yaml``), else ConfigError."""
    return check_dir(model_dir, DETECTOR_FILE, "unet")
