"""A second candidate source: multi-scale Hessian "dot" enhancement (Li, Sone & Doi, Med. Phys. 2003).

The U-Net misses small nodules that touch vessels (it gives them ~0.001); a 3-D filter that responds to
blobs and not to tubes or plates finds many of them. At each scale ``sigma`` (mm) the HU volume is smoothed
with a Gaussian, the Hessian's eigenvalues ``l1 <= l2 <= l3`` (HU/mm^2) are computed at every lung voxel, and

    dot = sigma^2 * l3^2 / |l1|   where l1, l2, l3 < 0 (a bright blob: curved down along every axis), else 0

(``l3^2 / |l1|`` is large only when even the weakest curvature is strong: a tube has ``l3 ~ 0``); the response is
the maximum over scales. Local maxima inside the lungs, strongest first, are the candidates, with the diameter
of a ball whose scale-normalised response peaks at the winning scale (``2 * sqrt(3) * sigma``).

Works on the preprocessed grid (``PreprocessedScan``: HU, spacing in mm, lung mask), axis order (z, y, x).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage

from lungcad.scan import CTScan

#: Diameter (mm) of a ball per unit of the scale at which its scale-normalised response peaks.
DIAMETER_PER_SIGMA = 2.0 * np.sqrt(3.0)


@dataclass(frozen=True)
class BlobConfig:
    """Blob-filter candidates (``blobs:`` in a U-Net's ``detector.yaml``).

    Attributes:
        sigmas_mm: Gaussian scales in mm (a ball of diameter d responds most at ``d / 3.46``).
        min_hu: voxels whose HU, smoothed at the smallest scale, is below this are not evaluated (aerated lung).
        peak_window_mm: side of the window in which a candidate must be the strongest response.
        max_candidates: strongest peaks kept per scan.
        exclusion_mm: peaks closer than this to a U-Net candidate are dropped (already found).
    """

    sigmas_mm: tuple[float, ...]
    min_hu: float
    peak_window_mm: float
    max_candidates: int
    exclusion_mm: float

    def __post_init__(self) -> None:
        if not self.sigmas_mm or min(self.sigmas_mm) <= 0:
            raise ValueError(f"blobs.sigmas_mm must be positive scales in mm, got {list(self.sigmas_mm)}")


def _shifted(volume: np.ndarray, index: tuple[np.ndarray, ...], shift: tuple[int, int, int]) -> np.ndarray:
    """``volume`` at ``index + shift`` (edge voxels repeat)."""
    return volume[tuple(np.clip(i + s, 0, n - 1) for i, s, n in zip(index, shift, volume.shape, strict=True))]


def hessian_eigenvalues(smoothed: np.ndarray, spacing_zyx, index: tuple[np.ndarray, ...]) -> np.ndarray:
    """Eigenvalues (N, 3), ascending, of the Hessian of ``smoothed`` (in units/mm^2) at the voxels ``index``
    (a tuple of 3 (N,) arrays, z, y, x), by central differences."""
    h = np.asarray(spacing_zyx, dtype=np.float64)
    centre = smoothed[index].astype(np.float64)
    hess = np.empty((len(centre), 3, 3))
    for a in range(3):
        step = [0, 0, 0]
        step[a] = 1
        plus, minus = _shifted(smoothed, index, tuple(step)), _shifted(smoothed, index, tuple(-s for s in step))
        hess[:, a, a] = (plus + minus - 2.0 * centre) / h[a] ** 2
        for b in range(a + 1, 3):
            corners = []
            for sa, sb in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                shift = [0, 0, 0]
                shift[a], shift[b] = sa, sb
                corners.append(_shifted(smoothed, index, tuple(shift)).astype(np.float64))
            hess[:, a, b] = hess[:, b, a] = (corners[0] - corners[1] - corners[2] + corners[3]) / (4.0 * h[a] * h[b])
    return np.linalg.eigvalsh(hess)


def smooth(hu: np.ndarray, spacing_zyx, sigma_mm: float) -> np.ndarray:
    """``hu`` (Z, Y, X) smoothed by a Gaussian of ``sigma_mm`` (mm on every axis), float32."""
    return ndimage.gaussian_filter(hu.astype(np.float32), [sigma_mm / s for s in spacing_zyx])


def dot_response(smoothed: np.ndarray, spacing_zyx, index: tuple[np.ndarray, ...], sigma_mm: float) -> np.ndarray:
    """Scale-normalised dot enhancement (N,) at the voxels ``index`` of a volume smoothed at ``sigma_mm``."""
    ev = hessian_eigenvalues(smoothed, spacing_zyx, index)
    weakest, strongest = ev[:, 2], ev[:, 0]
    return np.where(weakest < 0, weakest**2 / np.maximum(-strongest, 1e-9), 0.0) * sigma_mm**2


def blob_response(hu: np.ndarray, spacing_zyx, lung: np.ndarray, config: BlobConfig) -> tuple[np.ndarray, np.ndarray]:
    """Maximum dot response over ``config.sigmas_mm`` (Z, Y, X) float32 and the index of the winning scale
    (ascending scales), evaluated at lung voxels whose HU smoothed at the smallest scale exceeds ``config.min_hu``;
    0 elsewhere."""
    sigmas = sorted(config.sigmas_mm)
    smoothed = smooth(hu, spacing_zyx, sigmas[0])
    index = np.nonzero(lung & (smoothed > config.min_hu))
    best = np.zeros(len(index[0]), np.float32)
    winner = np.zeros(len(index[0]), np.int8)
    for i, sigma in enumerate(sigmas):
        if i:
            smoothed = smooth(hu, spacing_zyx, sigma)
        response = dot_response(smoothed, spacing_zyx, index, sigma).astype(np.float32)
        better = response > best
        best[better], winner[better] = response[better], i
    volume, scale = np.zeros(hu.shape, np.float32), np.zeros(hu.shape, np.int8)
    volume[index], scale[index] = best, winner
    return volume, scale


def blob_candidates(
    hu: np.ndarray, scan: CTScan, lung: np.ndarray, config: BlobConfig, exclude_xyz: np.ndarray | None = None
) -> pd.DataFrame:
    """Local maxima of :func:`blob_response` inside the lungs, strongest first, in world mm.

    Args:
        hu: HU volume (Z, Y, X) on ``scan``'s grid (e.g. ``PreprocessedScan.scan.array``).
        lung: bool lung mask (Z, Y, X).
        exclude_xyz: (M, 3) world points (e.g. the U-Net's candidates): peaks within ``config.exclusion_mm`` go.

    Returns:
        columns ``coordX, coordY, coordZ`` (world mm), ``blob_response``, ``diameter_mm`` (from the winning
        scale), ``grid_z, grid_y, grid_x`` (voxel index on ``scan``'s grid); at most ``config.max_candidates`` rows.
    """
    response, scale = blob_response(hu, scan.spacing, lung, config)
    window = [max(1, int(round(config.peak_window_mm / s))) | 1 for s in scan.spacing]  # odd sizes
    peaks = np.argwhere((response == ndimage.maximum_filter(response, size=window)) & (response > 0))  # in the lung
    values = response[tuple(peaks.T)]
    order = np.argsort(-values, kind="stable")
    peaks, values = peaks[order], values[order]
    xyz = scan.voxel_to_world(peaks.astype(np.float64)).reshape(-1, 3)
    if exclude_xyz is not None and len(exclude_xyz) and len(xyz):
        gap = np.linalg.norm(xyz[:, None, :] - np.asarray(exclude_xyz, float)[None, :, :], axis=2).min(axis=1)
        keep = gap > config.exclusion_mm
        peaks, values, xyz = peaks[keep], values[keep], xyz[keep]
    peaks, values, xyz = peaks[: config.max_candidates], values[: config.max_candidates], xyz[: config.max_candidates]
    sigmas = np.sort(np.asarray(config.sigmas_mm, float))
    return pd.DataFrame(
        {
            "coordX": xyz[:, 0],
            "coordY": xyz[:, 1],
            "coordZ": xyz[:, 2],
            "blob_response": values.astype(np.float64),
            "diameter_mm": DIAMETER_PER_SIGMA * sigmas[scale[tuple(peaks.T)]],
            "grid_z": peaks[:, 0].astype(np.float64),
            "grid_y": peaks[:, 1].astype(np.float64),
            "grid_x": peaks[:, 2].astype(np.float64),
        }
    )
