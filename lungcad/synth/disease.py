"""Lung disease backgrounds: emphysema, fibrosis, ground glass, atelectasis, consolidation, pleural effusion.

:func:`draw_disease` draws one patient's disease from the ``disease`` random stream, in the patient frame of
:mod:`lungcad.synth.geometry` (mm; x patient left, y posterior = dependent in a supine patient, z superior),
so the matrix size changes the pixels, not the disease. :meth:`Disease.render` draws it into the noiseless
float32 volume right after :func:`lungcad.synth.slices.render_anatomy`, before the vessels, airways and nodules:

1. emphysema: centrilobular low-attenuation spots (< -950 HU, a few mm; density ~ height ** ``upper_power``,
   so upper-lobe predominant), a share of them paraseptal (subpleural), and thin-walled subpleural bullae;
2. fibrosis: a reticular network (the zero set of a smooth random field, drawn as lines of constant width)
   with an optional haze, weighted to the basal, subpleural lung; optional honeycombing (clusters of
   thick-walled air cysts at the bases);
3. ground glass: patches of overlapping soft-edged blobs raised to -750..-450 HU; the vessels drawn later
   only brighten, so they stay visible inside;
4. atelectasis: dense dependent bands along the posterior base, and thin subsegmental plates;
5. consolidation: soft-tissue regions centred on intrapulmonary airways; the airway lumens drawn later
   darken them again: air bronchograms;
6. pleural effusion: fluid in the dependent (posterior) base, a crescent between the chest wall and the lung,
   with a band of compressed lung next to it. The fluid is not lung: its voxels get label 0, so the
   vessels, airways and nodules drawn later skip it and the lung mask stays right.

Everything except the effusion only changes lung voxels (labels 3 and 4) and keeps them lung. Every pattern
has a per-scan probability (``configs/synth.yaml``: all 0, the phantoms of today bit for bit; no number is
drawn then). Each pattern draws from its own child of the ``disease`` stream, so switching one pattern on or
off leaves the others as they were.

:meth:`Disease.hides` says where a nodule would be hidden (inside an effusion, a consolidation or an
atelectasis), for the nodule placement. Per-voxel maths uses arithmetic and ``sqrt`` only
(:mod:`lungcad.synth.util`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from lungcad.synth.anatomy import LEFT_LUNG, RIGHT_LUNG, Anatomy, Lung, cavity_rho, dome_z, lung_label_at, taper
from lungcad.synth.config import (
    AtelectasisConfig,
    ConsolidationConfig,
    DiseaseConfig,
    EffusionConfig,
    EmphysemaConfig,
    FibrosisConfig,
    GroundGlassConfig,
)
from lungcad.synth.geometry import Geometry
from lungcad.synth.raster import Segments, box_coverage, z_subsamples
from lungcad.synth.texture import Lattice, lattice_slice, make_lattice
from lungcad.synth.util import normalize, random_rotation, random_unit, uniform

#: The patterns, in drawing order of their random streams.
KINDS = ("emphysema", "fibrosis", "ground_glass", "atelectasis", "consolidation", "effusion")
#: Patterns in which a nodule would be hidden (soft tissue or fluid around it).
HIDING = ("effusion", "consolidation", "atelectasis")
Mode = Literal["brighten", "darken", "set"]
Box = tuple[int, int, int, int, int, int]  # k0, k1, j0, j1, i0, i1 (half-open, canonical grid)

#: 14 unit directions (6 faces, 8 corners) for the subpleural test: a point is within ``d`` mm of the pleura
#: when one of the points ``d`` mm away along them is not in its lung.
_DIRS = normalize(
    np.array(
        [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]]
        + [[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)],
        dtype=np.float64,
    )
)
#: Shape constants (not knobs): blob semi-axis jitter, ground-glass blob size / patch radius, plate aspect,
#: atelectasis edge (mm), ground-glass boundary irregularity.
_AXIS_JITTER = (0.7, 1.3)
_GGO_LOBE_SIZE = (0.35, 0.7)
_PLATE_ASPECT = (0.5, 1.0)
_DENSE_EDGE_MM = 1.0
_GGO_LUMPINESS = 0.2


# --------------------------------------------------------------------------- primitives
@dataclass(frozen=True)
class Blob:
    """A lumpy ellipsoid with a soft edge (ground glass, atelectasis, consolidation), patient mm.

    ``u = frame @ (p - centre)`` has ``|u| < 1`` inside the plain ellipsoid (frame rows: unit axes divided by
    the semi-axes); the boundary is modulated by ``1 + harmonics . (u_x, u_y, u_z, u_x u_y, u_y u_z, u_z u_x)``
    of the direction ``u / |u|``.
    """

    kind: str
    centre: np.ndarray  # (3,) xyz mm
    frame: np.ndarray  # (3, 3)
    harmonics: np.ndarray  # (6,)
    thin_mm: float  # smallest semi-axis
    half_extent: np.ndarray  # (3,) xyz mm: half-sizes of an axis-aligned box around the centre that holds the blob
    edge_mm: float
    hu: float

    def rho(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Modulated normalised radius (< 1 inside) at points ``x, y, z`` mm (broadcast together)."""
        c, f = self.centre, self.frame.astype(np.float32)
        dx, dy, dz = x - np.float32(c[0]), y - np.float32(c[1]), z - np.float32(c[2])
        u0, u1, u2 = (dx * f[i, 0] + dy * f[i, 1] + dz * f[i, 2] for i in range(3))
        r2 = u0 * u0 + u1 * u1 + u2 * u2
        r = np.sqrt(r2)
        if not self.harmonics.any():
            return r
        h = self.harmonics.astype(np.float32)
        lin = h[0] * u0 + h[1] * u1 + h[2] * u2
        quad = h[3] * u0 * u1 + h[4] * u1 * u2 + h[5] * u2 * u0
        # r / (1 + lin / r + quad / r^2), the modulation taken at the direction u / r
        return r * r2 / np.maximum(r2 + r * lin + quad, np.float32(1e-12))

    def alpha(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, pixel_mm: float) -> np.ndarray:
        """Coverage in [0, 1] (soft edge of width ``max(edge_mm, pixel_mm)``)."""
        w = max(self.edge_mm, pixel_mm)
        return np.clip(0.5 + (1.0 - self.rho(x, y, z)) * np.float32(self.thin_mm / w), 0.0, 1.0)

    def inside(self, points: np.ndarray, margin_mm: float = 0.0) -> np.ndarray:
        """bool ``(N,)``: points ``(N, 3)`` mm inside the blob grown by about ``margin_mm``."""
        p = np.asarray(points, dtype=np.float32)
        return self.rho(p[:, 0], p[:, 1], p[:, 2]) < 1.0 + margin_mm / self.thin_mm


