"""Hostile and broken MetaImage / NRRD / NIfTI headers (issue #33): refused at read time, before SimpleITK allocates,
with one line naming the file and the key; data files outside the header's folder only with --allow-external-data.

Each case is one row of :data:`CASES`: an id, a function crafting the input in a folder (returning the path to give
``lungcad inspect``), the exit code, and phrases the one-line error must hold. The memory cases run ``lungcad inspect``
in a subprocess under RLIMIT_AS (the old reader passed it: 4.8 GB for the first, 2 GB of zeros for the second).
"""

from __future__ import annotations

import os
import resource
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from lungcad.cli.main import main
from lungcad.errors import LungcadError

ROOT = Path(__file__).resolve().parents[2]


def mhd(folder: Path, *, name="scan", dims="4 3 2", element="MET_SHORT", data=None, extra="", ndims="3",
        spacing="3 3 3", data_file=None, compressed=False) -> Path:  # fmt: skip
    """Write ``folder/name.mhd`` (and its data file, ``data`` bytes, unless None) with the given header values."""
    folder.mkdir(parents=True, exist_ok=True)
    data_file = data_file or f"{name}.{'zraw' if compressed else 'raw'}"
    header = "ObjectType = Image\n" + (f"NDims = {ndims}\n" if ndims else "")
    header += f"DimSize = {dims}\nElementType = {element}\n"
    header += f"ElementSpacing = {spacing}\n" if spacing is not None else ""
    header += "CompressedData = True\n" if compressed else ""
    header += extra + f"ElementDataFile = {data_file}\n"
    if data is not None:
        (folder / data_file).write_bytes(data)
    (folder / f"{name}.mhd").write_text(header)
    return folder / f"{name}.mhd"


def voxels(n: int) -> bytes:
    """``n`` int16 voxels of -1000 HU."""
    return np.full(n, -1000, np.int16).tobytes()


def nifti_with_dims(folder: Path, dims: tuple[int, int, int]) -> Path:
    """A tiny .nii (4x3x2 voxels of data) whose header's dim[1..3] say ``dims``."""
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "big.nii"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 3, 4), np.int16)), str(path))
    raw = bytearray(path.read_bytes())
    raw[42:48] = struct.pack("<3h", *dims)  # nifti-1: short dim[8] at byte 40
    path.write_bytes(bytes(raw))
    return path


def nrrd(folder: Path, fields: str, data: bytes = b"", name="scan.nrrd") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(f"NRRD0004\ntype: short\ndimension: 3\nencoding: raw\nendian: little\n{fields}\n".encode() + data)
    return path


def outside_raw(tmp: Path, n: int = 24) -> Path:
    """A data file in a folder beside the scan's."""
    (tmp / "elsewhere").mkdir(exist_ok=True)
    (tmp / "elsewhere" / "x.raw").write_bytes(voxels(n))
    return tmp / "elsewhere" / "x.raw"


def symlink_out(tmp: Path) -> Path:
    (tmp / "s").mkdir()
    (tmp / "s" / "scan.raw").symlink_to(outside_raw(tmp))
    return mhd(tmp / "s")


def folder_of_links(tmp: Path) -> Path:
    """A folder of symlinks to a real .mhd and .raw elsewhere (a hand-made LUNA16 subset): a good input."""
    real = mhd(tmp / "real", data=voxels(24))
    (tmp / "links").mkdir()
    for f in ("scan.mhd", "scan.raw"):
        (tmp / "links" / f).symlink_to(real.parent / f)
    return tmp / "links" / "scan.mhd"


def list_with_one_outside(tmp: Path) -> Path:
    outside_raw(tmp, 12)
    path = mhd(tmp / "s", data_file="LIST", data=None)
    (tmp / "s" / "a.raw").write_bytes(voxels(12))
    path.write_text(path.read_text() + "a.raw\n../elsewhere/x.raw\n")
    return path


@dataclass(frozen=True)
class Case:
    id: str
    craft: object  # (tmp_path) -> path to inspect
    code: int
    phrases: tuple[str, ...]
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


