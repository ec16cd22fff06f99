"""Anatomy, labels and nodules of generated phantoms behave like the ground truth says."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from lungcad.synth import make_phantom
from lungcad.synth.anatomy import draw_anatomy
from lungcad.synth.geometry import draw_geometry
from lungcad.synth.nodules import Tubes, draw_kinds, free_fraction, place_nodules
from lungcad.synth.phantom import Phantom, scan_rngs
from lungcad.synth.raster import Segments
from lungcad.synth.vessels import airway_trees, vessel_trees

LUNG_LABELS = (3, 4)


def _max_spacing(ph: Phantom) -> float:
    return max(ph.scan.spacing)


def _ball(ph: Phantom, centre_zyx: tuple, radius_mm: float) -> tuple[np.ndarray, ...]:
    """Index arrays of the voxels whose centres lie within ``radius_mm`` of a voxel position."""
    sp = np.asarray(ph.scan.spacing)
    c = np.asarray(centre_zyx)
    half = np.ceil(radius_mm / sp).astype(int) + 1
    lo = np.maximum(np.floor(c).astype(int) - half, 0)
    hi = np.minimum(np.floor(c).astype(int) + half + 1, ph.scan.shape)
    grids = np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi, strict=True)), indexing="ij")
    dist = np.sqrt(sum(((g - ci) * s) ** 2 for g, ci, s in zip(grids, c, sp, strict=True)))
    inside = dist <= radius_mm
    return tuple(g[inside] for g in grids)


def _forced(small_config, **nodule_changes):
    """The small config with changed nodule settings (e.g. only juxtapleural nodules)."""
    nodules = dataclasses.replace(small_config.nodules, **nodule_changes)
    return dataclasses.replace(small_config, nodules=nodules)


@pytest.mark.slow  # shares the ~6 s `phantoms` fixture
def test_nodule_centres_are_nodule_like_and_inside_the_lungs(phantoms):
    checked = 0
    for ph in phantoms:
        for n in ph.nodules:
            v = tuple(np.rint(n.voxel_zyx).astype(int))
            assert ph.lungs[v] in LUNG_LABELS, n
            assert ph.lungs[v] == (3 if n.lung == "left" else 4)
            if n.diameter_mm < 2 * _max_spacing(ph):
                continue  # partial volume: too small for a fixed threshold at this resolution
            hu = ph.scan.array[v]
            floor = -500 if n.type in ("solid", "calcified") else -700
            assert hu > floor, (n, hu)
            checked += 1
    assert checked >= 8


@pytest.mark.slow  # shares the ~6 s `phantoms` fixture
def test_world_centres_come_from_voxel_to_world(phantoms):
    for ph in phantoms:
        for n in ph.nodules:
            np.testing.assert_allclose(ph.scan.voxel_to_world(n.voxel_zyx), n.world_xyz, atol=1e-5)
            np.testing.assert_allclose(ph.scan.world_to_voxel(n.world_xyz), n.voxel_zyx, atol=1e-5)


@pytest.mark.slow  # shares the ~6 s `phantoms` fixture
def test_candidates_inside_scans_and_classes_right(phantoms):
    for ph in phantoms:
        ph.scan.world_to_voxel(ph.candidates)  # raises if any is outside the volume
        real = [n for n in ph.nodules if not n.excluded]
        pos = ph.candidates[ph.candidate_classes == 1]
        neg = ph.candidates[ph.candidate_classes == 0]
        assert len(pos) >= len(real) and len(neg) > 100
        for n in real:
            assert np.linalg.norm(pos - n.world_xyz, axis=1).min() < 1e-6  # the centre itself
            assert np.linalg.norm(neg - n.world_xyz, axis=1).min() > n.diameter_mm / 2
        for p in pos:
            assert min(np.linalg.norm(p - np.asarray(n.world_xyz)) - n.diameter_mm / 2 for n in real) < 0


def test_juxtapleural_nodules_touch_the_chest_wall(small_config):
    cfg = _forced(small_config, count_weights=(0.0, 0.0, 0.0, 1.0), location_weights=(0.0, 1.0, 0.0))
    n_checked = 0
    for index in range(3):
        ph = make_phantom(11, index, size=128, config=cfg)
        for n in (n for n in ph.nodules if not n.excluded):
            assert n.location == "juxtapleural"
            near = _ball(ph, n.voxel_zyx, n.diameter_mm / 2 + 0.75 * _max_spacing(ph))
            outside_lung = ph.lungs[near] == 0
            assert outside_lung.any(), n
            wall = ph.scan.array[near][outside_lung] > -300  # soft tissue or bone, not air
            assert wall.mean() > 0.8, n
            n_checked += 1
    assert n_checked >= 6


def test_intraparenchymal_nodules_keep_off_the_pleura(small_config):
    cfg = _forced(small_config, count_weights=(0.0, 0.0, 0.0, 1.0), location_weights=(1.0, 0.0, 0.0))
    ph = make_phantom(12, 0, size=128, config=cfg)
    for n in ph.nodules:
        near = _ball(ph, n.voxel_zyx, n.diameter_mm / 2 + 0.75 * _max_spacing(ph))
        assert np.all(ph.lungs[near] != 0), n


def test_juxtavascular_nodules_touch_a_vessel(small_config):
    cfg = _forced(small_config, count_weights=(0.0, 0.0, 0.0, 1.0), location_weights=(0.0, 0.0, 1.0))
    ph = make_phantom(13, 0, size=128, config=cfg)
    vs = ph.vessels
    mean_r = 0.5 * (vs.ra + vs.rb)
    found = 0
    for n in (n for n in ph.nodules if not n.excluded):
        assert n.location == "juxtavascular"
        c = np.asarray(n.world_xyz)
        d = vs.b - vs.a
        t = np.clip(np.sum((c - vs.a) * d, axis=1) / np.sum(d * d, axis=1), 0, 1)
        dist = np.linalg.norm(vs.a + t[:, None] * d - c, axis=1)
        radius = vs.ra + t * (vs.rb - vs.ra)
        gap = dist - radius - n.diameter_mm / 2
        touching = (gap <= 0.05) & (mean_r >= 1.0)
        assert touching.any(), (n, gap.min())
        found += 1
    assert found >= 2


@pytest.mark.slow  # shares the ~6 s `phantoms` fixture
def test_lung_labels_cover_the_low_density_lung(phantoms):
    for ph in phantoms:
        hu, lab = ph.scan.array, ph.lungs
        assert set(np.unique(lab)) <= {0, 3, 4, 5}
        lung = np.isin(lab, LUNG_LABELS)
        assert hu[lung].mean() < -700
        assert (hu[lung] < -600).mean() > 0.8
        assert np.median(hu[lab == 5]) < -900  # trachea / main bronchi lumen
        # air enclosed by the body in an axial slice (not reaching the scan circle) is lung or airway
        rim = ph.fov_mask & ~ndimage.binary_erosion(ph.fov_mask)
        enclosed = labelled = 0
        for k in range(0, hu.shape[0], 3):
            comps, _ = ndimage.label((hu[k] < -500) & ph.fov_mask)
            outside = np.isin(comps, np.unique(comps[rim]))
            inner = (comps > 0) & ~outside
            enclosed += inner.sum()
            labelled += (lab[k][inner] > 0).sum()
        assert labelled / enclosed > 0.9


@pytest.mark.slow  # shares the ~6 s `phantoms` fixture
def test_left_lung_is_on_the_patient_left(phantoms):
    for ph in phantoms:
        for label, sign in ((3, 1), (4, -1)):
            zyx = np.argwhere(ph.lungs[::4] == label)[::50] * [4, 1, 1]
            x = ph.scan.voxel_to_world(zyx)[:, 0]
            body_x = ph.scan.voxel_to_world(np.argwhere(ph.lungs[::4] > 0)[::50] * [4, 1, 1])[:, 0].mean()
            assert sign * (x.mean() - body_x) > 20


@pytest.mark.slow  # shares the ~6 s `phantoms` fixture
def test_anatomy_and_field_of_view(phantoms):
    for ph in phantoms:
        hu = ph.scan.array
        assert hu.dtype == np.int16
        assert np.all(hu[:, ~ph.fov_mask] == ph.geometry.outside_hu)
        inside = hu[:, ph.fov_mask]
        assert inside.min() >= -1024 and inside.max() <= 3071
        assert (inside > 500).sum() > 100  # ribs, spine, sternum
        assert ((inside > -150) & (inside < -60)).mean() > 0.01  # fat
        sz, sy, sx = ph.scan.spacing
        assert sy == sx == pytest.approx(ph.geometry.fov_mm / 128)
        assert 250 <= (ph.scan.shape[0] - 1) * sz + sz <= 360


def test_same_patient_at_every_matrix_size(small_config):
    a = make_phantom(5, 1, size=64, config=small_config)
    b = make_phantom(5, 1, size=96, config=small_config)
    assert a.scan.shape[0] == b.scan.shape[0] and a.scan.spacing[0] == b.scan.spacing[0]
    assert [(n.type, n.shape, n.location, n.diameter_mm) for n in a.nodules] == [
        (n.type, n.shape, n.location, n.diameter_mm) for n in b.nodules
    ]
    for na, nb in zip(a.nodules, b.nodules, strict=True):
        np.testing.assert_allclose(na.world_xyz, nb.world_xyz, atol=2e-3)
    assert a.scan.spacing[1] == pytest.approx(1.5 * b.scan.spacing[1])


def _segment(a, b, ra: float, rb: float) -> Segments:
    one = np.array([3], np.uint8)
    return Segments(np.array([a]), np.array([b]), np.array([ra]), np.array([rb]), np.array([-1]), one)


def test_tubes_contain_points_within_their_tapered_radius():
    tubes = Tubes.of(_segment([0.0, 0, 0], [10.0, 0, 0], 2.0, 1.0))
    pts = np.array([[0.0, 1.9, 0], [0.0, 2.1, 0], [10.0, 0.9, 0], [10.0, 1.1, 0], [5.0, 0, 1.4], [12.0, 0, 0]])
    assert tubes.contain(pts, np.array([5.0, 0, 0]), 8.0).tolist() == [True, False, True, False, True, False]
    assert not tubes.contain(pts, np.array([50.0, 0, 0]), 1.0).any()  # far from the centre given: not looked at
    airway = _segment([0.0, 0, 0], [10.0, 0, 0], 2.0, 1.0)
    grown = Tubes.of(Segments.empty(), airway, wall_fraction=0.5, wall_min_mm=0.2)
    np.testing.assert_allclose([grown.ra[0], grown.rb[0]], [2.0 * 1.5 + 0.2, 1.0 * 1.5 + 0.2])  # lumen + wall


def _free_fractions(config, seed: int) -> list[float]:
    """Free share of each nodule that ``place_nodules`` places in phantom ``(seed, 0)`` under ``config``."""
    rngs = scan_rngs(seed, 0)
    an = draw_anatomy(rngs["anatomy"], config, draw_geometry(rngs["geometry"], config, 128))
    vessels, airways = vessel_trees(rngs["vessels"], an, config), airway_trees(rngs["vessels"], an, config)
    specs = place_nodules(rngs["nodules"], an, config, vessels, draw_kinds(rngs["nodules"], config), airways)
    v = config.vessels
    tubes = Tubes.of(vessels, airways, v.airway_wall_fraction, v.airway_wall_min_mm)
    return [free_fraction(an, s.lung, np.asarray(s.centre), s.kind.diameter_mm / 2, tubes) for s in specs]


def test_nodules_mostly_lie_in_aerated_lung(small_config):
    """No nodule sits inside a vessel, an airway or the chest wall, where it would be annotated but not seen."""
    many = _forced(small_config, count_weights=(0.0,) * 7 + (1.0,))  # 7 nodules each
    assert many.nodules.min_free_fraction == 0.5
    checked = [f for seed in range(20, 26) for f in _free_fractions(many, seed)]
    unchecked = [f for seed in range(20, 26) for f in _free_fractions(_forced(many, min_free_fraction=0.0), seed)]
    assert len(checked) >= 36
    assert min(checked) >= 0.5
    assert min(unchecked) < 0.5  # the same patients without the check: some nodule mostly hidden
