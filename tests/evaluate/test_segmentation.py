"""Dice and sphere coverage on hand-made masks."""

from __future__ import annotations

import numpy as np

from lungcad.evaluate.segmentation import dice, sphere_coverage


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
