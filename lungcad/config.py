"""Configuration is data: YAML files in ``configs/`` loaded into frozen dataclasses.

Each stage declares a frozen dataclass (nested dataclasses allowed) and loads it with
:func:`load_config`. Unknown keys, missing required keys and wrong types are :class:`ConfigError` naming
the file and the key, so a typo in a config never silently falls back to a default.

``configs/NAME.yaml`` files ship inside the package (``lungcad/configs`` links to the top-level folder),
so ``load_config(SynthConfig, "synth")`` works from a wheel as well as from a checkout.

A file may start from another one with a top-level ``base:`` key, so a variant lists only what it changes::

    base: fpr                 # a bundled name, or a .yaml path relative to this file
    patches:
      scales: [1.0, 0.5]      # nested mappings merge key by key; lists and scalars replace

Bases may themselves have a base; a loop is a :class:`ConfigError`. ``base:`` may also be a list that combines
variants of one config: ``base: [synth, world_scanner, world_disease]`` is ``synth`` with the keys that each listed
variant sets itself laid over it in order (each variant must have ``base: synth``), then this file's own keys.

A mapping section may also start from a config file: a ``base:`` key inside a section is that file's mapping (with
its own bases resolved) with the section's other keys laid over it, so a training config composes the stage configs
instead of restating them::

    detector:
      preprocess:
        base: preprocess                      # configs/preprocess.yaml ...
        target_spacing_mm: [1.25, 1.0, 1.0]   # ... with this key changed
      merge: {base: merge}                    # configs/merge.yaml as it is

A section's ``base:`` is one name or path (same rules as the top-level one: a bundled name, or a .yaml path relative
to the file that names it) and takes part in the same loop detection. Sections are resolved in each file before its
own top-level ``base:`` is merged in, so a variant's ``merge: {threshold: 0.1}`` changes one key of the section its
base composed, and a variant's ``merge: {base: other}`` lays ``other``'s keys over it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from lungcad.errors import ConfigError

T = TypeVar("T")

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def config_path(name_or_path: str | Path) -> Path:
    """Resolve ``"synth"`` to the bundled ``configs/synth.yaml``; a path is returned as is."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    return CONFIG_DIR / f"{name_or_path}.yaml"


def load_config(cls: type[T], name_or_path: str | Path | None = None, **overrides: Any) -> T:
    """Load a YAML file into the frozen dataclass ``cls``.

    Args:
        cls: the dataclass type to build.
        name_or_path: a bundled config name (``"synth"``) or a YAML path; None uses the class defaults.
        overrides: top-level fields that replace the file's values (e.g. from CLI options); None is ignored.
    """
    data: dict[str, Any] = {}
    source = "<defaults>"
    if name_or_path is not None:
        path = config_path(name_or_path)
        source = str(path)
        data = read_config_file(path)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return from_dict(cls, data, source=source)


