"""sample_data/ is what scripts/make_sample_data.py produces with the current phantom code."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_data"


def _script():
    spec = importlib.util.spec_from_file_location("make_sample_data", ROOT / "scripts" / "make_sample_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not (SAMPLE / "luna16").is_dir(), reason="sample_data not generated")
def test_sample_data_is_current_and_small(tmp_path):
    script = _script()
    assert script.main(["--out", str(tmp_path)]) == 0
    committed = sorted(p.relative_to(SAMPLE) for p in SAMPLE.rglob("*") if p.is_file() and p.name != "README.md")
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert committed == fresh
    for rel in committed:
        if rel.name != "synth.json":  # holds the lungcad version
            assert (SAMPLE / rel).read_bytes() == (tmp_path / rel).read_bytes(), f"stale {rel}: rerun the script"
    assert script.folder_bytes(SAMPLE) <= script.MAX_BYTES
