"""``lungcad detect``'s files: a scan's result (CSV, JSON, pictures, DICOM SR) and the batch's tables.

Per scan, written atomically as it finishes (the JSON last, so it marks a finished scan); ``<id>`` in a file name
is :func:`scan_stem` of the id (the id itself unless it is too long or not a plain file name), the tables and JSON
keep the full id::

    OUT/scans/<id>.csv      the scan's candidates (LUNA16 submission columns first)
    OUT/scans/<id>.json     geometry, timings, models, P(cancer), candidates with world (mm) and voxel coordinates
                            in the input scan's grid (+ slice index and SOPInstanceUID for DICOM)
    OUT/pictures/<id>/      overview, finding PNGs, slice viewer stacks and scan.html (:mod:`lungcad.visualize`)
    OUT/sr/<id>.dcm         the DICOM SR of the reported findings (``--dicom-sr``, DICOM input)

After a batch: ``OUT/candidates.csv`` (union of the finished scans), ``OUT/patients.csv`` (``id,cancer``, the DSB
2017 submission format, when the risk stage ran), ``OUT/index.html``.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import pandas as pd

from lungcad import __version__
from lungcad.fileio import printable, safe_stem, write_json_atomic, write_text_atomic
from lungcad.pipeline.run import Detection
from lungcad.schema import DICOM_UIDS, SUBMISSION_COLUMNS

#: Columns read back as text (a UID such as "1.20" is not the number 1.2).
UID_COLUMNS = ["seriesuid", "sop_instance_uid", *DICOM_UIDS]


@functools.lru_cache(maxsize=1)
def picture_config():
    """``configs/pictures.yaml``: which findings a scan reports (pictures, SR), read once per process."""
    from lungcad.config import load_config
    from lungcad.visualize import PictureConfig

    return load_config(PictureConfig, "pictures")


def scan_stem(scan_id: str) -> str:
    """The name of a scan's files (``scans/<stem>.csv|.json``, ``pictures/<stem>/``, ``sr/<stem>.dcm``):
    :func:`lungcad.fileio.safe_stem`."""
    return safe_stem(scan_id)


def draw_pictures(result: Detection, shown: pd.DataFrame, out: Path) -> dict:
    """The scan's report (overview, finding PNGs and viewer stacks, ``scan.html``) of the reported findings ``shown``
    in ``OUT/pictures/<id>/``."""
    from lungcad.visualize import scan_pictures

    folder = out / "pictures" / scan_stem(result.scan.id)
    return scan_pictures(result.scan, result.preprocessed, shown, folder, picture_config(), result.cancer_probability)


def write_report(result: Detection, shown: pd.DataFrame, out: Path) -> str:
    """``OUT/sr/<id>.dcm``: the DICOM SR of the reported findings ``shown`` (DICOM input only; otherwise the
    reason)."""
    from lungcad.sr import write_sr

    scan = result.scan
    if not scan.metadata.get("slice_files"):
        return "not written: the input is not a DICOM series"
    folder = out / "sr"
    path = write_sr(scan, shown, folder / f"{scan_stem(scan.id)}.dcm", result.cancer_probability, folder=folder)
    return str(path.relative_to(out))


def write_scan_result(
    result: Detection,
    out: Path,
    *,
    path: Path,
    models: dict[str, str],
    pictures: bool = True,
    dicom_sr: bool = False,
    started: float | None = None,
) -> None:
    """Write one scan's files (pictures and SR first, the CSV, the JSON last); ``path`` is the input's, ``models``
    the :meth:`lungcad.pipeline.models.ModelSet.record`, ``started`` the ``perf_counter`` when its reading began (for
    ``total_s``)."""
    from lungcad.visualize import reported_findings

    scan, table, timings = result.scan, result.candidates, result.timings_s
    shown = reported_findings(table, picture_config()) if pictures or dicom_sr else None
    drawn = report = None
    if pictures:
        t = time.perf_counter()
        drawn = draw_pictures(result, shown, out)
        timings["pictures_s"] = time.perf_counter() - t
    if dicom_sr:
        report = write_report(result, shown, out)
    if started is not None:
        timings["total_s"] = time.perf_counter() - started
    scans, stem = out / "scans", scan_stem(scan.id)
    write_text_atomic(scans / f"{stem}.csv", table.to_csv(index=False))
    cancer = result.cancer_probability
    record = {
        "id": scan.id,
        "path": printable(str(path)),
        "geometry": scan.summary(),
        "timings_s": timings,
        "model": models,
        "precision": result.precision,
        **({"cancer_probability": cancer} if cancer is not None else {}),
        **({"pictures": drawn} if drawn is not None else {}),
        **({"dicom_sr": report} if report is not None else {}),
        "lungcad_version": __version__,
        "candidates": table.to_dict(orient="records"),
    }
    write_json_atomic(scans / f"{stem}.json", record)


def is_finished(out: Path, scan_id: str, models: dict[str, str]) -> bool:
    """A scan counts as finished when its JSON exists and was made with the same ``models``; otherwise a rerun
    (e.g. with ``--stage fpr`` after ``--stage candidates``) detects it again."""
    path = out / "scans" / f"{scan_stem(scan_id)}.json"
    if not path.exists():
        return False
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return record.get("id") == scan_id and record.get("model") == models
    except (OSError, ValueError):
        return False


def _finished_files(out: Path, suffix: str) -> list[Path]:
    """``OUT/scans/*<suffix>``, without the temporary files (``.tmp-*``) a killed run may leave."""
    return sorted(p for p in (out / "scans").glob(f"*{suffix}") if not p.name.startswith("."))


def collect_candidates(out: Path) -> pd.DataFrame:
    """Union of every finished scan's candidates; rewrites ``OUT/candidates.csv`` atomically. The series' UIDs
    (:data:`~lungcad.schema.DICOM_UIDS`) stay the last columns when DICOM and other scans are mixed."""
    frames = [
        pd.read_csv(p, dtype=dict.fromkeys(UID_COLUMNS, str), encoding="utf-8", encoding_errors="backslashreplace")
        for p in _finished_files(out, ".csv")
        if p.with_suffix(".json").exists()
    ]
    frames = [f for f in frames if not f.empty]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SUBMISSION_COLUMNS)
    table = table[[c for c in table.columns if c not in DICOM_UIDS] + [c for c in DICOM_UIDS if c in table.columns]]
    write_text_atomic(out / "candidates.csv", table.to_csv(index=False))
    return table


def read_records(out: Path) -> list[dict]:
    """Every finished scan's JSON record in ``OUT/scans/``, read once for the batch's summaries."""
    return [json.loads(path.read_text(encoding="utf-8")) for path in _finished_files(out, ".json")]


def collect_patients(out: Path, records: list[dict]) -> pd.DataFrame:
    """``id,cancer`` (the DSB 2017 submission format) of the ``records`` with a risk; rewrites
    ``OUT/patients.csv`` atomically (only when some scan has one)."""
    rows = [(r["id"], r["cancer_probability"]) for r in records if "cancer_probability" in r]
    table = pd.DataFrame(rows, columns=["id", "cancer"])
    if rows:
        write_text_atomic(out / "patients.csv", table.to_csv(index=False))
    return table


def write_batch_tables(out: Path) -> None:
    """After a batch: ``candidates.csv``, ``patients.csv`` and ``index.html`` from the finished scans."""
    from lungcad.visualize import write_index

    collect_candidates(out)
    records = read_records(out)
    collect_patients(out, records)
    write_index(out, records)
