"""The seed design's WideResNet (Zagoruyko & Komodakis 2016) as a Keras 3 functional model, 2-D or 3-D.

WRN-d-k: depth ``d = 6n + 4`` (three stages of ``n`` residual blocks, two 3x3 convolutions each, plus
the stem convolution and the classifier), widths ``16k, 32k, 64k``; pre-activation blocks
(BN -> ReLU -> conv), dropout between the two convolutions of a block (0.3 in the seed), 1x1 projection
shortcuts where the width or stride changes; global average pooling and a sigmoid (nodule probability)
or softmax output. Input: 2.5-D patches ``(H, W, 3)`` (axial/coronal/sagittal planes as channels, the
seed's 3-channel input) or 3-D cubes ``(D, H, W, 1)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers


@dataclass(frozen=True)
class WRNConfig:
    """WideResNet hyper-parameters (``scorer.model`` of ``configs/fpr.yaml``; a model's ``fpr.yaml`` ``model``).

    Attributes:
        depth: 6n + 4 (16, 22, 28, ...).
        widen_factor: k.
        dropout: rate between a block's two convolutions.
        dims: 2 (2.5-D patches) or 3 (cubes).
        patch_size: patch side in voxels (all axes).
        channels: input channels (3 for 2.5-D planes, 1 for cubes).
        classes: 1 -> sigmoid nodule probability; > 1 -> softmax.
    """

    depth: int
    widen_factor: int
    dropout: float
    dims: int
    patch_size: int
    channels: int
    classes: int

    @property
    def blocks_per_stage(self) -> int:
        if (self.depth - 4) % 6 or self.depth < 10:
            raise ValueError(f"WideResNet depth must be 6n + 4 (10, 16, 22, 28, ...), got {self.depth}")
        return (self.depth - 4) // 6


def _conv(dims: int):
    return layers.Conv2D if dims == 2 else layers.Conv3D


def apply_wide_block(x, filters: int, stride: int, config: WRNConfig, name: str):
    """Pre-activation residual block: BN-ReLU-conv3, dropout, BN-ReLU-conv3, plus the shortcut
    (identity, or a 1x1 projection of the pre-activated input when width or stride changes)."""
    conv = _conv(config.dims)
    pre = layers.BatchNormalization(name=f"{name}_bn1")(x)
    pre = layers.Activation("relu", name=f"{name}_relu1")(pre)
    y = conv(
        filters, 3, strides=stride, padding="same", use_bias=False, kernel_initializer="he_normal", name=f"{name}_conv1"
    )(pre)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    y = layers.Activation("relu", name=f"{name}_relu2")(y)
    if config.dropout > 0:
        y = layers.Dropout(config.dropout, name=f"{name}_dropout")(y)
    y = conv(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal", name=f"{name}_conv2")(y)
    if x.shape[-1] != filters or stride != 1:
        x = conv(
            filters,
            1,
            strides=stride,
            padding="same",
            use_bias=False,
            kernel_initializer="he_normal",
            name=f"{name}_proj",
        )(pre)
    return layers.Add(name=f"{name}_add")([x, y])


def apply_stage(x, filters: int, stride: int, config: WRNConfig, name: str):
    """``n`` wide blocks; the first may change width and stride."""
    for i in range(config.blocks_per_stage):
        x = apply_wide_block(x, filters, stride if i == 0 else 1, config, f"{name}_block{i}")
    return x


def build_wideresnet(config: WRNConfig) -> keras.Model:
    """WRN-depth-k for ``config``: patch in [0, 1] -> nodule probability (or class softmax)."""
    if config.dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3, got {config.dims}")
    k = config.widen_factor
    shape = (config.patch_size,) * config.dims + (config.channels,)
    inputs = keras.Input(shape, name="patch")
    x = _conv(config.dims)(16, 3, padding="same", use_bias=False, kernel_initializer="he_normal", name="stem")(inputs)
    for stage, (filters, stride) in enumerate(((16 * k, 1), (32 * k, 2), (64 * k, 2))):
        x = apply_stage(x, filters, stride, config, f"stage{stage + 1}")
    x = layers.BatchNormalization(name="final_bn")(x)
    x = layers.Activation("relu", name="final_relu")(x)
    pool = layers.GlobalAveragePooling2D if config.dims == 2 else layers.GlobalAveragePooling3D
    x = pool(name="pool")(x)
    activation = "sigmoid" if config.classes == 1 else "softmax"
    outputs = layers.Dense(config.classes, activation=activation, dtype="float32", name="probability")(x)
    return keras.Model(inputs, outputs, name=f"wrn_{config.depth}_{k}_{config.dims}d")
