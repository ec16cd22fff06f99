"""``lungcad detect`` over many scans: read each, run :func:`lungcad.pipeline.run.detect_scan`, write its files
(:mod:`lungcad.pipeline.writers`); resumable (a finished scan is skipped), loss-free (a failing scan goes to
``OUT/errors.csv`` and the batch goes on; a rerun retries it)."""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path

from lungcad.batch import BatchSummary, output_folder, run_batch
from lungcad.io import ScanRef, find_scans, load_scan
from lungcad.pipeline.models import ModelSet, load_models, loading_seconds, model_set, preload
from lungcad.pipeline.run import detect_scan, preprocess_for
from lungcad.pipeline.writers import is_finished, write_batch_tables, write_scan_result

log = logging.getLogger(__name__)


class StageLog(dict):
    """The ``timings`` dict of one scan's run that logs each step as its time is stored (the pipeline stores a
    step's seconds as it ends): ``1.2.3: preprocess done in 2.1 s; U-Net and merge ...``."""

    #: timing key -> (what ended, what comes next given the models' last stage)
    STEPS = {
        "read_s": "read",
        "preprocess_s": "preprocess (resample, lung mask)",
        "unet_and_merge_s": "U-Net and merge",
        "fpr_s": "false-positive reduction",
        "risk_s": "cancer risk",
        "pictures_s": "pictures",
    }

    def __init__(self, scan_id: str, models: ModelSet) -> None:
        super().__init__()
        self.scan_id = scan_id
        last = {"candidates": "unet_and_merge_s", "fpr": "fpr_s", "risk": "risk_s"}[models.stage]
        order = list(self.STEPS)
        self.next = {k: self.STEPS[order[i + 1]] for i, k in enumerate(order[: order.index(last)])}
        self.next[last] = "writing the results"

    def __setitem__(self, key: str, value: float) -> None:
        super().__setitem__(key, value)
        if key in self.STEPS:
            then = self.next.get(key)
            log.info("%s: %s done in %.1f s%s", self.scan_id, self.STEPS[key], value, f"; {then} ..." if then else "")


#: When (``time.perf_counter``) this process began reading its first scan of the current :func:`detect_scans` call.
_FIRST_READ: list[float | None] = [None]


def precision_text(precision: dict[str, str]) -> str:
    """``{"unet": "float32", "fpr": "bfloat16", "risk": "bfloat16"}`` -> ``"U-Net float32, FPR and risk
    bfloat16"`` (the summary line's words)."""
    names = {"unet": "U-Net", "fpr": "FPR", "risk": "risk"}
    groups: dict[str, list[str]] = {}
    for role, dtype in precision.items():
        groups.setdefault(dtype, []).append(names[role])
    return ", ".join(f"{' and '.join(roles)} {dtype}" for dtype, roles in groups.items())


def detect_one(
    ref: ScanRef,
    *,
    out: Path,
    models: ModelSet,
    series_uid: str | None = None,
    pictures: bool = True,
    dicom_sr: bool = False,
    allow_external_data: bool = False,
    stages: bool = False,
):
    """Read one scan, detect, write its files (the batch worker); returns the candidate table. ``stages``: log
    each step as it ends (:class:`StageLog`; a single-scan run shows this instead of a bar).

    Once the first scan of a process is read, a background thread loads the models (TensorFlow imported there:
    :func:`lungcad.pipeline.models.preload`) while this one preprocesses the scan; the U-Net waits for it."""
    t0 = time.perf_counter()
    if _FIRST_READ[0] is None:
        _FIRST_READ[0] = t0
    timings: dict[str, float] = StageLog(ref.id, models) if stages else {}
    if stages:
        log.info("%s: reading %s", ref.id, ref.path)
    scan = load_scan(ref.path, series_uid=series_uid, allow_external_data=allow_external_data)
    timings["read_s"] = time.perf_counter() - t0
    loading = preload(models)  # not before the read: a file that cannot be read fails without TensorFlow
    pre = preprocess_for(scan, models, timings)
    if stages and loading is not None:  # the first scan of a process loads the models (TensorFlow): say so
        waited = load_models(models)
        if loading.seconds:
            log.info(
                "%s: models loaded in %.1f s beside the preprocess, %.1f s waited (TensorFlow imported, weights read)",
                ref.id,
                loading.seconds,
                waited,
            )
    result = detect_scan(scan, models, timings, pre)
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
    precision: str = "auto",
) -> BatchSummary:
    """Run detection over every scan in ``inputs`` into ``out`` up to ``stage`` (one of
    :data:`lungcad.pipeline.models.STAGES`); returns the batch summary. Models default to the bundled ones, ``stage``
    to :func:`lungcad.pipeline.models.default_stage`; ``blobs`` (a config name in ``configs/`` or a YAML path) adds
    blob-filter candidates; ``allow_external_data``: see :func:`lungcad.io.load_scan`; ``precision``: "auto",
    "float32" or "bfloat16" (:mod:`lungcad.pipeline.precision`; each scan's JSON records what ran, the summary's
    ``precision`` what this machine resolves it to).

    The summary's ``startup_s`` (single-process runs) is the time from this call to the first scan's read plus the
    time the scans waited for the models (importing TensorFlow, reading the weights), which load in a background
    thread beside the first scan's preprocess (:func:`detect_one`).

    ``out`` is checked to be writable and locked for the run before any scan is read
    (:func:`lungcad.batch.output_folder`: OutputError, OutputBusyError).
    """
    t0, loaded = time.perf_counter(), loading_seconds()
    _FIRST_READ[0] = None
    with output_folder(out, "lungcad detect") as out:
        refs = find_scans(inputs)  # a missing input is reported before the models' checks import TensorFlow
        models = model_set(stage, model_dir, fpr_model_dir, risk_model_dir, blobs, precision)
        work = functools.partial(
            detect_one,
            out=out,
            models=models,
            series_uid=series_uid,
            pictures=pictures,
            dicom_sr=dicom_sr,
            allow_external_data=allow_external_data,
            stages=len(refs) == 1,
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
    summary.precision = precision_text(models.precisions())
    if _FIRST_READ[0] is not None:  # a scan was read in this process (not by workers): start-up is known
        summary.startup_s = _FIRST_READ[0] - t0 + loading_seconds() - loaded
    return summary
