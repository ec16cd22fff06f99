"""Body knobs of the randomized world (``anatomy`` / ``vessels`` sections): each one measured where it acts.

Habitus -> subcutaneous fat; expiration -> lung volume and density; cardiac scale -> heart area; vessel calibre,
branching, tortuosity and the pleural taper -> the grown segments; airway calibre and wall -> the airways.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lungcad.synth import load_synth_config, make_phantom
from lungcad.synth.anatomy import Anatomy, draw_anatomy, draw_body, lung_label_at
from lungcad.synth.geometry import draw_geometry
from lungcad.synth.phantom import scan_rngs
from lungcad.synth.raster import Segments
from lungcad.synth.slices import base_slice, render_slice
from lungcad.synth.vessels import airway_trees, vessel_trees

SEEDS = (3, 8)


@pytest.fixture(scope="module")
def tiny():
    """The shipped config (body knobs neutral) with at most 40 slices."""
    return load_synth_config(max_slices=40)


def _with(config, section: str, **changes):
    """``config`` with keys of one section replaced (a scalar ``v`` becomes the fixed range ``(v, v)``)."""
    fixed = {k: (v if v is None or isinstance(v, tuple) else (float(v), float(v))) for k, v in changes.items()}
    return dataclasses.replace(config, **{section: dataclasses.replace(getattr(config, section), **fixed)})


def _anatomy(config, seed: int, index: int = 0, size: int = 64) -> Anatomy:
    rngs = scan_rngs(seed, index)
    return draw_anatomy(rngs["anatomy"], config, draw_geometry(rngs["geometry"], config, size), rngs["body"])


def _vessels(config, seed: int, index: int = 0) -> tuple[Anatomy, Segments]:
    rngs = scan_rngs(seed, index)
    an = draw_anatomy(rngs["anatomy"], config, draw_geometry(rngs["geometry"], config, 64), rngs["body"])
    return an, vessel_trees(rngs["vessels"], an, config)


def _has_child(segs: Segments) -> np.ndarray:
    out = np.zeros(len(segs), dtype=bool)
    out[segs.parent[segs.parent >= 0]] = True
    return out


# --------------------------------------------------------------------------- neutral values
def test_neutral_knobs_draw_nothing_from_the_body_stream(tiny):
    rng = scan_rngs(1, 0)["body"]
    state = rng.bit_generator.state
    body = draw_body(rng, tiny)
    assert rng.bit_generator.state == state
    assert body.tip_radius_mm is None and body.expiration == 0.0 and body.branch_cos_shift == 0.0
    scales = ("habitus", "body_aspect", "lung_width", "cardiac", "mediastinum", "calibre", "asymmetry")
    assert all(getattr(body, k) == 1.0 for k in (*scales, "tortuosity", "airway_calibre", "airway_wall"))


def test_world_body_config_turns_the_knobs_on_within_its_ranges():
    world = load_synth_config("configs/world_body.yaml")
    for i in range(5):
        b = draw_body(scan_rngs(9, i)["body"], world)
        assert 0.3 <= b.habitus <= 3.5 and 0.0 <= b.expiration <= 1.0 and 0.2 <= b.tip_radius_mm <= 0.45
    heldout = load_synth_config("configs/world_body_heldout.yaml")
    b = draw_body(scan_rngs(9, 0)["body"], heldout)
    assert b.habitus > 3.5 and b.expiration < 0.0 and b.tortuosity > 2.5 and b.airway_wall > 2.5


# --------------------------------------------------------------------------- body and lungs
def _fat_area_mm2(config, seed: int) -> float:
    """Area (mm^2) of subcutaneous fat (-160..-50 HU outside the thoracic cavity) in the mid-chest slice."""
    ph = make_phantom(seed, 0, size=96, config=dataclasses.replace(config, max_slices=12)).canonical()
    an = _anatomy(config, seed, size=96)
    geom = ph.geometry
    k = ph.scan.shape[0] // 2
    x, y = geom.x_coords()[None, :], geom.y_coords()[:, None]
    wall = an.rib_layer
    rho2 = (x / (an.cavity_ax + wall)) ** 2 + ((y - an.cavity_cy) / (an.cavity_ay + wall)) ** 2
    hu = ph.scan.array[k]
    fat = (hu > -160) & (hu < -50) & (rho2 > 1.0)  # outside the ribs: subcutaneous, not mediastinal fat
    return float(fat.sum() * geom.h * geom.h)


def test_habitus_thickens_the_subcutaneous_fat(tiny):
    for seed in SEEDS:
        areas = [_fat_area_mm2(_with(tiny, "anatomy", habitus=h), seed) for h in (0.5, 1.0, 2.5)]
        assert areas[0] < areas[1] < areas[2], areas
        assert 1.6 < areas[2] / areas[1] < 3.5, areas
        base, obese = (_anatomy(_with(tiny, "anatomy", habitus=h), seed) for h in (1.0, 2.5))
        assert obese.fat / obese.scale == pytest.approx(2.5 * base.fat / base.scale)  # fat_mm x habitus at scale s
        assert obese.body_ax > base.body_ax and obese.cavity_ax < base.cavity_ax  # wider body, smaller chest
        assert obese.body_ay / obese.body_ax > base.body_ay / base.body_ax  # rounder


def _lungs(config, seed: int) -> tuple[float, float, float]:
    """(lung volume ml, mean HU, median HU) of a tiny phantom's lungs: the voxels labelled 3 or 4."""
    ph = make_phantom(seed, 1, size=64, config=config)
    lung = (ph.lungs == 3) | (ph.lungs == 4)
    hu = ph.scan.array[lung]
    return float(lung.sum() * np.prod(ph.scan.spacing) / 1000.0), float(hu.mean()), float(np.median(hu))


