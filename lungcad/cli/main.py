"""``lungcad`` entry point: a thin argparse front over importable functions.

Each command lives in ``lungcad/cli/<name>.py`` and exposes ``add_parser(subparsers)``, which registers
its options and sets ``func`` (``args -> exit code``) as the parser default. Add a command by adding its
module name to :data:`COMMANDS`.

Exit codes: 0 success, 1 a lungcad error (bad input file ...), 2 bad arguments or config,
3 a batch finished with some scans failed, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from lungcad import __version__
from lungcad.errors import LungcadError

COMMANDS = ("inspect", "synth", "preprocess", "train", "detect", "evaluate", "demo")

log = logging.getLogger("lungcad")


def build_parser() -> argparse.ArgumentParser:
    """The full ``lungcad`` parser with every available sub-command."""
    parser = argparse.ArgumentParser(
        prog="lungcad",
        description="Lung cancer CAD for chest CT (LUNA16 .mhd/.raw, DICOM series, NIfTI).",
    )
    parser.add_argument("--version", action="version", version=f"lungcad {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"lungcad.cli.{name}")
        except ModuleNotFoundError as exc:  # a stage not built yet
            if exc.name and exc.name.startswith(f"lungcad.cli.{name}"):
                continue
            raise
        module.add_parser(sub)
    return parser


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Log to stderr: INFO by default, WARNING with ``quiet``, DEBUG with ``-vv``."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose >= 2 else logging.INFO)
    # third-party libraries log at WARNING (INFO only with -vv); lungcad's own messages at ``level``
    logging.basicConfig(level=logging.DEBUG if verbose >= 2 else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)
    logging.getLogger("lungcad").setLevel(level)


def main(argv: list[str] | None = None) -> int:
    """Run ``lungcad`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    setup_logging(args.verbose, args.quiet)
    try:
        return int(args.func(args) or 0)
    except LungcadError as exc:
        print(f"lungcad: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("lungcad: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
