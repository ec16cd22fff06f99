"""A tiny end-to-end U-Net training run on LUNA16-layout data, then detection with the saved model."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from helpers import read_strict_json, simple_chest, tiny_unet_config

from lungcad.config import load_config
from lungcad.errors import ConfigError
from lungcad.io import write_mhd
from lungcad.pipeline.detector import CandidateDetector
from lungcad.train.candidates.train import UNetTrainConfig, initial_unet, train_unet
from lungcad.train.split import split_ids


def _luna_folder(root, n=3):
    rows = []
    for k in range(n):
        scan, _, nodule = simple_chest(seed=k)
        uid = f"1.2.840.{k}"
        write_mhd(scan.with_array(scan.array, id=uid), root / "subset0" / f"{uid}.mhd")
        centre = scan.voxel_to_world(np.argwhere(nodule).mean(0))
        rows.append(
            {"seriesuid": uid, "coordX": centre[0], "coordY": centre[1], "coordZ": centre[2], "diameter_mm": 12.0}
        )
    pd.DataFrame(rows).to_csv(root / "annotations.csv", index=False)
    return rows


@pytest.mark.slow
def test_tiny_training_run_writes_a_usable_model(tmp_path):
    _luna_folder(tmp_path / "data")
    out = tmp_path / "model"
    result = train_unet(tmp_path / "data", out, tiny_unet_config())
    assert [r["epoch"] for r in result.history] == [1.0, 2.0]
    assert {"val_loss", "val_dice", "val_recall", "val_candidates"} <= set(result.history[-1])
    for name in ("model.keras", "detector.yaml", "train_config.yaml", "run.json", "training_curve.png"):
        assert (out / name).exists(), name
    assert read_strict_json(out / "run.json")["best"]["epoch"] in (1.0, 2.0)
    detector = CandidateDetector.load(out)
    scan, _, _ = simple_chest(seed=0)
    table = detector.detect(scan)
    assert list(table.columns[:6]) == ["seriesuid", "coordX", "coordY", "coordZ", "probability", "diameter_mm"]
    assert (table.seriesuid == scan.id).all()
    again = train_unet(tmp_path / "data", out, tiny_unet_config(), resume=True)  # nothing left: epochs done
    assert [r["epoch"] for r in again.history] == [1.0, 2.0]
    # fine-tuning (--init) starts from the trained weights, and only with the same architecture
    start = initial_unet(tiny_unet_config().detector.model, out)
    for a, b in zip(start.get_weights(), detector.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    fresh = initial_unet(tiny_unet_config().detector.model)
    assert any(not np.array_equal(a, b) for a, b in zip(fresh.get_weights(), start.get_weights()))
    with pytest.raises(ConfigError, match="model settings"):
        initial_unet(dataclasses.replace(tiny_unet_config().detector.model, base_filters=8), out)
    # ... or one with a wider 2.5-D context, which starts out computing what the trained one does
    wide = initial_unet(dataclasses.replace(tiny_unet_config().detector.model, context_slices=3), out)
    x = np.random.default_rng(1).random((1, 32, 32, 7)).astype("float32")
    want = np.asarray(detector.model(x[..., 1:6], training=False))
    np.testing.assert_allclose(np.asarray(wide(x, training=False)), want, atol=1e-5)
    with pytest.raises(ConfigError, match="model settings"):
        initial_unet(dataclasses.replace(tiny_unet_config().detector.model, context_slices=1), out)
    # hard-positive mining: the fine-tuning run scores its training nodules with the starting model first
    tiny = tiny_unet_config()
    mining = dataclasses.replace(
        tiny,
        sampling=dataclasses.replace(tiny.sampling, positive_miss_boost=3.0),
        train=dataclasses.replace(tiny.train, epochs=1),
    )
    train_unet(tmp_path / "data", tmp_path / "mined", mining, init=out, cache=out / "cache")
    mined = pd.read_csv(tmp_path / "mined" / "mined_positives.csv")
    assert set(mined.seriesuid) == set(json.loads((tmp_path / "mined" / "run.json").read_text())["train_scans"])
    assert mined.peak.between(0, 1).all()
    assert np.allclose(mined.weight, 1 + 3.0 * (1 - mined.peak))


def test_split_is_seeded_and_keeps_both_sides():
    ids = [f"s{i}" for i in range(10)]
    train, val = split_ids(ids, 0.2, seed=5)
    assert len(val) == 2 and sorted(train + val) == ids and split_ids(ids, 0.2, seed=5) == (train, val)
    assert split_ids(["a", "b"], 0.01, 0)[1] and split_ids(["a", "b"], 0.99, 0)[0]


def test_validation_recall_uses_the_luna16_hit_rule_on_the_top_candidates():
    from lungcad.train.candidates.train import candidate_recall

    nodules = pd.DataFrame(
        {"seriesuid": ["a", "a"], "coordX": [0.0, 50.0], "coordY": 0.0, "coordZ": 0.0, "diameter_mm": [-1.0, 6.0]}
    )  # unknown diameter counts as 10 mm
    cands = pd.DataFrame(
        {"seriesuid": "a", "coordX": [30.0, 4.0, 52.0], "coordY": 0.0, "coordZ": 0.0, "probability": [0.9, 0.8, 0.7]}
    )
    assert candidate_recall([cands], nodules, ["a"], top=3) == (1.0, 3.0)
    assert candidate_recall([cands], nodules, ["a"], top=2) == (0.5, 3.0)  # the 52 mm hit is cut off
    assert candidate_recall([cands], nodules, ["a"], top=None) == (1.0, 3.0)


@pytest.mark.parametrize("name", ["unet_finetune", "unet_context", "unet_mine", "unet_zoom"])
def test_fine_tuning_configs_fit_the_bundled_unet(name):
    """The shipped fine-tuning configs start from the bundled model: same architecture, or a wider context."""
    from lungcad.pipeline import BUNDLED_MODELS

    bundled = CandidateDetector.load(BUNDLED_MODELS / "unet").config.model
    config = load_config(UNetTrainConfig, name).detector.model
    assert dataclasses.replace(config, context_slices=bundled.context_slices) == bundled
    assert config.context_slices >= bundled.context_slices


def test_unet_config_composes_the_stage_configs_and_variants_change_only_their_keys():
    """configs/unet.yaml's detector starts from configs/preprocess.yaml (on its own grid) and configs/merge.yaml;
    unet_zoom.yaml changes the grid and the candidate budget inside those composed sections and nothing else."""
    from lungcad.merge import MergeConfig
    from lungcad.preprocess.config import PreprocessConfig

    unet = load_config(UNetTrainConfig, "unet").detector
    assert unet.merge == load_config(MergeConfig, "merge")
    assert unet.preprocess == dataclasses.replace(
        load_config(PreprocessConfig, "preprocess"), target_spacing_mm=(1.25, 1.0, 1.0)
    )
    zoom = load_config(UNetTrainConfig, "unet_zoom").detector
    assert zoom.preprocess == dataclasses.replace(unet.preprocess, target_spacing_mm=(1.25, 0.7, 0.7))
    assert zoom.merge == dataclasses.replace(unet.merge, max_candidates=30)
    assert dataclasses.replace(zoom, preprocess=unet.preprocess, merge=unet.merge) == unet
