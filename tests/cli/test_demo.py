"""``lungcad demo`` end to end with the bundled models on two small phantoms."""

from __future__ import annotations

import json

import pytest

from lungcad.cli.main import main


@pytest.mark.slow
def test_demo_runs_the_bundled_pipeline_and_scores_it(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--scans", "2", "--size", "128"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "demo.json").read_text())
    assert f"{summary['detected']}/{summary['nodules']} nodules found" in printed
    assert 0 <= summary["detected"] <= summary["nodules"] and 0.0 <= summary["cpm"] <= 1.0
    assert (out / "froc" / "froc.png").exists() and (out / "detect" / "index.html").exists()
    # a rerun resumes: nothing is generated or detected again
    assert main(["demo", "-o", str(out), "--scans", "2", "--size", "128"]) == 0
    assert json.loads((out / "demo.json").read_text()) == summary
