"""Preprocess one scan (resample -> lung mask -> crop -> normalise) and cache it on disk.

Cache layout, one folder per scan (written to a temporary folder, then renamed: a folder that exists is
complete; ``<id>`` is the id's file stem, :func:`cache_folder`)::

    OUT/<id>/image.npy       normalised volume (z, y, x), float16 by default, memory-mappable
    OUT/<id>/lung_mask.npy   bool (z, y, x), same grid
    OUT/<id>/geometry.json   origin/spacing/direction of that grid, the crop, the source, timings

The cached grid is a :class:`CTScan` geometry, so a voxel of ``image.npy`` maps to world mm with
``PreprocessedScan.scan.voxel_to_world``.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lungcad import __version__
from lungcad.batch import BatchSummary, output_folder, run_batch
from lungcad.config import to_dict
from lungcad.fileio import printable, safe_stem, temporary_name, to_json_text
from lungcad.io import ScanRef, find_scans
from lungcad.preprocess.config import PreprocessConfig
from lungcad.preprocess.crop import Box, bounding_box, crop_scan
from lungcad.preprocess.intensity import window_normalise
from lungcad.preprocess.lungmask import lung_mask
from lungcad.preprocess.resample import resample_scan
from lungcad.scan import CTScan


@dataclass(frozen=True)
class PreprocessedScan:
    """A preprocessed scan.

    Attributes:
        scan: the cropped, resampled scan (int16 HU) whose geometry is the cache grid.
        image: normalised volume on that grid, (z, y, x), ``config.output_dtype``.
        lung_mask: bool (z, y, x) on that grid.
        crop: the crop box in the resampled (uncropped) grid.
        info: provenance and timings (what ``geometry.json`` holds besides the geometry).
    """

    scan: CTScan
    image: np.ndarray
    lung_mask: np.ndarray
    crop: Box
    info: dict[str, Any] = field(default_factory=dict)


def preprocess_scan(scan: CTScan, config: PreprocessConfig) -> PreprocessedScan:
    """Resample to ``config.target_spacing_mm``, segment the lungs, crop to them, normalise HU."""
    times: dict[str, float] = {}
    t = time.perf_counter()
    resampled = resample_scan(scan, config.target_spacing_mm) if config.target_spacing_mm else scan
    times["resample_s"] = time.perf_counter() - t
    t = time.perf_counter()
    mask = lung_mask(resampled, config.lung_mask)
    times["lung_mask_s"] = time.perf_counter() - t
    t = time.perf_counter()
    box = bounding_box(mask, resampled.spacing, config.crop_margin_mm)
    cropped = crop_scan(resampled, box)
    image = window_normalise(cropped.array, config.hu_window, config.normalise).astype(config.output_dtype)
    times["crop_normalise_s"] = time.perf_counter() - t
    lung_ml = float(mask.sum()) * float(np.prod(resampled.spacing)) / 1000.0
    info = {
        "id": scan.id,
        "source": None if scan.source is None else printable(str(scan.source)),
        "source_shape_zyx": list(scan.shape),
        "source_spacing_zyx_mm": list(scan.spacing),
        "source_origin_xyz_mm": list(scan.origin),
        "resampled_shape_zyx": list(resampled.shape),
        "lung_volume_ml": round(lung_ml, 1),
        "loader_warnings": list(scan.warnings),
        "timings": {k: round(v, 3) for k, v in times.items()},
        "config": to_dict(config),
        "lungcad_version": __version__,
    }
    return PreprocessedScan(cropped, image, np.ascontiguousarray(mask[box.slices]), box, info)


def geometry_dict(pre: PreprocessedScan) -> dict[str, Any]:
    """What ``geometry.json`` holds: the cache grid's geometry, the crop and ``pre.info``."""
    s = pre.scan
    return {
        "shape_zyx": list(s.shape),
        "spacing_zyx_mm": list(s.spacing),
        "origin_xyz_mm": list(s.origin),
        "direction": s.direction.tolist(),
        "crop_start_zyx": list(pre.crop.start),
        "crop_stop_zyx": list(pre.crop.stop),
        "hu_window": list(pre.info["config"]["hu_window"]),
        "normalise": pre.info["config"]["normalise"],
        **pre.info,
    }


