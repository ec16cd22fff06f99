"""``lungcad detect``: run the detection pipeline over scans, resumable and loss-free.

Per scan, written atomically as it finishes (the JSON last, so it marks a finished scan)::

    OUT/scans/<id>.csv    the scan's candidates (LUNA16 submission columns first)
    OUT/scans/<id>.json   geometry, loader warnings, timings, models, candidates with world (mm) and voxel
                          coordinates in the input scan's grid (+ slice index and SOPInstanceUID for DICOM)

and after every run ``OUT/candidates.csv`` is rebuilt as the union of finished scans, ``OUT/errors.csv``
lists failed scans (``id,path,error``). A rerun skips finished scans and retries failed ones.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lungcad import __version__
from lungcad.batch import BatchSummary, run_batch
from lungcad.errors import ConfigError
from lungcad.fileio import write_text_atomic
from lungcad.io import ScanRef, find_scans, load_scan

log = logging.getLogger(__name__)

#: Where the bundled default models live (trained by scripts/train_default_models.py).
BUNDLED_MODELS = Path(__file__).resolve().parent / "models"
#: Leading columns of candidates.csv (the LUNA16 submission format), then the extras.
CANDIDATE_COLUMNS = ["seriesuid", "coordX", "coordY", "coordZ", "probability", "diameter_mm"]


def default_model_dir(stage: str) -> Path:
    """The bundled model directory of ``stage`` ("unet", ...); a clear error when it is not there."""
    path = BUNDLED_MODELS / stage
    if not path.is_dir():
        raise ConfigError(
            f"no bundled {stage} model in this installation",
            path=path,
            fix=f"train one with 'lungcad train {stage}' and pass --model DIR",
        )
    return path


#: Pipeline stages ``detect`` can stop after, in order.
STAGES = ("candidates", "fpr", "risk")


@functools.lru_cache(maxsize=4)
def _detector(model_dir: str, blobs: str | None = None):
    """The U-Net detector of ``model_dir``; with ``blobs`` (a BlobConfig YAML) it also adds blob-filter
    candidates (:mod:`lungcad.candidates.blobs`), whatever its ``detector.yaml`` says."""
    from dataclasses import replace

    from lungcad.candidates.blobs import BlobConfig
    from lungcad.candidates.inference import CandidateDetector
    from lungcad.config import load_config

    detector = CandidateDetector.load(model_dir)
    if blobs is None:
        return detector
    config = replace(detector.config, blobs=load_config(BlobConfig, blobs))
    return CandidateDetector(detector.model, config, detector.source)


@functools.lru_cache(maxsize=4)
def _scorer(model_dir: str):
    from lungcad.fpr.train import FprScorer

    return FprScorer.load(model_dir)


def score_candidates(scan, table: pd.DataFrame, fpr_dir: str, timings: dict[str, float]) -> pd.DataFrame:
    """False-positive reduction: the WideResNet's nodule probability goes to ``fpr_probability`` and, fused with the
    candidate's mean U-Net probability by the model's ``unet_weight`` (:mod:`lungcad.fpr.fusion`; 0: the FPR's
    alone), to ``probability``; the U-Net's score moves to ``unet_probability``; rows sorted by the new
    probability (highest first)."""
    from lungcad.fpr.fusion import UNET_SCORE_COLUMN

    t = time.perf_counter()
    scorer = _scorer(fpr_dir)
    scores = scorer.score(scan, table[["coordX", "coordY", "coordZ"]].to_numpy(float)).astype(float)
    unet = table[UNET_SCORE_COLUMN].to_numpy(float) if UNET_SCORE_COLUMN in table.columns else None
    table = table.assign(
        unet_probability=table["probability"], fpr_probability=scores, probability=scorer.fuse(scores, unet)
    )
    timings["fpr_s"] = time.perf_counter() - t
    return table.sort_values("probability", ascending=False, kind="stable").reset_index(drop=True)


def models_record(
    model_dir: str, fpr_dir: str | None, risk_dir: str | None = None, blobs: str | None = None
) -> dict[str, str]:
    """The model directories (and blob-filter config) a scan's result was made with (its JSON's ``model``)."""
    extra = {k: v for k, v in (("fpr", fpr_dir), ("risk", risk_dir), ("blobs", blobs)) if v}
    return {"unet": model_dir, **extra}


def is_finished(ref: ScanRef, *, out: Path, models: dict[str, str]) -> bool:
    """A scan counts as finished when its JSON exists and was made with the same models and stages; otherwise
    a rerun (e.g. with ``--stage fpr`` after ``--stage candidates``) detects it again."""
    path = out / "scans" / f"{ref.id}.json"
    if not path.exists():
        return False
    try:
        return json.loads(path.read_text()).get("model") == models
    except (OSError, ValueError):
        return False


@functools.lru_cache(maxsize=4)
def _risk_model(model_dir: str):
    from lungcad.risk.model import RiskModel

    return RiskModel.load(model_dir)


def assess_risk(scan, table: pd.DataFrame, risk_dir: str, timings: dict[str, float]) -> tuple[pd.DataFrame, float]:
    """The patient's P(cancer) from FPR-scored candidates (sorted, highest first); the top-k rows get the risk
    features as extra columns."""
    t = time.perf_counter()
    model = _risk_model(risk_dir)
    top = model.features(scan, table.head(model.config.model.top_k))
    probability = float(model.predict(top.assign(seriesuid=scan.id), [scan.id])[0])
    timings["risk_s"] = time.perf_counter() - t
    return table.join(top[[c for c in model.feature_columns if c in top.columns]]), probability


@functools.lru_cache(maxsize=1)
def _picture_config():
    """``configs/pictures.yaml``: which findings a scan reports, read once per process."""
    from lungcad.config import load_config
    from lungcad.visualize import PictureConfig

    return load_config(PictureConfig, "pictures")


def draw_pictures(scan, pre, table: pd.DataFrame, out: Path, timings: dict[str, float]) -> dict:
    """The scan's overview and finding PNGs in ``OUT/pictures/<id>/`` (:mod:`lungcad.visualize`)."""
    from lungcad.visualize import scan_pictures

    t = time.perf_counter()
    drawn = scan_pictures(scan, pre, table, out / "pictures" / scan.id, _picture_config())
    timings["pictures_s"] = time.perf_counter() - t
    return drawn


