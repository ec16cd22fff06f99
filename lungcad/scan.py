"""The one CT volume type that flows through every lungcad stage.

Conventions (the same as ITK / SimpleITK / LUNA16, world coordinates in DICOM LPS millimetres):

- ``array`` is indexed ``[z, y, x]`` (slice, row, column), int16 Hounsfield units.
- ``spacing`` is ``(z, y, x)`` in mm, matching the array axes.
- ``origin`` is ``(x, y, z)`` in world mm: the centre of voxel ``[0, 0, 0]``.
- ``direction`` is the 3x3 ITK direction matrix ``D``: column ``j`` is the world direction of index axis
  ``j`` in ``(x, y, z)`` index order. A world point is ``P = origin + D @ (spacing_xyz * ijk)``
  (column vectors), so ``ijk = inv(D) @ (P - origin) / spacing_xyz``. The row-vector form found in many
  LUNA16 scripts is wrong for oblique ``D``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lungcad.errors import GeometryError, OutsideVolumeError

OutsidePolicy = Literal["raise", "nan", "keep"]

#: The lung window (HU) of the notebook picture (:meth:`CTScan._repr_html_`), as the report's.
LUNG_WINDOW_HU = (-1350.0, 150.0)


def _times(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``points @ matrix`` for (..., 3) points and a 3x3 matrix, as three column updates: a BLAS call for an
    (M, 3) by (3, 3) product starts threads that cost 10-30x the arithmetic on a loaded machine (226 against 8 ms
    for 344k points: the picture and patch samplers' grids)."""
    return points[..., 0, None] * matrix[0] + points[..., 1, None] * matrix[1] + points[..., 2, None] * matrix[2]