def cache_folder(out_dir: str | Path, scan_id: str) -> Path:
    """The cache folder of scan ``scan_id`` in ``out_dir``: ``out_dir/<stem>/`` with the id's file stem
    (:func:`lungcad.fileio.safe_stem`: the id itself unless it is too long or not a plain file name;
    ``geometry.json`` keeps the full id)."""
    return Path(out_dir) / safe_stem(scan_id)


def save_preprocessed(pre: PreprocessedScan, out_dir: str | Path) -> Path:
    """Write :func:`cache_folder` ``(out_dir, id)`` atomically (temporary folder, then rename); replaces an older
    one."""
    final = cache_folder(out_dir, pre.scan.id)
    tmp = final.with_name(temporary_name(final))
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    np.save(tmp / "image.npy", pre.image)
    np.save(tmp / "lung_mask.npy", pre.lung_mask)
    (tmp / "geometry.json").write_text(printable(to_json_text(geometry_dict(pre))), encoding="utf-8")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def load_preprocessed(folder: str | Path, mmap: bool = True) -> PreprocessedScan:
    """Read a cache folder back; ``image`` and ``lung_mask`` are memory-mapped unless ``mmap=False``.

    The returned ``scan`` holds the cache grid's geometry only (its array is all zeros): use ``image``.
    """
    folder = Path(folder)
    geo = json.loads((folder / "geometry.json").read_text())
    mode = "r" if mmap else None
    image = np.load(folder / "image.npy", mmap_mode=mode)
    mask = np.load(folder / "lung_mask.npy", mmap_mode=mode)
    # the scan carries the grid's geometry; its array is a zero-cost zero view: the values are in `image`
    geometry_only = np.broadcast_to(np.zeros((), np.int16), tuple(geo["shape_zyx"]))
    scan = CTScan(
        geometry_only,
        geo["spacing_zyx_mm"],
        geo["origin_xyz_mm"],
        np.asarray(geo["direction"]),
        id=geo["id"],
        source=folder,
    )
    crop = Box(tuple(geo["crop_start_zyx"]), tuple(geo["crop_stop_zyx"]))
    return PreprocessedScan(scan, image, mask, crop, geo)


def preprocess_one(
    ref: ScanRef,
    *,
    out: Path,
    config: PreprocessConfig,
    series_uid: str | None = None,
    allow_external_data: bool = False,
) -> Path:
    """Read, preprocess and cache one scan as :func:`cache_folder` ``(out, ref.id)`` (the batch worker)."""
    from lungcad.io import load_scan

    scan = load_scan(
        ref.path, series_uid=series_uid, allow_external_data=allow_external_data
    )  # named ref.id (lungcad.io.scan_id)
    return save_preprocessed(preprocess_scan(scan, config), out)


def preprocess_scans(
    inputs: list[str | Path],
    out: str | Path,
    config: PreprocessConfig,
    *,
    workers: int = 1,
    series_uid: str | None = None,
    overwrite: bool = False,
    allow_external_data: bool = False,
) -> tuple[list[ScanRef], BatchSummary]:
    """Cache every scan in ``inputs`` under ``out`` (resumable; failures in ``out/errors.csv``).

    A scan counts as done only when its cache was made with the same ``config``; a cache from other settings
    is recomputed (and replaced atomically), never silently reused. ``allow_external_data``: see
    :func:`lungcad.io.load_scan`. ``out`` is checked to be writable and locked for the run before any scan is read
    (:func:`lungcad.batch.output_folder`: OutputError, OutputBusyError).
    """
    with output_folder(out, "lungcad preprocess") as out:
        refs = find_scans(inputs)
        wanted = json.loads(to_json_text(to_dict(config)))  # as geometry.json stores it (tuples become lists)
        work = functools.partial(
            preprocess_one, out=out, config=config, series_uid=series_uid, allow_external_data=allow_external_data
        )
        summary = run_batch(
            refs,
            work,
            errors_csv=out / "errors.csv",
            workers=workers,
            desc="preprocess",
            is_done=lambda ref: not overwrite and cached_config(cache_folder(out, ref.id), ref.id) == wanted,
        )
    return refs, summary


def cached_config(folder: Path, scan_id: str | None = None) -> dict[str, Any] | None:
    """The preprocessing config a cache folder was made with (None when there is no readable cache, or when it
    holds another scan than ``scan_id``)."""
    try:
        geo = json.loads((folder / "geometry.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return geo.get("config") if scan_id is None or geo.get("id") == scan_id else None
