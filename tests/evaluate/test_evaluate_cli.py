"""``lungcad evaluate froc|dsb`` end to end, and the config file."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from lungcad.cli.main import main
from lungcad.evaluate import EvaluateConfig, load_evaluate_config

ANN = "seriesuid,coordX,coordY,coordZ,diameter_mm\na,0,0,0,10\na,40,0,0,4\nb,0,0,0,22\n"
EXC = "seriesuid,coordX,coordY,coordZ,diameter_mm\nb,60,0,0,-1\n"
CAND = (
    "seriesuid,coordX,coordY,coordZ,probability\n"
    "a,1,0,0,0.9\na,2,0,0,0.3\nb,61,0,0,0.95\nb,-80,0,0,0.8\nc,0,0,0,0.5\nb,3,0,0,0.4\n"
)
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def froc_files(write):
    return [
        "--annotations", str(write("annotations.csv", ANN)),
        "--excluded", str(write("annotations_excluded.csv", EXC)),
        "--candidates", str(write("candidates.csv", CAND)),
        "--seriesuids", str(write("seriesuids.csv", "a\nb\nc\nd\n")),
    ]  # fmt: skip


def test_froc_writes_all_outputs_and_prints_a_summary(froc_files, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["evaluate", "froc", *froc_files, "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "CPM" in text and "nodules 3, detected 2" in text and "scans 4" in text
    for name in ("froc.png", "froc.csv", "froc.json", "froc_curve.csv", "nodules.csv", "missed_nodules.csv",
                 "false_positives.csv", "ignored_marks.csv", "sensitivity_by_size.csv"):  # fmt: skip
        assert (out / name).is_file(), name
    assert (out / "froc.png").read_bytes()[:8] == PNG
    assert not list(out.glob(".tmp-*"))
    missed = pd.read_csv(out / "missed_nodules.csv")
    assert missed[["seriesuid", "diameter_mm"]].values.tolist() == [["a", 4.0]]
    nodules = pd.read_csv(out / "nodules.csv")
    assert nodules["detected"].tolist() == [1, 0, 1] and nodules["probability"].iloc[0] == 0.9
    fps = pd.read_csv(out / "false_positives.csv")
    assert fps["probability"].tolist() == [0.8, 0.5]  # the excluded hit (0.95) and double hit are not FPs
    ignored = pd.read_csv(out / "ignored_marks.csv").set_index("probability")["reason"]
    assert ignored.to_dict() == {0.3: "double_hit", 0.95: "excluded_hit"}
    table = pd.read_csv(out / "froc.csv", keep_default_na=False)
    assert table["point"].tolist() == ["0.125", "0.25", "0.5", "1", "2", "4", "8", "CPM"]


def test_froc_json_is_parseable(froc_files, tmp_path, capsys):
    assert main(["evaluate", "froc", *froc_files, "-o", str(tmp_path / "o"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    # curve: a 0.9 TP (0, 1/3); b 0.8 FP (1/4, 1/3); c 0.5 FP (1/2, 1/3); b 0.4 TP (1/2, 2/3)
    assert data["sensitivity"] == pytest.approx({"0.125": 1 / 3, "0.25": 1 / 3, "0.5": 2 / 3, "1": 2 / 3,
                                                  "2": 2 / 3, "4": 2 / 3, "8": 2 / 3})  # fmt: skip
    assert data["cpm"] == pytest.approx((1 / 3 * 2 + 2 / 3 * 5) / 7)
    assert data["nodules"] == 3 and data["detected"] == 2 and data["scans"] == 4
    assert data["by_size"]["10-20"]["nodules"] == 1 and data["by_size"][">=20"]["detected"] == 1
    assert data["by_size"][">=20"]["max_mm"] is None  # infinity is not JSON
    assert data["bootstrap"] is None
    assert json.loads((tmp_path / "o" / "froc.json").read_text()) == data


def test_froc_bootstrap_option(froc_files, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["evaluate", "froc", *froc_files, "-o", str(out), "--json", "--bootstrap", "50", "--seed", "3"]) == 0
    boot = json.loads(capsys.readouterr().out)["bootstrap"]
    assert boot["samples"] == 50 and boot["seed"] == 3 and boot["confidence"] == 0.95
    assert boot["cpm"]["low"] <= boot["cpm"]["mean"] <= boot["cpm"]["high"]
    assert set(boot["sensitivity"]) == {"0.125", "0.25", "0.5", "1", "2", "4", "8"}
    assert (out / "froc_bootstrap.csv").is_file()
    assert {"bootstrap_mean", "ci_low", "ci_high"} <= set(pd.read_csv(out / "froc.csv").columns)


def test_froc_errors_are_one_line_with_exit_code(write, tmp_path, capsys):
    ann = write("a.csv", ANN)
    cand = write("c.csv", "seriesuid,coordX,coordY,coordZ,class\na,0,0,0,1\n")
    code = main(["evaluate", "froc", "--annotations", str(ann), "--candidates", str(cand), "-o", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "--score-column class" in err and str(cand) in err
    assert main(["evaluate", "froc", "--annotations", str(ann), "--candidates", str(cand), "-o", str(tmp_path),
                 "--score-column", "class", "--json"]) == 0  # fmt: skip
    assert main(["evaluate", "froc", "--annotations", str(ann), "--candidates", str(cand), "-o", str(tmp_path),
                 "--score-column", "class", "--bootstrap", "-1"]) == 2  # fmt: skip


def test_froc_max_marks_and_ignore_unknown_ids(froc_files, write, tmp_path, capsys):
    files = [*froc_files]
    files[files.index("--seriesuids") + 1] = str(write("s2.csv", "a\nb\n"))
    assert main(["evaluate", "froc", *files, "-o", str(tmp_path / "o")]) == 1
    assert "not in the series list: 'c'" in capsys.readouterr().err
    assert main(["evaluate", "froc", *files, "-o", str(tmp_path / "o"), "--ignore-unknown-ids", "--json",
                 "--max-marks", "1"]) == 0  # fmt: skip
    data = json.loads(capsys.readouterr().out)
    assert data["max_marks_per_scan"] == 1 and data["dropped_over_max_marks"] == 3 and data["scans"] == 2


def test_dsb_cli_writes_outputs_beside_predictions_by_default(write, tmp_path, capsys):
    labels = write("stage1_labels.csv", "id,cancer\np1,1\np2,0\np3,0\np4,1\n")
    preds = write("patients.csv", "id,cancer\np1,0.9\np2,0.2\np3,0.0\np4,0.6\n")
    assert main(["evaluate", "dsb", "--labels", str(labels), "--predictions", str(preds), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["n"] == 4 and data["auc"] == 1.0
    assert data["base_rate_log_loss"] == pytest.approx(0.6931471805599453)
    assert (tmp_path / "dsb.json").is_file() and (tmp_path / "calibration.png").read_bytes()[:8] == PNG
    out = tmp_path / "elsewhere"
    assert main(["evaluate", "dsb", "--labels", str(labels), "--predictions", str(preds), "-o", str(out)]) == 0
    assert "log loss" in capsys.readouterr().out and (out / "calibration.csv").is_file()


def test_evaluate_needs_a_subcommand():
    with pytest.raises(SystemExit) as info:
        main(["evaluate"])
    assert info.value.code == 2


def test_bundled_config_equals_defaults(write):
    assert load_evaluate_config() == EvaluateConfig()
    assert load_evaluate_config(None) == EvaluateConfig()
    from lungcad.errors import ConfigError

    with pytest.raises(ConfigError, match="froc.max_mark"):
        load_evaluate_config(write("bad.yaml", "froc:\n  max_mark: 5\n"))
    with pytest.raises(ConfigError, match="strictly increasing"):
        load_evaluate_config(write("bad2.yaml", "froc:\n  operating_points: [1, 0.5]\n"))


KINDS = (
    "id,coordX,coordY,coordZ,diameter_mm,type,location,excluded\n"
    "a,0.0,0.0,0.2,10,solid,juxtapleural,0\n"
    "a,40,0,0,4,ggo,intraparenchymal,0\n"
    "b,0,0,30,22,calcified,juxtapleural,0\n"  # 30 mm from b's nodule: not its row
)


def test_froc_sensitivity_by_nodule_kind(froc_files, write, tmp_path, capsys):
    out, kinds = tmp_path / "out", write("nodules.csv", KINDS)
    assert main(["evaluate", "froc", *froc_files, "-o", str(out), "--nodules", str(kinds)]) == 0
    text = capsys.readouterr().out
    assert "by type: ggo 0/1, solid 1/1, unknown 1/1" in text
    assert "by location: intraparenchymal 0/1, juxtapleural 1/1, unknown 1/1" in text
    table = pd.read_csv(out / "sensitivity_by_kind.csv").set_index(["attribute", "value"])
    assert set(table.index.get_level_values(0)) == {"type", "location"}  # 'excluded' has one value: no attribute
    assert table.loc[("type", "ggo"), "cpm"] == 0.0 and table.loc[("type", "solid"), "sens_8"] == 1.0
    assert main(["evaluate", "froc", *froc_files, "-o", str(out), "--nodules", str(kinds), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["by_kind"]
    assert {(r["attribute"], r["value"], r["detected"]) for r in rows} >= {("type", "unknown", 1), ("type", "ggo", 0)}


def test_froc_nodule_kinds_without_attributes_is_a_one_line_error(froc_files, write, tmp_path, capsys):
    kinds = write("kinds.csv", "seriesuid,coordX,coordY,coordZ,diameter_mm\na,0,0,0,10\n")
    assert main(["evaluate", "froc", *froc_files, "-o", str(tmp_path / "o"), "--nodules", str(kinds)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no attribute column" in err and str(kinds) in err


def test_froc_by_kind_leaves_out_an_attribute_all_evaluated_nodules_share(froc_files, write, tmp_path, capsys):
    kinds = write(
        "nodules.csv",
        "id,coordX,coordY,coordZ,type,excluded\na,0,0,0,solid,0\na,40,0,0,ggo,0\nb,0,0,0,solid,0\nc,5,5,5,solid,1\n",
    )  # 'excluded' varies in the file (c has no annotation) but not over the evaluated nodules
    assert main(["evaluate", "froc", *froc_files, "-o", str(tmp_path / "o"), "--nodules", str(kinds)]) == 0
    text = capsys.readouterr().out
    assert "by type: ggo 0/1, solid 2/2" in text and "by excluded" not in text
    only_c = write("only_c.csv", "id,coordX,coordY,coordZ,type\nc,5,5,5,solid\nc,9,9,9,ggo\n")  # no nodule matches
    assert main(["evaluate", "froc", *froc_files, "-o", str(tmp_path / "p"), "--nodules", str(only_c)]) == 0
    table = pd.read_csv(tmp_path / "p" / "sensitivity_by_kind.csv")
    assert table.empty and {"attribute", "value", "cpm"} <= set(table.columns)  # all 'unknown': nothing to compare
