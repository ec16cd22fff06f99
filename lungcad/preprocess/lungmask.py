"""Classical lung segmentation, fast: the 3-D analysis runs on a coarse grid, the border is refined at
full resolution.

Steps (coarse grid of ``working_spacing_mm``, block-averaged so noise drops):

1. air = HU below ``air_threshold_hu``; air connected to the in-plane border of the volume is outside the
   body (room air, the table's gaps, the field-of-view padding) and removed;
2. the trachea is found near the midline in the most superior slices and region-grown below
   ``airway_threshold_hu`` (lowering the threshold when it leaks into emphysematous lung); trachea and
   main bronchi are removed;
3. the largest component is kept, and the second if it is at least ``second_lung_ratio`` of it (so merged
   lungs and one-lung scans work); bowel gas and small pockets go;
4. per lung: holes filled slice by slice (vessels, nodules), then a 3-D closing with a ball of
   ``closing_radius_mm`` so nodules attached to the chest wall (juxtapleural) stay inside the mask;
5. back on the full grid: the coarse mask's interior is kept, and in a one-coarse-voxel band around its
   border the full-resolution threshold decides, except where step 4 added tissue (nodules);
6. optional (``nodule_closing_mm > 0``): dents of the pleura found by step 4 (<= ``nodule_max_mm``) get
   an exact closing at full resolution in a small window, so that small juxtapleural nodules, which the
   coarse grid cannot resolve, stay inside (slower: 2-14 s more on 512x512x300).
"""

from __future__ import annotations

import logging

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from lungcad.io.itk import scan_to_sitk
from lungcad.preprocess.config import LungMaskConfig
from lungcad.preprocess.resample import reference_image
from lungcad.scan import CTScan

log = logging.getLogger(__name__)


def lung_mask(scan: CTScan, config: LungMaskConfig | None = None) -> np.ndarray:
    """Boolean lung mask, shape ``scan.shape`` (z, y, x): both lungs, without trachea and main bronchi,
    with vessels, nodules and juxtapleural nodules inside."""
    if config is None:
        from lungcad.preprocess.config import default_config

        config = default_config().lung_mask
    coarse_img, factors = _coarse(scan, config.working_spacing_mm)
    hu = sitk.GetArrayFromImage(coarse_img)
    spacing = np.asarray(coarse_img.GetSpacing()[::-1])
    voxel_ml = float(np.prod(spacing)) / 1000.0
    air = _inside_air(hu < config.air_threshold_hu)
    superior_last = scan.direction[2, 2] >= 0
    airway = _airway(hu, air, spacing, config, superior_last)
    if airway is not None:
        air &= ~ndimage.binary_dilation(airway, iterations=1)
    raw = _keep_lungs(air, voxel_ml, config)
    if not raw.any():
        log.warning(
            "%s: no lung found (no air pocket larger than %.0f mL inside the body)", scan.id, config.min_lung_ml
        )
        return np.zeros(scan.shape, dtype=bool)
    full = _fill_and_close(raw, spacing, config.closing_radius_mm)
    mask = _refine(scan, coarse_img, raw, full, config.air_threshold_hu)
    if config.nodule_closing_mm <= 0:
        return mask
    factors_zyx = np.asarray(factors[::-1])
    dents = full & ~raw
    labels, _ = ndimage.label(dents)
    on_border = np.unique(labels[dents & ndimage.binary_dilation(~full, iterations=1)])
    dents = np.isin(labels, on_border[on_border > 0])  # not the vessels filled inside the lung
    return _close_nodule_notches(mask, dents, factors_zyx, np.asarray(scan.spacing), config)


def _coarse(scan: CTScan, working_mm: float) -> tuple[sitk.Image, tuple[int, int, int]]:
    """Block-average the scan to about ``working_mm`` voxels (integer shrink factors, x, y, z order)."""
    factors = tuple(max(1, int(round(working_mm / s))) for s in scan.spacing_xyz)
    image = sitk.Cast(scan_to_sitk(scan), sitk.sitkFloat32)
    return sitk.BinShrink(image, factors), factors  # type: ignore[return-value]


def _inside_air(air: np.ndarray) -> np.ndarray:
    """Air components that do not touch the in-plane (y, x) border of any slice."""
    labels, n = ndimage.label(air)
    border = np.zeros(n + 1, dtype=bool)
    for edge in (labels[:, 0, :], labels[:, -1, :], labels[:, :, 0], labels[:, :, -1]):
        border[np.unique(edge)] = True
    border[0] = True
    return ~border[labels]


def _airway(
    hu: np.ndarray, air: np.ndarray, spacing: np.ndarray, config: LungMaskConfig, superior_last: bool
) -> np.ndarray | None:
    """Trachea + main bronchi on the coarse grid, or None when no trachea is seen."""
    seed = _trachea_seed(hu, air, spacing, config.airway_threshold_hu, superior_last)
    if seed is None:
        return None
    voxel_ml = float(np.prod(spacing)) / 1000.0
    for threshold in np.arange(config.airway_threshold_hu, -1000.0, -20.0):
        labels, _ = ndimage.label((hu < threshold) & air)
        region = labels == labels[seed]
        if labels[seed] and region.sum() * voxel_ml <= config.airway_max_ml:
            return region
    log.info("airway region-growing leaked into the lungs at every threshold: airways kept in the mask")
    return None


