"""Write synthetic datasets in the LUNA16 and DSB 2017 layouts: :func:`write_dataset`.

Layout under ``OUT`` (``fmt="luna"``, ``"dsb"`` or ``"both"``)::

    synth.json                          phantom version, lungcad version, seed, size, config
    synth_records/00000.json            per-scan ground truth (written last: a scan is done when it exists)
    luna16/subset0/<seriesuid>.mhd/.raw int16 HU, LUNA16 MetaImage
    luna16/seg-lungs-LUNA16/<seriesuid>.mhd/.raw   uint8 labels: 3 left lung, 4 right lung, 5 airway
    luna16/annotations.csv              seriesuid,coordX,coordY,coordZ,diameter_mm   (nodules >= 3 mm)
    luna16/annotations_excluded.csv     same columns: the < 3 mm findings
    luna16/candidates.csv               seriesuid,coordX,coordY,coordZ,class
    luna16/seriesuids.csv               one seriesuid per line, no header
    luna16/cancer_labels.csv            id,cancer with id = seriesuid (ours, not LUNA16's: the DSB labels
                                        for the LUNA16 layout, e.g. for lungcad train risk)
    luna16/nodules.csv                  id,coordX,...,malignant,excluded,source,<LIDC labels> with id = seriesuid
                                        (ours: every nodule's truth, e.g. for lungcad train classifier; an LIDC
                                        nodule's readers' median ratings and LIDC ids, empty for parametric ones)
    dsb2017/stage1/<patient id>/*.dcm   DICOM series, shuffled names, RescaleIntercept -1024, padding -2000
    dsb2017/stage1_labels.csv           id,cancer
    dsb2017/stage1_nodules.csv          the same columns as nodules.csv, id = patient id
    dsb2017/stage1_lungs/<patient id>.mhd/.raw     uint8 labels in the DICOM series' geometry

Coordinates are world mm. A rerun with the same arguments skips finished scans and rebuilds the CSVs
from the records; other arguments into the same folder are refused.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lungcad import __version__
from lungcad.config import to_dict
from lungcad.errors import ConfigError, CorruptScanError, DataLayoutError
from lungcad.fileio import write_json_atomic
from lungcad.io.itk import check_mhd_data
from lungcad.io.writers import write_dicom_series, write_mhd
from lungcad.progress import progress as progress_bar
from lungcad.synth.config import SynthConfig, draws_test_patients, load_synth_config
from lungcad.synth.phantom import PHANTOM_VERSION, Nodule, Phantom, make_phantom

log = logging.getLogger("lungcad.synth")

FORMATS = ("luna", "dsb", "both")
ANNOTATION_HEADER = ["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"]
CANDIDATE_HEADER = ["seriesuid", "coordX", "coordY", "coordZ", "class"]
#: LIDC-IDRI labels of an LIDC nodule (empty for a parametric one): the readers' median ratings and where it came from.
LIDC_COLUMNS = ["malignancy", "spiculation", "lobulation", "texture", "calcification", "subtlety", "sphericity",
                "margin", "internalStructure", "readers", "lidc_patient_id", "lidc_annotation_ids"]  # fmt: skip
NODULE_HEADER = [
    "id", "coordX", "coordY", "coordZ", "diameter_mm", "type", "shape", "location", "malignant", "excluded",
    "source", *LIDC_COLUMNS,
]  # fmt: skip


@dataclass(frozen=True)
class DatasetSummary:
    """What :func:`write_dataset` did."""

    out: Path
    scans: int
    generated: int
    skipped: int
    nodules: int
    excluded: int
    cancer_rate: float  # among the labelled patients
    seconds: float
    formats: tuple[str, ...]
    unlabelled: int = 0  # patients left out of the labels (indeterminate LIDC nodules)

    def line(self) -> str:
        """One-line human summary."""
        return (
            f"synth: {self.scans} scans ({self.generated} generated, {self.skipped} already there), "
            f"{self.nodules} nodules + {self.excluded} excluded findings, cancer rate {self.cancer_rate:.1%}"
            + (f" ({self.unlabelled} patients unlabelled: indeterminate LIDC nodules)" if self.unlabelled else "")
            + f", {self.seconds:.1f} s -> {self.out}"
        )


def _formats(fmt: str) -> tuple[str, ...]:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}", expected="one of " + ", ".join(FORMATS))
    return ("luna", "dsb") if fmt == "both" else (fmt,)


def write_csv(path: Path, header: Sequence[str] | None, rows: Iterable[Sequence[Any]]) -> None:
    """Write a CSV (``\\n`` line ends, no index column) atomically; ``header=None`` writes no header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        if header is not None:
            writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)


def _fmt(v: float) -> str:
    return f"{v:.6f}"


