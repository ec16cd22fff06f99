#!/usr/bin/env python
"""Lung-mask quality on synthetic phantoms: Dice against the phantom's lung labels (3 and 4) and the
share of every juxtapleural nodule's voxels inside the mask.

A nodule's voxels are those of its annotated sphere (diameter_mm) that lie inside the phantom's lung
labels (nodules are drawn inside the lung cavity only).

    python scripts/evaluate_lungmask.py [--scans 10] [--seed 900] [--size 512]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from lungcad.evaluate.segmentation import dice, juxtapleural_coverage
from lungcad.preprocess import default_config, lung_mask
from lungcad.synth import make_phantom


def evaluate_phantom(seed: int, index: int, size: int) -> tuple[float, list[tuple[float, float]], float]:
    """(Dice, [(diameter_mm, fraction inside) per juxtapleural nodule], seconds) for one phantom."""
    phantom = make_phantom(seed, index, size=size)
    truth = np.isin(phantom.lungs, (3, 4))
    t0 = time.perf_counter()
    mask = lung_mask(phantom.scan, default_config().lung_mask)
    seconds = time.perf_counter() - t0
    return dice(mask, truth), juxtapleural_coverage(phantom, mask), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scans", type=int, default=10)
    ap.add_argument("--seed", type=int, default=900)
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args()
    dices, fractions = [], []
    for index in range(args.scans):
        dice, nodules, seconds = evaluate_phantom(args.seed, index, args.size)
        dices.append(dice)
        fractions += [f for _, f in nodules]
        worst = min((f for _, f in nodules), default=float("nan"))
        print(
            f"scan {index}: dice {dice:.4f}, juxtapleural nodules {len(nodules)} (worst inside {worst:.3f}), "
            f"mask {seconds:.2f} s"
        )
    print(
        f"{args.scans} phantoms (seed {args.seed}, size {args.size}): Dice min {min(dices):.4f} mean "
        f"{np.mean(dices):.4f}; {len(fractions)} juxtapleural nodules, inside fraction min "
        f"{min(fractions, default=float('nan')):.3f}, mean {np.mean(fractions) if fractions else float('nan'):.3f}"
    )


if __name__ == "__main__":
    main()
