"""Plain helper functions for tests (importable as ``helpers``: pytest's pythonpath includes tests/)."""

from __future__ import annotations

import numpy as np


def rotation(axis: str, degrees: float) -> np.ndarray:
    """3x3 rotation about world axis 'x', 'y' or 'z'."""
    t = np.radians(degrees)
    c, s = np.cos(t), np.sin(t)
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r
