"""Pulmonary vessel and intrapulmonary airway trees, grown by random Murray-law branching.

Each tree starts at the hilum with a few lobar branches and grows generation by generation (all tips of
a generation at once): a segment's length is a random multiple of its radius, its direction is pulled
away from the hilum, it must stay inside its lung, and its end splits in two children whose radii obey
Murray's law (``r^3 = r1^3 + r2^3``) with Murray-optimal branching angles plus jitter. Trees taper from
~4 mm radius at the hilum to ``min_radius_mm`` at the periphery, so vessels cut across at an angle look
like round dots of nodule size in an axial slice: the main hard negative for the nodule detector.

Body knobs (``Anatomy.body``): radii scale with ``calibre`` (airways: ``airway_calibre``), bifurcations with
``asymmetry`` and ``branch_cos_shift``, turning with ``tortuosity``; with ``tip_radius_mm`` set, blunt terminal
vessels end in cones and every radius is capped by the distance to the pleura (:func:`taper_tree`), so vessels
reach the pleura sub-millimetre thin instead of ending there 2-4 mm thick.

Only arithmetic and ``sqrt`` are used (see :mod:`lungcad.synth.util`), the pleural taper's distance field included
(scipy's exact Euclidean distance transform, trilinear interpolation).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from lungcad.synth.anatomy import Anatomy, BodyDraw, Lung, lung_label_at, lung_label_slice
from lungcad.synth.config import SynthConfig, VesselConfig
from lungcad.synth.raster import Segments
from lungcad.synth.util import cbrt, normalize, segment_distance, uniform

#: Lobar branch directions for the right lung (x sign flipped for the left): up, lateral, down-back, down-front.
LOBAR_DIRECTIONS = np.array([[-0.35, 0.1, 1.0], [-1.0, -0.45, -0.1], [-0.45, 0.5, -1.0], [-0.5, -0.45, -0.9]])


def _inside(an: Anatomy, label: int, p: np.ndarray) -> np.ndarray:
    """bool ``(N,)``: points ``(N, 3)`` mm inside lung ``label``."""
    if len(p) == 0:
        return np.zeros(0, dtype=bool)
    return lung_label_at(an, p[:, 0], p[:, 1], p[:, 2]) == label


def _step(
    rng: np.random.Generator, an: Anatomy, label: int, p: np.ndarray, d: np.ndarray, length: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Try to advance tips ``p`` along ``d`` by ``length``; re-aim and shorten failures twice.

    Returns ``(ok, d, length)``: which tips found a segment inside the lung, and the direction/length used.
    """
    d, length = d.copy(), length.copy()
    ok = np.zeros(len(p), dtype=bool)
    todo = np.arange(len(p))
    for attempt in range(3):
        if attempt:
            d[todo] = normalize(d[todo] + 0.9 * rng.standard_normal((len(todo), 3)))
            length[todo] *= 0.7
        end = p[todo] + d[todo] * length[todo, None]
        mid = p[todo] + d[todo] * (0.5 * length[todo, None])
        good = _inside(an, label, end) & _inside(an, label, mid)
        ok[todo[good]] = True
        todo = todo[~good]
        if len(todo) == 0:
            break
    return ok, d, length


