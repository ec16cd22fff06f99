"""U-Net builder: the seed's shapes, 2.5-D channels, and a get_config round trip."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

from lungcad.candidates.unet import UNetConfig, build_unet, transfer_weights

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


def test_widened_context_starts_as_the_source_model():
    """A U-Net with 2 more context slices on each side, started from a trained 1-slice one, gives the same output
    whatever the added outer slices hold; other architecture changes are refused."""
    small = dataclasses.replace(SEED, depth=3, base_filters=4, batch_norm=True, input_size=None, context_slices=1)
    source = build_unet(small)
    rng = np.random.default_rng(0)
    source.set_weights([rng.normal(size=w.shape).astype(w.dtype) for w in source.get_weights()])
    wide_cfg = dataclasses.replace(small, context_slices=3)
    wide = build_unet(wide_cfg)
    transfer_weights(wide, source, small, wide_cfg)
    x = rng.random((2, 16, 16, 7)).astype("float32")
    expected = np.asarray(source(x[..., 2:5], training=False))
    np.testing.assert_allclose(np.asarray(wide(x, training=False)), expected, atol=1e-5)
    kernel = wide.get_layer("down0_conv1").get_weights()[0]
    assert kernel.shape[2] == 7 and not kernel[:, :, [0, 1, 5, 6]].any()  # the added slices start at zero
    with pytest.raises(ValueError, match="cannot start"):
        other = dataclasses.replace(wide_cfg, base_filters=8)
        transfer_weights(build_unet(other), source, small, other)
    with pytest.raises(ValueError, match="cannot start"):  # narrowing would drop what the source learned
        transfer_weights(source, wide, wide_cfg, small)
