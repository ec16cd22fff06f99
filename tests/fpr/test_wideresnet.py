"""WideResNet builder: depth/width arithmetic, projection shortcuts, 2-D and 3-D, get_config round trip."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

from lungcad.fpr.wideresnet import WRNConfig, build_wideresnet

WRN_16_2 = WRNConfig(depth=16, widen_factor=2, dropout=0.3, dims=2, patch_size=32, channels=3, classes=1)


def _convs(model, dims=2):
    kind = keras.layers.Conv2D if dims == 2 else keras.layers.Conv3D
    return [layer for layer in model.layers if isinstance(layer, kind)]


def test_wrn_16_2_structure():
    model = build_wideresnet(WRN_16_2)
    convs = _convs(model)
    three = [c for c in convs if c.kernel_size == (3, 3)]
    projections = [c for c in convs if c.kernel_size == (1, 1)]
    assert len(three) == 1 + 6 * 2  # stem + 3 stages x 2 blocks x 2 convs (depth 16 = 6*2 + 4)
    assert [c.filters for c in projections] == [32, 64, 128]  # width changes at every stage entry
    assert sorted({c.filters for c in three}) == [16, 32, 64, 128]
    assert sum(isinstance(layer, keras.layers.Dropout) for layer in model.layers) == 6
    assert model.output_shape == (None, 1)


def test_3d_cubes_and_softmax():
    cfg = dataclasses.replace(WRN_16_2, depth=10, widen_factor=1, dims=3, patch_size=16, channels=1, classes=2)
    model = build_wideresnet(cfg)
    out = np.asarray(model(np.zeros((2, 16, 16, 16, 1), np.float32), training=False))
    assert out.shape == (2, 2)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)


def test_get_config_round_trip():
    cfg = dataclasses.replace(WRN_16_2, depth=10, widen_factor=1, patch_size=16)
    model = build_wideresnet(cfg)
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    x = np.random.default_rng(0).random((3, 16, 16, 3), dtype=np.float32)
    np.testing.assert_allclose(np.asarray(clone(x, training=False)), np.asarray(model(x, training=False)), atol=1e-6)


def test_bad_depth_rejected():
    with pytest.raises(ValueError, match="6n \\+ 4"):
        build_wideresnet(dataclasses.replace(WRN_16_2, depth=15))
