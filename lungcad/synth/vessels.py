"""Pulmonary vessel and intrapulmonary airway trees, grown by random Murray-law branching.

Each tree starts at the hilum with a few lobar branches and grows generation by generation (all tips of
a generation at once): a segment's length is a random multiple of its radius, its direction is pulled
away from the hilum, it must stay inside its lung, and its end splits in two children whose radii obey
Murray's law (``r^3 = r1^3 + r2^3``) with Murray-optimal branching angles plus jitter. Trees taper from
~4 mm radius at the hilum to ``min_radius_mm`` at the periphery, so vessels cut across at an angle look
like round dots of nodule size in an axial slice: the main hard negative for the nodule detector.

Only arithmetic and ``sqrt`` are used (see :mod:`lungcad.synth.util`).
"""

from __future__ import annotations

import numpy as np

from lungcad.synth.anatomy import Anatomy, Lung, lung_label_at
from lungcad.synth.config import SynthConfig, VesselConfig
from lungcad.synth.raster import Segments
from lungcad.synth.util import cbrt, normalize, uniform

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
    rng: np.random.Generator, cfg: VesselConfig, d: np.ndarray, r: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Children of tips with directions ``d (n, 3)`` and radii ``r (n,)``: ``(d1, r1, d2, r2)``."""
    n = len(r)
    alpha = rng.uniform(cfg.asymmetry[0], cfg.asymmetry[1], n)
    r1 = r * cbrt(1.0 / (1.0 + alpha * alpha * alpha))
    r2 = alpha * r1
    r4, a4, b4 = (r * r) ** 2, (r1 * r1) ** 2, (r2 * r2) ** 2
    cos1 = (r4 + a4 - b4) / (2 * r * r * r1 * r1) + cfg.angle_jitter * rng.standard_normal(n)
    cos2 = (r4 + b4 - a4) / (2 * r * r * r2 * r2) + cfg.angle_jitter * rng.standard_normal(n)
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
    """Grow one tree from ``root`` (xyz mm, inside ``lung``) with lobar branches of ``radius`` mm."""
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
            d = normalize(d + cfg.outward_bias * out + cfg.direction_jitter * rng.standard_normal(d.shape))
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
        d1, r1, d2, r2 = _split(rng, cfg, d[grow], r_end[grow])
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
    """All pulmonary vessel segments of both lungs (patient mm)."""
    cfg = config.vessels
    parts = []
    for lung in an.lungs:
        for start in _hilum_starts(an, lung, cfg.trees_per_lung):
            root = hilum_point(an, lung, start)
            if root is None:
                continue
            radius = uniform(rng, cfg.root_radius_mm) * an.scale
            parts.append(grow_tree(rng, an, cfg, lung, root, radius, cfg.min_radius_mm))
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
        parts.append(grow_tree(rng, an, cfg, lung, root, radius, cfg.airway_min_radius_mm))
    return Segments.concat(parts)
