"""Atomic file writes, and the names lungcad gives files: every output appears complete or not at all, under a
name any file system takes.

A file is written under a temporary name in its own folder and renamed into place (``os.replace`` is
atomic on one file system), so an interrupted run never leaves a half-written file under the final name.

Text is written as UTF-8 through :func:`printable`, so a path or id holding the bytes of a non-UTF-8 file name
(Python's surrogate escapes) is written as ``\\xNN`` instead of failing the write. A scan id becomes a file or folder
name only through :func:`safe_stem` (the tables keep the full id).

Every JSON file lungcad writes goes through :func:`write_json_atomic` (and every JSON it prints through
:func:`to_json_text`): strict JSON that any parser reads, NaN and infinities written as ``null``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

#: The longest file name, in bytes, that common file systems take (ext4, XFS, btrfs, APFS: 255).
NAME_MAX = 255

#: The longest file stem (bytes, UTF-8) :func:`safe_stem` makes from an id: room is left for a temporary prefix
#: (``.tmp-<pid>-``) and a suffix (``.json``, ``.nii.gz``) within :data:`NAME_MAX`.
MAX_STEM_BYTES = 120

#: Hex digits of the id's SHA-1 that :func:`safe_stem` appends to a shortened or cleaned id (keeps ids distinct).
HASH_CHARS = 12

_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")


def printable(text: str) -> str:
    """``text`` writable as UTF-8: the bytes of a non-UTF-8 file name (surrogate escapes from ``os.fsdecode``)
    become ``\\xNN``; any other lone surrogate ``\\udcNN``. Plain text is returned unchanged."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _truncate(text: str, max_bytes: int) -> str:
    return text.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")


def safe_stem(scan_id: str) -> str:
    """The file stem for the id ``scan_id``: ``OUT/scans/<stem>.csv``, ``OUT/pictures/<stem>/``, a cache folder.

    A plain id (a valid file name of at most :data:`MAX_STEM_BYTES` UTF-8 bytes, not starting with ".") is its own
    stem. Any other (empty, ``.``/``..``, a leading dot, a path separator or control character, undecodable bytes,
    too long) becomes its cleaned, shortened text + ``-`` + :data:`HASH_CHARS` hex digits of its SHA-1: never a path
    component, never outside its folder, and distinct ids keep distinct files.
    """
    text = printable(scan_id)
    clean = _UNSAFE.sub("_", text).lstrip(".")
    if clean == scan_id and clean and len(clean.encode("utf-8")) <= MAX_STEM_BYTES:
        return scan_id
    digest = hashlib.sha1(scan_id.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_CHARS]
    prefix = _truncate(clean, MAX_STEM_BYTES - HASH_CHARS - 1)
    return f"{prefix}-{digest}" if prefix else digest


def temporary_name(path: Path) -> str:
    """The name of ``path``'s temporary file: ``.tmp-<pid>-<name>``, with a long name shortened by
    :func:`safe_stem` (its last suffixes kept, e.g. ``.nii.gz``) so it stays within :data:`NAME_MAX` bytes."""
    prefix = f".tmp-{os.getpid()}-"
    name = path.name
    if len(os.fsencode(prefix + name)) <= NAME_MAX:
        return prefix + name
    suffix = "".join(path.suffixes[-2:])
    if len(os.fsencode(suffix)) > 16 or _UNSAFE.sub("", suffix) != suffix:
        suffix = ""
    return prefix + safe_stem(name[: len(name) - len(suffix)] if suffix else name) + suffix


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` to write a temporary file beside ``path`` (:func:`temporary_name`: same suffix), then
    rename it to ``path``; creates the folder, and removes the temporary file if ``write`` fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(temporary_name(path))
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8, through :func:`printable`) to ``path`` through a temporary file and a rename; creates
    the folder."""
    return write_atomic(path, lambda tmp: tmp.write_text(printable(text), encoding="utf-8"))


def to_jsonable(value: Any) -> Any:
    """A copy of ``value`` that strict JSON holds: NaN and +-inf -> ``None``, numpy scalars and arrays -> Python
    numbers and lists, tuples -> lists, mapping keys -> ``str``, a :class:`~pathlib.Path` -> its text. Anything else
    is returned as is (and :func:`to_json_text` refuses what ``json`` cannot write)."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def to_json_text(value: Any, indent: int | None = 1) -> str:
    """``value`` as strict JSON text (:func:`to_jsonable`; ``allow_nan=False`` guards against any NaN left), with a
    final newline."""
    return json.dumps(to_jsonable(value), indent=indent, allow_nan=False) + "\n"


def write_json_atomic(path: str | Path, value: Any, indent: int | None = 1) -> Path:
    """Write ``value`` as strict JSON (:func:`to_json_text`) to ``path`` atomically (:func:`write_text_atomic`)."""
    return write_text_atomic(path, to_json_text(value, indent))
