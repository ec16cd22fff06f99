#!/usr/bin/env python
"""Benchmark: seconds to generate one 512x512 phantom, per synth config (today's phantoms and the randomized worlds).

For each config, phantoms ``(seed, 0 .. scans-1)`` are timed after a warm-up (LIDC-IDRI index, imports). Slice counts
differ from scan to scan (the worlds draw 0.6-3 mm slices), so ``--slice-mm 1`` fixes every config's slice spacing
at 1 mm (250-350 slices: the 512x512x300 scan of the budget); the figure that compares is seconds per 300 slices
(wall and CPU time: on a loaded machine the CPU time is the steadier one). Prints the peak memory of the process.

    python scripts/benchmark_synth.py [--configs synth,world_train,world_heldout] [--scans 4] [--slice-mm 1]
"""

from __future__ import annotations

import argparse
import resource
import time
from dataclasses import replace

import numpy as np

from lungcad.synth import load_synth_config, make_phantom


def time_config(name: str, seed: int, scans: int, size: int, slice_mm: float | None) -> dict:
    """Wall and CPU seconds per scan and per 300 slices of ``scans`` phantoms of config ``name`` (slice spacing
    ``slice_mm`` when given)."""
    config = load_synth_config(name)
    if slice_mm is not None:
        config = replace(config, geometry=replace(config.geometry, slice_spacing_range_mm=(slice_mm, slice_mm)))
    make_phantom(seed + 1, 0, size=64, config=config)  # warm-up: the LIDC index, first-call costs
    wall, cpu, slices = [], [], []
    for index in range(scans):
        t0, c0 = time.perf_counter(), time.process_time()
        phantom = make_phantom(seed, index, size=size, config=config)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        slices.append(phantom.scan.shape[0])
    per300 = 300.0 / np.asarray(slices)
    return {
        "config": name,
        "slices": f"{min(slices)}-{max(slices)}",
        "wall_s": float(np.mean(wall)),
        "cpu_s": float(np.mean(cpu)),
        "wall_s_per_300": float(np.mean(np.asarray(wall) * per300)),
        "cpu_s_per_300": float(np.mean(np.asarray(cpu) * per300)),
        "max_wall_s_per_300": float(np.max(np.asarray(wall) * per300)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="synth,world_train,world_heldout", help="comma-separated synth configs")
    ap.add_argument("--scans", type=int, default=4, help="phantoms per config")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--slice-mm", type=float, help="fix the slice spacing (mm) of every config, e.g. 1")
    args = ap.parse_args()
    print(f"{args.scans} phantoms per config, {args.size}x{args.size}, seed {args.seed}")
    for name in args.configs.split(","):
        r = time_config(name, args.seed, args.scans, args.size, args.slice_mm)
        print(
            f"{r['config']:>15}: {r['slices']} slices; per scan {r['wall_s']:.2f} s wall, {r['cpu_s']:.2f} s CPU; "
            f"per 300 slices {r['wall_s_per_300']:.2f} s wall (max {r['max_wall_s_per_300']:.2f}), "
            f"{r['cpu_s_per_300']:.2f} s CPU",
            flush=True,
        )
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")


if __name__ == "__main__":
    main()