def locate_in_source(scan, table: pd.DataFrame) -> pd.DataFrame:
    """``voxel_z, voxel_y, voxel_x`` in the input scan's own grid (the merge gives them on the preprocessing
    grid), and for DICOM input ``slice_index`` and ``sop_instance_uid`` of the slice nearest each centre."""
    if table.empty:
        return table.assign(slice_index=pd.Series(dtype=int), sop_instance_uid=pd.Series(dtype=str))
    zyx = scan.world_to_voxel(table[["coordX", "coordY", "coordZ"]].to_numpy(float), outside="keep")
    table = table.assign(voxel_z=zyx[:, 0], voxel_y=zyx[:, 1], voxel_x=zyx[:, 2])
    positions, uids = scan.metadata.get("slice_positions_mm"), scan.metadata.get("sop_instance_uids")
    if not positions or not uids:
        return table
    along_normal = table[["coordX", "coordY", "coordZ"]].to_numpy(float) @ scan.direction[:, 2]
    nearest = np.abs(along_normal[:, None] - np.asarray(positions)[None, :]).argmin(axis=1)
    return table.assign(slice_index=nearest, sop_instance_uid=[uids[i] for i in nearest])


def write_report(scan, table: pd.DataFrame, cancer: float | None, out: Path) -> str:
    """``OUT/sr/<id>.dcm``: the DICOM SR of the reported findings (DICOM input only; otherwise the reason)."""
    from lungcad.sr import write_sr
    from lungcad.visualize import reported_findings

    if not scan.metadata.get("slice_files"):
        return "not written: the input is not a DICOM series"
    shown = reported_findings(table, _picture_config())
    return str(write_sr(scan, shown, out / "sr" / f"{scan.id}.dcm", cancer).relative_to(out))


def detect_one(
    ref: ScanRef,
    *,
    out: Path,
    model_dir: str,
    fpr_dir: str | None = None,
    risk_dir: str | None = None,
    series_uid: str | None = None,
    pictures: bool = True,
    dicom_sr: bool = False,
    blobs: str | None = None,
) -> pd.DataFrame:
    """Detect candidates in one scan (score them when ``fpr_dir`` is given, and the patient's cancer risk when
    ``risk_dir`` is too; add blob-filter candidates with the ``blobs`` config); write its CSV and JSON (the batch
    worker)."""
    t0 = time.perf_counter()
    scan = load_scan(ref.path, series_uid=series_uid)  # named ref.id (lungcad.io.scan_id)
    timings: dict[str, float] = {"read_s": time.perf_counter() - t0}
    table, pre = _detector(model_dir, blobs).detect_and_preprocess(scan, timings)
    cancer = None
    if fpr_dir is not None:
        table = score_candidates(scan, table, fpr_dir, timings)
        if risk_dir is not None:
            table, cancer = assess_risk(scan, table, risk_dir, timings)
    table = locate_in_source(scan, table)
    table = table[CANDIDATE_COLUMNS + [c for c in table.columns if c not in CANDIDATE_COLUMNS]]
    drawn = draw_pictures(scan, pre, table, out, timings) if pictures else None
    report = write_report(scan, table, cancer, out) if dicom_sr else None
    timings["total_s"] = time.perf_counter() - t0
    scans = out / "scans"
    write_text_atomic(scans / f"{ref.id}.csv", table.to_csv(index=False))
    record = {
        "id": ref.id,
        "path": str(ref.path),
        "geometry": scan.summary(),
        "timings_s": timings,
        "model": models_record(model_dir, fpr_dir, risk_dir, blobs),
        **({"cancer_probability": cancer} if cancer is not None else {}),
        **({"pictures": drawn} if drawn is not None else {}),
        **({"dicom_sr": report} if report is not None else {}),
        "lungcad_version": __version__,
        "candidates": json.loads(table.to_json(orient="records")),
    }
    write_text_atomic(scans / f"{ref.id}.json", json.dumps(record, indent=1))
    return table


