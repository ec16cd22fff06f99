"""Atomic writes: a file appears complete under its name, or not at all."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
from helpers import read_strict_json

from lungcad.fileio import to_json_text, write_atomic, write_json_atomic, write_text_atomic


def test_write_atomic_renames_a_complete_file_into_place(tmp_path):
    path = write_atomic(tmp_path / "sub" / "x.bin", lambda tmp: tmp.write_bytes(b"abc"))
    assert path.read_bytes() == b"abc" and [p.name for p in path.parent.iterdir()] == ["x.bin"]
    assert write_text_atomic(path, "new").read_text() == "new"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = write_text_atomic(tmp_path / "x.txt", "old")

    def broken(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, broken)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_json_is_strict_nan_and_infinities_become_null_and_numpy_becomes_python(tmp_path):
    value = {
        "auc": float("nan"),
        "hi": np.float32(np.inf),
        "lo": -math.inf,
        "n": np.int64(3),
        "ok": np.float64(0.25),
        "flag": np.bool_(True),
        "xyz": np.array([1.5, np.nan]),
        "pair": (1, 2),
        7: Path("a/b"),
    }
    path = write_json_atomic(tmp_path / "x.json", value)
    assert read_strict_json(path) == {
        "auc": None,
        "hi": None,
        "lo": None,
        "n": 3,
        "ok": 0.25,
        "flag": True,
        "xyz": [1.5, None],
        "pair": [1, 2],
        "7": "a/b",
    }
    assert path.read_text().endswith("}\n") and [p.name for p in tmp_path.iterdir()] == ["x.json"]
    assert to_json_text([math.nan], indent=None) == "[null]\n"


def test_json_refuses_what_it_cannot_write_and_leaves_no_file(tmp_path):
    with pytest.raises(TypeError):
        write_json_atomic(tmp_path / "x.json", {"x": object()})
    assert list(tmp_path.iterdir()) == []


def _json_dump_calls(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        f"{path}:{node.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("dump", "dumps", "to_json")
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id in ("json", "table", "df", "frame", "folds")
    ]


def test_every_json_writer_in_lungcad_goes_through_fileio():
    root = Path(__file__).resolve().parents[1] / "lungcad"
    calls = [c for p in sorted(root.rglob("*.py")) if p.name != "fileio.py" for c in _json_dump_calls(p)]
    assert calls == [], "write JSON with lungcad.fileio.write_json_atomic / to_json_text (strict: NaN -> null)"
