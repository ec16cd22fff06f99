"""The LUNA16 and DSB 2017 layouts written by write_dataset / ``lungcad synth``."""

from __future__ import annotations

import csv
import dataclasses
import json
import re

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from lungcad.cli.main import main
from lungcad.errors import DataLayoutError
from lungcad.synth import is_malignant, load_synth_config, write_dataset
from lungcad.synth.nodules import NoduleKind

UID = re.compile(r"^[0-9]+(\.[0-9]+)+$")


def _rows(path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def _records(out) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "synth_records").glob("*.json"))]


def _hu_at(img: sitk.Image, arr: np.ndarray, world) -> tuple[int, tuple]:
    idx = np.rint(img.TransformPhysicalPointToContinuousIndex(tuple(map(float, world)))).astype(int)  # x, y, z
    zyx = (idx[2], idx[1], idx[0])
    return int(arr[zyx]), zyx


def test_luna_csv_headers_exact(dataset):
    root = dataset / "luna16"
    assert (root / "annotations.csv").read_text().splitlines()[0] == "seriesuid,coordX,coordY,coordZ,diameter_mm"
    assert (root / "annotations_excluded.csv").read_text().splitlines()[0] == (
        "seriesuid,coordX,coordY,coordZ,diameter_mm"
    )
    assert (root / "candidates.csv").read_text().splitlines()[0] == "seriesuid,coordX,coordY,coordZ,class"
    uids = (root / "seriesuids.csv").read_text().splitlines()
    assert len(uids) == 3 and all(UID.match(u) for u in uids)  # no header
    assert sorted(p.stem for p in (root / "subset0").glob("*.mhd")) == sorted(uids)
    assert sorted(p.stem for p in (root / "seg-lungs-LUNA16").glob("*.mhd")) == sorted(uids)
    ann = _rows(root / "annotations.csv")[1:]
    excl = _rows(root / "annotations_excluded.csv")[1:]
    assert ann and all(float(r[4]) >= 3.0 for r in ann)
    assert all(float(r[4]) < 3.0 for r in excl)
    assert {r[0] for r in ann + excl} <= set(uids)
    # the DSB cancer labels keyed by the LUNA16 ids, the same as the DSB layout's labels of the same patients
    labels = dict(r for r in _rows(root / "cancer_labels.csv")[1:])
    assert _rows(root / "cancer_labels.csv")[0] == ["id", "cancer"] and sorted(labels) == sorted(uids)
    assert {r["series_uid"]: str(r["cancer"]) for r in _records(dataset)} == labels
    # every nodule's truth, keyed by the LUNA16 ids: the annotations are its non-excluded rows; a cancer patient
    # has a malignant nodule
    nodules = _rows(root / "nodules.csv")
    assert nodules[0][:5] == ["id", "coordX", "coordY", "coordZ", "diameter_mm"]
    assert nodules[0][8:11] == ["malignant", "excluded", "source"]
    assert sorted(r[:5] for r in nodules[1:] if r[9] == "0") == sorted(ann)
    assert {r[0] for r in nodules[1:] if r[8] == "1"} == {u for u, c in labels.items() if c == "1"}
    assert {r[10] for r in nodules[1:]} == {"parametric"} and not any(any(r[11:]) for r in nodules[1:])


def test_luna_annotations_hit_nodules_in_written_files(dataset):
    root = dataset / "luna16"
    checked = 0
    for row in _rows(root / "annotations.csv")[1:]:
        uid, world, diameter = row[0], [float(v) for v in row[1:4]], float(row[4])
        img = sitk.ReadImage(str(root / "subset0" / f"{uid}.mhd"))
        lungs = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "seg-lungs-LUNA16" / f"{uid}.mhd")))
        arr = sitk.GetArrayFromImage(img)
        hu, zyx = _hu_at(img, arr, world)
        if diameter >= 2 * max(img.GetSpacing()):
            assert lungs[zyx] in (3, 4)
            assert hu > -700, (row, hu)
            checked += 1
        else:  # smaller than two voxels: the nearest voxel centre may fall just across the pleura
            z, y, x = zyx
            assert np.isin(lungs[z - 1 : z + 2, y - 1 : y + 2, x - 1 : x + 2], (3, 4)).any()
    assert checked >= 2


