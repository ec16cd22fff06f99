"""``lungcad serve`` (lungcad/pacs/node.py) against a real Orthanc (tests/pacs/conftest.py): Orthanc C-STOREs the
sample series to the node, the node detects and C-STOREs the SR back; C-ECHO, the AE allow-list, a refused
instance, a failed send, and a restart that resumes the series left in the inbox."""

from __future__ import annotations

import csv
import io
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pydicom
import pytest

from lungcad.cli.main import main
from lungcad.pacs.node import (
    ATTEMPTS,
    CT_IMAGE_STORAGE,
    FAILED,
    INBOX,
    MAX_PDU,
    NOT_CT,
    SUCCESS,
    VERIFICATION,
    DicomNode,
    Peer,
)

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "dsb2017" / "stage1"
PATIENT = SAMPLE / sorted(p.name for p in SAMPLE.iterdir() if p.is_dir())[0]
FILES = sorted(PATIENT.glob("*.dcm"))


@pytest.fixture(scope="module")
def series(own_orthanc) -> tuple[str, str, str]:
    """The sample DSB patient uploaded to this module's Orthanc (REST ``POST /instances``): its
    (StudyInstanceUID, SeriesInstanceUID, Orthanc series id)."""
    for path in FILES:
        own_orthanc.rest("POST", "/instances", path.read_bytes())
    ds = pydicom.dcmread(FILES[0], stop_before_pixels=True)
    [hit] = own_orthanc.rest("POST", "/tools/lookup", ds.SeriesInstanceUID.encode())
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, hit["ID"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node(out: Path, model: Path, **options) -> DicomNode:
    return DicomNode(out, port=0, stage="candidates", model_dir=model, pictures=False, **options)


def _orthanc_sends(orthanc, node: DicomNode, orthanc_series: str) -> dict:
    """Orthanc C-STOREs the series to ``node`` (registered as modality LUNGCAD) and answers when it is done."""
    orthanc.add_modality("LUNGCAD", node.ae_title, node.port)
    return orthanc.rest("POST", "/modalities/LUNGCAD/store", orthanc_series.encode())


def _wait_for(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _scu(calling: str, port: int, *contexts: str):
    from pynetdicom import AE

    ae = AE(ae_title=calling)
    for context in contexts:
        ae.add_requested_context(context)
    return ae.associate("127.0.0.1", port, ae_title="LUNGCAD")


def _sr_series(orthanc, study: str) -> list[str]:
    found = orthanc.rest("POST", "/tools/find", {"Level": "Series", "Query": {"StudyInstanceUID": study}})
    return [s for s in found if orthanc.rest("GET", f"/series/{s}")["MainDicomTags"].get("Modality") == "SR"]


def test_orthanc_sends_a_series_the_sr_comes_back(own_orthanc, series, confident_model, tmp_path, caplog):
    """Orthanc C-ECHOes and C-STOREs the sample series to the node; the node detects it once quiet and C-STOREs
    the SR to Orthanc, referencing the source series. An AE title outside the allow-list is refused, a CT-class
    instance whose modality is MR gets a failure status, and the node goes on answering."""
    study, series_uid, orthanc_series = series
    out = tmp_path / "out"
    peer = f"ORTHANC@127.0.0.1:{own_orthanc.dicom_port}"
    caplog.set_level(logging.INFO, logger="lungcad")
    with _node(out, confident_model, send_to=peer, allow_ae=["ORTHANC", "TESTSCU"], quiet_seconds=1.0) as node:
        own_orthanc.add_modality("LUNGCAD", node.ae_title, node.port)
        assert own_orthanc.rest("POST", "/modalities/LUNGCAD/echo", {}) == {}  # C-ECHO answered
        assert _sr_series(own_orthanc, study) == []
        answer = _orthanc_sends(own_orthanc, node, orthanc_series)
        assert answer["InstancesCount"] == len(FILES) and answer["FailedInstancesCount"] == 0
        # refused: an unknown calling AE title; an instance that is not CT
        assert _scu("INTRUDER", node.port, VERIFICATION).is_rejected
        assoc = _scu("TESTSCU", node.port, CT_IMAGE_STORAGE, VERIFICATION)
        assert assoc.is_established
        assert assoc.acceptor.maximum_length == MAX_PDU  # a fixed limit, not 0 (unlimited)
        mr = pydicom.dcmread(FILES[0])
        mr.Modality = "MR"
        assert assoc.send_c_store(mr).Status == NOT_CT
        assert assoc.send_c_echo().Status == 0
        assoc.release()
        _wait_for(lambda: not node.pending() and (out / "scans" / f"{series_uid}.json").exists())
        _wait_for(lambda: not (out / INBOX).exists() or not any((out / INBOX).iterdir()), 10)
    [sr_series] = _sr_series(own_orthanc, study)
    [instance] = own_orthanc.rest("GET", f"/series/{sr_series}/instances")
    sr = pydicom.dcmread(io.BytesIO(own_orthanc.rest("GET", f"/instances/{instance['ID']}/file", raw=True)))
    referenced = {
        s.SeriesInstanceUID for e in sr.CurrentRequestedProcedureEvidenceSequence for s in e.ReferencedSeriesSequence
    }
    assert referenced == {series_uid}
    assert sr.StudyInstanceUID == study
    with open(out / "candidates.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and {r["seriesuid"] for r in rows} == {series_uid}
    assert (out / "errors.csv").read_text().strip() == "id,path,error"
    text = caplog.text
    assert "INTRUDER" in text and "refused" in text
    assert f"series {series_uid}: received {len(FILES)} instances" in text
    assert f"SR {series_uid}.dcm sent to {peer}" in text


def test_failed_send_then_restart_resumes(own_orthanc, series, confident_model, tmp_path, caplog):
    """A node stopped before the series was quiet leaves it in the inbox; the next start detects it; a send to a
    node that is not there is one errors.csv row and leaves the series unfinished; the start after sends it; a
    finished series put back in the inbox is not detected again."""
    study, series_uid, orthanc_series = series
    out = tmp_path / "out"
    json_file = out / "scans" / f"{series_uid}.json"
    caplog.set_level(logging.INFO, logger="lungcad")
    with _node(out, confident_model, quiet_seconds=600) as node:
        _orthanc_sends(own_orthanc, node, orthanc_series)
    inbox = out / INBOX / study / series_uid
    assert len(list(inbox.glob("*.dcm"))) == len(FILES) and not json_file.exists()

    nobody = f"NOBODY@127.0.0.1:{free_port()}"
    with _node(out, confident_model, send_to=nobody, quiet_seconds=0.2):
        _wait_for(lambda: (out / "errors.csv").exists() and series_uid in (out / "errors.csv").read_text())
    with open(out / "errors.csv", newline="") as fh:
        [row] = list(csv.DictReader(fh))
    assert row["id"] == series_uid and nobody in row["error"]
    assert not json_file.exists() and len(list(inbox.glob("*.dcm"))) == len(FILES)  # not finished: kept
    assert (inbox / ATTEMPTS).read_text().strip() == "1"  # the first of 3 attempts

    before = len(_sr_series(own_orthanc, study))
    with _node(out, confident_model, send_to=f"ORTHANC@127.0.0.1:{own_orthanc.dicom_port}", quiet_seconds=0.2):
        _wait_for(lambda: json_file.exists() and not inbox.exists())
    assert len(_sr_series(own_orthanc, study)) == before + 1
    assert (out / "errors.csv").read_text().strip() == "id,path,error"

    # a node killed after the series' JSON was written and before its inbox folder was removed
    inbox.mkdir(parents=True)
    (inbox / FILES[0].name).write_bytes(FILES[0].read_bytes())
    (inbox / ".tmp-half-written.dcm").write_bytes(b"\0" * 10)
    written = json_file.stat().st_mtime_ns
    caplog.clear()
    with _node(out, confident_model, quiet_seconds=0.2):
        _wait_for(lambda: not inbox.exists())
    assert json_file.stat().st_mtime_ns == written
    assert f"series {series_uid}: already done" in caplog.text


def _errors(out: Path) -> list[dict]:
    with open(out / "errors.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_a_series_that_always_fails_ends_in_inbox_failed(confident_model, tmp_path, caplog):
    """A series that cannot be read fails once per start; after --max-attempts it moves to OUT/.inbox-failed/
    with one errors.csv row saying where it is and how to retry; moved back, it gets its attempts again. Start-up
    removes the .tmp-* files of half-done writes (and a series folder that holds nothing else)."""
    out = tmp_path / "out"
    study, series_uid = "1.2.826.0.1.1", "1.2.826.0.1.1.2"
    folder = out / INBOX / study / series_uid
    folder.mkdir(parents=True)
    (folder / "1.2.826.0.1.1.2.3.dcm").write_bytes(b"not a DICOM file" * 64)
    (folder / ".tmp-1.2.826.0.1.1.2.4-140.dcm").write_bytes(b"\0" * 10)  # a write cut off halfway
    only_tmp = out / INBOX / "1.2.826.0.9" / "1.2.826.0.9.1"
    only_tmp.mkdir(parents=True)
    (only_tmp / ".tmp-1.2.826.0.9.1.1-7.dcm").write_bytes(b"\0" * 10)
    caplog.set_level(logging.INFO, logger="lungcad")

    def one_start() -> None:
        before = len(caplog.records)
        with _node(out, confident_model, quiet_seconds=0, max_attempts=2):
            _wait_for(
                lambda: any(series_uid in r.getMessage() for r in caplog.records[before:] if r.levelname == "ERROR")
            )

    one_start()
    assert [p.name for p in folder.iterdir()] and not list(folder.glob(".tmp-*"))
    assert sorted(p.name for p in folder.iterdir()) == [ATTEMPTS, "1.2.826.0.1.1.2.3.dcm"]
    assert (folder / ATTEMPTS).read_text().strip() == "1"
    assert not only_tmp.parent.exists()  # nothing but a temporary file: removed, and its empty study folder
    [row] = _errors(out)
    assert row["id"] == series_uid and FAILED not in row["error"]

    one_start()  # the second and last attempt
    failed = out / FAILED / study / series_uid
    assert not (out / INBOX / study).exists()
    assert sorted(p.name for p in failed.iterdir()) == ["1.2.826.0.1.1.2.3.dcm"]
    [row] = _errors(out)
    assert row["id"] == series_uid and row["path"] == str(failed)
    assert (
        "gave up after 2 attempts" in row["error"]
        and f"move that folder back into {out / INBOX / study}" in row["error"]
    )
    assert "\n" not in row["error"]
    assert sum(f"series {series_uid}: gave up" in r.getMessage() for r in caplog.records) == 1

    (out / INBOX / study).mkdir(parents=True)  # the retry the row describes: a fresh count
    failed.rename(folder)
    one_start()
    assert (folder / ATTEMPTS).read_text().strip() == "1" and not failed.exists()


class _Assoc:
    requestor = type("Requestor", (), {"ae_title": "SCU", "address": "127.0.0.1", "port": 1})


class _Event:
    """What the node's handlers read of a pynetdicom event."""

    def __init__(self, assoc, ds=None, name: str = "EVT_C_STORE") -> None:
        self.assoc, self.dataset, self.event = assoc, ds, type("E", (), {"name": name})

    def encoded_dataset(self, include_meta: bool = True) -> bytes:
        buffer = io.BytesIO()
        self.dataset.save_as(buffer, enforce_file_format=True)
        return buffer.getvalue()


def test_the_count_of_an_association_that_ends_is_dropped(tmp_path, caplog):
    """The per-association instance count goes when the connection closes, even without a release or abort, and
    an association object that is gone (its id may be reused) leaves nothing behind."""
    import gc

    node = DicomNode(tmp_path / "out", port=0)
    ds = pydicom.dcmread(FILES[0])
    first, second = _Assoc(), _Assoc()
    assert node._on_store(_Event(first, ds)) == SUCCESS and node._on_store(_Event(first, ds)) == SUCCESS
    assert node._on_store(_Event(second, ds)) == SUCCESS
    assert node._received[first] == 2 and node._received[second] == 1
    node._on_conn_close(_Event(first, name="EVT_CONN_CLOSE"))  # no EVT_RELEASED/EVT_ABORTED came
    assert first not in node._received and "closed without release (2 instances stored)" in caplog.text
    del second
    gc.collect()
    assert len(node._received) == 0
    assert (tmp_path / "out" / INBOX / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm").exists()


def test_serve_command_runs_until_sigterm(confident_model, tmp_path):
    """``lungcad serve`` answers C-ECHO until SIGTERM, then stops cleanly (exit 0, output folder unlocked)."""
    port = free_port()
    echoed: list[int] = []

    def echo_then_stop() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not echoed:
            assoc = _scu("ANY", port, VERIFICATION)
            if assoc.is_established:
                echoed.append(assoc.send_c_echo().Status)
                assoc.release()
            else:
                time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=echo_then_stop)
    thread.start()
    argv = ["serve", "-o", str(tmp_path / "out"), "--port", str(port), "--stage", "candidates"]
    code = main([*argv, "--model", str(confident_model), "--no-pictures", "--quiet-seconds", "1"])
    thread.join()
    assert code == 0 and echoed == [0]
    with DicomNode(tmp_path / "out", port=0, stage="candidates", model_dir=confident_model):
        pass  # the folder's lock was released


def test_a_port_in_use_is_one_line(confident_model, tmp_path):
    from lungcad.errors import PacsError

    with _node(tmp_path / "a", confident_model) as first, pytest.raises(PacsError, match="cannot listen") as exc:
        DicomNode(tmp_path / "b", port=first.port, stage="candidates", model_dir=confident_model).start()
    assert f"127.0.0.1:{first.port}" in str(exc.value)
    assert "\n" not in str(exc.value) and "--port" in str(exc.value)
    with _node(tmp_path / "b", confident_model):  # the failed start released its output folder
        pass


def test_peer_parse():
    assert Peer.parse("ORTHANC@127.0.0.1:4242") == Peer("ORTHANC", "127.0.0.1", 4242)
    assert Peer.parse("PACS@[::1]:104") == Peer("PACS", "::1", 104)
    assert str(Peer("A", "h", 1)) == "A@h:1"


@pytest.mark.parametrize(
    "argv",
    [
        ["--send-to", "ORTHANC@127.0.0.1"],  # no port
        ["--send-to", "127.0.0.1:4242"],  # no AE title
        ["--port", "70000"],
        ["--quiet-seconds", "-1"],
        ["--max-attempts", "0"],
        [],  # no output folder
    ],
)
def test_serve_arguments_are_checked(argv, tmp_path):
    output = ["-o", str(tmp_path / "out")] if argv else []
    with pytest.raises(SystemExit) as exc:
        main(["serve", *output, *argv])
    assert exc.value.code == 2
