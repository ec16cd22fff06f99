"""Randomized scanner and protocol of the synthetic CT (the *scanner world*).

Knobs (``noise:`` and ``geometry:`` of the synth config; each off reproduces today's phantoms bit for bit):

- reconstruction kernel (``noise.kernel``): a sharpness per scan sets the in-plane MTF
  ``G(f, sigma) (1 + boost (1 - G(f, boost_sigma)))`` (soft kernels blur; sharp ones enhance high frequencies,
  with overshoot at edges) and the filtered back-projection noise power spectrum ``|f| MTF(f)^2`` (no power at
  the lowest frequencies, a peak that moves up with the sharpness);
- dose (``noise.dose_sigma_hu``): the noise SD at a 512 matrix, log-uniform per scan;
- HU calibration (``noise.hu_scale``, ``noise.hu_offset``): ``HU' = scale HU + offset``;
- slice sensitivity profile (``noise.slice_profile``): box, trapezoid or Gaussian of FWHM = slice thickness along
  z (partial volume; noise correlated between overlapping slices); continuous spacings in
  ``geometry.*_range_mm`` (:func:`lungcad.synth.geometry.draw_geometry`);
- artefacts (``noise.artefacts``): cupping, dark bands between bones, streaks, photon starvation
  (:mod:`lungcad.synth.artefacts`) and motion (directional blur and shifts of some slices).

Every draw comes from the scanner stream, each knob from its own :func:`substream` of it, so one knob on or off
leaves the others' draws unchanged, and nothing is drawn while a knob is off. With the kernel or motion on the
in-plane work is done in Fourier space, chunk by chunk (:func:`_fourier_finish`): one ``rfft2`` of the image and
one ``irfft2`` per slice, the noise drawn directly as a spectrum; otherwise today's
:func:`lungcad.synth.noise.finish_volume` runs with hooks for the artefacts and the calibration. Filters use
vectorised ``exp``/``sinc`` (not the arithmetic-only rule of :mod:`lungcad.synth.util`): the world's phantoms are
reproducible on one machine, and today's phantoms do not go through this code.

``configs/world_scanner.yaml`` turns every knob on at wide training ranges; ``configs/world_scanner_heldout.yaml``
moves each one outside them (a held-out test world).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.fft

from lungcad.synth.artefacts import ArtefactParams, ArtefactRenderer, MotionPlan, motion_plan
from lungcad.synth.config import ArtefactConfig, KernelConfig, NoiseConfig
from lungcad.synth.geometry import Geometry
from lungcad.synth.noise import CHUNK, NoiseParams, filter_z, filter_z_chunk, finish_volume, legacy_blur_z
from lungcad.synth.util import uniform

#: Substreams of the scanner stream: one per knob for its per-scan draws, and ``*_slices`` for the per-slice draws
#: of the artefacts (spawn key: the scanner stream's key plus 1000 + the index here).
SUBSTREAMS = (
    "geometry",
    "dose",
    "kernel",
    "hu_scale",
    "hu_offset",
    "noise_field",
    "cupping",
    "bands",
    "streaks",
    "starvation",
    "motion",
    "profile",
    "streak_slices",
    "starvation_slices",
    "motion_slices",
)


def substream(rng: np.random.Generator, name: str) -> np.random.Generator:
    """The generator of knob ``name``: a child of ``rng``'s seed sequence, made without drawing from ``rng``."""
    seq = rng.bit_generator.seed_seq
    key = (*seq.spawn_key, 1000 + SUBSTREAMS.index(name))
    return np.random.default_rng(np.random.SeedSequence(seq.entropy, spawn_key=key, pool_size=seq.pool_size))


@dataclass(frozen=True)
class ScannerParams:
    """Per-scan scanner settings.

    Attributes:
        sigma_hu: noise SD (HU) at this matrix size.
        kernel: ``(sigma_mm, boost)`` of the kernel, or None (today's Gaussian PSF and smoothed white noise).
        hu_scale, hu_offset: calibration ``HU' = hu_scale HU + hu_offset`` (1, 0: off).
        artefacts: the artefact settings.
        profile_flat: trapezoidal slice profile's flat top / FWHM.
    """

    sigma_hu: float
    kernel: tuple[float, float] | None = None
    hu_scale: float = 1.0
    hu_offset: float = 0.0
    artefacts: ArtefactParams = field(default_factory=ArtefactParams)
    profile_flat: float = 0.5

    @property
    def fourier(self) -> bool:
        """Whether the in-plane work runs in Fourier space (kernel or motion on)."""
        return self.kernel is not None or self.artefacts.motion_fraction > 0

    @property
    def calibration(self) -> tuple[float, float] | None:
        """``(scale, offset)``, or None when the calibration is exact."""
        return None if (self.hu_scale, self.hu_offset) == (1.0, 0.0) else (self.hu_scale, self.hu_offset)


