"""LIDC-IDRI nodules in a phantom: which nodules of a patient come from LIDC, how each is drawn.

:func:`substitute` replaces each nodule >= 3 mm that :func:`lungcad.synth.nodules.draw_kinds` drew with an
LIDC-IDRI nodule with probability ``lidc.fraction`` (every draw from the ``lidc`` stream, so ``fraction: 0`` leaves
a phantom unchanged). The LIDC nodule, drawn uniformly from the configured split's nodules in
``lidc.diameter_range_mm``, brings:

- its **shape**: the readers' consensus (:func:`lungcad.synth.lidc.nodule_shape`), turned by a random in-plane
  rotation and mirrored with ``mirror_probability`` (left-right, and head-feet), never scaled;
- its **kind**: ``diameter_mm`` = mean of the readers' greatest axial diameters; ``type`` from the texture and
  calcification ratings (calcification 1-5 -> calcified; texture <= 2 ground glass, < 4 part-solid, else solid);
  ``shape`` from spiculation / lobulation (median >= 3 -> spiculated / lobulated, else smooth); ``location``
  juxtapleural when the consensus has a flat face (:func:`lungcad.synth.lidc.flat_face`), placed with that face
  against the chest wall, else the drawn one; ``excluded`` when fewer than ``min_readers`` readers marked it;
- its **labels**: the nine median ratings and the LIDC ids, carried into ``nodules.csv``; malignant when the median
  malignancy is >= 4 (:mod:`lungcad.synth.cancer`).

Its density follows its type exactly as a parametric nodule's does (``nodules.hu`` ranges, texture, a solid core in
part-solid nodules and a calcified core or whole calcification in calcified ones), the core being the inner part of
the consensus shape.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from lungcad.synth.config import SynthConfig
from lungcad.synth.lidc import RATINGS, LidcShape, nodule_index, nodule_shape
from lungcad.synth.nodules import NoduleKind, density
from lungcad.synth.texture import Lattice, make_lattice
from lungcad.synth.util import normalize


@dataclass(frozen=True)
class LidcNodule:
    """An LIDC-IDRI nodule as drawn in one phantom (its labels and its look).

    Attributes:
        patient_id, annotation_ids: where it came from (``LIDC-IDRI-NNNN``; ``;``-joined annotation ids).
        readers: how many readings were grouped into it.
        ratings: ``(name, median)`` pairs of the nine LIDC ratings.
        shape: the consensus shape on its own grid.
        rotation: 2x2 in-plane map from the shape's (column x, row y) mm to patient (x, y) mm (a rotation, possibly
            times a mirror); ``z_sign``: +1, or -1 when mirrored head-feet.
        hu, texture, core_hu: HU of the body, amplitude of its texture, HU of the core.
        core_depth_mm: the core is where the signed distance exceeds this (mm); 0 = no core.
        lattice: texture lattice around the centre (patient mm).
    """

    patient_id: str
    annotation_ids: str
    readers: int
    ratings: tuple[tuple[str, float], ...]
    shape: LidcShape
    rotation: np.ndarray
    z_sign: float
    hu: float
    texture: float
    core_hu: float
    core_depth_mm: float
    lattice: Lattice

    def rating(self, name: str) -> float:
        """The median of rating ``name`` (one of :data:`lungcad.synth.lidc.RATINGS`)."""
        return dict(self.ratings)[name]

    @property
    def extent(self) -> float:
        """Radius (mm) of a ball around the centre that contains the whole nodule."""
        return self.shape.radius_mm

    @property
    def core_radius(self) -> float:
        """Half the thickness (mm) of the core: the deepest signed distance less ``core_depth_mm`` (0: no core)."""
        return max(float(self.shape.sdf.max()) - self.core_depth_mm, 0.0) if self.core_depth_mm > 0 else 0.0

    @property
    def face_depth_mm(self) -> float | None:
        """Distance from the centre to the flat face (None: no face)."""
        return self.shape.face_depth_mm

    def aligned(self, outward_xy: np.ndarray) -> LidcNodule:
        """The same nodule turned in-plane so that its flat face looks along ``outward_xy`` (patient x, y)."""
        if self.shape.face_normal is None:
            return self
        mirror = np.diag([float(np.sign(np.linalg.det(self.rotation))) or 1.0, 1.0])
        v = mirror @ np.asarray(self.shape.face_normal[:2])
        u = normalize(np.asarray(outward_xy[:2], dtype=np.float64))
        c, s = float(v @ u), float(v[0] * u[1] - v[1] * u[0])
        return replace(self, rotation=np.array([[c, -s], [s, c]]) @ mirror)

    def signed_distance(self, d: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
        """float32 signed distance (mm, > 0 inside) at patient offsets ``d = (dx, dy, dz)`` mm from the centre
        (broadcastable arrays; the result has their broadcast shape), trilinear on the shape's grid."""
        dx, dy, dz = np.broadcast_arrays(*d)
        r = self.rotation
        lx = r[0, 0] * dx + r[1, 0] * dy  # local = rotation^T @ patient (rotation is orthogonal)
        ly = r[0, 1] * dx + r[1, 1] * dy
        sz, sy, sx = self.shape.spacing_zyx
        cz, cy, cx = self.shape.centroid_zyx
        coords = np.stack([cz + self.z_sign * dz / sz, cy + ly / sy, cx + lx / sx])
        return ndimage.map_coordinates(self.shape.sdf, coords, order=1, mode="nearest").astype(np.float32)


