"""``lungcad evaluate froc|dsb``: LUNA16 FROC/CPM and DSB 2017 log loss (thin parser over :mod:`lungcad.evaluate`)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from lungcad.cli.options import Deprecated

if TYPE_CHECKING:
    from lungcad.evaluate.config import FrocConfig


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``evaluate`` with its sub-commands ``froc`` and ``dsb``."""
    parser = subparsers.add_parser(
        "evaluate",
        help="score detections (LUNA16 FROC/CPM) or patient predictions (DSB 2017 log loss)",
        description="Score CAD output with the official LUNA16 and DSB 2017 rules.",
    )
    sub = parser.add_subparsers(dest="evaluate_command", metavar="{froc,dsb}")
    sub.required = True
    _add_froc(sub)
    _add_dsb(sub)


def _add_froc(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "froc",
        help="LUNA16 FROC, sensitivity at 1/8..8 FPs/scan and CPM",
        description="LUNA16 nodule detection scoring, as noduleCADEvaluationLUNA16.py: FROC, sensitivity at "
        "1/8, 1/4, 1/2, 1, 2, 4, 8 false positives per scan, CPM (their mean, interpolated on the curve).",
    )
    p.add_argument(
        "--annotations", required=True, type=Path, help="annotations.csv (seriesuid,coordX,coordY,coordZ,diameter_mm)"
    )
    p.add_argument(
        "--candidates", required=True, type=Path, help="CAD marks CSV (seriesuid,coordX,coordY,coordZ,probability)"
    )
    p.add_argument("--excluded", type=Path, help="annotations_excluded.csv: hits on these are ignored")
    p.add_argument(
        "--nodules",
        type=Path,
        help="the annotated nodules' attributes (lungcad synth's nodules.csv: type, shape, location, ...): "
        "sensitivity per value in sensitivity_by_kind.csv",
    )
    p.add_argument(
        "--seriesuids", type=Path, help="scans evaluated, one uid per line (default: all uids in the tables)"
    )
    _add_output(p, "output folder", required=True)
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument(
        "--bootstrap", type=int, metavar="N", help="bootstrap resamplings of scans for 95%% CIs (challenge: 1000)"
    )
    p.add_argument("--seed", type=int, help="bootstrap seed (default from config: 0)")
    p.add_argument("--max-marks", type=int, metavar="N", help="marks kept per scan (official 100; 0 = all)")
    p.add_argument("--score-column", help="candidate score column (default 'probability')")
    p.add_argument(
        "--ignore-unknown-ids",
        action="store_true",
        help="drop marks of scans not in the series list (official behaviour) instead of failing",
    )
    p.add_argument(
        "--config", default="evaluate", help="evaluate config name or YAML path (default: configs/evaluate.yaml)"
    )
    p.set_defaults(func=run_froc)


def _add_dsb(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dsb",
        help="DSB 2017 log loss, AUC and calibration of per-patient predictions",
        description="Kaggle DSB 2017 scoring: log loss with predictions clipped to [1e-15, 1-1e-15], the "
        "base-rate log loss for reference, AUC and a calibration plot.",
    )
    p.add_argument("--labels", required=True, type=Path, help="stage1_labels.csv (id,cancer)")
    p.add_argument("--predictions", required=True, type=Path, help="predictions CSV (id,cancer = probability)")
    _add_output(p, "output folder (default: the predictions file's folder)", required=False)
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--only-predicted", action="store_true", help="score only patients that have a prediction")
    p.add_argument(
        "--config", default="evaluate", help="evaluate config name or YAML path (default: configs/evaluate.yaml)"
    )
    p.set_defaults(func=run_dsb)


def _add_output(p: argparse.ArgumentParser, help_text: str, required: bool) -> None:
    """``-o/--output`` (``--out``: the old spelling, kept with a warning)."""
    group = p.add_mutually_exclusive_group(required=required)
    group.add_argument("-o", "--output", type=Path, help=help_text)
    group.add_argument("--out", type=Path, dest="output", action=Deprecated, use="-o/--output", help=argparse.SUPPRESS)


def froc_config(args: argparse.Namespace) -> FrocConfig:
    """The ``froc`` settings of the config file with the command-line overrides applied."""
    from lungcad.evaluate.config import load_evaluate_config

    cfg = load_evaluate_config(args.config).froc
    overrides = {
        "bootstrap_samples": args.bootstrap,
        "bootstrap_seed": args.seed,
        "max_marks_per_scan": args.max_marks,
        "score_column": args.score_column,
        "unknown_ids": "ignore" if args.ignore_unknown_ids else None,
    }
    return dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def run_froc(args: argparse.Namespace) -> int:
    """``lungcad evaluate froc``: compute, write outputs into ``-o/--output``, print a summary."""
    from lungcad.errors import ConfigError
    from lungcad.evaluate import compute_froc_files, format_froc, froc_summary, write_froc_outputs
    from lungcad.evaluate.analysis import kind_table
    from lungcad.evaluate.report import clean, format_kinds, write_csv
    from lungcad.evaluate.tables import read_nodule_kinds
    from lungcad.fileio import to_json_text

    try:
        cfg = froc_config(args)
    except ValueError as exc:  # an override failing the config's own validation
        raise ConfigError(str(exc), fix="check the command-line values") from exc
    result = compute_froc_files(
        args.annotations, args.candidates, excluded=args.excluded, seriesuids=args.seriesuids, config=cfg
    )
    paths = write_froc_outputs(result, args.output, title=args.candidates.stem)
    summary, by_kind = froc_summary(result), None
    if args.nodules is not None:
        by_kind = kind_table(result, read_nodule_kinds(args.nodules))
        paths["by_kind"] = write_csv(by_kind, args.output / "sensitivity_by_kind.csv")
        summary["by_kind"] = clean(by_kind.to_dict(orient="records"))
    if args.json:
        print(to_json_text(summary, indent=None), end="")
    else:
        print(format_froc(result))
        if by_kind is not None:
            print(format_kinds(by_kind))
        print(f"outputs in {args.output} ({', '.join(p.name for p in paths.values())})")
    return 0


def run_dsb(args: argparse.Namespace) -> int:
    """``lungcad evaluate dsb``: score, write ``dsb.json`` and ``calibration.png``, print a summary."""
    from lungcad.evaluate import compute_dsb_files, dsb_summary, format_dsb, load_evaluate_config, write_dsb_outputs
    from lungcad.fileio import to_json_text

    cfg = load_evaluate_config(args.config).dsb
    result = compute_dsb_files(args.labels, args.predictions, config=cfg, only_predicted=args.only_predicted)
    out = args.output if args.output is not None else args.predictions.resolve().parent
    paths = write_dsb_outputs(result, out)
    if args.json:
        print(to_json_text(dsb_summary(result), indent=None), end="")
    else:
        print(format_dsb(result))
        print(f"outputs in {out} ({', '.join(p.name for p in paths.values())})")
    return 0
