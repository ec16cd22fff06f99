"""DICOM SR written by ``lungcad detect --dicom-sr``, read back: findings where the candidates are, on the source."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from helpers import rotation, simple_chest

from lungcad.cli.main import main
from lungcad.errors import LungcadError
from lungcad.io import write_dicom_series, write_mhd
from lungcad.sr import probabilities

hd = pytest.importorskip("highdicom")


@pytest.mark.filterwarnings("error:.*single component:UserWarning")  # anonymised one-component patient names
def test_sr_round_trip_names_each_finding_its_centre_diameter_and_source(tmp_path, confident_model):
    import pydicom

    scan, _, _ = simple_chest(seed=4)
    tilted = scan.with_array(scan.array, direction=rotation("z", 90.0))  # in-plane axes not the world's
    write_dicom_series(tilted, tmp_path / "in" / "patientC")
    write_mhd(scan.with_array(scan.array, id="1.2.3"), tmp_path / "in" / "1.2.3.mhd")
    out = tmp_path / "out"
    args = ["--model", str(confident_model), "--stage", "candidates", "--dicom-sr", "--no-pictures"]
    assert main(["detect", str(tmp_path / "in"), "-o", str(out), *args]) == 0
    table = pd.read_csv(out / "scans" / "patientC.csv")
    reported = table[table.probability >= 0.5].head(5)
    sr = hd.sr.Comprehensive3DSR.from_dataset(pydicom.dcmread(out / "sr" / "patientC.dcm"))
    groups = sr.content.get_planar_roi_measurement_groups()
    assert len(groups) == len(reported) > 0
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in (tmp_path / "in" / "patientC").iterdir()]
    source = {ds.SOPInstanceUID for ds in headers}
    planes = {ds.SOPInstanceUID: _plane(ds) for ds in headers}
    evidence = {i.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
                for series in s.ReferencedSeriesSequence for i in series.ReferencedSOPSequence}  # fmt: skip
    assert evidence <= source and set(reported.sop_instance_uid) <= evidence
    first = pydicom.dcmread(next((tmp_path / "in" / "patientC").iterdir()), stop_before_pixels=True)
    assert "^" not in str(first.PatientName)  # the writer's one-component name, as in anonymised data
    assert sr.PatientName.family_name == first.PatientName.family_name and sr.PatientID == first.PatientID
    for group, (_, row) in zip(groups, reported.iterrows(), strict=True):
        points = np.asarray(group.roi.value, float)
        centre = row[["coordX", "coordY", "coordZ"]].to_numpy(float)
        # drawn on the slice through the centre: every point on that image's plane, which the diameter references
        (image,) = {uid for m in group.get_measurements() for uid in _referenced(m)}
        assert image == row.sop_instance_uid
        origin, normal = planes[image]
        assert np.abs((points - origin) @ normal).max() < 1e-3
        assert min(abs((points[0] - o) @ n) for o, n in planes.values()) < 1e-3
        shift = points.mean(axis=0) - centre  # the centre, moved along the normal onto the slice
        np.testing.assert_allclose(shift - (shift @ normal) * normal, 0, atol=1e-3)
        assert abs(shift @ normal) <= tilted.spacing[0] / 2 + 1e-3
        assert np.linalg.norm(points[1] - points[0]) == pytest.approx(row.diameter_mm, abs=1e-3)
        values = {m.name.meaning: m.value for m in group.get_measurements()}
        assert values["Diameter"] == pytest.approx(row.diameter_mm, abs=1e-3)
        # the nodule probability: (111012, DCM, "Certainty of Finding") in percent, read back as written
        assert probabilities(group) == {"Certainty of Finding": pytest.approx(row.probability, abs=1e-6)}
        assert values["Certainty of Finding"] == pytest.approx(100 * row.probability, abs=1e-4)
    record = json.loads((out / "scans" / "1.2.3.json").read_text())
    assert record["dicom_sr"].startswith("not written") and not (out / "sr" / "1.2.3.dcm").exists()
    ds = pydicom.dcmread(out / "sr" / "patientC.dcm")
    assert _schemes(ds) <= STANDARD_SCHEMES and "CodingSchemeIdentificationSequence" not in ds  # nothing private
    _check_with_dciodvfy(out / "sr" / "patientC.dcm")


def test_sr_probabilities_are_standard_codes_in_percent_and_read_back(tmp_path):
    """Both probabilities, the patient's cancer probability too, round-trip through the file within DS rounding."""
    import pydicom

    from lungcad.io import load_scan
    from lungcad.sr import write_sr

    scan, _, _ = simple_chest(shape=(12, 32, 32), seed=1)
    write_dicom_series(scan, tmp_path / "in" / "p")
    scan = load_scan(tmp_path / "in" / "p")
    centre = scan.voxel_to_world(np.array([[5, 16, 16], [7, 10, 20]]))
    table = pd.DataFrame(centre, columns=["coordX", "coordY", "coordZ"])
    table = table.assign(diameter_mm=[6.0, 4.5], probability=[0.123456789, 0.999999], slice_index=[5, 7])
    path = write_sr(scan, table, tmp_path / "p.dcm", cancer_probability=1 / 3)
    ds = pydicom.dcmread(path)
    sr = hd.sr.Comprehensive3DSR.from_dataset(ds)
    groups = sr.content.get_planar_roi_measurement_groups()
    read = [probabilities(g)["Certainty of Finding"] for g in groups]
    np.testing.assert_allclose(read, table.probability, atol=1e-9)
    for group in groups:
        (m,) = [m for m in group.get_measurements() if m.name.value == "111012"]
        assert (m.name.scheme_designator, m.unit.value, m.unit.scheme_designator) == ("DCM", "%", "UCUM")
    (patient,) = sr.content.get_image_measurement_groups()  # TID 1501: the patient's, not on a region
    assert probabilities(patient) == {"Probability of cancer": pytest.approx(1 / 3, abs=1e-9)}
    assert _schemes(ds) <= STANDARD_SCHEMES and "CodingSchemeIdentificationSequence" not in ds
    _check_with_dciodvfy(path)


