"""U-Net patch sampling: positives are drawn per nodule, targets follow the sampled slice."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from lungcad.config import load_config
from lungcad.preprocess.crop import Box
from lungcad.preprocess.pipeline import PreprocessedScan
from lungcad.train.candidates.data import patch_stream, positive_weight, training_scan
from lungcad.train.candidates.train import UNetTrainConfig


def _two_nodule_scan(make_scan):
    """A 40x64x64 volume at 1 mm with a 24 mm and a 3 mm nodule; image = 1 inside the nodules."""
    scan = make_scan(shape=(40, 64, 64), spacing=(1.0, 1.0, 1.0), origin=(-10.0, 20.0, -30.0))
    big, small = scan.voxel_to_world(np.array([20.0, 20.0, 20.0])), scan.voxel_to_world(np.array([20.0, 50.0, 50.0]))
    ann = pd.DataFrame(
        {
            "seriesuid": scan.id,
            "coordX": [big[0], small[0]],
            "coordY": [big[1], small[1]],
            "coordZ": [big[2], small[2]],
            "diameter_mm": [24.0, 3.0],
        }
    )
    image = np.zeros(scan.shape, dtype=np.float16)
    pre = PreprocessedScan(scan, image, np.ones(scan.shape, bool), Box((0, 0, 0), scan.shape), {"hu_window": [0, 1]})
    return pre, ann, small


def _small_share(make_scan, **sampling) -> float:
    """Share of positive patches that show the 3 mm nodule rather than the 24 mm one."""
    cfg = dataclasses.replace(load_config(UNetTrainConfig, "unet").sampling, patch_size=32, **sampling)
    pre, ann, small_world = _two_nodule_scan(make_scan)
    scan = training_scan(pre, ann, ann.iloc[:0], cfg, np.random.default_rng(0))
    assert len(scan.nodules) == 2
    sizes = sorted(len(v) for v in scan.nodules)
    assert sizes[0] < 30 < 2000 == sizes[1]  # the 3 mm nodule has a few voxels, the 24 mm one thousands (capped)
    stream = patch_stream([scan], context=1, config=cfg, seed=3)
    positives = [y for _, y, _ in (next(stream) for _ in range(300)) if y.sum() > 0]
    small = sum(1 for y in positives if y.sum() < 30)  # a 3 mm disc covers < 10 pixels
    assert len(positives) > 60
    return small / len(positives)


def test_small_and_large_nodules_are_sampled_alike(make_scan):
    share = _small_share(make_scan, positive_size_power=0.0, positive_contact_boost=0.0)
    assert 0.3 < share < 0.7  # voxel-proportional sampling would give < 1 %


def test_size_power_favours_small_nodules(make_scan):
    cfg = dataclasses.replace(load_config(UNetTrainConfig, "unet").sampling, positive_size_power=1.0)
    pre, ann, _ = _two_nodule_scan(make_scan)
    cfg = dataclasses.replace(cfg, positive_contact_boost=0.0)
    scan = training_scan(pre, ann, ann.iloc[:0], cfg, np.random.default_rng(0))
    big, small = sorted(scan.nodule_weights)  # 24 ** -1 and 3 ** -1 (rasterised: about 2.9 mm)
    assert 6.0 < small / big < 9.0
    alike = _small_share(make_scan, positive_size_power=0.0, positive_contact_boost=0.0)
    assert _small_share(make_scan, positive_size_power=1.0, positive_contact_boost=0.0) > alike + 0.15


def test_contact_boost_favours_nodules_touching_vessels():
    cfg = dataclasses.replace(load_config(UNetTrainConfig, "unet").sampling, positive_size_power=0.0)
    cfg = dataclasses.replace(cfg, positive_contact_boost=2.0)
    component = np.zeros((5, 5, 5), bool)
    component[1:4, 1:4, 1:4] = True
    box = (slice(10, 15),) * 3
    bright = np.zeros((30, 30, 30), bool)
    free = positive_weight(component, bright, box, (1.0, 1.0, 1.0), cfg)
    bright[:, 14:16, :] = True  # a vessel plane along the nodule's far side
    attached = positive_weight(component, bright, box, (1.0, 1.0, 1.0), cfg)
    assert free == 1.0
    assert 1.2 < attached < 3.0