def test_expiration_shrinks_and_densifies_the_lungs(tiny):
    for seed in SEEDS:
        vol_in, mean_in, median_in = _lungs(tiny, seed)
        vol_ex, mean_ex, median_ex = _lungs(_with(tiny, "anatomy", expiration=1.0), seed)
        assert 0.3 * vol_in < vol_ex < 0.8 * vol_in, (vol_in, vol_ex)
        assert mean_ex > mean_in + 50, (mean_in, mean_ex)
        # the parenchyma (median: vessels and partial volume aside) is lung_expiration_hu = 140 HU denser
        assert 100 < median_ex - median_in < 180, (median_in, median_ex)
        ins, exs = _anatomy(tiny, seed), _anatomy(_with(tiny, "anatomy", expiration=1.0), seed)
        for a, b in zip(ins.lungs, exs.lungs, strict=True):
            assert b.recess_z + b.dome_h > a.recess_z + a.dome_h + 20  # the domes are higher


def test_lung_width_aspect_and_mediastinum_scale_the_chest(tiny):
    base = _anatomy(tiny, 3)
    wide = _anatomy(_with(tiny, "anatomy", lung_width_scale=1.04, mediastinum_scale=1.3, body_aspect_scale=1.2), 3)
    assert wide.cavity_ax == pytest.approx(1.04 * base.cavity_ax)
    narrow = _anatomy(_with(tiny, "anatomy", lung_width_scale=0.85), 3)
    assert narrow.cavity_ax == pytest.approx(0.85 * base.cavity_ax) and narrow.cavity_ay == base.cavity_ay
    assert wide.mediastinum == pytest.approx(1.3 * base.mediastinum)
    assert wide.body_ay / wide.body_ax == pytest.approx(1.2 * base.body_ay / base.body_ax)


def _heart_area_mm2(config, seed: int) -> float:
    """Area (mm^2) of the heart (its own HU, blood + 5) in the noiseless axial slice through its centre."""
    rngs = scan_rngs(seed, 0)
    geom = draw_geometry(rngs["geometry"], config, 128)
    an = draw_anatomy(rngs["anatomy"], config, geom, rngs["body"])
    hu, _ = render_slice(an, base_slice(an, geom), an.heart_c[2])
    return float((hu == np.float32(an.hu["blood"] + 5)).sum() * geom.h * geom.h)


