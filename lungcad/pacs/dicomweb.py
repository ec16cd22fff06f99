"""``lungcad detect --dicomweb URL --study UID``: pull a study's CT series with WADO-RS into a scratch folder, run
the folder pipeline on it, and optionally store the DICOM SR back with STOW-RS.

Outputs, resume and ``errors.csv`` are those of a folder run (:func:`lungcad.pipeline.batch.detect_scans`), keyed by
the StudyInstanceUID: the study's instances go to ``OUT/.scratch/<StudyInstanceUID>/`` (written one instance at a
time as the multipart answer streams in, removed after), and the folder reader chooses the series there with its
usual rules. A study that fails (unknown UID, no CT, an HTTP error) is one row in ``errors.csv`` and the rest go on.

Credentials come only from the environment: ``LUNGCAD_DICOMWEB_TOKEN`` (HTTP bearer token) or
``LUNGCAD_DICOMWEB_TOKEN_FILE`` (a file holding it), or ``LUNGCAD_DICOMWEB_USER`` + ``LUNGCAD_DICOMWEB_PASSWORD``
(HTTP basic); they are never taken from the command line
and never written to logs or outputs. TLS certificates are verified (requests' default).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from lungcad.batch import BatchSummary, output_folder, run_batch
from lungcad.errors import LungcadError, PacsError
from lungcad.io import ScanRef, load_scan
from lungcad.pipeline.models import ModelSet, model_set
from lungcad.pipeline.run import detect_scan
from lungcad.pipeline.writers import is_finished, scan_stem, write_batch_tables, write_scan_result

log = logging.getLogger(__name__)

TOKEN_ENV = "LUNGCAD_DICOMWEB_TOKEN"
TOKEN_FILE_ENV = "LUNGCAD_DICOMWEB_TOKEN_FILE"
USER_ENV = "LUNGCAD_DICOMWEB_USER"
PASSWORD_ENV = "LUNGCAD_DICOMWEB_PASSWORD"

#: The scratch folder inside the output folder where a study's instances are written while it is processed.
SCRATCH = ".scratch"
#: (connect, read) timeouts in seconds of each HTTP request.
TIMEOUT_S = (10, 120)
#: Retries (with exponential backoff) of a request that fails with a reset or a 502/503/504.
RETRIES = 3
#: The most studies one QIDO-RS study search (``--query``) may find; more is an error asking for a narrower query.
MAX_STUDIES = 10_000

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
MODALITY, STUDY_UID, SERIES_UID = "00080060", "0020000D", "0020000E"


def shown_url(url: str) -> str:
    """``url`` without any ``user:password@`` part (what errors and outputs name)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")))


def check_uid(uid: str, what: str) -> str:
    """``uid`` if it is a DICOM UID (digits and dots, <= 64 characters; also safe as a folder name)."""
    if not (len(uid) <= 64 and _UID.match(uid)):
        raise PacsError(
            f"{what} {uid!r} is not a DICOM UID",
            expected="digits and dots, at most 64 characters",
            fix=f"give the {what} as shown by the PACS",
        )
    return uid


def deliver_sr(out: Path, uid: str, what: str, send: Callable[[Path], None]) -> Path:
    """``send`` the SR written for the scan ``uid`` (a ``what``: "study" or "series") and return its path. A scan is
    not finished until its SR is delivered: on any failure (none written, the send failed) its JSON is removed, so
    a rerun or a restart does it again, and the error is raised. Shared by ``--store-results`` (STOW-RS) and
    ``lungcad serve --send-to`` (C-STORE)."""
    sr = out / "sr" / f"{scan_stem(uid)}.dcm"
    try:
        if not sr.exists():
            raise PacsError(f"no SR was written for {what} {uid}", path=sr, fix=f"see the {what}'s JSON")
        send(sr)
    except LungcadError:
        (out / "scans" / f"{scan_stem(uid)}.json").unlink(missing_ok=True)
        raise
    return sr


