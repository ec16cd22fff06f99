"""``lungcad detect INPUT... -o OUT [--stage candidates] [--model DIR] [--workers N]``."""

from __future__ import annotations

import argparse
from pathlib import Path

from lungcad.cli.options import EXIT_CODES_BATCH, add_model_dirs, add_no_progress, add_workers


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detect",
        help="find nodules in scans (batch, resumable)",
        description="Run detection over scans (.mhd, DICOM folders, or LUNA16/DSB-layout folders). Writes "
        "OUT/candidates.csv (LUNA16 submission columns first), OUT/scans/<id>.{csv,json}, OUT/errors.csv. "
        "Reruns skip finished scans. Inputs, models and the output folder are checked before TensorFlow loads. "
        "With one scan, each stage (read, preprocess, U-Net, FPR, risk) is logged as it ends.",
        epilog=EXIT_CODES_BATCH,
    )
    p.add_argument("inputs", nargs="*", help="scans or folders of scans (none with --dicomweb)")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument(
        "--stage",
        choices=["candidates", "fpr", "risk"],
        help="last stage to run (default: the full pipeline, risk, as far as models are bundled or given): U-Net "
        "candidates; candidates scored by the WideResNet false-positive reducer "
        "(probability = FPR score, U-Net score in unet_probability); or also each patient's cancer probability "
        "(OUT/patients.csv, id,cancer: the DSB 2017 submission format)",
    )
    add_model_dirs(p)
    p.add_argument(
        "--no-pictures",
        action="store_true",
        help="skip the PNGs (OUT/pictures/<id>/: axial MIP overview, a slice through each top finding) and "
        "OUT/index.html",
    )
    p.add_argument(
        "--dicom-sr",
        action="store_true",
        help="also write OUT/sr/<id>.dcm for DICOM input: a DICOM SR (TID 1500) with each reported finding's centre, "
        "outline and diameter, referencing the source series (opens in OHIF, 3D Slicer). Needs: pip install "
        "'lungcad[sr]'",
    )
    add_workers(p)
    add_no_progress(p)
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run the scans on a Dask distributed cluster (e.g. tcp://10.0.0.5:8786; its workers must see the same "
        "paths); outputs, errors.csv and resume as in a local run. Needs: pip install 'lungcad[dask]'",
    )
    p.add_argument(
        "--blobs",
        nargs="?",
        const="blobs",
        metavar="CONFIG",
        help="also add blob-filter candidates (multi-scale Hessian dot filter; configs/blobs.yaml, or CONFIG) away "
        "from the U-Net's: a second detector for small nodules touching vessels, which the U-Net misses; more "
        "nodules among the marks, more false positives for the FPR to rank (see the README)",
    )
    p.add_argument(
        "--precision",
        choices=["auto", "float32", "bfloat16"],
        default="auto",
        help="arithmetic of the models (default: auto: bfloat16 for the FPR and the risk classifiers where the CPU has "
        "AMX or AVX512-BF16, measured faster there with the same results; float32 otherwise and for the U-Net); "
        "float32 or bfloat16 force it on every model. Each scan's JSON records it (precision)",
    )
    p.add_argument("--series", metavar="UID", help="SeriesInstanceUID to read from multi-series DICOM folders")
    p.add_argument(
        "--allow-external-data",
        action="store_true",
        help="read MetaImage/NRRD data files outside the header's folder (ElementDataFile = ../x.raw, /abs/path, a "
        "symlink out); refused by default",
    )
    pacs = p.add_argument_group(
        "DICOMweb (a PACS; needs: pip install 'lungcad[pacs]'; credentials only from the environment: "
        "LUNGCAD_DICOMWEB_TOKEN, or LUNGCAD_DICOMWEB_USER and LUNGCAD_DICOMWEB_PASSWORD)"
    )
    pacs.add_argument(
        "--dicomweb",
        metavar="URL",
        help="read the --study studies from this DICOMweb server (QIDO-RS, WADO-RS) instead of INPUTs; each "
        "study's CT series is chosen as in a folder, outputs are named by its StudyInstanceUID",
    )
    pacs.add_argument("--study", action="append", metavar="UID", help="StudyInstanceUID to detect (repeatable)")
    pacs.add_argument(
        "--study-list",
        metavar="FILE",
        help="StudyInstanceUIDs to detect: a CSV with a StudyInstanceUID column, or one UID a line",
    )
    pacs.add_argument(
        "--query",
        action="append",
        metavar="KEY=VALUE",
        help="detect the studies a QIDO-RS study search finds (repeatable, e.g. --query ModalitiesInStudy=CT "
        "--query StudyDate=20200101-20201231)",
    )
    pacs.add_argument(
        "--store-results",
        action="store_true",
        help="store each study's DICOM SR (as --dicom-sr) back on the server with STOW-RS",
    )
    p.set_defaults(func=run, parser=p)


