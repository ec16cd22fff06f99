"""Smooth random texture: value noise on a coarse lattice, smoothstep-interpolated (arithmetic only)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lungcad.synth.util import smoothstep


@dataclass(frozen=True)
class Lattice:
    """Random values on a regular lattice covering a box of patient space.

    Attributes:
        origin: xyz mm of lattice node ``[0, 0, 0]``.
        cell: lattice spacing, mm.
        values: float32 ``(nz, ny, nx)`` standard-normal values.
    """

    origin: tuple[float, float, float]
    cell: float
    values: np.ndarray


def make_lattice(rng: np.random.Generator, lo_xyz: np.ndarray, hi_xyz: np.ndarray, cell: float) -> Lattice:
    """A lattice with spacing ``cell`` mm covering the box ``lo_xyz``..``hi_xyz`` (mm) plus one cell."""
    lo = np.asarray(lo_xyz, dtype=np.float64) - cell
    n = np.ceil((np.asarray(hi_xyz) + cell - lo) / cell).astype(int) + 2
    values = rng.standard_normal((n[2], n[1], n[0])).astype(np.float32)
    return Lattice(tuple(float(v) for v in lo), float(cell), values)


def _axis_weights(lat: Lattice, coords: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower lattice index, upper index and smoothstep weight for 1-D ``coords`` along xyz ``axis``."""
    n = lat.values.shape[2 - axis]
    u = (np.asarray(coords, dtype=np.float64) - lat.origin[axis]) / lat.cell
    u = np.clip(u, 0.0, n - 1.000001)
    i0 = np.floor(u).astype(np.intp)
    return i0, i0 + 1, smoothstep(u - i0).astype(np.float32)


def lattice_slice(lat: Lattice, xs: np.ndarray, ys: np.ndarray, z: float) -> np.ndarray:
    """Texture on the axial plane ``z`` (mm) at columns ``xs`` and rows ``ys`` (1-D, mm): ``(len(ys), len(xs))``."""
    k0, k1, wz = _axis_weights(lat, np.array([z]), 2)
    plane = lat.values[k0[0]] * (1 - wz[0]) + lat.values[k1[0]] * wz[0]  # (ny, nx) lattice plane
    i0, i1, wx = _axis_weights(lat, xs, 0)
    rows = plane[:, i0] * (1 - wx) + plane[:, i1] * wx  # (ny_lattice, len(xs))
    j0, j1, wy = _axis_weights(lat, ys, 1)
    return rows[j0] * (1 - wy)[:, None] + rows[j1] * wy[:, None]


def lattice_points(lat: Lattice, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Texture at points (broadcastable arrays of x, y, z mm), trilinear with smoothstep weights."""
    x, y, z = np.broadcast_arrays(np.asarray(x), np.asarray(y), np.asarray(z))
    i0, i1, wx = _axis_weights(lat, x.ravel(), 0)
    j0, j1, wy = _axis_weights(lat, y.ravel(), 1)
    k0, k1, wz = _axis_weights(lat, z.ravel(), 2)
    v = lat.values
    c00 = v[k0, j0, i0] * (1 - wx) + v[k0, j0, i1] * wx
    c01 = v[k0, j1, i0] * (1 - wx) + v[k0, j1, i1] * wx
    c10 = v[k1, j0, i0] * (1 - wx) + v[k1, j0, i1] * wx
    c11 = v[k1, j1, i0] * (1 - wx) + v[k1, j1, i1] * wx
    c0 = c00 * (1 - wy) + c01 * wy
    c1 = c10 * (1 - wy) + c11 * wy
    return (c0 * (1 - wz) + c1 * wz).reshape(x.shape)
