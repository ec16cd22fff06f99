"""The randomized scanner world (lungcad.synth.scanner): each knob's physical effect, measured on tiny volumes.

Kernel (edge width, overshoot, noise power spectrum), dose (noise SD), HU calibration (mean HU), slice profile
(FWHM along z), continuous spacings, and the artefacts (cupping, dark bands, streaks, photon starvation, motion).
Every knob off must give today's bytes (the pinned checksum of test_synth_determinism guards the phantoms).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lungcad.config import CONFIG_DIR
from lungcad.synth import load_synth_config, make_phantom
from lungcad.synth.geometry import Geometry, draw_geometry
from lungcad.synth.noise import NoiseParams, finish_volume
from lungcad.synth.phantom import scan_rngs
from lungcad.synth.scanner import draw_scanner, finish_scan, profile_weights, substream


@pytest.fixture(scope="module")
def cfg():
    return load_synth_config()


def _geom(size: int = 64, nz: int = 8, h: float = 0.5, sz: float = 1.0, thickness: float | None = None) -> Geometry:
    return Geometry(
        size=size,
        nz=nz,
        fov_mm=size * h,
        h=h,
        sz=sz,
        thickness=sz if thickness is None else thickness,
        chest_mm=(nz - 1) * sz,
        body_offset=(0.0, 0.0),
        origin=(0.0, 0.0, 0.0),
        flipped=False,
        outside_hu=-1024,
    )


def _noise(cfg, **changes):
    return dataclasses.replace(cfg.noise, **changes)


def _artefacts(cfg, **changes):
    return dataclasses.replace(cfg.noise, artefacts=dataclasses.replace(cfg.noise.artefacts, **changes))


def _kernel(noise_cfg, sharpness):
    return dataclasses.replace(noise_cfg, kernel=dataclasses.replace(noise_cfg.kernel, sharpness=(sharpness,) * 2))


def _finish(vol, geom, noise_cfg, *, seed=0, psf_mm=0.5, sigma_hu=0.0) -> np.ndarray:
    """finish_scan of a copy of ``vol``; ``sigma_hu`` is today's noise SD at this matrix (noise stream)."""
    rngs = scan_rngs(seed, 0)
    return finish_scan(vol.copy(), geom, rngs["noise"], rngs["scanner"], noise_cfg, NoiseParams(psf_mm, sigma_hu))


def _quiet(noise_cfg):
    """A tiny noise SD (0.01 HU at a 512 matrix) so edges and means are measured without noise."""
    return dataclasses.replace(noise_cfg, dose_sigma_hu=(0.01, 0.01))


def _sd_at(sigma_512: float, size: int) -> float:
    return sigma_512 * size / 512.0


def _rise_mm(profile: np.ndarray, h: float) -> tuple[float, float]:
    """(10-90% rise distance in mm, overshoot as a fraction of the step) of a rising edge profile."""
    lo, hi = float(np.median(profile[:5])), float(np.median(profile[-5:]))
    p = (profile - lo) / (hi - lo)

    def crossing(level: float) -> float:
        i = int(np.argmax(p >= level))
        return (i - 1 + (level - p[i - 1]) / (p[i] - p[i - 1])) * h

    return crossing(0.9) - crossing(0.1), float(p.max() - 1.0)


