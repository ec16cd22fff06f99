#!/usr/bin/env python
"""Benchmark: the blob filter (``detect --blobs``) on a 512x512x~300 synthetic scan.

Preprocesses the phantom as the bundled U-Net does, then times ``blob_candidates`` on that grid (median of
``--repeats``) and prints the peak memory of the process.

    python scripts/benchmark_blobs.py [--seed 11] [--config blobs] [--repeats 3]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import numpy as np

from lungcad.candidates.blobs import BlobConfig, blob_candidates
from lungcad.config import load_config
from lungcad.pipeline import default_model_dir
from lungcad.pipeline.detector import CandidateDetector
from lungcad.preprocess.pipeline import preprocess_scan
from lungcad.synth import make_phantom


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=11, help="phantom seed (11: 302 slices of 1 mm)")
    ap.add_argument("--config", default="blobs", help="blob-filter config (default: configs/blobs.yaml)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    phantom = make_phantom(args.seed, size=512)
    config = load_config(BlobConfig, args.config)
    pre = preprocess_scan(phantom.scan, CandidateDetector.load(default_model_dir("unet")).config.preprocess)
    lung = np.asarray(pre.lung_mask)
    seconds = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        table = blob_candidates(pre.scan.array, pre.scan, lung, config)
        seconds.append(time.perf_counter() - t0)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"scan {phantom.scan.shape} -> grid {pre.scan.shape} (z, y, x); {len(table)} blob candidates")
    print(f"blob_candidates: median {statistics.median(seconds):.2f} s of {args.repeats}; peak RSS {peak_gb:.2f} GB")


if __name__ == "__main__":
    main()
