"""The phantom's anatomy: drawn parameters and the analytic lung function.

All lengths are mm in the patient frame of :mod:`lungcad.synth.geometry` (x patient left, y posterior,
z superior from the first slice). The body is an elliptic cylinder with skin, fat and muscle layers; the
thoracic cavity an ellipse inside it that narrows towards the apex. Each lung is the cavity intersected
with its own deformed ellipse lateral to the mediastinum, rounded at the apex, cut below by a diaphragm
dome (the right one higher), and carved by the heart, aorta and spine. Label values follow
``seg-lungs-LUNA16``: 3 left lung, 4 right lung, 5 trachea and main bronchi.

Body knobs of the randomized world (:class:`BodyDraw`, drawn by :func:`draw_body` from the phantom's ``body``
stream): habitus (fat thickness, body outline), body aspect, breathing state (lung height, dome height, cavity
size, parenchymal HU), chest width, heart and mediastinum size, and the vessel/airway tree knobs read by
:mod:`lungcad.synth.vessels`. Their neutral values in ``configs/synth.yaml`` leave every phantom as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lungcad.synth.config import SynthConfig
from lungcad.synth.geometry import Geometry
from lungcad.synth.texture import Lattice, make_lattice
from lungcad.synth.util import segment_distance, smoothstep, uniform

LEFT_LUNG = 3
RIGHT_LUNG = 4
AIRWAY = 5
#: (sign of x, label) of the two lungs: the right lung lies at negative x (LPS).
SIDES = ((-1.0, RIGHT_LUNG), (1.0, LEFT_LUNG))


@dataclass(frozen=True)
class Tube:
    """A straight tube (capsule) ``a``-``b`` (xyz mm) of outer ``radius`` mm filled with ``hu``.

    ``lumen`` > 0 draws an air lumen of that radius (label ``label`` if non-zero); ``carve`` > 0 removes
    lung within ``radius + carve`` mm.
    """

    a: np.ndarray
    b: np.ndarray
    radius: float
    hu: float
    lumen: float = 0.0
    label: int = 0
    carve: float = 0.0


@dataclass(frozen=True)
class BodyDraw:
    """One patient's body knobs (drawn from the ``body`` stream by :func:`draw_body`; see ``configs/synth.yaml``).

    All neutral (1 for scales, 0 for ``expiration`` and ``branch_cos_shift``, None for ``tip_radius_mm``)
    reproduces the phantoms of before bit for bit.
    """

    habitus: float  # subcutaneous fat / drawn fat_mm
    body_aspect: float  # multiplies the drawn AP / lateral aspect
    expiration: float  # 0 full inspiration .. 1 full expiration
    lung_width: float  # multiplies the cavity's lateral semi-axis
    cardiac: float  # multiplies the heart's semi-axes
    mediastinum: float  # multiplies the mediastinum half-width
    calibre: float  # multiplies vessel radii
    asymmetry: float  # multiplies the bifurcation radius ratio
    branch_cos_shift: float  # added to the branching cosines
    tortuosity: float  # multiplies the direction jitter
    tip_radius_mm: float | None  # vessels taper to this radius (mm) at the pleura; None: off
    pleura_taper: float  # radius cap gained per mm from the pleura (mm / mm)
    tip_taper_length: float  # appended terminal cone length / end radius
    airway_calibre: float  # multiplies airway lumen radii
    airway_wall: float  # multiplies airway wall thickness


#: ``BodyDraw`` field -> (config section, key) of its per-scan range, in the order of the ``body`` stream's draws.
BODY_KNOBS = (
    ("habitus", "anatomy", "habitus"),
    ("body_aspect", "anatomy", "body_aspect_scale"),
    ("expiration", "anatomy", "expiration"),
    ("lung_width", "anatomy", "lung_width_scale"),
    ("cardiac", "anatomy", "cardiac_scale"),
    ("mediastinum", "anatomy", "mediastinum_scale"),
    ("calibre", "vessels", "calibre_scale"),
    ("asymmetry", "vessels", "asymmetry_scale"),
    ("branch_cos_shift", "vessels", "branch_cos_shift"),
    ("tortuosity", "vessels", "tortuosity"),
    ("tip_radius_mm", "vessels", "tip_radius_mm"),
    ("pleura_taper", "vessels", "pleura_taper"),
    ("tip_taper_length", "vessels", "tip_taper_length"),
    ("airway_calibre", "vessels", "airway_calibre_scale"),
    ("airway_wall", "vessels", "airway_wall_scale"),
)
#: Knobs that are "on" when their range is not the neutral point (the taper ones count only with tip_radius_mm set).
_NEUTRAL = {"expiration": 0.0, "branch_cos_shift": 0.0}
_TAPER_ONLY = ("pleura_taper", "tip_taper_length")


def body_knobs_on(config: SynthConfig) -> bool:
    """Whether any body knob of ``config`` differs from its neutral value (then the ``body`` stream is drawn)."""
    for name, section, key in BODY_KNOBS:
        bounds = getattr(getattr(config, section), key)
        if name in _TAPER_ONLY:
            continue
        if name == "tip_radius_mm":
            if bounds is not None:
                return True
            continue
        neutral = _NEUTRAL.get(name, 1.0)
        if bounds[0] != neutral or bounds[1] != neutral:
            return True
    return False


def draw_body(rng: np.random.Generator | None, config: SynthConfig) -> BodyDraw:
    """One patient's body knobs: ``low + (high - low) * u`` with one uniform ``u`` per knob of :data:`BODY_KNOBS`.

    The ``body`` stream ``rng`` is drawn (a fixed vector, so a knob's value does not depend on the others being
    on) only when :func:`body_knobs_on`; otherwise, or with ``rng`` None, every knob takes its low value.
    """
    u = rng.random(len(BODY_KNOBS)) if rng is not None and body_knobs_on(config) else np.zeros(len(BODY_KNOBS))
    values: dict[str, float | None] = {}
    for k, (name, section, key) in enumerate(BODY_KNOBS):
        bounds = getattr(getattr(config, section), key)
        values[name] = None if bounds is None else float(bounds[0] + (bounds[1] - bounds[0]) * u[k])
    return BodyDraw(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Lung:
    """One lung's shape parameters (mm)."""

    sign: float  # -1 right, +1 left
    label: int
    cx: float  # |x| of the shape centre at full width
    cy: float
    ax: float  # semi-axes of the lung ellipse
    ay: float
    apex_z: float
    apex_cap: float
    harmonics: tuple[float, ...]  # cos, sin, cos2, sin2 amplitudes at the base, then at the apex
    recess_z: float  # lowest z of the lung (costophrenic recess)
    dome_h: float  # dome height above the recess
    dome_cx: float  # |x| of the dome top
    dome_cy: float
    dome_ax: float
    dome_ay: float


