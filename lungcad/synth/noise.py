"""Reconstruction blur, quantum noise, the scanner's HU range and the circular field of view.

The noiseless float32 volume is blurred by the point-spread function (in-plane) and a slice profile
(along z), correlated Gaussian noise is added, values are rounded to int16 HU and clipped to the
scanner's range, and everything outside the scan circle gets the file's outside value. Work is done in
chunks of slices so memory stays at the size of the volume plus a chunk. Kernels are built with
arithmetic only (:func:`lungcad.synth.util.binomial_kernel`) so results are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lungcad.synth.config import NoiseConfig
from lungcad.synth.geometry import Geometry
from lungcad.synth.util import binomial_passes, passes_kernel, smooth_pass, uniform

CHUNK = 16  # slices per chunk (fixed: the noise stream depends on it)


@dataclass(frozen=True)
class NoiseParams:
    """Per-scan blur and noise (drawn from the noise stream)."""

    psf_mm: float
    sigma_hu: float  # noise standard deviation at this matrix size


def draw_noise(rng: np.random.Generator, cfg: NoiseConfig, geom: Geometry) -> NoiseParams:
    """Blur and noise level; the noise sigma is given at a 512 matrix and scales with 1 / pixel size."""
    psf = uniform(rng, cfg.psf_sigma_mm)
    sigma = uniform(rng, cfg.sigma_hu) * (geom.fov_mm / 512.0) / geom.h
    return NoiseParams(psf, sigma)


def _smooth_yx(a: np.ndarray, passes: tuple[float, ...]) -> np.ndarray:
    """Separable smoothing of a ``(n, Y, X)`` float32 block along y and x."""
    for w in passes:
        a = smooth_pass(a, w, 1)
        a = smooth_pass(a, w, 2)
    return a


def _blur_z(vol: np.ndarray, passes: tuple[float, ...], rows: int = 32) -> None:
    """Smooth ``vol`` (Z, Y, X) along z in place, ``rows`` rows at a time."""
    if not passes or vol.shape[0] < 2:
        return
    for j in range(0, vol.shape[1], rows):
        slab = vol[:, j : j + rows]
        for w in passes:
            slab = smooth_pass(slab, w, 0)
        vol[:, j : j + rows] = slab


def finish_volume(
    vol: np.ndarray, geom: Geometry, rng: np.random.Generator, cfg: NoiseConfig, params: NoiseParams
) -> np.ndarray:
    """Blur + noise + rounding of ``vol`` (float32 ``(Z, Y, X)`` HU, modified) -> int16 HU ``(Z, Y, X)``.

    Correlated noise (white noise smoothed by ``correlation_px``) is added before the point-spread
    blur, so the noise texture is shaped by the reconstruction kernel too; its final standard deviation
    is ``params.sigma_hu``. Outside the scan circle the result is ``geom.outside_hu``.
    """
    _blur_z(vol, binomial_passes(cfg.z_sigma_fraction * geom.thickness / geom.sz))
    psf = binomial_passes(params.psf_mm / geom.h)
    corr = binomial_passes(cfg.correlation_px)
    kernel = np.convolve(passes_kernel(corr), passes_kernel(psf))
    scale = np.float32(params.sigma_hu / float(np.sum(kernel * kernel)))
    outside = ~geom.fov_mask()
    lo, hi = cfg.hu_clip
    out = np.empty(vol.shape, dtype=np.int16)
    for k0 in range(0, vol.shape[0], CHUNK):
        noise = rng.standard_normal(vol[k0 : k0 + CHUNK].shape, dtype=np.float32)
        block = vol[k0 : k0 + CHUNK] + _smooth_yx(noise, corr) * scale
        block = _smooth_yx(block, psf)
        np.clip(np.rint(block), lo, hi, out=block)
        chunk = block.astype(np.int16)
        chunk[:, outside] = geom.outside_hu
        out[k0 : k0 + CHUNK] = chunk
    return out
