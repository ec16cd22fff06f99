"""Model directories: a model trained under mixed precision is saved computing in float32."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from lungcad.modeldir import load_model_dir, save_model_dir


@dataclass(frozen=True)
class _Settings:
    threshold: float


def _model() -> keras.Model:
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    return keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid", dtype="float32")(x))


def test_mixed_precision_model_is_saved_computing_in_float32(tmp_path):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = _model()
        model.set_weights([np.random.default_rng(i).normal(size=w.shape) for i, w in enumerate(model.get_weights())])
        assert model.layers[1].compute_dtype == "bfloat16"
        save_model_dir(model, _Settings(0.5), tmp_path, "settings.yaml")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    loaded, settings = load_model_dir(tmp_path, _Settings, "settings.yaml", "unet")
    assert settings == _Settings(0.5)
    assert {layer.compute_dtype for layer in loaded.layers} == {"float32"}
    for saved, trained in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(saved, trained)
    x = np.random.default_rng(9).random((2, 8, 8, 2)).astype(np.float32)
    exact = np.asarray(loaded(x))
    assert exact.dtype == np.float32
    np.testing.assert_allclose(exact, np.asarray(model(x), dtype=np.float32), atol=0.05)  # bfloat16: ~3 digits


def test_float32_model_is_saved_unchanged(tmp_path):
    model = _model()
    save_model_dir(model, _Settings(0.1), tmp_path, "settings.yaml")
    loaded, _ = load_model_dir(tmp_path, _Settings, "settings.yaml", "unet")
    x = np.random.default_rng(1).random((1, 8, 8, 2)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))
