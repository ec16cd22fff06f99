#!/usr/bin/env python
"""Benchmark: the whole pipeline on one 512x512x~300 synthetic scan as DICOM and as ``.mhd``, float32 and bfloat16;
or (``--batch N``) scans per hour of ``lungcad detect --workers 2`` over N such phantoms in both layouts.

One scan (default). The phantom is written once as a DICOM series and as ``.mhd`` (kept in ``--workdir``). For
each layout and each precision (``--precision``: float32 and bfloat16 models, :mod:`lungcad.pipeline.precision`):

- start-up: ``lungcad detect SCAN --precision P`` in a fresh process: seconds from its start to the first scan's
  read (its log line), the summary's ``start-up`` (that plus loading the models: importing TensorFlow, reading the
  weights), its whole wall time and its peak resident memory (RSS);
- each stage (read, preprocess, U-Net + merge, FPR, risk, pictures) and the total after start-up, the median of
  ``--repeats`` calls of ``lungcad.pipeline.detect_one`` in this process after one warm-up call (graph building);
- beside it the seed design's candidate stage timed in the same run on the same scan (``model.predict`` of the
  32..512-filter U-Net on ``--seed-slices`` full 512x512 slices, extrapolated to every slice), and the speed-ups.

Batch (``--batch N``). ``lungcad synth --scans N --format both --max-slices 300`` once into ``WORKDIR/batch-data``
(reused by later runs), then for each layout ``lungcad detect FOLDER --workers W`` (pictures on) in a fresh
process: scans per hour, and where a scan's seconds go (each stage, the rest of a scan: models loaded by a worker's
first scan, CSV and JSON; the batch's own: workers starting, TensorFlow imported per worker, ``index.html``).

    python scripts/benchmark_detect.py [--quick] [--workdir DIR] [--seed 11] [--repeats 2] [--seed-slices 4]
    python scripts/benchmark_detect.py --batch 20 [--workers 2] [--workdir DIR]

``--precision``: float32, bfloat16 (every model) and auto (what ``lungcad detect`` runs by default) unless given.
``--quick``: one repeat, 2 seed-design slices, float32 and auto, the start-up of the first run only (batch: 4
scans). Run it from the repository root with ``PYTHONPATH=.`` in a development checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmark_unet import seed_design_seconds

from lungcad.io import find_scans, write_dicom_series, write_mhd
from lungcad.pipeline import default_stage, detect_one, model_set
from lungcad.synth import make_phantom

STAGES = ("read_s", "preprocess_s", "unet_and_merge_s", "fpr_s", "risk_s", "pictures_s")
NAMES = {"read_s": "read", "preprocess_s": "preprocess", "unet_and_merge_s": "U-Net+merge", "fpr_s": "FPR"}


def lungcad_process(args: list[str], watch: str | None = None) -> dict:
    """``lungcad ARGS`` in a fresh process: its stdout, wall seconds, CPU seconds (user + system, its worker
    processes included), peak RSS (MB) and the seconds from its start to the first stderr line containing
    ``watch``."""
    t0 = time.perf_counter()
    command = [sys.executable, "-m", "lungcad.cli.main", *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen, tail = float("nan"), []
    for line in proc.stderr:
        tail = (tail + [line])[-20:]
        if watch and watch in line and seen != seen:
            seen = time.perf_counter() - t0
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed: {stdout}{''.join(tail)}")
    cpu = usage.ru_utime + usage.ru_stime  # Linux: the child's and its reaped children's (the pool's workers)
    return {"stdout": stdout, "wall_s": wall, "cpu_s": cpu, "peak_mb": usage.ru_maxrss / 1024, "seen_s": seen}


def startup(path: Path, out: Path, precision: str, model: Path | None = None) -> dict:
    """``lungcad detect path -o out --precision P`` in a fresh process: seconds to the first scan's read, the
    summary's start-up, its wall time and peak RSS."""
    extra = ["--model", str(model)] if model else []
    command = ["detect", str(path), "-o", str(out), "--no-progress", "--precision", precision, *extra]
    run = lungcad_process(command, ": reading ")
    found = re.search(r"start-up ([\d.]+) s", run["stdout"])
    return {**run, "startup_s": float(found[1]) if found else float("nan")}


