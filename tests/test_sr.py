"""DICOM SR written by ``lungcad detect --dicom-sr``, read back: findings where the candidates are, on the source."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from helpers import rotation, simple_chest

from lungcad.cli.main import main
from lungcad.io import write_dicom_series, write_mhd

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
    source = {
        pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in (tmp_path / "in" / "patientC").iterdir()
    }
    evidence = {i.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
                for series in s.ReferencedSeriesSequence for i in series.ReferencedSOPSequence}  # fmt: skip
    assert evidence <= source and set(reported.sop_instance_uid) <= evidence
    first = pydicom.dcmread(next((tmp_path / "in" / "patientC").iterdir()), stop_before_pixels=True)
    assert "^" not in str(first.PatientName)  # the writer's one-component name, as in anonymised data
    assert sr.PatientName.family_name == first.PatientName.family_name and sr.PatientID == first.PatientID
    for group, (_, row) in zip(groups, reported.iterrows(), strict=True):
        points = np.asarray(group.roi.value, float)
        centre = row[["coordX", "coordY", "coordZ"]].to_numpy(float)
        np.testing.assert_allclose(points.mean(axis=0), centre, atol=1e-3)
        assert np.linalg.norm(points[1] - points[0]) == pytest.approx(row.diameter_mm, abs=1e-3)
        values = {m.name.meaning: m.value for m in group.get_measurements()}
        assert values["Diameter"] == pytest.approx(row.diameter_mm, abs=1e-3)
        assert values["Nodule probability (lungcad)"] == pytest.approx(row.probability, abs=1e-6)
    record = json.loads((out / "scans" / "1.2.3.json").read_text())
    assert record["dicom_sr"].startswith("not written") and not (out / "sr" / "1.2.3.dcm").exists()
