"""Draw tubes (vessels, airways) and other local shapes into the volume inside small 3-D boxes.

A shape only touches the voxels of its own bounding box. Slices thicker than a pixel are sampled at
``nsub`` heights inside each slice and averaged, so small structures get the partial-volume value a
real slice profile would give instead of vanishing between slices. Compositing only changes lung
voxels (labels 3 and 4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from lungcad.synth.anatomy import LEFT_LUNG, RIGHT_LUNG
from lungcad.synth.geometry import Geometry

Box = tuple[int, int, int, int, int, int]  # k0, k1, j0, j1, i0, i1 (half-open, canonical grid)
Mode = Literal["brighten", "darken"]


@dataclass(frozen=True)
class Segments:
    """Straight tapered tubes in patient mm.

    Attributes:
        a, b: ``(N, 3)`` xyz mm of the start and end points.
        ra, rb: ``(N,)`` radii (mm) at the start and end.
        parent: ``(N,)`` index of the parent segment, -1 for a root.
        lung: ``(N,)`` label of the lung the segment grows in (3 or 4).
    """

    a: np.ndarray
    b: np.ndarray
    ra: np.ndarray
    rb: np.ndarray
    parent: np.ndarray
    lung: np.ndarray

    def __len__(self) -> int:
        return len(self.ra)

    @staticmethod
    def empty() -> Segments:
        """No segments."""
        z3, z1 = np.zeros((0, 3)), np.zeros(0)
        return Segments(z3, z3, z1, z1, np.zeros(0, dtype=int), np.zeros(0, dtype=np.uint8))

    @staticmethod
    def concat(parts: list[Segments]) -> Segments:
        """All segments of ``parts`` (parent indices shifted)."""
        if not parts:
            return Segments.empty()
        offsets = np.cumsum([0] + [len(p) for p in parts[:-1]])
        parents = [np.where(p.parent >= 0, p.parent + o, -1) for p, o in zip(parts, offsets, strict=True)]
        return Segments(
            np.concatenate([p.a for p in parts]),
            np.concatenate([p.b for p in parts]),
            np.concatenate([p.ra for p in parts]),
            np.concatenate([p.rb for p in parts]),
            np.concatenate(parents),
            np.concatenate([p.lung for p in parts]),
        )


def z_subsamples(geom: Geometry) -> int:
    """Heights sampled per slice (1 for thin slices, up to 4 for thick ones)."""
    return int(np.clip(np.rint(geom.thickness / geom.h), 1, 4))


class Canvas:
    """The float32 volume being drawn, its lung mask and the patient coordinates of its samples.

    Attributes:
        vol: float32 ``(Z, Y, X)`` HU, modified in place.
        lung: bool ``(Z, Y, X)``: voxels that may be changed (labels 3 and 4).
        nsub: heights sampled per slice.
        xs, ys: patient mm of the columns / rows; zs: patient mm of the ``Z * nsub`` sample heights.
    """

    def __init__(self, vol: np.ndarray, labels: np.ndarray, geom: Geometry) -> None:
        self.vol = vol
        self.lung = (labels == LEFT_LUNG) | (labels == RIGHT_LUNG)
        self.geom = geom
        self.nsub = z_subsamples(geom)
        self.xs = geom.x_coords().astype(np.float32)
        self.ys = geom.y_coords().astype(np.float32)
        offsets = (np.arange(self.nsub) + 0.5) / self.nsub - 0.5
        self.zs = ((np.arange(geom.nz)[:, None] + offsets[None, :]) * geom.sz).ravel().astype(np.float32)

    def boxes(self, lo_xyz: np.ndarray, hi_xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Voxel boxes ``(N, 6)`` (k0, k1, j0, j1, i0, i1) covering patient boxes ``lo``..``hi`` ``(N, 3)`` mm.

        Returns ``(boxes, valid)``; a box is invalid when it misses the volume.
        """
        vlo = self.geom.to_voxel(np.minimum(lo_xyz, hi_xyz))
        vhi = self.geom.to_voxel(np.maximum(lo_xyz, hi_xyz))
        lo = np.maximum(np.ceil(vlo - 0.5).astype(int), 0)
        hi = np.minimum(np.floor(vhi + 0.5).astype(int) + 1, np.array(self.geom.shape))
        valid = np.all(hi > lo, axis=-1)
        return np.stack([lo[..., 0], hi[..., 0], lo[..., 1], hi[..., 1], lo[..., 2], hi[..., 2]], axis=-1), valid

    def coords(self, box: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Patient ``x (1, 1, nx)``, ``y (1, ny, 1)``, ``z (nz * nsub, 1, 1)`` mm of a box's sample points."""
        k0, k1, j0, j1, i0, i1 = box
        n = self.nsub
        return self.xs[None, None, i0:i1], self.ys[None, j0:j1, None], self.zs[k0 * n : k1 * n, None, None]

    def composite(self, box: Sequence[int], alpha: np.ndarray, hu: np.ndarray | float, mode: Mode) -> None:
        """Blend ``hu`` into the lung voxels of ``box`` with coverage ``alpha`` (``nsub`` samples per slice).

        ``brighten`` only raises values (``v + a * max(hu - v, 0)``), ``darken`` only lowers them; the
        sub-slice results are averaged.
        """
        k0, k1, j0, j1, i0, i1 = box
        lung = self.lung[k0:k1, j0:j1, i0:i1]
        if not lung.any():
            return
        v = self.vol[k0:k1, j0:j1, i0:i1]
        shape = (k1 - k0, self.nsub, j1 - j0, i1 - i0)
        diff = np.asarray(hu, dtype=np.float32)
        if diff.ndim:
            diff = diff.reshape(shape)
        diff = diff - v[:, None]
        diff = np.maximum(diff, 0) if mode == "brighten" else np.minimum(diff, 0)
        delta = alpha.reshape(shape) * diff
        delta = delta.mean(axis=1) if self.nsub > 1 else delta[:, 0]
        v += np.where(lung, delta, np.float32(0))


def box_coverage(s: np.ndarray, r: np.ndarray | float, w: float) -> np.ndarray:
    """Coverage of a voxel of width ``w`` mm whose centre is ``s`` mm from the axis of a tube of radius ``r``.

    The 1-D box-filtered profile: overlap of ``[s - w/2, s + w/2]`` with ``[-r, r]`` over ``w``. For
    ``r >= w/2`` it is ``clip(0.5 + (r - s) / w, 0, 1)``; thinner tubes get a lower peak ``2r / w``, so
    their partial-volume contrast is right at any pixel size.
    """
    hi = np.minimum(s + 0.5 * w, r)
    lo = np.maximum(s - 0.5 * w, -r)
    return np.clip((hi - lo) / w, 0.0, 1.0).astype(np.float32)


def tube_alpha(
    x: np.ndarray, y: np.ndarray, z: np.ndarray, a: np.ndarray, b: np.ndarray, ra: float, rb: float, edge: float
) -> np.ndarray:
    """Coverage in [0, 1] of a tapered tube ``a``-``b`` (radii ``ra``..``rb`` mm) for voxels of width ``edge``."""
    d = (b - a).astype(np.float32)
    dd = max(float(d @ d), 1e-12)
    px, py, pz = x - np.float32(a[0]), y - np.float32(a[1]), z - np.float32(a[2])
    t = np.clip((px * d[0] + py * d[1] + pz * d[2]) * np.float32(1.0 / dd), 0.0, 1.0)
    ex, ey, ez = px - t * d[0], py - t * d[1], pz - t * d[2]
    dist = np.sqrt(ex * ex + ey * ey + ez * ez)
    return box_coverage(dist, np.float32(ra) + np.float32(rb - ra) * t, edge)


def draw_segments(
    canvas: Canvas,
    segs: Segments,
    hu: float,
    mode: Mode,
    grow: float = 0.0,
    grow_fraction: float = 0.0,
) -> None:
    """Composite every segment (radius enlarged by ``grow + grow_fraction * r`` mm) into the canvas."""
    if len(segs) == 0:
        return
    edge = canvas.geom.h
    ra = segs.ra * (1 + grow_fraction) + grow
    rb = segs.rb * (1 + grow_fraction) + grow
    pad = (np.maximum(ra, rb) + edge)[:, None]
    boxes, valid = canvas.boxes(np.minimum(segs.a, segs.b) - pad, np.maximum(segs.a, segs.b) + pad)
    for n in np.nonzero(valid)[0]:
        box = boxes[n]
        x, y, z = canvas.coords(box)
        alpha = tube_alpha(x, y, z, segs.a[n], segs.b[n], float(ra[n]), float(rb[n]), edge)
        canvas.composite(box, alpha, hu, mode)