def test_probabilities_refuses_a_value_not_in_percent():
    """A probability written as a ratio (the old encoding's unit "1") is not silently read as a percentage."""
    name = hd.sr.CodedConcept("111012", "DCM", "Certainty of Finding")
    ratio = hd.sr.Measurement(name=name, value=0.5, unit=hd.sr.CodedConcept("1", "UCUM", "no units"))
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="t"), measurements=[ratio]
    )
    with pytest.raises(LungcadError, match="not in %"):
        probabilities(group)
    percent = hd.sr.Measurement(name=name, value=50, unit=hd.sr.CodedConcept("%", "UCUM", "Percent"))
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="t"), measurements=[percent]
    )
    assert probabilities(group) == {"Certainty of Finding": 0.5}


#: Coding schemes of DICOM's own list (PS3.16 Table 8-1; RFC5646: the language, TID 1204): none private ("99").
STANDARD_SCHEMES = {"DCM", "SCT", "UCUM", "LN", "RFC5646"}


def _schemes(ds) -> set[str]:
    """Every CodingSchemeDesignator in ``ds``, at any depth."""
    return {e.value for e in ds.iterall() if e.keyword == "CodingSchemeDesignator"}


def _plane(ds) -> tuple[np.ndarray, np.ndarray]:
    iop = np.asarray(ds.ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    return np.asarray(ds.ImagePositionPatient, float), normal / np.linalg.norm(normal)


def _referenced(measurement) -> list[str]:
    return [image.referenced_sop_instance_uid for image in measurement.referenced_images]


#: dciodvfy's warnings that are not the SR's own: the source (lungcad's test writer) has no StudyTime, which the SR
#: copies empty.
KNOWN_WARNINGS = ("needed to build DICOMDIR - Study Time",)


def _check_with_dciodvfy(path) -> None:
    """dciodvfy (Debian's dicom3tools), where installed, finds no error and no other warning in the SR."""
    if shutil.which("dciodvfy") is None:
        return
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith(("Error", "Warning"))]
    assert [line for line in lines if not any(known in line for known in KNOWN_WARNINGS)] == []
