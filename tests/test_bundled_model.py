"""The bundled default U-Net (lungcad/models/unet) loads and finds nodules of the sample scan at their world
positions. Regression check of the committed weights: measured 5 of 5 sample nodules hit by U-Net v3 (v2: 3 of 5;
10-16 mm, 192x192 matrix, 2.7 mm slices); see heldout_metrics.json beside the weights for the held-out numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lungcad.candidates.inference import CandidateDetector
from lungcad.detect import default_model_dir
from lungcad.io import load_scan

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "luna16"


@pytest.mark.slow
def test_bundled_unet_finds_sample_nodules():
    detector = CandidateDetector.load(default_model_dir("unet"))
    scan_path = next((SAMPLE / "subset0").glob("*.mhd"))
    scan = load_scan(scan_path)
    table = detector.detect(scan)
    assert 0 < len(table) <= detector.config.merge.max_candidates
    coords = table[["coordX", "coordY", "coordZ"]].to_numpy(float)
    assert scan.contains_voxel(scan.world_to_voxel(coords, outside="keep")).all()
    nodules = pd.read_csv(SAMPLE / "annotations.csv")
    hits = 0
    for _, n in nodules.iterrows():
        d = np.linalg.norm(coords - n[["coordX", "coordY", "coordZ"]].to_numpy(float), axis=1)
        hits += bool(np.any(d < n.diameter_mm / 2))
    assert hits >= 4, f"{hits} of {len(nodules)} sample nodules hit"
