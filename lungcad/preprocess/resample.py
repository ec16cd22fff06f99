"""Resampling with SimpleITK that keeps world coordinates exact.

The resampled grid keeps the scan's origin (centre of voxel 0) and direction and covers the same
extent, so a world point has the same meaning before and after: only its voxel index changes.
"""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk

from lungcad.io.hu import PADDING_HU
from lungcad.io.itk import scan_to_sitk
from lungcad.io.limits import check_voxel_count
from lungcad.scan import CTScan


def resampled_size(shape_zyx: tuple[int, ...], spacing_zyx, new_spacing_zyx) -> tuple[int, int, int]:
    """Voxel count (z, y, x) of the grid with ``new_spacing_zyx`` covering the same voxel centres' extent."""
    return tuple(  # type: ignore[return-value]
        int(math.floor((n - 1) * s / ns + 1e-6)) + 1 for n, s, ns in zip(shape_zyx, spacing_zyx, new_spacing_zyx)
    )


def reference_image(scan: CTScan, spacing_zyx=None, size_zyx=None) -> sitk.Image:
    """An empty uint8 SimpleITK image with the scan's origin/direction and the given (or its own) grid."""
    spacing_zyx = scan.spacing if spacing_zyx is None else spacing_zyx
    size_zyx = scan.shape if size_zyx is None else size_zyx
    ref = sitk.Image([int(v) for v in size_zyx[::-1]], sitk.sitkUInt8)
    ref.SetSpacing([float(v) for v in spacing_zyx[::-1]])
    ref.SetOrigin(scan.origin)
    ref.SetDirection(tuple(scan.direction.ravel()))
    return ref


def resample_scan(scan: CTScan, spacing_zyx: tuple[float, float, float]) -> CTScan:
    """Linear resampling of a scan's HU to ``spacing_zyx`` mm (same origin and direction), int16 HU.

    Raises:
        ScanTooLargeError: the resampled grid would exceed the voxel limit (:mod:`lungcad.io.limits`), e.g. a
            PixelSpacing of 60 mm (a field of view of metres); checked before anything is allocated.
    """
    if np.allclose(scan.spacing, spacing_zyx, rtol=0, atol=1e-6):
        return scan
    size = resampled_size(scan.shape, scan.spacing, spacing_zyx)
    spacing_text = " x ".join(f"{s:g}" for s in scan.spacing)
    target_text = " x ".join(f"{float(s):g}" for s in spacing_zyx)
    check_voxel_count(
        size,
        path=scan.source if scan.source is not None else scan.id,
        what=f"the scan resampled from {spacing_text} mm to {target_text} mm (z, y, x)",
    )
    image = sitk.Cast(scan_to_sitk(scan), sitk.sitkFloat32)
    out = sitk.Resample(
        image,
        reference_image(scan, spacing_zyx, size),
        sitk.Transform(),
        sitk.sitkLinear,
        float(PADDING_HU),
        sitk.sitkFloat32,
    )
    array = np.rint(sitk.GetArrayViewFromImage(out)).astype(np.int16)
    return scan.with_array(array, spacing=tuple(float(s) for s in spacing_zyx))


def resample_mask(mask: np.ndarray, source: CTScan, target: CTScan) -> np.ndarray:
    """Nearest-neighbour resampling of a bool/label ``mask`` on ``source``'s grid onto ``target``'s grid."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(mask.astype(np.uint8)))
    image.SetSpacing(tuple(source.spacing_xyz))
    image.SetOrigin(source.origin)
    image.SetDirection(tuple(source.direction.ravel()))
    out = sitk.Resample(
        image,
        reference_image(target, target.spacing, target.shape),
        sitk.Transform(),
        sitk.sitkNearestNeighbor,
        0,
        sitk.sitkUInt8,
    )
    result = sitk.GetArrayFromImage(out)
    return result.astype(bool) if mask.dtype == bool else result.astype(mask.dtype)