# --------------------------------------------------------------------------- paths
def luna_paths(out: Path, rec: dict) -> dict[str, Path]:
    """MetaImage headers of one scan in the LUNA16 layout (each names its pixel data file: ``.raw``, or ``.zraw``
    when compressed)."""
    uid = rec["series_uid"]
    root = out / "luna16"
    return {
        "scan": root / f"subset{rec['subset']}" / f"{uid}.mhd",
        "lungs": root / "seg-lungs-LUNA16" / f"{uid}.mhd",
    }


def dsb_paths(out: Path, rec: dict) -> dict[str, Path]:
    """Folder and files of one patient in the DSB 2017 layout."""
    pid = rec["patient_id"]
    root = out / "dsb2017"
    return {"series": root / "stage1" / pid, "lungs": root / "stage1_lungs" / f"{pid}.mhd"}


def _mhd_complete(path: Path) -> bool:
    """Whether a ``.mhd`` header and the whole pixel data file it names (raw or compressed) are on disk."""
    try:
        check_mhd_data(path)
    except CorruptScanError:
        return False
    return True


def _done(out: Path, rec: dict, fmt: str) -> bool:
    """Whether a scan's files for ``fmt`` are complete on disk."""
    if fmt not in rec.get("formats", []):
        return False
    if fmt == "luna":
        return all(_mhd_complete(p) for p in luna_paths(out, rec).values())
    paths = dsb_paths(out, rec)
    n = sum(1 for _ in paths["series"].glob("*.dcm")) if paths["series"].is_dir() else 0
    return n == rec["shape"][0] and paths["lungs"].is_file()


# --------------------------------------------------------------------------- one scan
def _nodule_json(n: Nodule) -> dict:
    return {
        "world_xyz": list(n.world_xyz),
        "diameter_mm": n.diameter_mm,
        "type": n.type,
        "shape": n.shape,
        "location": n.location,
        "lung": n.lung,
        "malignant": n.malignant,
        "excluded": n.excluded,
        "core_diameter_mm": n.core_diameter_mm,
        "source": n.source,
        "lidc": n.lidc,
    }


def _record(ph: Phantom, subset: int, formats: Sequence[str]) -> dict:
    """Per-scan JSON record: identifiers, geometry, nodules (both layouts' world mm), candidates."""
    canon = ph.canonical()
    return {
        "index": ph.index,
        "seed": ph.seed,
        "phantom_version": PHANTOM_VERSION,
        "series_uid": ph.series_uid,
        "patient_id": ph.patient_id,
        "subset": subset,
        "flipped": ph.flipped,
        "cancer": ph.cancer,
        "formats": sorted(formats),
        "shape": list(ph.scan.shape),
        "spacing": list(ph.scan.spacing),
        "origin": list(ph.scan.origin),
        "nodules_luna": [_nodule_json(n) for n in ph.nodules],
        "nodules_dsb": [_nodule_json(n) for n in canon.nodules],
        "candidates": [[*map(float, p), int(c)] for p, c in zip(ph.candidates, ph.candidate_classes, strict=True)],
    }


def _write_luna(out: Path, ph: Phantom, rec: dict, compress: bool = False) -> None:
    paths = luna_paths(out, rec)
    write_mhd(ph.scan, paths["scan"], compress=compress)
    write_mhd(ph.label_scan(), paths["lungs"], compress=compress)


def _write_dsb(out: Path, ph: Phantom, rec: dict) -> None:
    canon = ph.canonical()
    paths = dsb_paths(out, rec)
    folder = paths["series"]
    if folder.is_dir():
        for stale in folder.glob(".tmp-*"):
            stale.unlink()
    write_dicom_series(
        canon.scan,
        folder,
        shuffle_names=True,
        seed=ph.seed * 1_000_003 + ph.index,
        patient_id=ph.patient_id,
        series_uid=ph.series_uid,
        rescale_intercept=-1024.0,
        padding_value=-2000,
        padding_mask=~canon.fov_mask,
        slice_thickness=ph.geometry.thickness,
    )
    write_mhd(canon.label_scan(), paths["lungs"])


def make_scan(
    out: Path, seed: int, index: int, size: int, config: SynthConfig, formats: Sequence[str], compress: bool = False
) -> tuple[dict, bool]:
    """Generate scan ``index`` and write what ``formats`` still lack (``compress``: LUNA16 pixel data as ``.zraw``).

    Returns ``(record, generated)``; the record JSON is written last, so it marks a finished scan.
    """
    rec_path = out / "synth_records" / f"{index:05d}.json"
    old = json.loads(rec_path.read_text()) if rec_path.is_file() else None
    if old is not None and all(_done(out, old, f) for f in formats):
        return old, False
    ph = make_phantom(seed, index, size=size, config=config)
    have = [f for f in (old or {}).get("formats", []) if _done(out, old, f)]
    rec = _record(ph, index % config.luna_subsets, sorted(set(have) | set(formats)))
    for f in formats:
        if f in have:
            continue
        if f == "luna":
            _write_luna(out, ph, rec, compress)
        else:
            _write_dsb(out, ph, rec)
    write_json_atomic(rec_path, rec)
    return rec, True