@dataclass(frozen=True)
class Anatomy:
    """Everything drawn once per patient; see the module docstring for the frame.

    ``hu`` maps tissue names to the HU drawn for this patient.
    """

    scale: float
    body_ax: float
    body_ay: float
    fat: float
    cavity_ax: float
    cavity_ay: float
    cavity_cy: float
    rib_layer: float
    taper_top: float
    taper_z0: float
    taper_z1: float
    mediastinum: float
    lungs: tuple[Lung, Lung]
    heart_c: tuple[float, float, float]
    heart_ax: tuple[float, float, float]
    heart_rot: tuple[float, float]  # (cos, sin) of the in-plane rotation
    spine_y: float
    vertebra_r: float
    vertebra_pitch: float
    vertebra_phase: float
    canal_r: float
    sternum: tuple[float, float, float, float, float]  # y, semi-axis x, semi-axis y, z low, z high
    ribs: tuple[float, float, float, float, float, int]  # z of rib 1 (posterior), pitch, slope, width, thickness, n
    carina_z: float
    trachea: Tube
    bronchi: tuple[Tube, Tube]
    tubes: tuple[Tube, ...]  # aorta, esophagus, vena cava
    gastric: tuple[float, float, float, float, float, float] | None  # centre xyz, semi-axes
    table_y: float | None
    hu: dict[str, float]
    texture: Lattice
    body: BodyDraw  # the per-scan body knobs (vessel calibre, taper, branching are read by the tree growth)
    airway_wall: tuple[float, float]  # airway wall: (minimum mm, fraction of the lumen radius)


