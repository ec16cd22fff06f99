"""Patch geometry: a bright point at a known world position lands on the patch centre for odd spacings
and orientations; flipped scans give the same patch; edges pad with air."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from helpers import rotation

from lungcad.patches import PatchConfig, candidate_spacing, extract_patches
from lungcad.scan import CTScan

CUBE = PatchConfig(size=15, spacing_mm=1.0, mode="3d", hu_window=(-1000.0, 1000.0))
PLANES = PatchConfig(size=15, spacing_mm=1.0, mode="2.5d", hu_window=(-1000.0, 1000.0))
NINE = PatchConfig(size=15, spacing_mm=1.0, mode="9view", hu_window=(-1000.0, 1000.0))


def _scan_with_ball(
    direction, spacing=(2.3, 0.67, 0.81), shape=(30, 80, 70), point=(12.3, -40.7, -88.1), radius_mm=3.0
):
    """Air, and a ball of +1000 HU (3 mm radius unless told) at world ``point`` (mm)."""
    offset = np.asarray(shape[::-1]) * np.asarray(spacing[::-1]) * [0.45, 0.55, 0.5]
    origin = np.asarray(point) - np.asarray(direction) @ offset
    geom = CTScan(np.zeros(shape, np.int16), spacing, tuple(origin), direction)
    zyx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    dist = np.linalg.norm(geom.voxel_to_world(zyx) - np.asarray(point), axis=1).reshape(shape)
    return geom.with_array(np.where(dist <= radius_mm, 1000, -1000).astype(np.int16)), np.asarray(point)


def _centroid(values: np.ndarray) -> np.ndarray:
    w = np.clip(values - 0.5, 0, None)
    idx = np.argwhere(w > 0)
    return (idx * w[w > 0][:, None]).sum(0) / w.sum()


@pytest.mark.parametrize("direction", [np.eye(3), np.diag([-1.0, -1.0, 1.0]), rotation("z", 33) @ rotation("x", 10)])
def test_bright_ball_lands_in_cube_and_plane_centres(direction):
    scan, point = _scan_with_ball(direction)
    cube = extract_patches(scan, point[None], CUBE)
    assert cube.shape == (1, 15, 15, 15, 1) and cube.dtype == np.float32
    np.testing.assert_allclose(_centroid(cube[0, ..., 0]), [7, 7, 7], atol=0.35)
    for config in (PLANES, NINE):
        planes = extract_patches(scan, point[None], config)
        assert planes.shape == (1, 15, 15, config.channels) and config.channels == {"2.5d": 3, "9view": 9}[config.mode]
        for c in range(config.channels):
            np.testing.assert_allclose(_centroid(planes[0, :, :, c]), [7, 7], atol=0.35)
        assert planes[0, 7, 7].min() > 0.9 and cube[0, 0, 0, 0, 0] < 0.05
    nine, three = (extract_patches(scan, point[None], c) for c in (NINE, PLANES))
    np.testing.assert_array_equal(nine[..., :3], three)  # the first 3 views are the 2.5-D ones


def _scan_with_tube(direction_xyz, scan_direction, point=(12.3, -40.7, -88.1), radius_mm=1.5):
    """Air, and a straight tube (vessel) of +1000 HU through world ``point`` along ``direction_xyz``."""
    scan, _ = _scan_with_ball(scan_direction, spacing=(1.0, 0.8, 0.8), shape=(40, 60, 60), point=point)
    zyx = np.stack(np.meshgrid(*[np.arange(n) for n in scan.shape], indexing="ij"), -1).reshape(-1, 3)
    rel = scan.voxel_to_world(zyx) - np.asarray(point)
    d = np.asarray(direction_xyz, float) / np.linalg.norm(direction_xyz)
    dist = np.linalg.norm(rel - np.outer(rel @ d, d), axis=1).reshape(scan.shape)
    return scan.with_array(np.where(dist <= radius_mm, 1000, -1000).astype(np.int16)), np.asarray(point)


@pytest.mark.parametrize("scan_direction", [np.eye(3), rotation("z", 27)])
def test_nine_views_show_a_diagonal_vessel_as_a_line_in_the_plane_along_it(scan_direction):
    """A vessel along world (x + y) / sqrt(2): a line through the centre along the columns of the z-axis plane
    diagonal in x-y (view 7), crossing the rows of axial and the other z-axis diagonal view only at the centre."""
    scan, point = _scan_with_tube((1.0, 1.0, 0.0), scan_direction)
    views = extract_patches(scan, point[None], NINE)[0]
    bright = views > 0.5
    assert bright[7, :, 7].all() and bright[:6, :, 7].sum() == 0  # row 7 of the view along the vessel, only
    assert bright[7, :, 8].sum() <= 3  # across it: a cross-section (~3 mm)
    axial = bright[:, :, 0]  # rows y, columns x: the line y = x
    assert np.diagonal(axial).all() and not axial[0, 14] and not axial[14, 0]
    assert 2 <= bright[:, :, 1].sum() <= 15  # coronal (z, x): an oblique cut of the tube, a blob


def test_flipped_scan_gives_the_same_patch():
    straight, point = _scan_with_ball(np.eye(3), spacing=(1.0, 1.0, 1.0), shape=(20, 40, 40))
    flipped = CTScan(
        straight.array[:, ::-1, ::-1].copy(),
        straight.spacing,
        tuple(straight.voxel_to_world([0, 39, 39])),
        np.diag([-1.0, -1.0, 1.0]),
    )
    np.testing.assert_allclose(flipped.voxel_to_world([3, 4, 5]), straight.voxel_to_world([3, 35, 34]))
    a = extract_patches(straight, point + [1.5, -0.5, 0.0], CUBE)
    b = extract_patches(flipped, point + [1.5, -0.5, 0.0], CUBE)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_many_candidates_at_once_and_air_outside_volume():
    scan, point = _scan_with_ball(np.eye(3))
    centres = np.stack([point, point + [3.0, 0, 0], scan.voxel_to_world([0, 0, 0]) - 20.0])
    out = extract_patches(scan, centres, CUBE)
    assert out.shape == (3, 15, 15, 15, 1)
    np.testing.assert_allclose(_centroid(out[1, ..., 0]), [7, 7, 4], atol=0.35)  # shifted 3 mm along +x
    assert np.allclose(out[2], 0.0, atol=1e-6)  # all air (-1024 HU clips to the window floor)


def test_size_scaled_patches_show_small_and_large_nodules_at_the_same_share_of_the_patch():
    config = PatchConfig(size=15, spacing_mm=0.5, mode="3d", hu_window=(-1000.0, 1000.0), diameters_across=2.5)
    widths = []
    for radius in (3.0, 7.5):
        scan, point = _scan_with_ball(np.eye(3), spacing=(1.0, 0.7, 0.7), shape=(40, 60, 60), radius_mm=radius)
        spacing = candidate_spacing(config, np.array([2 * radius]))
        assert spacing == pytest.approx([2.5 * 2 * radius / 15])
        cube = extract_patches(scan, point[None], config, spacing)[0, ..., 0]
        np.testing.assert_allclose(_centroid(cube), [7, 7, 7], atol=0.35)
        widths.append(int((cube > 0.5).sum()))  # patch voxels inside the ball
    ball = 4 / 3 * np.pi * (15 / 2.5 / 2) ** 3  # a ball 1/2.5 of the patch side across: ~113 voxels
    assert widths == pytest.approx([ball, ball], rel=0.25)  # (a fixed 0.5 mm step: ~900 and all 3375)
    # the finest step is spacing_mm; a fixed-step config needs no diameters; a scaled one does
    assert candidate_spacing(config, np.array([1.0, np.nan])) == pytest.approx([0.5, 0.5])
    assert candidate_spacing(CUBE, None) is None
    with pytest.raises(ValueError, match="diameter_mm"):
        candidate_spacing(config, None)


@pytest.mark.parametrize("mode", ["2.5d", "3d"])
def test_two_scales_share_the_centre_and_the_finer_one_shows_a_small_nodule_twice_as_wide(mode):
    config = PatchConfig(size=15, spacing_mm=1.0, mode=mode, hu_window=(-1000.0, 1000.0), scales=(1.0, 0.5))
    scan, point = _scan_with_ball(rotation("z", 20), spacing=(0.9, 0.6, 0.6), shape=(40, 70, 70), radius_mm=2.0)
    out = extract_patches(scan, point[None], config)[0]
    planes = 3 if mode == "2.5d" else 1
    assert config.channels == 2 * planes and out.shape == (15,) * (2 if mode == "2.5d" else 3) + (2 * planes,)
    for c in range(config.channels):
        np.testing.assert_allclose(_centroid(out[..., c]), [7] * (out.ndim - 1), atol=0.35)
    one = extract_patches(scan, point[None], replace(config, scales=(1.0,)))[0]
    np.testing.assert_array_equal(out[..., :planes], one)  # the first scale is the one-scale patch
    coarse, fine = (out[..., :planes] > 0.5).sum(), (out[..., planes:] > 0.5).sum()
    assert fine / coarse == pytest.approx(2.0 ** (out.ndim - 1), rel=0.3)  # a 4 mm ball: 2x the voxels per side
    with pytest.raises(ValueError, match="scales"):
        PatchConfig(size=15, spacing_mm=1.0, mode=mode, hu_window=(-1000.0, 1000.0), scales=(1.0, 0.0))