def _make_scan_job(args: tuple) -> tuple[dict, bool]:
    """Worker entry: ``make_scan(*args)``."""
    return make_scan(*args)


# --------------------------------------------------------------------------- tables
def _luna_tables(out: Path, recs: list[dict]) -> None:
    root = out / "luna16"
    ann, excl, cand = [], [], []
    for r in recs:
        uid = r["series_uid"]
        for n in r["nodules_luna"]:
            row = [uid, *map(_fmt, n["world_xyz"]), _fmt(n["diameter_mm"])]
            (excl if n["excluded"] else ann).append(row)
        cand += [[uid, *map(_fmt, c[:3]), c[3]] for c in r["candidates"]]
    write_csv(root / "annotations.csv", ANNOTATION_HEADER, ann)
    write_csv(root / "annotations_excluded.csv", ANNOTATION_HEADER, excl)
    write_csv(root / "candidates.csv", CANDIDATE_HEADER, cand)
    write_csv(root / "seriesuids.csv", None, [[r["series_uid"]] for r in recs])
    write_csv(root / "cancer_labels.csv", ["id", "cancer"], _labelled(recs, "series_uid"))
    write_csv(
        root / "nodules.csv",
        NODULE_HEADER,
        [row for r in recs for row in _nodule_rows(r["series_uid"], r["nodules_luna"])],
    )


def _dsb_tables(out: Path, recs: list[dict]) -> None:
    root = out / "dsb2017"
    recs = sorted(recs, key=lambda r: r["patient_id"])
    write_csv(root / "stage1_labels.csv", ["id", "cancer"], _labelled(recs, "patient_id"))
    rows = [row for r in recs for row in _nodule_rows(r["patient_id"], r["nodules_dsb"])]
    write_csv(root / "stage1_nodules.csv", NODULE_HEADER, rows)


def _nodule_rows(uid: str, nodules: list[dict]) -> list[list]:
    """``NODULE_HEADER`` rows of one scan's nodule records."""
    return [
        [uid, *map(_fmt, n["world_xyz"]), _fmt(n["diameter_mm"]), n["type"], n["shape"], n["location"],
         int(n["malignant"]), int(n["excluded"]), n.get("source", "parametric"), *_lidc_cells(n.get("lidc"))]
        for n in nodules
    ]  # fmt: skip


def _lidc_cells(lidc: dict | None) -> list:
    """The ``LIDC_COLUMNS`` cells of a nodule record's ``lidc`` labels (empty cells for a parametric nodule)."""
    if lidc is None:
        return [""] * len(LIDC_COLUMNS)
    ids = {"lidc_patient_id": "patient_id", "lidc_annotation_ids": "annotation_ids"}
    return [lidc[ids.get(c, c)] for c in LIDC_COLUMNS]


def _labelled(recs: list[dict], key: str) -> list[list]:
    """``id,cancer`` rows of the records whose patient has a label (an indeterminate LIDC patient may have none)."""
    return [[r[key], r["cancer"]] for r in recs if r["cancer"] is not None]


# --------------------------------------------------------------------------- driver
def _manifest(seed: int, size: int, n_scans: int, formats: Sequence[str], config: SynthConfig) -> dict:
    return {
        "phantom_version": PHANTOM_VERSION,
        "lungcad_version": __version__,
        "seed": seed,
        "size": size,
        "n_scans": n_scans,
        "formats": sorted(formats),
        "config": to_dict(config),
    }


def _check_manifest(path: Path, new: dict) -> dict:
    """Refuse an ``OUT`` made with other arguments; returns the manifest to write (formats merged)."""
    if not path.is_file():
        return new
    try:
        old = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataLayoutError(f"not valid JSON ({exc})", path=path) from exc
    for key in ("phantom_version", "seed", "size", "config"):
        same = _same_config(old.get(key), new[key], _neutral()) if key == "config" else old.get(key) == new[key]
        if not same:
            raise DataLayoutError(
                f"this folder holds a synthetic dataset made with another {key}",
                path=path,
                fix="write into an empty folder, or rerun with the same seed, size and config",
            )
    return {**new, "formats": sorted(set(old.get("formats", [])) | set(new["formats"]))}