def kernel_at(cfg: KernelConfig, sharpness: float) -> tuple[float, float]:
    """``(sigma_mm, boost)`` of the kernel of ``sharpness`` (linear in it; sigma >= 0.05 mm, boost >= 0)."""
    s0, s1 = cfg.sigma_mm
    b0, b1 = cfg.boost
    return max(0.05, s0 + (s1 - s0) * sharpness), max(0.0, b0 + (b1 - b0) * sharpness)


def gauss_mtf(f: np.ndarray, sigma_mm: float) -> np.ndarray:
    """Transfer function ``exp(-2 pi^2 sigma^2 f^2)`` of a Gaussian of ``sigma_mm`` at ``f`` cycles/mm."""
    return np.exp(-2.0 * np.pi**2 * sigma_mm**2 * f * f)


def kernel_mtf(f: np.ndarray, sigma_mm: float, boost: float, boost_sigma_mm: float) -> np.ndarray:
    """MTF of a kernel at ``f`` cycles/mm: ``G(f, sigma) (1 + boost (1 - G(f, boost_sigma)))``."""
    return gauss_mtf(f, sigma_mm) * (1.0 + boost * (1.0 - gauss_mtf(f, boost_sigma_mm)))


def _draw_artefacts(rng: np.random.Generator, cfg: ArtefactConfig) -> ArtefactParams:
    """Per-scan artefact settings; each kind draws from its own substream, and only when its probability > 0."""
    out: dict = {"bone_hu": cfg.bone_hu, "streak_fade_mm": cfg.streak_fade_mm}
    if cfg.cupping_probability > 0:
        r = substream(rng, "cupping")
        if r.random() < cfg.cupping_probability:
            out["cupping_hu"] = uniform(r, cfg.cupping_hu)
    if cfg.band_probability > 0:
        r = substream(rng, "bands")
        if r.random() < cfg.band_probability:
            out["band_hu"] = uniform(r, cfg.band_hu)
            out["band_width_mm"] = uniform(r, cfg.band_width_mm)
    if cfg.streak_probability > 0:
        r = substream(rng, "streaks")
        if r.random() < cfg.streak_probability:
            out["streak_hu"] = cfg.streak_hu
            out["streaks_per_slice"] = cfg.streaks_per_slice
            out["streak_fraction"] = uniform(r, cfg.streak_slice_fraction)
    if cfg.starvation_probability > 0:
        r = substream(rng, "starvation")
        if r.random() < cfg.starvation_probability:
            out["starvation_hu"] = uniform(r, cfg.starvation_hu)
            out["starvation_fraction"] = uniform(r, cfg.starvation_fraction)
            out["starvation_angle_deg"] = cfg.starvation_angle_deg
    if cfg.motion_probability > 0:
        r = substream(rng, "motion")
        if r.random() < cfg.motion_probability:
            out["motion_fraction"] = uniform(r, cfg.motion_slice_fraction)
            out["motion_angle"] = np.pi / 2 + np.deg2rad(uniform(r, (-cfg.motion_angle_deg, cfg.motion_angle_deg)))
            out["motion_blur_mm"] = cfg.motion_blur_mm
            out["motion_shift_mm"] = cfg.motion_shift_mm
    return ArtefactParams(**out)


def draw_scanner(rng: np.random.Generator, cfg: NoiseConfig, geom: Geometry, noise: NoiseParams) -> ScannerParams:
    """Per-scan scanner settings from the scanner stream ``rng`` (today's ``noise.sigma_hu`` unless dosed)."""
    sigma = noise.sigma_hu
    if cfg.dose_sigma_hu is not None:
        lo, hi = np.log(cfg.dose_sigma_hu[0]), np.log(cfg.dose_sigma_hu[1])
        sigma = float(np.exp(uniform(substream(rng, "dose"), (lo, hi)))) * (geom.fov_mm / 512.0) / geom.h
    kernel = None
    if cfg.kernel.sharpness is not None:
        kernel = kernel_at(cfg.kernel, uniform(substream(rng, "kernel"), cfg.kernel.sharpness))
    scale = 1.0 if cfg.hu_scale is None else uniform(substream(rng, "hu_scale"), cfg.hu_scale)
    offset = 0.0 if cfg.hu_offset is None else uniform(substream(rng, "hu_offset"), cfg.hu_offset)
    flat = 0.5
    if cfg.slice_profile == "trapezoid":
        flat = uniform(substream(rng, "profile"), cfg.slice_profile_flat)
    return ScannerParams(sigma, kernel, scale, offset, _draw_artefacts(rng, cfg.artefacts), flat)


