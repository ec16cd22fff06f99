"""Hostile and broken inputs at the level of the user (#33): ``lungcad inspect`` / ``lungcad detect`` in a subprocess.

One row of :data:`CASES` per input: a function that crafts it under ``tmp_path / "in"`` and returns the path to give
the command, the command, the exit code, and a phrase. Each command runs with its address space limited
(:data:`MEMORY_LIMIT`, ``RLIMIT_AS``), in an empty working folder, and the test asserts:

- the exit code, and no traceback on stderr;
- on failure (exit != 0): exactly ONE stderr line holds the phrase, and it names the input (``Case.names``);
  on success: stdout holds the phrase and names the input;
- no file written outside OUT (nothing beside ``in/`` and ``out/``, the working folder empty, the input untouched);
- for a batch, the scans in ``Case.completed`` finished (``OUT/scans/<id>.json``).

A new case is one row; keep ``detect`` rows few (each starts TensorFlow, ~5-10 s).
"""

from __future__ import annotations

import logging
import os
import resource
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import lungcad
from lungcad.io import ct_slice_datasets, write_datasets, write_dicom_series, write_mhd
from lungcad.scan import CTScan

#: Address-space limit per command: enough for the command itself (TensorFlow reserves ~2.5 GiB of address space),
#: far below what a header's declared size would allocate (one 60000x60000 int16 slice: 6.7 GiB).
MEMORY_LIMIT = {"inspect": 2 * 2**30, "detect": 4 * 2**30}
#: The repository whose ``lungcad`` the subprocess runs (not an installed copy).
REPO = Path(lungcad.__file__).resolve().parents[1]


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[Path], Path]  # crafts the input under the given folder; returns the path given to the command
    command: str  # "inspect" or "detect" (--stage candidates with a tiny U-Net)
    exit_code: int
    phrase: str  # in the one stderr line of a failure, or in stdout on success
    names: str | None = None  # the name that line must hold; default: the input's own name
    completed: tuple[str, ...] = ()  # detect: the scan ids that must finish despite the failures
    options: tuple[str, ...] = ()  # more command-line options (e.g. "--dicom-sr")


def small_scan(scan_id: str = "p", shape=(6, 16, 16)) -> CTScan:
    rng = np.random.default_rng(0)
    array = rng.integers(-1000, 400, size=shape).astype(np.int16)
    return CTScan(array, (2.0, 0.8, 0.8), (-10.0, -20.0, -30.0), np.eye(3), id=scan_id)


def dicom_series(folder: Path, edit=None, scan: CTScan | None = None) -> Path:
    """A CT series in ``folder`` (default: a small one), slice k in ``{k:03d}.dcm``; ``edit(ds)`` changes each
    slice's dataset before it is written (pydicom's warnings of the invalid values it makes silenced)."""
    datasets = ct_slice_datasets(scan or small_scan())
    pydicom_log = logging.getLogger("pydicom")
    pydicom_log.disabled = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for ds in datasets:
                if edit:
                    edit(ds)
            write_datasets(datasets, folder, [f"{k:03d}.dcm" for k in range(len(datasets))])
    finally:
        pydicom_log.disabled = False
    return folder


def huge_header(root: Path) -> Path:
    def edit(ds):
        ds.Rows = ds.Columns = 60000  # 256 bytes of pixel data declaring 3.6e9 pixels per slice

    return dicom_series(root / "huge", edit)


def zero_spacing_mhd(root: Path) -> Path:
    path = write_mhd(small_scan(), root / "zero.mhd")
    text = path.read_text().splitlines()
    path.write_text("\n".join("ElementSpacing = 0 0 0" if t.startswith("ElementSpacing") else t for t in text) + "\n")
    return path


def zero_spacing_dicom(root: Path) -> Path:
    def edit(ds):
        ds.PixelSpacing = [0, 0]

    return dicom_series(root / "zero_px", edit)


def dicomdir_only(root: Path) -> Path:
    """A folder holding a DICOMDIR (a real one, made by pydicom) and none of the files it lists."""
    from pydicom.fileset import FileSet

    fs = FileSet()
    for ds in ct_slice_datasets(small_scan()):
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.SeriesNumber = "20200101", "120000", "1", 1
        fs.add(ds)
    fs.write(root / "fileset")
    folder = root / "dicomdir"
    folder.mkdir(parents=True)
    (folder / "DICOMDIR").write_bytes((root / "fileset" / "DICOMDIR").read_bytes())
    return folder


