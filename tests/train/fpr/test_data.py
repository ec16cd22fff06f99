"""FPR training samples: random crops keep the candidate near the centre; zooming magnifies it about the
candidate; without zoom a sample is an exact crop of the cached patch; negatives can favour the U-Net's own."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from lungcad.config import load_config
from lungcad.train.fpr.data import (
    FprSamplingConfig,
    PatchSet,
    augment,
    balanced_stream,
    hard_rows,
    scaled_crop,
)
from lungcad.train.fpr.train import FprTrainConfig, read_candidates_tables

SIZE, MARGIN = 16, 3


def _disc_patch(radius: float, channels: int = 3) -> np.ndarray:
    """A margin-padded 2.5-D patch (22, 22, channels) with a bright disc of ``radius`` voxels on voxel 11."""
    padded = SIZE + 2 * MARGIN
    yy, xx = np.mgrid[:padded, :padded] - padded // 2
    disc = np.where(yy**2 + xx**2 <= radius**2, 0.8, 0.1)
    return np.repeat(disc[..., None], channels, axis=-1).astype(np.float16)


def _sampling(**changes) -> FprSamplingConfig:
    base = load_config(FprTrainConfig, "fpr").sampling
    quiet = dict(flip=False, rotate90=False, hu_offset=0.0, contrast_range=(1.0, 1.0), augment_margin=MARGIN)
    return dataclasses.replace(base, **(quiet | changes))


def test_without_zoom_a_sample_is_an_integer_crop_within_the_margin():
    patch = _disc_patch(3.0) + np.random.default_rng(0).normal(0, 0.01, (22, 22, 3)).astype(np.float16)
    rng = np.random.default_rng(1)
    for _ in range(20):
        out = augment(patch, SIZE, 2, _sampling(), rng)
        hits = [
            (i, j) for i in range(2 * MARGIN + 1) for j in range(2 * MARGIN + 1)
            if np.array_equal(out, patch[i : i + SIZE, j : j + SIZE].astype(np.float32))
        ]  # fmt: skip
        assert len(hits) == 1


@pytest.mark.parametrize("zoom", [0.8, 1.0, 1.25])
def test_zoom_magnifies_the_candidate_about_its_centre(zoom):
    patch = _disc_patch(4.0)
    rng = np.random.default_rng(2)
    areas, centres = [], []
    for _ in range(10):
        out = scaled_crop(patch, SIZE, 2, zoom, rng)
        assert out.shape == (SIZE, SIZE, 3) and out.dtype == np.float32
        inside = out[..., 0] > 0.45
        areas.append(inside.sum())
        centres.append(np.argwhere(inside).mean(0))
    assert np.mean(areas) == pytest.approx(np.pi * (4.0 * zoom) ** 2, rel=0.15)
    offsets = np.abs(np.array(centres) - SIZE // 2)
    assert offsets.max() <= MARGIN * zoom + 0.75  # shifted at most by the padding, at the zoomed scale
    assert offsets.max() > 0.5  # and shifted at all


def test_scaled_samples_of_a_zoom_range_and_3d_cubes():
    cube = np.zeros((SIZE + 2 * MARGIN,) * 3 + (1,), np.float16)
    c = (SIZE + 2 * MARGIN) // 2
    cube[c - 2 : c + 3, c - 2 : c + 3, c - 2 : c + 3] = 1.0
    out = augment(cube, SIZE, 3, _sampling(scale_range=(0.9, 1.1)), np.random.default_rng(3))
    assert out.shape == (SIZE, SIZE, SIZE, 1)
    assert 0.6 * 125 < (out > 0.5).sum() < 1.5 * 125
    with pytest.raises(ValueError, match="scale_range"):
        _sampling(scale_range=(1.2, 0.9))


def _numbered_set(n_pos: int, n_neg: int, n_hard: int) -> PatchSet:
    """Constant patches whose value is the row number / 100; the last ``n_hard`` negatives are the U-Net's."""
    n = n_pos + n_neg
    values = (np.arange(n) / 100.0).reshape(-1, 1, 1, 1) * np.ones((1, SIZE + 2 * MARGIN, SIZE + 2 * MARGIN, 3))
    labels = np.array([1] * n_pos + [0] * n_neg, np.int8)
    hard = np.arange(n) >= n - n_hard
    return PatchSet(values.astype(np.float16), labels, np.array(["x"] * n), hard)


def _drawn_rows(data: PatchSet, sampling: FprSamplingConfig, count: int, seed: int = 5) -> np.ndarray:
    stream = balanced_stream(data, SIZE, 2, sampling, seed)
    return np.array([int(round(float(next(stream)[0][0, 0, 0]) * 100)) for _ in range(count)])


def test_hard_negative_fraction_draws_the_unet_negatives_that_often():
    data = _numbered_set(n_pos=4, n_neg=36, n_hard=4)  # 4 of 36 negatives (11%) are the U-Net's
    rows = _drawn_rows(data, _sampling(positive_fraction=0.5, hard_negative_fraction=0.6), 3000)
    negatives = rows[rows >= 4]
    assert 0.45 < len(negatives) / len(rows) < 0.55
    expected = 0.6 + 0.4 * 4 / 36  # the favoured draws plus the hard ones among the uniform draws
    assert abs(np.mean(negatives >= 36) - expected) < 0.04
    uniform = _drawn_rows(data, _sampling(positive_fraction=0.5, hard_negative_fraction=0.0), 3000)
    assert abs(np.mean(uniform[uniform >= 4] >= 36) - 4 / 36) < 0.03


def test_without_hard_negative_fraction_the_stream_ignores_which_rows_are_the_unets():
    marked, unmarked = _numbered_set(4, 36, 4), _numbered_set(4, 36, 0)
    sampling = _sampling(positive_fraction=0.5, hard_negative_fraction=0.0)  # FPR v3's setting
    np.testing.assert_array_equal(_drawn_rows(marked, sampling, 300), _drawn_rows(unmarked, sampling, 300))
    with pytest.raises(ValueError, match="hard_negative_fraction"):
        _sampling(hard_negative_fraction=1.5)


def test_candidate_rows_keep_their_source_and_unsourced_extra_rows_are_the_unets(tmp_path):
    (tmp_path / "candidates.csv").write_text("seriesuid,coordX,coordY,coordZ,class\na,1,2,3,0\n")
    sourced = pd.DataFrame({"seriesuid": ["a", "a"], "coordX": [4.0, 5.0], "coordY": [0.0, 0.0],
                            "coordZ": [0.0, 0.0], "source": ["unet", "blob"]})  # fmt: skip
    table = read_candidates_tables(tmp_path, sourced)
    assert hard_rows(table).tolist() == [False, True, False]
    unsourced = read_candidates_tables(tmp_path, sourced.drop(columns="source"))
    assert hard_rows(unsourced).tolist() == [False, True, True]
    assert not hard_rows(table.drop(columns="source")).any()
