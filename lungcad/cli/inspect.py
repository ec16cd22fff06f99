"""``lungcad inspect PATH [--json]``: what lungcad reads from a scan."""

from __future__ import annotations

import argparse

from lungcad.cli.options import EXIT_CODES_INSPECT


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="read a scan and print its geometry, series and warnings",
        description="Read a DICOM folder, .mhd/.mha or NIfTI scan and print what was read.",
        epilog=EXIT_CODES_INSPECT,
    )
    p.add_argument("path", help="DICOM folder or file, .mhd, .mha, .nii or .nii.gz")
    p.add_argument("--series", metavar="UID", help="SeriesInstanceUID to read from a multi-series folder")
    p.add_argument("--refuse-tilt", action="store_true", help="fail on gantry-tilted series instead of resampling")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--allow-external-data",
        action="store_true",
        help="read MetaImage/NRRD data files outside the header's folder (ElementDataFile = ../x.raw, /abs/path, a "
        "symlink out); refused by default",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lungcad.fileio import to_json_text
    from lungcad.io import load_scan

    scan = load_scan(
        args.path,
        series_uid=args.series,
        gantry_tilt="refuse" if args.refuse_tilt else "resample",
        allow_external_data=args.allow_external_data,
    )
    info = scan.summary()
    if args.json:
        print(to_json_text(info, indent=2), end="")
        return 0
    print(format_summary(info))
    return 0


def format_summary(info: dict) -> str:
    """Human-readable lines for a :meth:`CTScan.summary` dict."""
    d = info["direction"]
    lines = [
        f"id:          {info['id']}",
        f"source:      {info['source']}",
        f"series uid:  {info.get('series_uid') or '-'}",
        f"modality:    {info.get('modality') or '-'}",
        f"shape z,y,x: {' x '.join(map(str, info['shape_zyx']))}  ({info['slices']} slices)",
        f"spacing mm:  z {info['spacing_zyx_mm'][0]:.4g}, y {info['spacing_zyx_mm'][1]:.4g}, "
        f"x {info['spacing_zyx_mm'][2]:.4g}",
        "origin mm:   x {:.3f}, y {:.3f}, z {:.3f}".format(*info["origin_xyz_mm"]),
        "direction:   " + " | ".join(" ".join(f"{v:+.3f}" for v in row) for row in d),
        f"HU range:    {info['hu_range'][0]} .. {info['hu_range'][1]}" if info["hu_range"] else "HU range: -",
    ]
    warnings = info["warnings"] or ["none"]
    lines.append("warnings:    " + warnings[0])
    lines += ["             " + w for w in warnings[1:]]
    return "\n".join(lines)
