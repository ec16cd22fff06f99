"""The fast pixel read of uncompressed DICOM (stored values straight from the file) and the integer HU path give
exactly what pydicom's decoder and float32 HU gave: the same int16 volume bit for bit, the same geometry, metadata
and warnings; whatever they do not cover (compressed, odd layouts, truncated data, fractional rescale, 32-bit
values, clipped values that are then resampled) goes the old way."""

from __future__ import annotations

import gdcm
import numpy as np
import pydicom
import pytest
from helpers import gdcm_transcode
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian, RLELossless

from lungcad.io import ct_slice_datasets, dicom, load_scan, write_datasets
from lungcad.scan import CTScan


def _write(scan: CTScan, folder, datasets=None, **options):
    datasets = datasets if datasets is not None else ct_slice_datasets(scan, **options)
    return write_datasets(datasets, folder, [f"{k:03d}.dcm" for k in range(len(datasets))])


def _fast_and_pydicom(folder, monkeypatch) -> tuple[CTScan, CTScan, int]:
    """The series read as lungcad reads it, then with every slice decoded by pydicom; and how many slices the
    fast read took."""
    fast_reads = []
    read_native = dicom._read_native

    def spy(sl, layout):
        raw = read_native(sl, layout)
        fast_reads.extend([] if raw is None else [sl.path])
        return raw

    with monkeypatch.context() as m:
        m.setattr(dicom, "_read_native", spy)
        fast = load_scan(folder)
    with monkeypatch.context() as m:  # the reader as it was: pydicom decodes, HU in float32, then rint and clip
        m.setattr(dicom, "_native_layout", lambda sl: None)
        m.setattr(dicom, "_integer_rescale", lambda sl: False)
        reference = load_scan(folder)
    return fast, reference, len(fast_reads)


def _assert_identical(fast: CTScan, reference: CTScan) -> None:
    assert fast.array.dtype == reference.array.dtype == np.int16
    np.testing.assert_array_equal(fast.array, reference.array)
    assert fast.spacing == reference.spacing and fast.origin == reference.origin
    np.testing.assert_array_equal(fast.direction, reference.direction)
    assert fast.metadata == reference.metadata
    assert fast.warnings == reference.warnings


@pytest.mark.parametrize("shape", [(4, 40, 40), (4, 16, 16)], ids=["deferred", "in-header"])
@pytest.mark.parametrize(
    "signed, slope, intercept, padding_value",
    [(True, 1.0, -1024.0, -2000), (True, 0.37, -1024.5, -2000), (False, 1.0, -1024.0, 0), (False, 2.5, -1100.0, 0)],
    ids=["int16", "int16-fractional-slope", "uint16", "uint16-slope"],
)
def test_little_endian_same_as_pydicom(
    tmp_path, make_scan, monkeypatch, shape, signed, slope, intercept, padding_value
):
    scan = make_scan(shape=shape, low=-1000, high=2000)
    mask = np.zeros(shape[1:], bool)
    mask[:3, :5] = True  # padding outside the "scan circle"
    _write(
        scan,
        tmp_path / "p",
        signed=signed,
        rescale_slope=slope,
        rescale_intercept=intercept,
        padding_mask=mask,
        padding_value=padding_value,
    )
    fast, reference, fast_reads = _fast_and_pydicom(tmp_path / "p", monkeypatch)
    assert fast_reads == shape[0]
    _assert_identical(fast, reference)
    assert np.all(fast.array[:, mask] == -1024)
    if slope == 1.0:
        np.testing.assert_array_equal(fast.array[:, ~mask], scan.array[:, ~mask])


def test_varying_intercept_per_slice_and_implicit_vr(tmp_path, make_scan, monkeypatch):
    scan = make_scan(shape=(5, 40, 40))
    datasets = ct_slice_datasets(scan, rescale_intercept=[-1024.0, -1000.0, 0.0, -1024.5, -3.25], padding_value=None)
    for ds in datasets[::2]:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    _write(scan, tmp_path / "p", datasets)
    fast, reference, fast_reads = _fast_and_pydicom(tmp_path / "p", monkeypatch)
    assert fast_reads == 5
    _assert_identical(fast, reference)
    np.testing.assert_array_equal(fast.array[:3], scan.array[:3])  # integer intercepts: exact


def test_big_endian_same_as_pydicom(tmp_path, make_scan, monkeypatch):
    scan = make_scan(shape=(4, 40, 40))
    datasets = ct_slice_datasets(scan, rescale_slope=0.5, padding_value=-2000)
    for ds in datasets:
        stored = np.frombuffer(ds.PixelData, dtype="<i2")
        ds.PixelData = stored.astype(">i2").tobytes()
        ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    paths = _write(scan, tmp_path / "p", datasets)
    ds = pydicom.dcmread(paths[0])
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRBigEndian and not ds.is_little_endian
    fast, reference, fast_reads = _fast_and_pydicom(tmp_path / "p", monkeypatch)
    assert fast_reads == 4
    _assert_identical(fast, reference)
    np.testing.assert_array_equal(fast.array, scan.array)


