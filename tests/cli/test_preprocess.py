"""``lungcad preprocess``: cache per scan, world geometry preserved, bad scan recorded, resume."""

from __future__ import annotations

import csv
import json

import numpy as np
from helpers import simple_chest

from lungcad.cli.main import main
from lungcad.io import write_mhd
from lungcad.preprocess import load_preprocessed


def test_preprocess_batch_with_bad_scan_and_resume(tmp_path, capsys):
    data = tmp_path / "luna16" / "subset0"
    scans = {}
    for k, lungs in enumerate(("two", "merged")):
        scan, truth, nodule = simple_chest(lungs=lungs, seed=k)
        scans[f"1.2.{k}"] = (scan, nodule)
        write_mhd(scan.with_array(scan.array, id=f"1.2.{k}"), data / f"1.2.{k}.mhd")
    bad = write_mhd(simple_chest()[0], data / "1.2.9.mhd")
    raw = bad.with_suffix(".raw")
    raw.write_bytes(raw.read_bytes()[:5000])
    out = tmp_path / "cache"
    assert main(["preprocess", str(tmp_path / "luna16"), "-o", str(out)]) == 3
    assert "2 scans done, 0 already done, 1 failed" in capsys.readouterr().out
    rows = list(csv.DictReader((out / "errors.csv").read_text().splitlines()))
    assert [r["id"] for r in rows] == ["1.2.9"] and "truncated" in rows[0]["error"]

    pre = load_preprocessed(out / "1.2.0")
    scan, nodule = scans["1.2.0"]
    geo = json.loads((out / "1.2.0" / "geometry.json").read_text())
    assert geo["spacing_zyx_mm"] == [1.0, 0.7, 0.7] and pre.image.dtype == np.float16
    assert pre.image.shape == pre.lung_mask.shape == tuple(geo["shape_zyx"])
    assert float(pre.image.min()) >= 0.0 and float(pre.image.max()) <= 1.0
    # the nodule's world centre lands on bright, in-mask voxels of the cache grid
    centre = scan.voxel_to_world(np.argwhere(nodule).mean(0))
    z, y, x = pre.scan.world_to_index(centre)
    assert pre.lung_mask[z, y, x] and pre.image[z, y, x] > 0.6

    stamp = (out / "1.2.0" / "image.npy").stat().st_mtime_ns
    write_mhd(simple_chest()[0].with_array(simple_chest()[0].array, id="1.2.9"), data / "1.2.9.mhd")  # repaired
    assert main(["preprocess", str(tmp_path / "luna16"), "-o", str(out)]) == 0
    assert "1 scan done, 2 already done, 0 failed" in capsys.readouterr().out
    assert (out / "1.2.0" / "image.npy").stat().st_mtime_ns == stamp
    assert list(csv.DictReader((out / "errors.csv").read_text().splitlines())) == []