def test_flipped_scan_keeps_annotations_right(dataset):
    rec = _records(dataset)[2]
    assert rec["flipped"]
    uid, pid = rec["series_uid"], rec["patient_id"]
    luna = sitk.ReadImage(str(dataset / "luna16" / "subset0" / f"{uid}.mhd"))
    assert np.allclose(luna.GetDirection(), (-1, 0, 0, 0, -1, 0, 0, 0, 1))
    header = (dataset / "luna16" / "subset0" / f"{uid}.mhd").read_text()
    assert "TransformMatrix = -1 0 0 0 -1 0 0 0 1" in header
    canon = sitk.ReadImage(str(dataset / "dsb2017" / "stage1_lungs" / f"{pid}.mhd"))
    assert np.allclose(canon.GetDirection(), np.eye(3).ravel())
    a_luna = sitk.GetArrayFromImage(luna)
    # the same patient: the flipped array is the canonical one reversed in y and x
    dsb_hu = _dicom_volume(dataset / "dsb2017" / "stage1" / pid)[0]
    inside = dsb_hu > -2000
    assert np.array_equal(a_luna[:, ::-1, ::-1][inside], dsb_hu[inside])
    for n_l, n_d in zip(rec["nodules_luna"], rec["nodules_dsb"], strict=True):
        np.testing.assert_allclose(n_l["world_xyz"], n_d["world_xyz"], atol=1e-5)
        assert _hu_at(luna, a_luna, n_l["world_xyz"])[0] == _hu_at(canon, dsb_hu, n_d["world_xyz"])[0]


def _dicom_volume(folder) -> tuple[np.ndarray, list]:
    """HU (padding kept as -2000 raw -> returned as -2000) sorted by z, and the datasets."""
    dss = [pydicom.dcmread(p) for p in folder.glob("*.dcm")]
    dss.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    raw = np.stack([d.pixel_array.astype(np.int32) for d in dss])
    hu = np.where(raw == -2000, -2000, raw + np.array([int(d.RescaleIntercept) for d in dss])[:, None, None])
    return hu, dss


def test_dsb_dicom_series(dataset):
    recs = _records(dataset)
    for rec in recs:
        folder = dataset / "dsb2017" / "stage1" / rec["patient_id"]
        assert re.fullmatch(r"[0-9a-f]{32}", rec["patient_id"])
        files = sorted(folder.glob("*.dcm"))
        assert len(files) == rec["shape"][0]
        hu, dss = _dicom_volume(folder)
        d0 = dss[0]
        assert d0.Modality == "CT" and d0.PatientID == rec["patient_id"]
        assert all(float(d.RescaleIntercept) == -1024 and float(d.RescaleSlope) == 1 for d in dss)
        assert d0.PixelPaddingValue == -2000
        names_by_instance = [p.name for p in sorted(files, key=lambda p: int(pydicom.dcmread(p).InstanceNumber))]
        assert names_by_instance != sorted(names_by_instance)  # shuffled names, as in DSB 2017
        raw0 = dss[0].pixel_array
        ny, nx = raw0.shape
        yy, xx = np.mgrid[:ny, :nx]
        r = np.hypot(yy - (ny - 1) / 2, xx - (nx - 1) / 2)
        assert np.all(raw0[r > nx / 2 + 1] == -2000)  # padding outside the scan circle
        assert np.all(raw0[r < nx / 2 - 2] != -2000)
        inside = hu[hu > -2000]
        assert inside.min() >= -1024
        # nodules through the DICOM geometry (identity orientation)
        spacing = np.array([float(v) for v in d0.PixelSpacing])  # row, column
        z0, dz = (
            float(dss[0].ImagePositionPatient[2]),
            float(dss[1].ImagePositionPatient[2]) - float(dss[0].ImagePositionPatient[2]),
        )
        x0, y0 = float(d0.ImagePositionPatient[0]), float(d0.ImagePositionPatient[1])
        for n in rec["nodules_dsb"]:
            x, y, z = n["world_xyz"]
            k, j, i = (round((z - z0) / dz), round((y - y0) / spacing[0]), round((x - x0) / spacing[1]))
            if n["diameter_mm"] >= 2 * max(spacing.max(), dz) and n["type"] in ("solid", "calcified"):
                assert hu[k, j, i] > -500, n


