"""Config files load strictly into frozen dataclasses."""

from __future__ import annotations

import dataclasses
from typing import Literal

import pytest

from lungcad.config import load_config, to_dict
from lungcad.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Inner:
    sigma: float = 1.0
    sizes: tuple[int, ...] = (1, 2)


@dataclasses.dataclass(frozen=True)
class Outer:
    name: str = "x"
    mode: Literal["a", "b"] = "a"
    inner: Inner = Inner()
    limit: int | None = None


def test_load_nested_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: y\nmode: b\ninner:\n  sigma: 2\n  sizes: [3, 4, 5]\n")
    cfg = load_config(Outer, path, limit=7)
    assert cfg == Outer("y", "b", Inner(2.0, (3, 4, 5)), 7)
    assert to_dict(cfg)["inner"]["sizes"] == [3, 4, 5]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.name = "z"  # type: ignore[misc]


@pytest.mark.parametrize(
    "text, message",
    [
        ("nmae: y\n", "unknown key 'nmae'"),
        ("inner:\n  sigm: 2\n", "unknown key 'inner.sigm'"),
        ("mode: c\n", "'mode' is 'c'"),
        ("inner:\n  sigma: fast\n", "'inner.sigma' must be a number"),
        ("name: [1\n", "not valid YAML"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(Outer, path)
    assert str(path) in str(err.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(Outer, tmp_path / "none.yaml")