def client(url: str):
    """A ``dicomweb_client.DICOMwebClient`` for ``url`` with the credentials of the environment, timeouts and
    retries with backoff on resets and 502/503/504."""
    try:
        import requests
        from dicomweb_client import DICOMwebClient
        from requests.adapters import HTTPAdapter
        from urllib3.util.retry import Retry
    except ImportError as exc:
        raise PacsError(f"--dicomweb needs the optional package {exc.name}", fix="pip install 'lungcad[pacs]'") from exc
    pool_log = logging.getLogger("urllib3.connectionpool")
    if pool_log.level == logging.NOTSET:  # its retry warnings (a traceback-like line each) would bury the error
        pool_log.setLevel(logging.ERROR)
    session = requests.Session()
    retry = Retry(
        total=RETRIES,
        backoff_factor=0.5,
        status_forcelist=(502, 503, 504),
        allowed_methods=("GET", "POST"),
        raise_on_status=False,
    )
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    headers = {}
    token, user = os.environ.get(TOKEN_ENV), os.environ.get(USER_ENV)
    if not token and os.environ.get(TOKEN_FILE_ENV):
        token_file = Path(os.environ[TOKEN_FILE_ENV])
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise PacsError(
                f"cannot read the token file named by {TOKEN_FILE_ENV} ({type(exc).__name__})",
                path=token_file,
                fix=f"point {TOKEN_FILE_ENV} at a readable file holding the token",
            ) from exc
    if token:
        headers["Authorization"] = f"Bearer {token}"
    elif user:
        session.auth = (user, os.environ.get(PASSWORD_ENV, ""))
    web = DICOMwebClient(url, session=session, headers=headers or None, timeout=TIMEOUT_S)
    web.set_http_retry_params(retry=False)  # the session's Retry does it, without logging tracebacks
    return web


def _network_error(exc: Exception, url: str, doing: str) -> PacsError:
    """A request's failure as one line naming the server (never its credentials)."""
    import requests

    where = shown_url(url)
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        status = exc.response.status_code
        fix = {
            401: f"set {TOKEN_ENV} (or {TOKEN_FILE_ENV}), or {USER_ENV} and {PASSWORD_ENV}",
            403: "ask the PACS administrator for access",
        }.get(status, "check the URL and the server's log")
        return PacsError(f"{doing} failed: HTTP {status} {exc.response.reason}", path=where, fix=fix)
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return PacsError(
            f"{doing} failed: the DICOMweb server cannot be reached ({type(exc).__name__})",
            path=where,
            fix="check the URL and that the server is running",
        )
    return PacsError(f"{doing} failed: {type(exc).__name__}: {' '.join(str(exc).split())}", path=where)


def check_server(url: str) -> None:
    """One QIDO-RS request (a study search with limit 1), so that an unreachable server is one clear line before any
    model is loaded."""
    try:
        client(url).search_for_studies(limit=1)
    except LungcadError:
        raise
    except Exception as exc:
        raise _network_error(exc, url, "QIDO-RS study search") from exc