@dataclass(frozen=True, eq=False)
class CTScan:
    """A CT volume in Hounsfield units with its exact world geometry.

    Attributes:
        array: int16 HU, shape ``(Z, Y, X)``.
        spacing: voxel size ``(z, y, x)`` in mm.
        origin: world position ``(x, y, z)`` mm of the centre of voxel ``[0, 0, 0]``.
        direction: 3x3 direction cosines (ITK convention, columns = index axes x, y, z).
        id: LUNA16 seriesuid (``.mhd`` stem) or DSB patient id (DICOM folder name).
        metadata: useful tags (``series_uid``, ``modality``, ``patient_id``, ``slice_files`` ...).
        warnings: what the loader had to repair or assume, one sentence each.
        source: the file or folder read, if any.
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    id: str = "scan"
    metadata: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    source: Path | None = None

    def __post_init__(self) -> None:
        arr = np.asarray(self.array)
        if arr.ndim != 3:
            raise GeometryError(f"CT array must be 3-D (z, y, x), got shape {arr.shape}", path=self.source)
        direction = np.asarray(self.direction, dtype=np.float64).reshape(3, 3)
        if abs(abs(np.linalg.det(direction)) - 1.0) > 1e-3:
            raise GeometryError(
                f"direction matrix is not orthonormal (det {np.linalg.det(direction):.4f})", path=self.source
            )
        spacing = tuple(float(s) for s in self.spacing)
        if len(spacing) != 3 or min(spacing) <= 0:
            raise GeometryError(f"spacing must be three positive mm values, got {self.spacing}", path=self.source)
        object.__setattr__(self, "array", arr)
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", tuple(float(o) for o in self.origin))
        object.__setattr__(self, "direction", direction)
        object.__setattr__(self, "warnings", tuple(self.warnings))
        object.__setattr__(self, "metadata", dict(self.metadata))

    # ------------------------------------------------------------------ geometry
    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(Z, Y, X)``."""
        return tuple(int(n) for n in self.array.shape)  # type: ignore[return-value]

    @property
    def spacing_xyz(self) -> np.ndarray:
        """Spacing in ``(x, y, z)`` order, mm."""
        return np.asarray(self.spacing[::-1], dtype=np.float64)

    @property
    def affine(self) -> np.ndarray:
        """4x4 matrix mapping homogeneous index ``(x, y, z, 1)`` (i, j, k order) to world mm."""
        aff = np.eye(4)
        aff[:3, :3] = self.direction * self.spacing_xyz[None, :]
        aff[:3, 3] = self.origin
        return aff

    def voxel_to_world(self, zyx: np.ndarray | tuple | list) -> np.ndarray:
        """Map voxel coordinates ``(z, y, x)`` (may be fractional) to world ``(x, y, z)`` mm.

        Accepts one point (shape ``(3,)``) or ``(N, 3)``; returns the same leading shape.
        """
        pts = np.asarray(zyx, dtype=np.float64)
        ijk = pts[..., ::-1]
        return np.asarray(self.origin) + _times(ijk * self.spacing_xyz, self.direction.T)

    def world_to_voxel(self, xyz: np.ndarray | tuple | list, outside: OutsidePolicy = "raise") -> np.ndarray:
        """Map world ``(x, y, z)`` mm to fractional voxel coordinates ``(z, y, x)``.

        A point is inside when every coordinate lies within ``[-0.5, n - 0.5]`` (the voxel's extent).
        ``outside``: ``"raise"`` (default) raises :class:`OutsideVolumeError`; ``"nan"`` returns NaN rows
        for outside points; ``"keep"`` returns the unchecked coordinates.
        """
        pts = np.asarray(xyz, dtype=np.float64)
        ijk = _times(pts - np.asarray(self.origin), np.linalg.inv(self.direction).T) / self.spacing_xyz
        zyx = ijk[..., ::-1]
        if outside == "keep":
            return zyx
        inside = self.contains_voxel(zyx)
        if outside == "raise":
            if not np.all(inside):
                bad = np.atleast_2d(pts)[~np.atleast_1d(inside)][0]
                raise OutsideVolumeError(
                    f"world point ({bad[0]:.2f}, {bad[1]:.2f}, {bad[2]:.2f}) mm is outside scan {self.id} "
                    f"(shape z,y,x {self.shape})",
                    path=self.source,
                    fix="check the coordinate's scan id and axis order (world x, y, z in mm)",
                )
            return zyx
        if outside == "nan":
            zyx = np.array(zyx, copy=True)
            zyx[~inside] = np.nan
            return zyx
        raise ValueError(f"outside must be 'raise', 'nan' or 'keep', got {outside!r}")

    def world_to_index(self, xyz: np.ndarray | tuple | list) -> np.ndarray:
        """Nearest integer voxel index ``(z, y, x)`` of world points; raises if any is outside."""
        return np.rint(self.world_to_voxel(xyz, outside="raise")).astype(np.int64)

    def contains_voxel(self, zyx: np.ndarray) -> np.ndarray:
        """Boolean mask: which fractional ``(z, y, x)`` voxel coordinates fall inside the grid."""
        pts = np.asarray(zyx, dtype=np.float64)
        upper = np.asarray(self.shape, dtype=np.float64) - 0.5
        return np.all((pts >= -0.5) & (pts <= upper), axis=-1)

    @property
    def extent_world(self) -> np.ndarray:
        """World ``(x, y, z)`` mm of the 8 corner voxel centres, shape ``(8, 3)``."""
        nz, ny, nx = (n - 1 for n in self.shape)
        corners = np.array([[z, y, x] for z in (0, nz) for y in (0, ny) for x in (0, nx)], dtype=np.float64)
        return self.voxel_to_world(corners)

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        """One line: id, shape, spacing, HU range, source (the HU range reads the whole array: ~0.01-0.05 s at 10^8
        voxels; the array itself is never printed)."""
        arr = self.array
        hu = f"{arr.min()}..{arr.max()}" if arr.size else "empty"
        spacing = ", ".join(f"{s:g}" for s in self.spacing)
        source = "" if self.source is None else f", source={str(self.source)!r}"
        return (
            f"CTScan(id={self.id!r}, shape_zyx={self.shape}, spacing_zyx_mm=({spacing}), HU {hu}, {arr.dtype}{source})"
        )

    def _repr_html_(self) -> str:
        """Jupyter's view: :meth:`__repr__` and the middle axial slice in the lung window (PNG, at most 256 px)."""
        import html

        return (
            f"<div><code>{html.escape(repr(self))}</code><br>"
            f'<img src="data:image/png;base64,{self.slice_png_base64()}" alt="axial slice {self.shape[0] // 2}" '
            f'title="axial slice {self.shape[0] // 2} of {self.shape[0]}, lung window"></div>'
        )

    def slice_png_base64(self, index: int | None = None, max_side: int = 256) -> str:
        """Axial slice ``index`` (default: the middle one) in the lung window as base64 PNG, shown in radiological
        convention for axis-aligned scans (patient's right on the left, anterior up), at most ``max_side`` px."""
        import base64
        import io

        from matplotlib.image import imsave

        k = self.shape[0] // 2 if index is None else index
        image = self.array[k]
        if self.direction[0, 0] < 0:  # columns run towards the patient's right (LPS x decreasing)
            image = image[:, ::-1]
        if self.direction[1, 1] < 0:  # rows run towards anterior
            image = image[::-1, :]
        step = max(1, -(-max(image.shape) // max_side))
        lo, hi = LUNG_WINDOW_HU
        buffer = io.BytesIO()
        imsave(buffer, image[::step, ::step], cmap="gray", vmin=lo, vmax=hi, format="png")
        return base64.b64encode(buffer.getvalue()).decode("ascii")

    # ------------------------------------------------------------------ helpers
    def with_array(self, array: np.ndarray, **changes: Any) -> CTScan:
        """A copy with another array (same geometry unless ``changes`` say otherwise)."""
        return replace(self, array=array, **changes)

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable description (what ``lungcad inspect`` prints)."""
        arr = self.array
        return {
            "id": self.id,
            "source": None if self.source is None else str(self.source),
            "series_uid": self.metadata.get("series_uid"),
            "modality": self.metadata.get("modality"),
            "shape_zyx": list(self.shape),
            "slices": self.shape[0],
            "spacing_zyx_mm": [round(s, 6) for s in self.spacing],
            "origin_xyz_mm": [round(o, 6) for o in self.origin],
            "direction": [[round(float(v), 6) for v in row] for row in self.direction],
            "hu_range": [int(arr.min()), int(arr.max())] if arr.size else None,
            "dtype": str(arr.dtype),
            "warnings": list(self.warnings),
            "metadata": {k: v for k, v in self.metadata.items() if _jsonable(v)},
        }


def _jsonable(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, type(None))) or (
        isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float)) for v in value)
    )
