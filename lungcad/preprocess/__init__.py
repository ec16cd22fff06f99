"""Stage 2, preprocess: HU windowing/normalisation, resampling with exact geometry, lung segmentation,
crop to the lungs, and an on-disk cache for training (``lungcad preprocess``)."""

from lungcad.preprocess.config import LungMaskConfig, PreprocessConfig, default_config
from lungcad.preprocess.crop import Box, bounding_box, crop_scan
from lungcad.preprocess.intensity import denormalise, window_normalise
from lungcad.preprocess.lungmask import lung_mask
from lungcad.preprocess.pipeline import (
    PreprocessedScan,
    load_preprocessed,
    preprocess_scan,
    save_preprocessed,
)
from lungcad.preprocess.resample import resample_mask, resample_scan

__all__ = [
    "Box",
    "LungMaskConfig",
    "PreprocessConfig",
    "PreprocessedScan",
    "bounding_box",
    "crop_scan",
    "default_config",
    "denormalise",
    "load_preprocessed",
    "lung_mask",
    "preprocess_scan",
    "resample_mask",
    "resample_scan",
    "save_preprocessed",
    "window_normalise",
]