def draw_tissue_hu(rng: np.random.Generator, config: SynthConfig, expiration: float = 0.0) -> dict[str, float]:
    """The HU of each tissue for one patient; the lung is denser by ``lung_expiration_hu * expiration``."""
    t = config.hu
    out = {"air": t.air, "csf": t.csf, "table": t.table}
    for name in ("fat", "muscle", "blood", "liver", "cartilage", "bone_cortex", "bone_marrow", "lung"):
        out[name] = uniform(rng, getattr(t, name))
    out["lung"] = out["lung"] + t.lung_expiration_hu * expiration
    out["lung_gradient"] = uniform(rng, t.lung_gradient)
    out["lung_texture"] = uniform(rng, t.lung_texture)
    return out


def _draw_lung(rng: np.random.Generator, sign: float, label: int, p: dict) -> Lung:
    """One lung from the shared chest parameters ``p`` (dict of mm values)."""
    a = p["config"].anatomy
    s = p["scale"]
    room = p["cavity_ax"] - p["mediastinum"]
    recess = p["recess"] + (0.0 if sign < 0 else uniform(rng, (-4, 8)))
    dome_h = p["dome_h"] - (0.0 if sign < 0 else uniform(rng, a.left_dome_drop_mm) * s)
    return Lung(
        sign=sign,
        label=label,
        cx=p["mediastinum"] + 0.5 * room,
        cy=p["cavity_cy"] + 0.04 * p["cavity_ay"],
        ax=room * uniform(rng, (0.56, 0.64)),
        ay=p["cavity_ay"] * uniform(rng, (1.08, 1.18)),
        apex_z=p["apex_z"] - uniform(rng, (0, 8)),
        apex_cap=uniform(rng, a.apex_cap_mm) * s,
        harmonics=tuple(float(v) for v in rng.uniform(-0.06, 0.06, 8)),
        recess_z=recess,
        dome_h=dome_h,
        dome_cx=p["cavity_ax"] * uniform(rng, (0.4, 0.5)),
        dome_cy=p["cavity_cy"] - 0.1 * p["cavity_ay"],
        dome_ax=p["cavity_ax"] * uniform(rng, (0.5, 0.6)),
        dome_ay=p["cavity_ay"] * uniform(rng, (0.85, 1.0)),
    )


