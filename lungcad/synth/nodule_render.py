"""Draw placed nodules into the volume, each inside its own bounding box.

Shapes are evaluated analytically as an approximate signed distance ``s`` (mm, > 0 inside) relative to
the nodule centre, turned into a voxel coverage (:func:`lungcad.synth.raster.box_coverage`):

- smooth: a randomly rotated ellipsoid with gentle surface bumps;
- lobulated: the union of a few overlapping balls (one at the centre);
- spiculated: a smooth core plus thin radial spicules whose width and density fade outwards.

- LIDC-IDRI: the readers' consensus shape, its signed distance sampled trilinearly at the sample points
  (:meth:`lungcad.synth.lidc_nodules.LidcNodule.signed_distance`).

The density is the type's HU plus a smooth texture; part-solid nodules get a solid core over the
ground-glass body and some calcified ones a calcified core. Nodules only brighten lung voxels, so
vessels crossing a ground-glass nodule stay visible and nothing is drawn into the chest wall.
"""

from __future__ import annotations

import numpy as np

from lungcad.synth.lidc_nodules import LidcNodule
from lungcad.synth.nodules import NoduleLook, NoduleSpec
from lungcad.synth.raster import Canvas, box_coverage
from lungcad.synth.texture import lattice_points


def _ellipsoid_s(look: NoduleLook, d: tuple[np.ndarray, ...], scale: float = 1.0) -> np.ndarray:
    """Signed distance (mm) to the bumpy ellipsoid scaled by ``scale``; ``d`` = (dx, dy, dz) relative mm."""
    dx, dy, dz = d
    rot = look.rotation
    rho2 = 0.0
    for i in range(3):
        q = rot[0, i] * dx + rot[1, i] * dy + rot[2, i] * dz
        u = q / (look.axes[i] * scale)
        rho2 = rho2 + u * u
    dist = np.sqrt(dx * dx + dy * dy + dz * dz) + 1e-6
    bump = 1.0
    for vx, vy, vz, amp in look.bumps:
        bump = bump + amp * (vx * dx + vy * dy + vz * dz) / dist
    r_mean = float(np.mean(look.axes)) * scale
    return (1.0 - np.sqrt(rho2) / bump) * r_mean


def _blob_alpha(look: NoduleLook, d: tuple[np.ndarray, ...], edge: float) -> np.ndarray:
    """Coverage of the union of the lobulated nodule's balls."""
    dx, dy, dz = d
    out = None
    for bx, by, bz, br in look.blobs:
        ex, ey, ez = dx - np.float32(bx), dy - np.float32(by), dz - np.float32(bz)
        a = box_coverage(np.sqrt(ex * ex + ey * ey + ez * ez), np.float32(br), edge)
        out = a if out is None else np.maximum(out, a)
    return out


def _spike_alpha(look: NoduleLook, d: tuple[np.ndarray, ...], edge: float) -> np.ndarray:
    """Coverage of the spicules: cones from 0.6 r outwards that thin to 30% and fade to 50% at their tips."""
    dx, dy, dz = d
    r = float(np.mean(look.axes))
    dist2 = dx * dx + dy * dy + dz * dz
    out = np.zeros(np.broadcast_shapes(dx.shape, dy.shape, dz.shape), dtype=np.float32)
    for vx, vy, vz, length, width in look.spikes:
        t = np.float32(vx) * dx + np.float32(vy) * dy + np.float32(vz) * dz
        perp = np.sqrt(np.maximum(dist2 - t * t, 0.0))
        along = np.clip((t - 0.6 * r) / (0.4 * r + length), 0.0, 1.0)
        w = width * (1.0 - 0.7 * along)
        fade = (1.0 - 0.5 * along) * ((t > 0.6 * r) & (t < r + length))
        np.maximum(out, box_coverage(perp, w, edge) * fade, out=out)
    return out


def nodule_alpha(look: NoduleLook, shape: str, d: tuple[np.ndarray, ...], edge: float) -> np.ndarray:
    """Coverage in [0, 1] of the nodule body at relative positions ``d`` (mm) for voxels of width ``edge``."""
    if shape == "lobulated":
        return _blob_alpha(look, d, edge)
    r = float(np.mean(look.axes))
    alpha = box_coverage(r - _ellipsoid_s(look, d), r, edge)
    if shape == "spiculated":
        alpha = np.maximum(alpha, _spike_alpha(look, d, edge))
    return alpha


def draw_nodule(canvas: Canvas, spec: NoduleSpec, edge_mm: float) -> None:
    """Composite one nodule into the canvas (brightening lung voxels only)."""
    look = spec.look
    geom = canvas.geom
    c = np.asarray(spec.centre)
    reach = look.extent + 2 * geom.h
    boxes, valid = canvas.boxes(c - reach, c + reach)
    if not valid:
        return
    box = boxes
    x, y, z = canvas.coords(box)
    d = (x - np.float32(c[0]), y - np.float32(c[1]), z - np.float32(c[2]))
    edge = max(edge_mm, geom.h)
    full = np.broadcast_shapes(d[0].shape, d[1].shape, d[2].shape)
    tex = lattice_points(look.lattice, *(np.broadcast_to(v, full) for v in d))
    if isinstance(look, LidcNodule):
        sdf = look.signed_distance(d)
        canvas.composite(box, np.clip(0.5 + sdf / edge, 0.0, 1.0), look.hu + look.texture * tex, "brighten")
        if look.core_depth_mm > 0:
            core = np.clip(0.5 + (sdf - look.core_depth_mm) / edge, 0.0, 1.0)
            canvas.composite(box, core, look.core_hu + 0.5 * look.texture * tex, "brighten")
        return
    alpha = nodule_alpha(look, spec.kind.shape, d, edge)
    canvas.composite(box, alpha, look.hu + look.texture * tex, "brighten")
    if look.core_radius > 0:
        r = float(np.mean(look.axes))
        scale = look.core_radius / r
        s = _ellipsoid_s(look, d, scale=scale)
        core = box_coverage(look.core_radius - s, look.core_radius, edge)
        canvas.composite(box, core, look.core_hu + 0.5 * look.texture * tex, "brighten")


def draw_nodules(canvas: Canvas, specs: list[NoduleSpec], edge_mm: float) -> None:
    """Composite all nodules."""
    for spec in specs:
        draw_nodule(canvas, spec, edge_mm)
