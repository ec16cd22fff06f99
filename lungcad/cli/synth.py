"""``lungcad synth -o OUT --scans N --seed S [--size 512] [--format luna|dsb|both]``: synthetic datasets."""

from __future__ import annotations

import argparse

from lungcad.cli.options import Deprecated, add_no_progress, add_workers


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``synth`` sub-command."""
    p = subparsers.add_parser(
        "synth",
        help="write synthetic chest CT phantoms with known nodules (LUNA16 / DSB 2017 layouts)",
        description="Write synthetic chest CTs with known nodules in the LUNA16 and/or DSB 2017 layouts. "
        "The same seed gives the same data; rerunning into the same folder resumes.",
    )
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("-o", "--output", help="output folder")
    out.add_argument("output", nargs="?", metavar="OUT", action=Deprecated, use="-o/--output", help=argparse.SUPPRESS)
    p.add_argument("--scans", type=int, required=True, help="number of scans")
    p.add_argument("--seed", type=int, required=True, help="dataset seed (>= 0)")
    p.add_argument("--size", type=int, default=512, help="in-plane matrix (pixel = FOV / size)")
    p.add_argument(
        "--format",
        dest="fmt",
        choices=("luna", "dsb", "both"),
        default="both",
        help="layout(s): OUT/luna16/ and/or OUT/dsb2017/ ('lungcad train ... --data OUT' finds them)",
    )
    p.add_argument("--config", default=None, help="synth config YAML (default: configs/synth.yaml)")
    p.add_argument("--max-slices", type=int, default=None, help="cap slices per scan (spacing grows)")
    add_workers(p, "parallel processes")
    add_no_progress(p)
    p.add_argument(
        "--compress", action="store_true", help="LUNA16 layout: zlib-compressed pixel data (.zraw, about half the size)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``lungcad synth``; prints a one-line summary. Returns 0."""
    from lungcad.synth import load_synth_config, write_dataset

    config = load_synth_config(args.config, max_slices=args.max_slices)
    summary = write_dataset(
        args.output,
        args.scans,
        args.seed,
        size=args.size,
        fmt=args.fmt,
        config=config,
        workers=args.workers,
        progress=True,  # unless --no-progress or -q (lungcad.progress.set_enabled)
        compress=args.compress,
    )
    print(summary.line())
    return 0
