"""Candidate points like LUNA16's ``candidates_V2.csv``, smaller: class 1 at nodules, class 0 elsewhere.

Class 1: every nodule >= 3 mm gets its centre plus a few copies jittered within a quarter of its radius
(the real file has several candidates per nodule). Class 0: vessel bifurcations and points along
vessels of radius >= ``min_vessel_radius_mm`` (the hard negatives), random lung points, random points
elsewhere in the body, and the tiny excluded findings; all keep ``nodule_clearance_mm`` outside every
nodule >= 3 mm. Points are in the patient frame (mm); the phantom maps them to world coordinates.
"""

from __future__ import annotations

import numpy as np

from lungcad.synth.anatomy import Anatomy
from lungcad.synth.config import CandidateConfig
from lungcad.synth.nodules import NoduleSpec, lung_points
from lungcad.synth.raster import Segments
from lungcad.synth.util import random_unit


def _positives(rng: np.random.Generator, cfg: CandidateConfig, specs: list[NoduleSpec]) -> list[np.ndarray]:
    """Class-1 points: nodule centres and jittered copies."""
    out = []
    for spec in specs:
        if spec.kind.excluded:
            continue
        c = np.asarray(spec.centre)
        n = int(rng.integers(cfg.per_nodule[0], cfg.per_nodule[1] + 1))
        out.append(c)
        for v in random_unit(rng, n - 1):
            out.append(c + v * rng.random() * spec.kind.diameter_mm / 8)
    return out


def _vessel_points(rng: np.random.Generator, cfg: CandidateConfig, vessels: Segments) -> np.ndarray:
    """Bifurcations and points along vessels of radius >= the configured minimum, ``(n, 3)``."""
    big = np.nonzero(np.minimum(vessels.ra, vessels.rb) >= cfg.min_vessel_radius_mm)[0]
    if len(big) == 0:
        return np.zeros((0, 3))
    pick = rng.choice(big, size=min(cfg.vessel_points, len(big)), replace=False)
    t = rng.random(len(pick))
    t[: len(pick) // 2] = 0.0  # segment starts: bifurcations
    return vessels.a[pick] + t[:, None] * (vessels.b[pick] - vessels.a[pick])


def _body_points(rng: np.random.Generator, an: Anatomy, n: int, z_max: float) -> np.ndarray:
    """``n`` random points inside the body ellipse (any tissue), ``(n, 3)``."""
    u = random_unit(rng, n)[:, :2]
    rad = np.sqrt(rng.random(n))[:, None] * 0.9
    xy = u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-9) * rad * [an.body_ax, an.body_ay]
    z = rng.random(n) * z_max
    return np.column_stack([xy, z])


def candidate_points(
    rng: np.random.Generator,
    an: Anatomy,
    cfg: CandidateConfig,
    specs: list[NoduleSpec],
    vessels: Segments,
    z_max: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate points ``(N, 3)`` patient mm and their classes ``(N,)`` int, shuffled."""
    pos = _positives(rng, cfg, specs)
    per_lung = [lung_points(rng, an, lung, (cfg.lung_points + 1) // 2) for lung in an.lungs]
    tiny = [np.asarray(s.centre) for s in specs if s.kind.excluded]
    neg = np.concatenate(
        [_vessel_points(rng, cfg, vessels), *per_lung, _body_points(rng, an, cfg.other_points, z_max)]
        + ([np.array(tiny)] if tiny else [])
    )
    real = [s for s in specs if not s.kind.excluded]
    keep = np.ones(len(neg), dtype=bool)
    for spec in real:
        dist = np.linalg.norm(neg - np.asarray(spec.centre), axis=1)
        keep &= dist > spec.kind.diameter_mm / 2 + cfg.nodule_clearance_mm
    neg = neg[keep]
    points = np.concatenate([np.array(pos).reshape(-1, 3), neg])
    classes = np.concatenate([np.ones(len(pos), dtype=int), np.zeros(len(neg), dtype=int)])
    order = rng.permutation(len(points))
    return points[order], classes[order]
