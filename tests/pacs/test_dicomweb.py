"""``lungcad detect --dicomweb`` against a real Orthanc (tests/pacs/conftest.py): pull a study, detect, push the SR."""

from __future__ import annotations

import csv
import socket
from pathlib import Path

import pandas as pd
import pydicom
import pytest

from lungcad.cli.main import main

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "dsb2017" / "stage1"
PATIENT = SAMPLE / sorted(p.name for p in SAMPLE.iterdir() if p.is_dir())[0]
MISSING_STUDY = "1.2.826.0.1.3680043.8.498.99999999999999999999"


@pytest.fixture(scope="module")
def study(orthanc) -> str:
    """The sample DSB patient uploaded to Orthanc with STOW-RS; its StudyInstanceUID."""
    from lungcad.pacs.dicomweb import client

    datasets = [pydicom.dcmread(p) for p in sorted(PATIENT.glob("*.dcm"))]
    client(orthanc.dicomweb).store_instances(datasets)
    uids = {ds.StudyInstanceUID for ds in datasets}
    assert len(uids) == 1
    return uids.pop()


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory, confident_model) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("folder")
    argv = ["detect", str(PATIENT), "-o", str(out), "--stage", "candidates", "--model", str(confident_model)]
    assert main([*argv, "--no-pictures"]) == 0
    return pd.read_csv(out / "scans" / f"{PATIENT.name}.csv")


def _detect(orthanc, study: str, out: Path, model, *extra: str) -> int:
    argv = ["detect", "--dicomweb", orthanc.dicomweb, "--study", study, "-o", str(out), "--stage", "candidates"]
    return main([*argv, "--model", str(model), "--no-pictures", *extra])


def test_dicomweb_study_gives_the_folder_runs_candidates(orthanc, study, folder_run, confident_model, tmp_path):
    out = tmp_path / "out"
    assert _detect(orthanc, study, out, confident_model) == 0
    got = pd.read_csv(out / "scans" / f"{study}.csv")
    assert len(folder_run) > 0
    pd.testing.assert_frame_equal(
        got.drop(columns=["seriesuid"], errors="ignore"), folder_run.drop(columns=["seriesuid"], errors="ignore")
    )
    table = pd.read_csv(out / "candidates.csv")
    assert set(table["seriesuid"].astype(str)) == {study}
    assert not (out / ".scratch").exists()  # the retrieved instances are removed after
    # resume: a rerun skips the finished study
    assert _detect(orthanc, study, out, confident_model) == 0
    assert (out / "scans" / f"{study}.json").exists()


def test_store_results_puts_the_sr_in_orthanc(orthanc, study, confident_model, tmp_path):
    import highdicom as hd

    from lungcad.pacs.dicomweb import client

    web = client(orthanc.dicomweb)
    source = {ds.SeriesInstanceUID for ds in map(pydicom.dcmread, sorted(PATIENT.glob("*.dcm"))[:1])}
    assert _detect(orthanc, study, tmp_path / "out", confident_model, "--store-results") == 0
    found = web.search_for_series(study_instance_uid=study, search_filters={"Modality": "SR"})
    assert len(found) == 1
    series = found[0]["0020000E"]["Value"][0]
    [sr] = list(web.iter_series(study_instance_uid=study, series_instance_uid=series))
    report = hd.sr.Comprehensive3DSR.from_dataset(sr)
    referenced = {
        s.SeriesInstanceUID
        for e in report.CurrentRequestedProcedureEvidenceSequence
        for s in e.ReferencedSeriesSequence
    }
    assert referenced == source


