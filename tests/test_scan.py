"""World <-> voxel conversion of the one volume type, with non-trivial origins, spacings and directions."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import rotation

from lungcad.errors import GeometryError, OutsideVolumeError
from lungcad.scan import CTScan


def _scan(direction=None, shape=(30, 40, 50), spacing=(2.5, 0.61, 0.74), origin=(-180.3, -95.2, -420.7)):
    return CTScan(np.zeros(shape, np.int16), spacing, origin, np.eye(3) if direction is None else direction)


@pytest.mark.parametrize(
    "direction",
    [np.eye(3), np.diag([-1.0, -1.0, 1.0]), np.diag([1.0, 1.0, -1.0]), rotation("x", 20) @ rotation("z", -35)],
)
def test_round_trip_many_points(direction):
    scan = _scan(direction)
    rng = np.random.default_rng(0)
    zyx = rng.uniform(-0.5, [29.5, 39.5, 49.5], size=(500, 3))
    world = scan.voxel_to_world(zyx)
    assert world.shape == (500, 3)
    np.testing.assert_allclose(scan.world_to_voxel(world), zyx, atol=1e-9)
    one = scan.voxel_to_world(zyx[0])
    assert one.shape == (3,)
    np.testing.assert_allclose(scan.world_to_voxel(one), zyx[0], atol=1e-9)


def test_voxel_to_world_follows_itk_formula():
    d = rotation("z", 90)  # index x runs along world +y, index y along world -x
    scan = _scan(d, spacing=(3.0, 2.0, 0.5), origin=(10.0, 20.0, 30.0))
    # voxel (z=1, y=2, x=4): P = O + D @ (0.5*4, 2*2, 3*1) = O + (-4, 2, 3)
    np.testing.assert_allclose(scan.voxel_to_world([1, 2, 4]), [6.0, 22.0, 33.0])
    np.testing.assert_allclose(scan.affine @ [4, 2, 1, 1], [6.0, 22.0, 33.0, 1.0])


def test_outside_points_raise_or_are_flagged_never_wrapped():
    scan = _scan()
    inside = scan.voxel_to_world([[0, 0, 0], [29, 39, 49]])
    outside = scan.voxel_to_world([[-1, 0, 0], [10, 10, 50]])
    with pytest.raises(OutsideVolumeError, match="outside scan"):
        scan.world_to_voxel(outside)
    with pytest.raises(OutsideVolumeError):
        scan.world_to_index(np.vstack([inside, outside]))
    flagged = scan.world_to_voxel(np.vstack([inside, outside]), outside="nan")
    assert np.isfinite(flagged[:2]).all() and np.isnan(flagged[2:]).all()
    np.testing.assert_array_equal(scan.world_to_index(inside), [[0, 0, 0], [29, 39, 49]])
    kept = scan.world_to_voxel(outside, outside="keep")
    np.testing.assert_allclose(kept, [[-1, 0, 0], [10, 10, 50]], atol=1e-9)


def test_invalid_geometry_rejected():
    with pytest.raises(GeometryError, match="3-D"):
        CTScan(np.zeros((4, 4), np.int16), (1, 1, 1), (0, 0, 0))
    with pytest.raises(GeometryError, match="orthonormal"):
        CTScan(np.zeros((2, 2, 2), np.int16), (1, 1, 1), (0, 0, 0), np.diag([2.0, 1.0, 1.0]))
    with pytest.raises(GeometryError, match="spacing"):
        CTScan(np.zeros((2, 2, 2), np.int16), (1, 0, 1), (0, 0, 0))


def test_summary_is_json_ready():
    import json

    scan = _scan()
    info = json.loads(json.dumps(scan.summary()))
    assert info["shape_zyx"] == [30, 40, 50] and info["spacing_zyx_mm"] == [2.5, 0.61, 0.74]
