"""Resampling and cropping keep world coordinates exact."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import rotation

from lungcad.preprocess import bounding_box, crop_scan, resample_mask, resample_scan, window_normalise
from lungcad.preprocess.resample import resampled_size
from lungcad.scan import CTScan


def _blob_scan(direction, spacing=(2.5, 0.7, 0.8), shape=(20, 60, 50), point=(3.0, -4.0, 10.0)):
    """Air with a 6 mm bright ball at world ``point``."""
    # origin chosen so that the point sits off-centre inside the volume, whatever the direction
    offset_ijk = (np.asarray(shape[::-1]) * [0.4, 0.55, 0.45]) * np.asarray(spacing[::-1])
    origin = np.asarray(point) - np.asarray(direction) @ offset_ijk
    geom = CTScan(np.zeros(shape, np.int16), spacing, tuple(origin), direction)
    zyx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    dist = np.linalg.norm(geom.voxel_to_world(zyx) - np.asarray(point), axis=1).reshape(shape)
    return geom.with_array(np.where(dist < 6.0, 1000, -1000).astype(np.int16)), np.asarray(point)


def _centroid_world(scan: CTScan, threshold=0) -> np.ndarray:
    weights = np.clip(scan.array.astype(float) - threshold, 0, None)
    zyx = np.argwhere(weights > 0)
    w = weights[weights > 0]
    return scan.voxel_to_world((zyx * w[:, None]).sum(0) / w.sum())


@pytest.mark.parametrize("direction", [np.eye(3), np.diag([-1.0, -1.0, 1.0]), rotation("z", 30)])
def test_resample_keeps_world_position(direction):
    scan, point = _blob_scan(direction)
    out = resample_scan(scan, (1.0, 1.0, 1.0))
    assert out.spacing == (1.0, 1.0, 1.0)
    assert out.shape == resampled_size(scan.shape, scan.spacing, (1.0, 1.0, 1.0))
    np.testing.assert_allclose(out.origin, scan.origin)
    np.testing.assert_allclose(_centroid_world(out), point, atol=0.3)
    np.testing.assert_allclose(out.extent_world.max(0), scan.extent_world.max(0), atol=1.0)


def test_resample_mask_nearest_is_binary_and_aligned():
    scan, point = _blob_scan(np.eye(3))
    fine = resample_scan(scan, (1.0, 0.5, 0.5))
    mask = resample_mask(scan.array > 0, scan, fine)
    assert mask.dtype == bool and mask.shape == fine.shape
    zyx = np.argwhere(mask).mean(0)
    np.testing.assert_allclose(fine.voxel_to_world(zyx), point, atol=0.8)


def test_crop_moves_origin_to_box_start():
    scan, point = _blob_scan(rotation("x", 15))
    box = bounding_box(scan.array > 0, scan.spacing, margin_mm=5.0)
    cropped = crop_scan(scan, box)
    assert cropped.shape == box.shape and cropped.shape < scan.shape
    np.testing.assert_allclose(cropped.voxel_to_world([0, 0, 0]), scan.voxel_to_world(box.start))
    np.testing.assert_allclose(_centroid_world(cropped), _centroid_world(scan), atol=1e-9)
    # margin: at least 5 mm of background on each side (unless the volume ends)
    assert box.start[1] >= 0 and (box.shape[1] - np.ptp(np.argwhere(scan.array > 0)[:, 1]) - 1) * 0.7 >= 2 * 5.0 - 1.4


def test_bounding_box_of_empty_mask_is_whole_volume():
    box = bounding_box(np.zeros((4, 5, 6), bool), (1, 1, 1), 3.0)
    assert box.start == (0, 0, 0) and box.stop == (4, 5, 6)


def test_window_normalise():
    hu = np.array([-2000, -1200, -300, 600, 3000], np.int16)
    np.testing.assert_allclose(window_normalise(hu, (-1200, 600)), [0, 0, 0.5, 1, 1])
    np.testing.assert_allclose(window_normalise(hu, (-1200, 600), "none"), [-1200, -1200, -300, 600, 600])
