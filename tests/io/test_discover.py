"""Scan discovery in LUNA16 / DSB layouts; what it finds is what load_scan reads, under the same id."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import SimpleITK as sitk

from lungcad.errors import DataLayoutError, ScanNotFoundError
from lungcad.io import SCAN_SUFFIXES, ScanRef, find_scans, load_scan, write_dicom_series, write_mhd
from lungcad.io.itk import scan_to_sitk


def test_find_scans_in_luna_and_dsb_layouts(tmp_path, make_scan):
    scan = make_scan(shape=(3, 8, 8))
    write_mhd(scan, tmp_path / "luna16" / "subset0" / "1.2.3.mhd")
    write_mhd(scan, tmp_path / "luna16" / "subset1" / "1.2.4.mhd")
    write_mhd(scan, tmp_path / "luna16" / "seg-lungs-LUNA16" / "1.2.3.mhd")  # masks, not scans
    write_dicom_series(scan, tmp_path / "dsb2017" / "stage1" / "aaa")
    write_dicom_series(scan, tmp_path / "dsb2017" / "stage1" / "bbb", shuffle_names=False)
    refs = find_scans([tmp_path])
    assert [r.id for r in refs] == ["aaa", "bbb", "1.2.3", "1.2.4"]
    assert find_scans([tmp_path / "dsb2017" / "stage1" / "aaa"]) == [ScanRef("aaa", tmp_path / "dsb2017/stage1/aaa")]
    assert [r.id for r in find_scans([tmp_path / "luna16" / "subset1" / "1.2.4.mhd"])] == ["1.2.4"]
    for ref in refs:
        assert load_scan(ref.path).id == ref.id


def test_find_scans_follows_symlinked_folders_once(tmp_path, make_scan):
    scan = make_scan(shape=(3, 8, 8))
    write_mhd(scan, tmp_path / "data" / "subset0" / "1.2.3.mhd")
    write_dicom_series(scan, tmp_path / "data" / "stage1" / "aaa")
    view = tmp_path / "view"
    view.mkdir()
    (view / "subset0").symlink_to(tmp_path / "data" / "subset0", target_is_directory=True)
    (view / "aaa").symlink_to(tmp_path / "data" / "stage1" / "aaa", target_is_directory=True)
    (view / "loop").symlink_to(view, target_is_directory=True)  # a cycle is not walked twice
    assert sorted(r.id for r in find_scans([view])) == ["1.2.3", "aaa"]


def test_find_scans_errors(tmp_path, make_scan):
    with pytest.raises(ScanNotFoundError):
        find_scans([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataLayoutError, match="no scans found"):
        find_scans([tmp_path / "empty"])
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme").write_text("no scans here\n")  # parsed once, found not to be DICOM
    (tmp_path / "notes" / "table.csv").write_text("a,b\n")
    np.save(tmp_path / "notes" / "image.npy", np.zeros((4, 5, 5), np.float32))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(DataLayoutError, match="no scans found"):
            find_scans([tmp_path / "notes"])
    assert [str(w.message) for w in caught] == []  # probing a file that is not DICOM is quiet
    write_mhd(make_scan(shape=(2, 4, 4)), tmp_path / "a" / "x.mhd")
    write_mhd(make_scan(shape=(2, 4, 4)), tmp_path / "b" / "x.mhd")
    with pytest.raises(DataLayoutError, match="share the id 'x'"):
        find_scans([tmp_path / "a", tmp_path / "b"])


def test_nrrd_is_found_and_loads_under_the_same_id(tmp_path, make_scan):
    """``.nrrd`` was read by load_scan but skipped by discovery while batch.py kept its own suffix list."""
    scan = make_scan(shape=(4, 10, 12))
    (tmp_path / "tree").mkdir()
    sitk.WriteImage(scan_to_sitk(scan), str(tmp_path / "tree" / "case1.nrrd"))
    refs = find_scans([tmp_path / "tree"])
    assert refs == [ScanRef("case1", tmp_path / "tree" / "case1.nrrd")]
    assert find_scans([tmp_path / "tree" / "case1.nrrd"]) == refs  # given as a file: the same id
    read = load_scan(refs[0].path)
    assert read.id == "case1"
    np.testing.assert_array_equal(read.array, scan.array)


@pytest.mark.parametrize("suffix", SCAN_SUFFIXES)
def test_every_suffix_load_scan_reads_is_found(tmp_path, make_scan, suffix):
    """Discovery and load_scan share one suffix list: a volume of each suffix is found in a tree and loads under
    the ref's id."""
    scan = make_scan(shape=(3, 6, 8), seed=len(suffix))
    folder = tmp_path / "tree" / "sub"
    folder.mkdir(parents=True)
    sitk.WriteImage(scan_to_sitk(scan), str(folder / f"1.2.840.99{suffix}"))
    refs = find_scans([tmp_path / "tree"])
    assert [r.id for r in refs] == ["1.2.840.99"]
    read = load_scan(refs[0].path)
    assert read.id == refs[0].id
    np.testing.assert_array_equal(read.array, scan.array)


def test_dicom_without_preamble_is_found_like_load_scan_reads_it(tmp_path, make_scan):
    """Old DICOM files without the 128-byte preamble and ``DICM`` marker, and without a ``.dcm`` name: load_scan
    reads them, so discovery finds their folder (one file parsed after the fast check fails)."""
    scan = make_scan(shape=(4, 12, 12), low=-1000, high=400)
    for path in write_dicom_series(scan, tmp_path / "raw" / "pat1"):
        data = path.read_bytes()
        assert data[128:132] == b"DICM"
        path.unlink()
        path.with_suffix("").write_bytes(data[132:])
    refs = find_scans([tmp_path / "raw"])
    assert refs == [ScanRef("pat1", tmp_path / "raw" / "pat1")] == find_scans([tmp_path / "raw" / "pat1"])
    read = load_scan(refs[0].path)
    assert read.id == "pat1"
    np.testing.assert_array_equal(read.array, scan.array)


def test_one_dicom_file_has_the_same_id_in_discovery_and_load_scan(tmp_path, make_scan):
    """A single file of a series stands for its folder's series; both name it by the file (as detect's outputs
    always have)."""
    paths = write_dicom_series(make_scan(shape=(3, 8, 8)), tmp_path / "pat2", shuffle_names=False)
    (ref,) = find_scans([paths[0]])
    assert ref.id == paths[0].name
    assert load_scan(ref.path).id == ref.id
