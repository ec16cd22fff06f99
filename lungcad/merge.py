"""Stage 4, merge: from a per-slice nodule probability map to 3-D candidates in world mm.

The seed design's steps, each configurable (``configs/merge.yaml``):

1. threshold the probability map;
2. binary dilation then erosion in each axial slice (closes small gaps in a detection);
3. 2-D connected components per slice -> per-slice detections (probability-weighted centroid, area,
   peak and mean probability);
4. **distance merging**: detections of one slice whose centres are closer than ``distance_merge_mm``
   become one (single linkage);
5. **Z-merging**: detections in adjacent slices (up to ``max_gap_slices`` missing in between) whose
   centres are within ``z_merge_radius_mm`` in-plane chain into one 3-D candidate, whose centre is the
   probability-weighted centroid in world mm.

Distances are measured in world mm, so any in-plane spacing and direction works.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import cKDTree

from lungcad.scan import CTScan

#: In-plane 4-connectivity with no link across slices: one 3-D label call gives per-slice components.
_SLICE_STRUCTURE = np.zeros((3, 3, 3), dtype=bool)
_SLICE_STRUCTURE[1] = ndimage.generate_binary_structure(2, 1)


@dataclass(frozen=True)
class MergeConfig:
    """Merging settings (``merge`` of a U-Net model's ``detector.yaml``; training starts from ``configs/merge.yaml``).

    Attributes:
        threshold: probability at or above which a pixel is a detection.
        dilation_iterations, erosion_iterations: per-slice binary dilation, then erosion (0 = skip).
        min_area_mm2: per-slice detections smaller than this are dropped (after morphology).
        distance_merge_mm: same-slice detections closer than this merge.
        z_merge_radius_mm: in-plane distance within which detections of nearby slices chain.
        max_gap_slices: slices without a detection that a chain may jump.
        min_slices: 3-D candidates seen on fewer slices are dropped.
        max_candidates: keep at most this many per scan (highest peak probability first).
    """

    threshold: float
    dilation_iterations: int
    erosion_iterations: int
    min_area_mm2: float
    distance_merge_mm: float
    z_merge_radius_mm: float
    max_gap_slices: int
    min_slices: int
    max_candidates: int


@dataclass
class SliceDetections:
    """Per-slice detections as parallel arrays (N,): slice index, in-plane centroid (y, x) in voxels,
    area mm^2, probability mass (sum over pixels), peak probability, pixel count."""

    z: np.ndarray
    yx: np.ndarray  # (N, 2)
    area_mm2: np.ndarray
    mass: np.ndarray
    peak: np.ndarray
    pixels: np.ndarray

    def __len__(self) -> int:
        return len(self.z)

    def take(self, index: np.ndarray) -> SliceDetections:
        return SliceDetections(*(a[index] for a in (self.z, self.yx, self.area_mm2, self.mass, self.peak, self.pixels)))


def slice_detections(prob: np.ndarray, scan: CTScan, config: MergeConfig) -> SliceDetections:
    """Steps 1-3: threshold, per-slice dilation/erosion, 2-D components and their statistics.

    Args:
        prob: (Z, Y, X) probabilities on ``scan``'s grid.
    """
    binary = prob >= config.threshold
    structure = _SLICE_STRUCTURE
    if config.dilation_iterations:
        binary = ndimage.binary_dilation(binary, structure, iterations=config.dilation_iterations)
    if config.erosion_iterations:
        binary = ndimage.binary_erosion(binary, structure, iterations=config.erosion_iterations, border_value=1)
    labels, n = ndimage.label(binary, structure)
    if n == 0:
        empty = np.zeros(0)
        return SliceDetections(empty.astype(int), np.zeros((0, 2)), empty, empty, empty, empty.astype(int))
    # statistics over the labelled voxels only (a few thousand of the map's millions: whole-volume
    # ndimage.sum_labels / maximum / center_of_mass took ~6 s per 0.7 mm scan)
    zz, yy, xx = np.nonzero(labels)
    label = labels[zz, yy, xx] - 1
    values = prob[zz, yy, xx].astype(np.float64)
    weights = values + 1e-12  # pixels added by the closing may have probability 0
    mass = np.bincount(label, weights, minlength=n)
    centre = np.column_stack([np.bincount(label, weights * c, minlength=n) for c in (yy, xx)]) / mass[:, None]
    pixels = np.bincount(label, minlength=n)
    peak = np.full(n, -np.inf)
    np.maximum.at(peak, label, values)
    z = np.zeros(n, dtype=int)
    z[label] = zz  # a component lies in one slice
    area = pixels * scan.spacing[1] * scan.spacing[2]
    det = SliceDetections(z, centre, area, mass, peak, pixels)
    return det.take(np.flatnonzero(area >= config.min_area_mm2))


def _union_find(n: int, pairs: np.ndarray) -> np.ndarray:
    """Component id of each of ``n`` items linked by ``pairs`` (M, 2)."""
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        ra, rb = root(int(a)), root(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([root(i) for i in range(n)])


def _world(det: SliceDetections, scan: CTScan) -> np.ndarray:
    return scan.voxel_to_world(np.column_stack([det.z, det.yx]))


def distance_merge(det: SliceDetections, scan: CTScan, distance_mm: float) -> SliceDetections:
    """Step 4: merge same-slice detections whose centres are closer than ``distance_mm`` (world mm)."""
    if len(det) < 2 or distance_mm <= 0:
        return det
    world = _world(det, scan)
    pairs = np.array(sorted(cKDTree(world).query_pairs(distance_mm)), dtype=int).reshape(-1, 2)
    pairs = pairs[det.z[pairs[:, 0]] == det.z[pairs[:, 1]]]
    groups = _union_find(len(det), pairs)
    keys, inverse = np.unique(groups, return_inverse=True)
    mass = np.bincount(inverse, det.mass)
    yx = np.column_stack([np.bincount(inverse, det.yx[:, i] * det.mass) for i in range(2)]) / mass[:, None]
    peak = np.zeros(len(keys))
    np.maximum.at(peak, inverse, det.peak)
    return SliceDetections(
        det.z[keys], yx, np.bincount(inverse, det.area_mm2), mass, peak, np.bincount(inverse, det.pixels).astype(int)
    )


def z_merge(det: SliceDetections, scan: CTScan, config: MergeConfig) -> pd.DataFrame:
    """Step 5: chain detections across nearby slices into 3-D candidates.

    Returns a table with one row per candidate: ``coordX, coordY, coordZ`` (world mm, probability-weighted
    centroid), ``grid_z, grid_y, grid_x`` (fractional voxel index on ``scan``'s grid), ``probability`` (peak),
    ``mean_probability``,
    ``diameter_mm`` (largest per-slice equivalent diameter, at least the slice extent for round shapes),
    ``z_first``, ``z_last``, ``n_slices``; sorted by probability, highest first.
    """
    columns = [
        "coordX",
        "coordY",
        "coordZ",
        "probability",
        "diameter_mm",
        "mean_probability",
        "grid_z",
        "grid_y",
        "grid_x",
        "z_first",
        "z_last",
        "n_slices",
    ]
    if len(det) == 0:
        return pd.DataFrame(columns=columns)
    world = _world(det, scan)
    normal = scan.direction[:, 2]
    in_plane = world - np.outer(world @ normal, normal)  # project out the slice axis
    pairs = np.array(sorted(cKDTree(in_plane).query_pairs(config.z_merge_radius_mm)), dtype=int).reshape(-1, 2)
    dz = np.abs(det.z[pairs[:, 0]] - det.z[pairs[:, 1]])
    pairs = pairs[(dz >= 1) & (dz <= 1 + config.max_gap_slices)]
    groups = _union_find(len(det), pairs)
    _, inverse = np.unique(groups, return_inverse=True)
    mass = np.bincount(inverse, det.mass)
    voxel = np.column_stack([np.bincount(inverse, c * det.mass) for c in (det.z, *det.yx.T)]) / mass[:, None]
    peak = np.zeros(len(mass))
    np.maximum.at(peak, inverse, det.peak)
    eq_diam = 2.0 * np.sqrt(det.area_mm2 / np.pi)
    diameter = np.zeros(len(mass))
    np.maximum.at(diameter, inverse, eq_diam)
    z_first = np.full(len(mass), np.iinfo(np.int64).max)
    np.minimum.at(z_first, inverse, det.z)
    z_last = np.zeros(len(mass), dtype=np.int64)
    np.maximum.at(z_last, inverse, det.z)
    n_slices = np.bincount(np.unique(np.column_stack([inverse, det.z]), axis=0)[:, 0], minlength=len(mass))
    coords = scan.voxel_to_world(voxel)
    table = pd.DataFrame(
        {
            "coordX": coords[:, 0],
            "coordY": coords[:, 1],
            "coordZ": coords[:, 2],
            "probability": peak,
            "diameter_mm": diameter,
            "mean_probability": mass / np.bincount(inverse, det.pixels),
            "grid_z": voxel[:, 0],
            "grid_y": voxel[:, 1],
            "grid_x": voxel[:, 2],
            "z_first": z_first,
            "z_last": z_last,
            "n_slices": n_slices,
        }
    )
    table = table[table.n_slices >= config.min_slices]
    # peak probabilities saturate at 1.0 for many detections: ties are broken by the mean probability
    order = table.sort_values(["probability", "mean_probability"], ascending=False, kind="stable")
    return order.head(config.max_candidates).reset_index(drop=True)


def merge_candidates(prob: np.ndarray, scan: CTScan, config: MergeConfig) -> pd.DataFrame:
    """The whole merge stage: probability map (Z, Y, X) on ``scan``'s grid -> 3-D candidate table
    (see :func:`z_merge` for the columns), with the caller's ``config`` (a model's ``detector.yaml`` merge, or
    ``load_config(MergeConfig, "merge")``)."""
    det = slice_detections(prob, scan, config)
    det = distance_merge(det, scan, config.distance_merge_mm)
    return z_merge(det, scan, config)
