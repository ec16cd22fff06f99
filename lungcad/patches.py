"""Stage 5, patches: fixed-size patches cut around world-coordinate candidates.

Patches are sampled on a grid aligned with the *patient* (world LPS) axes, at a fixed spacing in mm,
whatever the scan's own spacing and direction: a LUNA16 scan stored flipped gives the same patch as its
unflipped twin. Axes of a cube: ``[z, y, x]`` = world +z (superior), +y (posterior), +x (patient left),
centre voxel ``size // 2`` on the candidate. 2.5-D patches are the axial, coronal and sagittal planes
through the centre as 3 channels (the seed WideResNet's 3-channel input). Values are HU windowed and
scaled to [0, 1]; outside the volume counts as air. All candidates of a scan are sampled in one
``scipy.ndimage.map_coordinates`` call (trilinear): no Python loop per voxel or per patch.

With ``diameters_across > 0`` the step is chosen per candidate so that the patch spans that many times its
diameter (never finer than ``spacing_mm``): every nodule fills the same share of its patch, at the resolution
its size allows (the nodule classifiers' shape cues: spicules of a 30 mm nodule reach beyond a fixed 32 mm
patch, those of an 8 mm one are a few voxels wide in it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from scipy import ndimage

from lungcad.io.hu import PADDING_HU
from lungcad.preprocess.intensity import window_normalise
from lungcad.scan import CTScan


@dataclass(frozen=True)
class PatchConfig:
    """Patch geometry (``patches:`` section of ``configs/fpr.yaml``).

    Attributes:
        size: voxels per side (odd sizes put the candidate exactly on the centre voxel).
        spacing_mm: isotropic sampling step in mm.
        mode: "2.5d" -> (N, size, size, 3) planes; "3d" -> (N, size, size, size, 1) cubes.
        hu_window: HU mapped to [0, 1].
        diameters_across: > 0: the patch spans this many candidate diameters (``spacing_mm`` is then the finest
            step); 0: every patch has the step ``spacing_mm``.
    """

    size: int
    spacing_mm: float
    mode: Literal["2.5d", "3d"]
    hu_window: tuple[float, float]
    diameters_across: float = 0.0


def _offsets(config: PatchConfig) -> np.ndarray:
    """1-D offsets (mm) of the patch grid from its centre voxel ``size // 2``."""
    return (np.arange(config.size) - config.size // 2) * config.spacing_mm


def patch_points(config: PatchConfig) -> np.ndarray:
    """World offsets (mm, x, y, z) of every patch voxel from the centre, shape (*patch_shape, 3)."""
    o = _offsets(config)
    zero = np.zeros(1)
    if config.mode == "3d":
        z, y, x = np.meshgrid(o, o, o, indexing="ij")
        return np.stack([x, y, z], axis=-1)
    planes = []
    for a, b in (("y", "x"), ("z", "x"), ("z", "y")):  # axial, coronal, sagittal (rows, columns)
        grid = {"x": zero, "y": zero, "z": zero, a: o[:, None], b: o[None, :]}
        planes.append(np.stack(np.broadcast_arrays(grid["x"], grid["y"], grid["z"]), axis=-1))
    return np.stack(planes, axis=2)  # (size, size, 3 planes, 3 coords)


def candidate_spacing(config: PatchConfig, diameters_mm: np.ndarray | None) -> np.ndarray | None:
    """Per-candidate sampling step (N,) mm when ``config.diameters_across > 0``, else None (fixed step).

    Raises:
        ValueError: size-scaled patches without the candidates' diameters.
    """
    if config.diameters_across <= 0:
        return None
    if diameters_mm is None:
        raise ValueError("size-scaled patches (diameters_across > 0) need each candidate's diameter_mm")
    diameters = np.nan_to_num(np.asarray(diameters_mm, dtype=np.float64), nan=0.0)
    return np.maximum(config.spacing_mm, config.diameters_across * diameters / config.size)


def extract_patches(
    scan: CTScan, centres_xyz: np.ndarray, config: PatchConfig, spacing_mm: np.ndarray | None = None
) -> np.ndarray:
    """Patches around world centres (N, 3) mm.

    Args:
        spacing_mm: per-candidate sampling step (N,) mm (see :func:`candidate_spacing`); None: ``config.spacing_mm``.

    Returns:
        float32 (N, size, size, 3) for "2.5d" or (N, size, size, size, 1) for "3d", in [0, 1].
    """
    centres = np.atleast_2d(np.asarray(centres_xyz, dtype=np.float64))
    if spacing_mm is None:
        offsets = patch_points(config)[None]
    else:  # unit-step offsets scaled per candidate
        unit = patch_points(replace(config, spacing_mm=1.0))
        offsets = unit[None] * np.asarray(spacing_mm, dtype=np.float64).reshape((-1,) + (1,) * unit.ndim)
    world = centres.reshape((-1,) + (1,) * (offsets.ndim - 2) + (3,)) + offsets
    voxels = scan.world_to_voxel(world.reshape(-1, 3), outside="keep")  # (M, 3) z, y, x
    values = ndimage.map_coordinates(scan.array, voxels.T, order=1, mode="constant", cval=PADDING_HU, output=np.float32)
    patches = window_normalise(values, config.hu_window).reshape(world.shape[:-1])
    return patches[..., None] if config.mode == "3d" else patches
