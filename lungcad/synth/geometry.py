"""Scanner geometry of a phantom: field of view, spacings, slice count, world origin, direction.

Two frames are used:

- *patient frame* (mm): x to the patient's left, y posterior, z superior (the LPS axes), with x = y = 0
  at the centre of the body cross-section and z = 0 at the first (most inferior) slice. Anatomy,
  vessels and nodules are defined here, independently of the matrix size.
- *canonical grid*: the voxel grid ``[z, y, x]`` with identity direction; voxel ``(k, j, i)`` has
  patient coordinates ``x = (i + 0.5) h - FOV/2 - bx``, ``y = (j + 0.5) h - FOV/2 - by``, ``z = k sz``.

The written scan is the canonical grid, or for a *flipped* scan the same array reversed in y and x with
direction ``diag(-1, -1, 1)`` and the origin moved to the other corner, so every voxel keeps its world
position (the way some LUNA16 files are stored).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lungcad.scan import CTScan
from lungcad.synth.config import SynthConfig
from lungcad.synth.util import choice, uniform

FLIP_DIRECTION = np.diag([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class Geometry:
    """Grid and world placement of one phantom.

    Attributes:
        size: in-plane matrix (columns = rows).
        nz: number of slices.
        fov_mm: reconstruction diameter (the scan circle), mm.
        h: in-plane pixel spacing ``fov_mm / size``, mm.
        sz: slice spacing, mm.
        thickness: slice thickness (FWHM of the slice profile), mm.
        chest_mm: drawn z extent of the chest (anatomy landmarks are placed in it), mm.
        body_offset: ``(bx, by)`` body centre relative to the FOV centre, mm.
        origin: world ``(x, y, z)`` mm of canonical voxel ``[0, 0, 0]``.
        flipped: whether the written scan uses direction ``diag(-1, -1, 1)``.
        outside_hu: HU stored outside the scan circle in the LUNA16 file.
    """

    size: int
    nz: int
    fov_mm: float
    h: float
    sz: float
    thickness: float
    chest_mm: float
    body_offset: tuple[float, float]
    origin: tuple[float, float, float]
    flipped: bool
    outside_hu: int

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(Z, Y, X)``."""
        return (self.nz, self.size, self.size)

    def x_coords(self) -> np.ndarray:
        """Patient x (mm) of each canonical column, float64 ``(X,)``."""
        return (np.arange(self.size) + 0.5) * self.h - self.fov_mm / 2 - self.body_offset[0]

    def y_coords(self) -> np.ndarray:
        """Patient y (mm) of each canonical row, float64 ``(Y,)``."""
        return (np.arange(self.size) + 0.5) * self.h - self.fov_mm / 2 - self.body_offset[1]

    def z_coords(self) -> np.ndarray:
        """Patient z (mm) of each slice, float64 ``(Z,)``."""
        return np.arange(self.nz) * self.sz

    def to_voxel(self, xyz: np.ndarray) -> np.ndarray:
        """Patient ``(..., 3)`` xyz mm -> canonical fractional voxel ``(..., 3)`` zyx."""
        p = np.asarray(xyz, dtype=np.float64)
        i = (p[..., 0] + self.body_offset[0] + self.fov_mm / 2) / self.h - 0.5
        j = (p[..., 1] + self.body_offset[1] + self.fov_mm / 2) / self.h - 0.5
        k = p[..., 2] / self.sz
        return np.stack([k, j, i], axis=-1)

    def to_patient(self, zyx: np.ndarray) -> np.ndarray:
        """Canonical fractional voxel ``(..., 3)`` zyx -> patient ``(..., 3)`` xyz mm."""
        v = np.asarray(zyx, dtype=np.float64)
        x = (v[..., 2] + 0.5) * self.h - self.fov_mm / 2 - self.body_offset[0]
        y = (v[..., 1] + 0.5) * self.h - self.fov_mm / 2 - self.body_offset[1]
        return np.stack([x, y, v[..., 0] * self.sz], axis=-1)

    def fov_mask(self) -> np.ndarray:
        """bool ``(Y, X)``: True inside the scan circle (canonical grid)."""
        c = (np.arange(self.size) + 0.5) * self.h - self.fov_mm / 2
        return (c[:, None] ** 2 + c[None, :] ** 2) <= (self.fov_mm / 2) ** 2

    def canonical_scan(self, array: np.ndarray, scan_id: str, metadata: dict) -> CTScan:
        """CTScan of a canonical-grid array (identity direction)."""
        return CTScan(array, (self.sz, self.h, self.h), self.origin, np.eye(3), id=scan_id, metadata=metadata)

    def written_scan(self, array: np.ndarray, scan_id: str, metadata: dict) -> CTScan:
        """CTScan as written to LUNA16: the canonical one, or its flipped storage when ``flipped``."""
        if not self.flipped:
            return self.canonical_scan(array, scan_id, metadata)
        ox, oy, oz = self.origin
        extent = (self.size - 1) * self.h
        origin = (round(ox + extent, 6), round(oy + extent, 6), oz)
        flipped = np.ascontiguousarray(array[:, ::-1, ::-1])
        return CTScan(flipped, (self.sz, self.h, self.h), origin, FLIP_DIRECTION, id=scan_id, metadata=metadata)

    def written_voxel(self, canonical_zyx: np.ndarray) -> np.ndarray:
        """Canonical voxel ``(..., 3)`` zyx -> voxel of the written (possibly flipped) array."""
        v = np.array(canonical_zyx, dtype=np.float64, copy=True)
        if self.flipped:
            v[..., 1] = self.size - 1 - v[..., 1]
            v[..., 2] = self.size - 1 - v[..., 2]
        return v