def test_cardiac_scale_enlarges_the_heart(tiny):
    for seed in SEEDS:
        small, big = (_heart_area_mm2(_with(tiny, "anatomy", cardiac_scale=k), seed) for k in (1.0, 1.4))
        assert 1.5 < big / small < 2.4, (small, big)  # area ~ 1.4^2
        a, b = _anatomy(tiny, seed), _anatomy(_with(tiny, "anatomy", cardiac_scale=1.4), seed)
        np.testing.assert_allclose(b.heart_ax, 1.4 * np.asarray(a.heart_ax))


# --------------------------------------------------------------------------- vessel trees
def test_vessel_calibre_scales_every_radius(tiny):
    _, base = _vessels(tiny, 3)
    _, thick = _vessels(_with(tiny, "vessels", calibre_scale=1.5), 3)
    np.testing.assert_array_equal(thick.a, base.a)
    np.testing.assert_allclose(thick.ra, 1.5 * base.ra)
    np.testing.assert_allclose(thick.rb, 1.5 * base.rb)


def _directions(segs: Segments) -> np.ndarray:
    d = segs.b - segs.a
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def _mean_turn_deg(segs: Segments) -> float:
    """Mean angle (degrees) between each segment and its parent."""
    child = np.nonzero(segs.parent >= 0)[0]
    u = _directions(segs)
    cos = np.sum(u[child] * u[segs.parent[child]], axis=1)
    return float(np.degrees(np.arccos(np.clip(cos, -1, 1))).mean())


def test_tortuosity_turns_consecutive_segments_more(tiny):
    for seed in SEEDS:
        straight = _mean_turn_deg(_vessels(_with(tiny, "vessels", tortuosity=0.3), seed)[1])
        base = _mean_turn_deg(_vessels(tiny, seed)[1])
        tortuous = _mean_turn_deg(_vessels(_with(tiny, "vessels", tortuosity=2.5), seed)[1])
        assert straight < base < tortuous - 5, (straight, base, tortuous)


