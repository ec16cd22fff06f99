#!/usr/bin/env python
"""Benchmark: the whole pipeline on one 512x512x~300 synthetic scan, as ``lungcad detect`` runs it.

Writes the phantom as ``.mhd``, then times ``lungcad.pipeline.detect_one`` (read, preprocess, U-Net + merge, FPR,
risk, pictures; the stages the bundled models allow) after one warm-up call that builds the TensorFlow graphs,
and reports the peak resident memory of this process. First it times the start-up of ``lungcad detect`` on that
scan in a fresh process: from the process's start to the first scan's read beginning (its log line), and the
summary's ``start-up`` (that plus loading the models: importing TensorFlow, reading the weights). With
``--seed-slices K`` it also times, in the same run,
the seed design's candidate stage: ``model.predict`` of the 32..512-filter U-Net on K full 512x512 slices,
extrapolated to all slices.

    python scripts/benchmark_detect.py [--seed 11] [--repeats 2] [--seed-slices 4] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmark_unet import seed_design_seconds

from lungcad.io import ScanRef, write_mhd
from lungcad.pipeline import default_stage, detect_one, model_set
from lungcad.synth import make_phantom


def startup_seconds(path: Path, out: Path) -> tuple[float, float | None]:
    """``lungcad detect path -o out`` in a fresh process: seconds from its start to the first scan's read beginning
    (its "reading" log line, timed here), and the start-up its summary line reports (None if it has none)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lungcad.cli.main", "detect", str(path), "-o", str(out), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    to_read = float("nan")
    for line in proc.stderr:
        if ": reading " in line and to_read != to_read:
            to_read = time.perf_counter() - t0
    stdout = proc.stdout.read()
    if proc.wait() != 0:
        raise SystemExit(f"lungcad detect failed: {stdout}")
    found = re.search(r"start-up ([\d.]+) s", stdout)
    return to_read, float(found[1]) if found else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=11, help="phantom seed (11: 302 slices of 1 mm)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed-slices", type=int, default=0, help="also time the seed design on K slices")
    ap.add_argument("--workdir", type=Path, help="where the scan and outputs go (default: a temporary folder)")
    ap.add_argument("--model", type=Path, help="U-Net model directory to time (default: the bundled one)")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="lungcad-bench-"))
    scan = make_phantom(args.seed, size=512).scan
    path = write_mhd(scan.with_array(scan.array, id="bench"), work / "bench.mhd")
    stage = default_stage()
    models = model_set(stage, args.model)
    ref = ScanRef("bench", path)
    print(f"scan {scan.shape} (z, y, x), spacing {tuple(round(s, 3) for s in scan.spacing)} mm; stages up to {stage}")
    if args.model is None:  # lungcad detect runs the bundled models
        to_read, startup = startup_seconds(path, work / "startup")
        print(
            f"start-up of lungcad detect (a fresh process): {to_read:.2f} s to the first scan's read, "
            f"{startup} s with the models loaded (TensorFlow imported, weights read; the summary's figure)"
        )
    detect_one(ref, out=work / "warmup", models=models)  # graph building
    runs = []
    for i in range(args.repeats):
        t0 = time.perf_counter()
        table = detect_one(ref, out=work / f"run{i}", models=models)
        runs.append({"total_s": time.perf_counter() - t0, "candidates": len(table)})

    timings = json.loads((work / "run0" / "scans" / "bench.json").read_text())["timings_s"]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    total = statistics.median(r["total_s"] for r in runs)
    parts = ", ".join(f"{k[:-2]} {v:.2f} s" for k, v in timings.items() if k != "total_s")
    print(f"end to end: {total:.2f} s (median of {args.repeats}; {parts}); {runs[0]['candidates']} candidates")
    print(f"peak memory (RSS) of this process: {peak_mb:.0f} MB")
    if args.seed_slices:
        seconds = seed_design_seconds(scan, args.seed_slices)
        unet = timings["unet_and_merge_s"]
        print(
            f"seed design's candidate stage (32..512 filters, full 512x512 slices, model.predict), extrapolated: "
            f"{seconds:.0f} s = {seconds / total:.1f}x lungcad's whole pipeline "
            f"({seconds / unet:.0f}x its U-Net + merge)"
        )


if __name__ == "__main__":
    main()
