"""Scanner jitter (kernel and dose) of training patches, shared by the U-Net's and the FPR's samplers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lungcad.config import load_config
from lungcad.train.augment import scanner_jitter
from lungcad.train.candidates.train import UNetTrainConfig
from lungcad.train.fpr.train import FprTrainConfig

HU_PER_UNIT = 1800.0


def _disc(channels: int = 2) -> np.ndarray:
    """(22, 22, channels): a bright disc (0.8) on 0.1 in channel 0, the other channels flat 0.3."""
    yy, xx = np.mgrid[:22, :22] - 11
    out = np.full((22, 22, channels), 0.3, np.float32)
    out[..., 0] = np.where(yy**2 + xx**2 <= 16, 0.8, 0.1)
    return out


@pytest.fixture(params=["fpr", "unet"])
def sampling(request):
    """Both trainers' sampling configs as shipped (jitter off), to be switched on by replace()."""
    kind = FprTrainConfig if request.param == "fpr" else UNetTrainConfig
    return load_config(kind, request.param).sampling


def test_kernel_jitter_blurs_or_sharpens_each_plane_in_plane(sampling):
    disc = _disc()
    edge = np.abs(np.diff(disc[..., 0], axis=1)).max()
    blur = dataclasses.replace(sampling, kernel_probability=0.5, blur_sigma_mm=1.5, sharpen_amount=0.0)
    sharpen = dataclasses.replace(sampling, kernel_probability=0.5, blur_sigma_mm=0.0, sharpen_amount=0.8)
    blurred = sharpened = 0
    for seed in range(12):
        b = scanner_jitter(disc, 2, blur, np.random.default_rng(seed), HU_PER_UNIT)
        s = scanner_jitter(disc, 2, sharpen, np.random.default_rng(seed), HU_PER_UNIT)
        assert np.allclose(b[..., 1], 0.3, atol=1e-6) and np.allclose(s[..., 1], 0.3, atol=1e-6)  # planes not mixed
        blurred += np.abs(np.diff(b[..., 0], axis=1)).max() < 0.9 * edge
        sharpened += s[..., 0].max() > 0.81 or s[..., 0].min() < 0.09  # overshoot beyond the disc and background
    assert 3 <= blurred <= 9 and 3 <= sharpened <= 9  # about half blurred, the other half sharpened


def test_a_coarser_grid_blurs_less_per_voxel(sampling):
    """sigma is in mm: on 2 mm voxels the same draw spreads half as many voxels as on 1 mm ones."""
    blur = dataclasses.replace(sampling, kernel_probability=0.5, blur_sigma_mm=2.0)
    seed = next(s for s in range(20) if np.random.default_rng(s).random() < 0.5)  # a draw that blurs
    fine = scanner_jitter(_disc(), 2, blur, np.random.default_rng(seed), HU_PER_UNIT, voxel_mm=1.0)
    coarse = scanner_jitter(_disc(), 2, blur, np.random.default_rng(seed), HU_PER_UNIT, voxel_mm=2.0)
    assert np.abs(np.diff(coarse[..., 0], axis=1)).max() > np.abs(np.diff(fine[..., 0], axis=1)).max()


def test_noise_follows_the_drawn_dose(sampling):
    flat = np.full((16, 16, 3), 0.5, np.float32)
    noisy = dataclasses.replace(sampling, noise_hu=60.0)
    stds = [scanner_jitter(flat, 2, noisy, np.random.default_rng(s), HU_PER_UNIT).std() for s in range(40)]
    assert min(stds) > 0 and max(stds) <= 60.0 / HU_PER_UNIT * 1.15
    assert np.mean(stds) == pytest.approx(30.0 / HU_PER_UNIT, rel=0.2)  # sigma drawn in [0, 60] HU


def test_the_shipped_configs_jitter_nothing_and_bad_settings_are_refused(sampling):
    assert sampling.noise_hu == sampling.kernel_probability == 0
    assert np.array_equal(scanner_jitter(_disc(), 2, sampling, None, HU_PER_UNIT), _disc())  # no draw at all
    with pytest.raises(ValueError, match="kernel_probability"):
        dataclasses.replace(sampling, kernel_probability=0.7)
    with pytest.raises(ValueError, match="noise_hu"):
        dataclasses.replace(sampling, noise_hu=-1.0)
    world = load_config(FprTrainConfig, "fpr_world").sampling
    assert world.noise_hu > 0 and 0 < world.kernel_probability <= 0.5
