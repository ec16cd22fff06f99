"""Training targets for the U-Net: annotated nodules rasterised onto a scan's grid.

A nodule annotated at world ``(x, y, z)`` mm with diameter ``d`` becomes the voxels within ``d / 2`` mm of
it (a sphere, so each axial slice through it gets a disc of the right size). Excluded findings
(``annotations_excluded.csv``: < 3 mm, non-nodules) become an *ignore* mask: their voxels are left out of
the loss, neither positive nor negative. Unknown diameters (-1) use ``unknown_diameter_mm``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lungcad.scan import CTScan


def rasterise_spheres(
    scan: CTScan, centres_xyz: np.ndarray, diameters_mm: np.ndarray, unknown_diameter_mm: float = 10.0
) -> np.ndarray:
    """Bool (Z, Y, X) mask on ``scan``'s grid: voxels whose centre lies within each sphere.

    Args:
        centres_xyz: (N, 3) world mm. Spheres partly or wholly outside the volume are clipped.
        diameters_mm: (N,) mm; values <= 0 mean unknown and use ``unknown_diameter_mm``.
    """
    mask = np.zeros(scan.shape, dtype=bool)
    centres = np.atleast_2d(np.asarray(centres_xyz, dtype=np.float64))
    diameters = np.where(np.asarray(diameters_mm, dtype=np.float64) > 0, diameters_mm, unknown_diameter_mm)
    shape = np.asarray(scan.shape)
    for centre, diameter in zip(centres, np.atleast_1d(diameters)):
        radius = diameter / 2.0
        voxel = scan.world_to_voxel(centre, outside="keep")
        reach = np.ceil(radius / np.asarray(scan.spacing)) + 1  # voxels on each side (any direction: bound)
        lo = np.clip(np.floor(voxel - reach), 0, shape).astype(int)
        hi = np.clip(np.ceil(voxel + reach) + 1, 0, shape).astype(int)
        if np.any(hi <= lo):
            continue
        grid = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), axis=-1)
        world = scan.voxel_to_world(grid.reshape(-1, 3)).reshape(*grid.shape)
        inside = np.sum((world - centre) ** 2, axis=-1) <= radius**2
        mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] |= inside
    return mask


def _rows(table: pd.DataFrame | None, seriesuid: str) -> tuple[np.ndarray, np.ndarray]:
    if table is None or table.empty:
        return np.zeros((0, 3)), np.zeros(0)
    rows = table[table["seriesuid"] == seriesuid]
    return rows[["coordX", "coordY", "coordZ"]].to_numpy(float), rows["diameter_mm"].to_numpy(float)


def nodule_targets(
    scan: CTScan,
    annotations: pd.DataFrame,
    excluded: pd.DataFrame | None = None,
    *,
    unknown_diameter_mm: float = 10.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(target, ignore) bool masks (Z, Y, X) for ``scan.id`` from LUNA16-style tables.

    ``target`` marks annotated nodules; ``ignore`` marks excluded findings not overlapping a nodule.
    """
    target = rasterise_spheres(scan, *_rows(annotations, scan.id), unknown_diameter_mm)
    ignore = rasterise_spheres(scan, *_rows(excluded, scan.id), unknown_diameter_mm) & ~target
    return target, ignore
