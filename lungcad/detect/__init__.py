"""``lungcad detect``: the whole pipeline on scans.

==================================== =====================================================================
module                               what it is
==================================== =====================================================================
:mod:`lungcad.detect.pipeline`       one scan in memory -> :class:`Detection` (no files): the Python API
:mod:`lungcad.detect.detector`       the candidate stage composed: preprocess -> U-Net -> merge (-> blobs)
:mod:`lungcad.detect.models`         the model registry: bundled defaults, checks, loading once per process
:mod:`lungcad.detect.writers`        a result's files (CSV, JSON, pictures, SR) and the batch's tables
:mod:`lungcad.detect.batch`          many scans: resumable, errors.csv, workers (``lungcad detect``)
==================================== =====================================================================
"""

from lungcad.detect.batch import detect_one, detect_scans
from lungcad.detect.models import (
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
from lungcad.detect.pipeline import Detection, assess_risk, detect_scan, locate_in_source, score_candidates

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
