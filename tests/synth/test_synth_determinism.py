"""Same seed -> same bytes; different seeds differ; a pinned checksum guards unintended changes."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from lungcad.synth import PHANTOM_VERSION, load_synth_config, make_phantom, write_dataset

# Pinned output of `write_dataset(out, 1, seed=2024, size=64, fmt="luna")` with max_slices=32: sha256 of the
# scan's .raw bytes, then of annotations.csv and candidates.csv.
# A deliberate phantom change (code or configs/synth.yaml) must bump lungcad.synth.PHANTOM_VERSION and
# update PINNED_VERSION and these digests together; an unexplained mismatch is a regression.
# The digests hold for this numpy/scipy generation on x86-64; other platforms may differ in rare roundings.
# Version 2 (nodules kept out of vessels and airways) left this scan's voxels as they were: only its UIDs changed.
PINNED_VERSION = 2
PINNED = {
    "raw": "72bf80c5d440da7d2f898073464a8e67dbb9006cda772b705e0581b549fe9844",
    "annotations.csv": "918d26b0a717beb3e74620ec90dbb9321a0d74afe3b151d798ea7586b4461edd",
    "candidates.csv": "8666b9ca6558dd1a6b169efa9feed12223f6754330f9ad03417ecb8ca62f4815",
}


@pytest.fixture(scope="module")
def tiny():
    return load_synth_config(max_slices=32)


def _digest(ph) -> tuple:
    return (
        ph.scan.array.tobytes(),
        ph.lungs.tobytes(),
        ph.nodules,
        ph.candidates.tobytes(),
        ph.scan.origin,
        ph.scan.spacing,
    )


def test_same_seed_same_bytes(tiny):
    assert _digest(make_phantom(3, 1, size=64, config=tiny)) == _digest(make_phantom(3, 1, size=64, config=tiny))


def test_different_seed_or_index_differs(tiny):
    a = make_phantom(3, 1, size=64, config=tiny)
    b = make_phantom(4, 1, size=64, config=tiny)
    c = make_phantom(3, 2, size=64, config=tiny)
    assert a.series_uid != b.series_uid != c.series_uid
    assert a.patient_id != b.patient_id
    for other in (b, c):
        assert a.scan.shape != other.scan.shape or not np.array_equal(a.scan.array, other.scan.array)


def test_pinned_checksum(tmp_path, tiny):
    assert PHANTOM_VERSION == PINNED_VERSION, "PHANTOM_VERSION changed: re-pin the digests below it"
    write_dataset(tmp_path, 1, 2024, size=64, fmt="luna", config=tiny, progress=False)
    raw = next((tmp_path / "luna16" / "subset0").glob("*.raw"))
    got = {
        "raw": hashlib.sha256(raw.read_bytes()).hexdigest(),
        "annotations.csv": hashlib.sha256((tmp_path / "luna16" / "annotations.csv").read_bytes()).hexdigest(),
        "candidates.csv": hashlib.sha256((tmp_path / "luna16" / "candidates.csv").read_bytes()).hexdigest(),
    }
    assert got == PINNED