def find_studies(url: str, query: dict[str, str], web=None) -> list[str]:
    """The StudyInstanceUIDs that a QIDO-RS study search with ``query`` (attribute keyword or tag -> value, e.g.
    ``{"ModalitiesInStudy": "CT", "StudyDate": "20200101-20201231"}``) finds, all pages, each once.

    Each request sends ``offset`` (the UIDs found so far) with ``limit`` (what is left of :data:`MAX_STUDIES`, plus
    one): servers cap a page at their own size, Orthanc 1.10 ignores ``offset`` without ``limit`` (the same page
    again and again), and with ``ModalitiesInStudy`` it answers results[offset:limit], which a limit counted from 0
    keeps right. The search stops on an empty page, or (with a warning) on a page that brings no new UID.

    Raises:
        PacsError: the search fails, or finds more than :data:`MAX_STUDIES` studies.
    """
    web = client(url) if web is None else web
    found: dict[str, None] = {}
    while True:
        try:
            page = web.search_for_studies(
                search_filters=dict(query), offset=len(found), limit=MAX_STUDIES + 1 - len(found)
            )
        except Exception as exc:
            raise _network_error(exc, url, f"QIDO-RS study search {query}") from exc
        uids = [uid for uid in (_value(r, STUDY_UID) for r in page or []) if uid]
        new = [uid for uid in dict.fromkeys(uids) if uid not in found]
        if uids and not new:
            log.warning(
                "QIDO-RS study search %s at %s: the page at offset %d brings no new study; stopping with %d",
                query,
                shown_url(url),
                len(found),
                len(found),
            )
        found.update(dict.fromkeys(new))
        if len(found) > MAX_STUDIES:
            raise PacsError(
                f"QIDO-RS study search {query} finds more than {MAX_STUDIES} studies",
                path=shown_url(url),
                fix="narrow the query (e.g. --query StudyDate=20200101-20200131) or list the studies in --study-list",
            )
        if not new:
            return list(found)


def read_study_list(path: str | Path) -> list[str]:
    """The StudyInstanceUIDs in ``path``: a CSV with a ``StudyInstanceUID`` column, or one UID a line."""
    import csv

    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise PacsError(f"cannot read the study list ({type(exc).__name__})", path=path) from exc
    lines = [line for line in lines if line.strip()]
    if lines and "StudyInstanceUID" in lines[0].split(","):
        return [row["StudyInstanceUID"].strip() for row in csv.DictReader(lines) if row["StudyInstanceUID"].strip()]
    return [line.strip() for line in lines]


def _value(record: dict, tag: str) -> str | None:
    values = record.get(tag, {}).get("Value") or [None]
    return values[0]


def ct_series(web, url: str, study: str, series_uid: str | None = None) -> list[str]:
    """The SeriesInstanceUIDs of the CT series of ``study`` (QIDO-RS); only ``series_uid`` when given."""
    try:
        found = web.search_for_series(study_instance_uid=study)
    except Exception as exc:
        import requests

        if isinstance(exc, requests.HTTPError) and exc.response is not None and exc.response.status_code == 404:
            found = []
        else:
            raise _network_error(exc, url, f"QIDO-RS series search of study {study}") from exc
    if not found:
        raise PacsError(
            f"study {study} is not on this server (QIDO-RS found no series)",
            path=shown_url(url),
            fix="check the StudyInstanceUID",
        )
    ct = [_value(r, SERIES_UID) for r in found if _value(r, MODALITY) == "CT"]
    if series_uid is not None:
        if series_uid not in [_value(r, SERIES_UID) for r in found]:
            raise PacsError(f"study {study} has no series {series_uid}", path=shown_url(url), fix="check --series")
        ct = [series_uid]
    if not ct:
        modalities = sorted({str(_value(r, MODALITY)) for r in found})
        raise PacsError(
            f"study {study} has no CT series (modalities: {', '.join(modalities)})",
            path=shown_url(url),
            fix="give a CT study",
        )
    return ct


def retrieve(web, url: str, study: str, series: list[str], folder: Path) -> int:
    """Write every instance of ``series`` (WADO-RS, one instance at a time as the answer streams in) to ``folder``
    as ``<SOPInstanceUID>.dcm``; returns how many."""
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    for uid in series:
        try:
            for ds in web.iter_series(study_instance_uid=study, series_instance_uid=uid):
                sop = str(getattr(ds, "SOPInstanceUID", "") or f"instance{n}")
                name = sop if _UID.match(sop) else f"instance{n}"
                ds.save_as(folder / f"{name}.dcm", enforce_file_format=True)
                n += 1
        except LungcadError:
            raise
        except Exception as exc:
            raise _network_error(exc, url, f"WADO-RS retrieve of series {uid}") from exc
    return n


