"""Crop a scan to a bounding box, keeping the world geometry exact.

A crop starting at voxel ``(z0, y0, x0)`` moves the origin to that voxel's world position; direction
and spacing are unchanged, so every later coordinate maps back to world mm through the cropped scan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lungcad.scan import CTScan


@dataclass(frozen=True)
class Box:
    """Half-open voxel box ``[start, stop)`` per axis (z, y, x)."""

    start: tuple[int, int, int]
    stop: tuple[int, int, int]

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop))  # type: ignore[return-value]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(b - a for a, b in zip(self.start, self.stop))  # type: ignore[return-value]


def bounding_box(mask: np.ndarray, spacing_zyx, margin_mm: float) -> Box:
    """Bounding box of ``mask`` (z, y, x) grown by ``margin_mm`` and clipped to the volume.

    An empty mask gives the whole volume (nothing is cropped away).
    """
    shape = mask.shape
    if not mask.any():
        return Box((0, 0, 0), tuple(shape))  # type: ignore[arg-type]
    start, stop = [], []
    for axis, spacing in enumerate(spacing_zyx):
        other = tuple(a for a in range(3) if a != axis)
        present = np.flatnonzero(mask.any(axis=other))
        pad = int(np.ceil(margin_mm / spacing))
        start.append(max(int(present[0]) - pad, 0))
        stop.append(min(int(present[-1]) + 1 + pad, shape[axis]))
    return Box(tuple(start), tuple(stop))  # type: ignore[arg-type]


def crop_scan(scan: CTScan, box: Box) -> CTScan:
    """The part of ``scan`` inside ``box``, with the origin moved to the box's first voxel."""
    origin = scan.voxel_to_world(np.asarray(box.start, dtype=np.float64))
    return scan.with_array(np.ascontiguousarray(scan.array[box.slices]), origin=tuple(origin))
