"""Scanner jitter shared by the trainers: what a reconstruction kernel and a dose do to a patch.

The generator already randomizes scanners per phantom (``configs/world_scanner.yaml``); this adds, per training
patch, the variation that makes a model indifferent to it: a blur (soft kernel) or an unsharp mask (sharp kernel,
edge overshoot) over the patch's spatial axes only (2.5-D planes and context slices are channels, each filtered
in-plane), and Gaussian noise of a level drawn per patch (dose). The settings are fields of each trainer's
sampling config (``noise_hu``, ``kernel_probability``, ``blur_sigma_mm``, ``sharpen_amount``); all 0 draws nothing,
so the random streams of models trained before it are unchanged.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from scipy import ndimage


class JitterSettings(Protocol):
    """The four sampling-config fields :func:`scanner_jitter` reads."""

    noise_hu: float  # noise sigma drawn in [0, noise_hu] HU
    kernel_probability: float  # chance of a blur, and again of a sharpening (<= 0.5 each)
    blur_sigma_mm: float  # blur sigma drawn in [0, blur_sigma_mm] mm
    sharpen_amount: float  # unsharp-mask amount drawn in [0, sharpen_amount]


def check_jitter(config: JitterSettings) -> None:
    """ValueError unless the settings are in range (called by the sampling configs' ``__post_init__``)."""
    if not 0.0 <= config.kernel_probability <= 0.5:
        raise ValueError(f"sampling.kernel_probability {config.kernel_probability}: expected 0 to 0.5")
    if min(config.noise_hu, config.blur_sigma_mm, config.sharpen_amount) < 0:
        raise ValueError("sampling.noise_hu, blur_sigma_mm and sharpen_amount must be >= 0")


def scanner_jitter(
    patch: np.ndarray, dims: int, config: JitterSettings, rng, hu_per_unit: float, voxel_mm: float = 1.0
) -> np.ndarray:
    """Blur or sharpen, then noise, of one normalised patch.

    Args:
        patch: (spatial..., channels) float, ``dims`` leading spatial axes of ``voxel_mm`` mm voxels.
        config: the sampling config (:class:`JitterSettings`).
        rng: a numpy Generator (not used when everything is off).
        hu_per_unit: HU per unit of the patch's values (the normalisation window's width).

    Returns:
        float32, the shape of ``patch``.
    """
    if config.kernel_probability > 0:
        draw = rng.random()
        unit = (1.0 / voxel_mm,) * dims + (0.0,) * (patch.ndim - dims)
        if draw < config.kernel_probability:
            sigma = rng.uniform(0.0, config.blur_sigma_mm)
            patch = ndimage.gaussian_filter(patch, [sigma * u for u in unit])
        elif draw < 2 * config.kernel_probability:
            amount = rng.uniform(0.0, config.sharpen_amount)
            patch = patch + amount * (patch - ndimage.gaussian_filter(patch, unit))
    if config.noise_hu > 0:
        patch = patch + rng.normal(0.0, rng.uniform(0.0, config.noise_hu) / hu_per_unit, size=patch.shape)
    return np.asarray(patch, dtype=np.float32)