def _bar(size: int = 64, nz: int = 8) -> np.ndarray:
    """float32 (Z, Y, X): 0 HU with a 1000 HU bar over x in [size/4, 3 size/4) (rising edge at x = size/4)."""
    vol = np.zeros((nz, size, size), np.float32)
    vol[:, :, size // 4 : 3 * size // 4] = 1000
    return vol


def _disc(size: int, radius_px: float, hu: float = 0.0, background: float = -1000.0, nz: int = 4) -> np.ndarray:
    y, x = np.mgrid[:size, :size] - (size - 1) / 2.0
    sl = np.where(x * x + y * y <= radius_px**2, hu, background).astype(np.float32)
    return np.repeat(sl[None], nz, axis=0)


def _radius_px(size: int) -> np.ndarray:
    y, x = np.mgrid[:size, :size] - (size - 1) / 2.0
    return np.sqrt(x * x + y * y)


# --- all off ----------------------------------------------------------------------------------------------------


def test_all_knobs_off_is_todays_finish_volume(cfg):
    geom = _geom(size=48, nz=20, h=0.7, sz=1.25, thickness=1.5)
    vol = np.random.default_rng(3).normal(-300, 400, geom.shape).astype(np.float32)
    params = NoiseParams(0.5, 9.0)
    rngs = scan_rngs(5, 1)
    want = finish_volume(vol.copy(), geom, scan_rngs(5, 1)["noise"], cfg.noise, params)
    got = finish_scan(vol.copy(), geom, rngs["noise"], rngs["scanner"], cfg.noise, params)
    assert np.array_equal(want, got)


def test_shipped_config_has_every_knob_off(cfg):
    n, g = cfg.noise, cfg.geometry
    assert n.kernel.sharpness is None and n.dose_sigma_hu is None and n.hu_offset is None and n.hu_scale is None
    assert n.slice_profile == "legacy" and g.inplane_spacing_range_mm is None and g.slice_spacing_range_mm is None
    a = n.artefacts
    assert a.cupping_probability == a.band_probability == a.streak_probability == 0
    assert a.starvation_probability == a.motion_probability == 0


# --- kernel -----------------------------------------------------------------------------------------------------


def test_kernel_edge_width_falls_and_overshoot_grows_with_sharpness(cfg):
    geom = _geom(size=64, h=0.5)
    widths, overshoots = [], []
    for s in (0.0, 0.5, 1.0):
        out = _finish(_bar(), geom, _quiet(_kernel(cfg.noise, s))).astype(np.float64)
        profile = out[:, 24:40, 4:32].mean(axis=(0, 1))  # central rows, across the rising edge at x = 16
        w, o = _rise_mm(profile, geom.h)
        widths.append(w)
        overshoots.append(o)
    assert widths[0] > widths[1] > widths[2]
    # soft: Gaussian LSF of 0.75 mm -> 10-90% rise 2.56 sigma = 1.9 mm; sharp: under a millimetre
    assert 1.6 < widths[0] < 2.3 and widths[2] < 1.0
    assert overshoots[0] < 0.01 and overshoots[2] > 0.05 and overshoots[2] > overshoots[1]


def _nps(out: np.ndarray, h: float, crop: int) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged NPS (arbitrary units) and bin frequencies (cycles/mm) of a central ``crop`` square."""
    size = out.shape[1]
    a = (size - crop) // 2
    roi = out[:, a : a + crop, a : a + crop].astype(np.float64)
    roi = roi - roi.mean(axis=(1, 2), keepdims=True)
    power = (np.abs(np.fft.fft2(roi)) ** 2).mean(axis=0)
    f = np.fft.fftfreq(crop, d=h)
    fr = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    edges = np.linspace(0, 1 / (2 * h), 17)
    idx = np.digitize(fr.ravel(), edges) - 1
    ok = idx < 16
    nps = np.bincount(idx[ok], weights=power.ravel()[ok], minlength=16) / np.maximum(
        np.bincount(idx[ok], minlength=16), 1
    )
    return nps, (edges[:-1] + edges[1:]) / 2


def test_kernel_noise_power_spectrum_peaks_higher_when_sharper_and_sd_is_the_dose(cfg):
    size, sigma = 128, 40.0
    geom = _geom(size=size, nz=12, h=0.5)
    vol = np.zeros(geom.shape, np.float32)
    peaks = []
    for s in (0.0, 0.5, 1.0):
        noise_cfg = dataclasses.replace(_kernel(cfg.noise, s), dose_sigma_hu=(sigma, sigma))
        out = _finish(vol, geom, noise_cfg)
        roi = out[:, 24:104, 24:104].astype(np.float64)
        assert roi.std() == pytest.approx(_sd_at(sigma, size), rel=0.05)
        nps, freq = _nps(out, geom.h, 80)
        peaks.append(freq[int(np.argmax(nps))])
        assert nps[0] < 0.5 * nps.max()  # ramp: little power at the lowest frequencies
    assert peaks[0] < peaks[1] < peaks[2]


# --- dose -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["today", "kernel", "fourier_today"])
@pytest.mark.parametrize("sigma", [5.0, 90.0])
def test_dose_sets_the_noise_sd_in_a_uniform_region(cfg, path, sigma):
    """On today's path, with a kernel, and in Fourier space with today's PSF (motion on, no slice moving)."""
    size = 128
    geom = _geom(size=size, nz=8, h=0.7)
    noise_cfg = dataclasses.replace(cfg.noise, dose_sigma_hu=(sigma, sigma))
    if path == "kernel":
        noise_cfg = _kernel(noise_cfg, 0.5)
    if path == "fourier_today":
        moving = dataclasses.replace(noise_cfg.artefacts, motion_probability=1.0, motion_slice_fraction=(1e-9, 1e-9))
        noise_cfg = dataclasses.replace(noise_cfg, artefacts=moving)
    out = _finish(np.zeros(geom.shape, np.float32), geom, noise_cfg, sigma_hu=7.0)
    sd = out[:, 24:104, 24:104].astype(np.float64).std()
    assert sd == pytest.approx(_sd_at(sigma, size), rel=0.06, abs=0.3)  # abs: rounding to whole HU at 5 HU


def test_dose_draws_are_log_uniform_within_the_range(cfg):
    noise_cfg = dataclasses.replace(cfg.noise, dose_sigma_hu=(5.0, 90.0))
    geom = _geom(size=512)
    draws = np.array(
        [draw_scanner(scan_rngs(1, i)["scanner"], noise_cfg, geom, NoiseParams(0.5, 20.0)).sigma_hu for i in range(300)]
    )
    assert draws.min() >= 5 and draws.max() <= 90
    assert np.median(draws) == pytest.approx(np.sqrt(5 * 90), rel=0.2)  # log-uniform: geometric-mean median


# --- HU calibration ---------------------------------------------------------------------------------------------


def test_calibration_scales_and_offsets_uniform_regions(cfg):
    geom = _geom(size=64, h=0.7)
    vol = np.zeros(geom.shape, np.float32)
    vol[:, :, 32:] = 500
    noise_cfg = dataclasses.replace(_quiet(cfg.noise), hu_scale=(1.03, 1.03), hu_offset=(15.0, 15.0))
    for n in (noise_cfg, _kernel(noise_cfg, 0.5)):
        out = _finish(vol, geom, n).astype(np.float64)
        assert out[:, 20:44, 12:24].mean() == pytest.approx(15.0, abs=0.6)
        assert out[:, 20:44, 40:52].mean() == pytest.approx(500 * 1.03 + 15.0, abs=0.6)


def test_calibration_draws_stay_in_their_ranges(cfg):
    noise_cfg = dataclasses.replace(cfg.noise, hu_scale=(0.96, 1.04), hu_offset=(-20.0, 20.0))
    ps = [draw_scanner(scan_rngs(2, i)["scanner"], noise_cfg, _geom(), NoiseParams(0.5, 5.0)) for i in range(100)]
    scales, offsets = np.array([p.hu_scale for p in ps]), np.array([p.hu_offset for p in ps])
    assert 0.96 <= scales.min() < 0.97 and 1.03 < scales.max() <= 1.04
    assert -20 <= offsets.min() < -15 and 15 < offsets.max() <= 20


# --- slice profile and spacings ---------------------------------------------------------------------------------


def _fwhm(profile: np.ndarray, step: float) -> float:
    p = profile / profile.max()
    above = np.nonzero(p >= 0.5)[0]
    i, j = above[0], above[-1]
    left = i - (p[i] - 0.5) / (p[i] - p[i - 1])
    right = j + (p[j] - 0.5) / (p[j] - p[j + 1])
    return float((right - left) * step)


@pytest.mark.parametrize("shape", ["box", "trapezoid", "gaussian"])
def test_slice_profile_fwhm_of_a_thin_plate_is_the_thickness(cfg, shape):
    thickness, sz = 2.0, 0.2
    geom = _geom(size=32, nz=48, h=1.0, sz=sz, thickness=thickness)
    vol = np.zeros(geom.shape, np.float32)
    vol[24] = 1000  # a plate one slice (0.2 mm) thick
    out = _finish(vol, geom, _quiet(dataclasses.replace(cfg.noise, slice_profile=shape)))
    profile = out[:, 12:20, 12:20].astype(np.float64).mean(axis=(1, 2))
    assert _fwhm(profile, sz) == pytest.approx(thickness, abs=0.15)
    assert profile.sum() == pytest.approx(1000, rel=0.02)  # partial volume keeps the plate's HU x mm


def test_thick_overlapping_slices_spread_a_plate_and_share_noise(cfg):
    geom = _geom(size=64, nz=24, h=0.7, sz=1.0, thickness=3.0)
    vol = np.zeros(geom.shape, np.float32)
    vol[12] = 1000
    out = _finish(vol, geom, _quiet(dataclasses.replace(cfg.noise, slice_profile="box")))
    profile = out[:, 24:40, 24:40].astype(np.float64).mean(axis=(1, 2))
    assert _fwhm(profile, geom.sz) == pytest.approx(3.0, abs=0.5)
    # noise of overlapping slices is correlated (box of 3 slices: adjacent correlation about 2/3), of thin ones not
    for thickness, lo, hi in ((3.0, 0.45, 0.8), (1.0, -0.1, 0.1)):
        g = dataclasses.replace(geom, thickness=thickness)
        n = dataclasses.replace(_kernel(cfg.noise, 0.5), slice_profile="box", dose_sigma_hu=(80.0, 80.0))
        noisy = _finish(np.zeros(g.shape, np.float32), g, n)[:, 16:48, 16:48].astype(np.float64)
        corr = np.corrcoef(noisy[:-1].ravel(), noisy[1:].ravel())[0, 1]
        assert lo < corr < hi


def test_profile_weights_keep_mass_and_unit_noise_energy():
    for shape in ("box", "trapezoid", "gaussian"):
        image, noise = profile_weights(shape, 2.6, 0.8, 0.5)
        assert len(image) % 2 == 1 and len(noise) % 2 == 1
        assert image.sum() == pytest.approx(1.0) and np.sum(noise**2) == pytest.approx(1.0)
        assert np.allclose(image, image[::-1]) and np.allclose(noise, noise[::-1])


def test_continuous_spacings_draw_from_the_scanner_stream_only(cfg):
    wide = dataclasses.replace(
        cfg,
        geometry=dataclasses.replace(
            cfg.geometry, inplane_spacing_range_mm=(0.5, 1.0), slice_spacing_range_mm=(0.6, 3.0)
        ),
    )
    sz, h = [], []
    for i in range(60):
        rngs = scan_rngs(9, i)
        today = draw_geometry(scan_rngs(9, i)["geometry"], cfg, 512)
        g = draw_geometry(rngs["geometry"], wide, 512, substream(rngs["scanner"], "geometry"))
        assert (g.chest_mm, g.body_offset, g.flipped, g.outside_hu) == (
            today.chest_mm,
            today.body_offset,
            today.flipped,
            today.outside_hu,
        )
        assert g.thickness / g.sz == pytest.approx(today.thickness / today.sz)
        sz.append(g.sz)
        h.append(g.h)
    assert 0.6 <= min(sz) < 0.8 and 2.7 < max(sz) <= 3.0 and len(set(sz)) > 50
    assert 0.5 <= min(h) < 0.6 and 0.9 < max(h) <= 1.0
    with pytest.raises(ValueError, match="scanner"):
        draw_geometry(scan_rngs(9, 0)["geometry"], wide, 64)


# --- artefacts --------------------------------------------------------------------------------------------------


def test_cupping_darkens_the_centre_of_a_uniform_disc(cfg):
    size, h, radius_mm, hu = 128, 2.0, 100.0, 30.0
    geom = _geom(size=size, nz=4, h=h)
    vol = _disc(size, radius_mm / h)
    r_mm = _radius_px(size) * h
    for noise_cfg in (_quiet(cfg.noise), _quiet(_kernel(cfg.noise, 0.3))):
        on = _artefacts(cfg, cupping_probability=1.0, cupping_hu=(hu, hu))
        on = dataclasses.replace(noise_cfg, artefacts=on.artefacts)
        out = _finish(vol, geom, on).astype(np.float64)
        centre = out[:, r_mm < 10].mean()
        rim = out[:, (r_mm > 80) & (r_mm < 90)].mean()
        depth = hu * radius_mm / 150.0
        # parabola -depth (1 - (r/R)^2): centre about -depth, rim (r = 85 mm) about -0.28 depth
        assert centre == pytest.approx(-depth, abs=0.2 * depth)
        assert rim - centre == pytest.approx(0.71 * depth, abs=0.2 * depth)
        off = _finish(vol, geom, noise_cfg).astype(np.float64)
        assert abs(off[:, r_mm < 10].mean() - off[:, (r_mm > 80) & (r_mm < 90)].mean()) < 0.5


def test_dark_band_joins_two_dense_bones(cfg):
    size, h, hu = 128, 1.0, 40.0
    geom = _geom(size=size, nz=4, h=h)
    vol = _disc(size, 60)
    y, x = np.mgrid[:size, :size]
    for cx in (34, 94):
        vol[:, (x - cx) ** 2 + (y - 64) ** 2 <= 36] = 1200  # two bones 60 mm apart on row 64
    noise_cfg = _artefacts(cfg, band_probability=1.0, band_hu=(hu, hu), band_width_mm=(10.0, 10.0))
    out = _finish(vol, geom, _quiet(noise_cfg)).astype(np.float64)
    between = out[:, 62:67, 58:71].mean()  # on the line joining them
    aside = out[:, 84:89, 58:71].mean()  # 22 mm off the line
    assert aside - between == pytest.approx(hu, abs=0.25 * hu)


def _coherence(d: np.ndarray) -> float:
    """Orientation coherence (lambda1 - lambda2) / (lambda1 + lambda2) of the gradient structure tensor."""
    gy, gx = np.gradient(d)
    jxx, jyy, jxy = (gx * gx).sum(), (gy * gy).sum(), (gx * gy).sum()
    return float(np.sqrt((jxx - jyy) ** 2 + 4 * jxy**2) / (jxx + jyy))


def test_streaks_are_thin_oriented_lines_through_dense_structures(cfg):
    size = 128
    geom = _geom(size=size, nz=6, h=0.7)
    vol = _disc(size, 55, nz=6)
    vol[:, 60:68, 60:68] = 1200  # a bone in the middle
    on = _artefacts(
        cfg, streak_probability=1.0, streak_hu=(150.0, 150.0), streaks_per_slice=(1, 1), streak_slice_fraction=(1, 1)
    )
    noise_cfg = _kernel(cfg.noise, 0.5)
    base = _finish(vol, geom, _quiet(noise_cfg)).astype(np.float64)
    out = _finish(vol, geom, _quiet(dataclasses.replace(noise_cfg, artefacts=on.artefacts))).astype(np.float64)
    inside = _radius_px(size) < 50
    for k in range(geom.nz):
        d = np.where(inside, out[k] - base[k], 0.0)
        assert np.abs(d).max() > 30  # a visible streak
        assert _coherence(d) > 0.6  # ... that is a line (one orientation)
        assert (np.abs(d) > 10).mean() < 0.1  # ... and thin


def test_photon_starvation_adds_lateral_streaky_noise_at_the_top(cfg):
    size, sd = 128, 40.0
    geom = _geom(size=size, nz=8, h=0.7)
    vol = _disc(size, 60, nz=8)
    on = _artefacts(
        cfg,
        starvation_probability=1.0,
        starvation_hu=(sd, sd),
        starvation_fraction=(0.5, 0.5),
        starvation_angle_deg=5.0,
    )
    out = _finish(vol, geom, _quiet(on)).astype(np.float64)
    base = _finish(vol, geom, _quiet(cfg.noise)).astype(np.float64)
    d = (out - base)[:, 20:108, 20:108]
    assert np.abs(d[:4]).max() < 1  # the lower half of the slices is untouched
    assert d[7].std() == pytest.approx(sd, rel=0.25)  # the top slice: the full SD
    assert d[4].std() < 0.5 * d[7].std()  # fading down the shoulder zone
    top = d[6:]
    var_y = np.diff(top, axis=1).var()  # across the streaks
    var_x = np.diff(top, axis=2).var()  # along them
    assert var_y > 8 * var_x


def test_motion_blurs_along_its_direction_only(cfg):
    size, h = 64, 0.7
    geom = _geom(size=size, nz=4, h=h)
    vol = np.zeros(geom.shape, np.float32)
    vol[:, 16:48, 16:48] = 1000
    on = _artefacts(
        cfg,
        motion_probability=1.0,
        motion_slice_fraction=(1, 1),
        motion_blur_mm=(6.0, 6.0),
        motion_shift_mm=(0.0, 0.0),
        motion_angle_deg=0.0,
    )
    widths = {}
    for name, n in (("still", _quiet(cfg.noise)), ("moving", _quiet(on))):
        out = _finish(vol, geom, n).astype(np.float64)
        wy, _ = _rise_mm(out[:, 4:32, 26:38].mean(axis=(0, 2)), h)
        wx, _ = _rise_mm(out[:, 26:38, 4:32].mean(axis=(0, 1)), h)
        widths[name] = (wy, wx)
    (sy, sx), (my, mx) = widths["still"], widths["moving"]
    assert my == pytest.approx(0.8 * 6.0, abs=0.8) and my > sy + 3  # a 6 mm box blur: its 10-90% rise is 4.8 mm
    assert mx == pytest.approx(sx, abs=0.2)


def test_motion_shift_moves_affected_slices(cfg):
    size, h, shift = 64, 0.5, 2.0
    geom = _geom(size=size, nz=16, h=h)
    vol = np.zeros(geom.shape, np.float32)
    vol[:, 24:40, 24:40] = 1000
    on = _artefacts(
        cfg,
        motion_probability=1.0,
        motion_slice_fraction=(0.5, 0.5),
        motion_blur_mm=(0.0, 0.0),
        motion_shift_mm=(shift, shift),
        motion_angle_deg=0.0,
    )
    out = _finish(vol, geom, _quiet(on)).astype(np.float64)
    w = np.clip(out, 0, None)
    cy = (w.sum(axis=2) * np.arange(size)).sum(axis=1) / w.sum(axis=(1, 2))
    dy = (cy - 31.5) * h
    moved = np.abs(dy) > 0.5
    assert 2 <= moved.sum() <= 14
    assert np.allclose(np.abs(dy[moved]), shift, atol=0.1)
    assert np.allclose(dy[~moved], 0, atol=0.05)


# --- the training world -----------------------------------------------------------------------------------------


def test_world_scanner_config_makes_deterministic_phantoms_unlike_todays():
    world = load_synth_config(CONFIG_DIR / "world_scanner.yaml", max_slices=24)
    today = load_synth_config(max_slices=24)
    assert world.noise.kernel.sharpness == (0.0, 1.0) and world.noise.slice_profile != "legacy"
    a = make_phantom(3, 0, size=64, config=world)
    b = make_phantom(3, 0, size=64, config=world)
    c = make_phantom(3, 0, size=64, config=today)
    assert np.array_equal(a.scan.array, b.scan.array)
    assert not np.array_equal(a.scan.array, c.scan.array)
    assert a.nodules == c.nodules or a.scan.spacing != c.scan.spacing  # same patient unless the grid moved


def test_heldout_world_lies_outside_every_training_range():
    train = load_synth_config(CONFIG_DIR / "world_scanner.yaml")
    held = load_synth_config(CONFIG_DIR / "world_scanner_heldout.yaml", max_slices=16)

    def outside(a, b) -> bool:
        return max(a) < min(b) or min(a) > max(b)

    t, h = train.noise, held.noise
    assert outside(t.kernel.sharpness, h.kernel.sharpness) and min(h.kernel.sharpness) > 1
    assert outside(t.dose_sigma_hu, h.dose_sigma_hu)
    assert outside(t.hu_offset, h.hu_offset) and outside(t.hu_scale, h.hu_scale)
    tg, hg = train.geometry, held.geometry
    assert outside(tg.slice_spacing_range_mm, hg.slice_spacing_range_mm)
    assert outside(tg.inplane_spacing_range_mm, hg.inplane_spacing_range_mm)
    thickest = max(tg.slice_spacing_range_mm) * max(tg.slice_thickness_factor)
    assert min(hg.slice_spacing_range_mm) * min(hg.slice_thickness_factor) > thickest
    assert h.slice_profile != t.slice_profile
    for key in ("cupping_hu", "band_hu", "band_width_mm", "streak_hu", "starvation_hu", "motion_blur_mm"):
        assert outside(getattr(t.artefacts, key), getattr(h.artefacts, key)), key
    ph = make_phantom(4, 1, size=64, config=held)
    assert ph.scan.spacing[0] >= 5.0 and ph.scan.array.dtype == np.int16


def test_trapezoid_flat_top_is_drawn_per_scan(cfg):
    noise_cfg = dataclasses.replace(cfg.noise, slice_profile="trapezoid", slice_profile_flat=(0.0, 1.0))
    flats = [draw_scanner(scan_rngs(3, i)["scanner"], noise_cfg, _geom(), NoiseParams(0.5, 5.0)) for i in range(50)]
    values = np.array([p.profile_flat for p in flats])
    assert values.min() < 0.1 and values.max() > 0.9
    # a triangle (flat 0) and a box (flat 1) of the same FWHM both give a plate that FWHM
    for flat in (0.0, 1.0):
        image, _ = profile_weights("trapezoid", 2.0, 0.1, flat)
        assert _fwhm(np.pad(image, 2), 0.1) == pytest.approx(2.0, abs=0.1)


def test_bad_scanner_settings_are_config_errors(tmp_path):
    import yaml

    from lungcad.errors import ConfigError

    for key, value in (("starvation_angle_deg", 60), ("motion_probability", 1.5)):
        data = {"base": str(CONFIG_DIR / "synth.yaml"), "noise": {"artefacts": {key: value}}}
        path = tmp_path / f"{key}.yaml"
        path.write_text(yaml.safe_dump(data))
        with pytest.raises(ConfigError, match=key):
            load_synth_config(path)


def test_each_knob_draws_from_its_own_substream(cfg):
    """Switching one knob on leaves the other knobs' draws (and the noise field) as they were."""
    geom = _geom(size=64, nz=8, h=0.7)
    kernel_only = dataclasses.replace(_kernel(cfg.noise, 0.6), dose_sigma_hu=(20.0, 60.0))
    more = dataclasses.replace(kernel_only, hu_offset=(7.0, 7.0), hu_scale=(0.9, 1.1))
    more = dataclasses.replace(more, artefacts=dataclasses.replace(more.artefacts, cupping_probability=0.5))
    for i in range(5):
        a = draw_scanner(scan_rngs(6, i)["scanner"], kernel_only, geom, NoiseParams(0.5, 5.0))
        b = draw_scanner(scan_rngs(6, i)["scanner"], more, geom, NoiseParams(0.5, 5.0))
        assert (a.sigma_hu, a.kernel) == (b.sigma_hu, b.kernel)
    vol = np.zeros(geom.shape, np.float32)
    calibrated = dataclasses.replace(kernel_only, hu_offset=(7.0, 7.0))
    diff = _finish(vol, geom, calibrated).astype(int) - _finish(vol, geom, kernel_only).astype(int)
    inside = geom.fov_mask()
    assert np.all(np.abs(diff[:, inside] - 7) <= 1)  # the same noise, offset by 7 HU (up to rounding)
