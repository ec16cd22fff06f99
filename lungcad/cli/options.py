"""What every ``lungcad`` command's parser shares: one-line errors, defaults in ``--help``, ``-q/-v`` after the
command, ``--no-progress``, ``--workers`` of at least 1, and old option spellings kept with a warning."""

from __future__ import annotations

import argparse
import sys

#: The exit codes, for the epilog of the commands whose codes differ by command (inspect, detect).
EXIT_CODES_INSPECT = (
    "Exit codes: 0 the scan was read; 1 it cannot be read (one line naming the file, the problem and the fix); "
    "2 bad arguments. The same unreadable file in a 'lungcad detect' batch does not stop the batch: it is recorded "
    "in OUT/errors.csv and detect exits with 3."
)
EXIT_CODES_BATCH = (
    "Exit codes: 0 every scan done (or already done); 3 some scans failed: each is in OUT/errors.csv with its "
    "one-line reason, the others are written (the same file gives 1 in 'lungcad inspect', which reads one scan); "
    "2 bad arguments, a missing input, model or config; 1 the output folder cannot be written or is in use; "
    "130 interrupted."
)


class LungcadParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line (``lungcad detect: error: ...; see 'lungcad detect --help'``),
    exit code 2, as lungcad's own errors are one line."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


class DefaultsFormatter(argparse.HelpFormatter):
    """Help with each option's default, ``(default: X)``, unless there is none (None, False) or its text already
    names one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text.lower()
            or default in (None, False, argparse.SUPPRESS)
            or isinstance(action, (argparse._HelpAction, argparse._VersionAction))
            or not (action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE))
        ):
            return text
        return f"{text} (default: %(default)s)"


def positive_int(text: str) -> int:
    """An argparse ``type``: an integer of at least 1 (``--workers 0`` is refused, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def add_model_dirs(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--fpr-model``, ``--risk-model``: the model directories a detection runs with (default: the
    bundled ones); ``lungcad detect`` and ``lungcad serve``."""
    parser.add_argument("--model", help="U-Net model directory (default: the bundled model)")
    parser.add_argument("--fpr-model", help="FPR model directory from 'lungcad train fpr' (default: the bundled one)")
    parser.add_argument(
        "--risk-model", help="risk model directory from 'lungcad train risk' (default: the bundled one)"
    )


def add_workers(parser: argparse.ArgumentParser, help_text: str = "parallel worker processes") -> None:
    """``--workers N`` (N >= 1, default 1)."""
    parser.add_argument("--workers", type=positive_int, default=1, metavar="N", help=help_text)


def add_no_progress(parser: argparse.ArgumentParser) -> None:
    """``--no-progress``: for a command that shows progress (:mod:`lungcad.progress`)."""
    parser.add_argument(
        "--no-progress",
        action="store_true",
        default=argparse.SUPPRESS,
        help="no progress bar (off a terminal, progress is a log line every 10%% or 30 s; -q: none)",
    )


def add_verbosity(parser: argparse.ArgumentParser) -> None:
    """``-v/-q`` on a command's own parser (``lungcad detect ... -q``), beside the top-level ones."""
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="more log output, and TensorFlow's own start-up messages (-vv: debug)",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="only warnings and errors"
    )


class Deprecated(argparse.Action):
    """An old spelling of an option (``--out``) or a positional kept working: stores into the new option's
    ``dest`` and prints one warning line naming the new one (``use``)."""

    def __init__(self, option_strings, dest, use: str, **kwargs) -> None:
        self.use = use
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if values is None or values == []:
            return
        old = option_string or f"the positional {self.metavar or self.dest.upper()}"
        print(f"lungcad: warning: {old} is deprecated; use {self.use}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def finish(parser: argparse.ArgumentParser, top: bool = True) -> None:
    """Give ``parser`` and its sub-command parsers the :class:`DefaultsFormatter`, and the sub-command ones
    ``-q/-v`` (:func:`add_verbosity`)."""
    parser.formatter_class = DefaultsFormatter
    if not top and "--verbose" not in parser._option_string_actions:
        add_verbosity(parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                finish(sub, top=False)
