"""Segmentation quality: Dice overlap and how much of each annotated sphere a mask covers.

Used to score lung masks against phantom labels (``scripts/evaluate_lungmask.py``,
``scripts/benchmark_preprocess.py`` and the lung-mask tests).
"""

from __future__ import annotations

import numpy as np

from lungcad.scan import CTScan


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two bool masks of one shape (0 when both are empty)."""
    return 2.0 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


def sphere_coverage(
    scan: CTScan, mask: np.ndarray, centres_xyz: np.ndarray, diameters_mm: np.ndarray, within: np.ndarray | None = None
) -> np.ndarray:
    """Fraction (N,) of each sphere's voxels (world mm centre and diameter, on ``scan``'s grid; restricted to
    ``within`` when given) that ``mask`` contains; NaN for a sphere with no voxel."""
    from lungcad.candidates.targets import rasterise_spheres

    fractions = []
    for centre, diameter in zip(np.atleast_2d(centres_xyz), np.atleast_1d(diameters_mm)):
        voxels = rasterise_spheres(scan, centre[None], np.array([diameter]))
        if within is not None:
            voxels &= within
        n = int(voxels.sum())
        fractions.append(float((voxels & mask).sum()) / n if n else float("nan"))
    return np.asarray(fractions, dtype=float)


def juxtapleural_coverage(phantom, mask: np.ndarray) -> list[tuple[float, float]]:
    """(diameter mm, fraction inside ``mask``) of every juxtapleural, not excluded nodule of a ``lungcad.synth``
    phantom; a nodule's voxels are those of its annotated sphere inside the phantom's lungs (labels 3 and 4)."""
    lungs = np.isin(phantom.lungs, (3, 4))
    nodules = [n for n in phantom.nodules if n.location == "juxtapleural" and not n.excluded]
    if not nodules:
        return []
    centres = np.array([n.world_xyz for n in nodules])
    diameters = np.array([n.diameter_mm for n in nodules])
    fractions = sphere_coverage(phantom.scan, mask, centres, diameters, within=lungs)
    return [(float(d), float(f)) for d, f in zip(diameters, fractions) if not np.isnan(f)]


def nodule_mask_coverage(
    grid: CTScan,
    mask: np.ndarray,
    labels: CTScan,
    centres_xyz: np.ndarray,
    diameters_mm: np.ndarray,
    lung_labels: tuple[int, ...] = (3, 4),
) -> np.ndarray:
    """Fraction (N,) of each nodule's voxels that a lung ``mask`` on ``grid`` contains (NaN: no voxel).

    A nodule's voxels are the voxels of ``grid`` inside its sphere (world mm centre, diameter) whose world position
    falls in one of ``lung_labels`` of the truth volume ``labels`` (nearest label voxel; any grid or orientation:
    e.g. a phantom's ``seg-lungs-LUNA16`` labels, where nodules lie inside labels 3 and 4), so the mask is judged on
    the nodule's tissue, not on the chest wall its sphere reaches into.
    """
    from lungcad.candidates.targets import rasterise_spheres

    fractions = []
    for centre, diameter in zip(np.atleast_2d(centres_xyz), np.atleast_1d(diameters_mm)):
        idx = np.argwhere(rasterise_spheres(grid, centre[None], np.array([diameter])))
        ijk = labels.world_to_voxel(grid.voxel_to_world(idx), outside="nan")
        inside = ~np.isnan(ijk).any(axis=1)
        idx, ijk = idx[inside], np.rint(ijk[inside]).astype(int)
        ijk = np.minimum(ijk, np.asarray(labels.shape) - 1)
        tissue = np.isin(labels.array[ijk[:, 0], ijk[:, 1], ijk[:, 2]], lung_labels)
        n = int(tissue.sum())
        fractions.append(float(mask[tuple(idx[tissue].T)].sum()) / n if n else float("nan"))
    return np.asarray(fractions, dtype=float)