def store_sr(web, url: str, path: Path) -> None:
    """STOW-RS the SR file at ``path``."""
    import pydicom

    try:
        web.store_instances([pydicom.dcmread(path)])
    except Exception as exc:
        raise _network_error(exc, url, f"STOW-RS of {path.name}") from exc


def detect_study(
    ref: ScanRef,
    *,
    url: str,
    out: Path,
    models: ModelSet,
    series_uid: str | None = None,
    pictures: bool = True,
    store_results: bool = False,
    dicom_sr: bool = False,
) -> object:
    """The batch worker for one study (``ref.id`` is its StudyInstanceUID, ``ref.path`` its scratch folder):
    retrieve, detect, write its files, store the SR; the scratch folder is removed after, whatever happens."""
    study = ref.id
    web = client(url)
    t0 = time.perf_counter()
    try:
        series = ct_series(web, url, study, series_uid)
        n = retrieve(web, url, study, series, ref.path)
        log.info("%s: retrieved %d instances of %d CT series from %s", study, n, len(series), shown_url(url))
        timings: dict[str, float] = {}
        scan = load_scan(ref.path, series_uid=series_uid)
        timings["read_s"] = time.perf_counter() - t0
        result = detect_scan(scan, models, timings)
        write_scan_result(
            result,
            out,
            path=Path(f"{shown_url(url).rstrip('/')}/studies/{study}"),
            models=models.record(),
            pictures=pictures,
            dicom_sr=dicom_sr or store_results,
            started=t0,
        )
    finally:
        shutil.rmtree(ref.path, ignore_errors=True)
    if store_results:
        sr = deliver_sr(out, study, "study", functools.partial(store_sr, web, url))
        log.info("%s: stored %s with STOW-RS", study, sr.name)
    return result.candidates


def detect_studies(
    url: str,
    studies: list[str],
    out: str | Path,
    *,
    query: dict[str, str] | None = None,
    series_uid: str | None = None,
    store_results: bool = False,
    stage: str | None = None,
    model_dir: str | Path | None = None,
    fpr_model_dir: str | Path | None = None,
    risk_model_dir: str | Path | None = None,
    pictures: bool = True,
    dicom_sr: bool = False,
    blobs: str | Path | None = None,
) -> BatchSummary:
    """Run detection over the studies ``studies`` (StudyInstanceUIDs) of the DICOMweb server at ``url`` into
    ``out``, as :func:`lungcad.pipeline.detect_scans` does over folders, and over those a QIDO-RS study search with
    ``query`` finds (:func:`find_studies`); ``store_results``: STOW-RS each study's
    DICOM SR back (implies ``dicom_sr``).

    Raises:
        PacsError: the server cannot be reached (before any study is read), or a UID is not a DICOM UID.
    """
    studies = [check_uid(s, "StudyInstanceUID") for s in dict.fromkeys(studies)]
    if series_uid is not None:
        check_uid(series_uid, "SeriesInstanceUID")
    with output_folder(out, "lungcad detect --dicomweb") as out:
        check_server(url)
        if query:
            found = find_studies(url, query)
            log.info("QIDO-RS study search %s: %d studies", query, len(found))
            studies = list(dict.fromkeys([*studies, *(check_uid(s, "StudyInstanceUID") for s in found)]))
        models = model_set(stage, model_dir, fpr_model_dir, risk_model_dir, blobs)
        scratch = out / SCRATCH
        refs = [ScanRef(s, scratch / s) for s in studies]
        work = functools.partial(
            detect_study,
            url=url,
            out=out,
            models=models,
            series_uid=series_uid,
            pictures=pictures,
            store_results=store_results,
            dicom_sr=dicom_sr,
        )
        try:
            summary = run_batch(
                refs,
                work,
                errors_csv=out / "errors.csv",
                desc="detect",
                is_done=lambda ref: is_finished(out, ref.id, models.record()),
            )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        write_batch_tables(out)
    return summary
