"""``lungcad preprocess INPUT... -o OUT [--workers N] [--config FILE]``: the training cache."""

from __future__ import annotations

import argparse
from pathlib import Path

from lungcad.cli.options import EXIT_CODES_BATCH, add_no_progress, add_workers


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "preprocess",
        help="resample, segment lungs, crop and normalise scans into a training cache",
        description="Write OUT/<id>/{image.npy, lung_mask.npy, geometry.json} per scan; reruns skip finished "
        "scans; failures go to OUT/errors.csv.",
        epilog=EXIT_CODES_BATCH,
    )
    p.add_argument("inputs", nargs="+", help="scans: .mhd/.mha/.nii(.gz), DICOM folders, or folders of them")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--config", default="preprocess", help="YAML config (default: configs/preprocess.yaml)")
    add_workers(p)
    add_no_progress(p)
    p.add_argument("--series", metavar="UID", help="SeriesInstanceUID to read from multi-series DICOM folders")
    p.add_argument("--overwrite", action="store_true", help="redo scans already in OUT")
    p.add_argument(
        "--allow-external-data",
        action="store_true",
        help="read MetaImage/NRRD data files outside the header's folder (ElementDataFile = ../x.raw, /abs/path, a "
        "symlink out); refused by default",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lungcad.config import load_config
    from lungcad.preprocess import PreprocessConfig
    from lungcad.preprocess.pipeline import preprocess_scans

    config = load_config(PreprocessConfig, args.config)
    out = Path(args.output)
    _, summary = preprocess_scans(
        args.inputs,
        out,
        config,
        workers=args.workers,
        series_uid=args.series,
        overwrite=args.overwrite,
        allow_external_data=args.allow_external_data,
    )
    print(
        f"preprocess: {summary.line()}; output in {out}"
        + (f", errors in {out / 'errors.csv'}" if summary.failed else "")
    )
    return summary.exit_code
