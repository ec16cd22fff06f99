"""MetaImage / NIfTI: geometry must agree with SimpleITK's own transform, including flipped and
oblique TransformMatrix (the row-vector formula circulating in LUNA16 code is wrong for those)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from helpers import rotation

from lungcad.io import load_scan, write_mhd

DIRECTIONS = {
    "identity": np.eye(3),
    "luna-flipped": np.diag([-1.0, -1.0, 1.0]),
    "oblique": rotation("z", 25) @ rotation("y", -10) @ rotation("x", 7),
}


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_mhd_coordinates_match_simpleitk(tmp_path, make_scan, name):
    scan = make_scan(shape=(9, 11, 13), spacing=(2.5, 0.68, 0.71), direction=DIRECTIONS[name])
    path = write_mhd(scan, tmp_path / "1.3.6.1.4.1.14519.5.2.1.6279.6001.100225287222365663678666836860.mhd")
    read = load_scan(path)
    assert read.id == "1.3.6.1.4.1.14519.5.2.1.6279.6001.100225287222365663678666836860"
    np.testing.assert_array_equal(read.array, scan.array)
    image = sitk.ReadImage(str(path))
    rng = np.random.default_rng(4)
    zyx = rng.uniform(0, 8, size=(20, 3))
    expected = np.array([image.TransformContinuousIndexToPhysicalPoint(tuple(p[::-1])) for p in zyx])
    np.testing.assert_allclose(read.voxel_to_world(zyx), expected, atol=1e-6)
    np.testing.assert_allclose(read.world_to_voxel(expected), zyx, atol=1e-6)
    header = path.read_text()
    flat = " ".join(f"{v:g}" for v in DIRECTIONS[name].T.ravel()) if name != "oblique" else None
    if flat:
        assert f"TransformMatrix = {flat}" in header


def test_row_vector_formula_differs_for_oblique(make_scan):
    """The test above can fail: the row-vector form gives other voxels for an oblique scan."""
    scan = make_scan(direction=DIRECTIONS["oblique"])
    world = scan.voxel_to_world([4.0, 5.0, 6.0])
    d, spacing = scan.direction, scan.spacing_xyz
    wrong = ((world - np.asarray(scan.origin)) @ np.linalg.inv(d)) / spacing  # row-vector form
    assert np.abs(wrong[::-1] - [4, 5, 6]).max() > 0.5
    np.testing.assert_allclose(scan.world_to_voxel(world), [4, 5, 6], atol=1e-9)


def test_mhd_padding_minus_3024_becomes_air(tmp_path, make_scan):
    scan = make_scan(low=-1000, high=500)
    array = scan.array.copy()
    array[:, :2, :] = -3024
    path = write_mhd(scan.with_array(array), tmp_path / "x.mhd")
    read = load_scan(path)
    assert np.all(read.array[:, :2, :] == -1024)
    np.testing.assert_array_equal(read.array[:, 2:, :], scan.array[:, 2:, :])


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha"])
def test_nifti_and_mha_geometry(tmp_path, make_scan, suffix):
    scan = make_scan(direction=DIRECTIONS["oblique"], spacing=(1.5, 0.9, 0.9))
    path = write_mhd(scan, tmp_path / f"case7{suffix}")
    read = load_scan(path)
    assert read.id == "case7"
    np.testing.assert_array_equal(read.array, scan.array)
    points = [[1, 2, 3], [8, 0, 4]]
    np.testing.assert_allclose(read.voxel_to_world(points), scan.voxel_to_world(points), atol=1e-4)


def test_float_image_rounded_to_int16(tmp_path):
    image = sitk.GetImageFromArray(np.full((3, 4, 5), -600.6, dtype=np.float32))
    sitk.WriteImage(image, str(tmp_path / "f.nii.gz"))
    read = load_scan(tmp_path / "f.nii.gz")
    assert read.array.dtype == np.int16 and np.all(read.array == -601)


@pytest.mark.parametrize("dtype", ["int16", "uint16", "float32", "uint8", "int32", "float64"])
def test_compressed_metaimage_inflated_once_reads_as_simpleitk_reads_it(tmp_path, dtype):
    """A compressed ``.mhd`` is inflated by lungcad's bounded check and built from those bytes (no second inflation
    by SimpleITK): the same voxels and geometry as SimpleITK's own read, for each element type."""
    import SimpleITK as sitk

    from lungcad.io.itk import checked_mhd_data, read_itk_image

    rng = np.random.default_rng(3)
    values = rng.integers(-1000, 1500, size=(7, 9, 11)).astype(dtype if dtype != "uint8" else "int16")
    image = sitk.GetImageFromArray(values.astype(dtype) if dtype != "uint8" else (values % 256).astype("uint8"))
    image.SetSpacing((0.7, 0.8, 2.5))
    image.SetOrigin((-120.5, 33.25, -401.0))
    image.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    path = tmp_path / "c.mhd"
    sitk.WriteImage(image, str(path), useCompression=True)
    assert checked_mhd_data(path, keep_inflated=True)[1] is not None  # the path under test is taken
    scan, reference = read_itk_image(path), sitk.ReadImage(str(path))
    expected = sitk.GetArrayFromImage(reference)
    np.testing.assert_array_equal(scan.array, np.clip(np.rint(expected), -32768, 32767).astype(np.int16))
    assert scan.spacing == tuple(reference.GetSpacing()[::-1])
    assert scan.origin == tuple(reference.GetOrigin())
    np.testing.assert_array_equal(scan.direction.ravel(), reference.GetDirection())
    assert scan.metadata["pixel_type"] == reference.GetPixelIDTypeAsString()


def test_big_endian_compressed_metaimage_reads_as_simpleitk_reads_it(tmp_path):
    import zlib

    import SimpleITK as sitk

    from lungcad.io.itk import read_itk_image

    values = np.arange(-200, 4 * 5 * 6 * 10 - 200, 10, dtype=">i2").reshape(4, 5, 6)
    (tmp_path / "b.zraw").write_bytes(zlib.compress(values.tobytes()))
    header = (
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = True\nCompressedData = True\n"
        "ElementSpacing = 1 1 3\nDimSize = 6 5 4\nElementType = MET_SHORT\nElementDataFile = b.zraw\n"
    )
    (tmp_path / "b.mhd").write_text(header)
    scan = read_itk_image(tmp_path / "b.mhd")
    np.testing.assert_array_equal(scan.array, sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "b.mhd"))))
    np.testing.assert_array_equal(scan.array, values.astype(np.int16))
