"""Training/validation splits of scan ids (seeded, reproducible)."""

from __future__ import annotations

import numpy as np


def split_ids(ids: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Seeded split of scan ids into (train, validation), at least one of each when possible."""
    order = list(np.random.default_rng(seed).permutation(sorted(ids)))
    n_val = min(max(1, int(round(fraction * len(order)))), len(order) - 1) if len(order) > 1 else 0
    return sorted(order[n_val:]), sorted(order[:n_val])
