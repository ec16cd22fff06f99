"""Read and validate the CSV tables of LUNA16 and DSB 2017.

Every reader accepts the quirks of the real files: extra columns, any column order, whitespace around
names and values, a UTF-8 byte-order mark, and column names in another letter case. Anything else is a
:class:`~lungcad.errors.DataLayoutError` that names the file, the column and a few offending values.

Returned frames have canonical column names only; ids are ``str``, numbers ``float64``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lungcad.errors import DataLayoutError
from lungcad.schema import XYZ

ANNOTATION_COLUMNS = ("seriesuid", *XYZ, "diameter_mm")
CANDIDATE_COLUMNS = ("seriesuid", *XYZ, "probability")


def few(ids: Iterable[object], n: int = 3) -> str:
    """``'a', 'b', 'c' (+7 more)`` for error messages."""
    ids = list(ids)
    text = ", ".join(repr(str(i)) for i in ids[:n])
    return text + (f" (+{len(ids) - n} more)" if len(ids) > n else "")


def read_csv_text(path: str | Path) -> pd.DataFrame:
    """Read a CSV with a header, every cell as stripped text; header names stripped too."""
    path = Path(path)
    if not path.is_file():
        raise DataLayoutError("file not found", path=path, fix="check the path")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig")
    except pd.errors.EmptyDataError as exc:
        raise DataLayoutError("file is empty", path=path, expected="a CSV table with a header row") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        msg = str(exc).replace("\n", " ")
        raise DataLayoutError(f"not a readable CSV table ({msg})", path=path) from exc
    df.columns = [str(c).strip() for c in df.columns]
    return df.apply(lambda col: col.str.strip())


def find_column(df: pd.DataFrame, name: str, path: str | Path, *, hint: str | None = None) -> str:
    """The actual column of ``df`` called ``name`` (exact, else case-insensitive); DataLayoutError if none."""
    if name in df.columns:
        return name
    matches = [c for c in df.columns if c.lower() == name.lower()]
    if len(matches) == 1:
        return matches[0]
    raise DataLayoutError(
        f"no column '{name}'" + (" (several differ only in case)" if matches else ""),
        path=path,
        expected=f"a column '{name}'; found {', '.join(map(repr, df.columns))}",
        fix=hint,
    )


def to_float(values: pd.Series, column: str, path: str | Path) -> np.ndarray:
    """Parse a text column with Python's ``float`` (correctly rounded, as the official script); finite only."""
    out = np.empty(len(values), dtype=np.float64)
    for i, text in enumerate(values.to_numpy()):
        try:
            v = float(text)
        except ValueError:
            v = math.nan
        if not math.isfinite(v):
            raise DataLayoutError(
                f"column '{column}', data row {i + 1}: {text!r} is not a finite number",
                path=path,
                fix="fill or remove that row",
            )
        out[i] = v
    return out


def select_columns(
    df: pd.DataFrame, path: str | Path, text: Sequence[str], numeric: Sequence[str], hints: dict | None = None
) -> pd.DataFrame:
    """Canonical frame with ``text`` id columns (non-empty str) and ``numeric`` float columns."""
    hints = hints or {}
    out = {}
    for name in text:
        col = df[find_column(df, name, path, hint=hints.get(name))]
        empty = np.flatnonzero(col.to_numpy() == "")
        if len(empty):
            raise DataLayoutError(f"column '{name}' is empty in data row {empty[0] + 1}", path=path)
        out[name] = col.to_numpy(dtype=object).astype(str)
    for name in numeric:
        out[name] = to_float(df[find_column(df, name, path, hint=hints.get(name))], name, path)
    return pd.DataFrame(out, index=pd.RangeIndex(len(df)))


