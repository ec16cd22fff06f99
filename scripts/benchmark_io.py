#!/usr/bin/env python
"""Benchmark: read a 512x512x300 CT as a DICOM series and as LUNA16 .mhd/.raw.

Writes the test data once into a temporary folder (DSB-style DICOM: shuffled names, intercept -1024,
padding -2000), then times ``lungcad.io.load_scan`` over several repeats, and SimpleITK's own
ImageSeriesReader on the same files for comparison. Prints seconds and peak RSS.

    python scripts/benchmark_io.py [--slices 300] [--size 512] [--repeats 3]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lungcad.io import load_scan, write_dicom_series, write_mhd
from lungcad.scan import CTScan


def make_volume(slices: int, size: int) -> tuple[CTScan, np.ndarray]:
    """A body-like ellipse of soft tissue with noise, air outside, padding outside the FOV circle."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    c = (size - 1) / 2
    body = ((yy - c) / (0.35 * size)) ** 2 + ((xx - c) / (0.45 * size)) ** 2 < 1
    outside_fov = (yy - c) ** 2 + (xx - c) ** 2 > (size / 2) ** 2
    plane = np.where(body, 40, -1000).astype(np.int16)
    array = np.repeat(plane[None], slices, axis=0)
    array += rng.integers(-20, 20, size=array.shape, dtype=np.int16)
    scan = CTScan(array, (1.0, 0.7, 0.7), (-179.6, -179.6, -350.0), id="bench")
    return scan, outside_fov


def timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    scan, outside = make_volume(args.slices, args.size)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "patient"
        t0 = time.perf_counter()
        write_dicom_series(scan, folder, padding_mask=outside)
        mhd = write_mhd(scan, Path(tmp) / "bench.mhd")
        print(f"wrote {args.slices} slices of {args.size}x{args.size} in {time.perf_counter() - t0:.1f} s")

        def sitk_series() -> None:
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
            sitk.GetArrayFromImage(reader.Execute())

        rows = [
            ("lungcad load_scan, DICOM folder", timed(lambda: load_scan(folder), args.repeats)),
            ("SimpleITK ImageSeriesReader (reference)", timed(sitk_series, args.repeats)),
            ("lungcad load_scan, .mhd/.raw", timed(lambda: load_scan(mhd), args.repeats)),
        ]
        read = load_scan(folder)
        assert read.shape == scan.shape and np.array_equal(read.array[:, ~outside], scan.array[:, ~outside])
    print(f"{'reader':42s} {'first s':>8s} {'median s':>9s} {'min s':>7s}")
    for name, times in rows:
        print(f"{name:42s} {times[0]:8.2f} {statistics.median(times):9.2f} {min(times):7.2f}")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak_mb:.0f} MB (includes the written volume and the reference reader)")


if __name__ == "__main__":
    main()
