"""A quiet command line: stderr holds lungcad's lines only, arguments are checked before TensorFlow loads, one
scan's stages are logged, the same bad file's exit code in inspect (1) and a detect batch (3), and training's
--data on a dataset root."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import simple_chest, tiny_detector_config

from lungcad.cli.main import main
from lungcad.io import write_mhd
from lungcad.tfquiet import ENV_FLAG, QUIET_ENV

ROOT = Path(__file__).resolve().parents[2]
#: what lungcad itself writes to stderr: its log lines and its one-line errors and warnings
OURS = ("INFO lungcad", "WARNING lungcad", "ERROR lungcad", "lungcad: ")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from lungcad.candidates.unet import build_unet
    from lungcad.config import load_config
    from lungcad.pipeline.detector import CandidateDetector
    from lungcad.train.candidates.train import UNetTrainConfig

    detector = tiny_detector_config(load_config(UNetTrainConfig, "unet").detector)
    return CandidateDetector(build_unet(detector.model), detector).save(tmp_path_factory.mktemp("model"))


def _small_scan(path: Path, seed: int = 1) -> Path:
    return write_mhd(simple_chest(shape=(24, 48, 48), seed=seed)[0], path)


def _lungcad(*argv: str) -> subprocess.CompletedProcess:
    """``lungcad ARGV`` from this checkout in a fresh process, with the environment a user's shell has."""
    env = {k: v for k, v in os.environ.items() if k not in (ENV_FLAG, *QUIET_ENV)}
    code = "import sys; from lungcad.cli.main import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=ROOT, timeout=600, env=env
    )