@pytest.mark.parametrize("signed", [True, False])
def test_unused_high_bits_ignored_as_pydicom_does(tmp_path, make_scan, monkeypatch, signed):
    """BitsStored 12 of 16 with garbage in the 4 high bits: pydicom masks (unsigned) or sign-extends (signed)."""
    scan = make_scan(shape=(3, 40, 40), low=-1000, high=1500)
    datasets = ct_slice_datasets(scan, signed=signed, rescale_intercept=0.0 if signed else -1024.0, padding_value=None)
    for ds in datasets:
        stored = np.frombuffer(ds.PixelData, dtype="<u2")
        ds.PixelData = ((stored & 0x0FFF) | 0xA000).astype("<u2").tobytes()
        ds.BitsStored, ds.HighBit = 12, 11
    _write(scan, tmp_path / "p", datasets)
    fast, reference, fast_reads = _fast_and_pydicom(tmp_path / "p", monkeypatch)
    assert fast_reads == 3
    _assert_identical(fast, reference)
    np.testing.assert_array_equal(fast.array, scan.array)


def _rle(path) -> None:
    ds = pydicom.dcmread(path)
    ds.compress(RLELossless)
    ds.save_as(path)


@pytest.mark.parametrize("codec", ["rle", "jpeg-ls"])
def test_compressed_slices_fall_back_to_pydicom(tmp_path, make_scan, monkeypatch, codec):
    """Half the slices compressed, half not: the compressed ones are decoded by pydicom, the volume is the same."""
    scan = make_scan(shape=(6, 40, 40), low=-1024, high=2000)
    paths = _write(scan, tmp_path / "p", padding_value=None)
    for path in paths[::2]:
        _rle(path) if codec == "rle" else gdcm_transcode(path, gdcm.TransferSyntax.JPEGLSLossless)
    assert pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID.is_compressed
    fast, reference, fast_reads = _fast_and_pydicom(tmp_path / "p", monkeypatch)
    assert fast_reads == 3
    _assert_identical(fast, reference)
    np.testing.assert_array_equal(fast.array, scan.array)


def test_truncated_pixel_data_goes_through_pydicom(tmp_path, make_scan, monkeypatch):
    """A file cut inside its pixel data: the fast read declines it and pydicom's error names the file; the slice is
    dropped and the gap interpolated exactly as before."""
    scan = make_scan(shape=(6, 40, 40))
    paths = _write(scan, tmp_path / "p", padding_value=None)
    paths[2].write_bytes(paths[2].read_bytes()[:-100])
    fast, reference, fast_reads = _fast_and_pydicom(tmp_path / "p", monkeypatch)
    assert fast_reads == 5
    _assert_identical(fast, reference)
    assert fast.shape == scan.shape and fast.metadata["slices_read"] == 5
    assert any(paths[2].name in w and "pixel data unreadable" in w for w in fast.warnings)


def test_file_shortened_after_its_header_was_read(tmp_path, make_scan, monkeypatch):
    """The file loses its pixel data between the header read and the pixel read: pydicom decides, as before."""
    scan = make_scan(shape=(4, 40, 40))
    paths = _write(scan, tmp_path / "p", padding_value=None)
    image_slice = dicom.image_slice

    def shorten_after_header(path, ds):
        sl = image_slice(path, ds)
        if path == paths[1]:
            path.write_bytes(path.read_bytes()[:-3000])
        return sl

    monkeypatch.setattr(dicom, "image_slice", shorten_after_header)
    read = load_scan(tmp_path / "p")
    assert read.metadata["slices_read"] == 3
    assert any(paths[1].name in w for w in read.warnings)


def test_pixel_data_longer_than_one_frame_goes_through_pydicom(tmp_path, make_scan, monkeypatch):
    """PixelData of two frames where the header says one: pydicom's shape check refuses the slice, as before (the
    fast read must not quietly take the first frame)."""
    scan = make_scan(shape=(4, 40, 40))
    datasets = ct_slice_datasets(scan, padding_value=None)
    datasets[1].PixelData += datasets[1].PixelData
    _write(scan, tmp_path / "p", datasets)
    fast, reference, fast_reads = _fast_and_pydicom(tmp_path / "p", monkeypatch)
    assert fast_reads == 3
    _assert_identical(fast, reference)
    assert fast.metadata["slices_read"] == 3 and any("pixel array has shape (2, 40, 40)" in w for w in fast.warnings)