def bench_scan(work: Path, seed: int) -> dict[str, Path]:
    """The phantom of ``seed`` (512x512) written as ``.mhd`` and as a DICOM series, once (reused when there)."""
    mhd, dicom = work / "bench.mhd", work / "bench_dicom"
    if not mhd.exists() or not dicom.is_dir():
        scan = make_phantom(seed, size=512).scan
        write_mhd(scan.with_array(scan.array, id="bench"), mhd)
        write_dicom_series(scan.with_array(scan.array, id="bench_dicom"), dicom)
    return {"dicom": dicom, "mhd": mhd}


def one_scan(args: argparse.Namespace, work: Path) -> None:
    paths = bench_scan(work, args.seed)
    from lungcad.io import load_scan

    scan = load_scan(paths["mhd"])
    stage = default_stage()
    print(f"scan {scan.shape} (z, y, x), spacing {tuple(round(s, 3) for s in scan.spacing)} mm; stages up to {stage}")
    print(f"CPU: {os.cpu_count()} cores; load average before: {os.getloadavg()[0]:.1f} (a shared machine)")
    rows = []
    for layout, path in paths.items():
        for precision in args.precision:
            row = {"layout": layout, "precision": precision}
            if not args.quick or not rows:
                fresh = Path(tempfile.mkdtemp(prefix=f"startup-{layout}-{precision}-", dir=work))  # not a resume
                row["startup"] = startup(path, fresh, precision, args.model)
            models = model_set(stage, args.model, precision=precision)
            ref = find_scans([path])[0]
            detect_one(ref, out=work / f"warmup-{layout}-{precision}", models=models)  # graph building
            runs = []
            for i in range(args.repeats):
                out = work / f"run-{layout}-{precision}-{i}"
                t0 = time.perf_counter()
                table = detect_one(ref, out=out, models=models)
                record = json.loads((out / "scans" / f"{ref.id}.json").read_text())
                runs.append({**record["timings_s"], "wall_s": time.perf_counter() - t0, "candidates": len(table)})
                row["precisions"] = record["precision"]
            row["timings"] = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in (*STAGES, "total_s")}
            row["candidates"] = runs[0]["candidates"]
            rows.append(row)
            print_row(row)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (RSS) of this process (every layout and precision loaded): {peak_mb:.0f} MB")
    seconds = seed_design_seconds(scan, args.seed_slices)
    print(
        f"seed design's candidate stage (32..512 filters, full 512x512 slices, model.predict; {args.seed_slices} "
        f"slices timed, extrapolated to {scan.shape[0]}): {seconds:.0f} s, in the same run"
    )
    for row in rows:
        t = row["timings"]
        print(
            f"  {row['layout']:5} {row['precision']:8}: whole pipeline {t['total_s']:.2f} s after start-up = "
            f"{seconds / t['total_s']:.1f}x faster than the seed's candidate stage alone "
            f"({seconds / t['unet_and_merge_s']:.0f}x its U-Net + merge)"
        )
    for layout in paths:
        by = {r["precision"]: r["timings"] for r in rows if r["layout"] == layout}
        for other in ("bfloat16", "auto"):
            if {"float32", other} <= set(by):
                a, b = by["float32"], by[other]
                parts = ", ".join(f"{NAMES.get(k, k[:-2])} {a[k] / b[k]:.2f}x" for k in STAGES[1:5] if b.get(k))
                print(f"  {layout}: {other} vs float32: total {a['total_s'] / b['total_s']:.2f}x faster ({parts})")


def print_row(row: dict) -> None:
    t = row["timings"]
    parts = ", ".join(f"{NAMES.get(k, k[:-2])} {t[k]:.2f}" for k in STAGES if t.get(k))
    first = ""
    if "startup" in row:
        s = row["startup"]
        first = (
            f"; fresh lungcad detect: {s['seen_s']:.2f} s to the first read, start-up {s['startup_s']:.2f} s, "
            f"{s['wall_s']:.1f} s wall, peak RSS {s['peak_mb']:.0f} MB"
        )
    print(
        f"{row['layout']:5} {row['precision']:8} ({json.dumps(row.get('precisions'))}): total {t['total_s']:.2f} s "
        f"after start-up ({parts} s); {row['candidates']} candidates{first}",
        flush=True,
    )


