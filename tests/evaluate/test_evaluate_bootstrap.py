"""Bootstrap of scans: reproducible, equal to evaluating the resampled set, CI around the estimate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lungcad.evaluate import FrocConfig, bootstrap_froc, compute_froc
from lungcad.evaluate.bootstrap import mean_ci, resample_weights
from lungcad.evaluate.froc import SortedEntries, sensitivity_at

PTS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def dataset(n_scans: int = 30, seed: int = 0):
    rng = np.random.default_rng(seed)
    scans = [f"s{i}" for i in range(n_scans)]
    ann, cand = [], []
    for uid in scans:
        for c in rng.uniform(-50, 50, size=(int(rng.integers(0, 3)), 3)):
            ann.append((uid, *c, 8.0))
            if rng.random() < 0.7:
                cand.append((uid, *(c + rng.normal(0, 1, 3)), float(rng.random())))
        for c in rng.uniform(-50, 50, size=(int(rng.integers(0, 12)), 3)):
            cand.append((uid, *c, float(rng.random() ** 2)))
    cols = ["seriesuid", "coordX", "coordY", "coordZ"]
    return pd.DataFrame(ann, columns=[*cols, "diameter_mm"]), pd.DataFrame(cand, columns=[*cols, "probability"]), scans


def test_bootstrap_is_reproducible_with_a_seed():
    ann, cand, scans = dataset()
    a = compute_froc(ann, cand, scans, config=FrocConfig(bootstrap_samples=200, bootstrap_seed=7)).bootstrap
    b = compute_froc(ann, cand, scans, config=FrocConfig(bootstrap_samples=200, bootstrap_seed=7)).bootstrap
    c = compute_froc(ann, cand, scans, config=FrocConfig(bootstrap_samples=200, bootstrap_seed=8)).bootstrap
    assert a.cpm == b.cpm and a.sensitivity == b.sensitivity
    assert np.array_equal(a.grid_mean, b.grid_mean)
    assert a.cpm != c.cpm


def test_confidence_interval_contains_the_point_estimate():
    ann, cand, scans = dataset(60, seed=3)
    r = compute_froc(ann, cand, scans, config=FrocConfig(bootstrap_samples=300))
    b = r.bootstrap
    assert b.samples == 300 and b.used == 300
    assert b.cpm.low <= r.cpm <= b.cpm.high
    assert b.cpm.low < b.cpm.mean < b.cpm.high
    for s, iv in zip(r.sensitivity, b.sensitivity):
        assert iv.low <= s <= iv.high
    assert abs(b.cpm.mean - r.cpm) < 0.05
    assert np.all(b.grid_low <= b.grid_high)


def test_a_resampling_equals_evaluating_the_resampled_scans():
    """Scan weights must give exactly the FROC of a set in which each scan is copied that many times."""
    ann, cand, scans = dataset(12, seed=5)
    r = compute_froc(ann, cand, scans)
    w = resample_weights(np.random.default_rng(1), len(scans))
    copies = [(uid, k) for uid, n in zip(scans, w) for k in range(int(n))]

    def copy(df):
        parts = [df[df.seriesuid == uid].assign(seriesuid=f"{uid}#{k}") for uid, k in copies]
        return pd.concat(parts, ignore_index=True)

    direct = compute_froc(copy(ann), copy(cand), [f"{u}#{k}" for u, k in copies])
    weighted = sensitivity_at(SortedEntries(r.entries).curve(w), PTS)
    assert tuple(weighted) == direct.sensitivity


def test_unit_weights_give_the_point_estimate():
    ann, cand, scans = dataset()
    r = compute_froc(ann, cand, scans)
    curve = SortedEntries(r.entries).curve(np.ones(len(scans)))
    assert tuple(sensitivity_at(curve, PTS)) == r.sensitivity


def test_official_percentile_rule():
    values = np.arange(1000, dtype=float)[::-1].reshape(-1, 1)
    mean, low, high = mean_ci(values, 0.95)
    assert (mean[0], low[0], high[0]) == (499.5, 25.0, 975.0)  # sorted[floor(.025 n)], sorted[floor(.975 n)]
    with_nan = np.r_[values, [[np.nan]]]
    assert mean_ci(with_nan, 0.95)[1][0] == 25.0  # resamplings without nodules are left out


def test_resamplings_without_nodules_are_left_out():
    ann = pd.DataFrame([("a", 0.0, 0.0, 0.0, 8.0)], columns=["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"])
    cand = pd.DataFrame([("a", 0.0, 0.0, 0.0, 0.9)], columns=["seriesuid", "coordX", "coordY", "coordZ", "probability"])
    r = compute_froc(ann, cand, ["a", "b", "c"])
    b = bootstrap_froc(r.entries, PTS, samples=50, seed=0)
    assert 0 < b.used < 50
    assert b.cpm.mean == pytest.approx(1.0)
