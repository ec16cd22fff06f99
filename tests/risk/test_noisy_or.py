"""Noisy-OR maths on hand-made inputs and a fit that recovers a planted rule."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from lungcad.risk import NoisyOrRisk


def _model(**kw) -> NoisyOrRisk:
    return NoisyOrRisk(top_k=3, l2=0.0, clip=1e-3, weights=np.array([1.0]), bias=0.0, leak_logit=-2.0, **kw)


def test_no_candidates_gives_the_leak_prior():
    model = _model()
    assert model.patient_probability([np.zeros((0, 1))])[0] == pytest.approx(expit(-2.0))


def test_one_certain_malignant_nodule_gives_near_one_and_clipping():
    model = _model()
    p = model.patient_probability([np.array([[40.0]])])[0]
    assert p == pytest.approx(1 - 1e-3)  # clipped away from 1
    model.leak_logit = -50.0
    assert model.patient_probability([np.zeros((0, 1))])[0] == pytest.approx(1e-3)  # and from 0


def test_noisy_or_combination_and_top_k():
    model = _model()
    feats = np.array([[0.0], [0.0], [0.0], [0.0]])  # four 50% nodules; only the top 3 count
    expected = 1 - (1 - expit(-2.0)) * 0.5**3
    assert model.patient_probability([feats])[0] == pytest.approx(expected)


def test_fit_recovers_planted_rule_and_is_calibrated():
    rng = np.random.default_rng(0)
    truth = NoisyOrRisk(top_k=3, l2=0.0, clip=1e-6, weights=np.array([2.0, -1.0]), bias=-2.0, leak_logit=-2.5)
    patients = [rng.normal(size=(rng.integers(0, 5), 2)) for _ in range(3000)]
    labels = rng.random(3000) < truth.patient_probability(patients)
    model = NoisyOrRisk(top_k=3, l2=1e-4, clip=1e-6).fit(patients, labels)
    np.testing.assert_allclose(model.weights, truth.weights, atol=0.35)
    assert model.leak_logit == pytest.approx(truth.leak_logit, abs=0.4)
    p = model.patient_probability(patients)
    assert abs(p.mean() - labels.mean()) < 0.02
