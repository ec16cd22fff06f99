"""``lungcad serve --ae-title LUNGCAD --port 11112 -o OUT [--send-to AE@HOST:PORT] [--allow-ae A,B]``: a DICOM node
that detects on the CT series sent to it (:func:`lungcad.pacs.node.serve`)."""

from __future__ import annotations

import argparse

from lungcad.cli.options import add_model_dirs, positive_int


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value < 65536:
        raise argparse.ArgumentTypeError(f"must be 0 to 65535, got {value}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="a DICOM node: receive CT series (C-STORE), detect, send the SR",
        description="Run a DICOM node (DIMSE) until interrupted (SIGINT/SIGTERM). It accepts CT instances with "
        "C-STORE and answers C-ECHO; a series that received nothing for --quiet-seconds is detected as a folder run "
        "(OUT/scans/<SeriesInstanceUID>.{csv,json}, OUT/sr/<SeriesInstanceUID>.dcm, OUT/candidates.csv), and with "
        "--send-to its DICOM SR is sent there with C-STORE. A failed series or send is one row in OUT/errors.csv "
        "and stays in OUT/.inbox/, where a restart picks it up with the other series not yet detected; after "
        "--max-attempts failures it moves to OUT/.inbox-failed/<study>/<series>/ (move it back into "
        "OUT/.inbox/<study>/ and restart to retry). Needs: pip install 'lungcad[pacs,sr]'",
        epilog="Exit codes: 0 stopped by SIGINT/SIGTERM; 1 the port, models or output folder cannot be used; "
        "2 bad arguments.",
    )
    p.add_argument("-o", "--output", required=True, help="output folder (OUT/.inbox/ holds the received series)")
    p.add_argument("--ae-title", default="LUNGCAD", help="this node's AE title")
    p.add_argument("--port", type=_port, default=11112, help="DICOM port to listen on")
    p.add_argument("--bind", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument(
        "--send-to",
        metavar="AE@HOST:PORT",
        help="send each series' SR to this node with C-STORE (e.g. ORTHANC@127.0.0.1:4242)",
    )
    p.add_argument(
        "--allow-ae", metavar="A,B", help="accept associations only from these calling AE titles (default: any)"
    )
    p.add_argument(
        "--quiet-seconds",
        type=_seconds,
        default=10.0,
        metavar="S",
        help="detect a series once it has received no instance for S seconds",
    )
    p.add_argument(
        "--max-attempts",
        type=positive_int,
        default=3,
        metavar="N",
        help="attempts (one per start) at a series whose detection or send fails before it moves to OUT/.inbox-failed/",
    )
    p.add_argument(
        "--stage",
        choices=["candidates", "fpr", "risk"],
        help="last stage to run (default: the full pipeline, as for 'lungcad detect')",
    )
    add_model_dirs(p)
    p.add_argument("--no-pictures", action="store_true", help="skip the PNGs and OUT/index.html")
    p.set_defaults(func=run, parser=p)


def run(args: argparse.Namespace) -> int:
    from lungcad.errors import PacsError
    from lungcad.pacs.node import Peer, serve

    try:
        send_to = Peer.parse(args.send_to) if args.send_to else None
    except PacsError as exc:
        args.parser.error(f"--send-to: {exc}")
    return serve(
        args.output,
        ae_title=args.ae_title,
        port=args.port,
        bind=args.bind,
        send_to=send_to,
        allow_ae=(args.allow_ae or "").split(",") if args.allow_ae else None,
        quiet_seconds=args.quiet_seconds,
        max_attempts=args.max_attempts,
        stage=args.stage,
        model_dir=args.model,
        fpr_model_dir=args.fpr_model,
        risk_model_dir=args.risk_model,
        pictures=not args.no_pictures,
    )
