"""Merging on hand-made probability maps: distance merging, Z-merging, morphology, world centres."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from helpers import rotation

from lungcad.config import load_config
from lungcad.merge import MergeConfig, distance_merge, merge_candidates, slice_detections
from lungcad.scan import CTScan

MERGE = load_config(MergeConfig, "merge")  # configs/merge.yaml: the merge a newly trained U-Net starts with


def _scan(shape=(12, 64, 64), spacing=(1.5, 0.5, 0.5), direction=None) -> CTScan:
    return CTScan(
        np.zeros(shape, np.int16), spacing, (-16.0, -16.0, -100.0), np.eye(3) if direction is None else direction
    )


def _disc(prob: np.ndarray, z: int, cy: float, cx: float, r_px: float, value: float = 0.9) -> None:
    yy, xx = np.mgrid[: prob.shape[1], : prob.shape[2]]
    prob[z][(yy - cy) ** 2 + (xx - cx) ** 2 <= r_px**2] = value


def test_two_blobs_3mm_apart_merge_in_one_slice():
    scan = _scan()
    prob = np.zeros(scan.shape, np.float32)
    _disc(prob, 5, 30, 27, 2)  # centres 6 px = 3 mm apart, not touching
    _disc(prob, 5, 30, 33, 2)
    cfg = dataclasses.replace(MERGE, dilation_iterations=0, erosion_iterations=0)
    det = slice_detections(prob, scan, cfg)
    assert len(det) == 2
    merged = distance_merge(det, scan, 4.0)
    assert len(merged) == 1
    np.testing.assert_allclose(merged.yx[0], [30, 30], atol=1e-6)
    assert len(distance_merge(det, scan, 2.5)) == 2  # closer threshold keeps them apart


def test_blob_over_five_slices_gives_one_candidate_at_weighted_centre():
    scan = _scan()
    prob = np.zeros(scan.shape, np.float32)
    for z, value in zip(range(3, 8), (0.6, 0.8, 1.0, 0.8, 0.6)):
        _disc(prob, z, 20 + 0.2 * z, 40, 4, value)
    table = merge_candidates(prob, scan, MERGE)
    assert len(table) == 1
    row = table.iloc[0]
    assert row.n_slices == 5 and row.z_first == 3 and row.z_last == 7
    assert row.probability == pytest.approx(1.0) and 0.6 < row.mean_probability < 1.0
    expected = scan.voxel_to_world([5.0, 20 + 0.2 * 5, 40])  # symmetric weights: the middle slice
    np.testing.assert_allclose(row[["coordX", "coordY", "coordZ"]].to_numpy(float), expected, atol=0.05)
    largest_px = max(np.count_nonzero(prob[z]) for z in range(3, 8))  # 0.25 mm^2 per pixel
    assert row.diameter_mm == pytest.approx(2 * np.sqrt(largest_px * 0.25 / np.pi))


def test_separate_nodules_and_gap_rules():
    scan = _scan()
    prob = np.zeros(scan.shape, np.float32)
    for z in (2, 3):
        _disc(prob, z, 15, 15, 3)
    for z in (2, 4):  # one empty slice in between: chains with max_gap_slices = 1
        _disc(prob, z, 45, 45, 3, 0.7)
    _disc(prob, 9, 15, 15, 3, 0.95)  # same place, far in z: its own candidate
    cfg = MERGE
    table = merge_candidates(prob, scan, cfg)
    assert len(table) == 3
    assert list(table.probability) == pytest.approx([0.95, 0.9, 0.7])  # sorted by probability
    strict = merge_candidates(prob, scan, dataclasses.replace(cfg, max_gap_slices=0))
    assert len(strict) == 4


def test_dilation_erosion_joins_fragments_and_threshold_and_min_area():
    scan = _scan()
    prob = np.zeros(scan.shape, np.float32)
    _disc(prob, 4, 30, 30, 5)
    prob[4, :, 30] = 0.0  # a 1-pixel crack splits the blob
    prob[6, 10, 10] = 0.9  # a single-pixel speck (0.25 mm^2)
    prob[8][20:30, 20:30] = 0.3  # below threshold
    cfg = MERGE
    no_morph = dataclasses.replace(cfg, dilation_iterations=0, erosion_iterations=0, distance_merge_mm=0.0)
    assert len(slice_detections(prob, scan, no_morph)) == 2
    det = slice_detections(prob, scan, dataclasses.replace(cfg, distance_merge_mm=0.0))
    assert len(det) == 1 and det.z[0] == 4


@pytest.mark.parametrize("direction", [np.diag([-1.0, -1.0, 1.0]), rotation("z", 40)])
def test_centres_in_world_mm_for_any_direction(direction):
    scan = _scan(direction=direction)
    prob = np.zeros(scan.shape, np.float32)
    for z in range(4, 7):
        _disc(prob, z, 22, 41, 3)
    table = merge_candidates(prob, scan, MERGE)
    assert len(table) == 1
    np.testing.assert_allclose(
        table.loc[0, ["coordX", "coordY", "coordZ"]].to_numpy(float), scan.voxel_to_world([5, 22, 41]), atol=1e-6
    )


def test_saturated_peaks_ranked_by_mean_probability():
    scan = _scan()
    prob = np.zeros(scan.shape, np.float32)
    for z in range(3, 6):
        _disc(prob, z, 15, 15, 4, 0.6)  # a weak blob ...
        _disc(prob, z, 45, 45, 4, 0.95)  # ... and a strong one
    prob[4, 15, 15] = prob[4, 45, 45] = 1.0  # both peak at 1.0
    table = merge_candidates(prob, scan, MERGE)
    assert list(table.probability) == [1.0, 1.0]
    np.testing.assert_allclose(table.loc[0, ["grid_y", "grid_x"]].to_numpy(float), [45, 45], atol=0.2)


def test_empty_map_gives_empty_table_with_columns():
    scan = _scan()
    table = merge_candidates(np.zeros(scan.shape, np.float32), scan, MERGE)
    assert table.empty and {"coordX", "coordY", "coordZ", "probability", "diameter_mm"} <= set(table.columns)
