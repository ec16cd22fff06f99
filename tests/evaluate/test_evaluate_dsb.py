"""DSB 2017 scoring: Kaggle log loss with clipping, base rate, AUC, id checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import read_strict_json

from lungcad.errors import DataLayoutError
from lungcad.evaluate import (
    auc,
    base_rate_log_loss,
    calibration_table,
    compute_dsb_files,
    log_loss,
    write_dsb_outputs,
)


def test_log_loss_equals_hand_computation():
    y = [1, 0, 1, 0]
    p = [0.8, 0.3, 0.6, 0.1]
    hand = -(math.log(0.8) + math.log(0.7) + math.log(0.6) + math.log(0.9)) / 4
    assert log_loss(y, p) == pytest.approx(hand, rel=1e-15)


def test_prediction_zero_for_a_positive_is_clipped_not_infinite():
    value = log_loss([1, 0], [0.0, 0.0])
    assert math.isfinite(value)
    assert value == pytest.approx(-math.log(1e-15) / 2)  # the negative adds -ln(1 - 1e-15) ~ 1e-15
    # a certain "no cancer" miss is clipped to 1 - 1e-15 (in float: 1 - 0.999999999999999)
    assert log_loss([0], [1.0]) == pytest.approx(-math.log(1.0 - (1.0 - 1e-15)), rel=1e-15)
    assert log_loss([1], [0.0], clip=1e-6) == pytest.approx(-math.log(1e-6))


def test_base_rate_log_loss_of_stage1_rate():
    y = np.r_[np.ones(26), np.zeros(74)]
    assert base_rate_log_loss(y) == pytest.approx(-(0.26 * math.log(0.26) + 0.74 * math.log(0.74)))
    assert base_rate_log_loss(y) == pytest.approx(0.573, abs=1e-3)


def test_auc_with_ties_and_single_class():
    assert auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert auc([0, 1], [0.5, 0.5]) == 0.5
    assert math.isnan(auc([1, 1], [0.2, 0.3]))


def test_calibration_table_bins():
    t = calibration_table([0, 1, 1, 0], [0.05, 0.95, 1.0, 0.5], bins=10)
    assert t["n"].sum() == 4 and t["n"].iloc[-1] == 2 and t["n"].iloc[5] == 1
    assert t["observed_rate"].iloc[-1] == 1.0 and t["mean_prediction"].iloc[0] == 0.05
    assert np.isnan(t["observed_rate"].iloc[3])


def test_files_with_quirks(write):
    labels = write("stage1_labels.csv", "id,cancer\naaa,1\nbbb,0\nccc,0\n")
    preds = write("p.csv", " cancer , id ,extra\n0.7, ccc ,x\n0.9,aaa,y\n0.2,bbb,z\n")
    r = compute_dsb_files(labels, preds)
    assert r.n == 3 and r.positives == 1
    assert r.log_loss == pytest.approx(-(math.log(0.9) + math.log(0.8) + math.log(0.3)) / 3)
    assert r.auc == 1.0 and r.base_rate == pytest.approx(1 / 3)


def test_missing_prediction_is_an_error_unless_only_predicted(write):
    labels = write("l.csv", "id,cancer\naaa,1\nbbb,0\nccc,0\n")
    preds = write("p.csv", "id,cancer\naaa,0.9\n")
    with pytest.raises(DataLayoutError, match="no prediction for 2 labelled id\\(s\\): 'bbb', 'ccc'") as info:
        compute_dsb_files(labels, preds)
    assert str(preds) in str(info.value)
    assert compute_dsb_files(labels, preds, only_predicted=True).n == 1


def test_unknown_prediction_id_is_an_error(write):
    labels = write("l.csv", "id,cancer\naaa,1\n")
    preds = write("p.csv", "id,cancer\naaa,0.9\nzzz,0.1\n")
    with pytest.raises(DataLayoutError, match="not in the labels file .*l.csv: 'zzz'"):
        compute_dsb_files(labels, preds, only_predicted=True)


@pytest.mark.parametrize(
    ("labels", "preds", "message"),
    [
        ("id,cancer\na,2\n", "id,cancer\na,0.5\n", "labels must be 0 or 1"),
        ("id,cancer\na,1\n", "id,cancer\na,1.5\n", "probabilities in \\[0, 1\\]"),
        ("id,cancer\na,1\na,0\n", "id,cancer\na,0.5\n", "appear twice: 'a'"),
        ("id,label\na,1\n", "id,cancer\na,0.5\n", "no column 'cancer'"),
    ],
)
def test_bad_values(write, labels, preds, message):
    with pytest.raises(DataLayoutError, match=message):
        compute_dsb_files(write("l.csv", labels), write("p.csv", preds))


def test_dsb_json_of_a_single_class_is_strict_json_with_a_null_auc(write, tmp_path):
    labels = write("l.csv", "id,cancer\naaa,1\nbbb,1\n")
    preds = write("p.csv", "id,cancer\naaa,0.9\nbbb,0.4\n")
    paths = write_dsb_outputs(compute_dsb_files(labels, preds), tmp_path / "out")
    summary = read_strict_json(paths["json"])
    assert summary["auc"] is None and summary["n"] == 2 and summary["positives"] == 2
