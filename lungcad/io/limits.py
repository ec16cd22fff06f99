"""Limits on what reading a scan may allocate, checked on declared sizes before any array is allocated.

A header can claim any size (a 3 MB file declaring 1024x1024x1500 voxels, a DimSize product that overflows 64 bits,
one DICOM slice 20 m away stretching the grid to thousands of slices). Every reader checks the voxel count it is about
to allocate with :func:`check_voxel_count`, in Python integers (no overflow), against :func:`max_voxels`:
``DEFAULT_MAX_VOXELS`` (2**30, 1,073,741,824 voxels: a 1024x1024x1024 scan, 2 GiB as int16 and 4 GiB as the float32
working copies the pipeline makes; a chest CT of 512x512x1000 slices is a quarter of it), or the environment variable
``LUNGCAD_MAX_VOXELS``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from lungcad.errors import ConfigError, CorruptScanError, GeometryError, ScanTooLargeError

DEFAULT_MAX_VOXELS = 2**30
#: Environment variable that overrides :data:`DEFAULT_MAX_VOXELS` (a positive integer).
MAX_VOXELS_ENV = "LUNGCAD_MAX_VOXELS"


def max_voxels() -> int:
    """The voxel limit in force: ``LUNGCAD_MAX_VOXELS`` when set, else :data:`DEFAULT_MAX_VOXELS`."""
    text = os.environ.get(MAX_VOXELS_ENV)
    if text is None or text.strip() == "":
        return DEFAULT_MAX_VOXELS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError(f"{MAX_VOXELS_ENV}={text!r} is not a positive integer", fix=f"unset it or give e.g. {2**31}")
    return value


def check_voxel_count(shape: Sequence[int], *, path: str | Path | None, what: str = "the scan") -> int:
    """The voxel count of ``shape`` (any length, Python integers: no overflow); ScanTooLargeError naming ``path``
    when it exceeds :func:`max_voxels` or a dimension is negative."""
    dims = [int(d) for d in shape]
    if any(d < 0 for d in dims):
        raise ScanTooLargeError(f"{what} has a negative size {'x'.join(map(str, dims))}", path=path)
    count = math.prod(dims)
    limit = max_voxels()
    if count > limit:
        raise ScanTooLargeError(
            f"{what} would be {'x'.join(map(str, dims))} = {count:,} voxels, over the limit of {limit:,}",
            path=path,
            fix=f"check the header; if the scan is really that large, set {MAX_VOXELS_ENV} to a larger number",
        )
    return count


#: The smallest scan the pipeline can process: along each axis (z, y, x), the first and last voxel centres must be at
#: least this far apart (mm), which also means at least 2 voxels per axis. Why 2 mm: the lung mask works on a coarse
#: grid of ``lung_mask.working_spacing_mm`` (2 mm in the bundled ``configs/preprocess.yaml``) made by integer
#: block-averaging (SimpleITK BinShrink), which fails on an image with fewer voxels along an axis than its shrink
#: factor; a scan spanning at least the working spacing has enough voxels along every axis, resampled to the target
#: spacing or not. (The U-Net pads its input, so it needs no more.) A single slice, a series whose slices all sit at
#: one position, or a MetaImage with a DimSize of 0 or 1 is refused when it is read.
MIN_EXTENT_MM = 2.0


def check_minimum_shape(
    shape_zyx: Sequence[int], spacing_zyx: Sequence[float], *, path: str | Path | None, what: str = "the scan"
) -> None:
    """Refuse a scan too small for the pipeline (see :data:`MIN_EXTENT_MM`): CorruptScanError naming ``path`` when
    an axis has no voxels, GeometryError when an axis spans less than :data:`MIN_EXTENT_MM` (one voxel, or voxels
    closer together than that), both with the minimum in the message."""
    dims = [int(d) for d in shape_zyx]
    spacing = [float(s) for s in spacing_zyx]
    minimum = f"at least 2 voxels and {MIN_EXTENT_MM:g} mm between the first and last voxel centres along each axis"
    size = "x".join(map(str, dims))
    if len(dims) != 3 or min(dims) < 1:
        raise CorruptScanError(f"{what} has no voxels (z, y, x size {size})", path=path, expected=minimum)
    extents = [(n - 1) * s for n, s in zip(dims, spacing)]
    short = [axis for axis, e in zip("zyx", extents) if not (math.isfinite(e) and e >= MIN_EXTENT_MM)]
    if short:
        span = " x ".join(f"{e:g}" for e in extents)
        raise GeometryError(
            f"{what} is too small to process: {size} voxels (z, y, x) spanning {span} mm "
            f"(too short along {', '.join(short)})",
            path=path,
            expected=minimum,
            fix="give a whole CT volume (not a single slice or an empty image)",
        )
