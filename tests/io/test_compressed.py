"""Compressed DICOM transfer syntaxes decode to the same HU as uncompressed."""

from __future__ import annotations

import gdcm
import numpy as np
import pydicom
import pytest
from helpers import gdcm_transcode
from pydicom.uid import JPEG2000Lossless, RLELossless

from lungcad.io import ct_slice_datasets, load_scan, write_datasets


def _pydicom_compress(path, uid) -> None:
    ds = pydicom.dcmread(path)
    ds.compress(uid)
    ds.save_as(path)


CASES = {
    "rle": lambda p: _pydicom_compress(p, RLELossless),
    "jpeg2000": lambda p: _pydicom_compress(p, JPEG2000Lossless),
    "jpeg-ls": lambda p: gdcm_transcode(p, gdcm.TransferSyntax.JPEGLSLossless),
    "jpeg-lossless": lambda p: gdcm_transcode(p, gdcm.TransferSyntax.JPEGLosslessProcess14_1),
}


@pytest.mark.parametrize("codec", sorted(CASES))
def test_compressed_series_decodes_exactly(tmp_path, make_scan, codec):
    scan = make_scan(shape=(4, 40, 40), low=-1024, high=2000)  # openjpeg needs >= 32 px
    datasets = ct_slice_datasets(scan, padding_value=None)
    paths = write_datasets(datasets, tmp_path / "p", [f"{k}.dcm" for k in range(4)])
    for p in paths:
        CASES[codec](p)
    assert pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID.is_compressed
    read = load_scan(tmp_path / "p")
    np.testing.assert_array_equal(read.array, scan.array)
