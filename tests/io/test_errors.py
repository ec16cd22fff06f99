"""Bad input gives one clear line naming the file; a bad slice is skipped as a gap, not fatal."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from lungcad.errors import (
    CorruptScanError,
    LungcadError,
    ScanNotFoundError,
    UnsupportedCompressionError,
    UnsupportedFormatError,
)
from lungcad.io import ct_slice_datasets, load_scan, write_datasets, write_mhd


def _series(tmp_path, scan, name="p"):
    datasets = ct_slice_datasets(scan, padding_value=None)
    paths = write_datasets(datasets, tmp_path / name, [f"{k:03d}.dcm" for k in range(len(datasets))])
    return paths


def test_missing_path(tmp_path):
    with pytest.raises(ScanNotFoundError) as err:
        load_scan(tmp_path / "nope")
    assert str(err.value) == f"{tmp_path / 'nope'}: no such file or folder"


def test_truncated_pixel_data_skipped_as_gap_with_warning_naming_file(tmp_path, linear_scan):
    scan = linear_scan()
    paths = _series(tmp_path, scan)
    data = paths[5].read_bytes()
    paths[5].write_bytes(data[: len(data) - 100])  # pixel data cut short
    read = load_scan(tmp_path / "p")
    assert read.shape == scan.shape
    assert any("005.dcm" in w and "skipped slice" in w for w in read.warnings)
    np.testing.assert_allclose(read.array, scan.array, atol=1)


def test_truncated_header_skipped_with_warning(tmp_path, make_scan):
    scan = make_scan()
    paths = _series(tmp_path, scan)
    paths[0].write_bytes(paths[0].read_bytes()[:300])  # DICM preamble, then cut inside the header
    read = load_scan(tmp_path / "p")
    assert any("000.dcm" in w for w in read.warnings)
    np.testing.assert_array_equal(read.array, scan.array[1:])


def test_every_slice_unreadable_is_a_clear_error(tmp_path, make_scan):
    for p in _series(tmp_path, make_scan(shape=(3, 8, 8))):
        p.write_bytes(p.read_bytes()[:-64])
    with pytest.raises(CorruptScanError, match="no slice of the series could be decoded"):
        load_scan(tmp_path / "p")


def test_unsupported_compression_names_file_and_plugin(tmp_path, make_scan):
    paths = _series(tmp_path, make_scan(shape=(3, 8, 8)))
    ds = pydicom.dcmread(paths[1])
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: nothing decodes it
    ds.PixelData = pydicom.encaps.encapsulate([b"\x00" * 16])
    ds["PixelData"].VR = "OB"
    pydicom.dcmwrite(paths[1], ds)
    with pytest.raises(UnsupportedCompressionError) as err:
        load_scan(tmp_path / "p")
    msg = str(err.value)
    assert "001.dcm" in msg and "MPEG2" in msg and "pip install" in msg and "\n" not in msg


def test_short_raw_reports_byte_count_not_missing_file(tmp_path, make_scan):
    path = write_mhd(make_scan(), tmp_path / "1.2.3.mhd")
    raw = tmp_path / "1.2.3.raw"
    raw.write_bytes(raw.read_bytes()[:1000])
    with pytest.raises(CorruptScanError, match=r"1\.2\.3\.raw holds 1000 bytes, expected 7680 \(16x20x12 MET_SHORT\)"):
        load_scan(path)
    raw.unlink()
    with pytest.raises(CorruptScanError, match="does not exist"):
        load_scan(path)


def test_raw_or_unknown_file_is_unsupported(tmp_path, make_scan):
    write_mhd(make_scan(), tmp_path / "a.mhd")
    with pytest.raises(UnsupportedFormatError, match="give the header a.mhd"):
        load_scan(tmp_path / "a.raw")
    (tmp_path / "x.bin").write_bytes(b"\x01\x02" * 50)
    with pytest.raises(UnsupportedFormatError, match="not a format lungcad reads"):
        load_scan(tmp_path / "x.bin")


def test_errors_are_one_line_with_path(tmp_path):
    err = LungcadError("bad thing", path=tmp_path / "f.dcm", expected="good thing", fix="do X")
    assert str(err) == f"{tmp_path / 'f.dcm'}: bad thing; expected good thing; fix: do X"
