"""DICOM series reading: ordering, geometry, rescale, padding, series choice, repairs."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pydicom
import pytest
from helpers import rotation

from lungcad.errors import GeometryError, NoDicomError, NotCTError, SeriesNotFoundError
from lungcad.io import ct_slice_datasets, load_scan, write_datasets, write_dicom_series
from lungcad.scan import CTScan


def _write(scan: CTScan, folder, names=None, **options):
    datasets = ct_slice_datasets(scan, **options)
    names = names or [f"s{k:03d}.dcm" for k in range(len(datasets))]
    return write_datasets(datasets, folder, names), datasets


def _assert_same_world(read: CTScan, truth: CTScan, atol: float = 1e-4) -> None:
    """Every voxel corner of ``read`` sits where ``truth`` puts it (same grid, world mm)."""
    zyx = np.array([[0, 0, 0], [read.shape[0] - 1, 0, 0], [0, read.shape[1] - 1, 5], [3, 7, read.shape[2] - 1]])
    np.testing.assert_allclose(read.voxel_to_world(zyx), truth.voxel_to_world(zyx), atol=atol)


def test_slices_sorted_by_position_not_name_or_instance_number(tmp_path, make_scan):
    scan = make_scan()
    datasets = ct_slice_datasets(scan)
    rng = np.random.default_rng(1)
    for ds, instance in zip(datasets, rng.permutation(len(datasets))):
        ds.InstanceNumber = int(instance) + 1  # runs against position
        del ds.SliceLocation
    names = [f"{n:03d}.dcm" for n in rng.permutation(len(datasets))]
    write_datasets(datasets, tmp_path / "p", names)
    read = load_scan(tmp_path / "p")
    np.testing.assert_array_equal(read.array, scan.array)
    _assert_same_world(read, scan)
    assert read.id == "p" and read.warnings == ()


@pytest.mark.parametrize(
    "direction",
    [
        np.diag([-1.0, -1.0, 1.0]),  # patient rotated 180 degrees in-plane
        np.diag([1.0, -1.0, -1.0]),  # normal pointing to the feet: slices stored head to feet
        rotation("z", 30) @ rotation("x", 12),  # oblique
    ],
    ids=["rotated180", "feet-first", "oblique"],
)
def test_any_orientation_matches_dicom_geometry_exactly(tmp_path, make_scan, direction):
    scan = make_scan(direction=direction)
    paths, datasets = _write(scan, tmp_path / "p")
    read = load_scan(tmp_path / "p")
    np.testing.assert_array_equal(read.array, scan.array)
    np.testing.assert_allclose(read.direction, direction, atol=1e-6)
    # each file's IPP is voxel (k, 0, 0); pixel (row j, column i) is IPP + i*dx*row + j*dy*col
    for path in paths:
        ds = pydicom.dcmread(path)
        ipp = np.array([float(v) for v in ds.ImagePositionPatient])
        iop = np.array([float(v) for v in ds.ImageOrientationPatient])
        dy, dx = (float(v) for v in ds.PixelSpacing)
        k = read.metadata["slice_files"].index(str(path))
        j, i = 7, 11
        expected = ipp + i * dx * iop[:3] + j * dy * iop[3:]
        np.testing.assert_allclose(read.voxel_to_world([k, j, i]), expected, atol=1e-5)
        np.testing.assert_allclose(read.world_to_voxel(expected), [k, j, i], atol=1e-5)


def test_rescale_slope_intercept_signed_and_unsigned(tmp_path, make_scan):
    scan = make_scan(low=-1024, high=2000)
    even = scan.with_array((scan.array // 2) * 2)
    _write(even, tmp_path / "slope", rescale_slope=2.0, rescale_intercept=-1024.0, padding_value=None)
    np.testing.assert_array_equal(load_scan(tmp_path / "slope").array, even.array)
    _write(scan, tmp_path / "unsigned", signed=False, rescale_intercept=-1024.0, padding_value=None)
    ds = pydicom.dcmread(next((tmp_path / "unsigned").iterdir()))
    assert ds.PixelRepresentation == 0 and ds.pixel_array.dtype == np.uint16
    np.testing.assert_array_equal(load_scan(tmp_path / "unsigned").array, scan.array)
    _write(scan, tmp_path / "signed0", rescale_intercept=0.0, padding_value=None)
    np.testing.assert_array_equal(load_scan(tmp_path / "signed0").array, scan.array)


def test_rescale_values_that_differ_between_slices_applied_per_slice(tmp_path, make_scan):
    scan = make_scan(low=-1000, high=1000)
    scan = scan.with_array((scan.array // 4) * 4)
    nz = scan.shape[0]
    slopes = np.where(np.arange(nz) % 2 == 0, 1.0, 0.5)  # 0.5 keeps even HU exact
    intercepts = np.linspace(-1024, -1000, nz).round()
    _write(scan, tmp_path / "p", rescale_slope=slopes, rescale_intercept=intercepts, padding_value=None)
    np.testing.assert_array_equal(load_scan(tmp_path / "p").array, scan.array)


def test_padding_outside_scan_circle_becomes_air(tmp_path, make_scan):
    scan = make_scan(low=-1000, high=500)
    yy, xx = np.mgrid[: scan.shape[1], : scan.shape[2]]
    outside = (yy - 9.5) ** 2 + (xx - 7.5) ** 2 > 7**2
    # PixelPaddingValue -2000 with intercept -1024: raw -2000 is HU -3024 (DSB 2017)
    _write(scan, tmp_path / "dsb", rescale_intercept=-1024, padding_value=-2000, padding_mask=outside)
    read = load_scan(tmp_path / "dsb")
    assert np.all(read.array[:, outside] == -1024)
    np.testing.assert_array_equal(read.array[:, ~outside], scan.array[:, ~outside])
    # no PixelPaddingValue tag, intercept 0: raw -2000 -> HU -2000, still padding
    paths, datasets = _write(scan, tmp_path / "plain", rescale_intercept=0, padding_value=-2000, padding_mask=outside)
    for path, ds in zip(paths, datasets):
        del ds.PixelPaddingValue
        pydicom.dcmwrite(path, ds)
    assert np.all(load_scan(tmp_path / "plain").array[:, outside] == -1024)
    # an unsigned series whose PixelPaddingValue is a legal-looking raw value (0 = HU -1024 + offset)
    _write(scan, tmp_path / "ppv", signed=False, rescale_intercept=-1100, padding_value=0, padding_mask=outside)
    read = load_scan(tmp_path / "ppv")
    assert np.all(read.array[:, outside] == -1024)


def _series(make_scan, *, slices, thickness, seed, scan_id="p"):
    return make_scan(shape=(slices, 20, 16), spacing=(thickness, 0.7, 0.7), seed=seed, scan_id=scan_id)


def test_several_series_picks_thin_axial_ct_and_series_option(tmp_path, make_scan, caplog):
    folder = tmp_path / "patient"
    thin = _series(make_scan, slices=24, thickness=1.0, seed=1)
    thick = _series(make_scan, slices=5, thickness=5.0, seed=2)
    _write(thin, folder, names=[f"a{k}.dcm" for k in range(24)], series_uid="1.2.3.1", series_description="thin")
    _write(thick, folder, names=[f"b{k}.dcm" for k in range(5)], series_uid="1.2.3.2", series_description="thick")
    localizer = ct_slice_datasets(_series(make_scan, slices=1, thickness=1.0, seed=3), series_uid="1.2.3.3")[0]
    localizer.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    localizer.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    write_datasets([localizer], folder, ["scout.dcm"])
    (folder / "README.txt").write_text("not dicom")
    (folder / "VERSION").write_bytes(b"\x00\x01 garbage without a preamble")
    with caplog.at_level(logging.INFO, logger="lungcad"):
        read = load_scan(folder)
    assert read.metadata["series_uid"] == "1.2.3.1" and read.shape[0] == 24
    assert "1.2.3.1" in caplog.text and "thin" in caplog.text
    np.testing.assert_array_equal(read.array, thin.array)
    chosen = load_scan(folder, series_uid="1.2.3.2")
    np.testing.assert_array_equal(chosen.array, thick.array)
    assert chosen.spacing[0] == pytest.approx(5.0)
    with pytest.raises(SeriesNotFoundError, match=r"9\.9\.9.*1\.2\.3\.1 \(CT, 24 slices, thin\)"):
        load_scan(folder, series_uid="9.9.9")


def test_localizer_sharing_series_uid_is_dropped(tmp_path, make_scan):
    scan = make_scan()
    paths, datasets = _write(scan, tmp_path / "p")
    scout = ct_slice_datasets(make_scan(shape=(1, 20, 16), seed=5), series_uid=datasets[0].SeriesInstanceUID)[0]
    scout.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]  # coronal, no LOCALIZER in ImageType
    write_datasets([scout], tmp_path / "p", ["zz.dcm"])
    read = load_scan(tmp_path / "p")
    np.testing.assert_array_equal(read.array, scan.array)
    assert any("another orientation" in w for w in read.warnings)


def test_duplicate_slices_dropped_with_warning(tmp_path, make_scan):
    scan = make_scan()
    paths, _ = _write(scan, tmp_path / "p")
    for p in paths[:3]:
        shutil.copy(p, p.with_name("copy_" + p.name))
    read = load_scan(tmp_path / "p")
    np.testing.assert_array_equal(read.array, scan.array)
    assert any("3 duplicate" in w for w in read.warnings)


def test_spacing_comes_from_positions_not_slice_thickness(tmp_path, make_scan):
    scan = make_scan(spacing=(1.25, 0.7, 0.8))
    _write(scan, tmp_path / "p", slice_thickness=5.0)
    assert load_scan(tmp_path / "p").spacing[0] == pytest.approx(1.25)


def test_missing_slice_resampled_every_voxel_keeps_world_position(tmp_path, linear_scan):
    scan = linear_scan()
    paths, _ = _write(scan, tmp_path / "p", padding_value=None)
    by_position = sorted(paths, key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))
    by_position[4].unlink()
    read = load_scan(tmp_path / "p")
    assert read.shape == scan.shape and read.spacing[0] == pytest.approx(2.0)
    assert any("uneven slice spacing" in w for w in read.warnings)
    _assert_same_world(read, scan)
    np.testing.assert_allclose(read.array, scan.array, atol=1)


def test_uneven_spacing_resampled_to_regular_grid(tmp_path, linear_scan):
    scan = linear_scan(shape=(9, 8, 8))
    datasets = ct_slice_datasets(scan, padding_value=None)
    z = np.array([0, 1.0, 2.0, 3.5, 4.5, 5.5, 7.0, 8.0, 9.0]) - 30.0  # steps of 1.0 and 1.5 mm
    ys, xs = np.mgrid[:8, :8]
    for ds, zk in zip(datasets, z):
        ipp = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [ipp[0], ipp[1], zk]  # the field is written exactly at the true z
        world = scan.voxel_to_world(np.stack([np.zeros_like(ys), ys, xs], -1).reshape(-1, 3).astype(float))
        hu = np.rint(10 * (world[:, 0] + world[:, 1] + zk)).reshape(8, 8)
        ds.PixelData = (hu + 1024).astype(np.int16).tobytes()
    write_datasets(datasets, tmp_path / "p", [f"{k}.dcm" for k in range(9)])
    read = load_scan(tmp_path / "p")
    assert read.spacing[0] == pytest.approx(1.0) and read.shape[0] == 10
    zyx = np.stack(np.meshgrid(*[np.arange(n) for n in read.shape], indexing="ij"), -1).reshape(-1, 3)
    expected = 10 * read.voxel_to_world(zyx).sum(axis=1)
    np.testing.assert_allclose(read.array.reshape(-1), expected, atol=1.01)


def _tilted_sphere_series(tilt_deg: float, center=(1.0, 4.0, -10.0)) -> list:
    """Slices 2 mm apart whose IPP drifts along y by tan(tilt) per mm (gantry tilt), imaging a
    bright 4 mm sphere at world ``center``."""
    shape = (16, 40, 40)
    geom = CTScan(np.zeros(shape, np.int16), (2.0, 0.5, 0.5), (-10.0, -10.0, -26.0))
    datasets = ct_slice_datasets(geom, padding_value=None)
    ys, xs = np.mgrid[:40, :40]
    for k, ds in enumerate(datasets):
        z = -26.0 + 2.0 * k
        y0 = -10.0 + np.tan(np.radians(tilt_deg)) * (z + 26.0)
        ds.ImagePositionPatient = [-10.0, y0, z]
        world_x, world_y = -10.0 + 0.5 * xs, y0 + 0.5 * ys
        d2 = (world_x - center[0]) ** 2 + (world_y - center[1]) ** 2 + (z - center[2]) ** 2
        hu = np.where(d2 < 4.0**2, 1000, -1000)
        ds.PixelData = (hu + 1024).astype(np.int16).tobytes()
    return datasets


def test_gantry_tilt_resampled_to_true_world_position_or_refused(tmp_path):
    center = np.array([1.0, 4.0, -10.0])
    write_datasets(_tilted_sphere_series(15.0, tuple(center)), tmp_path / "tilt", [f"{k}.dcm" for k in range(16)])
    read = load_scan(tmp_path / "tilt")
    assert any("gantry tilt of about 15" in w for w in read.warnings)
    bright = np.argwhere(read.array > 0).astype(float)
    np.testing.assert_allclose(read.voxel_to_world(bright.mean(axis=0)), center, atol=0.5)
    with pytest.raises(GeometryError, match="gantry tilt"):
        load_scan(tmp_path / "tilt", gantry_tilt="refuse")


def test_no_dicom_and_non_ct_errors(tmp_path, make_scan):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hello")
    with pytest.raises(NoDicomError, match="empty: no DICOM image slices"):
        load_scan(tmp_path / "empty")
    _, datasets = _write(make_scan(), tmp_path / "mr")
    for p in (tmp_path / "mr").iterdir():
        ds = pydicom.dcmread(p)
        ds.Modality = "MR"
        pydicom.dcmwrite(p, ds)
    with pytest.raises(NotCTError, match="modalities found: MR"):
        load_scan(tmp_path / "mr")


def test_dsb_like_series_with_shuffled_names_reads_back(tmp_path, make_scan):
    scan = make_scan(shape=(6, 24, 24), low=-1000, high=400)
    paths = write_dicom_series(scan, tmp_path / "0a0c32c9e08cc2ea76a71649de56be6d", seed=3)
    assert sorted(p.name for p in paths) != [p.name for p in paths] or len(paths) < 2
    read = load_scan(tmp_path / "0a0c32c9e08cc2ea76a71649de56be6d")
    assert read.id == "0a0c32c9e08cc2ea76a71649de56be6d"
    np.testing.assert_array_equal(read.array, scan.array)
    single = load_scan(paths[0])  # one file of the series: its folder is read
    np.testing.assert_array_equal(single.array, scan.array)
