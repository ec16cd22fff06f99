"""Config files load strictly into frozen dataclasses."""

from __future__ import annotations

import dataclasses
from typing import Literal

import pytest
import yaml

from lungcad.config import CONFIG_DIR, load_config, to_dict
from lungcad.errors import ConfigError
from lungcad.merge import MergeConfig


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


def test_base_chain_merges_nested_keys(tmp_path):
    (tmp_path / "base.yaml").write_text("name: y\ninner:\n  sigma: 2\n  sizes: [3, 4, 5]\n")
    sub = tmp_path / "variants"
    sub.mkdir()
    (sub / "mid.yaml").write_text("base: ../base.yaml\ninner:\n  sizes: [9]\n")
    (sub / "top.yaml").write_text("base: mid.yaml\nmode: b\n")
    # nested keys merge (sigma kept), lists replace, each base is relative to the file naming it
    assert load_config(Outer, sub / "mid.yaml") == Outer("y", "a", Inner(2.0, (9,)))
    assert load_config(Outer, sub / "top.yaml", limit=3) == Outer("y", "b", Inner(2.0, (9,)), 3)


def test_a_base_list_combines_variants_of_its_first_entry(tmp_path):
    (tmp_path / "base.yaml").write_text("name: y\nmode: a\ninner:\n  sigma: 2\n  sizes: [3, 4, 5]\n")
    (tmp_path / "v1.yaml").write_text("base: base.yaml\ninner:\n  sigma: 7\n")
    (tmp_path / "v2.yaml").write_text("base: base.yaml\nmode: b\ninner:\n  sizes: [1]\n")
    (tmp_path / "both.yaml").write_text("base: [base.yaml, v1.yaml, v2.yaml]\nlimit: 4\n")
    # each variant's own keys laid over the first entry in order; the base's values the variants repeat do not
    # undo an earlier variant's change (v2 would restore sigma 2 if whole resolved files were merged)
    assert load_config(Outer, tmp_path / "both.yaml") == Outer("y", "b", Inner(7.0, (1,)), 4)


def test_base_by_bundled_name_keeps_the_bundled_values(tmp_path):
    from lungcad.train.fpr.train import FprTrainConfig

    path = tmp_path / "narrow.yaml"
    path.write_text("base: fpr\nscorer:\n  model:\n    widen_factor: 2\n")
    narrow, bundled = load_config(FprTrainConfig, path), load_config(FprTrainConfig, "fpr")
    assert narrow.scorer.model.widen_factor == 2 and bundled.scorer.model.widen_factor == 4
    assert dataclasses.replace(narrow, scorer=dataclasses.replace(narrow.scorer, model=bundled.scorer.model)) == bundled


@dataclasses.dataclass(frozen=True)
class Composed:
    first: Inner
    second: Outer
    scale: float = 1.0


def test_a_section_base_starts_the_section_from_that_file(tmp_path):
    (tmp_path / "inner.yaml").write_text("sigma: 2\nsizes: [3, 4]\n")
    (tmp_path / "outer.yaml").write_text("base: outer_base.yaml\nmode: b\n")
    (tmp_path / "outer_base.yaml").write_text("name: from-base\ninner: {base: inner.yaml}\n")
    (tmp_path / "c.yaml").write_text(
        "first:\n  base: inner.yaml\n  sigma: 5\n"  # the file's mapping, one key overridden inside the section
        "second:\n  base: outer.yaml\n  inner:\n    sizes: [9]\n"  # a base with its own base and section base
    )
    cfg = load_config(Composed, tmp_path / "c.yaml")
    assert cfg.first == Inner(5.0, (3, 4))
    assert cfg.second == Outer("from-base", "b", Inner(2.0, (9,)))
    # a variant of the composed file changes one key of a composed section; the rest stays the section base's
    (tmp_path / "v.yaml").write_text("base: c.yaml\nfirst:\n  sizes: [7]\nscale: 2\n")
    assert load_config(Composed, tmp_path / "v.yaml") == Composed(Inner(5.0, (7,)), cfg.second, 2.0)
    # a variant's own section base replaces the composed values with that file's, then its keys
    (tmp_path / "inner2.yaml").write_text("sigma: 8\n")
    (tmp_path / "w.yaml").write_text("base: c.yaml\nfirst:\n  base: inner2.yaml\n")
    assert load_config(Composed, tmp_path / "w.yaml").first == Inner(8.0, (3, 4))