def _trachea_seed(
    hu: np.ndarray, air: np.ndarray, spacing: np.ndarray, threshold: float, superior_last: bool
) -> tuple[int, int, int] | None:
    """A voxel inside the trachea: a small round air region near the body midline in a superior slice."""
    slices_with_air = np.flatnonzero(air.any(axis=(1, 2)))
    if slices_with_air.size == 0:
        return None
    order = slices_with_air[::-1] if superior_last else slices_with_air
    pixel_cm2 = spacing[1] * spacing[2] / 100.0
    for z in order[: max(3, int(30 / spacing[0]))]:  # the top ~3 cm of air-bearing slices
        labels, n = ndimage.label((hu[z] < threshold) & air[z])
        if n == 0:
            continue
        body_x = np.flatnonzero((hu[z] > -500).any(axis=0))
        mid_x = (body_x[0] + body_x[-1]) / 2 if body_x.size else hu.shape[2] / 2
        half_width = (body_x[-1] - body_x[0]) / 2 if body_x.size else hu.shape[2] / 2
        areas = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, n + 1)) * pixel_cm2
        centres = ndimage.center_of_mass(labels > 0, labels, index=np.arange(1, n + 1))
        offsets = np.array([abs(c[1] - mid_x) for c in centres])
        ok = (areas >= 0.5) & (areas <= 8.0) & (offsets <= 0.25 * half_width)
        if ok.any():
            best = int(np.flatnonzero(ok)[np.argmin(offsets[ok])]) + 1
            yy, xx = np.argwhere(labels == best)[0]
            return int(z), int(yy), int(xx)
    return None


def _keep_lungs(air: np.ndarray, voxel_ml: float, config: LungMaskConfig) -> np.ndarray:
    """The largest air component, plus the second largest when it is big enough to be the other lung."""
    labels, n = ndimage.label(air)
    if n == 0:
        return np.zeros_like(air)
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, n + 1)) * voxel_ml
    order = np.argsort(sizes)[::-1]
    keep = [order[0] + 1] if sizes[order[0]] >= config.min_lung_ml else []
    if keep and n > 1 and sizes[order[1]] >= max(config.min_lung_ml, config.second_lung_ratio * sizes[order[0]]):
        keep.append(order[1] + 1)
    return np.isin(labels, keep)


def _fill_and_close(raw: np.ndarray, spacing: np.ndarray, radius_mm: float) -> np.ndarray:
    """Per lung component: fill holes slice by slice, then a 3-D closing with a ball of ``radius_mm``."""
    labels, n = ndimage.label(raw)
    out = np.zeros_like(raw)
    pad = (np.ceil(radius_mm / spacing) + 1).astype(int)
    for lab, box in enumerate(ndimage.find_objects(labels), start=1):
        lo = [max(b.start - p, 0) for b, p in zip(box, pad)]
        hi = [min(b.stop + p, s) for b, p, s in zip(box, pad, raw.shape)]
        window = tuple(slice(a, b) for a, b in zip(lo, hi))
        lung = labels[window] == lab
        padded = np.pad(lung, [(p, p) for p in pad])
        grown = ndimage.distance_transform_edt(~padded, sampling=spacing) <= radius_mm
        closed = ndimage.distance_transform_edt(grown, sampling=spacing) > radius_mm
        closed = closed[tuple(slice(p, -p) for p in pad)] | lung
        for z in range(closed.shape[0]):
            closed[z] = ndimage.binary_fill_holes(closed[z])
        out[window] |= closed
    return out


def _refine(scan: CTScan, coarse: sitk.Image, raw: np.ndarray, full: np.ndarray, threshold: float) -> np.ndarray:
    """Full-resolution mask: the coarse interior, plus the band around its border decided by the threshold
    (or kept where filling/closing added tissue)."""
    inner = ndimage.binary_erosion(full, iterations=1)
    outer = ndimage.binary_dilation(full, iterations=1)
    added = ndimage.binary_dilation(full & ~raw, iterations=1) & full
    ref = reference_image(scan)

    def up(mask: np.ndarray) -> np.ndarray:
        img = sitk.GetImageFromArray(mask.astype(np.uint8))
        img.CopyInformation(coarse)
        out = sitk.Resample(img, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        return sitk.GetArrayFromImage(out).astype(bool)

    mask = up(inner | added)
    mask |= up(outer & ~inner) & (scan.array < threshold)
    return mask


def _close_nodule_notches(
    mask: np.ndarray, concavities: np.ndarray, factors_zyx: np.ndarray, spacing_zyx: np.ndarray, config: LungMaskConfig
) -> np.ndarray:
    """Exact full-resolution closing in small windows around nodule-sized coarse concavities.

    ``concavities`` (coarse grid) are what the coarse closing added; components no larger than
    ``nodule_max_mm`` (a juxtapleural nodule's dent in the pleura) get a 3-D closing with a ball of
    ``nodule_closing_mm`` on the full grid, which the coarse grid cannot resolve for small nodules.
    """
    labels, n = ndimage.label(concavities)
    radius = config.nodule_closing_mm
    margin = (np.ceil(radius / spacing_zyx) + 2).astype(int)
    coarse_mm = factors_zyx * spacing_zyx
    for box in ndimage.find_objects(labels):
        extent_mm = np.array([b.stop - b.start for b in box]) * coarse_mm
        if np.any(extent_mm > config.nodule_max_mm):
            continue
        lo = [max(b.start * f - m, 0) for b, f, m in zip(box, factors_zyx, margin)]
        hi = [min(b.stop * f + m, s) for b, f, m, s in zip(box, factors_zyx, margin, mask.shape)]
        window = tuple(slice(a, b) for a, b in zip(lo, hi))
        local = np.pad(mask[window], [(m, m) for m in margin], mode="edge")
        grown = ndimage.distance_transform_edt(~local, sampling=spacing_zyx) <= radius
        closed = ndimage.distance_transform_edt(grown, sampling=spacing_zyx) > radius
        mask[window] |= closed[tuple(slice(m, -m) for m in margin)]
    return mask