def test_detect_stderr_holds_only_lungcad_lines_also_from_workers(tmp_path, tiny_model):
    for i, name in enumerate(("a", "b")):
        _small_scan(tmp_path / "in" / f"{name}.mhd", seed=i)
    run = _lungcad(
        "detect", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(tiny_model),
        "--stage", "candidates", "--no-pictures", "--workers", "2",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "2 scans done" in run.stdout
    foreign = [line for line in run.stderr.splitlines() if not line.startswith(OURS)]
    assert foreign == []
    for word in ("E0000", "cuda", "oneDNN", "absl"):
        assert word not in run.stderr


# lungcad detect, its first preprocess held until TensorFlow is being imported beside it (fd 2 redirected, unless
# -v), when one lungcad log line is written: it must reach stderr
DURING_IMPORT = """
import logging, os, sys, time
import lungcad.pipeline.batch as batch
from lungcad.cli.main import main

preprocess = batch.preprocess_for
STDERR = os.fstat(2)  # what file descriptor 2 is before TensorFlow's loader moves it

def redirected():
    now = os.fstat(2)
    return (now.st_dev, now.st_ino) != (STDERR.st_dev, STDERR.st_ino)

def preprocess_for(*args, **kwargs):
    verbose = "-v" in sys.argv
    end = time.monotonic() + 60
    while time.monotonic() < end and not ("tensorflow" in sys.modules if verbose else redirected()):
        time.sleep(0.01)
    logging.getLogger("lungcad.probe").warning("a line of ours while TensorFlow loads")
    print("REDIRECTED", redirected(), flush=True)
    return preprocess(*args, **kwargs)

batch.preprocess_for = preprocess_for
sys.exit(main(["detect", *sys.argv[1:]]))
"""


def test_our_log_lines_reach_stderr_while_tensorflow_loads_beside_them_and_its_own_do_not(tmp_path, tiny_model):
    scan = _small_scan(tmp_path / "a.mhd")
    env = {k: v for k, v in os.environ.items() if k not in (ENV_FLAG, *QUIET_ENV)}
    runs = {}
    for flags in ((), ("-v",)):
        argv = [str(scan), "-o", str(tmp_path / f"out{len(flags)}"), "--model", str(tiny_model), "--no-pictures",
                "--stage", "candidates", *flags]  # fmt: skip
        runs[flags] = run = subprocess.run(
            [sys.executable, "-c", DURING_IMPORT, *argv], capture_output=True, text=True, cwd=ROOT, timeout=600, env=env
        )
        assert run.returncode == 0, run.stderr[-3000:]
        assert "WARNING lungcad.probe: a line of ours while TensorFlow loads" in run.stderr
    quiet, loud = runs[()], runs[("-v",)]
    assert "REDIRECTED True" in quiet.stdout  # the line was written while TensorFlow's loader held fd 2
    assert [line for line in quiet.stderr.splitlines() if not line.startswith(OURS)] == []
    assert "REDIRECTED False" in loud.stdout
    assert [line for line in loud.stderr.splitlines() if not line.startswith(OURS)]  # TensorFlow's own lines


def test_a_missing_input_or_model_is_reported_before_tensorflow_loads(tmp_path):
    scan = _small_scan(tmp_path / "a.mhd")
    code = f"""
        import contextlib, io, json, sys
        from lungcad.cli.main import main
        runs = []
        for argv in ({["detect", str(tmp_path / "nope.mhd"), "-o", str(tmp_path / "o")]!r},
                     {["detect", str(scan), "-o", str(tmp_path / "o"), "--model", "/nope"]!r},
                     {["detect", str(scan), "-o", str(tmp_path / "o"), "--fpr-model", str(tmp_path / "no")]!r}):
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                code = main(argv)
            runs.append({{"code": code, "err": err.getvalue(), "tf": "tensorflow" in sys.modules}})
        print(json.dumps(runs))
        """
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert out.returncode == 0, out.stderr
    missing, model, fpr = json.loads(out.stdout.splitlines()[-1])
    assert missing["code"] == 1 and "nope.mhd: no such file or folder" in missing["err"]
    assert model["code"] == 2 and "/nope: no such model directory" in model["err"]
    assert fpr["code"] == 2 and "'lungcad train fpr'" in fpr["err"]
    assert not (missing["tf"] or model["tf"] or fpr["tf"])


def test_one_scan_logs_its_stages_and_a_bad_file_exits_1_in_inspect_3_in_a_detect_batch(tmp_path, tiny_model, capsys):
    scan = _small_scan(tmp_path / "in" / "1.2.3.mhd")
    args = ["-o", str(tmp_path / "out"), "--model", str(tiny_model), "--stage", "candidates", "--no-pictures"]
    assert main(["detect", str(scan), *args]) == 0
    err = capsys.readouterr().err
    for stage in ("1.2.3: reading", "1.2.3: read done", "1.2.3: preprocess (resample, lung mask) done in",
                  "1.2.3: U-Net and merge done in"):  # fmt: skip
        assert stage in err
    assert "\r" not in err
    bad = _small_scan(tmp_path / "bad" / "9.mhd")
    bad.with_suffix(".raw").write_bytes(b"\0" * 10)
    assert main(["inspect", str(bad)]) == 1
    assert "truncated" in capsys.readouterr().err
    assert main(["detect", str(bad), *args]) == 3
    assert "1 failed" in capsys.readouterr().out


def test_train_data_accepts_a_synth_root_and_says_which_folder(tmp_path, monkeypatch, capsys):
    import lungcad.train.candidates.train as unet_train
    import lungcad.train.risk.train as risk_train

    root = tmp_path / "synth"
    assert main(["synth", "-o", str(root), "--scans", "2", "--seed", "1", "--size", "48", "--max-slices", "16"]) == 0
    seen = {}

    class Result:
        best = {"val_loss": 1.0}

    def fake_train(data, output, config, **kwargs):
        seen["unet"] = data
        return Result()

    def fake_risk(data, labels, output, config, **kwargs):
        seen["risk"] = data
        auc = {"folds": 2, "log_loss": 0.5, "base_rate_log_loss": 0.6, "auc": None, "per_fold": []}
        return {"patients": 2, "positives": 1, "cv": auc}

    monkeypatch.setattr(unet_train, "train_unet", fake_train)
    monkeypatch.setattr(risk_train, "train_risk", fake_risk)
    capsys.readouterr()
    assert main(["train", "unet", "--data", str(root), "-o", str(tmp_path / "m")]) == 0
    assert seen["unet"] == str(root / "luna16")
    assert f"--data {root}: using {root / 'luna16'}" in capsys.readouterr().err
    labels = str(root / "dsb2017" / "stage1_labels.csv")
    assert main(["train", "risk", "--data", str(root), "--labels", labels, "-o", str(tmp_path / "r")]) == 0
    assert seen["risk"] == str(root / "dsb2017" / "stage1")
    assert f"using {root / 'dsb2017' / 'stage1'}" in capsys.readouterr().err
    assert main(["train", "unet", "--data", str(root / "luna16"), "-o", str(tmp_path / "m")]) == 0
    assert seen["unet"] == str(root / "luna16") and "using" not in capsys.readouterr().err
    (tmp_path / "two" / "x" / "luna16").mkdir(parents=True)
    (tmp_path / "two" / "x" / "luna16" / "annotations.csv").write_text("")
    (tmp_path / "two" / "y" / "luna16").mkdir(parents=True)
    (tmp_path / "two" / "y" / "luna16" / "annotations.csv").write_text("")
    assert main(["train", "unet", "--data", str(tmp_path / "two"), "-o", str(tmp_path / "m")]) == 1
    assert "2 luna16/ datasets in this folder" in capsys.readouterr().err
