"""DICOM Structured Report of a scan's findings (TID 1500 measurement report, written with highdicom).

One SR per DICOM series: each finding is a planar ROI (TID 1410), an ellipse of its estimated diameter on the source
slice nearest its centre (the plane of that image, its centre projected onto it: at most half a slice spacing away),
in the patient coordinates (mm) of the source's frame of reference, with its diameter (whose source of measurement is
that slice) and its nodule probability as measurements; the patient's cancer probability, when known, is one more
measurement. The SR references the source series' instances that its findings lie on, so viewers (OHIF, 3D Slicer)
draw the findings on the images. Every code is a standard one (DCM, SCT, UCUM, LN: no private scheme to declare): the
nodule probability is (111012, DCM, "Certainty of Finding"), "the likelihood that the finding detected is in fact the
type of finding identified" (PS3.16 Table D-1, CID 6048), here a nodule; the cancer probability is (111047, DCM,
"Probability of cancer"). Both are written as the CAD templates write them (PS3.16 TID 4104 row 12, TID 4006 rows
6-7): in percent, (%, UCUM, "Percent"), 0-100 (:func:`percent`); TID 1500 allows them as ROI measurements (TID 1419's
concept names and units are extensible context groups, CID 7469 and CID 7181). A probability is read back with
:func:`probabilities`.

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

#: The false-positive reducer's nodule probability: the likelihood that the candidate is a nodule (PS3.16 CID 6048).
NODULE_PROBABILITY = ("111012", "DCM", "Certainty of Finding")
#: The patient's cancer probability.
CANCER_PROBABILITY = ("111047", "DCM", "Probability of cancer")
#: The unit both are written in, 0-100, as the CAD templates write them (PS3.16 TID 4104 row 12, TID 4006 rows 6-7).
PERCENT = ("%", "UCUM", "Percent")

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
    return ellipse_points(centre_xyz, diameter_mm, scan.direction[:, 0], scan.direction[:, 1])


def ellipse_points(centre_xyz: np.ndarray, diameter_mm: float, ex: np.ndarray, ey: np.ndarray) -> np.ndarray:
    """(4, 3) world points: the ends of two perpendicular diameters (major then minor axis) along the unit vectors
    ``ex`` and ``ey`` through ``centre_xyz``; a diameter under 1 mm is drawn as 1 mm."""
    r = max(float(diameter_mm), 1.0) / 2
    return np.stack([centre_xyz - r * ex, centre_xyz + r * ex, centre_xyz - r * ey, centre_xyz + r * ey])


def slice_plane(ds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A source image's plane: a point on it (ImagePositionPatient), its row and column direction cosines
    (ImageOrientationPatient), in world mm."""
    iop = np.asarray(ds.ImageOrientationPatient, float)
    return np.asarray(ds.ImagePositionPatient, float), iop[:3], iop[3:]


def ellipse_on_slice(ds, centre_xyz: np.ndarray, diameter_mm: float) -> np.ndarray:
    """:func:`ellipse_points` on the image ``ds``: centred on ``centre_xyz`` projected onto the image's plane, its
    axes along the image's rows and columns, so every point lies on the image (viewers draw it there)."""
    origin, row, column = slice_plane(ds)
    normal = np.cross(row, column)
    normal /= np.linalg.norm(normal)
    centre = np.asarray(centre_xyz, float)
    on_plane = centre - ((centre - origin) @ normal) * normal
    return ellipse_points(on_plane, diameter_mm, row, column)


def percent(probability: float) -> float:
    """A probability (0-1) as the SR writes it: in percent (:data:`PERCENT`)."""
    return 100.0 * float(probability)


def probabilities(group) -> dict[str, float]:
    """The probabilities (0-1) that a measurement group read back with highdicom (e.g. from
    ``Comprehensive3DSR.from_dataset(ds).content.get_planar_roi_measurement_groups()``) holds, by concept meaning
    ("Certainty of Finding": the nodule probability; "Probability of cancer"); a value not in percent is refused
    (:class:`~lungcad.errors.LungcadError`)."""
    found = {}
    for measurement in group.get_measurements():
        key = (measurement.name.value, measurement.name.scheme_designator)
        if key not in {NODULE_PROBABILITY[:2], CANCER_PROBABILITY[:2]}:
            continue
        unit = measurement.unit
        if (unit.value, unit.scheme_designator) != PERCENT[:2]:
            raise LungcadError(
                f"the SR's {measurement.name.meaning} is in {unit.value!r} ({unit.scheme_designator}), not in %",
                fix="read it as its unit says (lungcad writes probabilities in percent since it dropped 99LUNGCAD)",
            )
        found[measurement.name.meaning] = float(measurement.value) / 100.0
    return found


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


def _finding(hd, scan: CTScan, row: pd.Series, rank: int, uid: str, image=None):
    """The finding ``row`` as a planar ROI: on the source ``image`` (its nearest slice; a header) when given, else
    (that slice left out of the evidence) in the scan's slice plane through its centre."""
    from pydicom.sr.codedict import codes

    centre = row[["coordX", "coordY", "coordZ"]].to_numpy(float)
    if image is not None:
        points = ellipse_on_slice(image, centre, row["diameter_mm"])
        sources = [hd.sr.SourceImageForMeasurement.from_source_image(image)]
    else:
        points, sources = axial_ellipse(scan, centre, row["diameter_mm"]), None
    region = hd.sr.ImageRegion3D(
        graphic_type=hd.sr.GraphicTypeValues3D.ELLIPSE, graphic_data=points, frame_of_reference_uid=uid
    )
    measurements = [
        hd.sr.Measurement(
            name=codes.SCT.Diameter,
            value=float(row["diameter_mm"]),
            unit=codes.UCUM.Millimeter,
            referenced_images=sources,
        ),
        hd.sr.Measurement(
            name=hd.sr.CodedConcept(*NODULE_PROBABILITY),
            value=percent(row["probability"]),
            unit=hd.sr.CodedConcept(*PERCENT),
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
    files = [str(p) for p in scan.metadata.get("slice_files") or []]
    by_file = dict(zip(paths, evidence, strict=True))
    images = (
        [by_file.get(files[int(i)]) for i in table["slice_index"]] if "slice_index" in table else [None] * len(table)
    )
    groups = [
        _finding(hd, scan, row, rank, uid, image)
        for rank, ((_, row), image) in enumerate(zip(table.iterrows(), images, strict=True), start=1)
    ]
    if cancer_probability is not None:
        patient = hd.sr.Measurement(
            name=hd.sr.CodedConcept(*CANCER_PROBABILITY),
            value=percent(cancer_probability),
            unit=hd.sr.CodedConcept(*PERCENT),
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