def slice_count(chest_mm: float, sz: float, max_slices: int | None) -> tuple[int, float]:
    """``(nz, sz)`` covering ``chest_mm``; with a cap the spacing grows so the whole chest stays."""
    nz = int(round(chest_mm / sz)) + 1
    if max_slices is not None and nz > max_slices:
        nz = max_slices
        sz = chest_mm / (nz - 1)
    return nz, sz


def draw_geometry(
    rng: np.random.Generator, config: SynthConfig, size: int, scanner: np.random.Generator | None = None
) -> Geometry:
    """Random scanner geometry for a ``size`` x ``size`` matrix (all draws independent of ``size``).

    ``scanner`` (a generator of the scanner stream) draws the continuous pixel size and slice spacing of the
    randomized world when ``inplane_spacing_range_mm`` / ``slice_spacing_range_mm`` are set; the draws from
    ``rng`` are the same either way, so the rest of the patient does not move.
    """
    g = config.geometry
    lo, mode, hi = g.inplane_spacing_mm
    fov = float(round(512 * rng.triangular(lo, mode, hi)))
    sz0 = float(choice(rng, g.slice_spacing_mm, g.slice_spacing_weights))
    if g.inplane_spacing_range_mm is not None or g.slice_spacing_range_mm is not None:
        if scanner is None:
            raise ValueError("geometry.*_range_mm need the scanner stream (draw_geometry(..., scanner=...))")
        if g.inplane_spacing_range_mm is not None:
            fov = round(512 * uniform(scanner, g.inplane_spacing_range_mm), 1)
        if g.slice_spacing_range_mm is not None:
            sz0 = round(uniform(scanner, g.slice_spacing_range_mm), 3)
    thickness_factor = uniform(rng, g.slice_thickness_factor)
    chest = uniform(rng, g.chest_length_mm)
    body_offset = (uniform(rng, g.body_offset_mm), uniform(rng, g.body_offset_mm))
    centre = (uniform(rng, g.fov_centre_mm), uniform(rng, g.fov_centre_mm))
    origin_z = round(uniform(rng, g.origin_z_mm), 3)
    flipped = bool(rng.random() < g.flip_probability)
    outside = int(choice(rng, g.outside_fov_hu, g.outside_fov_weights))
    nz, sz = slice_count(chest, sz0, config.max_slices)
    h = fov / size
    origin = (round(centre[0] - fov / 2 + h / 2, 3), round(centre[1] - fov / 2 + h / 2, 3), origin_z)
    return Geometry(
        size=size,
        nz=nz,
        fov_mm=fov,
        h=h,
        sz=sz,
        thickness=sz * thickness_factor,
        chest_mm=chest,
        body_offset=body_offset,
        origin=origin,
        flipped=flipped,
        outside_hu=outside,
    )
