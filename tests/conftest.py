"""Shared fixtures: tiny seeded CT volumes with non-trivial geometry, written as real DICOM / MetaImage."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from lungcad.scan import CTScan


@pytest.fixture
def make_scan() -> Callable[..., CTScan]:
    """Factory for a small random int16 HU scan with the given geometry (seeded)."""

    def _make(
        shape=(12, 20, 16),
        spacing=(1.25, 0.7, 0.8),
        origin=(-150.25, -170.5, -312.75),
        direction=None,
        seed=0,
        scan_id="patient0",
        low=-1000,
        high=1500,
    ) -> CTScan:
        rng = np.random.default_rng(seed)
        array = rng.integers(low, high, size=shape).astype(np.int16)
        return CTScan(array, spacing, origin, np.eye(3) if direction is None else direction, id=scan_id)

    return _make


@pytest.fixture
def linear_scan() -> Callable[..., CTScan]:
    """Factory for a scan whose HU is a linear function of world position: HU = 10 * (x + y + z) mm.

    Linear interpolation reproduces such a field exactly, so resampled volumes can be checked voxel by
    voxel against the world position the reader assigns them.
    """

    def _make(shape=(10, 12, 14), spacing=(2.0, 0.75, 0.75), origin=(-20.0, -15.0, -30.0), direction=None):
        direction = np.eye(3) if direction is None else direction
        geom = CTScan(np.zeros(shape, np.int16), spacing, origin, direction)
        zyx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).reshape(-1, 3)
        world = geom.voxel_to_world(zyx)
        hu = np.rint(10 * world.sum(axis=1)).reshape(shape).astype(np.int16)
        return geom.with_array(hu, id="linear")

    return _make


@pytest.fixture(scope="session")
def confident_model(tmp_path_factory):
    """A tiny U-Net model directory whose output is ~1 everywhere (see ``helpers.confident_unet``)."""
    from helpers import confident_unet

    return confident_unet(tmp_path_factory.mktemp("confident"))