def lidc_type(ratings: dict[str, float]) -> str:
    """``solid`` | ``part_solid`` | ``ggo`` | ``calcified`` from the median texture and calcification ratings."""
    if ratings["calcification"] < 5.5:
        return "calcified"
    t = ratings["texture"]
    return "ggo" if t <= 2 else "part_solid" if t < 4 else "solid"


def lidc_shape_label(ratings: dict[str, float]) -> str:
    """``spiculated`` | ``lobulated`` | ``smooth`` from the median spiculation and lobulation ratings."""
    if ratings["spiculation"] >= 3:
        return "spiculated"
    return "lobulated" if ratings["lobulation"] >= 3 else "smooth"


def _draw_one(rng: np.random.Generator, config: SynthConfig, row, shape: LidcShape, location: str) -> NoduleKind:
    """The kind (with its :class:`LidcNodule` in ``kind.lidc``) of index row ``row``."""
    cfg = config.lidc
    ratings = {name: float(row[name]) for name in RATINGS}
    v = normalize(rng.standard_normal(2))
    rotation = np.array([[v[0], -v[1]], [v[1], v[0]]])
    if rng.random() < cfg.mirror_probability:
        rotation = rotation @ np.diag([-1.0, 1.0])
    z_sign = -1.0 if rng.random() < cfg.mirror_probability else 1.0
    kind = NoduleKind(
        round(float(row["diameter_mm"]), 3),
        lidc_type(ratings),
        lidc_shape_label(ratings),
        "juxtapleural" if shape.face_normal is not None else location,
        int(row["readers"]) < cfg.min_readers,
    )
    inner = float(shape.sdf.max())
    hu, texture, core_hu, core_radius = density(rng, config.nodules, kind, inner)
    reach = shape.radius_mm + 2.0
    lattice = make_lattice(rng, np.full(3, -reach), np.full(3, reach), max(1.2, kind.diameter_mm / 5.0))
    look = LidcNodule(
        patient_id=str(row["patient_id"]),
        annotation_ids=str(row["annotation_ids"]),
        readers=int(row["readers"]),
        ratings=tuple(ratings.items()),
        shape=shape,
        rotation=rotation,
        z_sign=z_sign,
        hu=hu,
        texture=texture,
        core_hu=core_hu,
        core_depth_mm=max(inner - core_radius, 0.0) if core_radius > 0 else 0.0,
        lattice=lattice,
    )
    return replace(kind, lidc=look)


def substitute(rng: np.random.Generator, config: SynthConfig, kinds: list[NoduleKind]) -> list[NoduleKind]:
    """``kinds`` with each non-excluded one replaced by an LIDC-IDRI nodule with probability ``lidc.fraction``.

    Draws only from ``rng`` (the ``lidc`` stream) and only when ``lidc.fraction > 0``. The result is sorted largest
    first, as :func:`lungcad.synth.nodules.draw_kinds` returns it.
    """
    cfg = config.lidc
    if cfg.fraction <= 0 or not kinds:
        return kinds
    index = nodule_index(cfg.split, cfg.database)
    lo, hi = cfg.diameter_range_mm
    pool = index[(index["diameter_mm"] >= lo) & (index["diameter_mm"] <= hi)]
    out = []
    for kind in kinds:
        if kind.excluded or rng.random() >= cfg.fraction:
            out.append(kind)
            continue
        for _ in range(20):  # a nodule whose readers share no voxel at the consensus level is drawn again
            row = pool.iloc[int(rng.integers(len(pool)))]
            shape = nodule_shape(row, cfg.consensus, cfg.database)
            if shape is not None:
                out.append(_draw_one(rng, config, row, shape, kind.location))
                break
    return sorted(out, key=lambda k: -k.diameter_mm)
