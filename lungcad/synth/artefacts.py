"""Scanner artefacts of the randomized world, added slice by slice in the image domain before the kernel.

- *cupping* (beam hardening): a smooth depression, deepest at the centre of the body (a parabola in the depth
  below the skin), scaled with the body's depth;
- *dark bands* (beam hardening) along the lines that join the largest dense (bone) structures of a slice;
- *streaks*: thin bright or dark lines through dense structures at random angles, fading with the distance
  from their source, in a random subset of slices;
- *photon starvation*: lateral streaky noise (rows of random HU sheared to a few near-lateral directions) in
  the top (shoulder) slices, strongest in the topmost slice.

Motion (directional blur and shifts of some slices) is applied in Fourier space by :mod:`lungcad.synth.scanner`;
its per-slice draws are made here (:func:`motion_plan`). Cupping and bands are computed on point samples every
``size // 64`` pixels, every ``FIELD_DZ_MM`` along z (reused in between), and interpolated (linearly here,
trigonometrically in Fourier space), so their cost is small; streaks are splatted along their lines.
Coordinates: slices ``(Y, X)``, pixel size ``h`` mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lungcad.synth.geometry import Geometry
from lungcad.synth.util import segment_distance

#: Coarse grid side (pixels) of the smooth artefact fields (cupping, bands).
COARSE = 64
#: Depth (mm) of the body at which ``cupping_hu`` is the centre's depression.
CUPPING_REFERENCE_MM = 150.0
#: HU above which a coarse pixel is tissue (the body outline for cupping; streak sources when no bone).
TISSUE_HU = -500.0
#: Bands join at most this many of the largest dense structures of a slice, at least BAND_MIN_MM apart.
BAND_SOURCES = 4
BAND_MIN_MM = 30.0
#: The smooth fields are recomputed when the slice position has moved this far (mm) and reused in between.
FIELD_DZ_MM = 2.5


@dataclass(frozen=True)
class ArtefactParams:
    """Per-scan artefact settings (0 / None: off).

    Attributes:
        cupping_hu: HU depression at the centre of a body ``CUPPING_REFERENCE_MM`` deep.
        band_hu, band_width_mm: depth (HU) and full width (mm) of the dark bands.
        bone_hu: HU threshold of dense structures.
        streak_hu: ``(low, high)`` peak HU of a streak, or None (off).
        streaks_per_slice: inclusive count range in an affected slice.
        streak_fraction: share of slices with streaks.
        streak_fade_mm: a streak's amplitude halves at this distance from its source.
        starvation_hu: SD (HU) of the lateral streaks in the topmost slice (0: off).
        starvation_fraction: top share of slices in the shoulder zone.
        starvation_angle_deg: streak directions within +- this of lateral.
        motion_fraction: share of slices with motion (0: off).
        motion_angle: motion direction (radians from the x axis; pi/2 is antero-posterior).
        motion_blur_mm, motion_shift_mm: ranges per affected slice.
    """

    cupping_hu: float = 0.0
    band_hu: float = 0.0
    band_width_mm: float = 10.0
    bone_hu: float = 350.0
    streak_hu: tuple[float, float] | None = None
    streaks_per_slice: tuple[int, int] = (1, 1)
    streak_fraction: float = 0.0
    streak_fade_mm: float = 80.0
    starvation_hu: float = 0.0
    starvation_fraction: float = 0.0
    starvation_angle_deg: float = 0.0
    motion_fraction: float = 0.0
    motion_angle: float = np.pi / 2
    motion_blur_mm: tuple[float, float] = (0.0, 0.0)
    motion_shift_mm: tuple[float, float] = (0.0, 0.0)

    @property
    def image_domain(self) -> bool:
        """Whether any image-domain artefact is on."""
        return self.cupping_hu > 0 or self.band_hu > 0 or self.streak_hu is not None or self.starvation_hu > 0


@dataclass(frozen=True)
class MotionPlan:
    """Per-slice motion: ``affected`` bool ``(Z,)``, ``blur_mm`` and ``shift_mm`` float ``(Z,)``, ``angle`` rad."""

    affected: np.ndarray
    blur_mm: np.ndarray
    shift_mm: np.ndarray
    angle: float


def motion_plan(rng: np.random.Generator, params: ArtefactParams, nz: int) -> MotionPlan:
    """Which slices move, by how much (drawn once for the scan, ``3 nz`` numbers from ``rng``)."""
    affected = rng.random(nz) < params.motion_fraction
    blur = rng.uniform(params.motion_blur_mm[0], params.motion_blur_mm[1], nz)
    sign = np.where(rng.random(nz) < 0.5, -1.0, 1.0)
    shift = rng.uniform(params.motion_shift_mm[0], params.motion_shift_mm[1], nz) * sign
    return MotionPlan(affected, blur, shift, params.motion_angle)


def _interp_plan(n: int, c: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear interpolation from ``m`` coarse samples (every ``c``-th pixel from ``c // 2``) to ``n`` pixels.

    Returns ``(i0, i1, t)``: value at pixel ``p`` = ``(1 - t[p]) coarse[i0[p]] + t[p] coarse[i1[p]]``.
    """
    u = np.clip((np.arange(n) - c // 2) / c, 0.0, m - 1.0)
    i0 = np.minimum(np.floor(u).astype(np.int64), m - 1)
    return i0, np.minimum(i0 + 1, m - 1), (u - i0).astype(np.float32)


def _upsample(low: np.ndarray, plan_y: tuple, plan_x: tuple) -> np.ndarray:
    """Separable linear interpolation of a coarse ``(m, m')`` field to float32 ``(Y, X)`` (no BLAS)."""
    i0, i1, t = plan_y
    rows = low[i0] * (1 - t)[:, None] + low[i1] * t[:, None]
    j0, j1, s = plan_x
    return rows[:, j0] * (1 - s)[None, :] + rows[:, j1] * s[None, :]


def cupping_field(coarse: np.ndarray, step_mm: float, hu: float) -> np.ndarray:
    """Beam-hardening cupping on a coarse grid: ``-hu * (D / 150 mm) * (1 - (1 - d / D)^2)`` in the body.

    ``d`` is the depth (mm) below the skin of the filled body outline (``> TISSUE_HU``), ``D`` its maximum, so a
    uniform disc gets a parabolic profile, 0 at its edge and ``-hu * D / 150`` at its centre.
    """
    body = ndimage.binary_fill_holes(coarse > TISSUE_HU)
    depth = ndimage.distance_transform_edt(body) * step_mm
    dmax = float(depth.max())
    if dmax <= 0:
        return np.zeros(coarse.shape, dtype=np.float32)
    t = 1.0 - depth / dmax
    return (-hu * dmax / CUPPING_REFERENCE_MM * (1.0 - t * t) * body).astype(np.float32)


def dense_sources(coarse: np.ndarray, bone_hu: float, count: int) -> list[tuple[np.ndarray, float]]:
    """The ``count`` largest dense regions of a coarse slice: ``(pixels (K, 2) row, col, excess HU x pixels)``."""
    labels, n = ndimage.label(coarse > bone_hu)
    if n == 0:
        return []
    idx = np.arange(1, n + 1)
    mass = ndimage.sum_labels(coarse - bone_hu, labels, idx)
    order = np.argsort(-mass, kind="stable")[:count]
    return [(np.argwhere(labels == idx[i]).astype(np.float64), float(mass[i])) for i in order]


def band_field(coarse: np.ndarray, step_mm: float, bone_hu: float, width_mm: float, hu: float) -> np.ndarray:
    """Dark bands (full width at half depth ``width_mm``, at least 1.6 samples) bridging the gaps between the
    largest dense regions.

    A band runs between the nearest points of two regions at least ``BAND_MIN_MM`` apart; its depth is ``hu``
    for the heaviest pair and scales with ``sqrt(mass_i mass_j)`` (excess HU x area) for the others.
    """
    out = np.zeros(coarse.shape, dtype=np.float32)
    src = dense_sources(coarse, bone_hu, BAND_SOURCES)
    pairs = []
    for i in range(len(src)):
        for j in range(i + 1, len(src)):
            pi, pj = src[i][0], src[j][0]
            d2 = ((pi[:, None, :] - pj[None, :, :]) ** 2).sum(axis=-1)
            a, b = np.unravel_index(int(np.argmin(d2)), d2.shape)
            if np.sqrt(d2[a, b]) * step_mm >= BAND_MIN_MM:
                pairs.append((pi[a], pj[b], np.sqrt(src[i][1] * src[j][1])))
    if not pairs:
        return out
    heaviest = max(w for _, _, w in pairs)
    rows, cols = np.arange(coarse.shape[0]) * step_mm, np.arange(coarse.shape[1]) * step_mm
    # (1 - (d/R)^2)^2 has its half maximum at d = 0.54 R; R >= 1.5 samples keeps the coarse field resolved
    radius = max(width_mm / 1.08, 1.5 * step_mm)
    for pa, pb, w in pairs:
        a = np.array([pa[1] * step_mm, pa[0] * step_mm, 0.0])
        b = np.array([pb[1] * step_mm, pb[0] * step_mm, 0.0])
        d, _ = segment_distance(cols[None, :], rows[:, None], np.zeros((1, 1)), a, b)
        bump = np.clip(1.0 - (d / radius) ** 2, 0.0, 1.0) ** 2
        out = np.minimum(out, (-hu * w / heaviest * bump).astype(np.float32))
    return out


def _splat(shape: tuple[int, int], ys: np.ndarray, xs: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Bilinear splat of weights ``w`` at fractional pixels ``(ys, xs)`` onto a float32 ``shape`` image."""
    ny, nx = shape
    y0, x0 = np.floor(ys), np.floor(xs)
    fy, fx = ys - y0, xs - x0
    y0, x0 = y0.astype(np.int64), x0.astype(np.int64)
    acc = np.zeros(ny * nx, dtype=np.float64)
    for dy, dx, ww in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        yy, xx = y0 + dy, x0 + dx
        ok = (yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx)
        acc += np.bincount(yy[ok] * nx + xx[ok], weights=(w * ww)[ok], minlength=ny * nx)
    return acc.reshape(ny, nx).astype(np.float32)


def streak_image(
    rng: np.random.Generator, shape: tuple[int, int], sources: np.ndarray, params: ArtefactParams, h: float
) -> np.ndarray:
    """Thin streaks (float32 ``(Y, X)`` HU) through random ``sources`` (``(K, 2)`` fractional pixels y, x)."""
    lo, hi = params.streaks_per_slice
    n = int(rng.integers(lo, hi + 1))
    ny, nx = shape
    span = 1.5 * max(ny, nx)
    t = np.arange(-span, span, 0.5)
    ys_all, xs_all, w_all = [], [], []
    for _ in range(n):
        y, x = sources[int(rng.integers(len(sources)))]
        angle = rng.uniform(0.0, np.pi)
        amp = rng.uniform(*params.streak_hu) * (1.0 if rng.random() < 0.5 else -1.0)
        ys, xs = y + t * np.sin(angle), x + t * np.cos(angle)
        ok = (ys > -1) & (ys < ny) & (xs > -1) & (xs < nx)
        ys_all.append(ys[ok])
        xs_all.append(xs[ok])
        # 2 points per pixel of length: weight amp / 2 gives a line of about amp HU, 1-2 pixels wide
        w_all.append(0.5 * amp / (1.0 + np.abs(t[ok]) * h / params.streak_fade_mm))
    if n == 0:
        return np.zeros(shape, dtype=np.float32)
    return _splat(shape, np.concatenate(ys_all), np.concatenate(xs_all), np.concatenate(w_all))


def starvation_image(rng: np.random.Generator, shape: tuple[int, int], sd_hu: float, angle_deg: float) -> np.ndarray:
    """Lateral streaky noise (float32 ``(Y, X)`` HU, SD about ``sd_hu``): random rows sheared to 2 directions."""
    ny, nx = shape
    out = np.zeros(shape, dtype=np.float32)
    x = (np.arange(nx, dtype=np.float32) - nx / 2.0)[None, :]
    rows = np.arange(ny, dtype=np.float32)[:, None]
    for _ in range(2):
        slope = np.float32(np.tan(np.deg2rad(rng.uniform(-angle_deg, angle_deg))))
        r = rng.standard_normal(ny + 2 * nx + 2).astype(np.float32)
        u = rows - x * slope + np.float32(nx + 1)  # in [1, ny + 2 nx]
        i0 = np.floor(u)
        f = u - i0
        i0 = i0.astype(np.int64)
        out += r[i0] * (1 - f) + r[i0 + 1] * f
    out *= np.float32(sd_hu / np.sqrt(2.0 * (2.0 / 3.0)))  # E[(1-f)^2 + f^2] = 2/3 for a uniform f
    return out


class ArtefactRenderer:
    """Adds the image-domain artefacts to chunks of slices (callable ``(block, k0)``, ``block`` modified).

    Args:
        params: the scan's :class:`ArtefactParams`.
        geom: its geometry (pixel size, slice count).
        streak_rng, starvation_rng: generators of the scanner stream's substreams; the affected slices are
            drawn here, the per-slice details as the slices come (in order).
    """

    def __init__(
        self,
        params: ArtefactParams,
        geom: Geometry,
        streak_rng: np.random.Generator,
        starvation_rng: np.random.Generator,
    ) -> None:
        self.p = params
        self.h = geom.h
        ny = nx = geom.size
        self.c = c = max(1, geom.size // COARSE)
        self.plan_y = _interp_plan(ny, c, len(range(c // 2, ny, c)))
        self.plan_x = _interp_plan(nx, c, len(range(c // 2, nx, c)))
        self.streak_rng = streak_rng
        self.starvation_rng = starvation_rng
        self.streak_slices = (
            streak_rng.random(geom.nz) < params.streak_fraction
            if params.streak_hu is not None
            else np.zeros(geom.nz, bool)
        )
        self.nz, self.sz = geom.nz, geom.sz
        self._low: np.ndarray | None = None  # the last smooth field and its slice (reused within FIELD_DZ_MM)
        self._low_k = -1
        self._full: np.ndarray | None = None  # its interpolation to the full grid (image-domain path)
        self.starvation_start = int(round(geom.nz * (1.0 - params.starvation_fraction)))

    @property
    def coarse_step(self) -> int:
        """Pixels between the coarse samples of the smooth fields (they sit at ``c // 2 + c i``)."""
        return self.c

    @property
    def smooth(self) -> bool:
        """Whether cupping or bands (the smooth fields) are on."""
        return self.p.cupping_hu > 0 or self.p.band_hu > 0

    def __call__(self, block: np.ndarray, k0: int, low_out: np.ndarray | None = None) -> None:
        """Add the artefacts to ``block`` (float32 ``(n, Y, X)`` HU, slices ``k0 ..``) in place.

        With ``low_out`` (float32 ``(n, m, m')``) the smooth fields' coarse samples are written there instead of
        being interpolated into ``block`` (the caller adds them in Fourier space).
        """
        p = self.p
        c, step = self.c, self.c * self.h
        for i in range(block.shape[0]):
            k = k0 + i
            sl = block[i]
            coarse = sl[c // 2 :: c, c // 2 :: c]  # point samples every c pixels (about 64 x 64)
            if p.cupping_hu > 0 or p.band_hu > 0:
                low = self._low if self._low_k >= 0 and (k - self._low_k) * self.sz < FIELD_DZ_MM else None
                if low is None:
                    low = np.zeros(coarse.shape, dtype=np.float32)
                    if p.cupping_hu > 0:
                        low += cupping_field(coarse, step, p.cupping_hu)
                    if p.band_hu > 0:
                        low += band_field(coarse, step, p.bone_hu, p.band_width_mm, p.band_hu)
                    self._low, self._low_k, self._full = low, k, None
                if low_out is not None:
                    low_out[i] = low
                else:
                    if self._full is None:
                        self._full = _upsample(low, self.plan_y, self.plan_x)
                    sl += self._full
            if self.streak_slices[k]:
                sl += streak_image(self.streak_rng, sl.shape, self._sources(coarse), p, self.h)
            if p.starvation_hu > 0 and k >= self.starvation_start:
                level = p.starvation_hu * (k - self.starvation_start + 1) / (self.nz - self.starvation_start)
                sl += starvation_image(self.starvation_rng, sl.shape, level, p.starvation_angle_deg)

    def _sources(self, coarse: np.ndarray) -> np.ndarray:
        """Streak sources ``(K, 2)`` fine-pixel (y, x): dense coarse samples, else tissue, else the centre."""
        for mask in (coarse > self.p.bone_hu, coarse > TISSUE_HU):
            if mask.any():
                return np.argwhere(mask) * self.c + self.c // 2
        return np.array([[coarse.shape[0] * self.c / 2.0, coarse.shape[1] * self.c / 2.0]])