def _chest_parameters(rng: np.random.Generator, config: SynthConfig, geom: Geometry, body: BodyDraw) -> dict:
    """Body, wall and cavity sizes (mm) shared by the other draws.

    Habitus ``h``: the fat is ``h`` times the drawn ``fat_mm``. Of the extra ``fat_mm * (h - 1)``, the share
    ``habitus_outward`` widens the body beyond its drawn width (it may leave the field of view) and the rest
    shrinks the chest's scale ``s`` inside the drawn width (a scan framed on the body shows a smaller chest);
    the outline gets rounder, as the extra fat rings the whole chest. Expiration ``x`` raises the costophrenic
    recesses by ``expiration_height_loss * x`` of the lung height, the domes by ``expiration_dome_gain * x`` and
    narrows the cavity by ``expiration_width_loss * x`` (``x < 0``: hyperinflation).
    """
    a, g = config.anatomy, config.geometry
    body_ax = geom.fov_mm / 2 * uniform(rng, g.body_width_fraction)
    aspect = uniform(rng, a.body_aspect) * body.body_aspect
    fat0 = uniform(rng, a.fat_mm)
    extra = fat0 * (body.habitus - 1.0)  # mm at scale 1 (0 at habitus 1)
    s = body_ax / (a.reference_half_width_mm + (1.0 - a.habitus_outward) * extra)
    body_ax = body_ax + a.habitus_outward * extra * s  # may pass the field of view, as in obese patients
    body_ay = (body_ax - extra * s) * aspect + extra * s
    fat = fat0 * body.habitus * s
    muscle = uniform(rng, a.muscle_mm) * s
    back = uniform(rng, a.back_muscle_mm) * s
    rib_layer = uniform(rng, a.rib_layer_mm) * s
    breath = 1.0 - a.expiration_width_loss * body.expiration
    cavity_ax = (body_ax - fat - muscle - rib_layer) * (body.lung_width * breath)
    cavity_ax = min(cavity_ax, body_ax - fat - rib_layer - 0.15 * muscle)  # keep the ribs inside the body wall
    cavity_ay = (body_ay - fat - rib_layer - (muscle + back) / 2) * breath
    apex_z = geom.chest_mm - uniform(rng, g.apex_margin_mm)
    recess = uniform(rng, g.base_margin_mm)
    recess = recess + (apex_z - recess) * (a.expiration_height_loss * body.expiration)
    return {
        "config": config,
        "scale": s,
        "body_ax": body_ax,
        "body_ay": body_ay,
        "fat": fat,
        "rib_layer": rib_layer,
        "cavity_ax": cavity_ax,
        "cavity_ay": cavity_ay,
        "cavity_cy": (muscle - back) / 2,
        "mediastinum": uniform(rng, a.mediastinum_half_width_mm) * s * body.mediastinum,
        "apex_z": apex_z,
        "recess": recess,
        "dome_h": uniform(rng, a.dome_height_mm) * s * (1.0 + a.expiration_dome_gain * body.expiration),
        "body": body,
    }


def _airway_tubes(rng: np.random.Generator, p: dict, spine_y: float, vr: float) -> tuple[Tube, Tube, Tube, float]:
    """Trachea and main bronchi (air lumen, label 5) and the carina height."""
    a = p["config"].anatomy
    s, hu_wall = p["scale"], p["hu"]["muscle"]
    rt0 = uniform(rng, a.trachea_radius_mm) * s
    rt = rt0 * p["body"].airway_calibre  # a wider lumen does not move the trachea
    wall = 1.8 * s
    yt = spine_y - vr - 14 * s - rt0
    carina_z = p["apex_z"] - uniform(rng, a.carina_below_apex_mm) * s
    top = np.array([0.0, yt - 6 * s, p["apex_z"] + 200.0])
    carina = np.array([0.0, yt, carina_z])
    m = p["mediastinum"]
    right_end = carina + np.array([-(m + 16 * s), 5 * s, -22 * s])
    left_end = carina + np.array([m + 16 * s, 8 * s, -38 * s])
    trachea = Tube(top, carina, rt + wall, hu_wall, lumen=rt, label=AIRWAY)
    rr, rl = 0.78 * rt, 0.7 * rt
    right = Tube(carina, right_end, rr + wall, hu_wall, lumen=rr, label=AIRWAY)
    left = Tube(carina, left_end, rl + wall, hu_wall, lumen=rl, label=AIRWAY)
    return trachea, right, left, carina_z


def _mediastinal_tubes(rng: np.random.Generator, p: dict, spine_y: float, vr: float, heart_c: tuple) -> tuple:
    """Aorta (ascending, arch, descending), oesophagus and superior vena cava."""
    s, hu = p["scale"], p["hu"]
    ra = uniform(rng, p["config"].anatomy.aorta_radius_mm) * s
    arch_z = p["carina_z"] + uniform(rng, (18, 32)) * s
    asc = np.array([-0.08 * p["cavity_ax"], p["cavity_cy"] - 0.32 * p["cavity_ay"], heart_c[2]])
    asc_top = np.array([asc[0], asc[1], arch_z])
    desc_top = np.array([vr + 0.6 * ra, spine_y - 0.25 * vr - ra * 0.3, arch_z])
    desc_bottom = np.array([desc_top[0] - 0.4 * vr, desc_top[1], -50.0])
    aorta = tuple(
        Tube(a_, b_, ra, hu["blood"], carve=3.0 * s)
        for a_, b_ in ((asc, asc_top), (asc_top, desc_top), (desc_top, desc_bottom))
    )
    eso_y = spine_y - vr - 7 * s
    eso = Tube(np.array([4 * s, eso_y, p["apex_z"] + 200]), np.array([12 * s, eso_y, -50.0]), 7 * s, hu["muscle"])
    svc_x = -(p["mediastinum"] - 6 * s)
    svc = Tube(
        np.array([svc_x, asc[1] + 12 * s, p["apex_z"] + 200]),
        np.array([svc_x, asc[1] + 12 * s, heart_c[2] + 20 * s]),
        9 * s,
        hu["blood"],
        carve=2.0 * s,
    )
    return (*aorta, eso, svc)