def test_dsb_tables_follow_the_rule(dataset):
    root = dataset / "dsb2017"
    labels = _rows(root / "stage1_labels.csv")
    assert labels[0] == ["id", "cancer"]
    nodules = _rows(root / "stage1_nodules.csv")
    assert nodules[0] == [
        "id", "coordX", "coordY", "coordZ", "diameter_mm", "type", "shape", "location", "malignant", "excluded",
        "source", "malignancy", "spiculation", "lobulation", "texture", "calcification", "subtlety", "sphericity",
        "margin", "internalStructure", "readers", "lidc_patient_id", "lidc_annotation_ids",
    ]  # fmt: skip
    rule = load_synth_config().cancer_rule
    ids = [r[0] for r in labels[1:]]
    assert ids == sorted(ids) and len(ids) == 3
    for pid, cancer in labels[1:]:
        rows = [r for r in nodules[1:] if r[0] == pid]
        for r in rows:
            kind = NoduleKind(float(r[4]), r[5], r[6], r[7], excluded=r[9] == "1")
            assert int(r[8]) == int(is_malignant(kind, rule))
        assert int(cancer) == int(any(r[8] == "1" for r in rows))
    assert (root / "stage1_lungs").is_dir() and len(list((root / "stage1_lungs").glob("*.mhd"))) == 3


def test_candidates_mark_nodules(dataset):
    root = dataset / "luna16"
    cand = _rows(root / "candidates.csv")[1:]
    assert {r[4] for r in cand} == {"0", "1"}
    n_pos = n_neg = 0
    for row in _rows(root / "annotations.csv")[1:]:
        same = [r for r in cand if r[0] == row[0]]
        pos = np.array([[float(v) for v in r[1:4]] for r in same if r[4] == "1"])
        neg = np.array([[float(v) for v in r[1:4]] for r in same if r[4] == "0"])
        c, radius = np.array([float(v) for v in row[1:4]]), float(row[4]) / 2
        assert np.linalg.norm(pos - c, axis=1).min() <= radius / 2
        assert np.linalg.norm(neg - c, axis=1).min() > radius
        n_pos, n_neg = n_pos + len(pos), n_neg + len(neg)
    assert n_neg > 10 * n_pos


def test_seg_lungs_match_scans(dataset):
    root = dataset / "luna16"
    for mhd in (root / "subset0").glob("*.mhd"):
        img = sitk.ReadImage(str(mhd))
        seg = sitk.ReadImage(str(root / "seg-lungs-LUNA16" / mhd.name))
        assert seg.GetPixelID() == sitk.sitkUInt8 and img.GetPixelID() == sitk.sitkInt16
        assert seg.GetSize() == img.GetSize()
        assert np.allclose(seg.GetOrigin(), img.GetOrigin()) and np.allclose(seg.GetSpacing(), img.GetSpacing())
        assert set(np.unique(sitk.GetArrayFromImage(seg))) <= {0, 3, 4, 5}


def test_manifest(dataset):
    manifest = json.loads((dataset / "synth.json").read_text())
    assert manifest["seed"] == 4 and manifest["size"] == 96
    assert manifest["formats"] == ["dsb", "luna"]
    assert isinstance(manifest["phantom_version"], int) and "config" in manifest


