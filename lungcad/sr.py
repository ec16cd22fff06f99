"""DICOM Structured Report of a scan's findings (TID 1500 measurement report, written with highdicom).

One SR per DICOM series: each finding is a planar ROI (TID 1410) in the axial plane through its centre, an ellipse of
its estimated diameter in the patient coordinates (mm) of the source's frame of reference, with its diameter and its
nodule probability as measurements; the patient's cancer probability, when known, is one more measurement
(DCM 111047 "Probability of cancer"). The SR references the source series' instances that its findings lie on, so
viewers (OHIF, 3D Slicer) show the findings on the images.

Every UID the SR copies from the source is checked (DICOM PS3.5 9.1, :func:`uid_problem`) before it is written: an
invalid one that the SR's references need (:data:`REFERENCE_UIDS`, the frame of reference of the findings'
coordinates) is refused with an :class:`~lungcad.errors.InvalidUIDError` naming the file and the tag, since a made-up
UID would point at nothing; an instance with an invalid SOPInstanceUID is left out of the evidence with a warning;
any other invalid UID in the copied patient and study attributes is dropped with a warning.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from lungcad import __version__
from lungcad.errors import ConfigError, InvalidUIDError, LungcadError
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

#: A UID (DICOM PS3.5 9.1): components of digits without leading zeros, separated by dots, ...
UID_PATTERN = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
#: ... at most this many characters.
UID_MAX_LENGTH = 64
#: The source UIDs the SR's evidence references are made of: an invalid one is refused, as a new UID would point at
#: no instance (an invalid SOPInstanceUID only leaves that instance out, :func:`_evidence`).
REFERENCE_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID")

log = logging.getLogger(__name__)


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


def uid_problem(value) -> str | None:
    """What is wrong with ``value`` as a DICOM UID (PS3.5 9.1), in a few words; None when it is valid."""
    text = "" if value is None else str(value)
    shown = repr(text if len(text) <= 40 else text[:40] + "...")
    if not text:
        return "is empty"
    if len(text) > UID_MAX_LENGTH:
        return f"is {len(text)} characters long ({shown}), at most {UID_MAX_LENGTH}"
    if not UID_PATTERN.fullmatch(text):
        return f"{shown} is not a UID (digits and dots, components without leading zeros)"
    return None


def _invalid_uid(
    path, keyword: str, problem: str, why: str = "the DICOM SR references the source by it"
) -> InvalidUIDError:
    return InvalidUIDError(
        f"{keyword} {problem}; {why}",
        path=path,
        fix="repair the series' UIDs (e.g. re-export it from the PACS) or run without --dicom-sr",
    )


def _uid_values(element):
    """The UI values in ``element`` and, for a sequence, in its items (recursively)."""
    if element.VR == "UI":
        values = element.value if element.VM > 1 else [element.value]
        yield from (v for v in values if v not in (None, ""))
    elif element.VR == "SQ":
        for item in element.value:
            for sub in item:
                yield from _uid_values(sub)


def _drop_invalid_uids(ds, path) -> None:
    """Delete from ``ds`` the root attributes (other than the references, checked apart) that hold an invalid UID,
    with a warning naming ``path`` and the tag: the SR copies patient and study attributes from ``ds``."""
    checked = {*REFERENCE_UIDS, "SOPInstanceUID", "FrameOfReferenceUID"}
    for element in list(ds):
        if element.keyword in checked or element.VR not in ("UI", "SQ"):
            continue
        problems = [p for p in map(uid_problem, _uid_values(element)) if p]
        if problems:
            name = element.keyword or str(element.tag)
            log.warning("%s: %s %s; left out of the DICOM SR", path, name, problems[0])
            del ds[element.tag]


def _check_references(headers: list, paths: list[str]) -> tuple[list, list[str]]:
    """The headers (and their paths) whose SOPInstanceUID is valid (the others left out with a warning); an
    InvalidUIDError naming the file and the tag when a reference UID is invalid or no instance is left."""
    kept, kept_paths = [], []
    for ds, path in zip(headers, paths, strict=True):
        for keyword in REFERENCE_UIDS:
            problem = uid_problem(getattr(ds, keyword, None))
            if problem:
                raise _invalid_uid(path, keyword, problem)
        problem = uid_problem(getattr(ds, "SOPInstanceUID", None))
        if problem:
            log.warning("%s: SOPInstanceUID %s; this instance is left out of the DICOM SR's evidence", path, problem)
            continue
        kept.append(ds)
        kept_paths.append(path)
    if not kept:
        raise _invalid_uid(paths[0], "SOPInstanceUID", "is invalid in every instance the findings lie on")
    return kept, kept_paths


def _evidence(scan: CTScan, slice_indices) -> tuple[list, list[str]]:
    """Headers (no pixels) of the source instances the findings lie on, and the first one, with valid UIDs (see
    the module's docstring); and their paths."""
    import pydicom

    files = scan.metadata.get("slice_files") or []
    if not files:
        raise ConfigError(f"{scan.id}: a DICOM SR needs DICOM input (this scan was read from {scan.source})")
    wanted = sorted({0, *map(int, slice_indices)})
    paths = [str(files[i]) for i in wanted]
    mode = pydicom.config.settings.reading_validation_mode
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE  # checked here, with file and tag
    try:
        headers, paths = _check_references([pydicom.dcmread(p, stop_before_pixels=True) for p in paths], paths)
        _drop_invalid_uids(headers[0], paths[0])  # the one whose patient and study attributes the SR copies
    finally:
        pydicom.config.settings.reading_validation_mode = mode
    for ds in headers:  # type-2 patient/study attributes the SR copies: present, possibly empty (anonymised data)
        for keyword in TYPE2_COPIED:
            if keyword not in ds:
                setattr(ds, keyword, "")
        for keyword in PERSON_NAMES:
            setattr(ds, keyword, single_component_marked(str(ds[keyword].value or "")))
    return headers, paths


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


def write_sr(
    scan: CTScan,
    table: pd.DataFrame,
    path: str | Path,
    cancer_probability: float | None = None,
    *,
    folder: str | Path | None = None,
) -> Path:
    """Write the SR of ``table``'s findings (world ``coordX..Z`` mm, ``diameter_mm``, ``probability``, and
    ``slice_index`` into the source series) atomically to ``path``, which must name a file directly in ``folder``
    when that is given (a scan id such as ``../x`` or ``/etc/x`` would lead out of it: refused)."""
    path = Path(path)
    if folder is not None and (path.name in ("", ".", "..") or path.parent.resolve() != Path(folder).resolve()):
        raise LungcadError(
            f"the DICOM SR's file name from scan id {scan.id!r} would lie outside {folder}",
            path=scan.source,
            fix="rename the input so that its id is a plain file name",
        )
    hd = _highdicom()
    from pydicom.sr.codedict import codes

    evidence, paths = _evidence(scan, table.get("slice_index", pd.Series(dtype=int)))
    uid = str(scan.metadata.get("frame_of_reference_uid") or getattr(evidence[0], "FrameOfReferenceUID", ""))
    problem = uid_problem(uid)
    if problem:  # the findings' coordinates are in this frame: without it they mean nothing
        raise _invalid_uid(paths[0], "FrameOfReferenceUID", problem, "the SR's coordinates are in this frame")
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
    for element in sr.iterall():  # the last guard: nothing invalid copied by a path not checked above
        problem = next(filter(None, map(uid_problem, _uid_values(element))), None) if element.VR == "UI" else None
        if problem:
            raise _invalid_uid(paths[0], element.keyword or str(element.tag), problem)
    return write_atomic(path, lambda tmp: sr.save_as(tmp, enforce_file_format=True))
