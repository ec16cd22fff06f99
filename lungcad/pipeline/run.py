"""One scan through the pipeline, in memory: read scan in -> typed result out, no files written.

    CTScan --preprocess--> PreprocessedScan --U-Net--> probability (Z, Y, X) --merge--> candidates
           --FPR (patches, WideResNet, fusion)--> scored candidates --risk--> P(cancer)
           --locate--> voxel indices (and DICOM slices) on the input scan's own grid

This is the core of the Python API's ``lungcad.detect`` (:mod:`lungcad.api`, which adds reading a path and pictures)
and of ``lungcad detect`` (:mod:`lungcad.pipeline.batch`, which adds the files)::

    from lungcad.pipeline import detect_scan, model_set
    from lungcad.io import load_scan

    result = detect_scan(load_scan("scan.mhd"), model_set())   # bundled models, every stage
    result.candidates.head()                                     # world mm + source voxels, sorted
    result.cancer_probability

:mod:`lungcad.pipeline.writers` writes a result to disk; :mod:`lungcad.pipeline.batch` runs many scans.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lungcad.fpr.fusion import UNET_SCORE_COLUMN
from lungcad.pipeline.models import ModelSet, load_detector, load_risk_model, load_scorer, unet_preprocess_config
from lungcad.preprocess.pipeline import PreprocessedScan, preprocess_scan
from lungcad.scan import CTScan
from lungcad.schema import DICOM_UIDS, GRID_ZYX, VOXEL_ZYX, by_probability, centres_xyz, submission_order


@dataclass
class Detection:
    """What the pipeline found in one scan.

    Attributes:
        scan: the input scan (HU, its own grid).
        preprocessed: the resampled, lung-masked scan the U-Net ran on.
        candidates: the candidate table (:mod:`lungcad.schema`), sorted by ``probability`` (highest first),
            submission columns first, ``voxel_z, voxel_y, voxel_x`` on ``scan``'s grid (and, for DICOM input,
            ``slice_index`` and ``sop_instance_uid`` of the nearest slice), then ``series_instance_uid`` and
            ``study_instance_uid`` (the DICOM series' UIDs; empty for other input).
        cancer_probability: the patient's P(cancer), when the risk stage ran.
        timings_s: seconds per step (``preprocess_s``, ``unet_and_merge_s``, ``fpr_s``, ``risk_s``).
        precision: what each model computed in, ``{"unet": "float32", "fpr": "bfloat16", ...}``
            (:meth:`lungcad.pipeline.models.ModelSet.precisions`).
    """

    scan: CTScan
    preprocessed: PreprocessedScan
    candidates: pd.DataFrame
    cancer_probability: float | None = None
    timings_s: dict[str, float] = field(default_factory=dict)
    precision: dict[str, str] = field(default_factory=dict)


def preprocess_for(scan: CTScan, models: ModelSet, timings: dict[str, float] | None = None) -> PreprocessedScan:
    """``scan`` resampled and lung-masked as the U-Net of ``models`` was trained (its ``detector.yaml``), with no
    model loaded: TensorFlow may load meanwhile (:func:`lungcad.pipeline.models.preload`); ``timings`` (if given)
    receives ``preprocess_s``."""
    t0 = time.perf_counter()
    pre = preprocess_scan(scan, unet_preprocess_config(models.unet))
    if timings is not None:
        timings["preprocess_s"] = time.perf_counter() - t0
    return pre


def detect_scan(
    scan: CTScan,
    models: ModelSet,
    timings: dict[str, float] | None = None,
    preprocessed: PreprocessedScan | None = None,
) -> Detection:
    """Run every stage ``models`` has (candidates; FPR when ``models.fpr``; risk when ``models.risk`` too) on
    ``scan``; ``timings`` (if given) receives the seconds per step as well; ``preprocessed``: ``scan`` already
    through :func:`preprocess_for` (else preprocessed here, before the U-Net is loaded)."""
    timings = {} if timings is None else timings
    precision = models.precisions()
    pre = preprocess_for(scan, models, timings) if preprocessed is None else preprocessed
    detector = load_detector(models.unet, models.blobs, precision["unet"])
    t0 = time.perf_counter()
    table = detector.detect_preprocessed(pre)
    timings["unet_and_merge_s"] = time.perf_counter() - t0
    cancer = None
    if models.fpr is not None:
        table = score_candidates(scan, table, load_scorer(models.fpr, precision["fpr"]), timings)
        if models.risk is not None:
            table, cancer = assess_risk(scan, table, load_risk_model(models.risk, precision["risk"]), timings)
    table = submission_order(locate_in_source(scan, table))
    return Detection(scan, pre, table, cancer, timings, precision)


def score_candidates(
    scan: CTScan, table: pd.DataFrame, scorer, timings: dict[str, float] | None = None
) -> pd.DataFrame:
    """False-positive reduction with ``scorer`` (a :class:`lungcad.fpr.inference.PatchScorer`): the WideResNet's
    nodule probability goes to ``fpr_probability`` and, fused with the candidate's mean U-Net probability by the
    model's ``unet_weight`` (:mod:`lungcad.fpr.fusion`; 0: the FPR's alone), to ``probability``; the U-Net's score
    moves to ``unet_probability``; rows sorted by the new probability (highest first)."""
    t = time.perf_counter()
    scores = scorer.score(scan, centres_xyz(table)).astype(float)
    unet = table[UNET_SCORE_COLUMN].to_numpy(float) if UNET_SCORE_COLUMN in table.columns else None
    table = table.assign(
        unet_probability=table["probability"], fpr_probability=scores, probability=scorer.fuse(scores, unet)
    )
    if timings is not None:
        timings["fpr_s"] = time.perf_counter() - t
    return by_probability(table)


def assess_risk(
    scan: CTScan, table: pd.DataFrame, model, timings: dict[str, float] | None = None
) -> tuple[pd.DataFrame, float]:
    """The patient's P(cancer) from FPR-scored candidates (sorted, highest first) with ``model`` (a
    :class:`lungcad.risk.model.RiskModel`); the top-k rows get the risk features as extra columns."""
    t = time.perf_counter()
    top = model.features(scan, table.head(model.config.model.top_k))
    probability = float(model.predict(top.assign(seriesuid=scan.id), [scan.id])[0])
    if timings is not None:
        timings["risk_s"] = time.perf_counter() - t
    return table.join(top[[c for c in model.feature_columns if c in top.columns]]), probability


def locate_in_source(scan: CTScan, table: pd.DataFrame) -> pd.DataFrame:
    """The candidates' voxel indices on the input scan's own grid: the preprocessing grid's ``grid_z, grid_y,
    grid_x`` become ``voxel_z, voxel_y, voxel_x`` (same place in the table) on ``scan``'s grid, and for DICOM input
    ``slice_index`` and ``sop_instance_uid`` of the slice nearest each centre are added; last come
    :data:`~lungcad.schema.DICOM_UIDS`, the series' SeriesInstanceUID and StudyInstanceUID (None for other input: an
    empty CSV cell, a JSON null). ``seriesuid`` stays the scan's id, e.g. a DSB patient folder's name."""
    table = _locate(scan, table.rename(columns=dict(zip(GRID_ZYX, VOXEL_ZYX, strict=True))))
    dicom = scan.metadata.get("format") == "dicom"
    uids = [str(scan.metadata.get(key) or "") or None if dicom else None for key in ("series_uid", "study_uid")]
    columns = {name: pd.Series(uid, index=table.index, dtype=object) for name, uid in zip(DICOM_UIDS, uids)}
    return table.assign(**columns)


def _locate(scan: CTScan, table: pd.DataFrame) -> pd.DataFrame:
    if table.empty:
        return table.assign(slice_index=pd.Series(dtype=int), sop_instance_uid=pd.Series(dtype=str))
    xyz = centres_xyz(table)
    zyx = scan.world_to_voxel(xyz, outside="keep")
    table = table.assign(**{name: zyx[:, i] for i, name in enumerate(VOXEL_ZYX)})
    positions, uids = scan.metadata.get("slice_positions_mm"), scan.metadata.get("sop_instance_uids")
    if not positions or not uids:
        return table
    along_normal = xyz @ scan.direction[:, 2]
    nearest = np.abs(along_normal[:, None] - np.asarray(positions)[None, :]).argmin(axis=1)
    return table.assign(slice_index=nearest, sop_instance_uid=[uids[i] for i in nearest])
