"""U-Net patch sampling: positives are drawn per nodule, targets follow the sampled slice."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from lungcad.candidates.data import patch_stream, training_scan
from lungcad.candidates.train import UNetTrainConfig
from lungcad.config import load_config
from lungcad.preprocess.crop import Box
from lungcad.preprocess.pipeline import PreprocessedScan


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


def test_small_and_large_nodules_are_sampled_alike(make_scan):
    cfg = dataclasses.replace(load_config(UNetTrainConfig, "unet").sampling, patch_size=32)
    pre, ann, small_world = _two_nodule_scan(make_scan)
    scan = training_scan(pre, ann, ann.iloc[:0], cfg, np.random.default_rng(0))
    assert len(scan.nodules) == 2
    sizes = sorted(len(v) for v in scan.nodules)
    assert sizes[0] < 30 < 2000 == sizes[1]  # the 3 mm nodule has a few voxels, the 24 mm one thousands (capped)
    stream = patch_stream([scan], context=1, config=cfg, seed=3)
    positives = [y for _, y, _ in (next(stream) for _ in range(300)) if y.sum() > 0]
    small = sum(1 for y in positives if y.sum() < 30)  # a 3 mm disc covers < 10 pixels
    assert len(positives) > 60
    assert 0.3 < small / len(positives) < 0.7  # voxel-proportional sampling would give < 1 %