def junk_folder(root: Path) -> Path:
    folder = root / "junk"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for k in range(4):
        (folder / f"IM{k}.dcm").write_bytes(rng.bytes(3000))
    (folder / "readme.txt").write_text("not a scan\n")
    (folder / "empty.dcm").write_bytes(b"")
    return folder


def symlink_loop_only(root: Path) -> Path:
    folder = root / "loop"
    folder.mkdir(parents=True)
    (folder / "self").symlink_to(folder)
    (folder / "a").symlink_to("b")
    (folder / "b").symlink_to("a")
    return folder


def symlink_loop_beside_series(root: Path) -> Path:
    folder = dicom_series(root / "looped" / "series")
    (folder / "self").symlink_to(folder)
    (folder / "up").symlink_to(root / "looped")
    return root / "looped"


def unicode_name(root: Path) -> Path:
    return dicom_series(root / "patiënt_東京 ü")


def batch_with_truncated_scan(root: Path) -> Path:
    from helpers import simple_chest

    folder = root / "batch"
    scan = simple_chest(seed=1)[0]
    write_mhd(scan, folder / "1.2.3.mhd")
    write_dicom_series(simple_chest(seed=2)[0], folder / "patiënt_東京")
    bad = write_mhd(scan, folder / "1.2.4.mhd")
    bad.with_suffix(".raw").write_bytes(b"\x00" * 100)
    return folder


def sr_study_uid_path(root: Path) -> Path:
    from helpers import simple_chest

    def edit(ds):
        ds.StudyInstanceUID = "../../"

    return dicom_series(root / "badstudy", edit, scan=simple_chest(seed=4)[0])


CASES = [
    Case("dicom-60000x60000-header", huge_header, "inspect", 1, "over the limit of 1,073,741,824"),
    Case("mhd-zero-spacing", zero_spacing_mhd, "inspect", 1, "spacing"),
    Case("dicom-zero-pixel-spacing", zero_spacing_dicom, "inspect", 1, "spacing"),
    Case("dicomdir-only-folder", dicomdir_only, "inspect", 1, "no DICOM image slices found"),
    Case("junk-folder", junk_folder, "inspect", 1, "no DICOM image slices found"),
    Case("symlink-loop-only", symlink_loop_only, "inspect", 1, "no DICOM image slices found"),
    Case("symlink-loop-beside-series", symlink_loop_beside_series, "inspect", 0, "(6 slices)"),
    Case("unicode-folder-name", unicode_name, "inspect", 0, "(6 slices)"),
    Case(
        "batch-truncated-scan-others-complete",
        batch_with_truncated_scan,
        "detect",
        3,
        "truncated",
        names="1.2.4.raw",
        completed=("1.2.3", "patiënt_東京"),
    ),
    Case(
        "dicom-sr-invalid-study-uid",
        sr_study_uid_path,
        "detect",
        3,
        "StudyInstanceUID '../../' is not a UID",
        names="000.dcm",
        options=("--dicom-sr",),
    ),
]


def limit_memory(limit: int) -> Callable[[], None]:
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def files_under(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    """Every file and link under ``root`` except ``skip``'s subtree: relative path -> (size, mtime_ns)."""
    found = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if Path(folder, d) != skip]
        for name in files + [d for d in dirs if Path(folder, d).is_symlink()]:
            st = Path(folder, name).lstat()
            found[str(Path(folder, name).relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return found


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(tmp_path, request, case):
    target = case.make(tmp_path / "in")
    out, cwd = tmp_path / "out", tmp_path / "cwd"
    cwd.mkdir()
    before = files_under(tmp_path, skip=out)
    if case.command == "inspect":
        args = ["inspect", str(target)]
    else:
        model = ["--model", str(request.getfixturevalue("confident_model")), "--stage", "candidates", "--no-pictures"]
        args = ["detect", str(target), "-o", str(out), *model]
    args += case.options
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = subprocess.run(
        [sys.executable, "-m", "lungcad.cli.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=300,
        preexec_fn=limit_memory(MEMORY_LIMIT[case.command]),
    )
    report = f"exit {run.returncode}\nstdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    assert run.returncode == case.exit_code, report
    assert "Traceback" not in run.stderr and "MemoryError" not in run.stderr, report
    name = case.names or target.name
    if case.exit_code == 0:
        assert case.phrase in run.stdout and name in run.stdout, report
    else:
        lines = [line for line in run.stderr.splitlines() if case.phrase in line]
        assert len(lines) == 1 and name in lines[0], report
    assert files_under(tmp_path, skip=out) == before  # nothing written outside OUT, the input untouched
    for scan_id in case.completed:
        assert (out / "scans" / f"{scan_id}.json").is_file(), report