@dataclass(frozen=True)
class Balls:
    """Spheres: air spaces (spots, bullae, cysts) with an optional wall, patient mm.

    A ball darkens the lung inside ``radius - wall`` to ``hu``; then its wall (a shell of thickness ``wall``
    ending at ``radius``) is raised to ``wall_hu``. All lumens of a group are drawn before its walls, so
    touching cysts share walls.
    """

    centres: np.ndarray  # (N, 3)
    radii: np.ndarray  # (N,)
    hu: np.ndarray  # (N,)
    wall: np.ndarray  # (N,) 0 for no wall
    wall_hu: np.ndarray  # (N,)

    def __len__(self) -> int:
        return len(self.radii)

    @staticmethod
    def empty() -> Balls:
        """No balls."""
        z = np.zeros(0)
        return Balls(np.zeros((0, 3)), z, z, z, z)


@dataclass(frozen=True)
class Reticulation:
    """Fibrosis: lines on the zero sets of two random fields inside the basal subpleural region of each lung.

    The union of two independent zero sets crosses itself, so the lines form a network of irregular cells.
    """

    lattices: tuple[Lattice, Lattice]
    line_mm: float
    line_hu: float
    haze_hu: float
    top_z: tuple[float, float]  # per lung (right, left): upper end of the region, mm
    depth_mm: float

    def weight(self, an: Anatomy, lung: Lung, top: float, x: np.ndarray, y: np.ndarray, z: float) -> np.ndarray:
        """Region weight in [0, 1] on an axial plane: basal (below ``top``) and subpleural (``depth_mm``)."""
        ramp_z = max(0.25 * (top - lung.recess_z), 1.0)
        wz = min(max((top - z) / ramp_z, 0.0), 1.0)
        depth = np.minimum(_wall_depth(an, x, y, z), z - dome_z(lung, x, y))
        d = self.depth_mm
        return (np.clip((d - depth) / (0.3 * d), 0.0, 1.0) * wz).astype(np.float32)


