#!/usr/bin/env python
"""Benchmark: read a 512x512x300 CT as a DICOM series and as LUNA16 .mhd/.raw.

Writes the test data once into a temporary folder (DSB-style DICOM: shuffled names, intercept -1024,
padding -2000), then times ``lungcad.io.load_scan`` and, for comparison, SimpleITK's own ImageSeriesReader on the
same files. Every read runs in a fresh child process (so each gets its own peak RSS), the readers taking turns
repeat after repeat (a busy machine slows them alike); medians are reported.

``--baseline DIR`` adds the lungcad found in ``DIR`` (another checkout, e.g. ``git worktree add /tmp/main main``)
as one more reader, so old and new code are timed in the same run on the same files; both must give the same
volume.

    python scripts/benchmark_io.py [--slices 300] [--size 512] [--repeats 5] [--baseline /tmp/main]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lungcad.io import write_dicom_series, write_mhd
from lungcad.scan import CTScan

#: Run in the child: time one read, report seconds, peak RSS and a digest of the volume.
CHILD = r"""
import hashlib, json, resource, sys, time
kind, path = sys.argv[1], sys.argv[2]
if kind == "sitk":
    import SimpleITK as sitk
    t0 = time.perf_counter()
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(path))
    array = sitk.GetArrayFromImage(reader.Execute())
    where = sitk.__file__
else:
    import lungcad
    from lungcad.io import load_scan
    t0 = time.perf_counter()
    array = load_scan(path).array
    where = lungcad.__file__
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "digest": hashlib.sha1(array.tobytes()).hexdigest(), "shape": array.shape, "module": where}))
"""


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


def read_in_child(kind: str, path: Path, root: Path | None) -> dict:
    """One timed read in a fresh interpreter; ``root``: the folder whose ``lungcad`` is imported."""
    env = dict(os.environ)
    if root is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, kind, str(path)],
        env=env,
        cwd=path.parent,  # not the checkout: '-c' puts the working directory first on sys.path
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if root is not None and not Path(result["module"]).resolve().is_relative_to(root.resolve()):
        raise SystemExit(f"{kind}: imported {result['module']}, not the lungcad under {root}")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--baseline", type=Path, help="another checkout whose lungcad is timed beside this one")
    args = ap.parse_args()
    here = Path(__file__).resolve().parents[1]
    scan, outside = make_volume(args.slices, args.size)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "patient"
        t0 = time.perf_counter()
        write_dicom_series(scan, folder, padding_mask=outside)
        mhd = write_mhd(scan, Path(tmp) / "bench.mhd")
        print(f"wrote {args.slices} slices of {args.size}x{args.size} in {time.perf_counter() - t0:.1f} s")
        readers = {"lungcad load_scan, DICOM folder (this checkout)": ("lungcad", folder, here)}
        if args.baseline is not None:
            readers[f"lungcad load_scan, DICOM folder ({args.baseline})"] = ("lungcad", folder, args.baseline)
        readers["SimpleITK ImageSeriesReader (reference)"] = ("sitk", folder, None)
        readers["lungcad load_scan, .mhd/.raw (this checkout)"] = ("lungcad", mhd, here)
        results: dict[str, list[dict]] = {name: [] for name in readers}
        for _ in range(args.repeats):  # readers take turns: old, new and the reference see the same load
            for name, (kind, path, root) in readers.items():
                results[name].append(read_in_child(kind, path, root))
    from_dicom = scan.array.copy()
    from_dicom[:, outside] = -1024  # the DICOM's padding reads as air; the .mhd holds the scan as it was
    for name, (kind, path, _) in readers.items():
        if kind == "lungcad":
            expected = hashlib.sha1((from_dicom if path == folder else scan.array).tobytes()).hexdigest()
            found = {r["digest"] for r in results[name]}
            assert found == {expected}, f"{name}: volume differs from the written scan"
    print(f"{'reader':58s} {'first s':>8s} {'median s':>9s} {'min s':>7s} {'peak RSS MB':>12s}")
    for name, rows in results.items():
        times = [r["seconds"] for r in rows]
        peak = statistics.median(r["peak_mb"] for r in rows)
        print(f"{name:58s} {times[0]:8.2f} {statistics.median(times):9.2f} {min(times):7.2f} {peak:12.0f}")
    print(f"{args.repeats} turns; each read in a fresh process (seconds: the read alone; RSS: the whole process)")


if __name__ == "__main__":
    main()
