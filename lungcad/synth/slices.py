"""Render the anatomy slice by slice: noiseless HU (float32) and lung labels on the canonical grid.

Each axial slice is evaluated analytically at its centre height; costly parts (tubes, spine, sternum)
only inside their local windows. Vessels, intrapulmonary airways and nodules are added afterwards in
3-D boxes (:mod:`lungcad.synth.raster`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lungcad.synth.anatomy import (
    AIRWAY,
    Anatomy,
    Tube,
    cavity_rho,
    dome_z,
    heart_rho2,
    lung_label_slice,
    taper,
)
from lungcad.synth.geometry import Geometry
from lungcad.synth.texture import lattice_slice
from lungcad.synth.util import segment_distance

Window = tuple[int, int, int, int]  # row0, row1, col0, col1


@dataclass(frozen=True)
class SliceGrid:
    """Patient coordinates of the canonical grid's rows and columns, and the z-constant base slice."""

    xs: np.ndarray  # (X,) mm
    ys: np.ndarray  # (Y,) mm
    base: np.ndarray  # float32 (Y, X): air, body wall layers, table


def _window(grid: SliceGrid, x0: float, x1: float, y0: float, y1: float) -> Window | None:
    """Index window of the rows/columns whose centres lie in ``[x0, x1] x [y0, y1]`` mm (None if empty)."""
    c0, c1 = np.searchsorted(grid.xs, [x0, x1])
    r0, r1 = np.searchsorted(grid.ys, [y0, y1])
    if c1 <= c0 or r1 <= r0:
        return None
    return int(r0), int(r1), int(c0), int(c1)


def _coords(grid: SliceGrid, w: Window) -> tuple[np.ndarray, np.ndarray]:
    """``(x (1, w), y (h, 1))`` patient mm of a window."""
    return grid.xs[None, w[2] : w[3]], grid.ys[w[0] : w[1], None]


def base_slice(an: Anatomy, geom: Geometry) -> SliceGrid:
    """The z-independent part of every slice: body (skin, fat, muscle) and the CT table."""
    xs, ys = geom.x_coords().astype(np.float32), geom.y_coords().astype(np.float32)
    x, y = xs[None, :], ys[:, None]
    hu = an.hu
    u, v = x / an.body_ax, y / an.body_ay
    rho = np.sqrt(u * u + v * v) + 1e-9
    r = np.sqrt(x * x + y * y)
    depth = r * (1.0 / rho - 1.0)  # distance inside the skin along the ray from the body centre
    cos2 = (x * x - y * y) / np.maximum(r * r, 1e-9)
    fat_t = an.fat * (1.0 + 0.35 * cos2)
    base = np.full((len(ys), len(xs)), hu["air"], dtype=np.float32)
    base[rho < 1] = hu["muscle"]
    base[(rho < 1) & (depth < fat_t)] = hu["fat"]
    base[(rho < 1) & (depth < 1.5 * an.scale)] = hu["muscle"] - 10
    if an.table_y is not None:
        plate = an.table_y - x * x / 1200.0  # concave couch top, posterior to the patient
        table = (y > plate) & (y < plate + 6.0) & (np.abs(x) < 0.42 * (xs[-1] - xs[0]))
        base[np.broadcast_to(table, base.shape)] = hu["table"]
    return SliceGrid(xs, ys, base)


def tube_window(grid: SliceGrid, tube: Tube, z: float) -> Window | None:
    """Window of slice ``z`` that tube ``tube`` can touch (None if it misses the slice)."""
    r = tube.radius
    az, bz = tube.a[2], tube.b[2]
    if z < min(az, bz) - r or z > max(az, bz) + r:
        return None
    dz = bz - az
    if abs(dz) < 1e-9:
        t0, t1 = 0.0, 1.0
    else:
        t0, t1 = sorted(((z - r - az) / dz, (z + r - az) / dz))
        t0, t1 = max(t0, 0.0), min(t1, 1.0)
    p0 = tube.a + t0 * (tube.b - tube.a)
    p1 = tube.a + t1 * (tube.b - tube.a)
    return _window(grid, min(p0[0], p1[0]) - r, max(p0[0], p1[0]) + r, min(p0[1], p1[1]) - r, max(p0[1], p1[1]) + r)


def _draw_tube(hu: np.ndarray, label: np.ndarray, grid: SliceGrid, tube: Tube, z: float, air: float) -> None:
    """Draw ``tube`` into slice ``z`` (in place): wall HU, then the air lumen with its label."""
    w = tube_window(grid, tube, z)
    if w is None:
        return
    x, y = _coords(grid, w)
    d, _ = segment_distance(x, y, z, tube.a, tube.b)
    sub_hu, sub_lab = hu[w[0] : w[1], w[2] : w[3]], label[w[0] : w[1], w[2] : w[3]]
    sub_hu[d < tube.radius] = tube.hu
    if tube.lumen > 0:
        lumen = d < tube.lumen
        sub_hu[lumen] = air
        if tube.label:
            sub_lab[lumen] = tube.label