def _heart(rng: np.random.Generator, p: dict, lungs: tuple[Lung, Lung]) -> tuple:
    """Heart centre, semi-axes and in-plane rotation; it sits on the left dome."""
    a = p["config"].anatomy
    k = uniform(rng, a.heart_scale) * p["scale"] * p["body"].cardiac
    axes = tuple(v * k for v in a.heart_size_mm)
    left = lungs[1]
    z = left.recess_z + left.dome_h + 0.45 * axes[2]
    centre = (0.22 * p["cavity_ax"], p["cavity_cy"] - 0.22 * p["cavity_ay"], z)
    t = uniform(rng, (0.45, 0.9))  # tan of the rotation angle
    rot = (1.0 / np.sqrt(1 + t * t), t / np.sqrt(1 + t * t))
    return centre, axes, rot


def _bones(rng: np.random.Generator, p: dict, lungs: tuple[Lung, Lung], heart_c: tuple, heart_ax: tuple) -> tuple:
    """Rib cage parameters (z of rib 1, pitch, slope, width, thickness, count) and the sternum."""
    a, s = p["config"].anatomy, p["scale"]
    low = min(lung.recess_z for lung in lungs)
    rib1 = p["apex_z"] - 6 * s
    ribs = (
        rib1,
        (rib1 - (low - 12 * s)) / max(a.rib_count - 1, 1),
        uniform(rng, a.rib_slope_mm) * s,
        uniform(rng, a.rib_width_mm) * s,
        uniform(rng, a.rib_thickness_mm) * s,
        a.rib_count,
    )
    sternum_y = p["cavity_cy"] - p["cavity_ay"] - 0.45 * p["rib_layer"]
    sternum = (sternum_y, 15 * s, 5.5 * s, heart_c[2] - 0.6 * heart_ax[2], p["apex_z"] - 25 * s)
    return ribs, sternum


def _extras(rng: np.random.Generator, p: dict, lungs: tuple[Lung, Lung]) -> tuple:
    """Gastric air bubble under the left dome (or None) and the table height (or None)."""
    a, s = p["config"].anatomy, p["scale"]
    gastric = None
    if rng.random() < a.gastric_bubble_probability:
        left = lungs[1]
        gastric = (
            left.dome_cx * 1.05,
            left.dome_cy + 0.15 * p["cavity_ay"],
            left.recess_z + left.dome_h - 30 * s,
            28 * s,
            20 * s,
            12 * s,
        )
    table_y = p["body_ay"] + uniform(rng, (2, 12)) if rng.random() < a.table_probability else None
    return gastric, table_y


