"""Score fusion: the FPR's nodule probability weighted with the U-Net's own evidence for the candidate.

The WideResNet sees a 32 mm neighbourhood; the U-Net saw whole slices and says how strongly, and over how many
voxels, it found a nodule there. The stage's ``probability`` is their weighted geometric mean::

    probability = fpr ** (1 - w) * unet ** w        (w = ``unet_weight`` in the model's fpr.yaml)

with ``unet`` the candidate's *mean* U-Net probability over its connected component (the ``mean_probability``
column of the candidate table): the maximum saturates at 1.0 for most true and many false candidates, the mean
does not. ``w = 0`` is the FPR alone. Candidates without a U-Net mean (a blob-filter candidate, a table from
elsewhere) keep the FPR's probability. ``lungcad train fpr`` chooses ``w`` on its validation scans
(:func:`choose_unet_weight`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

#: The candidate-table column fused with the FPR's probability.
UNET_SCORE_COLUMN = "mean_probability"
#: Probabilities are clipped to at least this before the geometric mean (a 0 would veto the other score).
FLOOR = 1e-6


def check_unet_weight(weight: float) -> None:
    """ValueError unless ``0 <= weight < 1`` (1 would ignore the FPR)."""
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"unet_weight {weight}: expected 0 <= unet_weight < 1")


def fuse(fpr: np.ndarray, unet: np.ndarray | None, weight: float) -> np.ndarray:
    """Fused probability (N,) in [0, 1] of FPR probabilities (N,) and U-Net mean probabilities (N,) or None;
    rows whose U-Net value is NaN, and every row when ``unet`` is None or ``weight`` is 0, keep ``fpr``."""
    fpr = np.asarray(fpr, float)
    if unet is None or weight == 0.0:
        return fpr
    unet = np.asarray(unet, float)
    fused = np.clip(fpr, FLOOR, 1.0) ** (1.0 - weight) * np.clip(unet, FLOOR, 1.0) ** weight
    return np.where(np.isnan(unet), fpr, fused)


def choose_unet_weight(
    cpm_of: Callable[[np.ndarray], float], fpr: np.ndarray, unet: np.ndarray, weights: Sequence[float]
) -> tuple[float, dict[float, float]]:
    """The weight of ``weights`` whose fused scores give the highest ``cpm_of(probability)`` (ties go to the
    smaller weight: the FPR alone unless the U-Net adds something), and the CPM of every weight."""
    table = {float(w): float(cpm_of(fuse(fpr, unet, float(w)))) for w in sorted(weights)}
    # CPMs equal but for float rounding (the same marks counted in another order) are a tie
    best = max(table, key=lambda w: (round(table[w], 9), -w))
    return best, table
