"""U-Net builder: the seed's shapes, 2.5-D channels, and a get_config round trip."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

from lungcad.candidates.unet import UNetConfig, build_unet

SEED = UNetConfig(
    depth=5, base_filters=32, batch_norm=False, dropout=0.0, input_size=(64, 64), context_slices=0, upsampling="nearest"
)


def test_seed_architecture_filters_and_shapes():
    model = build_unet(SEED)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    filters = [c.filters for c in convs]
    assert filters == [32, 32, 64, 64, 128, 128, 256, 256, 512, 512, 256, 256, 128, 128, 64, 64, 32, 32, 1]
    assert all(c.kernel_size == (3, 3) for c in convs[:-1]) and convs[-1].kernel_size == (1, 1)
    assert model.output_shape == (None, 64, 64, 1)
    assert sum(isinstance(layer, keras.layers.MaxPooling2D) for layer in model.layers) == 4


def test_fully_convolutional_25d_model_runs_on_any_multiple_of_16():
    cfg = dataclasses.replace(
        SEED,
        depth=4,
        base_filters=4,
        batch_norm=True,
        dropout=0.2,
        input_size=None,
        context_slices=1,
        upsampling="transpose",
    )
    model = build_unet(cfg)
    assert model.input_shape == (None, None, None, 3)
    out = model(np.random.default_rng(0).random((2, 48, 80, 3), dtype=np.float32), training=False)
    assert out.shape == (2, 48, 80, 1)
    values = np.asarray(out)
    assert values.min() >= 0.0 and values.max() <= 1.0


def test_get_config_round_trip_gives_same_outputs():
    cfg = dataclasses.replace(SEED, depth=3, base_filters=4, batch_norm=True, input_size=(32, 32), context_slices=2)
    model = build_unet(cfg)
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    x = np.random.default_rng(1).random((1, 32, 32, 5), dtype=np.float32)
    np.testing.assert_allclose(np.asarray(clone(x, training=False)), np.asarray(model(x, training=False)), atol=1e-6)
    assert clone.get_config() == model.get_config()


def test_bad_upsampling_rejected():
    with pytest.raises(ValueError, match="upsampling"):
        build_unet(dataclasses.replace(SEED, upsampling="bilinear"))