def _split(
    rng: np.random.Generator, cfg: VesselConfig, d: np.ndarray, r: np.ndarray, body: BodyDraw
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Children of tips with directions ``d (n, 3)`` and radii ``r (n,)``: ``(d1, r1, d2, r2)``.

    ``body.asymmetry`` scales the drawn radius ratio (at most 1), ``body.branch_cos_shift`` is added to both
    branching cosines.
    """
    n = len(r)
    alpha = np.minimum(rng.uniform(cfg.asymmetry[0], cfg.asymmetry[1], n) * body.asymmetry, 1.0)
    r1 = r * cbrt(1.0 / (1.0 + alpha * alpha * alpha))
    r2 = alpha * r1
    r4, a4, b4 = (r * r) ** 2, (r1 * r1) ** 2, (r2 * r2) ** 2
    shift = body.branch_cos_shift
    cos1 = (r4 + a4 - b4) / (2 * r * r * r1 * r1) + cfg.angle_jitter * rng.standard_normal(n) + shift
    cos2 = (r4 + b4 - a4) / (2 * r * r * r2 * r2) + cfg.angle_jitter * rng.standard_normal(n) + shift
    cos1, cos2 = np.clip(cos1, 0.26, 0.985), np.clip(cos2, 0.26, 0.985)
    perp = normalize(np.cross(d, rng.standard_normal((n, 3))))
    d1 = cos1[:, None] * d + np.sqrt(1 - cos1 * cos1)[:, None] * perp
    d2 = cos2[:, None] * d - np.sqrt(1 - cos2 * cos2)[:, None] * perp
    return normalize(d1), r1, normalize(d2), r2


def grow_tree(
    rng: np.random.Generator,
    an: Anatomy,
    cfg: VesselConfig,
    lung: Lung,
    root: np.ndarray,
    radius: float,
    min_radius: float,
) -> Segments:
    """Grow one tree from ``root`` (xyz mm, inside ``lung``) with lobar branches of ``radius`` mm.

    The branching (``an.body.asymmetry``, ``branch_cos_shift``) and the turning between generations
    (``direction_jitter * an.body.tortuosity``) follow the patient's body knobs.
    """
    body = an.body
    jitter = cfg.direction_jitter * body.tortuosity
    dirs = LOBAR_DIRECTIONS * np.array([-lung.sign, 1.0, 1.0])
    p = np.repeat(root[None, :], len(dirs), axis=0)
    d = normalize(dirs + 0.25 * rng.standard_normal(dirs.shape))
    r = radius * rng.uniform(0.85, 1.15, len(dirs))
    parent = np.full(len(dirs), -1)
    a_list, b_list, ra_list, rb_list, par_list = [], [], [], [], []
    count = 0
    for gen in range(cfg.max_generations):
        if len(p) == 0:
            break
        length = np.maximum(r * rng.uniform(cfg.length_per_radius[0], cfg.length_per_radius[1], len(r)), 1.0)
        if gen > 0:
            out = normalize(p - root)
            d = normalize(d + cfg.outward_bias * out + jitter * rng.standard_normal(d.shape))
        ok, d, length = _step(rng, an, lung.label, p, d, length)
        p, d, r, length, parent = p[ok], d[ok], r[ok], length[ok], parent[ok]
        end = p + d * length[:, None]
        r_end = r * rng.uniform(cfg.taper[0], cfg.taper[1], len(r))
        a_list.append(p)
        b_list.append(end)
        ra_list.append(r)
        rb_list.append(r_end)
        par_list.append(parent)
        ids = np.arange(count, count + len(r))
        count += len(r)
        grow = r_end >= min_radius
        d1, r1, d2, r2 = _split(rng, cfg, d[grow], r_end[grow], body)
        p = np.concatenate([end[grow], end[grow]])
        d = np.concatenate([d1, d2])
        r = np.concatenate([r1, r2])
        parent = np.concatenate([ids[grow], ids[grow]])
        keep = r >= min_radius
        p, d, r, parent = p[keep], d[keep], r[keep], parent[keep]
    if count == 0:
        return Segments.empty()
    return Segments(
        np.concatenate(a_list),
        np.concatenate(b_list),
        np.concatenate(ra_list),
        np.concatenate(rb_list),
        np.concatenate(par_list),
        np.full(count, lung.label, dtype=np.uint8),
    )


def hilum_point(an: Anatomy, lung: Lung, start: np.ndarray) -> np.ndarray | None:
    """``start`` moved laterally (2 mm steps, up to 60 mm) until it lies inside ``lung``; None if never."""
    steps = np.arange(0, 61, 2.0)
    pts = start[None, :] + steps[:, None] * np.array([lung.sign, 0.0, 0.0])
    hit = np.nonzero(_inside(an, lung.label, pts))[0]
    if len(hit) == 0:
        return None
    return pts[hit[0] + min(2, len(steps) - 1 - hit[0])]


def _hilum_starts(an: Anatomy, lung: Lung, n_trees: int) -> list[np.ndarray]:
    """Start points of the ``n_trees`` vessel trees of ``lung``: around its main bronchus end."""
    bronchus = an.bronchi[0 if lung.sign < 0 else 1]
    s = an.scale
    offsets = [np.array([0.0, -10 * s, 10 * s]), np.array([0.0, -12 * s, -28 * s])]
    out = []
    for t in range(n_trees):
        off = offsets[t % 2] + np.array([0.0, 0.0, -12 * s * (t // 2)])
        out.append(bronchus.b + off)
    return out


def vessel_trees(rng: np.random.Generator, an: Anatomy, config: SynthConfig) -> Segments:
    """All pulmonary vessel segments of both lungs (patient mm).

    Radii are scaled by ``an.body.calibre`` after growth; with ``an.body.tip_radius_mm`` set, each tree is then
    tapered towards the pleura (:func:`taper_tree`).
    """
    cfg, body = config.vessels, an.body
    field = pleura_field(an, cfg.taper_grid_mm) if body.tip_radius_mm is not None else None
    parts = []
    for lung in an.lungs:
        for start in _hilum_starts(an, lung, cfg.trees_per_lung):
            root = hilum_point(an, lung, start)
            if root is None:
                continue
            radius = uniform(rng, cfg.root_radius_mm) * an.scale
            tree = _scale_radii(grow_tree(rng, an, cfg, lung, root, radius, cfg.min_radius_mm), body.calibre)
            if field is not None and len(tree):
                tree = taper_tree(tree, root, field, body, cfg.hilum_relief_mm * an.scale)
            parts.append(tree)
    return Segments.concat(parts)


def airway_trees(rng: np.random.Generator, an: Anatomy, config: SynthConfig) -> Segments:
    """Intrapulmonary airway segments (lumen radii, patient mm) from each main bronchus end."""
    cfg = config.vessels
    parts = []
    for lung, bronchus in zip(an.lungs, an.bronchi, strict=True):
        root = hilum_point(an, lung, bronchus.b)
        if root is None:
            continue
        radius = uniform(rng, cfg.airway_root_radius_mm) * an.scale
        tree = grow_tree(rng, an, cfg, lung, root, radius, cfg.airway_min_radius_mm)
        parts.append(_scale_radii(tree, an.body.airway_calibre))
    return Segments.concat(parts)


def _scale_radii(segs: Segments, k: float) -> Segments:
    """``segs`` with both radii multiplied by ``k`` (the same object when ``k`` is 1)."""
    return segs if k == 1.0 else replace(segs, ra=segs.ra * k, rb=segs.rb * k)


# --------------------------------------------------------------------------- tapering towards the pleura
@dataclass(frozen=True)
class PleuraField:
    """Distance (mm) from the lung border of points inside the lungs, sampled on a regular grid.

    Attributes:
        origin: xyz mm of grid node ``[0, 0, 0]``.
        step: grid spacing, mm.
        dist: float32 ``(nz, ny, nx)`` mm; 0 outside the lungs (and outside the grid).
    """

    origin: np.ndarray
    step: float
    dist: np.ndarray

    def at(self, p: np.ndarray) -> np.ndarray:
        """Distance (mm) at points ``(..., 3)`` xyz mm, trilinearly interpolated, shape ``(...)``."""
        p = np.asarray(p, dtype=np.float64)
        idx = (p.reshape(-1, 3) - self.origin) / self.step
        d = ndimage.map_coordinates(self.dist, idx[:, ::-1].T, order=1, mode="constant", cval=0.0)
        return d.reshape(p.shape[:-1])


def pleura_field(an: Anatomy, step: float) -> PleuraField:
    """Distance from the lung border (costal, diaphragmatic and mediastinal pleura) on a ``step`` mm grid.

    The lungs (labels 3 and 4, carved around the mediastinal vessels) are evaluated at the grid nodes of
    a box around the thoracic cavity; the distance is the Euclidean distance to the nearest node outside the
    lungs less half a step (the border lies between nodes), so it is independent of the matrix size.
    """
    lo = np.array(
        [-an.cavity_ax - step, an.cavity_cy - an.cavity_ay - step, min(lung.recess_z for lung in an.lungs) - step]
    )
    hi = np.array(
        [an.cavity_ax + step, an.cavity_cy + an.cavity_ay + step, max(lung.apex_z for lung in an.lungs) + step]
    )
    n = np.ceil((hi - lo) / step).astype(int) + 1
    xs, ys, zs = (lo[i] + step * np.arange(n[i]) for i in range(3))
    mask = np.zeros((n[2], n[1], n[0]), dtype=bool)
    carved = [t for t in an.tubes if t.carve > 0]
    for k, z in enumerate(zs):
        plane = lung_label_slice(an, xs, ys, float(z)) > 0
        for tube in carved:
            reach = tube.radius + tube.carve
            if min(tube.a[2], tube.b[2]) - reach <= z <= max(tube.a[2], tube.b[2]) + reach:
                plane &= segment_distance(xs[None, :], ys[:, None], z, tube.a, tube.b)[0] > reach
        mask[k] = plane
    dist = ndimage.distance_transform_edt(mask, sampling=step) - 0.5 * step
    return PleuraField(lo, float(step), np.where(mask, np.maximum(dist, 0.0), 0.0).astype(np.float32))


def _cap(
    field: PleuraField, p: np.ndarray, root: np.ndarray, root_r: float, body: BodyDraw, relief: float
) -> np.ndarray:
    """Largest radius (mm) allowed at points ``p (..., 3)``: ``tip + pleura_taper * distance``, relaxed near the root.

    Within ``relief`` mm of the tree's ``root`` the cap rises linearly to the root radius ``root_r`` (the hilum
    is not pleura: the big vessels enter the lung there).
    """
    tip = float(body.tip_radius_mm)  # type: ignore[arg-type]
    dr = np.sqrt(np.sum((p - root) ** 2, axis=-1))
    return tip + body.pleura_taper * field.at(p) + root_r * np.maximum(0.0, 1.0 - dr / max(relief, 1e-6))


def _terminal_cones(segs: Segments, field: PleuraField, body: BodyDraw) -> Segments:
    """``segs`` plus a cone on each blunt terminal segment: from its end radius to ``tip_radius_mm``.

    A terminal segment (one without children) ending over 0.4 mm thicker than the tip radius is continued along its
    direction for ``tip_taper_length`` x its end radius, shortened to the room left before the pleura (the
    distance field sampled every millimetre); cones shorter than 1 mm are left out.
    """
    tip = float(body.tip_radius_mm)  # type: ignore[arg-type]
    has_child = np.zeros(len(segs), dtype=bool)
    has_child[segs.parent[segs.parent >= 0]] = True
    ends = np.nonzero(~has_child & (segs.rb > tip + 0.4))[0]
    if len(ends) == 0:
        return segs
    u = normalize(segs.b[ends] - segs.a[ends])
    length = body.tip_taper_length * segs.rb[ends]
    steps = np.arange(1.0, float(np.ceil(length.max())) + 1.0)
    inside = field.at(segs.b[ends, None, :] + steps[None, :, None] * u[:, None, :]) > 0
    room = np.where(inside.all(axis=1), steps[-1], steps[np.argmin(inside, axis=1)] - 1.0)
    length = np.minimum(length, room)
    keep = length >= 1.0
    ends, u, length = ends[keep], u[keep], length[keep]
    cones = Segments(
        segs.b[ends],
        segs.b[ends] + u * length[:, None],
        segs.rb[ends],
        np.full(len(ends), tip),
        ends,
        segs.lung[ends],
    )
    return _append(segs, cones)


def _append(segs: Segments, more: Segments) -> Segments:
    """``segs`` followed by ``more`` (whose parents already index ``segs``)."""
    return Segments(
        *(np.concatenate([getattr(segs, f), getattr(more, f)]) for f in ("a", "b", "ra", "rb", "parent", "lung"))
    )


def _split_at(segs: Segments, t: np.ndarray) -> Segments:
    """Segments cut in two at fraction ``t (N,)`` where ``0 < t < 1`` (kept whole elsewhere); parents re-indexed.

    A cut segment ``i`` becomes the pieces ``a .. p`` and ``p .. b`` (radius interpolated at ``p``); its
    children then hang from the second piece.
    """
    pieces = np.where((t > 0.0) & (t < 1.0), 2, 1)
    start = np.concatenate([[0], np.cumsum(pieces)[:-1]])
    last = start + pieces - 1
    seg = np.repeat(np.arange(len(segs)), pieces)
    second = np.arange(len(seg)) > start[seg]
    tt = t[seg][:, None]
    a, b = segs.a[seg], segs.b[seg]
    ra, rb = segs.ra[seg], segs.rb[seg]
    cut_first = (pieces[seg] == 2) & ~second
    mid = a + tt * (b - a)
    r_mid = ra + t[seg] * (rb - ra)
    par = segs.parent[seg]
    parent = np.where(second, np.arange(len(seg)) - 1, np.where(par >= 0, last[np.maximum(par, 0)], -1))
    return Segments(
        np.where(second[:, None], mid, a),
        np.where(cut_first[:, None], mid, b),
        np.where(second, r_mid, ra),
        np.where(cut_first, r_mid, rb),
        parent,
        segs.lung[seg],
    )


def taper_tree(segs: Segments, root: np.ndarray, field: PleuraField, body: BodyDraw, relief: float) -> Segments:
    """One vessel tree tapered towards the pleura (``body.tip_radius_mm`` must be set).

    1. Blunt terminal segments get a cone down to the tip radius (:func:`_terminal_cones`).
    2. The radius at every point is capped at ``tip + pleura_taper * d`` (``d`` mm from the pleura, relaxed
       within ``relief`` mm of the ``root`` xyz mm): a segment whose radius crosses the cap (tested at 9 points)
       is cut in two where it crosses, and every segment's end radii are capped, so the radius follows the
       cap down to the pleura (the cap is nearly linear along a segment heading into the pleura).
    Vessels thus reach the pleura at the tip radius instead of ending there 2-4 mm thick.
    """
    root_r = float(segs.ra[segs.parent < 0].max())
    segs = _terminal_cones(segs, field, body)
    t = np.linspace(0.0, 1.0, 9)
    pts = segs.a[:, None, :] + t[None, :, None] * (segs.b - segs.a)[:, None, :]
    excess = segs.ra[:, None] + t[None, :] * (segs.rb - segs.ra)[:, None] - _cap(field, pts, root, root_r, body, relief)
    # first sample above the cap; the cap binds from the interpolated crossing before it on
    over = excess > 0
    k = np.argmax(over, axis=1)
    e0, e1 = excess[np.arange(len(k)), np.maximum(k - 1, 0)], excess[np.arange(len(k)), k]
    frac = e0 / np.minimum(e0 - e1, -1e-9)  # e0 <= 0 < e1: where the excess crosses 0, in [0, 1]
    cross = np.where(over.any(axis=1) & (k > 0), t[np.maximum(k - 1, 0)] + frac * (t[1] - t[0]), 0.0)
    segs = _split_at(segs, cross)
    ra = np.minimum(segs.ra, _cap(field, segs.a, root, root_r, body, relief))
    rb = np.minimum(segs.rb, _cap(field, segs.b, root, root_r, body, relief))
    return replace(segs, ra=ra, rb=rb)
