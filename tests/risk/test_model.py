"""Risk model on hand-made candidate tables, cross-validation, and ``lungcad train risk`` end to end."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from lungcad.config import load_config
from lungcad.errors import ConfigError
from lungcad.risk.model import RiskModel, patient_matrices
from lungcad.train.risk.train import RiskTrainConfig, cross_validate, stratified_folds

CONFIG = load_config(RiskTrainConfig, "risk")


def _patients(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    """Patients with 0-4 candidates; cancer when one candidate is a large solid nodule (the phantom rule's gist).
    Every fifth patient has no candidate at all."""
    rng = np.random.default_rng(seed)
    rows, labels = [], {}
    for i in range(n):
        pid, cancer = f"p{i:03d}", 0
        for _ in range(0 if i % 5 == 0 else rng.integers(1, 5)):
            diameter = rng.uniform(3, 25)
            solid = rng.random() < 0.7
            cancer |= int(solid and diameter > 13)
            rows.append(
                {
                    "seriesuid": pid,
                    "probability": rng.uniform(0.3, 1.0),
                    "fpr_logit": rng.normal(1, 1),
                    "log_diameter_mm": np.log(diameter),
                    "mean_hu": rng.normal(0 if solid else -600, 40),
                    "solid_fraction": rng.uniform(0.8, 1.0) if solid else rng.uniform(0, 0.1),
                    "calcified_fraction": 0.0,
                    "compactness": rng.uniform(0.3, 0.9),
                }
            )
        labels[pid] = cancer
    return pd.DataFrame(rows), pd.Series(labels, dtype=float)


def test_patient_matrices_take_the_top_k_by_probability_and_empty_for_no_candidates():
    table = pd.DataFrame({"seriesuid": ["a"] * 7, "probability": np.arange(7) / 10, "fpr_logit": np.arange(7.0)})
    model = dataclasses.replace(CONFIG.model, features=("fpr_logit",), top_k=3)
    a, b = patient_matrices(table, ["a", "b"], model)
    assert a[:, 0].tolist() == [6.0, 5.0, 4.0] and b.shape == (0, 1)


def test_fit_separates_cancer_and_patients_without_candidates_get_the_prior(tmp_path):
    train, labels = _patients(300, seed=0)
    model = RiskModel.fit(train, labels, CONFIG.risk())
    test, truth = _patients(200, seed=1)
    p = model.predict(test, list(truth.index))
    from lungcad.evaluate.dsb import auc, base_rate_log_loss, log_loss

    assert auc(truth.to_numpy(), p) > 0.9
    assert log_loss(truth.to_numpy(), p) < 0.7 * base_rate_log_loss(truth.to_numpy())
    empty = [pid for pid in truth.index if pid not in set(test.seriesuid)]
    assert np.allclose(p[truth.index.isin(empty)], p[truth.index.get_loc(empty[0])])  # all the leak
    assert p.min() >= CONFIG.model.clip and p.max() <= 1 - CONFIG.model.clip
    loaded = RiskModel.load(model.save(tmp_path))
    np.testing.assert_allclose(loaded.predict(test, list(truth.index)), p)


def test_load_of_a_folder_without_a_model_names_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="lungcad train risk"):
        RiskModel.load(tmp_path)
    (tmp_path / "risk.json").write_text(json.dumps({"config": {}}))
    with pytest.raises(ConfigError, match="risk.json"):
        RiskModel.load(tmp_path)


def test_stratified_folds_balance_the_classes():
    labels = np.array([1] * 10 + [0] * 40)
    fold = stratified_folds(labels, 5, seed=3)
    assert [int(labels[fold == k].sum()) for k in range(5)] == [2] * 5
    assert [int((fold == k).sum()) for k in range(5)] == [10] * 5


def test_cross_validation_reports_every_fold():
    table, labels = _patients(150, seed=2)
    folds, oof = cross_validate(table, labels, CONFIG)
    assert list(folds.fold) == list(range(CONFIG.folds)) and folds.n.sum() == 150
    assert (folds.log_loss < folds.base_rate_log_loss).all() and (folds.auc > 0.8).all()
    assert oof.index.equals(labels.index) and oof.between(0, 1).all()


def test_a_model_using_a_classifier_it_lacks_names_the_folder(tmp_path):
    train, labels = _patients(60, seed=2)
    config = dataclasses.replace(CONFIG.model, features=(*CONFIG.model.features, "shape_logit"))
    train = train.assign(shape_logit=np.random.default_rng(0).normal(size=len(train)))
    model = RiskModel.fit(train, labels, dataclasses.replace(CONFIG.risk(), model=config))
    model.save(tmp_path)
    with pytest.raises(ConfigError, match="shape_logit") as err:
        RiskModel.load(tmp_path)
    assert str(tmp_path / "classifiers" / "shape") in str(err.value) and "--classifier shape=DIR" in str(err.value)
