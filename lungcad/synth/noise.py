"""Reconstruction blur, quantum noise, the scanner's HU range and the circular field of view.

The noiseless float32 volume is blurred by the point-spread function (in-plane) and a slice profile
(along z), correlated Gaussian noise is added, values are rounded to int16 HU and clipped to the
scanner's range, and everything outside the scan circle gets the file's outside value. Work is done in
chunks of slices so memory stays at the size of the volume plus a chunk. Kernels are built with
arithmetic only (:func:`lungcad.synth.util.binomial_kernel`) so results are reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
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


def legacy_blur_z(vol: np.ndarray, geom: Geometry, cfg: NoiseConfig) -> None:
    """Today's slice-profile blur of ``vol`` (Z, Y, X) in place: Gaussian of ``z_sigma_fraction`` x thickness."""
    _blur_z(vol, binomial_passes(cfg.z_sigma_fraction * geom.thickness / geom.sz))


def filter_z(vol: np.ndarray, weights: np.ndarray, rows: int = 32) -> None:
    """Correlate ``vol`` (Z, Y, X) along z in place with ``weights`` (odd length, centred), ``rows`` rows at a time.

    Slices beyond the ends repeat the end slices (nearest edge).
    """
    w = np.asarray(weights, dtype=np.float32)
    r = (len(w) - 1) // 2
    nz = vol.shape[0]
    if r == 0 or nz < 2:
        if w[0] != 1:
            vol *= w[0]
        return
    idx = np.clip(np.arange(-r, nz + r), 0, nz - 1)
    for j in range(0, vol.shape[1], rows):
        src = vol[idx, j : j + rows]
        acc = src[0:nz] * w[0]
        for t in range(1, len(w)):
            acc += src[t : t + nz] * w[t]
        vol[:, j : j + rows] = acc


def filter_z_chunk(vol: np.ndarray, k0: int, k1: int, weights: np.ndarray) -> np.ndarray:
    """Slices ``k0 .. k1 - 1`` of ``vol`` (Z, Y, X) correlated along z with symmetric ``weights`` (odd length).

    Returns a new float32 ``(k1 - k0, Y, X)`` array; slices beyond the ends repeat the end slices.
    """
    w = np.asarray(weights, dtype=np.float32)
    r = (len(w) - 1) // 2
    nz, n = vol.shape[0], k1 - k0

    def shifted(a: int) -> np.ndarray:
        return vol[a : a + n] if a >= 0 and a + n <= nz else vol[np.clip(np.arange(a, a + n), 0, nz - 1)]

    acc = vol[k0:k1] * w[r]
    tmp = np.empty_like(acc)
    for j in range(1, r + 1):
        np.add(shifted(k0 - j), shifted(k0 + j), out=tmp)
        tmp *= w[r + j]
        acc += tmp
    return acc


def finish_volume(
    vol: np.ndarray,
    geom: Geometry,
    rng: np.random.Generator,
    cfg: NoiseConfig,
    params: NoiseParams,
    *,
    blur_z: bool = True,
    artefacts: Callable[[np.ndarray, int], None] | None = None,
    calibration: tuple[float, float] | None = None,
) -> np.ndarray:
    """Blur + noise + rounding of ``vol`` (float32 ``(Z, Y, X)`` HU, modified) -> int16 HU ``(Z, Y, X)``.

    Correlated noise (white noise smoothed by ``correlation_px``) is added before the point-spread
    blur, so the noise texture is shaped by the reconstruction kernel too; its final standard deviation
    is ``params.sigma_hu``. Outside the scan circle the result is ``geom.outside_hu``.

    Hooks of the randomized scanner world (:mod:`lungcad.synth.scanner`; the defaults are today's output):
    ``blur_z=False`` skips the slice-profile blur (done by the caller), ``artefacts(block, k0)`` adds HU to each
    noisy chunk before the point-spread blur, ``calibration=(scale, offset)`` maps HU to ``scale HU + offset``
    before rounding.
    """
    if blur_z:
        legacy_blur_z(vol, geom, cfg)
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
        if artefacts is not None:
            artefacts(block, k0)
        block = _smooth_yx(block, psf)
        if calibration is not None:
            block = block * np.float32(calibration[0]) + np.float32(calibration[1])
        np.clip(np.rint(block), lo, hi, out=block)
        chunk = block.astype(np.int16)
        chunk[:, outside] = geom.outside_hu
        out[k0 : k0 + CHUNK] = chunk
    return out
