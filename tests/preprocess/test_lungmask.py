"""Lung segmentation on geometric chests: two lungs, one lung, merged lungs, body cut by the field of view;
trachea and main bronchi out, juxtapleural nodule in."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import simple_chest

from lungcad.evaluate.segmentation import dice, juxtapleural_coverage
from lungcad.preprocess import default_config, lung_mask


@pytest.mark.parametrize("lungs", ["two", "one", "merged"])
@pytest.mark.parametrize("edge", [False, True], ids=["fov-inside", "body-touches-edge"])
def test_lung_mask_cases(lungs, edge):
    scan, truth, nodule = simple_chest(lungs=lungs, body_touches_edge=edge)
    mask = lung_mask(scan, default_config().lung_mask)
    assert mask.shape == scan.shape and mask.dtype == bool
    assert dice(mask, truth) >= 0.97
    if nodule.any():
        assert (mask & nodule).sum() >= 0.95 * nodule.sum()


def test_trachea_removed_and_bowel_gas_ignored():
    scan, truth, _ = simple_chest()
    array = scan.array.copy()
    nz, ny, nx = scan.shape
    array[2:5, ny // 2 - 2 : ny // 2 + 2, nx // 2 - 2 : nx // 2 + 2] = -1000  # gas below the lungs
    scan = scan.with_array(array)
    mask = lung_mask(scan, default_config().lung_mask)
    assert not mask[2:5].any()
    trachea_top = scan.array[-3:] < -950
    assert trachea_top.any() and not (mask[-3:] & trachea_top).any()


def test_a_lung_squeezed_to_a_strip_stays_and_a_flat_gas_bubble_goes():
    """A big heart or an effusion leaves the left lung a thin strip against the wall, under 10% of the right lung's
    volume but as tall: it is lung (the held-out world lost such lungs whole); a gastric bubble below the base,
    larger than ``min_lung_ml`` but flat, is not."""
    scan, truth, _ = simple_chest()
    array = scan.array.copy()
    nz, ny, nx = scan.shape
    left = truth.copy()
    left[:, :, : nx // 2] = False
    columns = np.flatnonzero(left.any(axis=(0, 1)))
    strip = left.copy()
    strip[:, :, : columns[0] + int(0.88 * (columns[-1] - columns[0]))] = False
    array[left & ~strip] = 30  # effusion / heart
    base = int(np.flatnonzero(truth.any(axis=(1, 2)))[0])
    bubble = (slice(base - 7, base - 2), slice(ny // 2 - 7, ny // 2 + 7), slice(nx // 2 + 6, nx // 2 + 30))
    array[bubble] = -1000
    config = default_config().lung_mask
    ml = float(np.prod(scan.spacing)) / 1000
    assert strip.sum() < 0.1 * (truth & ~left).sum()  # the old rule (2nd largest if >= 10% of the 1st) dropped it
    assert array[bubble].size * ml > max(config.min_lung_ml, strip.sum() * ml)  # larger than the strip
    mask = lung_mask(scan.with_array(array.astype(np.int16)), config)
    assert (mask & strip).sum() >= 0.95 * strip.sum()
    assert not mask[bubble].any()


def test_no_lungs_gives_empty_mask():
    scan, _, _ = simple_chest()
    body = scan.with_array(np.where(scan.array < -400, 40, scan.array).astype(np.int16))
    body = body.with_array(np.where(np.abs(np.arange(body.shape[2]) - 48) > 40, -1000, body.array).astype(np.int16))
    assert not lung_mask(body, default_config().lung_mask).any()


def test_dice_on_synthetic_phantoms():
    from lungcad.synth import make_phantom

    for index in range(3):
        phantom = make_phantom(4242, index, size=128)
        truth = np.isin(phantom.lungs, (3, 4))
        assert dice(lung_mask(phantom.scan, default_config().lung_mask), truth) >= 0.97


def test_pleura_fit_keeps_a_small_juxtapleural_nodule_inside():
    import dataclasses

    scan, truth, nodule = simple_chest(shape=(60, 128, 128), spacing=(2.5, 1.0, 1.0), nodule_radius_mm=4.0)
    base = default_config().lung_mask
    coarse_only = lung_mask(scan, dataclasses.replace(base, pleura_shell_voxels=0))
    mask = lung_mask(scan, base)
    assert (coarse_only & nodule).sum() < 0.95 * nodule.sum()  # measured 0.926: the coarse grid loses its base
    assert (mask & nodule).sum() >= 0.95 * nodule.sum()  # measured 0.991
    assert dice(mask, truth) >= 0.97


@pytest.mark.parametrize("index", [0, 7])  # phantoms with juxtapleural nodules (8.5/5.1 mm calcified, 11.6 mm solid)
def test_every_juxtapleural_nodule_of_a_phantom_stays_inside(index):
    import dataclasses

    from lungcad.synth import make_phantom

    phantom = make_phantom(4242, index, size=192)
    base = default_config().lung_mask
    mask = lung_mask(phantom.scan, base)
    fractions = [f for _, f in juxtapleural_coverage(phantom, mask)]
    assert fractions and min(fractions) >= 0.95
    assert dice(mask, np.isin(phantom.lungs, (3, 4))) >= 0.97
    coarse_only = lung_mask(phantom.scan, dataclasses.replace(base, pleura_shell_voxels=0))
    assert (
        min(f for _, f in juxtapleural_coverage(phantom, coarse_only)) < 0.95
    )  # measured 0.727 / 0.917: the fit is needed
