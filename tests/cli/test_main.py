"""The ``lungcad`` front: lazy command registration (``--help`` imports no stage), every command's help."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lungcad.cli.main import COMMANDS, build_parser, command_in, main

ROOT = Path(__file__).resolve().parents[2]

# modules a help text must not need: the deep-learning stack, the scan readers, the phantom generator
HEAVY = ("tensorflow", "keras", "pydicom", "SimpleITK", "lungcad.synth")

# a few options (or sub-commands) each help must list: the command's own parser, not a placeholder, answered
HELP_SHOWS = {
    ("inspect",): ["--series", "--refuse-tilt", "--json"],
    ("synth",): ["--scans", "--seed", "--format", "--max-slices", "--compress"],
    ("preprocess",): ["--output", "--config", "--workers", "--overwrite"],
    ("train",): ["unet", "fpr", "classifier", "risk"],
    ("train", "unet"): ["--data", "--synth", "--synth-seed", "--mixed-precision", "--workers", "--resume"],
    ("train", "fpr"): ["--candidates", "--unet", "--cache", "--strategy"],
    ("train", "classifier"): ["--nodules", "--init", "--epochs"],
    ("train", "risk"): ["--labels", "--detections", "--classifier"],
    ("detect",): ["--output", "--stage", "--fpr-model", "--risk-model", "--workers"],
    ("evaluate",): ["froc", "dsb"],
    ("evaluate", "froc"): ["--annotations", "--candidates", "--bootstrap"],
    ("evaluate", "dsb"): ["--labels", "--predictions", "--only-predicted"],
    ("demo",): ["--output", "--scans", "--size"],
    ("-q", "evaluate", "froc"): ["--annotations"],  # a top-level option before the command
}


def _run_python(code: str) -> dict:
    """Run ``code`` in a fresh interpreter (this checkout's lungcad) and return the JSON it prints last."""
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _heavy(modules: list[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_top_level_help_imports_no_command_module_and_no_heavy_library():
    result = _run_python(
        """
        import contextlib, io, json, sys
        from lungcad.cli.main import main
        buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(buf):
                main(["--help"])
        except SystemExit as exc:
            code = exc.code
        print(json.dumps({"code": code, "help": buf.getvalue(), "modules": sorted(sys.modules)}))
        """
    )
    assert result["code"] == 0
    assert all(name in result["help"] for name in COMMANDS)
    assert "tensorflow" not in result["modules"]
    assert "pydicom" not in result["modules"]
    assert "SimpleITK" not in result["modules"]
    assert _heavy(result["modules"]) == []
    # the parser's shared options (lungcad.cli.options) but no command module
    assert [m for m in result["modules"] if m.startswith("lungcad.cli.")] == ["lungcad.cli.main", "lungcad.cli.options"]


def test_every_command_help_lists_its_options_and_imports_only_its_own_module():
    result = _run_python(
        f"""
        import contextlib, io, json, sys
        from lungcad.cli.main import main
        runs = []
        for argv in {[list(argv) for argv in HELP_SHOWS]!r}:
            before = set(sys.modules)
            buf = io.StringIO()
            try:
                with contextlib.redirect_stdout(buf):
                    main([*argv, "--help"])
                code = None
            except SystemExit as exc:
                code = exc.code
            new = sorted(set(sys.modules) - before)
            runs.append({{"argv": argv, "code": code, "help": buf.getvalue(), "new": new}})
        print(json.dumps({{"runs": runs, "modules": sorted(sys.modules)}}))
        """
    )
    for run, shows in zip(result["runs"], HELP_SHOWS.values(), strict=True):
        argv = run["argv"]
        command = next(word for word in argv if not word.startswith("-"))
        assert run["code"] == 0, argv
        assert f"usage: lungcad {command}" in run["help"], argv
        missing = [option for option in shows if option not in run["help"]]
        assert not missing, (argv, missing)
        loaded = [m for m in run["new"] if m.startswith("lungcad.cli.")]
        assert set(loaded) <= {f"lungcad.cli.{command}", "lungcad.cli.options"}, (argv, loaded)
    assert _heavy(result["modules"]) == []


def test_top_level_help_lists_every_command_with_its_one_line_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps long help lines
    for name, help_text in COMMANDS.items():
        assert f"{name} {help_text}" in text


def test_command_table_matches_the_help_each_module_registers():
    # the full parser (every module's add_parser) and the placeholders give the same top-level help
    assert build_parser().format_help() == build_parser([]).format_help()


def test_no_command_prints_help_and_unknown_command_is_refused(capsys):
    assert main([]) == 2
    assert "inspect" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["inspekt", "x"])
    assert exc.value.code == 2 and "invalid choice: 'inspekt'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "command"),
    [(["--help"], None), (["-v", "-q", "detect", "x"], "detect"), (["train", "unet"], "train"), (["x"], None)],
)
def test_command_in(argv, command):
    assert command_in(argv) == command
