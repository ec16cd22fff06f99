"""Score fusion: the FPR's probability with the U-Net's mean probability, and the choice of their weight."""

from __future__ import annotations

import numpy as np
import pytest

from lungcad.fpr.fusion import choose_unet_weight, fuse


def test_fuse_is_a_weighted_geometric_mean_that_keeps_the_fpr_where_the_unet_is_unknown():
    fpr = np.array([0.9, 0.2, 0.5, 0.0])
    unet = np.array([0.1, 0.8, np.nan, 0.5])
    out = fuse(fpr, unet, 0.25)
    assert out[0] == pytest.approx(0.9**0.75 * 0.1**0.25) and out[1] == pytest.approx(0.2**0.75 * 0.8**0.25)
    assert out[2] == 0.5  # a blob candidate without a U-Net mean
    assert 0.0 < out[3] < 1e-4  # a zero is floored, not a veto of a strong U-Net
    np.testing.assert_array_equal(fuse(fpr, unet, 0.0), fpr)
    np.testing.assert_array_equal(fuse(fpr, None, 0.25), fpr)
    # the U-Net reorders two candidates the FPR nearly ties
    assert np.argmax(fuse(np.array([0.50, 0.49]), np.array([0.2, 0.9]), 0.3)) == 1


def test_the_weight_with_the_best_cpm_is_chosen_ties_going_to_the_smaller():
    fpr, unet = np.array([0.4, 0.6]), np.array([0.9, 0.1])  # row 0 is the nodule

    def cpm_of(probability):  # 1 when the nodule is ranked first
        return float(probability[0] > probability[1])

    weight, table = choose_unet_weight(cpm_of, fpr, unet, [0.0, 0.2, 0.4, 0.6])
    assert table == {0.0: 0.0, 0.2: 1.0, 0.4: 1.0, 0.6: 1.0} and weight == 0.2  # 0.4^0.8 0.9^0.2 > 0.6^0.8 0.1^0.2
    weight, table = choose_unet_weight(lambda p: 0.5, fpr, unet, [0.3, 0.0])
    assert weight == 0.0 and set(table) == {0.0, 0.3}
    # a CPM higher only in its last bits (the same FROC summed in another order) is still a tie
    cpms = iter([0.8494208494208494, 0.8494208494208495])
    assert choose_unet_weight(lambda p: next(cpms), fpr, unet, [0.2, 0.5])[0] == 0.2