def run(args: argparse.Namespace) -> int:
    if args.dicomweb or args.study or args.study_list or args.query or args.store_results:
        return run_dicomweb(args)
    if not args.inputs:
        args.parser.error("give scans or folders of scans, or --dicomweb URL --study UID")
    from lungcad.batch import process_age
    from lungcad.pipeline import detect_scans

    before = process_age()  # Python, lungcad's imports, the arguments: part of the start-up
    summary = detect_scans(
        args.inputs,
        args.output,
        workers=args.workers,
        scheduler=args.scheduler,
        allow_external_data=args.allow_external_data,
        precision=args.precision,
        **scan_options(args),
    )
    if summary.startup_s is not None:
        summary.startup_s += before
    return report(summary, args)


def run_dicomweb(args: argparse.Namespace) -> int:
    if not (args.dicomweb and (args.study or args.study_list or args.query)) or args.inputs:
        args.parser.error(
            "--dicomweb URL goes with --study UID, --study-list FILE or --query KEY=VALUE, without INPUTs"
        )
    if args.workers > 1 or args.scheduler:
        args.parser.error("--dicomweb runs one study at a time: leave out --workers and --scheduler")
    if args.precision != "auto":
        args.parser.error("--dicomweb runs with --precision auto: leave out --precision")
    query = dict(q.partition("=")[::2] for q in args.query or [])
    if not all(query) or not all(query.values()):
        args.parser.error("--query takes KEY=VALUE, e.g. ModalitiesInStudy=CT")
    from lungcad.pacs.dicomweb import detect_studies, read_study_list

    studies = [*(args.study or []), *(read_study_list(args.study_list) if args.study_list else [])]
    summary = detect_studies(
        args.dicomweb,
        studies,
        args.output,
        query=query,
        store_results=args.store_results,
        **scan_options(args),
    )
    return report(summary, args)


def scan_options(args: argparse.Namespace) -> dict:
    """What every scan of a folder run and of a DICOMweb run is detected with: stage, models, series, outputs."""
    return {
        "stage": args.stage,
        "model_dir": args.model,
        "fpr_model_dir": args.fpr_model,
        "risk_model_dir": args.risk_model,
        "series_uid": args.series,
        "pictures": not args.no_pictures,
        "dicom_sr": args.dicom_sr,
        "blobs": args.blobs,
    }


def report(summary, args: argparse.Namespace) -> int:
    out = Path(args.output)
    print(
        f"detect: {summary.line()}"
        + (f"; precision: {summary.precision}" if summary.precision else "")
        + f"; candidates in {out / 'candidates.csv'}"
        + (f"; patients in {out / 'patients.csv'}" if (out / "patients.csv").exists() else "")
        + (f"; pictures in {out / 'index.html'}" if (out / "index.html").exists() else "")
        + (f"; errors in {out / 'errors.csv'}" if summary.failed else "")
    )
    return summary.exit_code
