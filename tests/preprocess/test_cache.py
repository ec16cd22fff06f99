"""The preprocess cache is reused only when it was made with the same settings."""

from __future__ import annotations

import dataclasses

from helpers import simple_chest

from lungcad.io import write_mhd
from lungcad.preprocess import default_config
from lungcad.preprocess.pipeline import cached_config, load_preprocessed, preprocess_scans


def test_a_cache_from_other_settings_is_recomputed_not_reused(tmp_path):
    scan = simple_chest(seed=3)[0]
    write_mhd(scan.with_array(scan.array, id="1.2.3"), tmp_path / "in" / "1.2.3.mhd")
    config = dataclasses.replace(default_config(), target_spacing_mm=None)
    out = tmp_path / "cache"
    _, first = preprocess_scans([tmp_path / "in"], out, config)
    _, again = preprocess_scans([tmp_path / "in"], out, config)
    assert (len(first.done), len(again.done), len(again.skipped)) == (1, 0, 1)
    wider = dataclasses.replace(config, crop_margin_mm=config.crop_margin_mm + 10.0)
    _, changed = preprocess_scans([tmp_path / "in"], out, wider)
    assert (len(changed.done), len(changed.skipped)) == (1, 0)
    assert cached_config(out / "1.2.3")["crop_margin_mm"] == wider.crop_margin_mm
    assert load_preprocessed(out / "1.2.3").info["config"]["crop_margin_mm"] == wider.crop_margin_mm
    assert cached_config(tmp_path / "missing") is None
