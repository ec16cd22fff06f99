"""scripts/tune_merge.py's ranking of merge settings (the sweep itself needs a trained U-Net and its cache)."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from lungcad.candidates.inference import DETECTOR_FILE, DetectorConfig
from lungcad.config import load_config
from lungcad.detect import BUNDLED_MODELS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from tune_merge import rank_settings  # noqa: E402


def test_ties_on_top_recall_go_to_the_higher_recall_among_all_candidates():
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
    assert ranked[["threshold", "min_slices"]].values.tolist()[:3] == [[0.1, 1], [0.05, 1], [0.9, 2]]
    assert ranked.iloc[-1].threshold == 0.5  # a lower top-30 recall ranks last whatever its other recall


def test_the_bundled_unet_sweep_still_ranks_its_applied_setting_first():
    sweep = pd.read_csv(BUNDLED_MODELS / "unet" / "merge_sweep.csv")
    merge = load_config(DetectorConfig, BUNDLED_MODELS / "unet" / DETECTOR_FILE).merge
    best = rank_settings(sweep, 30).iloc[0]
    assert (best.threshold, best.min_slices) == (merge.threshold, merge.min_slices)
