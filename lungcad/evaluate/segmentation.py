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
    """Fraction (N,) of each nodule's voxels that a lung ``mask`` on ``grid`` contains (NaN: the nodule has none).

    A nodule's voxels are the voxels of the truth volume ``labels`` (any grid or orientation: e.g. a phantom's
    ``seg-lungs-LUNA16`` labels, where nodules lie inside labels 3 and 4) inside its sphere (world mm centre,
    diameter) that carry one of ``lung_labels``: the mask is judged on the nodule's tissue, not on the chest wall its
    sphere reaches into. Each is looked up in ``mask`` at the nearest voxel of ``grid``; one outside ``grid`` (a
    preprocessing crop that lost part of the lung) is not covered.
    """
    from lungcad.candidates.targets import rasterise_spheres

    fractions = []
    for centre, diameter in zip(np.atleast_2d(centres_xyz), np.atleast_1d(diameters_mm)):
        idx = np.argwhere(rasterise_spheres(labels, centre[None], np.array([diameter])))
        idx = idx[np.isin(labels.array[tuple(idx.T)], lung_labels)]
        if not len(idx):
            fractions.append(float("nan"))
            continue
        ijk = grid.world_to_voxel(labels.voxel_to_world(idx), outside="nan")
        ijk = ijk[~np.isnan(ijk).any(axis=1)]
        ijk = np.minimum(np.rint(ijk).astype(int), np.asarray(grid.shape) - 1)
        fractions.append(float(mask[tuple(ijk.T)].sum()) / len(idx))
    return np.asarray(fractions, dtype=float)