def check_training_folder(data: str | Path) -> None:
    """Refuse to train on a folder that ``lungcad synth`` wrote with LIDC-IDRI test patients' nodules.

    ``data`` is a dataset's root, its ``luna16/`` or ``dsb2017/stage1/``; the ``synth.json`` found there or up to two
    folders above says which config made it. Folders without one (real data) pass. Raises :class:`ConfigError`.
    """
    data = Path(data)
    for folder in (data, *list(data.parents)[:2]):
        manifest = folder / "synth.json"
        if manifest.is_file():
            lidc = (json.loads(manifest.read_text()).get("config") or {}).get("lidc") or {}
            if draws_test_patients(lidc.get("fraction", 0), lidc.get("split", "train")):
                raise ConfigError(
                    "this synthetic dataset holds LIDC-IDRI test patients' nodules (0801-1012), which are for testing "
                    "only and never make training data",
                    path=manifest,
                    fix="train on data of a training world (lidc.split: train): lungcad synth --config world_train",
                )
            return


def _neutral() -> dict:
    """``configs/synth.yaml`` as a dict: the neutral value of every knob."""
    return to_dict(load_synth_config())


def _same_config(old: Any, new: Any, neutral: Any) -> bool:
    """Whether a dataset made with config ``old`` continues under ``new``: equal, except that a key ``old`` lacks
    (a knob added to lungcad after the dataset was begun) must hold its neutral value (``configs/synth.yaml``'s),
    which reproduces the old phantoms bit for bit."""
    if isinstance(old, dict) and isinstance(new, dict):
        neutral = neutral if isinstance(neutral, dict) else {}
        for key, value in new.items():
            if key in old:
                if not _same_config(old[key], value, neutral.get(key)):
                    return False
            elif key not in neutral or value != neutral[key]:
                return False
        return set(old) <= set(new)
    return old == new


def _validate(n_scans: int, seed: int, size: int) -> None:
    if n_scans < 1:
        raise ConfigError(f"--scans must be >= 1, got {n_scans}")
    if seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {seed}")
    if size < 32:
        raise ConfigError(f"--size must be >= 32, got {size}")


def write_dataset(
    out: str | Path,
    n_scans: int,
    seed: int,
    size: int = 512,
    fmt: str = "both",
    config: SynthConfig | None = None,
    *,
    workers: int = 1,
    progress: bool = True,
    compress: bool = False,
) -> DatasetSummary:
    """Write ``n_scans`` phantoms of dataset ``seed`` into ``out`` in the ``fmt`` layout(s).

    Args:
        out: output folder (created).
        n_scans: number of scans (indices 0 .. n_scans - 1).
        seed: dataset seed; scan ``i`` depends only on ``(seed, i)``, ``size`` and ``config``.
        size: in-plane matrix.
        fmt: ``"luna"``, ``"dsb"`` or ``"both"``.
        config: default ``configs/synth.yaml``.
        workers: processes generating scans in parallel.
        progress: show progress (:func:`lungcad.progress.progress`: a bar on a terminal, else log lines).
        compress: write the LUNA16 layout's pixel data zlib-compressed (``.zraw``, about half the size of ``.raw``
            on phantoms; every MetaImage reader, ours and SimpleITK, reads it). A folder may mix both.
    Returns:
        a :class:`DatasetSummary`.
    """
    start = time.perf_counter()
    _validate(n_scans, seed, size)
    formats = _formats(fmt)
    cfg = config if config is not None else load_synth_config()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = _check_manifest(out / "synth.json", _manifest(seed, size, n_scans, formats, cfg))
    write_json_atomic(out / "synth.json", manifest)
    jobs = [(out, seed, i, size, cfg, formats, compress) for i in range(n_scans)]
    recs: dict[int, dict] = {}
    generated = 0
    bar = progress_bar(total=n_scans, desc="synth", unit="scan", show=progress)
    if workers <= 1:
        for job in jobs:
            rec, made = _make_scan_job(job)
            recs[rec["index"]], generated = rec, generated + made
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for fut in as_completed([pool.submit(_make_scan_job, job) for job in jobs]):
                rec, made = fut.result()
                recs[rec["index"]], generated = rec, generated + made
                bar.update()
    bar.close()
    ordered = [recs[i] for i in range(n_scans)]
    if "luna" in manifest["formats"]:
        _luna_tables(out, [r for r in ordered if "luna" in r["formats"]])
    if "dsb" in manifest["formats"]:
        _dsb_tables(out, [r for r in ordered if "dsb" in r["formats"]])
    nods = [n for r in ordered for n in r["nodules_luna"]]
    labels = [r["cancer"] for r in ordered if r["cancer"] is not None]
    return DatasetSummary(
        out=out,
        scans=n_scans,
        generated=generated,
        skipped=n_scans - generated,
        nodules=sum(not n["excluded"] for n in nods),
        excluded=sum(n["excluded"] for n in nods),
        cancer_rate=float(np.mean(labels)) if labels else float("nan"),
        unlabelled=n_scans - len(labels),
        seconds=time.perf_counter() - start,
        formats=tuple(manifest["formats"]),
    )