def slice_profile(z_mm: np.ndarray, shape: str, fwhm_mm: float, flat: float) -> np.ndarray:
    """Slice sensitivity profile (peak 1) at ``z_mm``: box, trapezoid (flat top ``flat`` x FWHM) or Gaussian."""
    a = np.abs(z_mm)
    if shape == "box":
        return (a <= fwhm_mm / 2).astype(np.float64)
    if shape == "trapezoid":
        top, base = flat * fwhm_mm / 2, (2.0 - flat) * fwhm_mm / 2
        return np.clip((base - a) / max(base - top, 1e-9), 0.0, 1.0)
    if shape == "gaussian":
        return np.exp(-4.0 * np.log(2.0) * (z_mm / fwhm_mm) ** 2)
    raise ValueError(f"unknown slice profile {shape!r}")


def profile_weights(shape: str, fwhm_mm: float, sz_mm: float, flat: float) -> tuple[np.ndarray, np.ndarray]:
    """z weights of the slice profile on slices ``sz_mm`` apart: ``(image, noise)``, each odd length, centred.

    ``image[j] = int p(z) tri(z / sz - j) dz`` (the rendered slices are point samples, linearly interpolated),
    summing to 1; ``noise[j] = int p(z) box(z / sz - j) dz`` (independent noise per slice interval), with unit
    energy so the noise SD stays the requested one while overlapping slices share noise.
    """
    support = {"box": 0.5, "trapezoid": 1.0, "gaussian": 1.5}[shape] * fwhm_mm
    n = int(np.ceil(support / sz_mm)) + 1
    step = sz_mm / 256.0
    z = np.arange(-(n + 1) * sz_mm, (n + 1) * sz_mm, step) + step / 2
    p = slice_profile(z, shape, fwhm_mm, flat)
    offsets = np.arange(-n, n + 1)[:, None] * sz_mm
    u = np.abs(z[None, :] - offsets) / sz_mm
    image = (p[None, :] * np.clip(1.0 - u, 0.0, None)).sum(axis=1)
    noise = (p[None, :] * (u < 0.5)).sum(axis=1)
    image, noise = _trim(image), _trim(noise)
    return image / image.sum(), noise / np.sqrt(np.sum(noise * noise))


