"""``lungcad detect`` over many scans: read each, run :func:`lungcad.pipeline.run.detect_scan`, write its files
(:mod:`lungcad.pipeline.writers`); resumable (a finished scan is skipped), loss-free (a failing scan goes to
``OUT/errors.csv`` and the batch goes on; a rerun retries it)."""

from __future__ import annotations

import functools
import time
from pathlib import Path

from lungcad.batch import BatchSummary, output_folder, run_batch
from lungcad.io import ScanRef, find_scans, load_scan
from lungcad.pipeline.models import ModelSet, model_set
from lungcad.pipeline.run import detect_scan
from lungcad.pipeline.writers import is_finished, write_batch_tables, write_scan_result


def detect_one(
    ref: ScanRef,
    *,
    out: Path,
    models: ModelSet,
    series_uid: str | None = None,
    pictures: bool = True,
    dicom_sr: bool = False,
    allow_external_data: bool = False,
):
    """Read one scan, detect, write its files (the batch worker); returns the candidate table."""
    t0 = time.perf_counter()
    scan = load_scan(ref.path, series_uid=series_uid, allow_external_data=allow_external_data)
    timings: dict[str, float] = {"read_s": time.perf_counter() - t0}
    result = detect_scan(scan, models, timings)
    write_scan_result(
        result, out, path=ref.path, models=models.record(), pictures=pictures, dicom_sr=dicom_sr, started=t0
    )
    return result.candidates


def detect_scans(
    inputs: list[str | Path],
    out: str | Path,
    *,
    stage: str | None = None,
    model_dir: str | Path | None = None,
    fpr_model_dir: str | Path | None = None,
    risk_model_dir: str | Path | None = None,
    workers: int = 1,
    series_uid: str | None = None,
    pictures: bool = True,
    dicom_sr: bool = False,
    scheduler: str | None = None,
    blobs: str | Path | None = None,
    allow_external_data: bool = False,
) -> BatchSummary:
    """Run detection over every scan in ``inputs`` into ``out`` up to ``stage`` (one of
    :data:`lungcad.pipeline.models.STAGES`); returns the batch summary. Models default to the bundled ones, ``stage``
    to :func:`lungcad.pipeline.models.default_stage`; ``blobs`` (a config name in ``configs/`` or a YAML path) adds
    blob-filter candidates; ``allow_external_data``: see :func:`lungcad.io.load_scan`.

    ``out`` is checked to be writable and locked for the run before any scan is read
    (:func:`lungcad.batch.output_folder`: OutputError, OutputBusyError).
    """
    with output_folder(out, "lungcad detect") as out:
        models = model_set(stage, model_dir, fpr_model_dir, risk_model_dir, blobs)
        refs = find_scans(inputs)
        work = functools.partial(
            detect_one,
            out=out,
            models=models,
            series_uid=series_uid,
            pictures=pictures,
            dicom_sr=dicom_sr,
            allow_external_data=allow_external_data,
        )
        summary = run_batch(
            refs,
            work,
            errors_csv=out / "errors.csv",
            workers=workers,
            scheduler=scheduler,
            desc="detect",
            is_done=lambda ref: is_finished(out, ref.id, models.record()),
        )
        write_batch_tables(out)
    return summary
