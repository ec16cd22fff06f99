"""configs/synth.yaml loads strictly into frozen dataclasses."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from lungcad.config import CONFIG_DIR
from lungcad.errors import ConfigError
from lungcad.synth import SynthConfig, load_synth_config


def _write(tmp_path, data) -> str:
    path = tmp_path / "synth.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _shipped() -> dict:
    return yaml.safe_load((CONFIG_DIR / "synth.yaml").read_text())


def test_shipped_config_loads_frozen():
    cfg = load_synth_config()
    assert isinstance(cfg, SynthConfig)
    assert cfg.max_slices is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.max_slices = 3  # type: ignore[misc]


def test_top_level_override():
    assert load_synth_config(max_slices=40).max_slices == 40


def test_unknown_key_raises_config_error_naming_file(tmp_path):
    data = _shipped()
    data["nodules"]["diameter_mediam_mm"] = 7.0
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_synth_config(path)
    assert "nodules.diameter_mediam_mm" in str(err.value)
    assert path in str(err.value)


def test_missing_key_raises(tmp_path):
    data = _shipped()
    del data["noise"]["sigma_hu"]
    with pytest.raises(ConfigError):
        load_synth_config(_write(tmp_path, data))


def test_wrong_type_raises(tmp_path):
    data = _shipped()
    data["geometry"]["flip_probability"] = "often"
    with pytest.raises(ConfigError, match="flip_probability"):
        load_synth_config(_write(tmp_path, data))


def test_mismatched_weights_raise(tmp_path):
    data = _shipped()
    data["nodules"]["type_weights"] = [1.0, 1.0]
    with pytest.raises(ConfigError, match="weights"):
        load_synth_config(_write(tmp_path, data))


def test_unknown_nodule_type_raises(tmp_path):
    data = _shipped()
    data["nodules"]["type_names"] = ["solid", "part_solid", "ggo", "cavitary"]
    with pytest.raises(ConfigError, match="cavitary"):
        load_synth_config(_write(tmp_path, data))


def test_unet_phantoms_differ_from_the_default_only_in_nodules_per_scan():
    """configs/synth_unet.yaml (the U-Net's nodule-rich training phantoms) must draw each nodule from the
    default distribution: an edit of synth.yaml not carried over would train the U-Net on other nodules."""
    default, rich = load_synth_config(), load_synth_config(CONFIG_DIR / "synth_unet.yaml")
    assert dataclasses.replace(rich, nodules=dataclasses.replace(rich.nodules, count_weights=())) == (
        dataclasses.replace(default, nodules=dataclasses.replace(default.nodules, count_weights=()))
    )
    weights = rich.nodules.count_weights
    assert (
        sum(w * n for n, w in enumerate(weights)) / sum(weights)
        > 5.5
        > sum(w * n for n, w in enumerate(default.nodules.count_weights))
    )