def test_resume_skips_finished_scans(tmp_path):
    cfg = load_synth_config(max_slices=24)
    first = write_dataset(tmp_path, 2, 1, size=48, fmt="luna", config=cfg, progress=False)
    assert first.generated == 2
    mhd = next((tmp_path / "luna16" / "subset0").glob("*.mhd"))
    stamp = mhd.stat().st_mtime_ns
    before = (tmp_path / "luna16" / "annotations.csv").read_bytes()
    again = write_dataset(tmp_path, 2, 1, size=48, fmt="luna", config=cfg, progress=False)
    assert again.generated == 0 and again.skipped == 2
    assert mhd.stat().st_mtime_ns == stamp
    assert (tmp_path / "luna16" / "annotations.csv").read_bytes() == before
    # a missing file is regenerated
    (tmp_path / "luna16" / "seg-lungs-LUNA16" / mhd.name).unlink()
    assert write_dataset(tmp_path, 2, 1, size=48, fmt="luna", config=cfg, progress=False).generated == 1
    with pytest.raises(DataLayoutError, match="seed"):
        write_dataset(tmp_path, 2, 2, size=48, fmt="luna", config=cfg, progress=False)


def test_a_dataset_begun_before_a_knob_existed_resumes_only_with_the_knob_neutral(tmp_path):
    cfg = load_synth_config(max_slices=24)
    write_dataset(tmp_path, 1, 1, size=48, fmt="luna", config=cfg, progress=False)
    manifest = json.loads((tmp_path / "synth.json").read_text())
    del manifest["config"]["lidc"]  # as an older lungcad wrote it, before the LIDC nodules
    (tmp_path / "synth.json").write_text(json.dumps(manifest))
    assert write_dataset(tmp_path, 2, 1, size=48, fmt="luna", config=cfg, progress=False).generated == 1
    (tmp_path / "synth.json").write_text(json.dumps(manifest))  # (the resume wrote the whole config back)
    on = dataclasses.replace(cfg, lidc=dataclasses.replace(cfg.lidc, fraction=0.5))
    with pytest.raises(DataLayoutError, match="config"):  # the knob on: these would be other phantoms
        write_dataset(tmp_path, 2, 1, size=48, fmt="luna", config=on, progress=False)


def test_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(
        ["synth", str(out), "--scans", "2", "--seed", "1", "--size", "64", "--max-slices", "24", "--no-progress"]
    )
    assert code == 0
    assert "synth: 2 scans" in capsys.readouterr().out
    assert len(list((out / "luna16" / "subset0").glob("*.mhd"))) == 2
    assert len(list((out / "dsb2017" / "stage1").iterdir())) == 2
    assert main(["synth", str(tmp_path / "bad"), "--scans", "0", "--seed", "1"]) == 2


def test_compress_writes_the_same_scans_smaller_and_resume_keeps_them(tmp_path):
    from lungcad.io import load_scan

    cfg = load_synth_config(max_slices=24)
    plain, packed = tmp_path / "plain", tmp_path / "packed"
    write_dataset(plain, 2, 1, size=48, fmt="luna", config=cfg, progress=False)
    code = main(["synth", str(packed), "--scans", "2", "--seed", "1", "--size", "48", "--max-slices", "24",
                 "--format", "luna", "--compress", "--no-progress"])  # fmt: skip
    assert code == 0
    for mhd in sorted((plain / "luna16" / "subset0").glob("*.mhd")):
        twin = packed / "luna16" / "subset0" / mhd.name
        assert not twin.with_suffix(".raw").exists()
        assert twin.with_suffix(".zraw").stat().st_size < 0.8 * mhd.with_suffix(".raw").stat().st_size
        a, b = load_scan(mhd), load_scan(twin)
        assert np.array_equal(a.array, b.array) and a.spacing == b.spacing and a.origin == b.origin
        lungs = packed / "luna16" / "seg-lungs-LUNA16" / mhd.name
        assert lungs.with_suffix(".zraw").is_file()
    # a compressed scan counts as finished: extending the dataset generates only the new one
    stamp = twin.stat().st_mtime_ns
    assert write_dataset(packed, 3, 1, size=48, fmt="luna", config=cfg, progress=False).generated == 1
    assert twin.stat().st_mtime_ns == stamp
