"""DICOM Structured Report of a scan's findings (TID 1500 measurement report, written with highdicom).

One SR per DICOM series: each finding is a planar ROI (TID 1410) in the axial plane through its centre, an ellipse of
its estimated diameter in the patient coordinates (mm) of the source's frame of reference, with its diameter and its
nodule probability as measurements; the patient's cancer probability, when known, is one more measurement
(DCM 111047 "Probability of cancer"). The SR references the source series' instances that its findings lie on, so
viewers (OHIF, 3D Slicer) show the findings on the images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lungcad import __version__
from lungcad.errors import ConfigError
from lungcad.fileio import write_atomic
from lungcad.scan import CTScan

#: Patient and study attributes an SR copies from its evidence; anonymised series may lack them.
TYPE2_COPIED = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "AccessionNumber",
    "ReferringPhysicianName", "StudyID",
)  # fmt: skip

#: The person-name (PN) attributes among them.
PERSON_NAMES = ("PatientName", "ReferringPhysicianName")

#: Private code for the false-positive reducer's nodule probability ("99" schemes are local by DICOM rules).
NODULE_PROBABILITY = ("nodule-probability", "99LUNGCAD", "Nodule probability (lungcad)")
#: UCUM unit of a probability (a dimensionless ratio).
NO_UNITS = ("1", "UCUM", "no units")


def _highdicom():
    try:
        import highdicom
    except ImportError as exc:
        raise ConfigError(
            "--dicom-sr needs highdicom", fix="pip install 'lungcad[sr]' (or: pip install highdicom)"
        ) from exc
    return highdicom


def axial_ellipse(scan: CTScan, centre_xyz: np.ndarray, diameter_mm: float) -> np.ndarray:
    """(4, 3) world points: the ends of two perpendicular diameters in the slice plane (major then minor axis)."""
    ex, ey = scan.direction[:, 0], scan.direction[:, 1]
    r = max(float(diameter_mm), 1.0) / 2
    return np.stack([centre_xyz - r * ex, centre_xyz + r * ex, centre_xyz - r * ey, centre_xyz + r * ey])


def _evidence(scan: CTScan, slice_indices) -> list:
    """Headers (no pixels) of the source instances the findings lie on, and the first one."""
    import pydicom

    files = scan.metadata.get("slice_files") or []
    if not files:
        raise ConfigError(f"{scan.id}: a DICOM SR needs DICOM input (this scan was read from {scan.source})")
    wanted = sorted({0, *map(int, slice_indices)})
    headers = [pydicom.dcmread(files[i], stop_before_pixels=True) for i in wanted]
    for ds in headers:  # type-2 patient/study attributes the SR copies: present, possibly empty (anonymised data)
        for keyword in TYPE2_COPIED:
            if keyword not in ds:
                setattr(ds, keyword, "")
        for keyword in PERSON_NAMES:
            setattr(ds, keyword, single_component_marked(str(ds[keyword].value or "")))
    return headers


def single_component_marked(name: str) -> str:
    """A person name of one component (anonymised series often hold the patient id there) with the trailing caret
    DICOM PS3.5 6.2.1.2 uses to say so; the same name (an empty given name), and highdicom no longer warns.
    Empty or multi-component names are returned as they are."""
    return name + "^" if name and "^" not in name and "=" not in name else name


def _finding(hd, scan: CTScan, row: pd.Series, rank: int, uid: str):
    from pydicom.sr.codedict import codes

    region = hd.sr.ImageRegion3D(
        graphic_type=hd.sr.GraphicTypeValues3D.ELLIPSE,
        graphic_data=axial_ellipse(scan, row[["coordX", "coordY", "coordZ"]].to_numpy(float), row["diameter_mm"]),
        frame_of_reference_uid=uid,
    )
    measurements = [
        hd.sr.Measurement(name=codes.SCT.Diameter, value=float(row["diameter_mm"]), unit=codes.UCUM.Millimeter),
        hd.sr.Measurement(
            name=hd.sr.CodedConcept(*NODULE_PROBABILITY),
            value=float(row["probability"]),
            unit=hd.sr.CodedConcept(*NO_UNITS),
        ),
    ]
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"lungcad finding {rank}"),
        referenced_region=region,
        finding_type=codes.SCT.Nodule,
        finding_sites=[hd.sr.FindingSite(codes.SCT.Lung)],
        measurements=measurements,
    )


def write_sr(scan: CTScan, table: pd.DataFrame, path: str | Path, cancer_probability: float | None = None) -> Path:
    """Write the SR of ``table``'s findings (world ``coordX..Z`` mm, ``diameter_mm``, ``probability``, and
    ``slice_index`` into the source series) atomically to ``path``."""
    hd = _highdicom()
    from pydicom.sr.codedict import codes

    evidence = _evidence(scan, table.get("slice_index", pd.Series(dtype=int)))
    uid = str(scan.metadata.get("frame_of_reference_uid") or getattr(evidence[0], "FrameOfReferenceUID", ""))
    groups = [_finding(hd, scan, row, rank, uid) for rank, (_, row) in enumerate(table.iterrows(), start=1)]
    if cancer_probability is not None:
        patient = hd.sr.Measurement(
            name=codes.DCM.ProbabilityOfCancer,
            value=float(cancer_probability),
            unit=hd.sr.CodedConcept(*NO_UNITS),
        )
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="lungcad patient risk"),
                measurements=[patient],
            )
        )
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name="lungcad", manufacturer_name="lungcad", model_name=__version__
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=hd.sr.CodedConcept("24627-2", "LN", "CT Chest"),
        imaging_measurements=groups,
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report,
        series_instance_uid=hd.UID(),
        series_number=990,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="lungcad",
        series_description="lungcad findings",
    )
    return write_atomic(path, lambda tmp: sr.save_as(tmp, enforce_file_format=True))
