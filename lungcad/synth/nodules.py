"""Nodules: what kinds a patient has, how each looks, and where it sits in the lungs.

Kinds (:func:`draw_kinds`): a count of nodules >= 3 mm and of tiny excluded ones (1.5-2.9 mm), each
with a log-normal diameter, a type (solid, part_solid, ggo, calcified), a shape (smooth, lobulated,
spiculated) and a location (intraparenchymal, juxtapleural, juxtavascular). Some combinations are
adjusted to stay plausible: spiculated needs >= 6 mm and a solid or part-solid nodule, part-solid
nodules are >= 6 mm, calcified and ground-glass nodules are never spiculated (they become smooth).

Placement (:func:`place_nodules`) works in the patient frame (mm):

- intraparenchymal: a ball of radius ``r + pleura_margin_mm`` around the centre lies inside the lung;
- juxtapleural: the centre sits 0.45-0.75 r (at least 1.5 mm) inside the pleura on a ray through the
  chest wall, so the nodule is flattened against the wall it touches; an LIDC-IDRI nodule with a flat face
  (:mod:`lungcad.synth.lidc_nodules`) is turned so that the face looks along the ray and set with it on the pleura;
- juxtavascular: the centre sits ``r_vessel + (0.5-0.85) r`` from the axis of a 1-3.5 mm vessel, so the
  nodule touches and overlaps it.

Every location also needs ``min_free_fraction`` of the nodule's ball in aerated lung: inside the lung and
outside every vessel and airway (lumen and wall) and every region where lung disease would hide it (effusion,
consolidation, atelectasis: ``Tubes.hidden``), with its centre not hidden. Nodules only brighten what is darker
than they are, so one set inside a large vessel, an airway wall or mostly in the chest wall would be annotated
but not be in the image (generator version 1 drew some: a 6 mm part-solid nodule inside a hilar vessel,
ground-glass nodules adding 25-40 HU on average).

A nodule that does not fit at its location is tried in the other lung, then as intraparenchymal;
one that still does not fit is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from lungcad.synth.anatomy import Anatomy, Lung, cavity_rho, lung_label_at
from lungcad.synth.cancer import is_malignant
from lungcad.synth.config import NoduleConfig, SynthConfig
from lungcad.synth.raster import Segments
from lungcad.synth.texture import Lattice, make_lattice
from lungcad.synth.util import cbrt, choice, normalize, random_rotation, random_unit, segment_distance, uniform

if TYPE_CHECKING:
    from lungcad.synth.lidc_nodules import LidcNodule

#: 26 unit directions (cube faces, edges, corners) used to test that a ball fits in the lung.
_DIRS = normalize(
    np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1) if i or j or k], float)
)
#: Points filling the unit ball evenly (a 9x9x9 lattice's points inside it): where a nodule's free share is
#: measured (fixed, so the check draws nothing from the random streams).
_BALL = np.stack(np.meshgrid(*[np.linspace(-1, 1, 9)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
_BALL = _BALL[np.linalg.norm(_BALL, axis=1) <= 1.0]


@dataclass(frozen=True)
class Tubes:
    """What a nodule must mostly stay out of: vessels and airways (radius = lumen + wall), patient mm, and the
    regions where lung disease would hide it (``hidden``: bool ``(N,)`` of points ``(N, 3)``; None = none)."""

    a: np.ndarray  # (N, 3) start points
    b: np.ndarray  # (N, 3) end points
    ra: np.ndarray  # (N,) outer radius at the start
    rb: np.ndarray  # (N,) outer radius at the end
    hidden: Callable[[np.ndarray], np.ndarray] | None = None

    @staticmethod
    def of(
        vessels: Segments,
        airways: Segments | None = None,
        wall_fraction: float = 0.0,
        wall_min_mm: float = 0.0,
        hidden: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> Tubes:
        """Vessels as they are drawn, airways with their wall (radius ``r * (1 + wall_fraction) + wall_min_mm``, as
        :func:`lungcad.synth.phantom.make_phantom` draws it), and ``hidden`` (e.g.
        :meth:`lungcad.synth.disease.Disease.hides`)."""
        parts = [(vessels.a, vessels.b, vessels.ra, vessels.rb)]
        if airways is not None and len(airways):
            ra, rb = (r * (1.0 + wall_fraction) + wall_min_mm for r in (airways.ra, airways.rb))
            parts.append((airways.a, airways.b, ra, rb))
        return Tubes(*(np.concatenate([p[i] for p in parts]) for i in range(4)), hidden=hidden)

    def contain(self, points: np.ndarray, centre: np.ndarray, reach: float) -> np.ndarray:
        """bool ``(M,)``: which ``points`` (all within ``reach`` mm of ``centre``) lie inside any tube."""
        inside = np.zeros(len(points), dtype=bool)
        if not len(self.ra):
            return inside
        d = self.b - self.a
        length2 = np.maximum(np.einsum("ij,ij->i", d, d), 1e-12)
        t = np.clip(np.einsum("ij,ij->i", centre - self.a, d) / length2, 0.0, 1.0)
        axis_gap = np.linalg.norm(self.a + t[:, None] * d - centre, axis=1)
        near = np.nonzero(axis_gap <= reach + np.maximum(self.ra, self.rb))[0]
        for i in near:
            gap, u = segment_distance(points[:, 0], points[:, 1], points[:, 2], self.a[i], self.b[i])
            inside |= gap < self.ra[i] + u * (self.rb[i] - self.ra[i])
        return inside


def free_fraction(an: Anatomy, label: int, centre: np.ndarray, radius: float, tubes: Tubes) -> float:
    """Share of the ball (``centre``, ``radius`` mm) inside lung ``label``, outside every tube and not hidden by
    disease: the part of a nodule there that can show against aerated lung (0 when its centre is hidden)."""
    if tubes.hidden is not None and tubes.hidden(np.asarray(centre, dtype=np.float64)[None])[0]:
        return 0.0
    pts = centre + radius * _BALL
    free = _inside(an, label, pts)
    free[free] = ~tubes.contain(pts[free], centre, radius)
    if tubes.hidden is not None and free.any():
        free[free] = ~tubes.hidden(pts[free])
    return float(free.mean())


@dataclass(frozen=True)
class NoduleKind:
    """The clinical description of one nodule (no position yet); ``lidc``: the LIDC-IDRI nodule it is (its
    readers' shape, ratings and look, :mod:`lungcad.synth.lidc_nodules`), None for a parametric one."""

    diameter_mm: float
    type: str
    shape: str
    location: str
    excluded: bool = False
    lidc: LidcNodule | None = None


@dataclass(frozen=True)
class NoduleLook:
    """How a nodule is drawn (patient mm, HU), drawn once so it does not depend on the matrix size.

    Attributes:
        rotation: 3x3 rotation of the ellipsoid (columns = its axes in patient xyz).
        axes: ellipsoid semi-axes, mm.
        bumps: ``(3, 4)`` rows ``(vx, vy, vz, amplitude)``: gentle surface undulation.
        hu, texture: mean HU of the main body and the amplitude of its texture.
        core_hu, core_radius: a denser core (part-solid solid core, central calcification); radius 0 = none.
        blobs: ``(n, 4)`` rows ``(dx, dy, dz, radius)`` of a lobulated nodule (empty otherwise).
        spikes: ``(k, 5)`` rows ``(vx, vy, vz, length, half_width)`` of a spiculated nodule.
        lattice: texture lattice in coordinates relative to the centre.
    """

    rotation: np.ndarray
    axes: tuple[float, float, float]
    bumps: np.ndarray
    hu: float
    texture: float
    core_hu: float
    core_radius: float
    blobs: np.ndarray
    spikes: np.ndarray
    lattice: Lattice

    @property
    def extent(self) -> float:
        """Radius (mm) of a ball that contains everything drawn, relative to the centre."""
        r = max(self.axes)
        if len(self.blobs):
            r = max(r, float(np.max(np.linalg.norm(self.blobs[:, :3], axis=1) + self.blobs[:, 3])))
        if len(self.spikes):
            r = max(r, max(self.axes) + float(self.spikes[:, 3].max()))
        return r


@dataclass(frozen=True)
class NoduleSpec:
    """A placed nodule in the patient frame."""

    centre: tuple[float, float, float]
    kind: NoduleKind
    lung: int
    malignant: bool
    core_diameter_mm: float | None
    look: NoduleLook | LidcNodule


def _diameter(rng: np.random.Generator, cfg: NoduleConfig) -> float:
    """Log-normal diameter truncated to ``diameter_range_mm`` (by redrawing)."""
    lo, hi = cfg.diameter_range_mm
    for _ in range(100):
        d = float(rng.lognormal(np.log(cfg.diameter_median_mm), cfg.diameter_sigma))
        if lo <= d <= hi:
            return d
    return float(np.clip(cfg.diameter_median_mm, lo, hi))


def _plausible(kind: NoduleKind) -> NoduleKind:
    """Adjust implausible combinations (see the module docstring)."""
    d, t, s = kind.diameter_mm, kind.type, kind.shape
    if t == "part_solid":
        d = max(d, 6.0)
    if s == "spiculated" and (d < 6.0 or t in ("ggo", "calcified")):
        s = "smooth"
    return NoduleKind(round(d, 3), t, s, kind.location, kind.excluded)


def draw_kinds(rng: np.random.Generator, config: SynthConfig) -> list[NoduleKind]:
    """The nodules (>= 3 mm) and tiny excluded findings of one patient, largest first."""
    cfg = config.nodules
    n = choice(rng, range(len(cfg.count_weights)), cfg.count_weights)
    kinds = []
    for _ in range(n):
        kind = NoduleKind(
            _diameter(rng, cfg),
            choice(rng, cfg.type_names, cfg.type_weights),
            choice(rng, cfg.shape_names, cfg.shape_weights),
            choice(rng, cfg.location_names, cfg.location_weights),
        )
        kinds.append(_plausible(kind))
    for _ in range(choice(rng, range(len(cfg.tiny_count_weights)), cfg.tiny_count_weights)):
        t = "calcified" if rng.random() < 0.3 else "solid"
        kinds.append(NoduleKind(round(uniform(rng, cfg.tiny_diameter_mm), 3), t, "smooth", "intraparenchymal", True))
    return sorted(kinds, key=lambda k: -k.diameter_mm)


# --------------------------------------------------------------------------- looks
def density(rng: np.random.Generator, cfg: NoduleConfig, kind: NoduleKind, inner: float) -> tuple[float, ...]:
    """``(hu, texture, core_hu, core_radius)`` of a nodule of ``kind`` whose body is >= ``inner`` mm thick."""
    h = cfg.hu
    if kind.type == "ggo":
        return uniform(rng, h.ggo), uniform(rng, h.ggo_texture), 0.0, 0.0
    if kind.type == "part_solid":
        core = inner * uniform(rng, cfg.core_fraction)
        return uniform(rng, h.ggo), uniform(rng, h.ggo_texture), uniform(rng, h.solid), core
    if kind.type == "calcified":
        if rng.random() < cfg.central_calcification_probability:
            core = inner * uniform(rng, (0.35, 0.6))
            return uniform(rng, h.solid), uniform(rng, h.texture), uniform(rng, h.calcified), core
        return uniform(rng, h.calcified), uniform(rng, h.texture), 0.0, 0.0
    return uniform(rng, h.solid), uniform(rng, h.texture), 0.0, 0.0


def _blobs(rng: np.random.Generator, cfg: NoduleConfig, r: float) -> np.ndarray:
    """Lobulated: a central blob plus blobs that reach the sphere of radius ``r``."""
    n = int(rng.integers(cfg.lobes[0], cfg.lobes[1] + 1))
    rows = [[0.0, 0.0, 0.0, r * uniform(rng, (0.58, 0.72))]]
    for v in random_unit(rng, n - 1):
        rb = r * uniform(rng, (0.45, 0.65))
        rows.append([*(v * (r - rb)), rb])
    return np.array(rows)


def _spikes(rng: np.random.Generator, cfg: NoduleConfig, r: float) -> np.ndarray:
    """Spiculated: radial spicules ``(vx, vy, vz, length, half_width)``."""
    k = int(rng.integers(cfg.spikes[0], cfg.spikes[1] + 1))
    v = random_unit(rng, k)
    length = r * rng.uniform(cfg.spike_length[0], cfg.spike_length[1], k)
    width = np.clip(r * rng.uniform(cfg.spike_width[0], cfg.spike_width[1], k), 0.5, 2.0)
    return np.column_stack([v, length, width])


def draw_look(rng: np.random.Generator, cfg: NoduleConfig, kind: NoduleKind) -> NoduleLook:
    """Random appearance of a nodule of ``kind``."""
    r = kind.diameter_mm / 2
    f = rng.uniform(cfg.aspect[0], cfg.aspect[1], 3)
    axes = r * f / float(cbrt(f[0] * f[1] * f[2]))
    bump = 0.16 if kind.shape == "spiculated" else 0.08
    bumps = np.column_stack([random_unit(rng, 3), rng.uniform(-bump, bump, 3)])
    blobs = _blobs(rng, cfg, r) if kind.shape == "lobulated" else np.zeros((0, 4))
    spikes = _spikes(rng, cfg, r) if kind.shape == "spiculated" else np.zeros((0, 5))
    inner = float(blobs[0, 3]) if len(blobs) else float(axes.min())
    hu, tex, core_hu, core_r = density(rng, cfg, kind, inner)
    reach = r * (1.3 + (cfg.spike_length[1] if len(spikes) else 0.0)) + 2.0
    lattice = make_lattice(rng, np.full(3, -reach), np.full(3, reach), max(1.2, r / 2.5))
    return NoduleLook(
        random_rotation(rng), tuple(float(v) for v in axes), bumps, hu, tex, core_hu, core_r, blobs, spikes, lattice
    )


# --------------------------------------------------------------------------- placement
def _inside(an: Anatomy, label: int, p: np.ndarray) -> np.ndarray:
    """bool ``(N,)``: points ``(N, 3)`` inside lung ``label``."""
    return lung_label_at(an, p[:, 0], p[:, 1], p[:, 2]) == label


def _fits(an: Anatomy, label: int, c: np.ndarray, radius: float) -> bool:
    """Whether the centre and two shells (radius, 0.6 radius) of 26 points all lie in lung ``label``."""
    pts = np.concatenate([c[None], c + radius * _DIRS, c + 0.6 * radius * _DIRS])
    return bool(_inside(an, label, pts).all())


def _clear(c: np.ndarray, r: float, placed: list[NoduleSpec], sep: float) -> bool:
    """Whether a nodule at ``c`` of radius ``r`` keeps ``sep`` mm from every placed one."""
    return all(np.linalg.norm(c - np.asarray(q.centre)) >= r + q.kind.diameter_mm / 2 + sep for q in placed)


def lung_points(rng: np.random.Generator, an: Anatomy, lung: Lung, n: int) -> np.ndarray:
    """Up to ``n`` points ``(m, 3)`` uniformly inside ``lung`` (rejection sampling in its bounding box)."""
    lo = np.array(
        [min(lung.sign * an.mediastinum, lung.sign * an.cavity_ax), an.cavity_cy - an.cavity_ay, lung.recess_z]
    )
    hi = np.array([max(lung.sign * an.mediastinum, lung.sign * an.cavity_ax), an.cavity_cy + an.cavity_ay, lung.apex_z])
    pts = lo + (hi - lo) * rng.random((max(4 * n, 64), 3))
    return pts[_inside(an, lung.label, pts)][:n]


def _shows(an: Anatomy, lung: Lung, c: np.ndarray, r: float, cfg: NoduleConfig, tubes: Tubes) -> bool:
    """Whether enough of a nodule at ``c`` lies in aerated lung to be seen (``min_free_fraction``)."""
    return cfg.min_free_fraction <= 0 or free_fraction(an, lung.label, c, r, tubes) >= cfg.min_free_fraction


def _place_intra(
    rng, an: Anatomy, lung: Lung, r: float, cfg: NoduleConfig, placed: list, tubes: Tubes
) -> np.ndarray | None:
    """Centre of an intraparenchymal nodule, or None."""
    for c in lung_points(rng, an, lung, 200):
        if (
            _clear(c, r, placed, cfg.min_separation_mm)
            and _fits(an, lung.label, c, r + cfg.pleura_margin_mm)
            and _shows(an, lung, c, r, cfg, tubes)
        ):
            return c
    return None


def _wall_exit(an: Anatomy, lung: Lung, p0: np.ndarray, u: np.ndarray) -> float | None:
    """Distance along ``u`` from ``p0`` to where the ray leaves ``lung`` through the chest wall, or None."""
    t = np.arange(0.0, 200.0, 0.5)
    inside = _inside(an, lung.label, p0 + t[:, None] * u)
    out = np.nonzero(~inside)[0]
    if len(out) == 0 or out[0] == 0:
        return None
    tb = float(t[out[0] - 1])
    beyond = p0 + (tb + 2.0) * u
    if cavity_rho(an, beyond[0], beyond[1], beyond[2]) < 0.97:
        return None  # left through the mediastinum, heart or diaphragm
    return tb


def _place_pleural(
    rng, an: Anatomy, lung: Lung, r: float, cfg: NoduleConfig, placed: list, tubes: Tubes, face: float | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """Centre of a juxtapleural nodule touching the chest wall and the outward direction ``u`` of its wall contact,
    or None. ``face``: the nodule has a flat face this far (mm) from its centre, which is put on the pleura."""
    for p0 in lung_points(rng, an, lung, 60):
        a, b = rng.standard_normal(2)
        u = normalize(np.array([lung.sign * (abs(a) + 0.3), b, 0.0]))
        tb = _wall_exit(an, lung, p0, u)
        if tb is None:
            continue
        depth = max(uniform(rng, (0.45, 0.75)) * r, min(1.5, r)) if face is None else face
        c = p0 + (tb - depth) * u
        if not (
            _inside(an, lung.label, np.stack([c, c - u * (r + 1.0)])).all()
            and _clear(c, r, placed, cfg.min_separation_mm)
        ):
            continue
        shell = c + r * _DIRS
        out = shell[~_inside(an, lung.label, shell)]
        wall = len(out) and np.all(cavity_rho(an, out[:, 0], out[:, 1], out[:, 2]) >= 0.95)
        if wall and _shows(an, lung, c, r, cfg, tubes):
            return c, u
    return None


def _place_vascular(
    rng, an: Anatomy, lung: Lung, r: float, cfg: NoduleConfig, placed: list, vessels: Segments, tubes: Tubes
) -> np.ndarray | None:
    """Centre of a juxtavascular nodule touching a 1-3.5 mm vessel, or None."""
    mean_r = 0.5 * (vessels.ra + vessels.rb)
    pool = np.nonzero((vessels.lung == lung.label) & (mean_r >= 1.0) & (mean_r <= 3.5))[0]
    if len(pool) == 0:
        return None
    for i in rng.choice(pool, size=min(80, len(pool)), replace=False):
        a, b = vessels.a[i], vessels.b[i]
        t = uniform(rng, (0.2, 0.8))
        q = a + t * (b - a)
        rv = vessels.ra[i] + t * (vessels.rb[i] - vessels.ra[i])
        n = normalize(np.cross(b - a, rng.standard_normal(3)))
        c = q + n * (rv + uniform(rng, (0.5, 0.85)) * r)
        if (
            _clear(c, r, placed, cfg.min_separation_mm)
            and _fits(an, lung.label, c, r + cfg.pleura_margin_mm)
            and _shows(an, lung, c, r, cfg, tubes)
        ):
            return c
    return None


def _place_one(
    rng: np.random.Generator,
    an: Anatomy,
    cfg: NoduleConfig,
    lung: Lung,
    kind: NoduleKind,
    placed: list,
    vessels: Segments,
    tubes: Tubes,
) -> tuple[np.ndarray, np.ndarray | None] | None:
    """Centre (patient mm) for ``kind`` in ``lung`` at its location and, for a juxtapleural one, the outward
    direction of its wall contact; None if it does not fit."""
    r = kind.diameter_mm / 2
    if kind.location == "juxtapleural":
        face = kind.lidc.face_depth_mm if kind.lidc is not None else None
        return _place_pleural(rng, an, lung, r, cfg, placed, tubes, face)
    if kind.location == "juxtavascular":
        c = _place_vascular(rng, an, lung, r, cfg, placed, vessels, tubes)
    else:
        c = _place_intra(rng, an, lung, r, cfg, placed, tubes)
    return None if c is None else (c, None)


def place_nodules(
    rng: np.random.Generator,
    an: Anatomy,
    config: SynthConfig,
    vessels: Segments,
    kinds: list[NoduleKind],
    airways: Segments | None = None,
    hidden: Callable[[np.ndarray], np.ndarray] | None = None,
) -> list[NoduleSpec]:
    """Place ``kinds`` in the lungs (right lung first with probability 0.55, else the left), each with at least
    ``min_free_fraction`` of its ball clear of ``vessels``, ``airways`` (lumen radii; walls added here) and the
    ``hidden`` regions of lung disease (effusion, consolidation, atelectasis), and its centre not hidden.

    A nodule that fits nowhere at its location is tried in the other lung, then as intraparenchymal
    (its location is then recorded as such); one that still does not fit is dropped.
    """
    cfg = config.nodules
    wall_min_mm, wall_fraction = an.airway_wall  # this patient's airway wall, as make_phantom draws it
    tubes = Tubes.of(vessels, airways, wall_fraction, wall_min_mm, hidden)
    placed: list[NoduleSpec] = []
    for kind in kinds:
        lungs = an.lungs if rng.random() < 0.55 else an.lungs[::-1]
        look = kind.lidc if kind.lidc is not None else draw_look(rng, cfg, kind)
        placed_at, lung = None, lungs[0]
        for attempt in (kind, replace(kind, location="intraparenchymal")):
            for lung in lungs:
                placed_at = _place_one(rng, an, cfg, lung, attempt, placed, vessels, tubes)
                if placed_at is not None:
                    break
            if placed_at is not None:
                kind = attempt
                break
        if placed_at is None:
            continue
        c, outward = placed_at
        if kind.lidc is not None and outward is not None:
            look = kind.lidc.aligned(outward)
        core = 2 * look.core_radius if kind.type == "part_solid" else None
        placed.append(
            NoduleSpec(
                tuple(float(v) for v in c),
                kind,
                lung.label,
                is_malignant(kind, config.cancer_rule),
                None if core is None else round(core, 3),
                look,
            )
        )
    return placed
