"""Hard-positive mining for fine-tuning the U-Net: draw the nodules the starting model misses more often.

The bundled U-Net finds only about 90% of its own *training* nodules (ground-glass ones 60%, small nodules
touching vessels or the wall 50-70%): the Dice + BCE loss gives a 4 mm nodule a few dozen pixels of a
9216-pixel patch, so the rare, faint kinds are under-fitted, not over-fitted. With
``sampling.positive_miss_boost`` and ``lungcad train unet --init MODEL_DIR``, every training nodule is scored
once by the starting model (whole axial slices, as ``detect`` runs it) and its chance of being drawn as a
positive is multiplied by ``1 + boost * (1 - peak)``, ``peak`` the model's highest probability on it.
The table of peaks and weights is written beside the model (``mined_positives.csv``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from lungcad.candidates.inference import predict_volume
from lungcad.candidates.unet import UNetConfig
from lungcad.fileio import write_atomic
from lungcad.train.candidates.data import TrainingScan

log = logging.getLogger(__name__)

MINED_FILE = "mined_positives.csv"


def nodule_peaks(infer, scan: TrainingScan, model_config: UNetConfig, batch_size: int) -> np.ndarray:
    """(n_nodules,) the highest U-Net probability (0-1) on each nodule of ``scan``.

    Args:
        infer: the U-Net as a callable on a (B, Y, X, C) float32 batch (as in :func:`predict_volume`).
        scan: its ``image`` (Z, Y, X) normalised cache and ``nodules`` (per nodule, its (N_i, 3) z, y, x voxels).
    """
    if not scan.nodules:
        return np.zeros(0)
    slices = np.zeros(scan.image.shape, dtype=bool)
    for voxels in scan.nodules:
        slices[np.unique(voxels[:, 0]), 0, 0] = True  # only these axial slices are run
    prob = predict_volume(infer, scan.image, slices, model_config, batch_size)
    return np.array([float(prob[tuple(v.T)].max()) if len(v) else 0.0 for v in scan.nodules])


def mine_hard_positives(
    scans: list[TrainingScan], infer, model_config: UNetConfig, boost: float, batch_size: int = 8
) -> pd.DataFrame:
    """Multiply each scan's ``nodule_weights`` by ``1 + boost * (1 - peak)`` in place; returns one row per
    nodule: ``seriesuid, nodule, voxel_z, voxel_y, voxel_x`` (its mean voxel on the cache grid), ``peak``
    and the new ``weight``."""
    rows = []
    for scan in scans:
        peaks = nodule_peaks(infer, scan, model_config, batch_size)
        scan.nodule_weights = scan.nodule_weights * (1.0 + boost * (1.0 - peaks))
        for j, (voxels, peak) in enumerate(zip(scan.nodules, peaks, strict=True)):
            z, y, x = voxels.mean(axis=0) if len(voxels) else (np.nan,) * 3
            rows.append((scan.id, j, z, y, x, peak, scan.nodule_weights[j]))
    table = pd.DataFrame(rows, columns=["seriesuid", "nodule", "voxel_z", "voxel_y", "voxel_x", "peak", "weight"])
    if len(table):
        log.info(
            "hard-positive mining: %d of %d training nodules get < 0.5 from the starting model (boost %.1f)",
            int((table.peak < 0.5).sum()), len(table), boost,
        )  # fmt: skip
    return table


def write_mined(table: pd.DataFrame, out_dir: str | Path) -> Path:
    """``OUT/mined_positives.csv`` (atomic)."""
    return write_atomic(Path(out_dir) / MINED_FILE, lambda tmp: table.to_csv(tmp, index=False))
