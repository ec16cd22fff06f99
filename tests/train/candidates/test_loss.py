"""Dice + BCE loss: perfect predictions score ~0, an all-empty prediction of a batch with a nodule is
penalised even when most patches are nodule-free, ignored pixels do not count."""

from __future__ import annotations

import numpy as np

from lungcad.train.candidates.data import dice_bce_loss


def _batch():
    y = np.zeros((4, 16, 16, 1), np.float32)
    y[0, 6:10, 6:10] = 1.0  # one positive patch, three empty ones
    return y, np.ones_like(y)


def test_perfect_prediction_is_near_zero_and_empty_prediction_is_penalised_for_every_example():
    y, w = _batch()
    perfect = np.asarray(dice_bce_loss(y, y, w))
    assert perfect.shape == (4,) and perfect.max() < 0.01
    empty = np.asarray(dice_bce_loss(y, np.zeros_like(y), w))
    assert np.all(empty[1:] > 0.9)  # batch Dice: empty patches do not reward predicting nothing


def test_positive_weight_and_ignored_pixels():
    y, w = _batch()
    half = np.where(y > 0, 0.5, 0.01).astype(np.float32)
    plain = np.asarray(dice_bce_loss(y, half, w))[0]
    weighted = np.asarray(dice_bce_loss(y, half, w, pos_weight=5.0))[0]
    assert weighted > plain
    wrong = half.copy()
    wrong[1, :4, :4] = 0.99  # a false positive ...
    ignore = w.copy()
    ignore[1, :4, :4] = 0.0  # ... on an excluded finding
    np.testing.assert_allclose(
        np.asarray(dice_bce_loss(y, wrong, ignore))[1], np.asarray(dice_bce_loss(y, half, ignore))[1], atol=1e-5
    )