def _carve_tubes(label: np.ndarray, grid: SliceGrid, an: Anatomy, z: float) -> None:
    """Remove lung labels around the mediastinal vessels (in place)."""
    for tube in an.tubes:
        if tube.carve <= 0:
            continue
        wide = Tube(tube.a, tube.b, tube.radius + tube.carve, tube.hu)
        w = tube_window(grid, wide, z)
        if w is None:
            continue
        x, y = _coords(grid, w)
        d, _ = segment_distance(x, y, z, tube.a, tube.b)
        label[w[0] : w[1], w[2] : w[3]][d < wide.radius] = 0


def _spine(hu: np.ndarray, grid: SliceGrid, an: Anatomy, z: float) -> None:
    """Vertebral body (cortex, marrow, discs), canal and posterior elements (in place)."""
    s, vr, h = an.scale, an.vertebra_r, an.hu
    canal_y = an.spine_y + vr + an.canal_r + 1.0 * s
    w = _window(grid, -vr - 24 * s, vr + 24 * s, an.spine_y - vr - 1, canal_y + an.canal_r + 24 * s)
    if w is None:
        return
    x, y = _coords(grid, w)
    sub = hu[w[0] : w[1], w[2] : w[3]]
    phase = ((z - an.vertebra_phase) / an.vertebra_pitch) % 1.0
    dy = y - an.spine_y
    d = np.sqrt(x * x + dy * dy)
    if phase < 0.16:
        sub[d < vr] = h["muscle"] + 35  # intervertebral disc
    else:
        sub[d < vr] = h["bone_cortex"]
        sub[d < vr - 2.2 * s] = h["bone_marrow"]
    if 0.25 < phase < 0.85:
        cy = y - canal_y
        dc = np.sqrt(x * x + cy * cy)
        arch = (dc < an.canal_r + 4.5 * s) & (cy > -0.3 * an.canal_r)
        spinous = (np.abs(x) < 3.0 * s) & (cy > 0) & (cy < an.canal_r + 22 * s)
        transverse = (np.abs(cy) < 4.0 * s) & (np.abs(x) < an.canal_r + 20 * s)
        sub[np.broadcast_to(arch | spinous | transverse, sub.shape)] = 0.5 * (h["bone_cortex"] + h["bone_marrow"])
    cy = y - canal_y
    sub[np.broadcast_to(x * x + cy * cy < an.canal_r**2, sub.shape)] = h["csf"]


def _sternum(hu: np.ndarray, grid: SliceGrid, an: Anatomy, z: float) -> None:
    """Sternum: a flat oval in the anterior chest wall (in place)."""
    y0, sx, sy, zlo, zhi = an.sternum
    if not zlo <= z <= zhi:
        return
    w = _window(grid, -sx, sx, y0 - sy, y0 + sy)
    if w is None:
        return
    x, y = _coords(grid, w)
    u, v = x / sx, (y - y0) / sy
    q = u * u + v * v
    sub = hu[w[0] : w[1], w[2] : w[3]]
    sub[q < 1] = an.hu["bone_cortex"]
    sub[q < 0.45] = an.hu["bone_marrow"]


def _rib_ends(n: int) -> tuple[float, float]:
    """Anterior ends of rib ``n`` (0-based) as ``u`` (0 posterior .. 1 anterior): bone end, cartilage end."""
    if n < 7:
        return 0.8, 1.0
    if n < 10:
        bone = 0.8 - 0.05 * (n - 6)
        return bone, bone + 0.12
    return 0.55, 0.55


def _ribs(sub: np.ndarray, x: np.ndarray, y: np.ndarray, rho: np.ndarray, an: Anatomy, z: float) -> None:
    """Ribs and costal cartilage in the layer just outside the cavity (``sub``: window view, in place)."""
    z1, pitch, slope, width, thick, count = an.ribs
    dy = y - an.cavity_cy
    r = np.sqrt(x * x + dy * dy)
    d_out = r * (1.0 - 1.0 / np.maximum(rho, 1e-9))
    band = (rho >= 1.0) & (d_out < an.rib_layer) & (np.abs(x) > an.vertebra_r + 8 * an.scale)
    if not band.any():
        return
    yb = np.broadcast_to(dy, band.shape)[band]
    rb, db = np.broadcast_to(r, band.shape)[band], d_out[band]
    u = 0.5 * (1.0 - yb / np.maximum(rb, 1e-9))
    n = np.rint((z1 - slope * u - z) / pitch)
    dz = z - (z1 - n * pitch - slope * u)
    q = (dz / (0.5 * width)) ** 2 + ((db - 0.5 * an.rib_layer) / (0.5 * thick)) ** 2
    ends = np.array([_rib_ends(k) for k in range(count)])
    valid = (n >= 0) & (n < count) & (q < 1.0)
    idx = np.clip(n, 0, count - 1).astype(int)
    bone = valid & (u <= ends[idx, 0])
    cart = valid & (u > ends[idx, 0]) & (u <= ends[idx, 1])
    values = sub[band]
    values[bone] = np.where(q[bone] > 0.45, an.hu["bone_cortex"], an.hu["bone_marrow"])
    values[cart] = an.hu["cartilage"]
    sub[band] = values


