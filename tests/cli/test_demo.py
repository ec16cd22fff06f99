"""``lungcad demo`` end to end with the bundled models on two small phantoms."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from helpers import read_strict_json

from lungcad.cli.main import main


@pytest.mark.slow
def test_demo_runs_the_bundled_pipeline_and_scores_it(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--scans", "2", "--size", "128"]) == 0
    printed = capsys.readouterr().out
    summary = read_strict_json(out / "demo.json")
    assert f"{summary['detected']}/{summary['nodules']} nodules found" in printed
    assert 0 <= summary["detected"] <= summary["nodules"] and 0.0 <= summary["cpm"] <= 1.0
    assert (out / "froc" / "froc.png").exists() and (out / "detect" / "index.html").exists()
    # a rerun resumes: nothing is generated or detected again
    assert main(["demo", "-o", str(out), "--scans", "2", "--size", "128"]) == 0
    assert read_strict_json(out / "demo.json") == summary


SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "luna16"


@pytest.mark.slow
@pytest.mark.skipif(not SAMPLE.is_dir(), reason="sample_data not generated")
def test_demo_scores_a_given_luna16_folder(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--data", str(SAMPLE)]) == 0
    summary = read_strict_json(out / "demo.json")
    assert summary["scans"] == 1 and summary["data"] == str(SAMPLE)
    assert summary["nodules"] == len(pd.read_csv(SAMPLE / "annotations.csv"))
    assert summary["patients"] == 1 and summary["with_cancer"] == 1  # scored with cancer_labels.csv
    assert summary["auc"] is None  # one patient: no AUC, written as null (strict JSON), not NaN
    assert not (out / "data").exists()  # nothing generated
    assert str(SAMPLE) in capsys.readouterr().out


def test_demo_refuses_a_folder_without_annotations(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path / "demo"), "--data", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    assert "annotations.csv" in err and str(tmp_path) in err