@dataclass(frozen=True)
class Effusion:
    """Pleural fluid on one side: a posterior basal crescent, patient mm.

    The fluid lies where the depth below the chest wall (along the ray from the cavity centre) is less than
    ``thickness * sqrt(1 - (z - recess) / height) * profile``, with ``profile`` rising linearly from 0 where
    the sine of the angle towards posterior is ``reach`` to 1 straight posterior: a crescent, deepest at the
    back of the base.
    """

    sign: float  # -1 right, +1 left
    label: int
    recess_z: float
    thickness_mm: float
    height_mm: float
    hu: float
    reach: float
    compression_mm: float
    compression_hu: float

    def gap(self, an: Anatomy, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(gap, local)``: mm by which a point lies inside the fluid (< 0 outside), and the fluid's depth there."""
        zf = np.clip(1.0 - (z - self.recess_z) / self.height_mm, 0.0, 1.0)
        dy = y - np.float32(an.cavity_cy)
        r = np.sqrt(x * x + dy * dy)
        v = dy / np.maximum(r, np.float32(1e-6))
        profile = np.clip((v - np.float32(self.reach)) / np.float32(1.0 - self.reach), 0.0, 1.0)
        local = np.float32(self.thickness_mm) * np.sqrt(zf).astype(np.float32) * profile
        outside = (self.sign * x <= 0) | (z < self.recess_z - 1.0)
        return np.where(outside, np.float32(-1e6), local - _wall_depth(an, x, y, z)), local

    def inside(self, an: Anatomy, points: np.ndarray, margin_mm: float = 0.0) -> np.ndarray:
        """bool ``(N,)``: points ``(N, 3)`` mm in the fluid (grown by ``margin_mm``)."""
        p = np.asarray(points, dtype=np.float32)
        g, _ = self.gap(an, p[:, 0], p[:, 1], p[:, 2])
        return (g + margin_mm > 0) & (cavity_rho(an, p[:, 0], p[:, 1], p[:, 2]) < 1.0)


def _wall_depth(an: Anatomy, x: np.ndarray, y: np.ndarray, z: np.ndarray | float) -> np.ndarray:
    """Depth (mm) inside the thoracic cavity along the ray from its axis (< 0 outside), float32."""
    rho = cavity_rho(an, x, y, z).astype(np.float32)
    dy = y - np.float32(an.cavity_cy)
    r = np.sqrt(x * x + dy * dy).astype(np.float32)
    return r * (np.float32(1.0) / np.maximum(rho, np.float32(1e-6)) - np.float32(1.0))


# --------------------------------------------------------------------------- the disease of one patient
@dataclass(frozen=True)
class Disease:
    """One patient's lung disease (patient mm); empty when every pattern is off.

    Attributes:
        anatomy: the patient the disease was drawn for.
        present: the patterns drawn for this scan (names of :data:`KINDS`).
        spots: emphysema spots; bullae: emphysema bullae; cysts: honeycomb cysts.
        reticulation: fibrosis network (or None).
        blobs: ground-glass, atelectasis and consolidation regions.
        effusions: pleural effusions (one per side at most).
    """

    anatomy: Anatomy = field(repr=False)
    present: tuple[str, ...] = ()
    spots: Balls = field(default_factory=Balls.empty, repr=False)
    bullae: Balls = field(default_factory=Balls.empty, repr=False)
    cysts: Balls = field(default_factory=Balls.empty, repr=False)
    reticulation: Reticulation | None = field(default=None, repr=False)
    blobs: tuple[Blob, ...] = field(default=(), repr=False)
    effusions: tuple[Effusion, ...] = field(default=(), repr=False)

    def inside(self, points_xyz: np.ndarray, kinds: tuple[str, ...] = HIDING, margin_mm: float = 0.0) -> np.ndarray:
        """bool ``(N,)``: points ``(N, 3)`` patient mm inside a region of the given ``kinds``.

        Only region patterns answer: ``effusion``, ``consolidation``, ``atelectasis``, ``ground_glass``.
        ``margin_mm`` grows the regions (e.g. by a nodule's radius).
        """
        p = np.asarray(points_xyz, dtype=np.float64).reshape(-1, 3)
        out = np.zeros(len(p), dtype=bool)
        if not len(p):
            return out
        for blob in self.blobs:
            if blob.kind in kinds:
                out |= blob.inside(p, margin_mm)
        if "effusion" in kinds:
            for eff in self.effusions:
                out |= eff.inside(self.anatomy, p, margin_mm)
        return out

    def hides(self, points_xyz: np.ndarray, margin_mm: float = 0.0) -> np.ndarray:
        """bool ``(N,)``: True where a nodule centred at ``points_xyz`` (``(N, 3)`` patient mm) would be hidden or
        impossible: inside an effusion, a consolidation or an atelectasis (grown by ``margin_mm``)."""
        return self.inside(points_xyz, HIDING, margin_mm)

    def render(self, vol: np.ndarray, labels: np.ndarray, geom: Geometry) -> None:
        """Draw the disease into ``vol`` (float32 ``(Z, Y, X)`` HU) and ``labels`` (uint8, same shape), in place.

        Effusions first (their voxels become label 0), then emphysema, fibrosis, ground glass, atelectasis and
        consolidation, each only in lung voxels (labels 3 and 4). Does nothing when no pattern is present.
        """
        if not self.present:
            return
        grid = _Grid(vol, labels, geom)
        for eff in self.effusions:
            _render_effusion(grid, self.anatomy, eff)
        _render_balls(grid, self.spots)
        _render_balls(grid, self.bullae)
        if self.reticulation is not None:
            _render_reticulation(grid, self.anatomy, self.reticulation)
        _render_balls(grid, self.cysts)
        for kind in ("ground_glass", "atelectasis", "consolidation"):
            for blob in self.blobs:
                if blob.kind == kind:
                    _render_blob(grid, blob)


# --------------------------------------------------------------------------- rendering
class _Grid:
    """The volume being drawn, its labels and the patient coordinates of its samples (``nsub`` per slice)."""

    def __init__(self, vol: np.ndarray, labels: np.ndarray, geom: Geometry) -> None:
        self.vol, self.labels, self.geom = vol, labels, geom
        self.nsub = z_subsamples(geom)
        self.xs = geom.x_coords().astype(np.float32)
        self.ys = geom.y_coords().astype(np.float32)
        offsets = (np.arange(self.nsub) + 0.5) / self.nsub - 0.5
        self.zs = ((np.arange(geom.nz)[:, None] + offsets[None, :]) * geom.sz).ravel().astype(np.float32)

    def boxes(self, lo_xyz: np.ndarray, hi_xyz: np.ndarray) -> list[Box | None]:
        """Voxel boxes covering the patient boxes ``lo``..``hi`` ``(N, 3)`` mm; None for one missing the volume."""
        vlo = self.geom.to_voxel(np.asarray(lo_xyz, dtype=np.float64).reshape(-1, 3))
        vhi = self.geom.to_voxel(np.asarray(hi_xyz, dtype=np.float64).reshape(-1, 3))
        lo = np.maximum(np.ceil(vlo - 0.5).astype(int), 0)
        hi = np.minimum(np.floor(vhi + 0.5).astype(int) + 1, np.array(self.geom.shape))
        rows = np.stack([lo[:, 0], hi[:, 0], lo[:, 1], hi[:, 1], lo[:, 2], hi[:, 2]], axis=1).tolist()
        return [tuple(b) if ok else None for b, ok in zip(rows, np.all(hi > lo, axis=1), strict=True)]

    def box(self, lo_xyz: np.ndarray, hi_xyz: np.ndarray) -> Box | None:
        """Voxel box covering the patient box ``lo``..``hi`` (mm), or None when it misses the volume."""
        return self.boxes(lo_xyz, hi_xyz)[0]

    def coords(self, box: Box, sub: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Patient ``x (1, 1, nx)``, ``y (1, ny, 1)``, ``z (nz * nsub, 1, 1)`` mm (``sub=False``: slice centres)."""
        k0, k1, j0, j1, i0, i1 = box
        centres = (np.arange(k0, k1) * self.geom.sz).astype(np.float32)
        z = self.zs[k0 * self.nsub : k1 * self.nsub] if sub else centres
        return self.xs[None, None, i0:i1], self.ys[None, j0:j1, None], z[:, None, None]

    def lung(self, box: Box) -> np.ndarray:
        """bool lung mask (labels 3, 4) of ``box``."""
        k0, k1, j0, j1, i0, i1 = box
        lab = self.labels[k0:k1, j0:j1, i0:i1]
        return (lab == LEFT_LUNG) | (lab == RIGHT_LUNG)

    def composite(self, box: Box, alpha: np.ndarray, hu: float, mode: Mode, sub: bool = True) -> None:
        """Blend ``hu`` into the lung voxels of ``box`` with coverage ``alpha`` (``nsub`` samples per slice if
        ``sub``): ``brighten`` only raises, ``darken`` only lowers, ``set`` moves towards ``hu``."""
        k0, k1, j0, j1, i0, i1 = box
        lung = self.lung(box)
        if not lung.any():
            return
        if sub and self.nsub > 1:
            alpha = alpha.reshape(k1 - k0, self.nsub, j1 - j0, i1 - i0).mean(axis=1)
        v = self.vol[k0:k1, j0:j1, i0:i1]
        diff = np.float32(hu) - v
        if mode == "brighten":
            diff = np.maximum(diff, 0)
        elif mode == "darken":
            diff = np.minimum(diff, 0)
        v += np.where(lung, alpha * diff, np.float32(0))


def _render_balls(grid: _Grid, balls: Balls) -> None:
    """All lumens of ``balls``, then all walls."""
    h = grid.geom.h
    pad = (balls.radii + h)[:, None]
    boxes = grid.boxes(balls.centres - pad, balls.centres + pad)
    for walls in (False, True):
        for n, box in enumerate(boxes):
            c, r, wall = balls.centres[n], float(balls.radii[n]), float(balls.wall[n])
            if box is None or (walls and wall <= 0):
                continue
            x, y, z = grid.coords(box)
            dx, dy, dz = x - np.float32(c[0]), y - np.float32(c[1]), z - np.float32(c[2])
            d = np.sqrt(dx * dx + dy * dy + dz * dz)
            if walls:
                alpha = box_coverage(np.abs(d - np.float32(r - 0.5 * wall)), 0.5 * wall, h)
                grid.composite(box, alpha, float(balls.wall_hu[n]), "brighten")
            else:
                alpha = box_coverage(d, max(r - wall, 0.5 * h), h)
                grid.composite(box, alpha, float(balls.hu[n]), "darken")


def _render_blob(grid: _Grid, blob: Blob) -> None:
    """One soft-edged region, brightened into the lung slice by slice.

    With ``a_i(x, y)`` the in-plane part of ``u_i = frame_i . (p - centre)``, ``|u|^2`` and the harmonics are
    quadratics in the slice offset ``dz`` with in-plane coefficients, so each slice costs a few 2-D operations.
    Blobs thinner than two slice thicknesses are sampled ``nsub`` times through each slice.
    """
    pad = blob.half_extent + blob.edge_mm + grid.geom.h
    box = grid.box(blob.centre - pad, blob.centre + pad)
    if box is None:
        return
    k0, k1, j0, j1, i0, i1 = box
    c, f = blob.centre, blob.frame
    x = (grid.xs[i0:i1] - np.float32(c[0]))[None, :]
    y = (grid.ys[j0:j1] - np.float32(c[1]))[:, None]
    a = [np.float32(f[i, 0]) * x + np.float32(f[i, 1]) * y for i in range(3)]  # (ny, nx) each
    g = f[:, 2]
    quad_a = a[0] * a[0] + a[1] * a[1] + a[2] * a[2]
    quad_b = np.float32(2 * g[0]) * a[0] + np.float32(2 * g[1]) * a[1] + np.float32(2 * g[2]) * a[2]
    quad_c = float(g @ g)
    h = blob.harmonics
    lumpy = bool(h.any())
    if lumpy:
        lin_a = np.float32(h[0]) * a[0] + np.float32(h[1]) * a[1] + np.float32(h[2]) * a[2]
        lin_b = float(h[:3] @ g)
        pairs = ((0, 1, h[3]), (1, 2, h[4]), (2, 0, h[5]))
        cross_a = sum(np.float32(w) * a[i] * a[j] for i, j, w in pairs)
        cross_b = sum(np.float32(w * g[j]) * a[i] + np.float32(w * g[i]) * a[j] for i, j, w in pairs)
        cross_c = float(sum(w * g[i] * g[j] for i, j, w in pairs))
    n = grid.nsub if blob.thin_mm < 2.0 * grid.geom.thickness else 1
    offsets = ((np.arange(n) + 0.5) / n - 0.5) * grid.geom.sz if n > 1 else np.zeros(1)
    ratio = blob.thin_mm / max(blob.edge_mm, grid.geom.h)
    scale = np.float32(ratio)
    hu = np.float32(blob.hu)
    reach = (1.0 + float(np.abs(h).sum())) * (1.0 + 0.5 / ratio)  # alpha > 0 needs |u| < reach
    xs, ys = grid.xs[i0:i1], grid.ys[j0:j1]
    for k in range(k0, k1):
        dzs = [float(k * grid.geom.sz + off - c[2]) for off in offsets]
        win = _blob_window(blob, reach, dzs, xs, ys, grid.geom.h)
        if win is None:
            continue
        r0, r1, q0, q1 = win
        lab = grid.labels[k, j0 + r0 : j0 + r1, i0 + q0 : i0 + q1]
        lung = (lab == LEFT_LUNG) | (lab == RIGHT_LUNG)
        if not lung.any():
            continue
        w = np.s_[r0:r1, q0:q1]
        alpha = np.zeros(lung.shape, dtype=np.float32)
        for dz in dzs:
            r2 = quad_a[w] + quad_b[w] * np.float32(dz) + np.float32(quad_c * dz * dz)
            rho = np.sqrt(r2)
            if lumpy:
                lin = lin_a[w] + np.float32(lin_b * dz)
                cross = cross_a[w] + cross_b[w] * np.float32(dz) + np.float32(cross_c * dz * dz)
                rho = rho * r2 / np.maximum(r2 + rho * lin + cross, np.float32(1e-12))
            alpha += np.clip(0.5 + (1.0 - rho) * scale, 0.0, 1.0)
        if n > 1:
            alpha *= np.float32(1.0 / n)
        v = grid.vol[k, j0 + r0 : j0 + r1, i0 + q0 : i0 + q1]
        v += np.where(lung, alpha * np.maximum(hu - v, 0), np.float32(0))


def _blob_window(
    blob: Blob, reach: float, dzs: list[float], xs: np.ndarray, ys: np.ndarray, pad_mm: float
) -> tuple[int, int, int, int] | None:
    """Rows/columns (of ``ys``/``xs``, ascending mm) where the blob's section at the offsets ``dzs`` (mm from its
    centre) can have ``|u| < reach``: ``(row0, row1, col0, col1)``, or None where the section is empty.

    The section of the quadric ``d^T M d <= reach^2`` (``M = frame^T frame``) at a fixed ``dz`` is an ellipse
    around ``-dz M2^-1 m`` (``M2`` its in-plane block, ``m`` its in-plane column).
    """
    mat = blob.frame.T @ blob.frame
    inv = np.linalg.inv(mat[:2, :2])
    shift = inv @ mat[:2, 2]
    lo, hi = np.full(2, np.inf), np.full(2, -np.inf)
    for dz in dzs:
        room = reach * reach - dz * dz * (mat[2, 2] - mat[:2, 2] @ shift)
        if room <= 0:
            continue
        centre = np.asarray(blob.centre[:2]) - dz * shift
        half = np.sqrt(room * np.diag(inv)) + pad_mm
        lo, hi = np.minimum(lo, centre - half), np.maximum(hi, centre + half)
    if not np.isfinite(lo[0]):
        return None
    q0, q1 = np.searchsorted(xs, [lo[0], hi[0]])
    r0, r1 = np.searchsorted(ys, [lo[1], hi[1]])
    if q1 <= q0 or r1 <= r0:
        return None
    return int(r0), int(r1), int(q0), int(q1)


def _lung_box(grid: _Grid, an: Anatomy, sign: float, z0: float, z1: float, y0: float | None = None) -> Box | None:
    """Box of one side of the thoracic cavity between heights ``z0`` and ``z1`` (mm), from ``y0`` backwards."""
    x_in, x_out = an.mediastinum, an.cavity_ax
    xs = sorted((sign * x_in, sign * x_out))
    lo = np.array([xs[0], an.cavity_cy - an.cavity_ay if y0 is None else y0, z0])
    hi = np.array([xs[1], an.cavity_cy + an.cavity_ay, z1])
    return grid.box(lo, hi)


def _render_effusion(grid: _Grid, an: Anatomy, eff: Effusion) -> None:
    """Fluid (label 0) and the compressed lung next to it, at slice centres."""
    y0 = an.cavity_cy + min(eff.reach, 0.0) * an.cavity_ay - 2.0
    box = _lung_box(grid, an, eff.sign, eff.recess_z - 2.0, eff.recess_z + eff.height_mm + 2.0, y0)
    if box is None:
        return
    k0, k1, j0, j1, i0, i1 = box
    lab = grid.labels[k0:k1, j0:j1, i0:i1]
    side = lab == eff.label
    if not side.any():
        return
    x, y, z = grid.coords(box, sub=False)
    gap, local = eff.gap(an, x, y, z)
    h = grid.geom.h
    v = grid.vol[k0:k1, j0:j1, i0:i1]
    fluid = np.clip(0.5 + gap / np.float32(h), 0.0, 1.0)
    if eff.compression_mm > 0:
        c = np.float32(eff.compression_mm)
        squeeze = np.clip(1.0 + gap / c, 0.0, 1.0) * np.clip(local / c, 0.0, 1.0) * (gap < 0)
        v += np.where(side, squeeze * np.maximum(np.float32(eff.compression_hu) - v, 0), np.float32(0))
    v += np.where(side, fluid * (np.float32(eff.hu) - v), np.float32(0))
    lab[side & (fluid >= 0.5)] = 0


def _render_reticulation(grid: _Grid, an: Anatomy, ret: Reticulation) -> None:
    """Haze and lines of constant width ``line_mm`` on the zero sets of the fields, slice by slice."""
    h = grid.geom.h
    half = 0.5 * ret.line_mm
    for lung, top in zip(an.lungs, ret.top_z, strict=True):
        box = _lung_box(grid, an, lung.sign, lung.recess_z - 1.0, top)
        if box is None:
            continue
        k0, k1, j0, j1, i0, i1 = box
        x, y, _ = grid.coords(box, sub=False)
        xs, ys = x[0, 0], y[0, :, 0]
        for k in range(k0, k1):
            lab = grid.labels[k, j0:j1, i0:i1]
            mine = lab == lung.label
            if not mine.any():
                continue
            z = float(k * grid.geom.sz)
            w = ret.weight(an, lung, top, xs[None, :], ys[:, None], z)
            w = np.where(mine, w, np.float32(0))
            if not w.any():
                continue
            f1, f2 = (lattice_slice(lat, xs, ys, z) for lat in ret.lattices)
            f = f1 * f2  # zero on either zero set; |f| / |grad f| ~ distance to the nearer one
            gy, gx = np.gradient(f, h)
            dist = np.abs(f) / np.maximum(np.sqrt(gx * gx + gy * gy), np.float32(1e-6))
            line = box_coverage(dist, half, h)
            v = grid.vol[k, j0:j1, i0:i1]
            v += w * np.float32(ret.haze_hu)
            v += w * line * np.maximum(np.float32(ret.line_hu) - v, 0)


# --------------------------------------------------------------------------- drawing
def _heights(an: Anatomy, p: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Height fraction (0 lowest point of the lung, 1 apex) of points ``(N, 3)`` in lungs ``label (N,)``."""
    out = np.zeros(len(p))
    for lung in an.lungs:
        m = label == lung.label
        out[m] = (p[m, 2] - lung.recess_z) / max(lung.apex_z - lung.recess_z, 1.0)
    return out


def _near_pleura(an: Anatomy, p: np.ndarray, label: np.ndarray, depth_mm: float) -> np.ndarray:
    """bool ``(N,)``: points within about ``depth_mm`` of their lung's border."""
    q = (p[:, None, :] + depth_mm * _DIRS[None, :, :]).reshape(-1, 3)
    lab = lung_label_at(an, q[:, 0], q[:, 1], q[:, 2]).reshape(len(p), len(_DIRS))
    return np.any(lab != label[:, None], axis=1)


def lung_points(
    rng: np.random.Generator,
    an: Anatomy,
    n: int,
    *,
    height: tuple[float, float] = (0.0, 1.0),
    power: float = 0.0,
    pleura_mm: float | None = None,
    posterior: bool = False,
    max_rounds: int = 40,
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n`` random points in the lungs: ``(points (m, 3) mm, labels (m,))``.

    Args:
        height: range of the height fraction (0 lowest point of the lung, 1 apex).
        power: density ~ height ** power (0 uniform).
        pleura_mm: only points within this distance of the pleura (None: anywhere).
        posterior: only points behind the cavity centre (y > cavity centre).
    """
    lo = np.array([-an.cavity_ax, an.cavity_cy - an.cavity_ay, min(lg.recess_z for lg in an.lungs)])
    hi = np.array([an.cavity_ax, an.cavity_cy + an.cavity_ay, max(lg.apex_z for lg in an.lungs)])
    pts, labs = [], []
    got = 0
    for _ in range(max_rounds):
        if got >= n:
            break
        p = lo + (hi - lo) * rng.random((max(4 * (n - got), 64), 3))
        lab = lung_label_at(an, p[:, 0], p[:, 1], p[:, 2])
        t = _heights(an, p, lab)
        ok = (lab > 0) & (t >= height[0]) & (t <= height[1])
        if power > 0:
            ok &= rng.random(len(p)) < np.power(np.clip(t, 0.0, 1.0), power)
        if posterior:
            ok &= p[:, 1] > an.cavity_cy
        p, lab = p[ok], lab[ok]
        if pleura_mm is not None and len(p):
            near = _near_pleura(an, p, lab, pleura_mm)
            p, lab = p[near], lab[near]
        pts.append(p[: n - got])
        labs.append(lab[: n - got])
        got += len(pts[-1])
    if not pts:
        return np.zeros((0, 3)), np.zeros(0, dtype=np.uint8)
    return np.concatenate(pts), np.concatenate(labs)


def _count(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    """An integer uniform in ``[bounds[0], bounds[1]]`` (inclusive)."""
    return int(rng.integers(bounds[0], bounds[1] + 1))


def _per(rng: np.random.Generator, bounds: tuple[float, float], n: int) -> np.ndarray:
    """``n`` draws uniform in ``bounds``."""
    return rng.uniform(bounds[0], bounds[1], n)


def _harmonics(rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """Six boundary harmonics whose absolute values sum to ``amplitude``."""
    h = rng.uniform(-1.0, 1.0, 6)
    return h * (amplitude / max(float(np.abs(h).sum()), 1e-9))


def _blob(
    kind: str, centre: np.ndarray, axes: np.ndarray, semi: np.ndarray, harmonics: np.ndarray, edge: float, hu: float
) -> Blob:
    """A :class:`Blob` with unit axes ``axes`` (rows, ``(3, 3)``) and semi-axes ``semi`` (mm)."""
    frame = axes / semi[:, None]
    half = np.sqrt(np.sum((semi[:, None] * axes) ** 2, axis=0)) * (1.0 + float(np.abs(harmonics).sum()))
    return Blob(kind, np.asarray(centre, float), frame, harmonics, float(semi.min()), half, float(edge), float(hu))


def _emphysema(rng: np.random.Generator, cfg: EmphysemaConfig, an: Anatomy) -> tuple[Balls, Balls]:
    """Spots (centrilobular and paraseptal) and bullae."""
    n = _count(rng, cfg.spots)
    n_para = int(round(n * uniform(rng, cfg.paraseptal_fraction)))
    power = uniform(rng, cfg.upper_power)
    central, _ = lung_points(rng, an, n - n_para, power=power)
    para, _ = lung_points(rng, an, n_para, power=power, pleura_mm=cfg.paraseptal_depth_mm)
    centres = np.concatenate([central, para])
    m = len(centres)
    spots = Balls(centres, 0.5 * _per(rng, cfg.spot_diameter_mm, m), _per(rng, cfg.hu, m), np.zeros(m), np.zeros(m))
    nb = _count(rng, cfg.bullae)
    bc, _ = lung_points(rng, an, nb, power=power, pleura_mm=cfg.bulla_depth_mm)
    k = len(bc)
    bullae = Balls(
        bc,
        0.5 * _per(rng, cfg.bulla_diameter_mm, k),
        np.full(k, an.hu["air"]),
        _per(rng, cfg.bulla_wall_mm, k),
        _per(rng, cfg.bulla_wall_hu, k),
    )
    return spots, bullae


def _pack_cysts(
    rng: np.random.Generator, an: Anatomy, seed: np.ndarray, label: int, radii: np.ndarray, tries: int = 12
) -> tuple[np.ndarray, np.ndarray]:
    """Cysts of ``radii`` (mm) packed around ``seed`` (xyz mm), each touching an earlier one, none overlapping
    (centres >= 0.9 of the radii sums apart), all inside lung ``label``: ``(centres (m, 3), radii (m,))``."""
    centres, kept = [np.asarray(seed, float)], [float(radii[0])]
    for r in radii[1:]:
        for _ in range(tries):
            j = int(rng.integers(len(kept)))
            c = centres[j] + random_unit(rng, 1)[0] * (kept[j] + r)
            gaps = np.linalg.norm(np.asarray(centres) - c, axis=1) - 0.9 * (np.asarray(kept) + r)
            if gaps.min() >= 0 and lung_label_at(an, c[0], c[1], c[2]) == label:
                centres.append(c)
                kept.append(float(r))
                break
    return np.asarray(centres), np.asarray(kept)


def _fibrosis(rng: np.random.Generator, cfg: FibrosisConfig, an: Anatomy) -> tuple[Reticulation, Balls]:
    """The reticular network's field and region, and honeycomb cysts."""
    frac = uniform(rng, cfg.height_fraction)
    tops = tuple(lg.recess_z + frac * (lg.apex_z - lg.recess_z) for lg in an.lungs)
    cell = uniform(rng, cfg.cell_mm)
    lo = np.array([-an.cavity_ax, an.cavity_cy - an.cavity_ay, min(lg.recess_z for lg in an.lungs)])
    hi = np.array([an.cavity_ax, an.cavity_cy + an.cavity_ay, max(tops)])
    ret = Reticulation(
        lattices=(make_lattice(rng, lo, hi, cell), make_lattice(rng, lo, hi, cell)),
        line_mm=uniform(rng, cfg.line_mm),
        line_hu=uniform(rng, cfg.line_hu),
        haze_hu=uniform(rng, cfg.haze_hu),
        top_z=(float(tops[0]), float(tops[1])),
        depth_mm=uniform(rng, cfg.depth_mm),
    )
    cysts = Balls.empty()
    if rng.random() < cfg.honeycomb_probability:
        k = _count(rng, cfg.honeycomb_clusters)
        depth = 0.5 * ret.depth_mm
        seeds, seed_lab = lung_points(rng, an, k, height=(0.0, 0.6 * frac), pleura_mm=depth)
        parts = []
        for c, lab in zip(seeds, seed_lab, strict=True):
            m = _count(rng, cfg.honeycomb_cysts)
            p, r = _pack_cysts(rng, an, c, int(lab), 0.5 * _per(rng, cfg.cyst_diameter_mm, m))
            n = len(r)
            wall = np.minimum(_per(rng, cfg.cyst_wall_mm, n), 0.6 * r)
            parts.append((p, r, _per(rng, cfg.cyst_hu, n), wall, _per(rng, cfg.cyst_wall_hu, n)))
        if parts:
            cysts = Balls(*(np.concatenate([q[i] for q in parts]) for i in range(5)))
    return ret, cysts


def _ground_glass(rng: np.random.Generator, cfg: GroundGlassConfig, an: Anatomy) -> list[Blob]:
    """Patches of overlapping soft blobs."""
    centres, _ = lung_points(rng, an, _count(rng, cfg.patches), height=cfg.height_fraction)
    out = []
    for c in centres:
        radius = 0.5 * uniform(rng, cfg.patch_diameter_mm)
        edge = uniform(rng, cfg.edge_mm)
        for _ in range(_count(rng, cfg.lobes)):
            offset = random_unit(rng, 1)[0] * 0.5 * radius * rng.random()
            semi = radius * _per(rng, _GGO_LOBE_SIZE, 3)
            hu = uniform(rng, cfg.hu)
            out.append(
                _blob("ground_glass", c + offset, random_rotation(rng), semi, _harmonics(rng, _GGO_LUMPINESS), edge, hu)
            )
    return out


def _frame_from_normal(normal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rows: two unit vectors perpendicular to ``normal`` (random in-plane angle), then ``normal``."""
    n = normalize(normal)
    a = normalize(np.cross(n, random_unit(rng, 1)[0]))
    b = np.cross(n, a)
    return np.stack([a, b, n])


def _atelectasis(rng: np.random.Generator, cfg: AtelectasisConfig, an: Anatomy) -> list[Blob]:
    """Dependent bands centred on the posterior chest wall, and thin plates."""
    out = []
    for _ in range(_count(rng, cfg.count)):
        hu = uniform(rng, cfg.hu)
        if rng.random() < cfg.plate_probability:
            p, _ = lung_points(rng, an, 1, height=cfg.height_fraction)
            if not len(p):
                continue
            normal = np.array([0.0, 0.0, 1.0]) + cfg.plate_tilt * rng.standard_normal(3)
            length = 0.5 * uniform(rng, cfg.plate_length_mm)
            semi = np.array([length, length * uniform(rng, _PLATE_ASPECT), 0.5 * uniform(rng, cfg.plate_thickness_mm)])
            out.append(
                _blob("atelectasis", p[0], _frame_from_normal(normal, rng), semi, np.zeros(6), _DENSE_EDGE_MM, hu)
            )
            continue
        p, _ = lung_points(rng, an, 1, height=cfg.height_fraction, posterior=True, pleura_mm=10.0)
        if not len(p):
            continue
        x, y, z = p[0]
        rho = float(cavity_rho(an, x, y, z))
        wall = np.array([x / rho, an.cavity_cy + (y - an.cavity_cy) / rho, z])  # onto the chest wall
        g = float(taper(an, z))
        normal = normalize(
            np.array([wall[0] / (an.cavity_ax * g) ** 2, (wall[1] - an.cavity_cy) / (an.cavity_ay * g) ** 2, 0.0])
        )
        tangent = np.array([-normal[1], normal[0], 0.0])
        axes = np.stack([tangent, normal, np.array([0.0, 0.0, 1.0])])
        semi = np.array(
            [
                0.5 * uniform(rng, cfg.band_length_mm),
                uniform(rng, cfg.band_thickness_mm),
                0.5 * uniform(rng, cfg.band_length_mm),
            ]
        )
        out.append(_blob("atelectasis", wall, axes, semi, _harmonics(rng, 0.1), _DENSE_EDGE_MM, hu))
    return out


def _consolidation(rng: np.random.Generator, cfg: ConsolidationConfig, an: Anatomy, airways: Segments) -> list[Blob]:
    """Lumpy soft-tissue regions centred on airway segments (air bronchograms) in the height band."""
    out = []
    mid = 0.5 * (airways.a + airways.b) if len(airways) else np.zeros((0, 3))
    lab = lung_label_at(an, mid[:, 0], mid[:, 1], mid[:, 2]) if len(mid) else np.zeros(0, dtype=np.uint8)
    t = _heights(an, mid, lab)
    pool = np.nonzero((lab > 0) & (t >= cfg.height_fraction[0]) & (t <= cfg.height_fraction[1]))[0]
    for _ in range(_count(rng, cfg.count)):
        if len(pool):
            s = int(pool[rng.integers(len(pool))])
            c = airways.a[s] + rng.random() * (airways.b[s] - airways.a[s])
        else:
            p, _ = lung_points(rng, an, 1, height=cfg.height_fraction)
            if not len(p):
                continue
            c = p[0]
        semi = 0.5 * uniform(rng, cfg.diameter_mm) * _per(rng, _AXIS_JITTER, 3)
        harm = _harmonics(rng, uniform(rng, cfg.lumpiness))
        out.append(
            _blob("consolidation", c, random_rotation(rng), semi, harm, uniform(rng, cfg.edge_mm), uniform(rng, cfg.hu))
        )
    return out


def _effusions(rng: np.random.Generator, cfg: EffusionConfig, an: Anatomy) -> list[Effusion]:
    """One or both sides."""
    both = rng.random() < cfg.bilateral_probability
    lungs = an.lungs if both else (an.lungs[int(rng.integers(2))],)
    return [
        Effusion(
            sign=lung.sign,
            label=lung.label,
            recess_z=lung.recess_z,
            thickness_mm=uniform(rng, cfg.thickness_mm),
            height_mm=uniform(rng, cfg.height_mm),
            hu=uniform(rng, cfg.hu),
            reach=uniform(rng, cfg.anterior_reach),
            compression_mm=uniform(rng, cfg.compression_mm),
            compression_hu=uniform(rng, cfg.compression_hu),
        )
        for lung in lungs
    ]


def draw_disease(rng: np.random.Generator, cfg: DiseaseConfig, an: Anatomy, airways: Segments) -> Disease:
    """One patient's disease (patient mm) from the ``disease`` stream; no draw at all when every pattern is off.

    Each pattern gets its own child generator (spawned in :data:`KINDS` order), draws its presence with its
    ``probability`` and, when present, its extent, HU and location.
    """
    probs = {kind: getattr(cfg, kind).probability for kind in KINDS}
    if all(p <= 0 for p in probs.values()):
        return Disease(an)
    child = dict(zip(KINDS, rng.spawn(len(KINDS)), strict=True))
    present = tuple(k for k in KINDS if probs[k] > 0 and child[k].random() < probs[k])
    spots = bullae = cysts = Balls.empty()
    reticulation = None
    blobs: list[Blob] = []
    effusions: list[Effusion] = []
    if "emphysema" in present:
        spots, bullae = _emphysema(child["emphysema"], cfg.emphysema, an)
    if "fibrosis" in present:
        reticulation, cysts = _fibrosis(child["fibrosis"], cfg.fibrosis, an)
    if "ground_glass" in present:
        blobs += _ground_glass(child["ground_glass"], cfg.ground_glass, an)
    if "atelectasis" in present:
        blobs += _atelectasis(child["atelectasis"], cfg.atelectasis, an)
    if "consolidation" in present:
        blobs += _consolidation(child["consolidation"], cfg.consolidation, an, airways)
    if "effusion" in present:
        effusions = _effusions(child["effusion"], cfg.effusion, an)
    return Disease(an, present, spots, bullae, cysts, reticulation, tuple(blobs), tuple(effusions))
