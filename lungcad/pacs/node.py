"""``lungcad serve``: a DICOM node (DIMSE, ``pynetdicom``) that receives CT series with C-STORE, detects on each
series once it has been quiet for a while, and sends the DICOM SR to a destination with C-STORE.

How it works (:class:`DicomNode`):

- a C-STORE SCP for CT Image Storage in the common transfer syntaxes (uncompressed, deflate, JPEG, JPEG-LS,
  JPEG 2000, RLE), and C-ECHO (Verification); with an allow-list, an association from any other calling AE title is
  refused. Enhanced (multi-frame) CT is not accepted: lungcad's DICOM reader reads single-frame slices only;
- each instance is written atomically to ``OUT/.inbox/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``;
  an instance that is not CT or lacks its UIDs is refused with a failure status (0xA900), one that cannot be
  decoded with 0xC210; the node stays up;
- a series that received no instance for ``quiet_seconds`` is detected as a folder run does
  (:func:`lungcad.pipeline.batch.detect_one`): outputs, resume and ``errors.csv`` are those of ``lungcad detect``,
  keyed by the SeriesInstanceUID (``OUT/scans/<SeriesInstanceUID>.json``, ``OUT/sr/<SeriesInstanceUID>.dcm``);
- with ``send_to``, the SR is sent there with C-STORE; a series whose detection or send fails is one row in
  ``OUT/errors.csv``, stays in the inbox (not finished) and is done again when the node restarts, at most
  ``max_attempts`` times in all (counted in the series folder's ``.attempts`` file); then it is moved to
  ``OUT/.inbox-failed/<StudyInstanceUID>/<SeriesInstanceUID>/`` and its ``errors.csv`` row says so (to retry, move
  the folder back into ``OUT/.inbox/<StudyInstanceUID>/`` and restart the node: it gets ``max_attempts`` again);
- a finished series' inbox folder is removed; on start, the series left in the inbox are done once they have been
  quiet for ``quiet_seconds`` (a sender that was interrupted may go on), the finished ones are not redone, and the
  ``.tmp-*`` files of writes a killed node left half done are removed;
- the SCP accepts PDUs of at most ``MAX_PDU`` bytes (16 MiB).

:func:`serve` runs a node until SIGINT or SIGTERM (the series being detected is finished first; a second signal
stops at once).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import shutil
import signal
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

from lungcad.batch import output_folder, read_errors, run_batch, write_errors
from lungcad.errors import PacsError
from lungcad.fileio import write_text_atomic
from lungcad.io import ScanRef
from lungcad.pacs.dicomweb import check_uid, deliver_sr
from lungcad.pipeline.batch import detect_one
from lungcad.pipeline.models import ModelSet, load_models, model_set
from lungcad.pipeline.writers import is_finished, scan_stem, write_batch_tables

log = logging.getLogger(__name__)

#: The folder inside the output folder where received instances wait for their series to be detected.
INBOX = ".inbox"
#: Where a series goes after ``max_attempts`` failed attempts (``OUT/.inbox-failed/<study>/<series>/``).
FAILED = ".inbox-failed"
#: The file in a series' inbox folder that counts its failed attempts.
ATTEMPTS = ".attempts"
#: Default number of attempts (one per node start) at a series whose detection or send fails.
MAX_ATTEMPTS = 3
#: The largest PDU (bytes) the SCP accepts (pynetdicom's own default is 16 KiB; 0 would mean no limit).
MAX_PDU = 16 * 1024 * 1024
#: Default seconds without a new instance after which a series counts as complete.
QUIET_SECONDS = 10.0
#: How often (s) the node looks for series that became quiet.
POLL_S = 0.2

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
VERIFICATION = "1.2.840.10008.1.1"
#: The transfer syntaxes the SCP accepts for CT: uncompressed, deflate, JPEG, JPEG-LS, JPEG 2000, RLE.
TRANSFER_SYNTAXES = (
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE Lossless
)

#: C-STORE statuses: success, refused (not a CT instance or no UIDs), cannot understand, out of resources.
SUCCESS, NOT_CT, UNREADABLE, NO_SPACE = 0x0000, 0xA900, 0xC210, 0xA700

_PEER = re.compile(r"^(?P<ae>[^@]{1,16})@(?P<host>[^:@]+|\[[0-9a-fA-F:]+\]):(?P<port>[0-9]{1,5})$")


def _pynetdicom():
    try:
        import pynetdicom
    except ImportError as exc:
        raise PacsError(
            "lungcad serve needs the optional package pynetdicom", fix="pip install 'lungcad[pacs]'"
        ) from exc
    return pynetdicom


@dataclass(frozen=True)
class Peer:
    """A DICOM node to send to: its AE title, host and port (``AE@HOST:PORT``)."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Peer:
        """``AE@HOST:PORT`` (e.g. ``ORTHANC@127.0.0.1:4242``) as a :class:`Peer`.

        Raises:
            PacsError: ``text`` is not of that form.
        """
        m = _PEER.match(text.strip())
        if not m or not 0 < int(m["port"]) < 65536 or not m["ae"].strip():
            raise PacsError(
                f"{text!r} is not a DICOM node", expected="AE@HOST:PORT, e.g. ORTHANC@127.0.0.1:4242", fix="check it"
            )
        return cls(m["ae"].strip(), m["host"].strip("[]"), int(m["port"]))

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def send_file(path: Path, peer: Peer, *, calling_ae: str = "LUNGCAD", timeout: float = 30) -> None:
    """C-STORE the DICOM file at ``path`` to ``peer`` as ``calling_ae``.

    Raises:
        PacsError: the association is refused or cannot be made, or the peer answers with a failure status.
    """
    import pydicom

    pynetdicom = _pynetdicom()
    ds = pydicom.dcmread(path)
    ae = pynetdicom.AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    syntax = str(ds.file_meta.TransferSyntaxUID)
    ae.add_requested_context(ds.SOPClassUID, list(dict.fromkeys([syntax, "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])))
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
    if not assoc.is_established:
        why = "refused" if assoc.is_rejected else "not made (nothing answers there)"
        raise PacsError(
            f"C-STORE of {path.name}: the association with {peer} was {why}",
            path=path,
            fix=f"check that {peer} is running and accepts {calling_ae} as a calling AE title",
        )
    try:
        status = assoc.send_c_store(ds)
    except Exception as exc:  # no accepted presentation context, a dropped connection
        raise PacsError(f"C-STORE of {path.name} to {peer} failed: {type(exc).__name__}: {exc}", path=path) from exc
    finally:
        assoc.release()
    code = getattr(status, "Status", None)
    if code is None or code not in (0x0000, 0xB000, 0xB006, 0xB007):
        shown = "no answer" if code is None else f"status 0x{code:04X}"
        raise PacsError(
            f"C-STORE of {path.name} to {peer} failed ({shown})", path=path, fix=f"see the log of {peer.ae_title}"
        )


class DicomNode:
    """A DICOM node that receives CT series, detects and sends the SR (see the module's text). ``start()`` it (or
    use it as a context manager), ``stop()`` it; ``port`` is the port it listens on (useful with ``port=0``).

    Args:
        out: the output folder (locked while the node runs, as a ``lungcad detect`` run locks it).
        ae_title: the node's AE title (called AE title of the senders, calling AE title of its C-STOREs).
        port, bind: where it listens (``bind="0.0.0.0"`` for other machines).
        send_to: where each series' SR goes (``AE@HOST:PORT`` or a :class:`Peer`); None keeps it in ``OUT/sr/``.
        allow_ae: calling AE titles accepted; None or empty accepts any.
        quiet_seconds: a series is detected once it received no instance for this long.
        max_attempts: a series whose detection or send failed this many times (once per start) is moved to
            ``OUT/.inbox-failed/``.
        stage, model_dir, fpr_model_dir, risk_model_dir, blobs, pictures: as :func:`lungcad.pipeline.detect_scans`.
    """

    def __init__(
        self,
        out: str | Path,
        *,
        ae_title: str = "LUNGCAD",
        port: int = 11112,
        bind: str = "127.0.0.1",
        send_to: str | Peer | None = None,
        allow_ae: list[str] | None = None,
        quiet_seconds: float = QUIET_SECONDS,
        max_attempts: int = MAX_ATTEMPTS,
        stage: str | None = None,
        model_dir: str | Path | None = None,
        fpr_model_dir: str | Path | None = None,
        risk_model_dir: str | Path | None = None,
        blobs: str | Path | None = None,
        pictures: bool = True,
    ) -> None:
        if not 0 < len(ae_title.strip()) <= 16:
            raise PacsError(f"AE title {ae_title!r} must have 1 to 16 characters", fix="give another --ae-title")
        if max_attempts < 1:
            raise PacsError(f"max_attempts must be 1 or more, got {max_attempts}", fix="give another --max-attempts")
        self.out = Path(out)
        self.inbox = self.out / INBOX
        self.ae_title = ae_title.strip()
        self.bind, self.port = bind, port
        self.send_to = Peer.parse(send_to) if isinstance(send_to, str) else send_to
        self.allow_ae = [a.strip() for a in allow_ae or [] if a.strip()]
        self.quiet_seconds = float(quiet_seconds)
        self.max_attempts = int(max_attempts)
        self._model_args = (stage, model_dir, fpr_model_dir, risk_model_dir, blobs)
        self.pictures = pictures
        self.models: ModelSet | None = None
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], float] = {}  # (study, series) -> monotonic time of its last instance
        # association -> instances stored; weak keys: an association that never reports its end cannot leak
        self._received: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._stop = threading.Event()
        self._stack: contextlib.ExitStack | None = None
        self._server = None
        self._worker: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------ start, stop
    def start(self) -> DicomNode:
        """Lock the output folder, check the models, schedule the series left in the inbox, listen, load the
        models.

        Raises:
            OutputError, OutputBusyError: the output folder cannot be written or another run holds it.
            PacsError: pynetdicom is missing, or the port cannot be opened.
        """
        pynetdicom = _pynetdicom()
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(output_folder(self.out, "lungcad serve"))
            self.models = model_set(*self._model_args)  # checked (a bad directory fails here), loaded below
            self._resume()
            ae = pynetdicom.AE(ae_title=self.ae_title)
            ae.maximum_pdu_size = MAX_PDU
            ae.add_supported_context(CT_IMAGE_STORAGE, list(TRANSFER_SYNTAXES))
            ae.add_supported_context(VERIFICATION)
            ae.require_calling_aet = list(self.allow_ae)
            handlers = [
                (pynetdicom.evt.EVT_C_STORE, self._on_store),
                (pynetdicom.evt.EVT_C_ECHO, self._on_echo),
                (pynetdicom.evt.EVT_ACCEPTED, self._on_accepted),
                (pynetdicom.evt.EVT_REJECTED, self._on_rejected),
                (pynetdicom.evt.EVT_RELEASED, self._on_closed),
                (pynetdicom.evt.EVT_ABORTED, self._on_closed),
                (pynetdicom.evt.EVT_CONN_CLOSE, self._on_conn_close),
            ]
            try:
                self._server = ae.start_server((self.bind, self.port), block=False, evt_handlers=handlers)
            except OSError as exc:
                raise PacsError(
                    f"cannot listen on {self.bind}:{self.port} ({exc.strerror or type(exc).__name__})",
                    fix="choose another --port, or stop the program that uses it",
                ) from exc
            self.port = self._server.server_address[1]
            seconds = load_models(self.models)  # instances are received meanwhile; detection waits for this
            if seconds:
                log.info("models loaded in %.1f s", seconds)
        except BaseException:
            if self._server is not None:
                self._server.shutdown()
                self._server = None
            stack.close()
            raise
        self._stack = stack
        self._stop.clear()
        self._worker = threading.Thread(target=self._loop, name="lungcad-serve-worker", daemon=True)
        self._worker.start()
        allowed = f"; calling AE titles allowed: {', '.join(self.allow_ae)}" if self.allow_ae else ""
        sends = f"; SRs go to {self.send_to}" if self.send_to else ""
        log.info(
            "%s listening on %s:%d (series detected after %.1f s quiet; outputs in %s%s%s)",
            self.ae_title,
            self.bind,
            self.port,
            self.quiet_seconds,
            self.out,
            sends,
            allowed,
        )
        return self

    def stop(self) -> None:
        """Stop listening, finish the series being detected, release the output folder. Series not yet detected
        stay in the inbox for the next start."""
        if self._stack is None:
            return
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
        if self._worker is not None:
            self._worker.join()
        self._stack.close()
        self._stack = self._server = self._worker = None
        with self._lock:
            waiting = len(self._last)
            self._last.clear()
        log.info("%s stopped%s", self.ae_title, f"; {waiting} series wait in the inbox" if waiting else "")

    def __enter__(self) -> DicomNode:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def pending(self) -> list[str]:
        """The SeriesInstanceUIDs received and not yet detected."""
        with self._lock:
            return [series for _, series in self._last]

    # ----------------------------------------------------------------------------------------------- events
    @staticmethod
    def _peer(event) -> str:
        req = event.assoc.requestor
        return f"{req.ae_title}@{req.address}:{req.port}"

    def _on_accepted(self, event) -> None:
        log.info("association from %s accepted", self._peer(event))

    def _on_rejected(self, event) -> None:
        log.warning("association from %s refused (calling AE title not allowed)", self._peer(event))

    def _on_closed(self, event) -> None:
        with self._lock:
            n = self._received.pop(event.assoc, 0)
        how = "released" if event.event.name == "EVT_RELEASED" else "aborted"
        log.info("association from %s %s (%d instances stored)", self._peer(event), how, n)

    def _on_conn_close(self, event) -> None:
        """The connection closed (after a release or abort, or without either): forget its count."""
        with self._lock:
            n = self._received.pop(event.assoc, None)
        if n is not None:
            log.warning("connection from %s closed without release (%d instances stored)", self._peer(event), n)

    def _on_echo(self, event) -> int:
        log.info("C-ECHO from %s", self._peer(event))
        return SUCCESS

    def _on_store(self, event) -> int:
        """Write one instance into the inbox; a failure status for one that is not CT, has no UIDs or cannot be
        decoded or written (the node goes on)."""
        peer = self._peer(event)
        try:
            ds = event.dataset
            modality, study, series, sop = (
                str(getattr(ds, k, "") or "")
                for k in ("Modality", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
            )
        except Exception as exc:  # a dataset pydicom cannot decode
            log.warning("instance from %s refused: cannot be decoded (%s: %s)", peer, type(exc).__name__, exc)
            return UNREADABLE
        reason = f"modality {modality or 'missing'}, not CT" if modality != "CT" else None
        for uid, what in ((study, "StudyInstanceUID"), (series, "SeriesInstanceUID"), (sop, "SOPInstanceUID")):
            try:
                check_uid(uid, what)
            except PacsError:
                reason = reason or (f"{what} {uid!r} is not a DICOM UID" if uid else f"no {what}")
        if reason:
            log.warning("instance %s from %s refused: %s", sop or "?", peer, reason)
            return NOT_CT
        folder = self.inbox / study / series
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".tmp-{sop}-{threading.get_ident()}.dcm"
            tmp.write_bytes(event.encoded_dataset(include_meta=True))
            os.replace(tmp, folder / f"{sop}.dcm")
        except OSError as exc:
            log.error("instance %s from %s not stored: %s", sop, peer, exc.strerror or type(exc).__name__)
            return NO_SPACE
        with self._lock:
            new = (study, series) not in self._last
            self._last[(study, series)] = time.monotonic()
            self._received[event.assoc] = self._received.get(event.assoc, 0) + 1
        if new:
            log.info("series %s: receiving from %s", series, peer)
        return SUCCESS

    # ----------------------------------------------------------------------------------------------- series
    def _resume(self) -> None:
        """Schedule every series folder in the inbox (removing temporary files a killed node left)."""
        now = time.monotonic()
        if not self.inbox.is_dir():
            return
        for study in sorted(p for p in self.inbox.iterdir() if p.is_dir()):
            for folder in sorted(p for p in study.iterdir() if p.is_dir()):
                for tmp in folder.glob(".tmp-*"):
                    tmp.unlink(missing_ok=True)
                if _instances(folder):
                    self._last[(study.name, folder.name)] = now
                    log.info("series %s: left in the inbox, resumed", folder.name)
                else:
                    shutil.rmtree(folder, ignore_errors=True)
            with contextlib.suppress(OSError):  # a study folder left empty
                study.rmdir()

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            with self._lock:
                due = [
                    key
                    for key, last in sorted(self._last.items(), key=lambda kv: kv[1])
                    if now - last >= self.quiet_seconds
                ]
            if not due:
                self._stop.wait(POLL_S)
                continue
            try:
                self.process(*due[0])
            except Exception as exc:  # a bug must not stop the node: the series stays in the inbox
                log.error("series %s: %s: %s", due[0][1], type(exc).__name__, exc)
                with self._lock:
                    self._last.pop(due[0], None)
                with contextlib.suppress(Exception):
                    self._attempt_failed(*due[0], f"{type(exc).__name__}: {exc}")

    def process(self, study: str, series: str) -> bool:
        """Detect the series ``OUT/.inbox/<study>/<series>/`` now (and send its SR); returns whether it is finished.
        A failure is one row in ``OUT/errors.csv``; the series then stays in the inbox, or after ``max_attempts``
        failures moves to ``OUT/.inbox-failed/``."""
        folder = self.inbox / study / series
        started = time.monotonic()
        n = len(_instances(folder))
        log.info("series %s: received %d instances; detecting", series, n)
        ref = ScanRef(series, folder)
        records = self.models.record()
        summary = run_batch(
            [ref],
            functools.partial(self._detect, study=study),
            errors_csv=self.out / "errors.csv",
            desc="detect",
            is_done=lambda r: is_finished(self.out, r.id, records),
        )
        write_batch_tables(self.out)
        if summary.skipped:
            log.info("series %s: already done, not detected again", series)
        with self._lock:
            more = self._last.get((study, series), 0) > started
            if not more:
                self._last.pop((study, series), None)
        if more:  # instances arrived while it was detected: do it again with all of them
            log.info("series %s: more instances arrived while detecting; detecting again once quiet", series)
            (self.out / "scans" / f"{scan_stem(series)}.json").unlink(missing_ok=True)
            return False
        if summary.failed:
            self._attempt_failed(study, series, summary.failed.get(series, "failed"))
            return False
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):  # when it was the study's last series
            (self.inbox / study).rmdir()
        return True

    def _attempt_failed(self, study: str, series: str, error: str) -> bool:
        """Count a failed attempt at a series; after ``max_attempts`` move it to ``OUT/.inbox-failed/`` and make its
        ``errors.csv`` row say where it is and how to retry. Returns whether it was moved."""
        folder = self.inbox / study / series
        state = folder / ATTEMPTS
        try:
            attempts = int(state.read_text().strip()) + 1
        except (OSError, ValueError):
            attempts = 1
        if attempts < self.max_attempts:
            write_text_atomic(state, f"{attempts}\n")
            log.warning(
                "series %s: attempt %d of %d failed; tried again when the node restarts",
                series,
                attempts,
                self.max_attempts,
            )
            return False
        dest = self.out / FAILED / study / series
        dest.mkdir(parents=True, exist_ok=True)
        for path in folder.iterdir():  # into a folder a former failure of the same series left: merged
            if path.name != ATTEMPTS and path.is_file():
                os.replace(path, dest / path.name)
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):  # when it was the study's last series
            (self.inbox / study).rmdir()
        where = (
            f"gave up after {attempts} attempt{'s' if attempts > 1 else ''}: the series is in {dest}; "
            f"to retry, move that folder back into {self.inbox / study} and restart the node"
        )
        errors = read_errors(self.out / "errors.csv")
        errors[series] = (str(dest), f"{error} ({where})")
        write_errors(self.out / "errors.csv", errors)
        log.error("series %s: %s", series, where)
        return True

    def _detect(self, ref: ScanRef, *, study: str):
        """The batch worker: detect one series, write its files and the SR, send the SR."""
        t0 = time.perf_counter()
        table = detect_one(
            ref, out=self.out, models=self.models, series_uid=ref.id, pictures=self.pictures, dicom_sr=True
        )
        log.info("series %s: detection done in %.1f s, %d candidates", ref.id, time.perf_counter() - t0, len(table))
        if self.send_to is None:
            return table
        send = functools.partial(send_file, peer=self.send_to, calling_ae=self.ae_title)
        sr = deliver_sr(self.out, ref.id, "series", send)  # not finished until sent: the next start does it again
        log.info("series %s: SR %s sent to %s", ref.id, sr.name, self.send_to)
        return table


def _instances(folder: Path) -> list[Path]:
    """The received instances in a series' inbox folder (not the temporary or state files, whose names start with
    a dot)."""
    return [p for p in folder.glob("*.dcm") if not p.name.startswith(".")]


def serve(out: str | Path, **options) -> int:
    """Run a :class:`DicomNode` (``options``: its keyword arguments) until SIGINT or SIGTERM; returns 0 after a clean
    stop. Call it from the main thread (it installs the signal handlers; a second signal stops at once)."""
    stopped = threading.Event()
    received: list[str] = []

    def on_signal(signum, frame) -> None:
        received.append(signal.Signals(signum).name)
        stopped.set()
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second signal: no waiting for the series being detected
            signal.signal(sig, signal.SIG_DFL if sig == signal.SIGTERM else signal.default_int_handler)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        node = DicomNode(out, **options)
        with node:
            while not stopped.wait(1.0):
                pass
            log.info("%s received; stopping (finishing the series being detected)", received[0])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
