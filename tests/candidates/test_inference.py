"""Slice inference: only lung slices are run, with 2.5-D context; test-time flips average mirrored outputs."""

from __future__ import annotations

import numpy as np
import pytest

from lungcad.candidates.inference import predict_volume
from lungcad.candidates.unet import UNetConfig
from lungcad.errors import ConfigError

MODEL = UNetConfig(
    depth=2, base_filters=4, batch_norm=False, dropout=0.0, input_size=None, context_slices=1, upsampling="nearest"
)


def _centre_channel(x):
    """A stand-in U-Net that returns its input's centre slice: mirroring in, mirroring back changes nothing."""
    return np.asarray(x)[..., 1:2]


def _left_edge(x):
    """A stand-in U-Net that is not mirror-symmetric: 1 on the left half of each slice (x < width / 2), else 0."""
    x = np.asarray(x)
    out = np.zeros(x.shape[:-1] + (1,), np.float32)
    out[:, :, : x.shape[2] // 2] = 1.0
    return out


def test_only_lung_slices_are_run_and_see_their_neighbours():
    image = np.arange(6, dtype=np.float32)[:, None, None] * np.ones((6, 4, 6), np.float32)
    lung = np.zeros(image.shape, bool)
    lung[2:4, 1, 1] = True
    prob = predict_volume(_centre_channel, image, lung, MODEL, batch_size=4)
    assert prob[:2].max() == 0 and prob[4:].max() == 0
    np.testing.assert_array_equal(prob[2:4, 0, 0], [2.0, 3.0])


def test_test_time_flips_average_the_mirrored_outputs():
    rng = np.random.default_rng(0)
    image = rng.random((3, 4, 6)).astype(np.float32)
    lung = np.ones(image.shape, bool)
    plain = predict_volume(_centre_channel, image, lung, MODEL, batch_size=2)
    flipped = predict_volume(_centre_channel, image, lung, MODEL, batch_size=2, flips=("x", "y"))
    np.testing.assert_allclose(flipped, plain, atol=1e-6)  # a mirror-symmetric model: same map
    np.testing.assert_allclose(predict_volume(_left_edge, image, lung, MODEL, 2)[0, 0], [1, 1, 1, 0, 0, 0])
    np.testing.assert_allclose(predict_volume(_left_edge, image, lung, MODEL, 2, ("x",))[0, 0], 0.5)
    with pytest.raises(ConfigError, match="test_time_flips"):
        predict_volume(_left_edge, image, lung, MODEL, 2, ("z",))
