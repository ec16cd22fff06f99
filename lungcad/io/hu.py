"""Hounsfield-unit conventions shared by every reader."""

from __future__ import annotations

import numpy as np

#: HU written where the scanner wrote padding (outside the reconstruction circle): air.
PADDING_HU = -1024
#: HU at or below which a value is padding, never tissue (air is -1000): catches DSB's raw -2000
#: (HU -3024 with intercept -1024) and LUNA16's -3024.
PADDING_THRESHOLD_HU = -2000


def map_padding(hu: np.ndarray, extra: np.ndarray | None = None) -> int:
    """Set padding voxels of ``hu`` (in place) to :data:`PADDING_HU`; returns how many there were.

    Args:
        hu: HU array of any shape (float or int).
        extra: optional bool mask of the same shape marking padding found another way (PixelPaddingValue).
    """
    mask = hu <= PADDING_THRESHOLD_HU
    if extra is not None:
        mask |= extra
    hu[mask] = PADDING_HU
    return int(mask.sum())
