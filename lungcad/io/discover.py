"""Discovery: turn inputs (scan files, DICOM folders, LUNA16 ``subset*`` folders, DSB ``stage1`` folders, nested
trees) into :class:`ScanRef` s with unique ids.

What is found is what :func:`lungcad.io.load_scan` reads: volume files ending in one of
:data:`lungcad.io.load.SCAN_SUFFIXES`, and folders that directly hold DICOM files
(:func:`lungcad.io.dicom.is_dicom_folder`). A ref's id is :func:`lungcad.io.load.scan_id` of its path, the same id
``load_scan(ref.path)`` gives the scan.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lungcad.errors import DataLayoutError, ScanNotFoundError
from lungcad.io.dicom import is_dicom_folder
from lungcad.io.load import SCAN_SUFFIXES, scan_id

#: Folders never searched for scans (LUNA16 ships lung masks as .mhd in these), by name prefix.
SKIP_DIRS = ("seg-lungs", "stage1_lungs", "lung_labels", ".")


@dataclass(frozen=True)
class ScanRef:
    """One scan to process: its id (output name, ``scan_id(path)``) and the path to give ``load_scan``."""

    id: str
    path: Path


def _is_scan_file(name: str) -> bool:
    return name.lower().endswith(SCAN_SUFFIXES) and not name.startswith(".")


def _is_dicom_folder(folder: Path) -> bool:
    return is_dicom_folder(folder, skip_suffixes=SCAN_SUFFIXES)


def _walk(folder: Path) -> Iterable[Path]:
    """Scan paths below ``folder``: volume files and folders that directly hold DICOM files. Symlinked folders are
    followed (views of a dataset made of links), each real folder once (no loops)."""
    seen: set[str] = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith(SKIP_DIRS))
        root_path = Path(root)
        yield from (root_path / name for name in sorted(files) if _is_scan_file(name))
        if files and _is_dicom_folder(root_path):
            yield root_path


def find_scans(inputs: Sequence[str | Path]) -> list[ScanRef]:
    """Every scan in ``inputs`` (files, DICOM folders or trees of either), in a stable order.

    Raises:
        ScanNotFoundError: an input does not exist.
        DataLayoutError: an input holds no scan, or two scans share an id.
    """
    refs: list[ScanRef] = []
    for item in map(Path, inputs):
        if not item.exists():
            raise ScanNotFoundError("no such file or folder", path=item)
        found = [item] if item.is_file() or _is_dicom_folder(item) else list(_walk(item))
        if not found:
            raise DataLayoutError(
                "no scans found",
                path=item,
                expected=f"a {'/'.join(SCAN_SUFFIXES)} file, a DICOM folder, or folders of them",
            )
        refs += [ScanRef(scan_id(p), p) for p in found]
    seen: dict[str, Path] = {}
    for ref in refs:
        if ref.id in seen:
            raise DataLayoutError(
                f"two scans share the id {ref.id!r}: {seen[ref.id]} and {ref.path}",
                path=ref.path,
                fix="rename one, or process them in separate runs",
            )
        seen[ref.id] = ref.path
    return refs
