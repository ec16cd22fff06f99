"""Risk features measured at world positions of a scan with odd spacing, origin and orientation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import rotation, tiny_scorer

from lungcad.config import load_config
from lungcad.risk.features import FEATURES, candidate_features, classifier_names
from lungcad.scan import CTScan
from lungcad.train.risk.train import RiskTrainConfig

CONFIG = load_config(RiskTrainConfig, "risk").features


def _lung_with(objects, seed=0) -> CTScan:
    """Lung (-850 HU + noise) on an anisotropic, rotated grid; ``objects``: (centre xyz mm, mask fn, HU)."""
    shape, spacing = (50, 90, 90), (1.25, 0.7, 0.7)
    scan = CTScan(np.zeros(shape, np.int16), spacing, (-31.0, 12.5, -40.0), rotation("z", 90))
    zyx = np.indices(shape).reshape(3, -1).T
    world = scan.voxel_to_world(zyx)
    hu = np.full(len(world), -850.0) + np.random.default_rng(seed).normal(0, 15, len(world))
    for centre, inside, value in objects:
        hu[inside(world - np.asarray(centre))] = value
    return scan.with_array(hu.reshape(shape).astype(np.int16))


def _ball(radius):
    return lambda d: np.linalg.norm(d, axis=1) <= radius


def _spiky(radius):
    """A ball with six thin spikes reaching 2.2x its radius along the axes."""

    def inside(d):
        r = np.linalg.norm(d, axis=1)
        spike = np.zeros(len(d), bool)
        for axis in range(3):
            others = np.delete(d, axis, axis=1)
            spike |= (np.linalg.norm(others, axis=1) <= 0.9) & (np.abs(d[:, axis]) <= 2.2 * radius)
        return (r <= radius) | spike

    return inside


def _features(scan, centres, diameters, probability=0.9):
    table = pd.DataFrame(np.asarray(centres, float), columns=["coordX", "coordY", "coordZ"])
    return candidate_features(scan, table.assign(probability=probability, diameter_mm=diameters), CONFIG)


def test_size_density_and_shape_of_solid_ground_glass_and_spiculated_nodules():
    solid, ggo, spiky = (-50.0, 40.0, -8.0), (-72.0, 28.0, -18.0), (-62.0, 57.0, 6.0)  # world mm, inside
    scan = _lung_with([(solid, _ball(6.0), 20), (ggo, _ball(5.0), -600), (spiky, _spiky(4.0), 30)])
    f = _features(scan, [solid, ggo, spiky], [12.0, 10.0, 8.0])
    assert sorted(f.columns[-len(FEATURES) :]) == sorted(FEATURES)  # no nodule classifier given: no NAME_logit
    diameters = np.exp(f.log_diameter_mm)
    assert diameters[0] == pytest.approx(12.0, rel=0.1) and diameters[1] == pytest.approx(10.0, rel=0.15)
    assert f.mean_hu[0] == pytest.approx(20, abs=60) and f.mean_hu[1] == pytest.approx(-600, abs=60)
    assert f.solid_fraction[0] > 0.9 > 0.1 > f.solid_fraction[1]
    assert f.calcified_fraction.max() < 0.05
    assert f.compactness[0] > 0.6 and f.compactness[2] < 0.5 * f.compactness[0]
    assert f.fpr_logit[0] == pytest.approx(np.log(9.0))


def test_a_candidate_on_empty_lung_has_no_nodule_region():
    scan = _lung_with([])
    f = _features(scan, [(-60.0, 40.0, 0.0)], [6.0], probability=0.0)
    assert f.log_diameter_mm[0] == 0.0 and f.mean_hu[0] == -1000.0
    assert np.isfinite(f.fpr_logit[0]) and f.fpr_logit[0] < -9


def test_nodule_classifier_logits_are_features(tmp_path):
    solid = (-50.0, 40.0, -8.0)
    scan = _lung_with([(solid, _ball(6.0), 20)])
    scorer = tiny_scorer(tmp_path / "malignancy")
    table = pd.DataFrame([solid, (-60.0, 50.0, 0.0)], columns=["coordX", "coordY", "coordZ"])
    classifiers = {"malignancy": scorer, "shape": scorer}
    f = candidate_features(scan, table.assign(probability=0.9, diameter_mm=12.0), CONFIG, classifiers)
    p = np.clip(scorer.score(scan, table.to_numpy(float)), CONFIG.probability_clip, 1 - CONFIG.probability_clip)
    np.testing.assert_allclose(f.malignancy_logit, np.log(p / (1 - p)), rtol=1e-5)
    np.testing.assert_allclose(f.shape_logit, f.malignancy_logit)
    assert set(FEATURES) <= set(f.columns)
    assert classifier_names(["fpr_logit", "malignancy_logit", "mean_hu", "shape_logit"]) == ["malignancy", "shape"]
