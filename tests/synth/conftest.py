"""Shared fixtures for the synthetic-phantom tests: small phantoms and one small written dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

from lungcad.synth import load_synth_config, make_phantom, write_dataset
from lungcad.synth.geometry import draw_geometry
from lungcad.synth.phantom import scan_rngs

SEED = 7
DATASET_SEED = 4


@pytest.fixture(scope="session")
def small_config():
    """The shipped config with at most 96 slices per scan."""
    return load_synth_config(max_slices=96)


@pytest.fixture(scope="session")
def phantoms(small_config):
    """Eight 128x128 phantoms of dataset ``SEED`` (about 6 s once per session)."""
    return [make_phantom(SEED, i, size=128, config=small_config) for i in range(8)]


def first_flipped_index(seed: int, config, size: int = 64) -> int:
    """Index of the first scan of ``seed`` stored flipped (only the geometry stream is drawn)."""
    for i in range(200):
        if draw_geometry(scan_rngs(seed, i)["geometry"], config, size).flipped:
            return i
    raise AssertionError("no flipped scan in 200 draws")


@pytest.fixture(scope="session")
def dataset(tmp_path_factory, small_config) -> Path:
    """A 3-scan dataset (seed 4, size 96, both layouts); scan 2 is stored flipped."""
    out = tmp_path_factory.mktemp("synth") / "out"
    assert first_flipped_index(DATASET_SEED, small_config) == 2
    write_dataset(out, 3, DATASET_SEED, size=96, fmt="both", config=small_config, progress=False)
    return out