def collect_candidates(out: Path) -> pd.DataFrame:
    """Union of every finished scan's candidates; rewrites ``OUT/candidates.csv`` atomically."""
    frames = [pd.read_csv(p) for p in sorted((out / "scans").glob("*.csv")) if p.with_suffix(".json").exists()]
    frames = [f for f in frames if not f.empty]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=CANDIDATE_COLUMNS)
    write_text_atomic(out / "candidates.csv", table.to_csv(index=False))
    return table


def read_records(out: Path) -> list[dict]:
    """Every finished scan's JSON record in ``OUT/scans/``, read once for the batch's summaries."""
    return [json.loads(path.read_text()) for path in sorted((out / "scans").glob("*.json"))]


def collect_patients(out: Path, records: list[dict]) -> pd.DataFrame:
    """``id,cancer`` (the DSB 2017 submission format) of the ``records`` with a risk; rewrites
    ``OUT/patients.csv`` atomically (only when some scan has one)."""
    rows = [(r["id"], r["cancer_probability"]) for r in records if "cancer_probability" in r]
    table = pd.DataFrame(rows, columns=["id", "cancer"])
    if rows:
        write_text_atomic(out / "patients.csv", table.to_csv(index=False))
    return table


def default_stage(fpr_model_dir: str | Path | None = None, risk_model_dir: str | Path | None = None) -> str:
    """The deepest stage whose models are given or bundled: "risk" in a full installation."""
    has_fpr = fpr_model_dir is not None or (BUNDLED_MODELS / "fpr").is_dir()
    has_risk = risk_model_dir is not None or (BUNDLED_MODELS / "risk").is_dir()
    return "risk" if has_fpr and has_risk else "fpr" if has_fpr else "candidates"


def stage_models(
    stage: str, model_dir: str | Path | None, fpr_model_dir: str | Path | None, risk_model_dir: str | Path | None
) -> tuple[str, str | None, str | None]:
    """The checked (U-Net, FPR, risk) model directories ``stage`` needs, bundled ones by default."""
    from lungcad.candidates.inference import check_model_dir
    from lungcad.fpr.train import check_model_dir as check_fpr
    from lungcad.risk.model import check_model_dir as check_risk

    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}", expected=" or ".join(STAGES))
    needed = STAGES.index(stage)
    model = str(check_model_dir(model_dir or default_model_dir("unet")))
    fpr = str(check_fpr(fpr_model_dir or default_model_dir("fpr"))) if needed >= 1 else None
    risk = str(check_risk(risk_model_dir or default_model_dir("risk"))) if needed >= 2 else None
    return model, fpr, risk


def blob_config_path(blobs: str | Path | None) -> str | None:
    """The blob-filter config file (``"blobs"`` -> ``configs/blobs.yaml``), checked now: a bad file fails before
    any scan is read."""
    if blobs is None:
        return None
    from lungcad.candidates.blobs import BlobConfig
    from lungcad.config import config_path, load_config

    path = config_path(blobs)
    load_config(BlobConfig, path)
    return str(path)


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
) -> BatchSummary:
    """Run detection over every scan in ``inputs`` into ``out`` up to ``stage`` (one of :data:`STAGES`);
    returns the batch summary. Models default to the bundled ones, ``stage`` to :func:`default_stage`;
    ``blobs`` (a config name in ``configs/`` or a YAML path) adds blob-filter candidates."""
    out = Path(out)
    stage = stage or default_stage(fpr_model_dir, risk_model_dir)
    model, fpr, risk = stage_models(stage, model_dir, fpr_model_dir, risk_model_dir)
    blobs = blob_config_path(blobs)
    refs = find_scans(inputs)
    work = functools.partial(
        detect_one,
        out=out,
        model_dir=model,
        fpr_dir=fpr,
        risk_dir=risk,
        series_uid=series_uid,
        pictures=pictures,
        dicom_sr=dicom_sr,
        blobs=blobs,
    )
    summary = run_batch(
        refs,
        work,
        errors_csv=out / "errors.csv",
        workers=workers,
        scheduler=scheduler,
        desc="detect",
        is_done=functools.partial(is_finished, out=out, models=models_record(model, fpr, risk, blobs)),
    )
    collect_candidates(out)
    records = read_records(out)
    collect_patients(out, records)
    from lungcad.visualize import write_index

    write_index(out, records)
    return summary
