"""The seed design's 2-D U-Net (Ronneberger et al. 2015) as a Keras 3 functional model.

Contracting path of ``depth`` levels with ``base_filters * 2**level`` filters (32-64-128-256-512 in the
seed), two 3x3 convolutions per level, 2x2 max-pooling; expanding path of 2x upsampling + concatenation
with the matching contracting level + two 3x3 convolutions; a 1x1 sigmoid output: per-pixel nodule
probability. Input: ``(H, W, 2 * context_slices + 1)`` channels-last, adjacent axial slices stacked as
channels for 2.5-D context (normalised HU in [0, 1]). ``H`` and ``W`` must be multiples of
``2 ** (depth - 1)``; ``input_size: null`` builds a fully convolutional model for any such size.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import keras
import numpy as np
from keras import layers


@dataclass(frozen=True)
class UNetConfig:
    """U-Net hyper-parameters (``detector.model`` of ``configs/unet.yaml``; a model's ``detector.yaml`` ``model``).

    Attributes:
        depth: number of resolution levels (5 in the seed: 32..512 filters).
        base_filters: filters at the first level (32 in the seed).
        batch_norm: batch normalisation after each convolution.
        dropout: spatial dropout rate at the bottom level (0 = none).
        input_size: (H, W) pixels, or None for any size (multiples of 2**(depth-1)).
        context_slices: adjacent slices on each side stacked as channels (0 = plain 2-D).
        upsampling: "nearest" (the seed's UpSampling2D) or "transpose" (learned).
    """

    depth: int
    base_filters: int
    batch_norm: bool
    dropout: float
    input_size: tuple[int, int] | None
    context_slices: int
    upsampling: str

    @property
    def channels(self) -> int:
        return 2 * self.context_slices + 1


def apply_conv_block(x, filters: int, batch_norm: bool, name: str):
    """Two 3x3 convolutions (same padding), each with optional batch norm, then ReLU."""
    for i in (1, 2):
        x = layers.Conv2D(
            filters, 3, padding="same", use_bias=not batch_norm, kernel_initializer="he_normal", name=f"{name}_conv{i}"
        )(x)
        if batch_norm:
            x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def apply_up_block(x, skip, filters: int, config: UNetConfig, name: str):
    """2x upsampling, concatenation with the contracting path's ``skip``, then a conv block."""
    if config.upsampling == "transpose":
        x = layers.Conv2DTranspose(filters, 2, strides=2, padding="same", name=f"{name}_upconv")(x)
    else:
        x = layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_up")(x)
    x = layers.Concatenate(name=f"{name}_concat")([x, skip])
    return apply_conv_block(x, filters, config.batch_norm, name)


def build_unet(config: UNetConfig) -> keras.Model:
    """The U-Net for ``config``: input (H, W, channels) in [0, 1] -> (H, W, 1) nodule probability."""
    if config.upsampling not in ("nearest", "transpose"):
        raise ValueError(f"upsampling must be 'nearest' or 'transpose', got {config.upsampling!r}")
    size = tuple(config.input_size) if config.input_size else (None, None)
    inputs = keras.Input((*size, config.channels), name="slices")
    x, skips = inputs, []
    for level in range(config.depth - 1):
        x = apply_conv_block(x, config.base_filters * 2**level, config.batch_norm, f"down{level}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"down{level}_pool")(x)
    x = apply_conv_block(x, config.base_filters * 2 ** (config.depth - 1), config.batch_norm, "bottom")
    if config.dropout > 0:
        x = layers.SpatialDropout2D(config.dropout, name="bottom_dropout")(x)
    for level in reversed(range(config.depth - 1)):
        x = apply_up_block(x, skips[level], config.base_filters * 2**level, config, f"up{level}")
    outputs = layers.Conv2D(1, 1, activation="sigmoid", dtype="float32", name="probability")(x)
    return keras.Model(inputs, outputs, name=f"unet_d{config.depth}_f{config.base_filters}")


def widens_context(source_config: UNetConfig, config: UNetConfig) -> bool:
    """Whether ``config`` is ``source_config`` with more ``context_slices``, and nothing else changed."""
    same_otherwise = replace(source_config, context_slices=config.context_slices) == config
    return same_otherwise and config.context_slices > source_config.context_slices


def transfer_weights(model: keras.Model, source: keras.Model, source_config: UNetConfig, config: UNetConfig) -> None:
    """Copy ``source``'s weights into ``model`` (same layers), widening the 2.5-D context if ``config`` stacks more
    slices than ``source_config``: the first convolution's kernel for the source's slices is kept, centred, and
    the added outer slices start at zero, so the widened U-Net starts out computing exactly what ``source`` did.

    Raises:
        ValueError: if the two configs differ in anything but a larger ``context_slices``.
    """
    if config != source_config and not widens_context(source_config, config):
        raise ValueError(f"cannot start a U-Net with {config} from one with {source_config}")
    extra = config.context_slices - source_config.context_slices
    for layer in model.layers:
        weights = source.get_layer(layer.name).get_weights()
        if layer.name == "down0_conv1" and extra:
            kernel = np.zeros(layer.get_weights()[0].shape, dtype=weights[0].dtype)  # (3, 3, channels, filters)
            kernel[:, :, extra : extra + source_config.channels, :] = weights[0]
            weights = [kernel, *weights[1:]]
        layer.set_weights(weights)
