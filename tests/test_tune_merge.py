"""scripts/tune_merge.py: the staged sweep of merge settings and their ranking (the U-Net's maps need a trained model
and its cache; here the maps are hand-made)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from lungcad.config import load_config
from lungcad.merge import MergeConfig, merge_candidates
from lungcad.pipeline import BUNDLED_MODELS
from lungcad.pipeline.detector import DETECTOR_FILE, DetectorConfig
from lungcad.scan import CTScan

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from tune_merge import rank_settings, sweep  # noqa: E402


def _noisy_map(seed: int) -> tuple[CTScan, np.ndarray]:
    """A scan grid (z, y, x) with a non-trivial origin and spacing and a smoothed random probability map on it:
    blobs of every size and peak, some spanning slices, some single-slice."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    scan = CTScan(np.zeros((16, 48, 56), np.int16), (1.25, 0.7, 0.7), (-40.0, 12.5, -180.0), np.eye(3), id=f"s{seed}")
    spikes = np.zeros(scan.shape)
    spikes[tuple(rng.integers(0, scan.shape, (40, 3)).T)] = rng.uniform(0.2, 1.0, 40)
    prob = ndimage.gaussian_filter(spikes, (1.0, 1.5, 1.5))
    prob /= prob.max()
    return scan, prob.astype(np.float32)


def test_staged_sweep_gives_what_merge_candidates_gives_for_every_setting():
    maps = [_noisy_map(seed) for seed in (1, 2)]
    base = load_config(MergeConfig, "merge")
    grid = {"threshold": [0.1, 0.2, 0.35], "min_slices": [1, 2], "z_merge_radius_mm": [2.0, 5.0]}
    seen, counts = [], []
    for settings, tables in sweep(maps, base, grid):
        seen.append(tuple(settings.values()))
        counts.append(sum(len(t) for t in tables))
        config = dataclasses.replace(base, **settings)
        for (scan, prob), table in zip(maps, tables, strict=True):
            expected = merge_candidates(prob, scan, config).assign(seriesuid=scan.id)
            pd.testing.assert_frame_equal(table, expected)
    assert sorted(seen) == sorted(
        (t, m, r) for t in grid["threshold"] for m in grid["min_slices"] for r in grid["z_merge_radius_mm"]
    )
    assert min(counts) > 0 and len(set(counts)) > 3  # candidates at every setting, and the settings matter


def test_ties_on_top_recall_go_to_the_higher_recall_among_all_candidates_then_to_more_candidates():
    table = pd.DataFrame(
        {
            "threshold": [0.9, 0.05, 0.5, 0.1],
            "min_slices": [2, 1, 1, 1],
            "recall_top30": [0.86, 0.86, 0.80, 0.86],
            "recall_all": [0.86, 0.89, 0.95, 0.89],
            "candidates_per_scan": [4.0, 24.8, 10.0, 20.8],
        }
    )
    ranked = rank_settings(table, 30)
    assert ranked[["threshold", "min_slices"]].values.tolist()[:3] == [[0.05, 1], [0.1, 1], [0.9, 2]]
    assert ranked.iloc[-1].threshold == 0.5  # a lower top-30 recall ranks last whatever its other recall


def test_the_bundled_unet_sweep_still_ranks_its_applied_setting_first():
    sweep = pd.read_csv(BUNDLED_MODELS / "unet" / "merge_sweep.csv")
    merge = load_config(DetectorConfig, BUNDLED_MODELS / "unet" / DETECTOR_FILE).merge
    best = rank_settings(sweep, 30).iloc[0]
    assert (best.threshold, best.min_slices) == (merge.threshold, merge.min_slices)
