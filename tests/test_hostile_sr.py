"""``lungcad detect --dicom-sr`` on a series with invalid UIDs (#33): never copied into the SR.

A UID the SR's references are made of (study, series, SOP class, the findings' frame of reference) is refused with one
line naming the file and the tag; an instance with an invalid SOPInstanceUID is left out of the evidence, any other
invalid UID in the copied patient/study attributes dropped, each with a warning naming the file and the tag. One row
of ``CASES`` per hostile series.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import pandas as pd
import pytest
from helpers import simple_chest

from lungcad.cli.main import main
from lungcad.errors import LungcadError
from lungcad.io import ct_slice_datasets, write_datasets
from lungcad.sr import uid_problem, write_sr

hd = pytest.importorskip("highdicom")
pydicom = pytest.importorskip("pydicom")

LONG_UID = ".".join(["1"] * 150)  # 299 characters of digits and dots


def set_uid(ds, keyword: str, value: str) -> None:
    """``ds.<keyword> = value`` without pydicom's validation (which warns of the invalid values we want)."""
    tag = pydicom.datadict.tag_for_keyword(keyword)
    ds[tag] = pydicom.DataElement(tag, "UI", value, validation_mode=pydicom.config.IGNORE)


def referenced_study(ds, value):
    item = pydicom.Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management
    set_uid(item, "ReferencedSOPInstanceUID", value)
    ds.ReferencedStudySequence = [item]


@dataclass(frozen=True)
class Case:
    id: str
    keyword: str  # the attribute made invalid (a callable ``(ds, value)`` for a nested one)
    value: str
    first_only: bool  # only in the first slice (0001.dcm, slice index 0: always part of the evidence)
    exit_code: int
    phrase: str  # in the error line (exit != 0) or the warning (exit 0)


CASES = [
    Case("study-uid-path", "StudyInstanceUID", "../../", False, 3, "StudyInstanceUID '../../' is not a UID"),
    Case("series-uid-300-chars", "SeriesInstanceUID", LONG_UID, False, 3, "SeriesInstanceUID is 299 characters long"),
    Case("frame-leading-zero", "FrameOfReferenceUID", "1.2.03.4", False, 3, "FrameOfReferenceUID '1.2.03.4' is not"),
    Case("frame-empty", "FrameOfReferenceUID", "", False, 3, "FrameOfReferenceUID is empty"),
    Case("sop-uid-every-slice", "SOPInstanceUID", "../../", False, 3, "SOPInstanceUID is invalid in every instance"),
    Case("sop-uid-one-slice", "SOPInstanceUID", "1.2.3.04", True, 0, "left out of the DICOM SR's evidence"),
    Case("referenced-study-uid", referenced_study, "../../x", False, 0, "ReferencedStudySequence '../../x' is not"),
]


def hostile_series(folder, case: Case) -> list:
    scan, _, _ = simple_chest(seed=4)
    datasets = ct_slice_datasets(scan)
    for k, ds in enumerate(datasets[:1] if case.first_only else datasets):
        if callable(case.keyword):
            case.keyword(ds, case.value)
        elif case.keyword == "SOPInstanceUID":
            value = case.value if case.first_only else f"{case.value}{k}"  # distinct, all invalid
            set_uid(ds, "SOPInstanceUID", value)
            set_uid(ds.file_meta, "MediaStorageSOPInstanceUID", value)
        else:
            set_uid(ds, case.keyword, case.value)
    pydicom_log = logging.getLogger("pydicom")
    pydicom_log.disabled = True  # its warnings of the invalid values we want, when writing
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return write_datasets(datasets, folder, [f"{k + 1:04d}.dcm" for k in range(len(datasets))])
    finally:
        pydicom_log.disabled = False


def all_uids(ds):
    for element in ds.iterall():
        if element.VR == "UI" and element.value:
            yield from (element.value if element.VM > 1 else [element.value])


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_uids_are_refused_or_left_out_of_the_sr(tmp_path, capsys, confident_model, case):
    paths = hostile_series(tmp_path / "in" / "p", case)
    out = tmp_path / "out"
    args = ["--model", str(confident_model), "--stage", "candidates", "--dicom-sr", "--no-pictures"]
    rc = main(["detect", str(tmp_path / "in"), "-o", str(out), *args])
    err = capsys.readouterr().err
    assert rc == case.exit_code, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if case.phrase in line]
    assert len(lines) == 1 and "0001.dcm" in lines[0], err  # one line, naming the file and the tag
    assert {p.name for p in tmp_path.iterdir()} == {"in", "out"}  # nothing written beside OUT
    assert sorted((tmp_path / "in" / "p").iterdir()) == sorted(paths)
    sr_file = out / "sr" / "p.dcm"
    if case.exit_code:
        errors = pd.read_csv(out / "errors.csv")
        assert len(errors) == 1 and case.phrase in errors.error[0] and "0001.dcm" in errors.error[0]
        assert "\n" not in errors.error[0] and not sr_file.exists()
        return
    ds = pydicom.dcmread(sr_file)
    assert all(uid_problem(uid) is None for uid in all_uids(ds))  # nothing invalid copied
    assert case.value not in set(all_uids(ds))
    sr = hd.sr.Comprehensive3DSR.from_dataset(ds)
    assert len(sr.content.get_planar_roi_measurement_groups()) > 0
    evidence = [i.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
                for series in s.ReferencedSeriesSequence for i in series.ReferencedSOPSequence]  # fmt: skip
    assert evidence and ds.StudyInstanceUID == pydicom.dcmread(paths[1]).StudyInstanceUID


@pytest.mark.parametrize(
    "uid, valid",
    [
        ("1.2.840.10008.5.1.4.1.1.2", True),
        ("0.0", True),
        ("1." + "2" * 62, True),  # 64 characters
        ("1." + "2" * 63, False),  # 65
        ("1.02", False),
        ("1..2", False),
        (".1", False),
        ("1.2.", False),
        ("1.2a", False),
        ("../../", False),
        ("", False),
        ("1.2\n3", False),
    ],
)
def test_uid_rule_is_ps3_5_9_1(uid, valid):
    problem = uid_problem(uid)
    assert (problem is None) == valid
    assert problem is None or "\n" not in problem


@pytest.mark.parametrize("name", ["../x.dcm", "/etc/x.dcm", "a/../../x.dcm"])
def test_sr_path_outside_its_folder_is_refused(tmp_path, make_scan, name):
    folder = tmp_path / "out" / "sr"
    with pytest.raises(LungcadError, match="would lie outside"):
        write_sr(make_scan(), pd.DataFrame(), folder / name, folder=folder)
    assert not (tmp_path / "x.dcm").exists() and not (tmp_path / "out").exists()
