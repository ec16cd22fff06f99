"""Turn a stack of slices at arbitrary positions into a regular voxel grid with exact world geometry.

Input: slices already sorted along their normal, each with its ImagePositionPatient. Output: a grid whose
k axis is the slice normal, so that ``P = origin + D @ (spacing * ijk)`` holds for every voxel with
``D = [row, col, normal]`` (ITK convention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from lungcad.errors import GeometryError
from lungcad.io.limits import check_voxel_count

#: In-plane drift (mm) of slice positions over a series above which it is treated as gantry tilt.
TILT_TOLERANCE_MM = 0.02
#: Relative deviation of a slice step from the median step above which spacing counts as uneven.
UNEVEN_TOLERANCE = 0.02
#: ImageOrientationPatient's row and column (unit vectors) count as orthogonal when their dot product is below this.
ORTHOGONAL_TOLERANCE = 1e-3
#: A gap between neighbouring slices longer than this many median slice steps splits the slices into separate
#: stacks (a slice 20 m away, a second acquisition sharing the series UID): only the largest stack is kept. Shorter
#: gaps are missing slices, filled by interpolation.
STACK_GAP_FACTOR = 20.0


@dataclass
class Grid:
    """A regular volume: ``array`` float32 (Z, Y, X) HU; spacing (z, y, x) mm; origin (x, y, z) mm."""

    array: np.ndarray
    spacing_zyx: tuple[float, float, float]
    origin_xyz: np.ndarray
    direction: np.ndarray
    warnings: list[str] = field(default_factory=list)
    resampled: bool = False


def regularize_slices(
    hu: np.ndarray,
    *,
    positions: np.ndarray,
    orientation: np.ndarray,
    pixel_spacing_yx: tuple[float, float],
    gantry_tilt: str = "resample",
    source: str | Path | None = None,
    slice_thickness: float | None = None,
    fill_hu: float = -1024.0,
) -> Grid:
    """Build a regular grid from sorted slices.

    Args:
        hu: float32 (Z, Y, X), slices sorted by position along the normal.
        positions: (Z, 3) ImagePositionPatient of each slice, world mm.
        orientation: 6 direction cosines (row x, y, z, then column x, y, z).
        pixel_spacing_yx: DICOM PixelSpacing (row spacing = y step, column spacing = x step), mm.
        gantry_tilt: "resample" or "refuse" a series whose positions drift in-plane.
        slice_thickness: used only for a single-slice series (no positions to measure a step from).
        fill_hu: value for voxels shifted in from outside the field of view.
    """
    row, col = orientation[:3], orientation[3:]
    if abs(float(row @ col)) > ORTHOGONAL_TOLERANCE:
        raise GeometryError("ImageOrientationPatient row and column are not orthogonal", path=source)
    normal = np.cross(row, col)
    direction = np.column_stack([row, col, normal])
    dy, dx = (float(v) for v in pixel_spacing_yx)
    warnings: list[str] = []
    s = positions @ normal
    if len(s) == 1:
        step = slice_thickness if slice_thickness and slice_thickness > 0 else 1.0
        warnings.append(f"single-slice series: slice spacing taken from SliceThickness ({step:g} mm)")
        return Grid(hu, (step, dy, dx), positions[0].copy(), direction, warnings)
    hu, tilt_warnings = _correct_tilt(hu, positions, row, col, (dy, dx), gantry_tilt, source, fill_hu)
    warnings += tilt_warnings
    hu, step, uneven_warnings = _regular_steps(hu, s, source)
    warnings += uneven_warnings
    return Grid(hu, (step, dy, dx), positions[0].copy(), direction, warnings, bool(tilt_warnings or uneven_warnings))


def _correct_tilt(
    hu: np.ndarray,
    positions: np.ndarray,
    row: np.ndarray,
    col: np.ndarray,
    spacing_yx: tuple[float, float],
    policy: str,
    source: str | Path | None,
    fill_hu: float,
) -> tuple[np.ndarray, list[str]]:
    """Shift each slice in-plane so that all slice origins lie on the normal through slice 0."""
    rel = positions - positions[0]
    drift_x, drift_y = rel @ row, rel @ col  # in-plane offset of each slice origin, mm
    drift = float(np.max(np.hypot(drift_x, drift_y)))
    if drift <= TILT_TOLERANCE_MM:
        return hu, []
    extent = float(abs((positions[-1] - positions[0]) @ np.cross(row, col)))
    angle = math.degrees(math.atan2(drift, extent)) if extent > 0 else 90.0
    if policy == "refuse":
        raise GeometryError(
            f"gantry tilt of about {angle:.1f} deg (slice positions drift {drift:.1f} mm in-plane)",
            path=source,
            fix="use gantry_tilt='resample' (default) or reconstruct without tilt",
        )
    dy, dx = spacing_yx
    out = np.empty_like(hu)
    for k in range(hu.shape[0]):
        # new(j, i) = old(j - by/dy, i - ax/dx): the slice moves back onto the orthogonal grid
        out[k] = ndimage.shift(hu[k], (drift_y[k] / dy, drift_x[k] / dx), order=1, mode="constant", cval=fill_hu)
    return out, [
        f"gantry tilt of about {angle:.1f} deg (in-plane drift {drift:.1f} mm): "
        "slices resampled onto an orthogonal grid"
    ]


def largest_stack(s: np.ndarray) -> np.ndarray:
    """Indices of the slices (sorted positions ``s`` along the normal, mm) in the largest stack: the positions are
    split wherever a gap exceeds :data:`STACK_GAP_FACTOR` median steps. Raises GeometryError (without a path: the
    caller names it) when no stack holds more than half of the slices."""
    if len(s) < 3:
        return np.arange(len(s))
    steps = np.diff(s)
    median = float(np.median(steps))
    breaks = np.flatnonzero(steps > STACK_GAP_FACTOR * median) + 1
    stacks = np.split(np.arange(len(s)), breaks)
    best = max(stacks, key=len)
    if 2 * len(best) <= len(s):
        sizes = ", ".join(str(len(k)) for k in stacks)
        raise GeometryError(
            f"slice positions form {len(stacks)} separate stacks of {sizes} slices (gaps over {STACK_GAP_FACTOR:g} "
            f"times the median step of {median:.3g} mm) and none holds most slices"
        )
    return best


def _regular_steps(
    hu: np.ndarray, s: np.ndarray, source: str | Path | None = None
) -> tuple[np.ndarray, float, list[str]]:
    """Resample along the normal when slice steps are uneven (gaps, missing slices); the grid's size is checked
    against the voxel limit before it is allocated."""
    steps = np.diff(s)
    median = float(np.median(steps))
    extent = float(s[-1] - s[0])
    if np.max(np.abs(steps - median)) <= UNEVEN_TOLERANCE * median:
        return hu, extent / (len(s) - 1), []
    n_new = int(round(extent / median)) + 1
    check_voxel_count((n_new, *hu.shape[1:]), path=source, what=f"the regular grid of {len(s)} unevenly spaced slices")
    z_new = s[0] + np.arange(n_new) * (extent / (n_new - 1))
    upper = np.clip(np.searchsorted(s, z_new, side="right"), 1, len(s) - 1)
    lower = upper - 1
    weight = ((z_new - s[lower]) / (s[upper] - s[lower])).astype(np.float32)
    out = np.empty((n_new, *hu.shape[1:]), dtype=np.float32)
    for k in range(n_new):
        out[k] = hu[lower[k]] * (1 - weight[k]) + hu[upper[k]] * weight[k]
    worst = int(np.argmax(steps))
    warning = (
        f"uneven slice spacing ({steps.min():.2f}-{steps.max():.2f} mm; largest gap {steps[worst]:.2f} mm after "
        f"slice {worst} at {s[worst]:.2f} mm along the normal, e.g. a missing slice): resampled {len(s)} slices to "
        f"{n_new} of {extent / (n_new - 1):.3f} mm by linear interpolation"
    )
    return out, extent / (n_new - 1), [warning]