def read_config_file(path: Path, *, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The mapping a YAML config file stands for, its ``base:`` chain merged in (see the module docstring)."""
    if not path.is_file():
        where = f" (the base of {_chain[-1]})" if _chain else ""
        raise ConfigError(f"config file not found{where}", path=path, fix="give a YAML path or a name in configs/")
    if path.resolve() in _chain:
        loop = " -> ".join(p.name for p in (*_chain, path.resolve()))
        raise ConfigError(f"'base' chain loops ({loop})", path=path)
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML ({exc})".replace("\n", " "), path=path) from exc
    if not isinstance(loaded, Mapping):
        raise ConfigError("top level must be a mapping of keys to values", path=path)
    chain = (*_chain, path.resolve())
    data = resolve_sections(dict(loaded), path, chain)
    if "base" not in data:
        return data
    base = data.pop("base")
    if isinstance(base, list) and base and all(isinstance(b, str) and b for b in base):
        merged = read_config_file(_base_path(path, base[0]), _chain=chain)
        for name in base[1:]:
            merged = merge_mappings(merged, _variant_changes(_base_path(path, name), _base_path(path, base[0]), chain))
        return merge_mappings(merged, data)
    if not isinstance(base, str) or not base:
        raise ConfigError(f"'base' must be a config name, a .yaml path or a list of them, got {base!r}", path=path)
    return merge_mappings(read_config_file(_base_path(path, base), _chain=chain), data)


def resolve_sections(data: dict[str, Any], path: Path, chain: tuple[Path, ...], key: str = "") -> dict[str, Any]:
    """``data`` (the mapping of file ``path``) with every nested section holding a ``base:`` key replaced by that
    file's mapping with the section's other keys laid over it (recursively; the top level's own ``base:`` is left
    for :func:`read_config_file`). ``chain``: the files being read, ``path`` last (loop detection)."""
    out = {}
    for name, value in data.items():
        if isinstance(value, Mapping):
            value = _resolve_section(dict(value), path, chain, f"{key}{name}")
        out[name] = value
    return out


def _resolve_section(section: dict[str, Any], path: Path, chain: tuple[Path, ...], key: str) -> dict[str, Any]:
    """One section (``key``, dotted) of the file ``path``, its nested sections and its own ``base:`` resolved."""
    section = resolve_sections(section, path, chain, key + ".")
    if "base" not in section:
        return section
    base = section.pop("base")
    if not isinstance(base, str) or not base:
        raise ConfigError(f"'{key}.base' must be a config name or a .yaml path, got {base!r}", path=path)
    source = _base_path(path, base)
    if not source.is_file():
        raise ConfigError(
            f"config file not found (the base of section '{key}' of {path})",
            path=source,
            fix="give a YAML path relative to the file or a name in configs/",
        )
    return merge_mappings(read_config_file(source, _chain=chain), section)


def _base_path(path: Path, base: str) -> Path:
    """Where ``base:`` entry ``base`` of the file ``path`` lives: a name in configs/ or a path relative to the file."""
    is_file = Path(base).suffix in (".yaml", ".yml")
    return path.parent / base if is_file else CONFIG_DIR / f"{base}.yaml"  # an absolute path stays absolute


def _variant_changes(variant: Path, first: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    """The keys a variant file of ``first`` sets itself (its ``base:`` must resolve to ``first``)."""
    if variant.resolve() in chain:
        loop = " -> ".join(p.name for p in (*chain, variant.resolve()))
        raise ConfigError(f"'base' chain loops ({loop})", path=variant)
    if not variant.is_file():
        raise ConfigError(f"config file not found (a base of {chain[-1]})", path=variant)
    data = resolve_sections(dict(yaml.safe_load(variant.read_text()) or {}), variant, (*chain, variant.resolve()))
    own = data.pop("base", None)
    if not isinstance(own, str) or _base_path(variant, own).resolve() != first.resolve():
        raise ConfigError(
            f"a 'base:' list combines variants of its first entry, but this file's base is {own!r}",
            path=variant,
            fix=f"give it 'base: {first.stem}', or list it first",
        )
    return data


def merge_mappings(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` laid over it: mappings in both merge recursively, anything else is replaced."""
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_mappings(out[key], value)
        else:
            out[key] = value
    return out


def from_dict(cls: type[T], data: Mapping[str, Any], *, source: str = "<dict>", prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, recursively, checking keys and types."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls} is not a dataclass")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key '{prefix}{unknown[0]}'",
            path=source,
            expected="one of " + ", ".join(prefix + k for k in fields),
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, source=source, key=prefix + name)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # missing required field
        raise ConfigError(str(exc), path=source) from exc
    except ValueError as exc:  # __post_init__ validation
        raise ConfigError(str(exc), path=source) from exc


def to_dict(obj: Any) -> Any:
    """Dataclass -> plain dict/list (tuples become lists) for YAML/JSON dumps."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _coerce(tp: Any, value: Any, *, source: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, source=source, key=key)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"'{key}' must be a mapping", path=source)
        return from_dict(tp, value, source=source, prefix=key + ".")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"'{key}' is {value!r}", path=source, expected="one of " + ", ".join(map(repr, args)))
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"'{key}' must be a list, got {value!r}", path=source)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, source=source, key=key) for v in value)
        if len(args) != len(value):
            raise ConfigError(f"'{key}' must have {len(args)} items, got {len(value)}", path=source)
        return tuple(_coerce(a, v, source=source, key=key) for a, v in zip(args, value))
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"'{key}' must be a number, got {value!r}", path=source)
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"'{key}' must be an integer, got {value!r}", path=source)
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"'{key}' must be true or false, got {value!r}", path=source)
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"'{key}' must be a string, got {value!r}", path=source)
        return value
    return value