def draw_anatomy(
    rng: np.random.Generator, config: SynthConfig, geom: Geometry, body_rng: np.random.Generator | None = None
) -> Anatomy:
    """Draw one patient's anatomy (independent of the matrix size).

    ``body_rng`` (the phantom's ``body`` stream) draws the body knobs (:func:`draw_body`); None keeps them at
    their low values. The anatomy stream's draws are the same whatever the knobs.
    """
    a = config.anatomy
    body = draw_body(body_rng, config)
    p = _chest_parameters(rng, config, geom, body)
    p["hu"] = draw_tissue_hu(rng, config, body.expiration)
    s = p["scale"]
    lungs = (_draw_lung(rng, -1.0, RIGHT_LUNG, p), _draw_lung(rng, 1.0, LEFT_LUNG, p))
    vr = uniform(rng, a.vertebra_radius_mm) * s
    spine_y = p["cavity_cy"] + p["cavity_ay"] - 0.3 * vr
    trachea, right_b, left_b, carina_z = _airway_tubes(rng, p, spine_y, vr)
    p["carina_z"] = carina_z
    heart_c, heart_ax, heart_rot = _heart(rng, p, lungs)
    tubes = _mediastinal_tubes(rng, p, spine_y, vr, heart_c)
    ribs, sternum = _bones(rng, p, lungs, heart_c, heart_ax)
    gastric, table_y = _extras(rng, p, lungs)
    lo = np.array([-p["body_ax"], -p["body_ay"], -10.0])
    hi = np.array([p["body_ax"], p["body_ay"], geom.chest_mm + 10.0])
    texture = make_lattice(rng, lo, hi, a.texture_cell_mm)
    return Anatomy(
        scale=s,
        body_ax=p["body_ax"],
        body_ay=p["body_ay"],
        fat=p["fat"],
        cavity_ax=p["cavity_ax"],
        cavity_ay=p["cavity_ay"],
        cavity_cy=p["cavity_cy"],
        rib_layer=p["rib_layer"],
        taper_top=uniform(rng, a.apex_taper),
        taper_z0=0.5 * (min(lung.recess_z for lung in lungs) + p["apex_z"]),
        taper_z1=p["apex_z"],
        mediastinum=p["mediastinum"],
        lungs=lungs,
        heart_c=heart_c,
        heart_ax=heart_ax,
        heart_rot=heart_rot,
        spine_y=spine_y,
        vertebra_r=vr,
        vertebra_pitch=uniform(rng, a.vertebra_pitch_mm) * s,
        vertebra_phase=uniform(rng, (0, 30)),
        canal_r=6.5 * s,
        sternum=sternum,
        ribs=ribs,
        carina_z=carina_z,
        trachea=trachea,
        bronchi=(right_b, left_b),
        tubes=tubes,
        gastric=gastric,
        table_y=table_y,
        hu=p["hu"],
        texture=texture,
        body=body,
        airway_wall=(
            config.vessels.airway_wall_min_mm * body.airway_wall,
            config.vessels.airway_wall_fraction * body.airway_wall,
        ),
    )


# --------------------------------------------------------------------------- analytic shape functions
def taper(an: Anatomy, z: np.ndarray | float) -> np.ndarray:
    """Width scale of the thoracic cavity at height ``z`` (1 at the base, ``taper_top`` at the apex)."""
    t = smoothstep((np.asarray(z, dtype=np.float64) - an.taper_z0) / (an.taper_z1 - an.taper_z0))
    return 1.0 - (1.0 - an.taper_top) * t


def cavity_rho(an: Anatomy, x: np.ndarray, y: np.ndarray, z: np.ndarray | float) -> np.ndarray:
    """Normalised elliptic radius of the thoracic cavity (< 1 inside) at points (x, y, z) mm."""
    g = taper(an, z)
    u = x / (an.cavity_ax * g)
    v = (y - an.cavity_cy) / (an.cavity_ay * g)
    return np.sqrt(u * u + v * v)


