"""Nodule targets rasterised at world positions, for any geometry; excluded findings ignored."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import rotation

from lungcad.candidates.targets import nodule_targets, rasterise_spheres
from lungcad.scan import CTScan


@pytest.mark.parametrize("direction", [np.eye(3), np.diag([-1.0, -1.0, 1.0]), rotation("z", 35)])
def test_sphere_centre_and_size_in_world_mm(direction):
    scan = CTScan(np.zeros((40, 64, 64), np.int16), (1.25, 0.6, 0.6), (0.0, 0.0, 0.0), direction)
    centre = scan.voxel_to_world([20.3, 31.7, 29.2])
    mask = rasterise_spheres(scan, centre[None], np.array([10.0]))
    zyx = np.argwhere(mask)
    np.testing.assert_allclose(scan.voxel_to_world(zyx.mean(0)), centre, atol=0.3)
    volume = mask.sum() * np.prod(scan.spacing)
    assert volume == pytest.approx(4 / 3 * np.pi * 5.0**3, rel=0.05)
    assert np.ptp(zyx[:, 0]) * 1.25 <= 10.0 and np.ptp(zyx[:, 0]) * 1.25 >= 10.0 - 2 * 1.25


def test_nodule_targets_and_ignore_from_tables():
    scan = CTScan(np.zeros((30, 50, 50), np.int16), (1.0, 0.8, 0.8), (-20.0, -20.0, -15.0), id="1.2.3")
    annotations = pd.DataFrame(
        {
            "seriesuid": ["1.2.3", "9.9.9"],
            "coordX": [0.0, 0.0],
            "coordY": [0.0, 0.0],
            "coordZ": [0.0, 0.0],
            "diameter_mm": [6.0, 20.0],
        }
    )
    excluded = pd.DataFrame(
        {
            "seriesuid": ["1.2.3", "1.2.3"],
            "coordX": [10.0, 0.0],
            "coordY": [8.0, 0.0],
            "coordZ": [-5.0, 0.0],
            "diameter_mm": [-1.0, 2.0],
        }
    )
    target, ignore = nodule_targets(scan, annotations, excluded)
    assert target.sum() * 0.64 == pytest.approx(4 / 3 * np.pi * 27, rel=0.1)  # only this scan's nodule
    assert not (target & ignore).any()  # the 2 mm finding inside the nodule stays a target
    unknown = scan.world_to_index([10.0, 8.0, -5.0])
    assert ignore[tuple(unknown)] and ignore.sum() * 0.64 == pytest.approx(4 / 3 * np.pi * 125, rel=0.1)


def test_sphere_outside_volume_is_clipped_not_wrapped():
    scan = CTScan(np.zeros((10, 10, 10), np.int16), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    mask = rasterise_spheres(scan, np.array([[-2.0, 5.0, 5.0], [50.0, 50.0, 50.0]]), np.array([8.0, 8.0]))
    assert mask[:, :, :3].any() and not mask[:, :, 8:].any()
