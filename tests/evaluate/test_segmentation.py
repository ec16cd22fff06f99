"""Dice, sphere coverage and nodule mask coverage on hand-made masks."""

from __future__ import annotations

import numpy as np
import pytest

from lungcad.evaluate.segmentation import dice, nodule_mask_coverage, sphere_coverage
from lungcad.scan import CTScan


def test_dice_of_hand_made_masks():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2] = True  # 8 pixels
    b[1:3] = True  # 8 pixels, 4 shared
    assert dice(a, b) == 0.5 and dice(a, a) == 1.0 and dice(a & False, b & False) == 0.0


def test_sphere_coverage_half_a_sphere_and_one_outside(linear_scan):
    scan = linear_scan(shape=(20, 20, 20), spacing=(1.0, 1.0, 1.0), origin=(-10.0, -10.0, -10.0))
    centre_zyx = np.array([10.0, 10.0, 10.0])
    centre = scan.voxel_to_world(centre_zyx)
    mask = np.zeros(scan.shape, bool)
    mask[:, :, 11:] = True  # the half beyond the centre's x column (which is left out)
    fractions = sphere_coverage(scan, mask, np.array([centre, centre + 100.0]), np.array([9.0, 4.0]))
    assert 0.4 < fractions[0] < 0.5  # a little under half: the centre plane belongs to the other side
    assert np.isnan(fractions[1])  # wholly outside the volume
    within = np.zeros(scan.shape, bool)
    within[:, :, 11:] = True
    assert sphere_coverage(scan, mask, centre[None], np.array([9.0]), within=within)[0] == 1.0


def test_nodule_mask_coverage_reads_truth_labels_on_another_grid_and_orientation(linear_scan):
    """The mask is on a 1 mm grid, the truth labels on a flipped 0.5 mm grid: a nodule's voxels are the label voxels
    in its sphere that are lung, so a sphere reaching into the (unlabelled) chest wall is judged on its lung part
    only, and lung outside the mask's grid (a crop that lost it) counts as missed."""
    grid = linear_scan(shape=(20, 20, 20), spacing=(1.0, 1.0, 1.0), origin=(-10.0, -10.0, -10.0))
    flip = np.diag([-1.0, -1.0, 1.0])
    labels = CTScan(np.zeros((40, 40, 40), np.uint8), (0.5, 0.5, 0.5), (9.75, 9.75, -9.75), flip)
    world = labels.voxel_to_world(np.argwhere(np.ones(labels.shape, bool))).reshape(*labels.shape, 3)
    labels = labels.with_array(np.where(world[..., 0] < 1.6, 3, 0).astype(np.uint8))  # lung where x < 1.6 mm
    centre = np.array([[0.0, 0.0, 0.0]])
    full = np.ones(grid.shape, bool)
    assert nodule_mask_coverage(grid, full, labels, centre, np.array([8.0]))[0] == 1.0
    mask = np.zeros(grid.shape, bool)
    mask[:, :, :10] = True  # voxel centres x <= -1 mm: holds the label voxels at x < -0.5 mm
    part = nodule_mask_coverage(grid, mask, labels, centre, np.array([8.0]))[0]
    tissue = (np.linalg.norm(world, axis=-1) <= 4.0) & (world[..., 0] < 1.6)  # the nodule's lung voxels
    assert part == pytest.approx((tissue & (world[..., 0] < -0.5)).sum() / tissue.sum(), abs=1e-9)
    assert part > sphere_coverage(grid, mask, centre, np.array([8.0]))[0]  # the wall part counts for nothing
    cropped = linear_scan(shape=(20, 20, 20), spacing=(1.0, 1.0, 1.0), origin=(30.0, 30.0, 30.0))  # misses it
    assert nodule_mask_coverage(cropped, np.ones(cropped.shape, bool), labels, centre, np.array([8.0]))[0] == 0.0
    assert np.isnan(nodule_mask_coverage(grid, full, labels, centre + 50.0, np.array([4.0]))[0])
