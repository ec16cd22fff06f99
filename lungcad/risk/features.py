"""Per-candidate features for the risk model, measured in HU around each candidate's world centre.

A cube of ``cube_mm`` 1 mm voxels (trilinear, in HU) is sampled around the centre and lightly smoothed; the
nodule is the connected region above ``nodule_threshold_hu`` that holds the voxel nearest the centre,
clipped to a ball of radius ``search_radius_factor * diameter_mm + search_margin_mm`` (within
``[min_radius_mm, max_radius_mm]``) so attached vessels or chest wall do not count in full. From it:

- ``log_diameter_mm``: log of the equivalent-sphere diameter (mm) of the region, partial-volume corrected;
- ``mean_hu``: its mean density inside its 1 mm edge (ground glass ~ -600, solid ~ 0, calcified > 200);
- ``solid_fraction`` / ``calcified_fraction``: shares of its voxels above ``solid_hu`` / ``calcified_hu``;
- ``compactness``: its volume over the volume of the ball reaching its farthest voxel (1 for a sphere, low
  for spiculated or lobulated outlines);
- ``fpr_logit``: the false-positive reducer's probability as a logit (clipped);
- ``NAME_logit``: for each nodule classifier ``NAME`` given (:mod:`lungcad.train.risk.classifiers`: malignancy, shape),
  its probability as a logit (clipped): what the hand-made measures above see only roughly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import ndimage

from lungcad.patches import sample_hu
from lungcad.scan import CTScan
from lungcad.schema import XYZ

if TYPE_CHECKING:
    from lungcad.fpr.inference import PatchScorer

REGION_FEATURES = ("log_diameter_mm", "mean_hu", "solid_fraction", "calcified_fraction", "compactness")
FEATURES = ("fpr_logit", *REGION_FEATURES)  # plus NAME_logit per nodule classifier


def classifier_names(features: Sequence[str]) -> list[str]:
    """The nodule classifiers a feature list uses: ``NAME`` for each ``NAME_logit`` other than ``fpr_logit``."""
    return [f.removesuffix("_logit") for f in features if f.endswith("_logit") and f != "fpr_logit"]


@dataclass(frozen=True)
class FeatureConfig:
    """``features:`` section of ``configs/risk.yaml`` (mm, HU)."""

    cube_mm: int
    smooth_sigma_mm: float
    nodule_threshold_hu: float
    solid_hu: float
    calcified_hu: float
    search_radius_factor: float
    search_margin_mm: float
    min_radius_mm: float
    max_radius_mm: float
    probability_clip: float


def hu_cube(scan: CTScan, centre_xyz: np.ndarray, side: int) -> np.ndarray:
    """HU (side, side, side) on a 1 mm grid (z, y, x) around a world centre (mm); -1000 outside the scan."""
    offsets = np.arange(side, dtype=float) - (side - 1) / 2
    zz, yy, xx = np.meshgrid(offsets, offsets, offsets, indexing="ij")
    world = np.stack([xx, yy, zz], -1).reshape(-1, 3) + np.asarray(centre_xyz, float)
    return sample_hu(scan, world, outside_hu=-1000.0).reshape(side, side, side)


def nodule_region(cube: np.ndarray, diameter_mm: float, config: FeatureConfig) -> np.ndarray:
    """Bool (side, side, side): the candidate's nodule in a 1 mm HU cube centred on it (see the module doc)."""
    side = cube.shape[0]
    grid = np.indices(cube.shape).reshape(3, -1).T - (side - 1) / 2
    dist = np.linalg.norm(grid, axis=1).reshape(cube.shape)
    radius = np.clip(
        config.search_radius_factor * max(float(diameter_mm), 0.0) + config.search_margin_mm,
        config.min_radius_mm,
        config.max_radius_mm,
    )
    smooth = ndimage.gaussian_filter(cube, config.smooth_sigma_mm) if config.smooth_sigma_mm > 0 else cube
    above = (smooth > config.nodule_threshold_hu) & (dist <= radius)
    if not above.any():
        return above
    labels, _ = ndimage.label(above)
    seed = np.unravel_index(np.argmin(np.where(above, dist, np.inf)), cube.shape)
    return labels == labels[seed]


def region_features(cube: np.ndarray, region: np.ndarray, config: FeatureConfig) -> dict[str, float]:
    """Size, density and shape of ``region`` in ``cube`` (1 mm voxels); a tiny placeholder when empty."""
    if not region.any():
        return {"log_diameter_mm": 0.0, "mean_hu": -1000.0, "solid_fraction": 0.0, "calcified_fraction": 0.0,
                "compactness": 0.0}  # fmt: skip
    inner = ndimage.binary_erosion(region)
    values = cube[inner] if inner.any() else cube[region]  # density without the partial-volume edge
    volume = partial_volume(cube, region)
    points = np.argwhere(region).astype(float)
    reach = np.linalg.norm(points - points.mean(0), axis=1).max() + 0.5
    return {
        "log_diameter_mm": float(np.log((6 * volume / np.pi) ** (1 / 3))),
        "mean_hu": float(values.mean()),
        "solid_fraction": float((values > config.solid_hu).mean()),
        "calcified_fraction": float((values > config.calcified_hu).mean()),
        "compactness": float(min(1.0, region.sum() / (4 / 3 * np.pi * reach**3))),
    }


def partial_volume(cube: np.ndarray, region: np.ndarray) -> float:
    """Volume (mm^3, 1 mm voxels) of ``region`` with partial-volume correction: each voxel counts by where its HU
    lies between the surrounding lung (median outside the region) and the nodule's own level (90th percentile
    inside), so the edge threshold does not bias the size."""
    values = cube[region]
    background = float(np.median(cube[~region])) if (~region).any() else -1000.0
    peak = float(np.percentile(values, 90))
    if peak - background < 1.0:
        return float(region.sum())
    return float(np.clip((values - background) / (peak - background), 0.0, 1.0).sum())


def fpr_logit(probability: np.ndarray, clip: float) -> np.ndarray:
    """Logit of clipped probabilities."""
    p = np.clip(np.asarray(probability, float), clip, 1 - clip)
    return np.log(p / (1 - p))


def candidate_features(
    scan: CTScan, candidates: pd.DataFrame, config: FeatureConfig, classifiers: Mapping[str, PatchScorer] | None = None
) -> pd.DataFrame:
    """``candidates`` (coordX..Z mm, probability, diameter_mm) with the :data:`FEATURES` columns added, and
    ``NAME_logit`` for each of the nodule ``classifiers`` (``{NAME: scorer}``)."""
    centres = candidates[XYZ].to_numpy(float)
    diameters = candidates["diameter_mm"].to_numpy(float)
    rows = []
    for centre, diameter in zip(centres, diameters):
        cube = hu_cube(scan, centre, config.cube_mm)
        rows.append(region_features(cube, nodule_region(cube, diameter, config), config))
    table = pd.DataFrame(rows, index=candidates.index, columns=list(REGION_FEATURES), dtype=float)
    out = candidates.assign(**{c: table[c] for c in table.columns})
    out = out.assign(fpr_logit=fpr_logit(candidates["probability"], config.probability_clip))
    for name, scorer in (classifiers or {}).items():
        probability = scorer.score(scan, centres, diameters) if len(centres) else np.zeros(0)
        out = out.assign(**{f"{name}_logit": fpr_logit(probability, config.probability_clip)})
    return out
