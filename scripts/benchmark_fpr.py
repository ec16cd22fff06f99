#!/usr/bin/env python
"""Benchmark: false-positive reduction of 30 candidates of a 512x512x~300 synthetic scan.

Times ``PatchScorer.score`` (patch extraction from the scan in HU + WideResNet inference; median of
``--repeats`` after one warm-up call) and, separately, loading the model, and prints the process's peak resident
memory (the phantom included). Candidates: the phantom's nodules plus points from its LUNA16-style candidate list,
``--candidates`` in all.

    python scripts/benchmark_fpr.py [--model DIR] [--seed 11] [--candidates 30] [--repeats 5]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import numpy as np

from lungcad.fpr.inference import PatchScorer
from lungcad.patches import extract_patches
from lungcad.pipeline import default_model_dir
from lungcad.synth import make_phantom


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="FPR model directory (default: the bundled one)")
    ap.add_argument("--seed", type=int, default=11, help="phantom seed (11: 302 slices of 1 mm)")
    ap.add_argument("--candidates", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    phantom = make_phantom(args.seed, size=512)
    scan = phantom.scan
    centres = np.asarray(phantom.candidates, float)[: args.candidates]
    if len(centres) < args.candidates:
        raise SystemExit(f"the phantom has only {len(centres)} candidate points")
    t0 = time.perf_counter()
    scorer = PatchScorer.load(args.model or default_model_dir("fpr"))
    load_s = time.perf_counter() - t0
    print(f"scan {scan.shape} (z, y, x); model {scorer.model.name} ({scorer.model.count_params()} parameters)")
    scorer.score(scan, centres)  # warm-up
    total, patches = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        extract_patches(scan, centres, scorer.config.patches)
        patches.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        scores = scorer.score(scan, centres)
        total.append(time.perf_counter() - t0)
    med, med_patches = statistics.median(total), statistics.median(patches)
    print(
        f"FPR of {len(centres)} candidates: {med:.3f} s (patches {med_patches:.3f} s, WideResNet "
        f"{med - med_patches:.3f} s); model load {load_s:.2f} s; median of {args.repeats}; "
        f"scores {np.round(np.sort(scores)[::-1][:5], 3).tolist()}..."
    )
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")


if __name__ == "__main__":
    main()