def _trim(w: np.ndarray, tol: float = 1e-3) -> np.ndarray:
    """Drop symmetric tails below ``tol`` x max (keeps the length odd)."""
    keep = np.nonzero(w > tol * w.max())[0]
    r = max(len(w) // 2 - keep[0], keep[-1] - len(w) // 2)
    c = len(w) // 2
    return w[c - r : c + r + 1]


class _NoiseSpectra:
    """White complex noise spectra ``(n, Y, Xh)`` per slice, correlated along z by ``weights`` (unit energy).

    Each slice's spectrum has independent real and imaginary parts of SD 1 (``E|Z|^2 = 2``); slices are
    drawn in order (with ``r`` extra slices beyond each end), so the result does not depend on the chunking
    beyond :data:`lungcad.synth.noise.CHUNK`.
    """

    def __init__(self, rng: np.random.Generator, shape: tuple[int, int], weights: np.ndarray) -> None:
        self.rng, self.shape = rng, shape
        self.w = np.asarray(weights, dtype=np.float32)
        self.r = (len(self.w) - 1) // 2
        self.lo = -self.r
        self.buf = np.empty((0, *shape), dtype=np.complex64)

    def _draw(self, n: int) -> np.ndarray:
        return self.rng.standard_normal((n, *self.shape, 2), dtype=np.float32).view(np.complex64)[..., 0]

    def take(self, k0: int, k1: int) -> np.ndarray:
        """Spectra of slices ``k0 .. k1 - 1``."""
        if self.r == 0:
            return self._draw(k1 - k0) * self.w[0]
        first, last = k0 - self.r, k1 + self.r
        self.buf = self.buf[max(0, first - self.lo) :]
        self.lo = max(self.lo, first)
        need = last - (self.lo + len(self.buf))
        if need > 0:
            self.buf = np.concatenate([self.buf, self._draw(need)])
        n, r = k1 - k0, self.r
        out = self.buf[r : r + n] * self.w[r]
        tmp = np.empty_like(out)
        for j in range(1, r + 1):
            np.add(self.buf[r - j : r - j + n], self.buf[r + j : r + j + n], out=tmp)
            tmp *= self.w[r + j]
            out += tmp
        return out


def _motion(fy: np.ndarray, fx: np.ndarray, blur_mm: float, shift_mm: float, angle: float) -> np.ndarray:
    """complex64 ``(Y, Xh)`` transfer of a box blur of ``blur_mm`` and a shift of ``shift_mm`` along ``angle``."""
    ux, uy = np.cos(angle), np.sin(angle)
    fu = (fx * ux + fy * uy).astype(np.float32)
    phase = np.exp(-2j * np.pi * shift_mm * uy * fy[:, 0])[:, None] * np.exp(-2j * np.pi * shift_mm * ux * fx[0])
    return (np.sinc(np.float32(blur_mm) * fu) * phase).astype(np.complex64)


def _add_low(spec: np.ndarray, low: np.ndarray, c: int, shape: tuple[int, int]) -> None:
    """Add smooth fields sampled every ``c`` pixels (at ``c // 2 + c i``; float32 ``(n, m, m')``) to the
    half spectra ``spec`` (``(n, Y, X // 2 + 1)``) of ``shape`` ``(Y, X)`` images: trigonometric interpolation."""
    ny, nx = shape
    m, mp = low.shape[1:]
    lo = scipy.fft.rfft2(low) * np.float32(c * c)
    ky = np.rint(np.fft.fftfreq(m) * m).astype(np.int64)
    kx = np.arange(mp // 2 + 1)
    keep_y, keep_x = np.abs(ky) * 2 < m, kx * 2 < mp  # without the coarse Nyquist
    ky, kx = ky[keep_y], kx[keep_x]
    phase = np.exp(-2j * np.pi * ky * (c // 2) / ny)[:, None] * np.exp(-2j * np.pi * kx * (c // 2) / nx)[None, :]
    spec[:, (ky % ny)[:, None], kx[None, :]] += (lo[:, keep_y][:, :, keep_x] * phase).astype(np.complex64)


def _fourier_finish(
    vol: np.ndarray,
    geom: Geometry,
    rng: np.random.Generator,
    cfg: NoiseConfig,
    noise: NoiseParams,
    params: ScannerParams,
    weights_z: tuple[np.ndarray, np.ndarray],
    artefacts: ArtefactRenderer | None,
) -> np.ndarray:
    """In-plane kernel, noise, motion, calibration and rounding in Fourier space -> int16 HU ``(Z, Y, X)``."""
    nz, ny, nx = vol.shape
    fy = np.fft.fftfreq(ny, d=geom.h)[:, None]
    fx = np.fft.rfftfreq(nx, d=geom.h)[None, :]
    f = np.sqrt(fy * fy + fx * fx)
    if params.kernel is None:  # today's Gaussian PSF and white noise smoothed by correlation_px
        mtf = gauss_mtf(f, noise.psf_mm)
        shape = mtf * gauss_mtf(f, cfg.correlation_px * geom.h)
    else:
        mtf = kernel_mtf(f, *params.kernel, cfg.kernel.boost_sigma_mm)
        shape = np.sqrt(f) * mtf
    pair = np.full(fx.shape[1], 2.0)  # columns paired with their mirror in the full spectrum
    pair[0] = 1.0
    if nx % 2 == 0:
        pair[-1] = 1.0
    var = float(np.sum(pair * shape * shape)) / (ny * nx)  # per unit white-noise variance
    amp = shape * (params.sigma_hu / np.sqrt(max(var, 1e-30))) * np.sqrt(ny * nx / 2.0)
    amp[:, pair == 1.0] *= np.sqrt(2.0)  # irfft2 keeps only the Hermitian part of these columns
    mtf32, amp32 = mtf.astype(np.float32), amp.astype(np.float32)
    image_z, noise_z = weights_z
    spectra = _NoiseSpectra(substream(rng, "noise_field"), (ny, nx // 2 + 1), noise_z)
    plan: MotionPlan | None = None
    if params.artefacts.motion_fraction > 0:
        plan = motion_plan(substream(rng, "motion_slices"), params.artefacts, nz)
    outside = ~geom.fov_mask()
    lo, hi = cfg.hu_clip
    cal = params.calibration
    out = np.empty(vol.shape, dtype=np.int16)
    for k0 in range(0, nz, CHUNK):
        k1 = min(nz, k0 + CHUNK)
        block = filter_z_chunk(vol, k0, k1, image_z)
        low = None
        if artefacts is not None:
            fourier_low = artefacts.smooth and ny % artefacts.coarse_step == 0 and nx % artefacts.coarse_step == 0
            c = artefacts.coarse_step
            low = np.zeros((k1 - k0, ny // c, nx // c), dtype=np.float32) if fourier_low else None
            artefacts(block, k0, low)
        spec = scipy.fft.rfft2(block)
        if low is not None:
            _add_low(spec, low, artefacts.coarse_step, (ny, nx))
        spec *= mtf32
        if plan is not None:
            for i in np.nonzero(plan.affected[k0:k1])[0]:
                k = k0 + int(i)
                spec[i] *= _motion(fy, fx, float(plan.blur_mm[k]), float(plan.shift_mm[k]), plan.angle)
        spec += spectra.take(k0, k1) * amp32
        block = scipy.fft.irfft2(spec, s=(ny, nx))
        if cal is not None:
            block = block * np.float32(cal[0]) + np.float32(cal[1])
        np.clip(np.rint(block), lo, hi, out=block)
        chunk = block.astype(np.int16)
        chunk[:, outside] = geom.outside_hu
        out[k0:k1] = chunk
    return out


def finish_scan(
    vol: np.ndarray,
    geom: Geometry,
    noise_rng: np.random.Generator,
    scanner_rng: np.random.Generator,
    cfg: NoiseConfig,
    noise: NoiseParams,
) -> np.ndarray:
    """Today's :func:`lungcad.synth.noise.finish_volume` plus the scanner world's knobs -> int16 HU ``(Z, Y, X)``.

    Args:
        vol: float32 ``(Z, Y, X)`` noiseless HU (modified).
        geom: the scan's geometry (thickness, spacings, FOV).
        noise_rng: today's noise stream (its noise field, when the in-plane work is not in Fourier space).
        scanner_rng: the scanner stream (every draw of the knobs).
        cfg: the ``noise`` config; ``noise`` today's per-scan draws from the noise stream.
    """
    params = draw_scanner(scanner_rng, cfg, geom, noise)
    return apply_scanner(vol, geom, noise_rng, scanner_rng, cfg, noise, params)


def apply_scanner(
    vol: np.ndarray,
    geom: Geometry,
    noise_rng: np.random.Generator,
    scanner_rng: np.random.Generator,
    cfg: NoiseConfig,
    noise: NoiseParams,
    params: ScannerParams,
) -> np.ndarray:
    """:func:`finish_scan` with given per-scan ``params`` (see :func:`draw_scanner`).

    The slice profile filters the noiseless ``vol`` along z; the noise is correlated between overlapping slices
    only in Fourier space (kernel or motion on); on today's path it stays independent per slice, as today.
    """
    legacy_z = cfg.slice_profile == "legacy"
    weights = (np.ones(1), np.ones(1))
    if not legacy_z:
        weights = profile_weights(cfg.slice_profile, geom.thickness, geom.sz, params.profile_flat)
    a = params.artefacts
    artefacts = None
    if a.image_domain:
        streaks, starvation = substream(scanner_rng, "streak_slices"), substream(scanner_rng, "starvation_slices")
        artefacts = ArtefactRenderer(a, geom, streaks, starvation)
    if params.fourier:
        if legacy_z:
            legacy_blur_z(vol, geom, cfg)
        return _fourier_finish(vol, geom, scanner_rng, cfg, noise, params, weights, artefacts)
    if not legacy_z:
        filter_z(vol, weights[0])
    if params.sigma_hu != noise.sigma_hu:
        noise = NoiseParams(noise.psf_mm, params.sigma_hu)
    return finish_volume(
        vol, geom, noise_rng, cfg, noise, blur_z=legacy_z, artefacts=artefacts, calibration=params.calibration
    )
