"""U-Net inference on a preprocessed volume: batched 2.5-D slice inference restricted to the lungs.

Only slices that contain lung are run, on the lung bounding box the preprocessing cropped to (plus its
margin), padded to a multiple of the U-Net's downsampling factor: nothing is spent outside the lungs.
The model is called through one ``tf.function`` (``model.predict`` has a large per-call overhead).
The whole candidate stage (preprocess -> U-Net -> merge -> blobs) is composed by
:class:`lungcad.pipeline.detector.CandidateDetector`.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from scipy import ndimage

from lungcad.candidates.unet import UNetConfig
from lungcad.errors import ConfigError


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
