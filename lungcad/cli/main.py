"""``lungcad`` entry point: a thin argparse front over importable functions.

Each command lives in ``lungcad/cli/<name>.py`` and exposes ``add_parser(subparsers)``, which registers
its options and sets ``func`` (``args -> exit code``) as the parser default; the module imports its heavy
dependencies (TensorFlow, pydicom, SimpleITK, the stages) only inside its run functions. Add a command by adding
its name and one-line help to :data:`COMMANDS`.

Commands register lazily: ``lungcad --help`` lists :data:`COMMANDS` without importing any command module, and
``lungcad CMD ...`` imports only ``lungcad.cli.CMD`` (whose parser gives ``lungcad CMD --help`` its options).

Exit codes: 0 success, 1 a lungcad error (bad input file ...), 2 bad arguments or config,
3 a batch finished with some scans failed, 130 interrupted. :mod:`lungcad.cli.options` holds what every parser
shares (one-line argparse errors, defaults in ``--help``, ``-q/-v`` after the command, ``--no-progress``).

TensorFlow's native start-up lines stay off stderr unless ``-v`` (:mod:`lungcad.tfquiet`, installed before any
command runs); progress is :mod:`lungcad.progress` (off with ``-q`` or ``--no-progress``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Iterable

from lungcad import __version__, progress, tfquiet
from lungcad.cli.options import LungcadParser, finish
from lungcad.errors import LungcadError
from lungcad.fileio import printable

# name -> the one-line help of ``lungcad --help``: the same text the module's add_parser registers
COMMANDS: dict[str, str] = {
    "inspect": "read a scan and print its geometry, series and warnings",
    "synth": "write synthetic chest CT phantoms with known nodules (LUNA16 / DSB 2017 layouts)",
    "preprocess": "resample, segment lungs, crop and normalise scans into a training cache",
    "train": "train a model (unet, fpr, classifier, risk)",
    "detect": "find nodules in scans (batch, resumable)",
    "evaluate": "score detections (LUNA16 FROC/CPM) or patient predictions (DSB 2017 log loss)",
    "serve": "a DICOM node: receive CT series (C-STORE), detect, send the SR",
    "demo": "run the full pipeline with the bundled models on synthetic patients and score it",
}

log = logging.getLogger("lungcad")


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The ``lungcad`` parser: ``commands`` (default: all of :data:`COMMANDS`) get their module's full parser,
    the others a placeholder with their one-line help (enough for ``lungcad --help``, imports nothing)."""
    full = set(COMMANDS if commands is None else commands)
    parser = LungcadParser(
        prog="lungcad",
        description="Lung cancer CAD for chest CT (LUNA16 .mhd/.raw, DICOM series, NIfTI).",
        epilog="Options -q/-v also go after the command (lungcad detect ... -q).",
    )
    parser.add_argument("--version", action="version", version=f"lungcad {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more log output, and TensorFlow's own start-up messages (-vv: debug)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors; no progress")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        if name in full:
            importlib.import_module(f"lungcad.cli.{name}").add_parser(sub)
        else:
            sub.add_parser(name, help=help_text)
    finish(parser)
    return parser


def command_in(argv: list[str]) -> str | None:
    """The command ``argv`` names: its first word that is not an option (the top-level options take no
    value), if that is one of :data:`COMMANDS`; else None."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in COMMANDS else None


class PrintableFormatter(logging.Formatter):
    """Log lines with the bytes of non-UTF-8 file names as ``\\xNN`` (:func:`lungcad.fileio.printable`): a
    stderr that encodes strictly would drop the line."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Log to stderr: INFO by default, WARNING with ``quiet``, DEBUG with ``-vv``."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose >= 2 else logging.INFO)
    # third-party libraries log at WARNING (INFO only with -vv); lungcad's own messages at ``level``
    logging.basicConfig(
        level=logging.DEBUG if verbose >= 2 else logging.WARNING,
        stream=sys.stderr,
        force=True,
    )
    for handler in logging.getLogger().handlers:
        handler.setFormatter(PrintableFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger("lungcad").setLevel(level)


def main(argv: list[str] | None = None) -> int:
    """Run ``lungcad`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = command_in(argv)
    parser = build_parser([command] if command else [])
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    tfquiet.install(verbose=args.verbose >= 1)  # before anything imports TensorFlow, and before logging's stream
    setup_logging(args.verbose, args.quiet)
    progress.set_enabled(not (args.quiet or getattr(args, "no_progress", False)))
    try:
        return int(args.func(args) or 0)
    except LungcadError as exc:
        print(f"lungcad: error: {printable(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("lungcad: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
