#!/usr/bin/env python
"""Benchmark: the candidate stage (preprocess + U-Net + merge) on a 512x512x~300 synthetic scan.

Times ``CandidateDetector.detect`` (median of ``--repeats``, after one warm-up call that builds the
TensorFlow graph) and splits it into preprocessing and U-Net + merging. With ``--seed-slices K`` it also
times the seed design's way for comparison in the same run: ``model.predict`` of the 32..512-filter U-Net
on K full 512x512 slices, extrapolated to all slices.

    python scripts/benchmark_unet.py [--model DIR] [--seed 11] [--repeats 3] [--seed-slices 4]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from lungcad.pipeline import default_model_dir
from lungcad.pipeline.detector import CandidateDetector
from lungcad.synth import make_phantom


def seed_design_seconds(scan, slices: int) -> float:
    """Seconds for the seed's U-Net (32..512 filters, full 512x512 slices, model.predict) over the scan."""
    from lungcad.candidates.unet import UNetConfig, build_unet

    cfg = UNetConfig(
        depth=5,
        base_filters=32,
        batch_norm=False,
        dropout=0.0,
        input_size=(512, 512),
        context_slices=0,
        upsampling="nearest",
    )
    model = build_unet(cfg)
    x = np.zeros((slices, 512, 512, 1), np.float32)
    model.predict(x[:1], verbose=0)
    t0 = time.perf_counter()
    model.predict(x, batch_size=1, verbose=0)
    return (time.perf_counter() - t0) / slices * scan.shape[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="U-Net model directory (default: the bundled one)")
    ap.add_argument("--seed", type=int, default=11, help="phantom seed (11: 302 slices of 1 mm)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed-slices", type=int, default=0, help="also time the seed design on K slices")
    args = ap.parse_args()
    scan = make_phantom(args.seed, size=512).scan
    detector = CandidateDetector.load(args.model or default_model_dir("unet"))
    print(f"scan {scan.shape} (z, y, x), spacing {tuple(round(s, 3) for s in scan.spacing)} mm")
    detector.detect(scan)  # warm-up: graph building
    runs = []
    for _ in range(args.repeats):
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        table = detector.detect(scan, timings)
        timings["total_s"] = time.perf_counter() - t0
        runs.append(timings)
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(
        f"candidate stage: {med['total_s']:.2f} s (preprocess {med['preprocess_s']:.2f} s, U-Net + merge "
        f"{med['unet_and_merge_s']:.2f} s), {len(table)} candidates; median of {args.repeats}"
    )
    if args.seed_slices:
        seconds = seed_design_seconds(scan, args.seed_slices)
        print(
            f"seed design (32..512 filters, 512x512, model.predict), extrapolated: {seconds:.0f} s "
            f"({seconds / med['unet_and_merge_s']:.0f}x slower than lungcad's U-Net + merge)"
        )


if __name__ == "__main__":
    main()
