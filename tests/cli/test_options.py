"""What every command's parser shares (lungcad/cli/options.py): -o/--output, -q/-v after the command, defaults in
--help, --workers >= 1, --no-progress, one-line argparse errors, deprecated spellings, exit codes in the help."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from lungcad.cli.main import COMMANDS, build_parser, command_in, main

# every command (and sub-command) that shows progress: a batch, synth, the demo, training
WITH_PROGRESS = [
    ["detect", "in", "-o", "o"],
    ["preprocess", "in", "-o", "o"],
    ["synth", "-o", "o", "--scans", "1", "--seed", "0"],
    ["demo"],
    ["train", "unet", "--data", "d", "-o", "m"],
    ["train", "fpr", "--data", "d", "-o", "m"],
    ["train", "classifier", "--data", "d", "-o", "m"],
    ["train", "risk", "--data", "d", "--labels", "l", "-o", "m"],
]


def _leaf_parsers(parser: argparse.ArgumentParser, path=()):
    """(words, parser) of every command parser that runs something (has no sub-commands of its own)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from _leaf_parsers(sub, (*path, name))


def _parse(argv: list[str]) -> argparse.Namespace:
    return build_parser([command_in(argv)]).parse_args(argv)


@pytest.mark.parametrize("argv", WITH_PROGRESS, ids=lambda a: " ".join(a[:2]))
def test_no_progress_and_verbosity_after_the_command(argv):
    args = _parse([*argv, "--no-progress", "-q"])
    assert args.no_progress and args.quiet
    assert _parse([*argv, "-v"]).verbose == 1
    assert _parse(["-q", *argv]).quiet and not getattr(_parse(argv), "no_progress", False)


@pytest.mark.parametrize("argv", [a for a in WITH_PROGRESS if a[0] != "train" or a[1] in ("unet", "risk")])
def test_workers_zero_is_refused_in_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        _parse([*argv, "--workers", "0"])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.count("\n") == 1 and "--workers: must be 1 or more, got 0" in err
    assert _parse([*argv, "--workers", "2"]).workers == 2


def test_every_option_with_a_default_shows_it_in_help():
    parser = build_parser()
    missing = []
    for words, leaf in _leaf_parsers(parser):
        text = " ".join(leaf.format_help().split())
        for action in leaf._actions:
            if action.default in (None, False, argparse.SUPPRESS) or not action.option_strings or not action.help:
                continue
            if action.help == argparse.SUPPRESS:
                continue
            formatted = " ".join(leaf._get_formatter()._expand_help(action).split())
            if "default" not in formatted.lower() or formatted not in text:
                missing.append((" ".join(words), action.option_strings[0]))
    assert not missing
    assert "--workers N parallel worker processes (default: 1)" in " ".join(_help("detect").split())


def _help(*words: str) -> str:
    node = build_parser([words[0]])
    for word in words:
        node = next(a for a in node._actions if isinstance(a, argparse._SubParsersAction)).choices[word]
    return node.format_help()


def test_exit_codes_are_in_the_help_of_inspect_and_detect():
    inspect = " ".join(_help("inspect").split())
    detect = " ".join(_help("detect").split())
    assert "Exit codes: 0" in inspect and "1 it cannot be read" in inspect and "exits with 3" in inspect
    assert "3 some scans failed" in detect and "the same file gives 1 in 'lungcad inspect'" in detect


def test_output_flag_everywhere_old_spellings_warn(capsys):
    froc = ["evaluate", "froc", "--annotations", "a.csv", "--candidates", "c.csv"]
    assert _parse([*froc, "-o", "x"]).output == Path("x")
    assert _parse([*froc, "--output", "x"]).output == Path("x")
    assert capsys.readouterr().err == ""
    assert _parse([*froc, "--out", "x"]).output == Path("x")
    assert capsys.readouterr().err == "lungcad: warning: --out is deprecated; use -o/--output\n"
    dsb = ["evaluate", "dsb", "--labels", "l.csv", "--predictions", "p.csv"]
    assert _parse(dsb).output is None and _parse([*dsb, "--out", "y"]).output == Path("y")
    synth = ["synth", "--scans", "1", "--seed", "0"]
    assert _parse([*synth, "-o", "s"]).output == "s"
    assert capsys.readouterr().err.count("deprecated") == 1  # the dsb --out above
    assert _parse([*synth[:1], "s", *synth[1:]]).output == "s"
    assert "the positional OUT is deprecated; use -o/--output" in capsys.readouterr().err
    for argv in ([*synth], [*synth, "-o", "s", "t"], [*froc]):
        with pytest.raises(SystemExit) as exc:
            _parse(argv)
        assert exc.value.code == 2
    assert "one of the arguments -o/--output is required" in capsys.readouterr().err
    # every command that writes files takes -o/--output
    for words, leaf in _leaf_parsers(build_parser()):
        if words and words[0] in ("inspect",):
            continue
        assert "--output" in leaf._option_string_actions, words


def test_argparse_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["detect", "x", "-o", "o", "--stage", "nope"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1
    assert err.startswith("lungcad detect: error: argument --stage") and "see 'lungcad detect --help'" in err


def test_every_command_is_covered():
    no_bar = {"inspect", "evaluate", "serve"}  # serve: one log line per event
    assert {argv[0] for argv in WITH_PROGRESS} | no_bar == set(COMMANDS)
