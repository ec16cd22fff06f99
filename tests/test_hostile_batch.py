"""Hostile batch inputs (#33): one bad scan never stops the others, nothing is lost, nothing is written outside OUT.

The scan-name cases are one table (:data:`CASES`): a row crafts its input under ``tmp_path / "in"`` and says which
scan ids ``lungcad detect`` must finish; every row is checked the same way (:func:`check_outputs`). The output
folder's own failures (read-only, locked by another run) have their own tests below.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from helpers import simple_chest

from lungcad.batch import LOCK_NAME, output_folder, read_errors
from lungcad.cli.main import main
from lungcad.errors import OutputBusyError
from lungcad.fileio import MAX_STEM_BYTES, NAME_MAX, safe_stem, write_text_atomic
from lungcad.io import find_scans, load_scan, scan_id, write_dicom_series, write_mhd

ROOT = Path(__file__).resolve().parents[1]

#: What a detect batch may write at OUT's top level (anything else, e.g. a ``..`` scan's pictures, is a leak).
OUT_TOP = {"candidates.csv", "errors.csv", "index.html", "patients.csv", "scans", "pictures", "sr", LOCK_NAME}

LONG = "L" * 250
NON_UTF8 = os.fsdecode(b"bad\xff\xfe")  # a folder name that is not UTF-8 (surrogate escapes in Python)


@dataclass(frozen=True)
class Crafted:
    inputs: list[str]  # the command line's inputs
    ids: list[str]  # the ids of the scans that must be finished
    cwd: Path | None = None  # run from here (``lungcad detect .``)


@dataclass(frozen=True)
class Case:
    id: str
    craft: Callable[[Path], Crafted]  # builds the input under the given folder
    exit_code: int
    phrase: str  # in the printed summary


def _chest(seed: int = 1):
    return simple_chest(seed=seed)[0]


def _non_utf8_folder_among_others(root: Path) -> Crafted:
    write_mhd(_chest(1), root / "a_first.mhd")
    write_dicom_series(_chest(2), root / NON_UTF8)
    write_mhd(_chest(3), root / "z_last.mhd")
    return Crafted([str(root)], ["a_first", "bad\\xff\\xfe", "z_last"])


def _dot_inside_the_scan_folder(root: Path) -> Crafted:
    write_dicom_series(_chest(1), root / "patientA")
    return Crafted(["."], ["patientA"], cwd=root / "patientA")


def _folder_then_dotdot(root: Path) -> Crafted:
    write_dicom_series(_chest(1), root / "patientB")
    (root / "patientB" / "x").mkdir()
    write_mhd(_chest(2), root / "other" / "1.2.3.mhd")
    return Crafted([str(root / "patientB" / "x" / ".."), str(root / "other")], ["patientB", "1.2.3"])


def _name_of_250_characters(root: Path) -> Crafted:
    write_dicom_series(_chest(1), root / LONG)
    write_mhd(_chest(2), root / f"{'M' * 240}.mhd")
    return Crafted([str(root)], [LONG, "M" * 240])


CASES = [
    Case("non-utf8-folder", _non_utf8_folder_among_others, 0, "3 scans done, 0 already done, 0 failed"),
    Case("dot", _dot_inside_the_scan_folder, 0, "1 scan done"),
    Case("dotdot", _folder_then_dotdot, 0, "2 scans done"),
    Case("long-name", _name_of_250_characters, 0, "2 scans done"),
]


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def check_outputs(out: Path, ids: list[str]) -> None:
    """Every scan of ``ids`` finished under its safe file stem, the tables hold the full ids, and OUT holds nothing
    but its own files."""
    assert {p.name for p in out.iterdir()} <= OUT_TOP
    table = pd.read_csv(out / "candidates.csv", dtype={"seriesuid": str}, encoding="utf-8")
    assert set(table.seriesuid) == set(ids), "every scan's candidates reach candidates.csv (confident model)"
    for sid in ids:
        stem = safe_stem(sid)
        assert len(os.fsencode(stem)) <= MAX_STEM_BYTES and "/" not in stem and not stem.startswith(".")
        record = json.loads((out / "scans" / f"{stem}.json").read_text(encoding="utf-8"))
        assert record["id"] == sid and record["pictures"]["overview"].startswith(f"{stem}/")
        assert len(pd.read_csv(out / "scans" / f"{stem}.csv")) == (table.seriesuid == sid).sum() > 0
        assert (out / "pictures" / stem / "overview.png").is_file()
    assert len(list((out / "scans").glob("*.json"))) == len(ids)
    assert read_errors(out / "errors.csv") == {}
    for p in out.rglob("*"):
        assert len(os.fsencode(p.name)) <= NAME_MAX and not p.name.startswith(".tmp-")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_scan_names_in_a_detect_batch(case, tmp_path, confident_model, capsys, monkeypatch):
    crafted = case.craft(tmp_path / "in")
    out = tmp_path / "out"
    if crafted.cwd is not None:
        monkeypatch.chdir(crafted.cwd)
    before = _files(tmp_path)
    argv = ["detect", *crafted.inputs, "-o", str(out), "--model", str(confident_model), "--stage", "candidates"]
    code = main(argv)
    printed = capsys.readouterr()
    assert code == case.exit_code, printed.err
    assert case.phrase in printed.out and "Traceback" not in printed.err
    check_outputs(out, crafted.ids)
    assert {p for p in _files(tmp_path) - before if out not in p.parents and p != out} == set(), "outside OUT"
    # a rerun finds every scan finished under the same name
    assert main(argv) == case.exit_code
    assert f"0 scans done, {len(crafted.ids)} already done" in capsys.readouterr().out


def test_a_failing_non_utf8_scan_is_recorded_and_the_batch_goes_on(tmp_path, confident_model, capsys):
    """The old batch died writing errors.csv (UnicodeEncodeError) when a failing scan's path was not UTF-8, and
    SimpleITK aborts the whole process (std::logic_error) when given such a name: refused before, recorded."""
    write_mhd(_chest(1), tmp_path / "in" / "a_first.mhd")
    good = write_mhd(_chest(2), tmp_path / "in" / "renamed.mhd")  # SimpleITK cannot write a non-UTF-8 name
    good.rename(tmp_path / "in" / f"{NON_UTF8}.mhd")  # its data file keeps its name (renamed.raw)
    write_mhd(_chest(3), tmp_path / "in" / "z_last.mhd")
    out = tmp_path / "out"
    argv = ["detect", str(tmp_path / "in"), "-o", str(out), "--model", str(confident_model), "--stage", "candidates"]
    assert main(argv) == 3
    assert "2 scans done, 0 already done, 1 failed" in capsys.readouterr().out
    errors = read_errors(out / "errors.csv")
    assert list(errors) == ["bad\\xff\\xfe"] and "bad\\xff\\xfe.mhd" in errors["bad\\xff\\xfe"][0]
    assert "bad\\xff\\xfe.mhd: the file name is not valid UTF-8" in errors["bad\\xff\\xfe"][1]
    assert set(pd.read_csv(out / "candidates.csv", encoding="utf-8").seriesuid) == {"a_first", "z_last"}


# ------------------------------------------------------------------------------------------ ids and file stems
@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("scans/1.2.3.mhd", "1.2.3"),
        ("scans/case.nii.gz", "case"),
        ("dsb/patientA", "patientA"),
        ("dsb/patientA/x/..", "patientA"),
        ("dsb/patientA/.", "patientA"),
        ("scans/.mhd", ".mhd"),
        (os.fsdecode(b"dsb/bad\xff"), "bad\\xff"),
        ("/", "scan"),
    ],
)
def test_scan_id_is_never_empty_or_a_path_component(path, expected, tmp_path, monkeypatch):
    (tmp_path / "dsb" / "patientA" / "x").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert scan_id(path) == expected
    if path == "dsb/patientA/x/..":
        monkeypatch.chdir(tmp_path / "dsb" / "patientA")
        assert scan_id(".") == scan_id("") == "patientA"


def test_discovery_and_load_agree_on_dot_ids(tmp_path, monkeypatch, make_scan):
    write_dicom_series(make_scan(shape=(3, 8, 8)), tmp_path / "patientA")
    monkeypatch.chdir(tmp_path / "patientA")
    (tmp_path / "patientA" / "x").mkdir()
    for given in (".", "x/..", "../patientA/."):
        assert [(r.id, load_scan(r.path).id) for r in find_scans([given])] == [("patientA", "patientA")]


HOSTILE_IDS = ["..", ".", "", "a/b", "../../escape", "/abs", ".lock", "x" * 300, "é" * 200, NON_UTF8, "a\\b", "a\nb"]


def test_safe_stem_keeps_files_inside_their_folder_and_distinct():
    stems = [safe_stem(i) for i in HOSTILE_IDS]
    assert len(set(stems)) == len(stems)
    for stem in stems:
        assert stem and "/" not in stem and "\\" not in stem and "\n" not in stem and not stem.startswith(".")
        assert len(stem.encode("utf-8")) <= MAX_STEM_BYTES
    assert [safe_stem(i) for i in ("1.2.3", "patientA", "ÄÖ-1", "M" * MAX_STEM_BYTES)] == [
        "1.2.3",
        "patientA",
        "ÄÖ-1",
        "M" * MAX_STEM_BYTES,
    ]


def test_atomic_writes_of_long_names_and_non_utf8_text(tmp_path):
    path = write_text_atomic(tmp_path / ("N" * 250 + ".csv"), f"id\n{NON_UTF8}\n")
    assert path.read_text(encoding="utf-8") == "id\nbad\\xff\\xfe\n" and os.listdir(tmp_path) == [path.name]


def test_detect_writers_keep_hostile_ids_inside_out(tmp_path, confident_model):
    """API users name scans as they like: every writer goes through safe_stem, the tables keep the full ids."""
    from lungcad.config import load_config
    from lungcad.pipeline.models import model_set
    from lungcad.pipeline.run import detect_scan
    from lungcad.pipeline.writers import is_finished, write_batch_tables, write_scan_result
    from lungcad.preprocess import PreprocessConfig, preprocess_scan, save_preprocessed
    from lungcad.preprocess.pipeline import cache_folder, load_preprocessed

    models = model_set("candidates", confident_model)
    scan = _chest(1)
    out, cache = tmp_path / "deep" / "out", tmp_path / "deep" / "cache"
    before = _files(tmp_path)
    ids = ["..", "a/b", "../../escape", "x" * 300, ".lock"]
    result = detect_scan(scan, models)
    config = dataclasses.replace(load_config(PreprocessConfig, "preprocess"), target_spacing_mm=None)
    for sid in ids:
        named = dataclasses.replace(
            result, scan=scan.with_array(scan.array, id=sid), candidates=result.candidates.assign(seriesuid=sid)
        )
        write_scan_result(
            named,
            out,
            path=tmp_path / "in",
            models=models.record(),
        )
        assert is_finished(out, sid, models.record())
    write_batch_tables(out)
    check_outputs(out, ids)
    for sid in ids[:2]:
        folder = save_preprocessed(preprocess_scan(scan.with_array(scan.array, id=sid), config), cache)
        assert folder == cache_folder(cache, sid) and folder.parent == cache
        assert load_preprocessed(folder).scan.id == sid
    new = _files(tmp_path) - before
    assert new and all(p == out.parent or out.parent in p.parents for p in new), "a file outside OUT"


# ------------------------------------------------------------------------------------------ the output folder
@contextlib.contextmanager
def read_only(folder: Path):
    """``folder`` made read-only: chmod, or for root (who writes anywhere) the immutable attribute."""
    folder.chmod(0o555)
    immutable = os.geteuid() == 0
    if immutable and subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        folder.chmod(0o755)
        pytest.skip("root, and chattr +i does not work here: no way to make a folder read-only")
    try:
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


def _no_scan_may_be_read(*args, **kwargs):
    raise AssertionError("a scan was looked for before the output folder was checked")


@pytest.mark.parametrize("command", ["detect", "preprocess"])
def test_a_read_only_output_folder_fails_before_any_scan_is_read(command, tmp_path, capsys, monkeypatch):
    """Old code: the first scan computed (~20 s), then a traceback."""
    monkeypatch.setattr("lungcad.pipeline.batch.find_scans", _no_scan_may_be_read)
    monkeypatch.setattr("lungcad.preprocess.pipeline.find_scans", _no_scan_may_be_read)
    write_mhd(_chest(1), tmp_path / "in" / "1.2.3.mhd")
    out = tmp_path / "out"
    out.mkdir()
    model = ["--model", str(tmp_path / "no-model")] if command == "detect" else []
    with read_only(out):
        assert main([command, str(tmp_path / "in"), "-o", str(out), *model]) == 1
        err = capsys.readouterr().err
        assert err.splitlines() == [
            f"lungcad: error: {out}: the output folder cannot be written "
            f"({os.strerror(errno.EPERM if os.geteuid() == 0 else errno.EACCES)}); "
            "fix: choose a writable folder with -o, or make this one writable"
        ], err
        assert list(out.iterdir()) == []


def test_an_output_folder_that_is_a_file_is_refused(tmp_path, capsys):
    write_mhd(_chest(1), tmp_path / "in" / "1.2.3.mhd")
    (tmp_path / "out").write_text("not a folder")
    assert main(["preprocess", str(tmp_path / "in"), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path / 'out'}: the output folder cannot be written" in err


HOLDER = textwrap.dedent(
    """
    import sys, time
    from lungcad.batch import output_folder

    with output_folder(sys.argv[1], "lungcad detect"):
        print("locked", flush=True)
        time.sleep(120)
    """
)


def test_two_runs_on_one_output_folder(tmp_path, confident_model, capsys):
    """The second run fails at once naming the first (pid, start time); it computes nothing and erases nothing.
    Once the first is gone (even killed: flock dies with its process), the folder is free again."""
    write_mhd(_chest(1), tmp_path / "in" / "1.2.3.mhd")
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        (out / "errors.csv").write_text("id,path,error\nold,x,the first run's row\n")
        detect = ["detect", str(tmp_path / "in"), "-o", str(out), "--model", str(confident_model)]
        for argv in (detect + ["--stage", "candidates"], ["preprocess", str(tmp_path / "in"), "-o", str(out)]):
            assert main(argv) == 1
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "Traceback" not in err, err
            assert f"{out}: another lungcad run is writing to this folder: pid {holder.pid} (lungcad detect) " in err
            assert "started 20" in err and "fix: wait until it ends, or write to another folder with -o" in err
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME, "errors.csv"]
        assert read_errors(out / "errors.csv") == {"old": ("x", "the first run's row")}
    finally:
        holder.kill()
        holder.wait()
    assert (
        main(["detect", str(tmp_path / "in"), "-o", str(out), "--model", str(confident_model), "--stage", "candidates"])
        == 0
    )
    assert "1 scan done" in capsys.readouterr().out


def test_the_lock_is_held_within_one_process_too(tmp_path):
    busy = rf"pid {os.getpid()} \(lungcad preprocess\) started"
    with (
        output_folder(tmp_path / "out", "lungcad preprocess"),
        pytest.raises(OutputBusyError, match=busy),
        output_folder(tmp_path / "out"),
    ):
        pass
    with output_folder(tmp_path / "out"):
        pass