def dome_z(lung: Lung, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Height (mm) of the diaphragm under ``lung`` at (x, y) mm: lung exists above it."""
    u = (x - lung.sign * lung.dome_cx) / lung.dome_ax
    v = (y - lung.dome_cy) / lung.dome_ay
    return lung.recess_z + lung.dome_h * np.maximum(0.0, 1.0 - u * u - v * v)


def heart_rho2(an: Anatomy, x: np.ndarray, y: np.ndarray, z: np.ndarray | float) -> np.ndarray:
    """Squared normalised radius of the heart ellipsoid (< 1 inside)."""
    c, s = an.heart_rot
    dx, dy, dz = x - an.heart_c[0], y - an.heart_c[1], np.asarray(z) - an.heart_c[2]
    u = (dx * c + dy * s) / an.heart_ax[0]
    v = (-dx * s + dy * c) / an.heart_ax[1]
    w = dz / an.heart_ax[2]
    return u * u + v * v + w * w


def _lung_shape(lung: Lung, g: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray | float) -> np.ndarray:
    """bool: inside the lung's own deformed ellipse (apex rounding and shape harmonics included)."""
    zz = np.asarray(z, dtype=np.float64)
    u = np.clip((zz - (lung.apex_z - lung.apex_cap)) / lung.apex_cap, 0.0, 1.0)
    f = np.sqrt(np.maximum(1.0 - u * u, 0.0))
    dx = x - lung.sign * lung.cx * g
    dy = y - (lung.cy + 0.25 * lung.ay * u)
    r = np.sqrt(dx * dx + dy * dy) + 1e-9
    c, s = dx / r, dy / r
    h = lung.harmonics
    w = np.clip(zz / max(lung.apex_z, 1.0), 0.0, 1.0)
    mod = 1.0
    for k, basis in enumerate((c, s, c * c - s * s, 2 * c * s)):
        mod = mod + (h[k] * (1 - w) + h[k + 4] * w) * basis
    ex = dx / (lung.ax * g * f + 1e-9)
    ey = dy / (lung.ay * g * f + 1e-9)
    return (ex * ex + ey * ey) < mod * mod


def lung_label_at(
    an: Anatomy,
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray | float,
    *,
    carve: bool = True,
    lungs: tuple[Lung, ...] | None = None,
) -> np.ndarray:
    """Lung label (uint8: 0 none, 3 left, 4 right) at points (x, y, z) mm, broadcast together.

    Airways (label 5) are not included: they are drawn over the lungs by the slice renderer.
    ``carve=False`` skips the mediastinal vessels' carving (the slice renderer does it in local windows);
    ``lungs`` restricts the test to some lungs. Parts that cannot matter at a scalar ``z`` are skipped.
    """
    x, y = np.asarray(x), np.asarray(y)
    z = np.asarray(z, dtype=np.float64)
    shape = np.broadcast_shapes(x.shape, y.shape, z.shape)
    label = np.zeros(shape, dtype=np.uint8)
    lungs = an.lungs if lungs is None else lungs
    flat = z.ndim == 0
    if flat and all(z >= lung.apex_z or z <= lung.recess_z for lung in lungs):
        return label
    g = taper(an, z)
    base = np.broadcast_to(cavity_rho(an, x, y, z) < 1.0, shape).copy()
    base &= np.abs(x) > an.mediastinum
    dsx, dsy = x, y - an.spine_y
    base &= dsx * dsx + dsy * dsy > (an.vertebra_r + 5.0 * an.scale) ** 2
    if not flat or abs(float(z) - an.heart_c[2]) < 1.12 * an.heart_ax[2]:
        base &= heart_rho2(an, x, y, z) > 1.12**2
    for tube in an.tubes if carve else ():
        if tube.carve > 0:
            d, _ = segment_distance(x, y, z, tube.a, tube.b)
            base &= d > tube.radius + tube.carve
    for lung in lungs:
        side = base & (lung.sign * x > 0) & _lung_shape(lung, g, x, y, z)
        if not flat or z < lung.recess_z + lung.dome_h:
            side &= z > dome_z(lung, x, y)
        label[side] = lung.label
    return label


def lung_label_slice(an: Anatomy, xs: np.ndarray, ys: np.ndarray, z: float) -> np.ndarray:
    """Lung labels uint8 ``(len(ys), len(xs))`` of the axial plane ``z`` (no vessel carving).

    Each lung is evaluated only on the columns on its side of the mediastinum (``xs`` ascending, mm).
    """
    label = np.zeros((len(ys), len(xs)), dtype=np.uint8)
    for lung in an.lungs:
        cols = np.nonzero(lung.sign * xs > an.mediastinum)[0]
        if len(cols) == 0:
            continue
        c0, c1 = cols[0], cols[-1] + 1
        label[:, c0:c1] = lung_label_at(an, xs[None, c0:c1], ys[:, None], z, carve=False, lungs=(lung,))
    return label