def _cavity_fill(sub: np.ndarray, x: np.ndarray, y: np.ndarray, cav: np.ndarray, an: Anatomy, z: float) -> None:
    """Mediastinal fat above the diaphragm, abdominal organs below it, and the heart (in place)."""
    right, left = an.lungs
    dome = np.where(x < 0, dome_z(right, x, y), dome_z(left, x, y))
    below = cav & (z < dome)
    h = an.hu
    sub[cav] = h["fat"] + 0.25 * (h["muscle"] - h["fat"])
    sub[below & np.broadcast_to(x < 0.15 * an.cavity_ax, below.shape)] = h["liver"]
    sub[below & np.broadcast_to(x >= 0.15 * an.cavity_ax, below.shape)] = h["muscle"] - 5
    if an.gastric is not None:
        gx, gy, gz, ax, ay, az = an.gastric
        q = ((x - gx) / ax) ** 2 + ((y - gy) / ay) ** 2 + ((z - gz) / az) ** 2
        sub[below & (q < 1)] = h["air"]
    heart = heart_rho2(an, x, y, z)
    above = cav & ~below
    sub[above & (heart < 1.1**2)] = h["fat"]
    sub[above & (heart < 1.0)] = h["blood"] + 5


def _lung_parenchyma(sub: np.ndarray, lab: np.ndarray, grid: SliceGrid, w: Window, an: Anatomy, z: float) -> None:
    """Lung HU: base value, posterior (dependent) gradient and low-frequency texture (in place)."""
    inside = lab > 0
    if not inside.any():
        return
    x, y = _coords(grid, w)
    top, depth = an.cavity_cy - an.cavity_ay, 2 * an.cavity_ay
    grad = np.clip((y - top) / depth, 0.0, 1.0) * an.hu["lung_gradient"]
    tex = lattice_slice(an.texture, x[0], y[:, 0], z) * an.hu["lung_texture"]
    values = an.hu["lung"] + np.broadcast_to(grad, sub.shape) + tex
    sub[inside] = values[inside]


def render_slice(an: Anatomy, grid: SliceGrid, z: float) -> tuple[np.ndarray, np.ndarray]:
    """One axial slice at height ``z`` mm: noiseless HU float32 ``(Y, X)`` and labels uint8 ``(Y, X)``."""
    hu = grid.base.copy()
    label = np.zeros(hu.shape, dtype=np.uint8)
    g = float(taper(an, z))
    pad = an.rib_layer + 2.0
    w = _window(
        grid,
        -an.cavity_ax * g - pad,
        an.cavity_ax * g + pad,
        an.cavity_cy - an.cavity_ay * g - pad,
        an.cavity_cy + an.cavity_ay * g + pad,
    )
    if w is not None:
        x, y = _coords(grid, w)
        sub, lab = hu[w[0] : w[1], w[2] : w[3]], label[w[0] : w[1], w[2] : w[3]]
        rho = cavity_rho(an, x, y, z)
        cav = rho < 1.0
        _cavity_fill(sub, x, y, cav, an, z)
        _ribs(sub, x, y, rho, an, z)
        lab[...] = lung_label_slice(an, x[0], y[:, 0], z)
        _carve_tubes(label, grid, an, z)
        _lung_parenchyma(sub, lab, grid, w, an, z)
    for tube in an.tubes:
        _draw_tube(hu, label, grid, tube, z, an.hu["air"])
    _spine(hu, grid, an, z)
    _sternum(hu, grid, an, z)
    for tube in (an.trachea, *an.bronchi):
        _draw_tube(hu, label, grid, tube, z, an.hu["air"])
    return hu, label


def render_anatomy(an: Anatomy, geom: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """All slices: noiseless HU float32 ``(Z, Y, X)`` and labels uint8 ``(Z, Y, X)`` (0, 3, 4, 5)."""
    grid = base_slice(an, geom)
    vol = np.empty(geom.shape, dtype=np.float32)
    labels = np.empty(geom.shape, dtype=np.uint8)
    for k, z in enumerate(geom.z_coords()):
        vol[k], labels[k] = render_slice(an, grid, float(z))
    return vol, labels


__all__ = ["AIRWAY", "SliceGrid", "base_slice", "render_anatomy", "render_slice"]