MB = 1 << 20
CASES = [
    # 1. a tiny .zraw declaring a huge scan; compressed streams shorter/longer than declared, corrupt, cut
    Case(
        "zraw-declares-1024x1024x1500",
        lambda t: mhd(t / "s", dims="1024 1024 1500", compressed=True, data=zlib.compress(bytes(MB))),
        1,
        ("scan.mhd", "1500x1024x1024", "over the limit", "LUNGCAD_MAX_VOXELS"),
    ),
    Case(
        "zraw-short-stream",
        lambda t: mhd(t / "s", dims="64 64 64", compressed=True, data=zlib.compress(bytes(4096))),
        1,
        ("scan.mhd", "scan.zraw", "inflate to 4096 bytes, expected 524288", "truncated"),
    ),
    Case(
        "zraw-long-stream",
        lambda t: mhd(t / "s", compressed=True, data=zlib.compress(bytes(3 * MB))),
        1,
        ("scan.mhd", "scan.zraw", "inflate to more than 48 bytes", "header does not describe"),
    ),
    Case(
        "zraw-corrupt",
        lambda t: mhd(t / "s", compressed=True, data=b"\x00junk" * 10),
        1,
        ("scan.mhd", "scan.zraw", "corrupt"),
    ),
    Case(
        "zraw-cut-stream",
        lambda t: mhd(t / "s", compressed=True, data=zlib.compress(voxels(24))[:-10]),
        1,
        ("scan.mhd", "scan.zraw", "truncated"),
    ),
    Case(
        "zraw-compressed-size-beyond-file",
        lambda t: mhd(
            t / "s", compressed=True, extra="CompressedDataSize = 5000000000\n", data=zlib.compress(voxels(24))
        ),
        1,
        ("scan.mhd", "CompressedDataSize = 5000000000", "truncated"),
    ),
    Case(
        "raw-short",
        lambda t: mhd(t / "s", data=voxels(20)),
        1,
        ("scan.mhd", "holds 40 bytes, expected 48", "truncated"),
    ),
    Case(
        "raw-longer",
        lambda t: mhd(t / "s", data=voxels(30)),
        1,
        ("scan.mhd", "holds 60 bytes, expected 48", "header does not describe"),
    ),
    Case(
        "mha-local-short",
        lambda t: mhd(t / "s", data_file="LOCAL").rename(t / "s" / "scan.mha").parent / "scan.mha",
        1,
        ("scan.mha", "holds 0 bytes, expected 48"),
    ),
    # 2. DimSize whose product overflows 64 bits
    Case(
        "dimsize-overflows-int64",
        lambda t: mhd(t / "s", dims="4294967296 4294967296 2", data=voxels(24)),
        1,
        ("scan.mhd", "over the limit"),
    ),
    # 3. DimSize, spacing, NDims that are not a 3-D scan
    Case("dimsize-zero", lambda t: mhd(t / "s", dims="0 512 512", data=b""), 1, ("scan.mhd", "DimSize = '0 512 512'")),
    Case("dimsize-negative", lambda t: mhd(t / "s", dims="4 -3 2", data=voxels(24)), 1, ("scan.mhd", "DimSize")),
    Case("dimsize-not-integer", lambda t: mhd(t / "s", dims="4 3 2.5", data=voxels(24)), 1, ("scan.mhd", "DimSize")),
    Case("dimsize-two-values", lambda t: mhd(t / "s", dims="4 3", data=voxels(12)), 1, ("scan.mhd", "DimSize")),
    Case(
        "spacing-zero",
        lambda t: mhd(t / "s", spacing="1 0 1", data=voxels(24)),
        1,
        ("scan.mhd", "ElementSpacing = 1 0 1"),
    ),
    Case(
        "spacing-negative", lambda t: mhd(t / "s", spacing="1 1 -2", data=voxels(24)), 1, ("scan.mhd", "ElementSpacing")
    ),
    Case(
        "spacing-nan",
        lambda t: mhd(t / "s", spacing="nan 1 1", data=voxels(24)),
        1,
        ("scan.mhd", "ElementSpacing = nan"),
    ),
    Case("spacing-text", lambda t: mhd(t / "s", spacing="one 1 1", data=voxels(24)), 1, ("scan.mhd", "ElementSpacing")),
    Case("ndims-2", lambda t: mhd(t / "s", ndims="2", dims="4 3", data=voxels(12)), 1, ("scan.mhd", "NDims = '2'")),
    Case("ndims-4", lambda t: mhd(t / "s", ndims="4", dims="4 3 2 1", data=voxels(24)), 1, ("scan.mhd", "NDims = '4'")),
    Case("no-ndims", lambda t: mhd(t / "s", ndims=None, data=voxels(24)), 1, ("scan.mhd", "no NDims")),
    # 4. data files outside the header's folder
    Case(
        "data-parent-traversal",
        lambda t: mhd(t / "s", data_file="../../../../../../../../etc/passwd"),
        1,
        ("scan.mhd", "ElementDataFile ../../../../../../../../etc/passwd is outside", "--allow-external-data"),
    ),
    Case("data-absolute", lambda t: mhd(t / "s", data_file="/etc/passwd"), 1, ("scan.mhd", "/etc/passwd is outside")),
    Case("data-symlink-out", symlink_out, 1, ("scan.mhd", "outside the header's folder", "x.raw")),
    Case("data-list-one-outside", list_with_one_outside, 1, ("scan.mhd", "../elsewhere/x.raw is outside")),
    Case(
        "data-pattern-outside",
        lambda t: outside_raw(t, 12) and mhd(t / "s", data_file="../elsewhere/%s.raw 1 2 1"),
        1,
        ("scan.mhd", "is outside"),
    ),
    Case(
        "nrrd-data-file-outside",
        lambda t: outside_raw(t) and nrrd(t / "s", "sizes: 4 3 2\ndata file: ../elsewhere/x.raw\n"),
        1,
        ("scan.nrrd", "data file ../elsewhere/x.raw is outside"),
    ),
    Case(
        "external-data-allowed",
        lambda t: mhd(t / "s", data_file=str(outside_raw(t))),
        0,
        ("shape z,y,x: 2 x 3 x 4",),
        args=("--allow-external-data",),
    ),
    # NIfTI / NRRD headers: declared size checked before SimpleITK reads pixels
    Case(
        "nifti-declares-32767^3",
        lambda t: nifti_with_dims(t / "s", (32767, 32767, 32767)),
        1,
        ("big.nii", "32767x32767x32767", "over the limit"),
    ),
    Case(
        "nrrd-declares-huge",
        lambda t: nrrd(t / "s", "sizes: 100000 100000 100000\n", voxels(24)),
        1,
        ("scan.nrrd", "over the limit"),
    ),
    # good inputs still read
    Case(
        "list-inside",
        lambda t: (
            list_with_one_outside(t).write_text(
                (t / "s" / "scan.mhd").read_text().replace("../elsewhere/x.raw", "a.raw")
            )
            and t / "s" / "scan.mhd"
        ),
        0,
        ("shape z,y,x: 2 x 3 x 4",),
    ),
    Case("folder-of-symlinks", folder_of_links, 0, ("shape z,y,x: 2 x 3 x 4",)),
    Case(
        "zraw-good", lambda t: mhd(t / "s", compressed=True, data=zlib.compress(voxels(24))), 0, ("HU range:    -1000",)
    ),
    Case(
        "zraw-good-huge-voxel-limit",
        lambda t: mhd(t / "s", compressed=True, data=zlib.compress(voxels(24))),
        0,
        ("shape z,y,x: 2 x 3 x 4",),
        env=(("LUNGCAD_MAX_VOXELS", "24"),),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_header(tmp_path, capsys, monkeypatch, case):
    for key, value in case.env:
        monkeypatch.setenv(key, value)
    path = case.craft(tmp_path)
    before = set(tmp_path.rglob("*"))
    code = main(["inspect", str(path), *case.args])
    out, err = capsys.readouterr()
    assert code == case.code, err
    assert set(tmp_path.rglob("*")) == before  # nothing written
    text = out if code == 0 else err
    if code:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err
        assert lines[0].startswith(f"lungcad: error: {path}: "), err
    for phrase in case.phrases:
        assert phrase in text, text


def test_external_data_is_refused_by_load_scan_and_allowed_on_request(tmp_path):
    from lungcad.errors import ExternalDataError
    from lungcad.io import load_scan

    path = mhd(tmp_path / "s", data_file="../elsewhere/x.raw")
    outside_raw(tmp_path)
    with pytest.raises(ExternalDataError):
        load_scan(path)
    assert load_scan(path, allow_external_data=True).shape == (2, 3, 4)


def _inspect_limited(path: Path, limit_bytes: int, env: dict[str, str] | None = None):
    """``lungcad inspect path`` in a subprocess whose address space is limited to ``limit_bytes``."""

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    return subprocess.run(
        [sys.executable, "-m", "lungcad.cli.main", "inspect", str(path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        preexec_fn=limit,
        capture_output=True,
        text=True,
        timeout=120,
    )


GIB = 1 << 30


@pytest.mark.parametrize(
    ("dims", "env", "phrase"),
    [
        ("1024 1024 1500", {}, "over the limit"),  # old code: exit 0 after allocating 4.8 GB
        ("1024 1024 1000", {"LUNGCAD_MAX_VOXELS": str(2**31)}, "inflate to 1048576 bytes, expected 2097152000"),
    ],
    ids=["declared-size", "bounded-inflate"],
)
def test_tiny_zraw_declaring_a_huge_scan_is_refused_within_1_gib(tmp_path, dims, env, phrase):
    path = mhd(tmp_path / "s", dims=dims, compressed=True, data=zlib.compress(bytes(MB)))
    out = _inspect_limited(path, GIB, env)
    assert out.returncode == 1, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"lungcad: error: {path}: ") and phrase in lines[0], out.stderr


def test_cli_flag_reaches_the_batch_readers(tmp_path, monkeypatch):
    """``--allow-external-data`` on detect and preprocess reaches load_scan."""
    import lungcad.io
    import lungcad.pipeline.batch

    seen = []

    def fake_load_scan(path, **kw):
        seen.append(kw.get("allow_external_data"))
        raise LungcadError("stop here", path=path)

    monkeypatch.setattr(lungcad.io, "load_scan", fake_load_scan)
    monkeypatch.setattr(lungcad.pipeline.batch, "load_scan", fake_load_scan)
    scan = mhd(tmp_path / "in", data=voxels(24))
    for flags in ([], ["--allow-external-data"]):
        out = tmp_path / f"pre{len(flags)}"
        assert main(["preprocess", str(scan), "-o", str(out), *flags]) == 3
        out = tmp_path / f"det{len(flags)}"
        assert main(["detect", str(scan), "-o", str(out), "--stage", "candidates", "--no-pictures", *flags]) == 3
    assert seen == [False, False, True, True]
