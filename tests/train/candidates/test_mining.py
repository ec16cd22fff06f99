"""Hard-positive mining: the starting model's peak on each training nodule sets how often it is drawn."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from lungcad.config import load_config
from lungcad.errors import ConfigError
from lungcad.preprocess.crop import Box
from lungcad.preprocess.pipeline import PreprocessedScan
from lungcad.train.candidates.data import patch_stream, training_scan
from lungcad.train.candidates.mining import mine_hard_positives, nodule_peaks, write_mined
from lungcad.train.candidates.train import UNetTrainConfig, train_unet

CONTEXT = 1


def _middle_slice(x) -> tf.Tensor:
    """A stand-in U-Net whose 'probability' is the input's own middle slice."""
    return tf.convert_to_tensor(x)[..., CONTEXT : CONTEXT + 1]


def _scan_with_two_nodules(make_scan, image_values=(0.9, 0.2)):
    """A 40x64x64 scan (1 mm, non-trivial origin) with a 12 mm and a 4 mm nodule whose image values are
    ``image_values``; returns the TrainingScan (nodules in the order found) and its sampling config."""
    cfg = dataclasses.replace(load_config(UNetTrainConfig, "unet").sampling, patch_size=32)
    scan = make_scan(shape=(40, 64, 64), spacing=(1.0, 1.0, 1.0), origin=(-10.0, 20.0, -30.0))
    centres = np.array([[12.0, 16.0, 16.0], [30.0, 48.0, 44.0]])  # voxel z, y, x
    world = scan.voxel_to_world(centres)
    ann = pd.DataFrame({"seriesuid": scan.id, "coordX": world[:, 0], "coordY": world[:, 1], "coordZ": world[:, 2]})
    ann["diameter_mm"] = [12.0, 4.0]
    zz, yy, xx = np.indices(scan.shape)
    image = np.zeros(scan.shape, dtype=np.float16)
    for (z, y, x), d, value in zip(centres, ann.diameter_mm, image_values, strict=True):
        image[(zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2 <= (d / 2) ** 2] = value
    pre = PreprocessedScan(scan, image, np.ones(scan.shape, bool), Box((0, 0, 0), scan.shape), {"hu_window": [0, 1]})
    return training_scan(pre, ann, ann.iloc[:0], cfg, np.random.default_rng(0)), cfg


def _model_config():
    model = load_config(UNetTrainConfig, "unet").detector.model
    return dataclasses.replace(model, depth=3, context_slices=CONTEXT)


def test_peaks_are_the_model_maximum_on_each_nodule(make_scan):
    scan, _ = _scan_with_two_nodules(make_scan)
    sizes = [len(v) for v in scan.nodules]
    peaks = nodule_peaks(_middle_slice, scan, _model_config(), batch_size=4)
    big = int(np.argmax(sizes))
    assert peaks[big] == pytest.approx(0.9, abs=1e-3)
    assert peaks[1 - big] == pytest.approx(0.2, abs=1e-3)


def test_missed_nodules_are_drawn_more_often(make_scan, tmp_path):
    scan, cfg = _scan_with_two_nodules(make_scan)
    before = scan.nodule_weights.copy()
    table = mine_hard_positives([scan], _middle_slice, _model_config(), boost=4.0, batch_size=4)
    small = int(np.argmin([len(v) for v in scan.nodules]))
    assert scan.nodule_weights[small] / before[small] == pytest.approx(1 + 4 * 0.8, rel=1e-3)
    assert scan.nodule_weights[1 - small] / before[1 - small] == pytest.approx(1 + 4 * 0.1, rel=1e-3)
    assert list(table.columns) == ["seriesuid", "nodule", "voxel_z", "voxel_y", "voxel_x", "peak", "weight"]
    assert table.loc[small, ["voxel_z", "voxel_y", "voxel_x"]].tolist() == pytest.approx([30, 48, 44], abs=0.5)
    stream = patch_stream([scan], context=CONTEXT, config=dataclasses.replace(cfg, positive_fraction=1.0,
                          hard_negative_fraction=0.0), seed=1)  # fmt: skip
    positives = [y.sum() for _, y, _ in (next(stream) for _ in range(200))]
    small_share = np.mean([0 < s < 40 for s in positives])  # a 4 mm disc: about 12 pixels
    assert small_share > 0.65  # 4.2 / (4.2 + 1.4) = 0.75 of draws; without mining about 0.5
    written = pd.read_csv(write_mined(table, tmp_path))
    assert written.peak.round(3).tolist() == table.peak.round(3).tolist()


def test_mining_needs_a_starting_model(tmp_path):
    cfg = load_config(UNetTrainConfig, "unet_mine")
    assert cfg.sampling.positive_miss_boost > 0
    with pytest.raises(ConfigError, match="--init"):
        train_unet(tmp_path / "no_data_read_yet", tmp_path / "out", cfg)


def test_a_negative_boost_is_refused():
    sampling = load_config(UNetTrainConfig, "unet").sampling
    with pytest.raises(ValueError, match="positive_miss_boost"):
        dataclasses.replace(sampling, positive_miss_boost=-1.0)
