"""The pipeline: every stage on scans, as ``lungcad detect`` runs it.

============================== ===========================================================================
module                         what it is
============================== ===========================================================================
:mod:`lungcad.pipeline.run`      one scan in memory -> :class:`Detection` (no files): the Python API's core
:mod:`lungcad.pipeline.detector` the candidate stage composed: preprocess -> U-Net -> merge (-> blobs)
:mod:`lungcad.pipeline.models`   the model registry: bundled defaults, checks, loading once per process
:mod:`lungcad.pipeline.precision` float32 or bfloat16 per model (the CPU's bfloat16 units, ``--precision``)
:mod:`lungcad.pipeline.writers`  a result's files (CSV, JSON, pictures, SR) and the batch's tables
:mod:`lungcad.pipeline.batch`    many scans: resumable, errors.csv, workers (``lungcad detect``)
============================== ===========================================================================
"""

from lungcad.pipeline.batch import detect_one, detect_scans
from lungcad.pipeline.models import (
    BUNDLED_MODELS,
    STAGES,
    ModelSet,
    default_model_dir,
    default_stage,
    load_detector,
    load_risk_model,
    load_scorer,
    model_set,
)
from lungcad.pipeline.run import Detection, assess_risk, detect_scan, locate_in_source, score_candidates

__all__ = [
    "BUNDLED_MODELS",
    "STAGES",
    "Detection",
    "ModelSet",
    "assess_risk",
    "default_model_dir",
    "default_stage",
    "detect_one",
    "detect_scan",
    "detect_scans",
    "load_detector",
    "load_risk_model",
    "load_scorer",
    "locate_in_source",
    "model_set",
    "score_candidates",
]