def test_unknown_study_is_one_errors_row(orthanc, confident_model, tmp_path):
    out = tmp_path / "out"
    assert _detect(orthanc, MISSING_STUDY, out, confident_model) == 3
    with open(out / "errors.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == [MISSING_STUDY]
    assert "not on this server" in rows[0]["error"] and orthanc.dicomweb in rows[0]["error"]


def test_unreachable_server_is_one_line(tmp_path, capsys, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/dicom-web"
    monkeypatch.setenv("LUNGCAD_DICOMWEB_TOKEN", "s3cret-token")
    code = main(["detect", "--dicomweb", url, "--study", MISSING_STUDY, "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len(err) == 1 and url in err[0] and "cannot be reached" in err[0]
    assert "s3cret" not in err[0]


def test_orthanc_stopped_mid_run_then_rerun_after_restart(
    orthanc, study, confident_model, tmp_path, monkeypatch, capsys
):
    """The server goes away after the start-up check: the study is one errors.csv row naming the URL (exit 3);
    after a restart the rerun completes it, and a third run does not redo it. The token never reaches an output."""
    from lungcad.pacs import dicomweb

    monkeypatch.setenv("LUNGCAD_DICOMWEB_TOKEN", "s3cret-token")
    checked = dicomweb.check_server

    def check_then_stop(url):
        checked(url)
        orthanc.stop()

    out = tmp_path / "out"
    monkeypatch.setattr(dicomweb, "check_server", check_then_stop)
    try:
        assert _detect(orthanc, study, out, confident_model) == 3
    finally:
        orthanc.start()
    monkeypatch.setattr(dicomweb, "check_server", checked)
    with open(out / "errors.csv", newline="") as fh:
        [row] = list(csv.DictReader(fh))
    assert row["id"] == study and orthanc.dicomweb in row["error"] and "cannot be reached" in row["error"]
    assert not (out / ".scratch").exists()
    capsys.readouterr()
    assert _detect(orthanc, study, out, confident_model) == 0
    assert "1 scan done" in capsys.readouterr().out
    assert (out / "errors.csv").read_text().strip() == "id,path,error"
    assert _detect(orthanc, study, out, confident_model) == 0
    printed = capsys.readouterr()
    assert "0 scans done, 1 already done" in printed.out
    for path in out.rglob("*"):
        if path.is_file():
            assert b"s3cret" not in path.read_bytes(), path
    assert "s3cret" not in printed.err


@pytest.mark.parametrize(
    "argv",
    [
        ["--study", MISSING_STUDY],  # no server
        ["--dicomweb", "http://127.0.0.1:9/dicom-web"],  # no study
        ["--dicomweb", "http://127.0.0.1:9/dicom-web", "--study", MISSING_STUDY, "scan.mhd"],  # both inputs
        [],  # nothing to read
        ["--dicomweb", "http://127.0.0.1:9/dicom-web", "--study", MISSING_STUDY, "--workers", "2"],
        ["--dicomweb", "http://127.0.0.1:9/dicom-web", "--query", "ModalitiesInStudy"],  # no value
    ],
)
def test_detect_arguments_are_checked(argv, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["detect", "-o", str(tmp_path / "out"), *argv])
    assert exc.value.code == 2


def test_a_study_uid_that_is_no_uid_is_refused(tmp_path, capsys):
    code = main(["detect", "--dicomweb", "http://127.0.0.1:9/dicom-web", "--study", "../etc", "-o", str(tmp_path)])
    assert code != 0
    assert "is not a DICOM UID" in capsys.readouterr().err


def test_studies_from_a_query_and_a_list(orthanc, study, confident_model, tmp_path, capsys):
    """A QIDO-RS study search (the sample's PatientID) finds the sample study; a list adds an unknown study: one
    done, one errors.csv row, exit 3."""
    patient = pydicom.dcmread(next(PATIENT.glob("*.dcm")), stop_before_pixels=True).PatientID
    listed = tmp_path / "studies.csv"
    listed.write_text(f"StudyInstanceUID,note\n{MISSING_STUDY},gone\n")
    out = tmp_path / "out"
    extra = ["--query", f"PatientID={patient}", "--study-list", str(listed)]
    argv = ["detect", "--dicomweb", orthanc.dicomweb, "-o", str(out), "--stage", "candidates"]
    assert main([*argv, "--model", str(confident_model), "--no-pictures", *extra]) == 3
    assert "1 scan done, 0 already done, 1 failed" in capsys.readouterr().out
    assert (out / "scans" / f"{study}.json").exists()
    with open(out / "errors.csv", newline="") as fh:
        assert [r["id"] for r in csv.DictReader(fh)] == [MISSING_STUDY]


def test_read_study_list(tmp_path):
    from lungcad.pacs.dicomweb import read_study_list

    plain = tmp_path / "plain.txt"
    plain.write_text("1.2.3\n\n1.2.4\n")
    table = tmp_path / "table.csv"
    table.write_text("PatientID,StudyInstanceUID\np1,1.2.3\np2,\np3,1.2.5\n")
    assert read_study_list(plain) == ["1.2.3", "1.2.4"]
    assert read_study_list(table) == ["1.2.3", "1.2.5"]


def test_credentials_from_the_environment(locked_orthanc, tmp_path, monkeypatch, capsys):
    """Without credentials a server that wants them is one line naming the variables; with
    LUNGCAD_DICOMWEB_USER/PASSWORD the study search passes; a token file is sent as a bearer token. The password is
    never printed."""
    from lungcad.pacs.dicomweb import check_server, client

    url = locked_orthanc.dicomweb
    argv = ["detect", "--dicomweb", url, "--study", MISSING_STUDY, "-o", str(tmp_path / "out")]
    for name in ("LUNGCAD_DICOMWEB_TOKEN", "LUNGCAD_DICOMWEB_TOKEN_FILE", "LUNGCAD_DICOMWEB_USER"):
        monkeypatch.delenv(name, raising=False)
    assert main(argv) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "HTTP 401" in line and url in line and "LUNGCAD_DICOMWEB_USER" in line
    monkeypatch.setenv("LUNGCAD_DICOMWEB_USER", "reader")
    monkeypatch.setenv("LUNGCAD_DICOMWEB_PASSWORD", "pw-123")
    check_server(url)  # no error
    token = tmp_path / "token"
    token.write_text("tok-456\n")
    monkeypatch.setenv("LUNGCAD_DICOMWEB_TOKEN_FILE", str(token))
    assert client(url)._session.headers["Authorization"] == "Bearer tok-456"
    assert "pw-123" not in capsys.readouterr().err


def test_a_study_without_ct_is_one_errors_row(orthanc, confident_model, tmp_path):
    """A study whose only series is MR: one errors.csv row naming the modality; nothing is retrieved."""
    from pydicom.uid import generate_uid

    from lungcad.pacs.dicomweb import client

    ds = pydicom.dcmread(next(PATIENT.glob("*.dcm")))
    ds.Modality, ds.PatientID = "MR", "lungcad-not-ct"  # not found by the PatientID query of another test
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    client(orthanc.dicomweb).store_instances([ds])
    out = tmp_path / "out"
    assert _detect(orthanc, ds.StudyInstanceUID, out, confident_model) == 3
    with open(out / "errors.csv", newline="") as fh:
        [row] = list(csv.DictReader(fh))
    assert row["id"] == ds.StudyInstanceUID and "no CT series (modalities: MR)" in row["error"]


class _Server:
    """A fake QIDO-RS study search over ``studies``: ``page(offset, limit)`` is what one request answers."""

    def __init__(self, studies: list[str], page) -> None:
        self.studies, self.page, self.requests = studies, page, []

    def search_for_studies(self, search_filters=None, offset=None, limit=None):
        self.requests.append((offset, limit))
        assert len(self.requests) < 50, "the study search does not stop"
        return [{"0020000D": {"vr": "UI", "Value": [uid]}} for uid in self.page(self.studies, offset, limit)]


UIDS = [f"1.2.3.{i}" for i in range(7)]


@pytest.mark.parametrize(
    "page",
    [
        lambda s, offset, limit: s[offset : offset + limit],  # as the standard says
        lambda s, offset, limit: s[offset : offset + min(limit, 3)],  # a server that caps its pages at 3
        lambda s, offset, limit: s[offset:limit],  # Orthanc 1.10 with ModalitiesInStudy
    ],
    ids=["standard", "capped-pages", "orthanc-modalities"],
)
def test_find_studies_finds_each_study_once(page):
    from lungcad.pacs.dicomweb import find_studies

    server = _Server(UIDS, page)
    assert find_studies("http://pacs/dicom-web", {"ModalitiesInStudy": "CT"}, web=server) == UIDS
    assert all(limit is not None for _, limit in server.requests)  # Orthanc ignores offset without limit


def test_find_studies_stops_on_a_page_that_repeats(caplog):
    """Orthanc 1.10 without a limit: the same page whatever the offset. One page more, a warning, no endless loop."""
    from lungcad.pacs.dicomweb import find_studies

    server = _Server(UIDS[:2], lambda s, offset, limit: s)
    with caplog.at_level("WARNING", logger="lungcad.pacs.dicomweb"):
        assert find_studies("http://pacs/dicom-web", {"ModalitiesInStudy": "CT"}, web=server) == UIDS[:2]
    assert len(server.requests) == 2
    assert "brings no new study" in caplog.text


def test_find_studies_has_a_bound(monkeypatch):
    """A search that finds more than MAX_STUDIES is one line naming the server and the fix, not an endless pull."""
    from lungcad.errors import PacsError
    from lungcad.pacs import dicomweb

    monkeypatch.setattr(dicomweb, "MAX_STUDIES", 5)
    endless = _Server([], lambda s, offset, limit: [f"1.2.{offset + i}" for i in range(min(limit, 2))])
    with pytest.raises(PacsError) as exc:
        dicomweb.find_studies("http://user:pw@pacs/dicom-web", {"ModalitiesInStudy": "CT"}, web=endless)
    line = str(exc.value)
    assert "\n" not in line and "more than 5 studies" in line and "narrow the query" in line
    assert "http://pacs/dicom-web" in line and "pw" not in line.replace("narrow", "")
    assert len(endless.requests) == 3


def test_modality_and_date_queries_on_orthanc(orthanc, study, monkeypatch):
    """Orthanc 1.10 answers a ModalitiesInStudy search without a limit with the same page whatever the offset
    (dicomweb-client's get_remaining then never stops): the search finds the sample study once, in two requests."""
    from lungcad.errors import PacsError
    from lungcad.pacs import dicomweb

    web = dicomweb.client(orthanc.dicomweb)
    calls = []

    def counted(response, *args, **kwargs):  # every HTTP request, also those that dicomweb-client pages by itself
        calls.append(response.url)
        assert len(calls) <= 5, "the study search does not stop"

    web._session.hooks["response"].append(counted)
    for query in ({"ModalitiesInStudy": "CT"}, {"ModalitiesInStudy": "CT", "StudyDate": "20161231-20170102"}):
        calls.clear()
        found = dicomweb.find_studies(orthanc.dicomweb, query, web=web)
        assert found.count(study) == 1 and len(found) == len(set(found))
        assert len(calls) == 2
    calls.clear()
    assert dicomweb.find_studies(orthanc.dicomweb, {"StudyDate": "20180101-20181231"}, web=web) == []
    monkeypatch.setattr(dicomweb, "MAX_STUDIES", 0)
    with pytest.raises(PacsError, match="more than 0 studies") as exc:
        dicomweb.find_studies(orthanc.dicomweb, {"ModalitiesInStudy": "CT"}, web=web)
    assert orthanc.dicomweb in str(exc.value)
