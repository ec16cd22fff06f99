"""Builders for small LUNA16-style tables (world mm) used by the evaluate tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import pytest

Row = Sequence[object]


def _frame(rows: Sequence[Row], last: str) -> pd.DataFrame:
    cols = ["seriesuid", "coordX", "coordY", "coordZ", last]
    df = pd.DataFrame([list(r) for r in rows], columns=cols)
    df["seriesuid"] = df["seriesuid"].astype(str)
    for c in cols[1:]:
        df[c] = df[c].astype(float)
    return df


@pytest.fixture
def annotations() -> Callable[..., pd.DataFrame]:
    """``annotations((uid, x, y, z, diameter_mm), ...)`` -> frame."""
    return lambda *rows: _frame(rows, "diameter_mm")


@pytest.fixture
def candidates() -> Callable[..., pd.DataFrame]:
    """``candidates((uid, x, y, z, probability), ...)`` -> frame."""
    return lambda *rows: _frame(rows, "probability")


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    """``write(name, text)`` -> path of a file in ``tmp_path``."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return _write
