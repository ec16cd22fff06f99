"""Evaluation: LUNA16 nodule detection (FROC, CPM) and DSB 2017 per-patient scoring (log loss).

The FROC follows the official LUNA16 script ``noduleCADEvaluationLUNA16.py`` to the digit (matching
rules, 100-mark limit, curve construction, interpolation); see :mod:`lungcad.evaluate.froc` for the
exact CPM definition and :mod:`lungcad.evaluate.matching` for the hit rules.

Typical use::

    from lungcad.evaluate import compute_froc_files, write_froc_outputs
    result = compute_froc_files("annotations.csv", "candidates.csv", excluded="annotations_excluded.csv",
                                seriesuids="seriesuids.csv")
    print(result.cpm, result.sensitivity)
    write_froc_outputs(result, "out/")
"""

from lungcad.evaluate.analysis import FrocResult, compute_froc, compute_froc_files, froc_entries
from lungcad.evaluate.bootstrap import BootstrapResult, Interval, bootstrap_froc
from lungcad.evaluate.config import (
    LUNA16_OPERATING_POINTS,
    DsbConfig,
    EvaluateConfig,
    FrocConfig,
    load_evaluate_config,
)
from lungcad.evaluate.dsb import (
    DsbResult,
    auc,
    base_rate_log_loss,
    calibration_table,
    compute_dsb,
    compute_dsb_files,
    log_loss,
)
from lungcad.evaluate.froc import FrocCurve, FrocEntries, cpm, froc_curve, sensitivity_at
from lungcad.evaluate.matching import MatchResult, match
from lungcad.evaluate.report import (
    dsb_summary,
    format_dsb,
    format_froc,
    froc_summary,
    write_dsb_outputs,
    write_froc_outputs,
)
from lungcad.evaluate.tables import read_annotations, read_candidates, read_dsb_table, read_seriesuids

__all__ = [
    "LUNA16_OPERATING_POINTS",
    "BootstrapResult",
    "DsbConfig",
    "DsbResult",
    "EvaluateConfig",
    "FrocConfig",
    "FrocCurve",
    "FrocEntries",
    "FrocResult",
    "Interval",
    "MatchResult",
    "auc",
    "base_rate_log_loss",
    "bootstrap_froc",
    "calibration_table",
    "compute_dsb",
    "compute_dsb_files",
    "compute_froc",
    "compute_froc_files",
    "cpm",
    "dsb_summary",
    "format_dsb",
    "format_froc",
    "froc_curve",
    "froc_entries",
    "froc_summary",
    "load_evaluate_config",
    "log_loss",
    "match",
    "read_annotations",
    "read_candidates",
    "read_dsb_table",
    "read_seriesuids",
    "sensitivity_at",
    "write_dsb_outputs",
    "write_froc_outputs",
]