def require_columns(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """DataLayoutError unless the in-memory table ``what`` has ``columns`` (API callers' frames)."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataLayoutError(
            f"{what} table lacks column(s) {', '.join(missing)}",
            expected=f"columns {', '.join(columns)} (world mm)",
        )


def empty_annotations() -> pd.DataFrame:
    """An annotation table without rows (canonical columns and dtypes)."""
    cols = {"seriesuid": np.zeros(0, dtype=object)} | {c: np.zeros(0) for c in ANNOTATION_COLUMNS[1:]}
    return pd.DataFrame(cols)


def read_annotations(path: str | Path, *, excluded: bool = False) -> pd.DataFrame:
    """LUNA16 ``annotations.csv`` / ``annotations_excluded.csv``: ``seriesuid, coordX..Z, diameter_mm``.

    Coordinates are world mm, ``diameter_mm`` in mm; a negative diameter means unknown (the FROC uses
    ``unknown_diameter_mm`` then). An excluded-annotations table may lack ``diameter_mm`` altogether
    (all unknown).
    """
    df = read_csv_text(path)
    numeric = list(ANNOTATION_COLUMNS[1:])
    if excluded and not any(c.lower() == "diameter_mm" for c in df.columns):
        numeric.remove("diameter_mm")
    out = select_columns(df, path, ["seriesuid"], numeric)
    if "diameter_mm" not in out:
        out["diameter_mm"] = -1.0
    return out


def read_nodule_kinds(path: str | Path, *, max_values: int = 12) -> pd.DataFrame:
    """A table of the annotated nodules' attributes, e.g. ``lungcad synth``'s ``nodules.csv`` (``type``, ``shape``,
    ``location``, ``malignant``): ``seriesuid`` (or ``id``), ``coordX..Z`` (world mm) and every other column with
    2 to ``max_values`` distinct values, as text (``diameter_mm`` is left out: the FROC bins sizes itself)."""
    df = read_csv_text(path)
    uid = "seriesuid" if any(c.lower() == "seriesuid" for c in df.columns) else "id"
    out = select_columns(df, path, [uid], XYZ, {uid: "name the scans in a 'seriesuid' or 'id' column"})
    out = out.rename(columns={uid: "seriesuid"})
    skip = {c.lower() for c in (uid, *XYZ, "diameter_mm")}
    for col in df.columns:
        if col.lower() not in skip and 2 <= df[col].nunique() <= max_values:
            out[col] = df[col].to_numpy(dtype=object).astype(str)
    if len(out.columns) == 1 + len(XYZ):  # the id and coordinates only
        raise DataLayoutError(
            "no attribute column", path=path, expected=f"columns with 2 to {max_values} distinct values"
        )
    return out


def read_candidates(path: str | Path, *, score_column: str = "probability") -> pd.DataFrame:
    """CAD marks ``seriesuid, coordX..Z (world mm), <score_column>``; the score is returned as ``probability``.

    A LUNA16 ``candidates.csv`` (0/1 ``class`` column, no score) is refused unless ``score_column``
    names ``class``.
    """
    df = read_csv_text(path)
    hint = None
    if not any(c.lower() == score_column.lower() for c in df.columns):
        if any(c.lower() == "class" for c in df.columns):
            hint = (
                "this looks like the LUNA16 candidates list (0/1 'class' labels, not CAD scores); give a "
                "CAD system's output with a 'probability' column, or pass --score-column class"
            )
        else:
            hint = "name the score column with --score-column"
    out = select_columns(df, path, ["seriesuid"], [*XYZ, score_column], hints={score_column: hint})
    return out.rename(columns={score_column: "probability"})


def read_seriesuids(path: str | Path) -> list[str]:
    """The scans to evaluate: one uid per line, first field of each row, header ``seriesuid`` optional.

    The official ``seriesuids.csv`` has no header. Empty lines are skipped; duplicates are an error
    (they would count a scan twice in the false-positive denominator).
    """
    path = Path(path)
    if not path.is_file():
        raise DataLayoutError("file not found", path=path, fix="check the path")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = [r for r in csv.reader(fh) if r and r[0].strip()]
    uids = [r[0].strip() for r in rows]
    if uids and uids[0].lower() == "seriesuid":
        uids = uids[1:]
    if not uids:
        raise DataLayoutError("no seriesuid listed", path=path, expected="one seriesuid per line")
    dupes = pd.Series(uids)[pd.Series(uids).duplicated()].unique()
    if len(dupes):
        raise DataLayoutError(
            f"{len(dupes)} seriesuid(s) listed twice: {few(dupes)}",
            path=path,
            fix="list each scan once (a duplicate would count its false positives twice)",
        )
    return uids


def read_dsb_table(path: str | Path, id_column: str, value_column: str) -> pd.DataFrame:
    """A DSB 2017 table ``id, <value_column>`` -> frame ``id`` (str), ``value`` (float); ids unique."""
    out = select_columns(read_csv_text(path), path, [id_column], [value_column])
    out.columns = ["id", "value"]
    dupes = out["id"][out["id"].duplicated()].unique()
    if len(dupes):
        raise DataLayoutError(f"{len(dupes)} id(s) appear twice: {few(dupes)}", path=path, fix="keep one row per id")
    if out.empty:
        raise DataLayoutError("no rows", path=path, expected=f"columns {id_column},{value_column}")
    return out


def read_annotation_tables(data: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``annotations.csv`` and (optional) ``annotations_excluded.csv`` of a LUNA16-layout folder."""
    ann_path = data / "annotations.csv"
    if not ann_path.is_file():
        raise DataLayoutError("annotations.csv not found", path=data, expected="a LUNA16-layout folder")
    annotations = read_annotations(ann_path)
    excluded_path = data / "annotations_excluded.csv"
    excluded = read_annotations(excluded_path, excluded=True) if excluded_path.is_file() else annotations.iloc[:0]
    return annotations, excluded