def batch(args: argparse.Namespace, work: Path) -> None:
    """``--batch N``: scans per hour of ``lungcad detect --workers W`` per layout, and where the seconds go."""
    data = work / "batch-data"
    n = 4 if args.quick else args.batch
    if len(list((data / "luna16").glob("subset*/*.mhd"))) < n:
        print(f"making {n} phantoms (512x512, <= 300 slices) as DICOM and .mhd in {data} (once)", flush=True)
        lungcad_process(
            ["synth", "-o", str(data), "--scans", str(n), "--seed", "7100", "--format", "both", "--max-slices",
             "300", "--workers", str(args.workers), "--no-progress", "-q"]
        )  # fmt: skip
    layouts = {"dicom": data / "dsb2017", "mhd": data / "luna16"}
    for layout, folder in layouts.items():
        out = work / f"batch-{layout}-{args.precision[0]}-{int(time.time())}"
        load = os.getloadavg()[0]
        run = lungcad_process(
            ["detect", str(folder), "-o", str(out), "--workers", str(args.workers), "--no-progress", "--precision",
             args.precision[0]]
        )  # fmt: skip
        records = [json.loads(p.read_text()) for p in sorted((out / "scans").glob("*.json"))]
        done = len(records)
        per_scan = {k: statistics.mean(r["timings_s"].get(k, 0.0) for r in records) for k in (*STAGES, "total_s")}
        rest = per_scan["total_s"] - sum(per_scan[k] for k in STAGES)
        busy = per_scan["total_s"] * done / args.workers
        slices = statistics.mean(r["geometry"]["slices"] for r in records) if records else 0
        print(
            f"{layout:5}: {done} scans (512x512x{slices:.0f} on average) in {run['wall_s']:.1f} s with "
            f"--workers {args.workers} = {3600 * done / run['wall_s']:.0f} scans/hour "
            f"({run['wall_s'] / done:.2f} s/scan; load average before {load:.1f}); precision "
            f"{records[0]['precision'] if records else '?'}",
            flush=True,
        )
        parts = ", ".join(f"{NAMES.get(k, k[:-2])} {per_scan[k]:.2f}" for k in STAGES)
        print(
            f"       per scan in a worker: {per_scan['total_s']:.2f} s = {parts}, rest {rest:.2f} s (models loaded by "
            f"each worker's first scan, CSV and JSON); the batch's own: {run['wall_s'] - busy:.1f} s (workers "
            f"starting and importing TensorFlow, waiting for the last scan, candidates.csv and index.html); peak RSS "
            f"of the main process {run['peak_mb']:.0f} MB"
        )
        cores = len(os.sched_getaffinity(0))
        print(
            f"       CPU time: {run['cpu_s'] / done:.1f} s per scan (all processes) = "
            f"{3600 * cores / (run['cpu_s'] / done):.0f} scans/hour if this run had the {cores} cores to itself "
            f"(it got {run['cpu_s'] / run['wall_s'] / cores:.0%} of them; load average after "
            f"{os.getloadavg()[0]:.1f})"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=11, help="phantom seed (11: 302 slices of 1 mm)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed-slices", type=int, default=4, help="slices the seed design is timed on (extrapolated)")
    ap.add_argument("--workdir", type=Path, help="where the scans and outputs go (default: a temporary folder)")
    ap.add_argument("--model", type=Path, help="U-Net model directory to time (default: the bundled one)")
    ap.add_argument(
        "--precision",
        nargs="+",
        choices=["auto", "float32", "bfloat16"],
        help="precisions to time (default: float32 bfloat16 auto; --quick: float32 auto; --batch: auto)",
    )
    ap.add_argument("--quick", action="store_true", help="1 repeat, 2 seed slices, one start-up (batch: 4 scans)")
    ap.add_argument("--batch", type=int, metavar="N", help="scans/hour of lungcad detect over N phantoms per layout")
    ap.add_argument("--workers", type=int, default=2, help="--batch: lungcad detect's --workers")
    args = ap.parse_args()
    if args.quick:
        args.repeats, args.seed_slices = 1, 2
    default = ["auto"] if args.batch else ["float32", "auto"] if args.quick else ["float32", "bfloat16", "auto"]
    args.precision = args.precision or default
    work = args.workdir or Path(tempfile.mkdtemp(prefix="lungcad-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    batch(args, work) if args.batch else one_scan(args, work)


if __name__ == "__main__":
    main()