@dataclasses.dataclass(frozen=True)
class WithMerge:
    merge: MergeConfig


def test_a_section_base_by_bundled_name_is_the_bundled_file(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("merge:\n  base: merge\n  max_candidates: 7\n")
    assert load_config(WithMerge, path).merge == dataclasses.replace(
        load_config(MergeConfig, "merge"), max_candidates=7
    )


@pytest.mark.parametrize(
    "files, message",
    [
        ({"a.yaml": "first: {base: gone.yaml}\n"}, r"gone\.yaml.*\(the base of section 'first' of .*a\.yaml"),
        ({"a.yaml": "second: {inner: {base: gone}}\n"}, r"configs/gone\.yaml.*section 'second\.inner'"),
        ({"a.yaml": "first: {base: a.yaml}\n"}, r"chain loops \(a.yaml -> a.yaml\)"),
        ({"a.yaml": "first: {base: b.yaml}\n", "b.yaml": "sigma: {base: a.yaml}\n"}, r"a.yaml -> b.yaml -> a.yaml"),
        ({"a.yaml": "first: {base: [b.yaml]}\n"}, r"'first\.base' must be a config name or a \.yaml path"),
        ({"a.yaml": "first: {base: b.yaml}\n", "b.yaml": "sigm: 1\n"}, "unknown key 'first.sigm'"),
    ],
)  # fmt: skip
def test_bad_section_base_is_a_config_error_naming_the_file(tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(Composed, tmp_path / "a.yaml")


@pytest.mark.parametrize(
    "files, message",
    [
        ({"a.yaml": "base: b.yaml\n", "b.yaml": "base: a.yaml\n"}, r"chain loops \(a.yaml -> b.yaml -> a.yaml\)"),
        ({"a.yaml": "base: gone.yaml\n"}, r"config file not found \(the base of .*a.yaml\)"),
        ({"a.yaml": "base: [fpr, 3]\n"}, "'base' must be a config name, a .yaml path or a list of them"),
        ({"a.yaml": "base: [b.yaml, a.yaml]\n", "b.yaml": "name: x\n"}, r"chain loops \(a.yaml -> a.yaml\)"),
        ({"a.yaml": "base: [b.yaml, c.yaml]\n", "b.yaml": "name: x\n", "c.yaml": "mode: c\n"}, "variants of its first"),
        ({"a.yaml": "base: b.yaml\n", "b.yaml": "inner:\n  sigm: 1\n"}, "unknown key 'inner.sigm'"),
    ],
)
def test_bad_base_is_a_config_error(tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(Outer, tmp_path / "a.yaml")


def _shipped_config_classes() -> dict[str, type]:
    from lungcad.candidates.blobs import BlobConfig
    from lungcad.evaluate.config import EvaluateConfig
    from lungcad.merge import MergeConfig
    from lungcad.preprocess.config import PreprocessConfig
    from lungcad.synth.config import SynthConfig
    from lungcad.train.candidates.train import UNetTrainConfig
    from lungcad.train.fpr.train import FprTrainConfig
    from lungcad.train.risk.classifiers import ClassifierTrainConfig
    from lungcad.train.risk.train import RiskTrainConfig
    from lungcad.visualize import PictureConfig

    prefixes = {"fpr": FprTrainConfig, "unet": UNetTrainConfig, "synth": SynthConfig, "world": SynthConfig}
    names = {"blobs": BlobConfig, "evaluate": EvaluateConfig, "merge": MergeConfig, "pictures": PictureConfig,
             "preprocess": PreprocessConfig, "malignancy": ClassifierTrainConfig, "shape": ClassifierTrainConfig,
             "risk": RiskTrainConfig, "risk_classifiers": RiskTrainConfig}  # fmt: skip
    found = {}
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        cls = names.get(path.stem) or prefixes.get(path.stem.split("_")[0])
        assert cls is not None, f"{path.name}: add its config class here"
        found[path.stem] = cls
    return found


def test_every_shipped_config_loads_with_its_base():
    classes = _shipped_config_classes()
    assert len(classes) >= 20
    for name, cls in classes.items():
        cfg = load_config(cls, name)
        base = yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text()).get("base")
        for entry in [base] if isinstance(base, str) else base or []:  # variants of one stage that change something
            assert classes[entry] is cls and cfg != load_config(cls, entry), name
