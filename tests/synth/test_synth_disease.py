"""Lung disease backgrounds (lungcad.synth.disease): each pattern's measured effect on small phantoms.

Every test compares a phantom with one pattern on against the same patient with it off (the disease stream
is the only difference), so the change is the pattern's own.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import yaml
from scipy import ndimage

from lungcad.config import CONFIG_DIR
from lungcad.errors import ConfigError
from lungcad.synth import load_synth_config, make_phantom
from lungcad.synth.anatomy import LEFT_LUNG, RIGHT_LUNG, draw_anatomy
from lungcad.synth.disease import KINDS, Disease, draw_disease
from lungcad.synth.geometry import draw_geometry
from lungcad.synth.phantom import scan_rngs
from lungcad.synth.vessels import airway_trees, vessel_trees

SIZE = 128
SLICES = 64


@pytest.fixture(scope="module")
def world():
    """configs/world_disease.yaml at a small slice count (patterns' probabilities as trained)."""
    return load_synth_config("world_disease", max_slices=SLICES)


@pytest.fixture(scope="module")
def off(world):
    """The world config with every pattern off."""
    return only(world)


def only(cfg, **patterns):
    """``cfg`` with every disease pattern off except ``patterns`` (name -> field overrides, probability 1)."""
    d = cfg.disease
    changes = {}
    for name in KINDS:
        kw = patterns.get(name)
        changes[name] = dataclasses.replace(
            getattr(d, name), **({"probability": 1.0, **kw} if kw is not None else {"probability": 0.0})
        )
    return dataclasses.replace(cfg, disease=dataclasses.replace(d, **changes))


def quiet(cfg):
    """``cfg`` without quantum noise (blur kept), for measurements of small HU differences."""
    return dataclasses.replace(cfg, noise=dataclasses.replace(cfg.noise, sigma_hu=(0.0, 0.0)))


def clean(cfg):
    """``cfg`` without noise and blur: the scan is the drawn volume, rounded."""
    n = dataclasses.replace(cfg.noise, sigma_hu=(0.0, 0.0), psf_sigma_mm=(0.0, 0.0), z_sigma_fraction=0.0)
    return dataclasses.replace(cfg, noise=n)


def disease_of(seed: int, index: int, cfg, size: int = SIZE) -> tuple[Disease, object]:
    """The disease and geometry ``make_phantom(seed, index)`` draws (same streams, same order)."""
    rngs = scan_rngs(seed, index)
    geom = draw_geometry(rngs["geometry"], cfg, size)
    an = draw_anatomy(rngs["anatomy"], cfg, geom)
    vessel_trees(rngs["vessels"], an, cfg)
    airways = airway_trees(rngs["vessels"], an, cfg)
    return draw_disease(rngs["disease"], cfg.disease, an, airways), geom


def pair(seed: int, cfg_on, cfg_off, size: int = SIZE):
    """(HU with, HU without, labels with, labels without) canonical arrays of phantom ``(seed, 0)``."""
    a = make_phantom(seed, 0, size=size, config=cfg_on).canonical()
    b = make_phantom(seed, 0, size=size, config=cfg_off).canonical()
    return a.scan.array.astype(np.float32), b.scan.array.astype(np.float32), a.lungs, b.lungs


def patient_points(geom, mask: np.ndarray) -> np.ndarray:
    """Patient xyz mm ``(N, 3)`` of the voxels of a canonical-grid mask."""
    k, j, i = np.nonzero(mask)
    return np.stack([geom.x_coords()[i], geom.y_coords()[j], geom.z_coords()[k]], axis=1)


def is_lung(labels: np.ndarray) -> np.ndarray:
    return (labels == LEFT_LUNG) | (labels == RIGHT_LUNG)


# --------------------------------------------------------------------------- off = today's phantoms
def test_probability_zero_leaves_the_phantom_unchanged(world):
    shipped = load_synth_config(max_slices=32)
    assert all(getattr(shipped.disease, k).probability == 0 for k in KINDS)
    widened = dataclasses.replace(shipped, disease=only(world).disease)  # world ranges, all probabilities 0
    a = make_phantom(3, 1, size=64, config=shipped)
    b = make_phantom(3, 1, size=64, config=widened)
    assert np.array_equal(a.scan.array, b.scan.array)
    assert np.array_equal(a.lungs, b.lungs)
    d, _ = disease_of(3, 1, widened, 64)
    assert d.present == () and not d.hides(np.zeros((4, 3))).any()


def test_world_config_turns_every_pattern_on(world):
    probs = [getattr(world.disease, k).probability for k in KINDS]
    assert all(0.15 <= p <= 0.3 for p in probs)
    assert 1 - np.prod([1 - p for p in probs]) > 0.75  # most scans have at least one pattern
    ph = make_phantom(5, 0, size=64, config=only(world, effusion={}, emphysema={}))
    assert ph.scan.array.dtype == np.int16


def test_patterns_draw_independently(world):
    """Switching one pattern on leaves another pattern's draw as it was (each has its own child stream)."""
    a, _ = disease_of(8, 2, only(world, emphysema={}))
    b, _ = disease_of(8, 2, only(world, emphysema={}, effusion={}, consolidation={}))
    assert a.present == ("emphysema",) and b.present == ("emphysema", "consolidation", "effusion")
    assert np.array_equal(a.spots.centres, b.spots.centres) and np.array_equal(a.bullae.radii, b.bullae.radii)


def test_same_seed_same_bytes_with_disease(world):
    cfg = dataclasses.replace(world, max_slices=24)
    cfg = only(cfg, **{k: {} for k in KINDS})
    a, b = make_phantom(4, 0, size=64, config=cfg), make_phantom(4, 0, size=64, config=cfg)
    assert np.array_equal(a.scan.array, b.scan.array) and np.array_equal(a.lungs, b.lungs)


# --------------------------------------------------------------------------- patterns
def test_emphysema_adds_low_attenuation_lung_upper_predominant(world, off):
    cfg = only(
        world, emphysema={"spots": (700, 700), "spot_diameter_mm": (6, 10), "upper_power": (3, 3), "bullae": (0, 0)}
    )
    on, base, lab, lab0 = pair(11, cfg, off)
    lung = is_lung(lab)
    low_on, low_off = np.mean(on[lung] < -950), np.mean(base[lung] < -950)
    assert low_on > 5 * low_off + 0.005, (low_on, low_off)
    d, geom = disease_of(11, 0, cfg)
    an = d.anatomy
    z = geom.z_coords()[:, None, None]
    mid = 0.5 * (min(lg.recess_z for lg in an.lungs) + max(lg.apex_z for lg in an.lungs))
    upper, lower = lung & (z > mid), lung & (z <= mid)
    gain_upper = np.mean(on[upper] < -950) - np.mean(base[upper] < -950)
    gain_lower = np.mean(on[lower] < -950) - np.mean(base[lower] < -950)
    assert gain_upper > 2 * gain_lower, (gain_upper, gain_lower)
    assert np.array_equal(lab, lab0), "emphysema stays lung"


def test_bullae_are_large_air_spaces(world, off):
    cfg = only(world, emphysema={"spots": (0, 0), "bullae": (3, 3), "bulla_diameter_mm": (40, 40)})
    on, base, lab, _ = pair(12, cfg, off)
    d, geom = disease_of(12, 0, cfg)
    assert len(d.bullae) == 3
    grew = np.sum(is_lung(lab) & (on < -950)) - np.sum(is_lung(lab) & (base < -950))
    volume = np.prod(geom.h * geom.h * geom.sz)
    assert grew * volume > 0.2 * 3 * (4 / 3) * np.pi * 20**3 * 0.5  # a good part of three 4 cm bullae (some clipped)


def test_ground_glass_raises_lung_hu_and_vessels_stay_brighter(world, off):
    cfg = quiet(
        only(
            world,
            ground_glass={
                "patches": (1, 1),
                "lobes": (1, 1),
                "patch_diameter_mm": (110, 110),
                "hu": (-600, -600),
                "edge_mm": (2, 2),
            },
        )
    )
    on, base, lab, _ = pair(22, cfg, quiet(off), size=160)  # a patch with vessels inside
    d, geom = disease_of(22, 0, cfg, 160)
    lung = is_lung(lab)
    pts = patient_points(geom, lung)
    core = np.zeros(lung.shape, dtype=bool)
    core[lung] = d.inside(pts, ("ground_glass",), margin_mm=-4.0)
    parenchyma = core & (base < -750)
    vessel = core & (base > -500)  # vessels (partial volume included) of the patient without ground glass
    assert parenchyma.sum() > 50 and vessel.sum() > 3
    assert on[parenchyma].mean() > base[parenchyma].mean() + 150  # raised towards -600
    assert -700 < on[parenchyma].mean() < -500
    assert on[vessel].mean() > on[parenchyma].mean() + 150  # vessels inside stay visible
    far = np.zeros(lung.shape, dtype=bool)
    far[lung] = ~d.inside(pts, ("ground_glass",), margin_mm=12.0)
    assert np.mean(on[far] == base[far]) > 0.99  # only the patch changed


def test_effusion_is_posterior_basal_fluid_and_not_lung(world, off):
    cfg = quiet(
        only(
            world,
            effusion={
                "bilateral_probability": 1.0,
                "thickness_mm": (40, 40),
                "height_mm": (80, 80),
                "hu": (10, 10),
                "compression_mm": (0, 0),
            },
        )
    )
    on, base, lab, lab0 = pair(14, cfg, quiet(off))
    fluid = is_lung(lab0) & (lab == 0)
    assert fluid.sum() > 200
    assert not (is_lung(lab) & ~is_lung(lab0)).any() and np.array_equal(lab == 5, lab0 == 5)
    d, geom = disease_of(14, 0, cfg)
    pts = patient_points(geom, fluid)
    core = d.inside(pts, ("effusion",), margin_mm=-4.0)
    assert 0 <= np.median(on[fluid][core]) <= 20 and abs(on[fluid][core].mean() - 10) < 15
    lung_pts = patient_points(geom, is_lung(lab0))
    assert pts[:, 1].mean() > lung_pts[:, 1].mean() + 20  # posterior (y larger = dependent)
    assert pts[:, 2].mean() < lung_pts[:, 2].mean() - 30  # basal
    assert np.mean(d.hides(pts)) > 0.95


def test_effusion_compresses_the_lung_next_to_it(world, off):
    common = {"bilateral_probability": 1.0, "thickness_mm": (40, 40), "height_mm": (80, 80), "hu": (10, 10)}
    squeezed = clean(only(world, effusion={**common, "compression_mm": (10, 10), "compression_hu": (-300, -300)}))
    plain = clean(only(world, effusion={**common, "compression_mm": (0, 0)}))
    on, base, lab, lab0 = pair(14, squeezed, plain)
    assert np.array_equal(lab, lab0)
    d, geom = disease_of(14, 0, squeezed)
    lung = is_lung(lab)
    fluid = is_lung(make_phantom(14, 0, size=SIZE, config=only(world)).canonical().lungs) & ~lung
    touching = lung & ndimage.binary_dilation(fluid, np.ones((1, 3, 3), bool))  # lung next to the fluid (in-plane)
    denser = lung & (on > base + 50)
    assert touching.sum() > 50 and denser.sum() > 50
    assert on[touching].mean() > base[touching].mean() + 150
    assert np.mean(d.inside(patient_points(geom, denser), ("effusion",), margin_mm=12.0)) > 0.95  # only next to it


def test_consolidation_is_soft_tissue_with_air_bronchograms(world, off):
    cfg = clean(
        only(
            world,
            consolidation={
                "count": (2, 2),
                "diameter_mm": (70, 70),
                "hu": (30, 30),
                "edge_mm": (1, 1),
                "lumpiness": (0, 0),
                "height_fraction": (0.3, 0.7),
            },
        )
    )
    on, base, lab, lab0 = pair(15, cfg, clean(off), size=192)
    assert np.array_equal(lab, lab0)
    d, geom = disease_of(15, 0, cfg, 192)
    lung = is_lung(lab)
    core = np.zeros(lung.shape, dtype=bool)
    core[lung] = d.inside(patient_points(geom, lung), ("consolidation",), margin_mm=-3.0)
    tissue = core & (base < -750)
    lumen = core & (base < -975)  # airway lumens of the patient without the consolidation
    assert tissue.sum() > 100 and lumen.sum() > 10
    assert on[tissue].mean() > -50  # soft tissue
    assert np.percentile(on[lumen], 95) < -900  # the airways inside stay dark: air bronchograms
    assert np.mean(d.hides(patient_points(geom, tissue))) > 0.95


def test_fibrosis_adds_fine_structure_to_the_basal_subpleural_lung(world, off):
    cfg = quiet(
        only(
            world,
            fibrosis={
                "cell_mm": (9, 9),
                "line_mm": (2.5, 2.5),
                "line_hu": (-100, -100),
                "haze_hu": (0, 0),
                "height_fraction": (0.4, 0.4),
                "depth_mm": (25, 25),
                "honeycomb_probability": 0.0,
            },
        )
    )
    on, base, lab, lab0 = pair(16, cfg, quiet(off), size=160)
    assert np.array_equal(lab, lab0)
    d, geom = disease_of(16, 0, cfg, 160)
    ret, an = d.reticulation, d.anatomy
    lung = is_lung(lab)
    region = np.zeros(lung.shape, dtype=bool)
    xs, ys = geom.x_coords()[None, :], geom.y_coords()[:, None]
    for k, z in enumerate(geom.z_coords()):
        for lg, top in zip(an.lungs, ret.top_z, strict=True):
            region[k] |= (ret.weight(an, lg, top, xs, ys, float(z)) > 0.95) & (lab[k] == lg.label)
    parenchyma = lung & (base < -700)  # no vessels, wall or diaphragm
    for axis in (1, 2):
        for shift in (-1, 1):
            parenchyma &= np.roll(parenchyma, shift, axis=axis)  # and neither next to it in-plane
    region &= parenchyma
    assert region.sum() > 200

    def hf_var(v: np.ndarray) -> float:
        lap = 4 * v[:, 1:-1, 1:-1] - v[:, :-2, 1:-1] - v[:, 2:, 1:-1] - v[:, 1:-1, :-2] - v[:, 1:-1, 2:]
        return float(np.var(lap[region[:, 1:-1, 1:-1]]))

    assert hf_var(on) > 3 * hf_var(base)
    upper = lung & (geom.z_coords()[:, None, None] > max(ret.top_z) + 15)
    assert upper.sum() > 100 and np.mean(on[upper] == base[upper]) > 0.99  # basal: the upper lung is untouched


def test_honeycombing_adds_walled_air_cysts(world, off):
    cfg = clean(
        only(
            world,
            fibrosis={
                "line_hu": (-900, -900),  # no visible lines: only the cysts
                "haze_hu": (0, 0),
                "honeycomb_probability": 1.0,
                "honeycomb_clusters": (6, 6),
                "honeycomb_cysts": (12, 12),
                "cyst_diameter_mm": (10, 12),
                "cyst_wall_mm": (1, 1),
                "cyst_hu": (-1000, -1000),
            },
        )
    )
    on, base, lab, _ = pair(17, cfg, clean(off), size=256)
    d, geom = disease_of(17, 0, cfg, 256)
    assert len(d.cysts) > 20
    k, j, i = np.rint(geom.to_voxel(d.cysts.centres)).astype(int).T
    ok = (k >= 0) & (k < on.shape[0])
    k, j, i = k[ok], j[ok], i[ok]
    centre = is_lung(lab)[k, j, i]
    assert centre.sum() > 10
    assert np.mean(on[k, j, i][centre] - base[k, j, i][centre]) < -40  # air inside
    lung = is_lung(lab)
    assert np.sum(lung & (on > base + 150)) > 50  # walls


def test_dependent_atelectasis_is_a_dense_posterior_basal_band(world, off):
    cfg = quiet(
        only(
            world,
            atelectasis={
                "count": (1, 1),
                "plate_probability": 0.0,
                "hu": (20, 20),
                "band_thickness_mm": (15, 15),
                "band_length_mm": (70, 70),
                "height_fraction": (0.1, 0.3),
            },
        )
    )
    on, base, lab, lab0 = pair(18, cfg, quiet(off))
    assert np.array_equal(lab, lab0)
    d, geom = disease_of(18, 0, cfg)
    dense = is_lung(lab) & (on > -200) & (base < -700)
    assert dense.sum() > 30
    pts = patient_points(geom, dense)
    lung_pts = patient_points(geom, is_lung(lab))
    assert pts[:, 1].mean() > lung_pts[:, 1].mean() + 15  # dependent
    assert pts[:, 2].mean() < lung_pts[:, 2].mean()  # basal half
    assert np.mean(d.hides(pts, margin_mm=1.0)) > 0.95


def test_plate_atelectasis_is_thin(world, off):
    cfg = quiet(
        only(
            world,
            atelectasis={
                "count": (1, 1),
                "plate_probability": 1.0,
                "hu": (20, 20),
                "plate_length_mm": (60, 60),
                "plate_thickness_mm": (3, 3),
                "plate_tilt": 0.0,
                "height_fraction": (0.2, 0.4),
            },
        )
    )
    on, base, lab, _ = pair(19, cfg, quiet(off), size=192)
    d, geom = disease_of(19, 0, cfg, 192)
    changed = is_lung(lab) & (on > base + 150)
    pts = patient_points(geom, changed)
    assert len(pts) > 30
    sd = np.sqrt(np.linalg.eigvalsh(np.cov(pts.T)))
    assert sd[-1] > 8 and sd[0] < 0.3 * sd[-1]  # wide and flat


def test_hides_is_true_in_effusion_and_consolidation_and_false_in_clear_lung(world, off):
    cfg = quiet(
        only(world, effusion={"thickness_mm": (30, 30)}, consolidation={"count": (1, 1), "diameter_mm": (50, 50)})
    )
    on, base, lab, lab0 = pair(20, cfg, quiet(off))
    d, geom = disease_of(20, 0, cfg)
    fluid = is_lung(lab0) & (lab == 0)
    solid = is_lung(lab) & (on > -100) & (base < -750)
    clear = is_lung(lab) & (on == base)
    assert fluid.sum() > 50 and solid.sum() > 30 and clear.sum() > 1000
    assert np.mean(d.hides(patient_points(geom, fluid))) > 0.95
    assert np.mean(d.hides(patient_points(geom, solid))) > 0.95
    assert np.mean(d.hides(patient_points(geom, clear))) < 0.01


@pytest.mark.parametrize(
    ("pattern", "key", "value"),
    [("effusion", "probability", 1.5), ("emphysema", "spots", [600, 100]), ("fibrosis", "honeycomb_probability", -0.1)],
)
def test_bad_disease_settings_raise_config_error(tmp_path, pattern, key, value):
    data = yaml.safe_load((CONFIG_DIR / "synth.yaml").read_text())
    data["disease"][pattern][key] = value
    path = tmp_path / "synth.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=f"disease.{pattern}.{key}"):
        load_synth_config(path)