@pytest.mark.parametrize("geometry", ["regular", "missing-slice", "gantry-tilt"])
def test_integer_path_clipped_values_and_resampling(tmp_path, make_scan, monkeypatch, geometry):
    """uint16 values above 32767 HU (clipped to int16) in a series that is then resampled: the interpolation must
    see the unclipped float HU, as before."""
    scan = make_scan(shape=(6, 40, 40), low=-1000, high=1500)
    datasets = ct_slice_datasets(scan, signed=False, rescale_intercept=-1024.0, padding_value=None)
    for ds in datasets:
        stored = np.frombuffer(ds.PixelData, dtype="<u2").reshape(40, 40).copy()
        stored[:4, :] = 65000  # HU 63976: clipped to 32767
        ds.PixelData = stored.tobytes()
    if geometry == "missing-slice":
        del datasets[2]
    if geometry == "gantry-tilt":
        for k, ds in enumerate(datasets):
            x, y, z = (float(v) for v in ds.ImagePositionPatient)
            ds.ImagePositionPatient = [f"{x:.6f}", f"{y + 0.3 * k:.6f}", f"{z:.6f}"]
    _write(scan, tmp_path / "p", datasets)
    fast, reference, fast_reads = _fast_and_pydicom(tmp_path / "p", monkeypatch)
    assert fast_reads == len(datasets) * (1 if geometry == "regular" else 2)  # read again as float to resample
    _assert_identical(fast, reference)
    assert fast.metadata["resampled"] == (geometry != "regular")
    assert fast.array.max() == 32767


def test_integer_path_resampled_without_clipping(tmp_path, make_scan, monkeypatch):
    scan = make_scan(shape=(6, 40, 40))
    datasets = ct_slice_datasets(scan, padding_value=-2000)
    del datasets[3]
    _write(scan, tmp_path / "p", datasets)
    fast, reference, fast_reads = _fast_and_pydicom(tmp_path / "p", monkeypatch)
    assert fast_reads == 5  # read once: the float HU comes from the int16 volume
    _assert_identical(fast, reference)
    assert fast.metadata["resampled"]


def test_32_bit_values_decoded_in_float(tmp_path, make_scan, monkeypatch):
    """32-bit stored values (pydicom decodes them): float32 rounds large ones, so the volume is made the old way."""
    scan = make_scan(shape=(3, 40, 40))
    datasets = ct_slice_datasets(scan, padding_value=None)
    for ds in datasets:
        stored = np.frombuffer(ds.PixelData, dtype="<i2").astype("<i4").reshape(40, 40)
        stored[0, 0] = 2**24 + 1  # not a float32
        ds.PixelData = stored.tobytes()
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 32, 31
    _write(scan, tmp_path / "p", datasets)
    fast, reference, fast_reads = _fast_and_pydicom(tmp_path / "p", monkeypatch)
    assert fast_reads == 0
    _assert_identical(fast, reference)
    np.testing.assert_array_equal(fast.array.reshape(3, -1)[:, 1:], scan.array.reshape(3, -1)[:, 1:])


def test_decode_threads_follow_the_workers_share(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert dicom.decode_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "64")
    assert 1 <= dicom.decode_threads() <= dicom.MAX_DECODE_THREADS
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")
    assert 1 <= dicom.decode_threads() <= dicom.MAX_DECODE_THREADS


def test_one_thread_and_several_read_the_same(tmp_path, make_scan, monkeypatch):
    scan = make_scan(shape=(7, 40, 40))
    datasets = ct_slice_datasets(scan, rescale_slope=0.5, padding_value=-2000)
    del datasets[4]  # resampled, and decoded in float32 (fractional slope)
    _write(scan, tmp_path / "p", datasets)
    monkeypatch.setattr(dicom, "decode_threads", lambda: 1)
    one = load_scan(tmp_path / "p")
    monkeypatch.setattr(dicom, "decode_threads", lambda: 3)
    _assert_identical(load_scan(tmp_path / "p"), one)


def test_file_replaced_after_its_header_was_read(tmp_path, make_scan, monkeypatch):
    """Another file (its pixel data elsewhere) under the name between the header read and the pixel read: the fast
    read finds no PixelData element at the offset and leaves the slice to pydicom, which refuses it as before."""
    scan = make_scan(shape=(4, 40, 40))
    paths = _write(scan, tmp_path / "p", padding_value=None)
    image_slice = dicom.image_slice

    def replace_after_header(path, ds):
        sl = image_slice(path, ds)
        if path == paths[1]:
            ds2 = pydicom.dcmread(path)
            ds2.ImageComments = "x" * 64  # moves the pixel data 72 bytes further into the file
            ds2.save_as(path)
        return sl

    monkeypatch.setattr(dicom, "image_slice", replace_after_header)
    read = load_scan(tmp_path / "p")
    assert read.metadata["slices_read"] == 3
    assert any(paths[1].name in w and "pixel data unreadable" in w for w in read.warnings)
