"""HU windowing and normalisation."""

from __future__ import annotations

import numpy as np


def window_normalise(hu: np.ndarray, window: tuple[float, float], mode: str = "minmax") -> np.ndarray:
    """Clip HU to ``window`` and, for ``mode="minmax"``, map it linearly to [0, 1].

    Args:
        hu: any-shape HU array.
        window: (low, high) HU.
        mode: "minmax" -> float32 in [0, 1]; "none" -> clipped HU as float32.
    """
    lo, hi = (float(v) for v in window)
    out = np.clip(hu.astype(np.float32, copy=False), lo, hi)
    if mode == "minmax":
        out -= lo
        out *= 1.0 / (hi - lo)
    elif mode != "none":
        raise ValueError(f"normalise mode must be 'minmax' or 'none', got {mode!r}")
    return out


def denormalise(values: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Inverse of the minmax map: [0, 1] -> HU (inside the window)."""
    lo, hi = (float(v) for v in window)
    return values.astype(np.float32) * (hi - lo) + lo