def _siblings(segs: Segments) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs of the two children of each bifurcation."""
    child = np.nonzero(segs.parent >= 0)[0]
    order = child[np.argsort(segs.parent[child], kind="stable")]
    par = segs.parent[order]
    first = np.nonzero(par[:-1] == par[1:])[0]
    return order[first], order[first + 1]


def test_branching_knobs_change_radius_ratio_and_angle(tiny):
    def stats(config) -> tuple[float, float]:
        segs = _vessels(config, 3)[1]
        i, j = _siblings(segs)
        ratio = np.minimum(segs.ra[i], segs.ra[j]) / np.maximum(segs.ra[i], segs.ra[j])
        u = _directions(segs)
        angle = np.degrees(np.arccos(np.clip(np.sum(u[i] * u[j], axis=1), -1, 1)))
        return float(ratio.mean()), float(angle.mean())

    ratio, angle = stats(tiny)
    assert stats(_with(tiny, "vessels", asymmetry_scale=0.6))[0] < ratio - 0.1
    assert stats(_with(tiny, "vessels", branch_cos_shift=-0.2))[1] > angle + 5


def _near_pleura(an: Anatomy, p: np.ndarray, lung: np.ndarray, within_mm: float) -> np.ndarray:
    """bool ``(N,)``: some point within ``within_mm`` of ``p (N, 3)`` (26 directions, 1 mm steps) is not its lung."""
    g = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1) if (i, j, k) != (0, 0, 0)])
    dirs = g / np.linalg.norm(g, axis=1, keepdims=True)
    out = np.zeros(len(p), dtype=bool)
    for r in np.arange(1.0, within_mm + 0.01, 1.0):
        q = p[:, None, :] + r * dirs[None]
        out |= np.any(lung_label_at(an, q[..., 0], q[..., 1], q[..., 2]) != lung[:, None], axis=1)
    return out


def _ends_near_pleura(config, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """End radii (mm) of the terminal vessel segments ending within 5 mm of the pleura, and of all segments."""
    an, segs = _vessels(config, seed)
    roots = segs.a[segs.parent < 0]
    from_hilum = np.min(np.linalg.norm(segs.b[:, None, :] - roots[None], axis=2), axis=1)
    near = _near_pleura(an, segs.b, segs.lung, 5.0) & (from_hilum > config.vessels.hilum_relief_mm * an.scale)
    return segs.rb[near & ~_has_child(segs)], segs.rb[near]


def test_pleural_taper_thins_the_vessels_that_reach_the_pleura(tiny):
    tapered = _with(tiny, "vessels", tip_radius_mm=0.3, pleura_taper=0.05)
    for seed in SEEDS:
        terminal_off, _ = _ends_near_pleura(tiny, seed)
        assert (terminal_off > 1.0).sum() >= 3, np.sort(terminal_off)[-5:]  # today: blunt vessels at the pleura
        terminal_on, all_on = _ends_near_pleura(tapered, seed)
        assert len(terminal_on) > 50
        assert terminal_on.max() < 0.7 and all_on.max() < 0.7, (terminal_on.max(), all_on.max())
        assert np.median(terminal_on) < 0.5


def test_pleural_taper_ends_blunt_vessels_in_cones(tiny):
    an, segs = _vessels(_with(tiny, "vessels", tip_radius_mm=0.3, pleura_taper=0.05), 3)
    terminal = ~_has_child(segs)
    assert segs.rb[terminal].max() < 0.7  # no blunt end anywhere in the lung
    assert np.all(lung_label_at(an, *segs.a[segs.parent < 0].T) == segs.lung[segs.parent < 0])


# --------------------------------------------------------------------------- airways
def test_airway_calibre_scales_the_lumen(tiny):
    def airways(config):
        rngs = scan_rngs(3, 0)
        an = draw_anatomy(rngs["anatomy"], config, draw_geometry(rngs["geometry"], config, 64), rngs["body"])
        vessel_trees(rngs["vessels"], an, config)
        return an, airway_trees(rngs["vessels"], an, config)

    (an, base), (an_wide, wide) = airways(tiny), airways(_with(tiny, "vessels", airway_calibre_scale=1.3))
    np.testing.assert_allclose(wide.ra, 1.3 * base.ra)
    assert an_wide.trachea.lumen == pytest.approx(1.3 * an.trachea.lumen)


def _wall_volume_mm3(airways: Segments, wall_min: float, wall_fraction: float) -> float:
    """Volume (mm^3) of the airway walls as drawn: tubes of radius ``r (1 + fraction) + min`` minus the lumen."""
    r = 0.5 * (airways.ra + airways.rb)
    length = np.linalg.norm(airways.b - airways.a, axis=1)
    outer = r * (1 + wall_fraction) + wall_min
    return float(np.sum(np.pi * (outer * outer - r * r) * length))


def test_airway_wall_thickness_follows_its_knob(tiny):
    """The HU that thicker (thinner) walls add (remove), as a volume of wall tissue, follows the predicted volume."""
    seed = 3
    thin = make_phantom(seed, 0, size=128, config=tiny)
    rngs = scan_rngs(seed, 0)
    an = draw_anatomy(rngs["anatomy"], tiny, draw_geometry(rngs["geometry"], tiny, 128))
    vessel_trees(rngs["vessels"], an, tiny)
    airways = airway_trees(rngs["vessels"], an, tiny)
    v = tiny.vessels
    base = _wall_volume_mm3(airways, v.airway_wall_min_mm, v.airway_wall_fraction)
    for k in (0.6, 2.5):
        walled = make_phantom(seed, 0, size=128, config=_with(tiny, "vessels", airway_wall_scale=k))
        extra = _wall_volume_mm3(airways, k * v.airway_wall_min_mm, k * v.airway_wall_fraction) - base
        diff = walled.scan.array.astype(np.float64) - thin.scan.array
        measured = diff.sum() * np.prod(thin.scan.spacing) / (an.hu["muscle"] - an.hu["lung"])
        # about 0.6: joints overlap and walls outside the lung mask are not drawn
        assert 0.4 < measured / extra < 1.0, (k, measured, extra)


def test_world_phantom_is_the_same_patient_at_every_matrix_size():
    world = load_synth_config("configs/world_body.yaml", max_slices=24)
    a = make_phantom(5, 1, size=64, config=world)
    b = make_phantom(5, 1, size=96, config=world)
    np.testing.assert_allclose(a.vessels.a, b.vessels.a, atol=2e-3)
    np.testing.assert_array_equal(a.vessels.rb, b.vessels.rb)
    assert [n.diameter_mm for n in a.nodules] == [n.diameter_mm for n in b.nodules]
