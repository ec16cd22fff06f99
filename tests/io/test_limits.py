"""The voxel limit: overflow-safe, configurable by environment, one-line errors naming the file."""

import pytest

from lungcad.errors import ConfigError, ScanTooLargeError
from lungcad.io.limits import DEFAULT_MAX_VOXELS, check_voxel_count, max_voxels


def test_counts_within_the_limit_pass_and_large_ones_name_the_file(monkeypatch):
    monkeypatch.delenv("LUNGCAD_MAX_VOXELS", raising=False)
    assert max_voxels() == DEFAULT_MAX_VOXELS
    assert check_voxel_count((300, 512, 512), path="a.mhd") == 300 * 512 * 512
    with pytest.raises(ScanTooLargeError, match=r"^big\.mhd: .*1500x1024x1024 = 1,572,864,000 voxels.*LUNGCAD_MAX"):
        check_voxel_count((1500, 1024, 1024), path="big.mhd")


def test_a_product_beyond_64_bits_is_refused_not_wrapped(monkeypatch):
    monkeypatch.delenv("LUNGCAD_MAX_VOXELS", raising=False)
    with pytest.raises(ScanTooLargeError):
        check_voxel_count((2**32, 2**32, 2), path="x.mhd")  # 2**65: wraps to 0 in int64


def test_the_environment_variable_sets_the_limit(monkeypatch):
    monkeypatch.setenv("LUNGCAD_MAX_VOXELS", "1000")
    with pytest.raises(ScanTooLargeError, match="over the limit of 1,000"):
        check_voxel_count((10, 10, 11), path="a.mhd")
    monkeypatch.setenv("LUNGCAD_MAX_VOXELS", "lots")
    with pytest.raises(ConfigError, match="LUNGCAD_MAX_VOXELS"):
        max_voxels()
