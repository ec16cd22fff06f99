"""``lungcad demo [-o OUT] [--scans N]``: synthetic patients through the full pipeline, scored against the truth."""

from __future__ import annotations

import argparse

from lungcad.cli.options import add_no_progress, add_workers


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the full pipeline with the bundled models on synthetic patients and score it",
        description="Generate a few synthetic chest CTs (a seed no bundled model was trained on), run every bundled "
        "stage over them (candidates, false-positive reduction, cancer risk; pictures and OUT/detect/index.html), "
        "and score the result against the phantoms' truth (FROC/CPM, DSB log loss). Rerunning resumes.",
    )
    p.add_argument("-o", "--output", default="lungcad_demo", help="output folder")
    p.add_argument("--scans", type=int, default=3, help="synthetic patients")
    p.add_argument(
        "--data",
        help="score this LUNA16-layout folder (annotations.csv; cancer_labels.csv id,cancer if present) instead of "
        "generating phantoms, e.g. sample_data/luna16",
    )
    p.add_argument("--size", type=int, default=512, help="in-plane matrix of the phantoms")
    add_workers(p, "parallel processes")
    add_no_progress(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lungcad.demo import format_summary, run_demo

    summary = run_demo(args.output, args.scans, size=args.size, workers=args.workers, data=args.data)
    print(format_summary(summary))
    return 3 if summary["failed_scans"] else 0
