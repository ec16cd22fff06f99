"""Read a CT series from a folder of DICOM files (DSB 2017 layout: one folder of slices per patient).

Geometry comes only from ImagePositionPatient (IPP) and ImageOrientationPatient (IOP):

- slices are sorted by IPP projected on the slice normal ``row x col`` (never by file name,
  InstanceNumber or SliceLocation); the volume's k axis points along the normal, so the direction matrix
  is ``[row, col, normal]`` and voxel ``[0, 0, 0]`` is the first slice's IPP;
- the slice spacing comes from the positions, never from SliceThickness;
- duplicate positions are dropped; a gap (missing or unreadable slice) or uneven spacing is resampled
  onto a regular grid by linear interpolation along the normal, so every voxel keeps its true world
  position (with a warning);
- gantry tilt (IPPs drifting in-plane from slice to slice) is resampled slice by slice onto the
  orthogonal grid, or refused with ``gantry_tilt="refuse"``.
- a slice far from the others (a gap over :data:`lungcad.io.geometry.STACK_GAP_FACTOR` median steps, e.g. an
  IPP 20 m off) is dropped with a warning naming it; the declared size and the regular grid are checked against
  the voxel limit (:mod:`lungcad.io.limits`) before they are allocated;
- geometry that is not a scan (IOP not two orthogonal unit vectors, e.g. all zeros or NaN; an IPP that is not 3
  finite numbers; a PixelSpacing that is not 2 positive numbers; all slices at one position) refuses the series
  with a GeometryError naming the file and the tag, or skips the file with a warning when most of the series is
  sound; when no slice of the chosen matrix size decodes, the series' other matrix size is read (with a warning).

Pixel values are converted per slice with that slice's RescaleSlope/Intercept; padding outside the scan
circle (PixelPaddingValue, or anything at or below -2000 HU such as DSB's raw -2000 and -3024) becomes
air (:data:`PADDING_HU`).

Speed: headers are read by pydicom with the pixel data deferred. The pixels of uncompressed 16-bit slices are then
read straight from each file at the PixelData offset (:func:`_native_layout`; compressed and unusual slices are
decoded by pydicom), in threads, into one volume allocated after the voxel-limit check; with integer
RescaleSlope/Intercept (the usual CT) HU are computed in integers straight into the int16 volume. Every path gives
the voxels that pydicom's decoder and float32 HU give (``tests/io/test_dicom_fast.py``).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import struct
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from lungcad.errors import (
    CorruptScanError,
    GeometryError,
    NoDicomError,
    NotCTError,
    SeriesNotFoundError,
    UnsupportedCompressionError,
)
from lungcad.io.geometry import ORTHOGONAL_TOLERANCE, largest_stack, regularize_slices
from lungcad.io.hu import PADDING_HU, PADDING_THRESHOLD_HU
from lungcad.io.limits import check_voxel_count
from lungcad.scan import CTScan

log = logging.getLogger(__name__)

#: Slices whose positions along the normal differ by less than this are duplicates (mm).
DUPLICATE_TOLERANCE_MM = 0.01
#: ImageOrientationPatient: each direction cosine vector must have length 1 within this (all zeros or NaN is refused);
#: row and column must be orthogonal within :data:`lungcad.io.geometry.ORTHOGONAL_TOLERANCE`.
ORIENTATION_TOLERANCE = 0.01
#: Files with these suffixes are never DICOM (skipped without opening).
NON_DICOM_SUFFIXES = {
    ".txt",
    ".csv",
    ".json",
    ".xml",
    ".md",
    ".png",
    ".jpg",
    ".jpeg",
    ".mhd",
    ".raw",
    ".zip",
    ".gz",
    ".nii",
    ".html",
    ".pdf",
    ".py",
    ".yaml",
    ".yml",
    ".db",
    ".ini",
}

TiltPolicy = Literal["resample", "refuse"]


@dataclass
class SliceHeader:
    """One image file: its dataset (pixel data deferred) and the geometry read from it."""

    path: Path
    ds: Dataset
    position: np.ndarray  # IPP (x, y, z) mm
    orientation: np.ndarray  # IOP row (3) + column (3) direction cosines
    rows: int
    columns: int
    pixel_spacing: tuple[float, float] | None = None  # PixelSpacing (row, column) mm; None when absent

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.orientation[:3], self.orientation[3:])


@dataclass
class SeriesGroup:
    """Image slices sharing a SeriesInstanceUID, orientation and matrix size."""

    uid: str
    slices: list[SliceHeader] = field(default_factory=list)

    @property
    def first(self) -> Dataset:
        return self.slices[0].ds

    @property
    def modality(self) -> str:
        return str(getattr(self.first, "Modality", "") or "")

    @property
    def is_axial(self) -> bool:
        return abs(self.slices[0].normal[2]) > 0.9

    def describe(self) -> str:
        desc = str(getattr(self.first, "SeriesDescription", "") or "").strip()
        return f"{self.uid} ({self.modality or '?'}, {len(self.slices)} slices{', ' + desc if desc else ''})"


# ---------------------------------------------------------------------------------------------- files
def list_candidate_files(folder: Path) -> list[Path]:
    """Files that may be DICOM: those directly in ``folder``, else (nested layouts) all below it."""
    top = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if any(_maybe_dicom(p) for p in top):
        return [p for p in top if _maybe_dicom(p)]
    nested = sorted(Path(root) / f for root, _, files in os.walk(folder) for f in files if not f.startswith("."))
    return [p for p in nested if _maybe_dicom(p)]


def _maybe_dicom(path: Path) -> bool:
    return path.suffix.lower() not in NON_DICOM_SUFFIXES and path.name.upper() != "DICOMDIR"


def has_dicom_preamble(path: str | Path) -> bool:
    """Whether the file has the DICOM Part 10 marker ``DICM`` after its 128-byte preamble (reads 4 bytes)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def is_dicom_folder(folder: str | Path, *, skip_suffixes: Sequence[str] = ()) -> bool:
    """Whether ``folder`` directly holds DICOM files (hidden files, ``DICOMDIR`` and files whose lower-case names
    end in :data:`NON_DICOM_SUFFIXES` or ``skip_suffixes`` are never DICOM).

    Fast path: a ``.dcm`` name or the 128-byte preamble's ``DICM`` marker on any file. Only when no file has
    them is one file (the first by name) parsed with :func:`read_header`, which also recognises the old
    preamble-less DICOM that :func:`read_dicom_series` reads; so a tree is walked at 4 bytes per file.
    """
    names = sorted(
        entry.name
        for entry in os.scandir(folder)
        if entry.is_file() and not entry.name.startswith(".") and not entry.name.lower().endswith(tuple(skip_suffixes))
    )
    candidates = [Path(folder) / name for name in names if _maybe_dicom(Path(name))]
    if any(p.name.lower().endswith(".dcm") or has_dicom_preamble(p) for p in candidates):
        return True
    if not candidates:
        return False
    try:
        with warnings.catch_warnings():  # pydicom's complaints while probing a file that is not DICOM
            warnings.simplefilter("ignore")
            return read_header(candidates[0]) is not None
    except CorruptScanError:  # claims to be DICOM but cannot be parsed: load_scan will say so
        return True


def read_header(path: Path) -> Dataset | None:
    """Open ``path`` with pixel data deferred; None if it is not DICOM at all.

    Raises:
        CorruptScanError: the file claims to be DICOM but cannot be parsed.
    """
    try:
        return pydicom.dcmread(path, defer_size="2 KB")
    except InvalidDicomError:
        # No 'DICM' preamble: either not DICOM or an old raw dataset; try once more without the check.
        try:
            ds = pydicom.dcmread(path, defer_size="2 KB", force=True)
        except Exception:
            return None
        return ds if "SOPClassUID" in ds or "PixelData" in ds else None
    except Exception as exc:  # truncated header, bad element lengths, ...
        raise CorruptScanError(f"unreadable DICOM ({type(exc).__name__}: {exc})", path=path) from exc


def image_slice(path: Path, ds: Dataset) -> SliceHeader | None:
    """The slice geometry of an image dataset, or None for non-images, localizers and multi-frame files."""
    required = ("PixelData", "ImagePositionPatient", "ImageOrientationPatient", "Rows", "Columns")
    missing = [tag for tag in required if tag not in ds]
    if missing:
        meta = getattr(ds, "file_meta", None)
        sop_class = getattr(ds, "SOPClassUID", None) or getattr(meta, "MediaStorageSOPClassUID", None)
        if sop_class is not None and "Image Storage" in getattr(sop_class, "name", ""):
            raise CorruptScanError(f"image file without {', '.join(missing)} (truncated?)", path=path)
        return None  # a non-image object (report, presentation state, ...)
    image_type = [str(v).upper() for v in (getattr(ds, "ImageType", None) or [])]
    if "LOCALIZER" in image_type or "SCOUT" in image_type:
        return None
    if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        log.warning("%s: multi-frame (enhanced) image skipped; only single-frame slices are read", path)
        return None
    position = _numbers(ds, "ImagePositionPatient", 3, path, "x, y, z of the first pixel in mm")
    orientation = _numbers(ds, "ImageOrientationPatient", 6, path, "row and column direction cosines")
    row, col = orientation[:3], orientation[3:]
    norms = np.array([np.linalg.norm(row), np.linalg.norm(col)])
    if np.any(np.abs(norms - 1) > ORIENTATION_TOLERANCE):
        raise GeometryError(
            f"{_tag_name('ImageOrientationPatient')} {_shown(ds, 'ImageOrientationPatient')} is not two unit vectors",
            path=path,
            expected="row and column direction cosines of length 1",
        )
    row, col = row / norms[0], col / norms[1]
    if abs(float(row @ col)) > ORTHOGONAL_TOLERANCE:
        raise GeometryError(
            f"{_tag_name('ImageOrientationPatient')} {_shown(ds, 'ImageOrientationPatient')}: row and column are "
            "not orthogonal",
            path=path,
        )
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
    except (TypeError, ValueError) as exc:
        raise CorruptScanError(f"Rows/Columns not integers ({exc})", path=path) from exc
    if rows < 1 or columns < 1:
        raise CorruptScanError(f"image of {rows} x {columns} pixels (Rows x Columns)", path=path)
    spacing = None
    if "PixelSpacing" in ds:
        values = _numbers(ds, "PixelSpacing", 2, path, "row and column spacing in mm, both > 0")
        if np.any(values <= 0):
            raise GeometryError(
                f"{_tag_name('PixelSpacing')} {_shown(ds, 'PixelSpacing')} is not positive",
                path=path,
                expected="row and column spacing in mm, both > 0",
            )
        spacing = (float(values[0]), float(values[1]))
    return SliceHeader(path, ds, position, np.concatenate([row, col]), rows, columns, spacing)


def _tag_name(keyword: str) -> str:
    """``keyword (gggg,eeee)``, e.g. ``PixelSpacing (0028,0030)``."""
    tag = pydicom.datadict.tag_for_keyword(keyword)
    return f"{keyword} ({tag >> 16:04X},{tag & 0xFFFF:04X})" if tag is not None else keyword


def _shown(ds: Dataset, keyword: str) -> str:
    """The tag's value as stored, shortened, for messages."""
    elem = ds.get(keyword)
    value = getattr(elem, "value", elem) if elem is not None else None
    multi = isinstance(value, (list, tuple, pydicom.multival.MultiValue))
    text = "\\".join(str(v) for v in value) if multi else str(value)
    text = " ".join(text.split())
    return f"'{text}'" if len(text) <= 80 else f"'{text[:77]}...'"


def _numbers(ds: Dataset, keyword: str, count: int, path: Path, meaning: str) -> np.ndarray:
    """``count`` finite numbers from a DS tag, else GeometryError naming the file and the tag."""
    try:
        value = ds[keyword].value
        values = list(value) if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value]
        numbers = np.asarray([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError, KeyError, OverflowError):
        numbers = None
    if numbers is None or numbers.shape != (count,) or not np.all(np.isfinite(numbers)):
        raise GeometryError(
            f"{_tag_name(keyword)} {_shown(ds, keyword)} is not {count} finite numbers",
            path=path,
            expected=meaning,
        )
    return numbers


def scan_folder(folder: Path) -> tuple[list[SliceHeader], list[str], int]:
    """Read every file's header. Returns (image slices, warnings about skipped files, non-DICOM count)."""
    slices: list[SliceHeader] = []
    warnings: list[str] = []
    bad_geometry: list[GeometryError] = []
    non_dicom = 0
    for path in list_candidate_files(folder):
        try:
            ds = read_header(path)
        except CorruptScanError as exc:
            warnings.append(f"skipped {exc}")
            continue
        if ds is None:
            non_dicom += 1
            continue
        try:
            sl = image_slice(path, ds)
        except GeometryError as exc:
            bad_geometry.append(exc)
            warnings.append(f"skipped slice {exc}")
            continue
        except CorruptScanError as exc:
            warnings.append(f"skipped {exc}")
            continue
        if sl is not None:
            slices.append(sl)
    if bad_geometry and len(bad_geometry) >= len(slices):
        # most image files have impossible geometry: that is the series, not a stray slice to skip
        first = bad_geometry[0]
        raise GeometryError(
            f"{first.problem} ({len(bad_geometry)} of {len(bad_geometry) + len(slices)} image files)",
            path=first.path,
            expected=first.expected,
            fix="re-export the series from the scanner or PACS",
        )
    return slices, warnings, non_dicom


# --------------------------------------------------------------------------------------------- series
def group_series(slices: Sequence[SliceHeader]) -> list[SeriesGroup]:
    """Group slices by (SeriesInstanceUID, orientation, matrix size); a UID split over orientations
    (e.g. a localizer that shares the CT's UID) yields several groups with the same ``uid``."""
    groups: dict[tuple, SeriesGroup] = {}
    for sl in slices:
        uid = str(getattr(sl.ds, "SeriesInstanceUID", "") or "unknown")
        key = (uid, tuple(np.round(sl.orientation, 3)), sl.rows, sl.columns)
        groups.setdefault(key, SeriesGroup(uid)).slices.append(sl)
    return list(groups.values())


def choose_series(groups: list[SeriesGroup], folder: Path, series_uid: str | None) -> tuple[SeriesGroup, list[str]]:
    """The series to read: ``series_uid`` if given, else the axial CT series with the most slices
    (thinner slices first on a tie). Returns it and warnings about what was left out."""
    if not groups:
        raise NoDicomError(
            "no DICOM image slices found",
            path=folder,
            expected="a folder of CT slices (*.dcm)",
            fix="point to the folder that holds one series' .dcm files",
        )
    warnings: list[str] = []
    if series_uid is not None:
        chosen = [g for g in groups if g.uid == series_uid]
        if not chosen:
            available = "; ".join(g.describe() for g in _largest_per_uid(groups))
            raise SeriesNotFoundError(f"series {series_uid} not in folder", path=folder, expected=available)
    else:
        chosen = [g for g in groups if g.modality.upper() in ("CT", "")]
        if not chosen:
            found = sorted({g.modality or "?" for g in groups})
            raise NotCTError(
                f"no CT series (modalities found: {', '.join(found)})",
                path=folder,
                expected="Modality CT",
                fix="lungcad reads CT only",
            )
    best = max(chosen, key=_series_rank)
    dropped = [g for g in groups if g.uid == best.uid and g is not best]
    if dropped:
        n = sum(len(g.slices) for g in dropped)
        warnings.append(f"dropped {n} image(s) of series {best.uid} with another orientation or size (localizer?)")
    others = [g for g in _largest_per_uid(groups) if g.uid != best.uid]
    if others:
        log.info("%s: %d other series not read: %s", folder, len(others), "; ".join(g.describe() for g in others))
    return best, warnings


def _series_rank(group: SeriesGroup) -> tuple:
    positions = sorted(float(s.position @ s.normal) for s in group.slices)
    step = float(np.median(np.diff(positions))) if len(positions) > 1 else np.inf
    return (group.modality.upper() in ("CT", ""), group.is_axial, len({round(p, 2) for p in positions}), -step)


def _largest_per_uid(groups: list[SeriesGroup]) -> list[SeriesGroup]:
    by_uid: dict[str, SeriesGroup] = {}
    for g in groups:
        if g.uid not in by_uid or len(g.slices) > len(by_uid[g.uid].slices):
            by_uid[g.uid] = g
    return list(by_uid.values())


def drop_duplicates(slices: list[SliceHeader]) -> tuple[list[SliceHeader], list[str]]:
    """Sort by position along the normal and keep one slice per position."""
    normal = slices[0].normal
    ordered = sorted(slices, key=lambda s: float(s.position @ normal))
    kept = [ordered[0]]
    dup: list[Path] = []
    for sl in ordered[1:]:
        if abs(float((sl.position - kept[-1].position) @ normal)) < DUPLICATE_TOLERANCE_MM:
            dup.append(sl.path)
        else:
            kept.append(sl)
    warnings = []
    if dup:
        warnings.append(f"dropped {len(dup)} duplicate slice(s) at an already-seen position ({_names(dup)})")
    return kept, warnings


def drop_stray_slices(slices: list[SliceHeader]) -> tuple[list[SliceHeader], list[str]]:
    """Keep the largest stack of sorted ``slices`` (:func:`lungcad.io.geometry.largest_stack`): a slice far from the
    others (an ImagePositionPatient 20 m off) is dropped with a warning naming it instead of stretching the grid."""
    normal = slices[0].normal
    s = np.array([float(sl.position @ normal) for sl in slices])
    try:
        keep = largest_stack(s)
    except GeometryError as exc:
        raise GeometryError(exc.problem, path=slices[0].path.parent, fix="read one stack with --series") from exc
    if len(keep) == len(slices):
        return slices, []
    kept = set(keep.tolist())
    dropped = [sl for k, sl in enumerate(slices) if k not in kept]
    where = ", ".join(f"{sl.path.name} at {float(sl.position @ normal):.6g} mm" for sl in dropped[:3])
    warning = (
        f"dropped {len(dropped)} slice(s) far from the other {len(keep)} (stack from {s[keep[0]]:.6g} to "
        f"{s[keep[-1]]:.6g} mm along the normal): {where}{' ...' if len(dropped) > 3 else ''}"
    )
    return [slices[k] for k in keep], [warning]


def _names(paths: Sequence[Path]) -> str:
    return ", ".join(p.name for p in paths[:3]) + (" ..." if len(paths) > 3 else "")


# ---------------------------------------------------------------------------------------------- pixels
#: Uncompressed transfer syntaxes whose pixel values are read straight from the file: UID -> numpy byte order.
#: (Deflated Explicit VR Little Endian is not here: its offsets are into the inflated stream.)
NATIVE_BYTE_ORDER = {
    pydicom.uid.ImplicitVRLittleEndian: "<",
    pydicom.uid.ExplicitVRLittleEndian: "<",
    pydicom.uid.ExplicitVRBigEndian: ">",
}
#: Most threads decoding the slices of one series (file reads and numpy release the GIL).
MAX_DECODE_THREADS = 4


def decode_threads() -> int:
    """Threads for decoding: the CPUs this process may use, no more than ``OMP_NUM_THREADS`` where set (a batch
    worker's share of the cores, :func:`lungcad.batch.worker_threads`), at most :data:`MAX_DECODE_THREADS`."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    share = os.environ.get("OMP_NUM_THREADS", "").strip()
    if share.isdigit() and int(share) > 0:
        cpus = min(cpus, int(share))
    return max(1, min(MAX_DECODE_THREADS, cpus))


_PIXEL_DATA_TAG = 0x7FE00010


@dataclass(frozen=True)
class _Native:
    """Where and how one slice's stored values lie in its file (uncompressed, 16-bit, one sample)."""

    dtype: np.dtype  # stored values with the transfer syntax's byte order
    unused_bits: int  # BitsAllocated - BitsStored: shifted out as pydicom does (mask, or sign-extend)
    offset: int | None  # file offset of the PixelData value (deferred element), or
    data: bytes | None  # the value itself when it was small enough to be read with the header
    element_header: bytes = b""  # the bytes just before ``offset``: tag (and VR), checked as pydicom's deferred read


def _native_layout(sl: SliceHeader) -> _Native | None:
    """How to read ``sl``'s pixels without pydicom's decoder, or None when only pydicom may decode them: the
    fast read covers exactly the case where pydicom's ``pixel_array`` is ``np.frombuffer`` of the value (with
    the unused high bits corrected): native transfer syntax, 16 bits allocated, 1 sample, MONOCHROME, a value of
    exactly ``Rows * Columns * 2`` bytes. Everything else (compressed, odd sizes, short data, ...) goes through
    pydicom, so its errors and its reading of odd files stay those of :func:`slice_hu`."""
    ds = sl.ds
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    order = NATIVE_BYTE_ORDER.get(ts) if ts is not None else None
    if order is None:
        return None
    try:
        allocated, stored = int(ds.BitsAllocated), int(ds.BitsStored)
        signed, samples = int(ds.PixelRepresentation), int(ds.SamplesPerPixel)
        photometric = str(ds.PhotometricInterpretation).strip()
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    if allocated != 16 or not 1 <= stored <= 16 or signed not in (0, 1) or samples != 1:
        return None
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        return None
    elem = ds.get_item(_PIXEL_DATA_TAG, keep_deferred=True)
    if elem is None:
        return None
    value = elem.value
    expected = sl.rows * sl.columns * 2
    dtype = np.dtype(f"{order}{'i' if signed else 'u'}2")
    if value is None:  # deferred: still in the file
        tell, length = getattr(elem, "value_tell", None), getattr(elem, "length", None)
        if not isinstance(tell, int) or length != expected:
            return None
        tag = struct.pack(f"{order}HH", 0x7FE0, 0x0010)
        header = tag if elem.is_implicit_VR else tag + str(elem.VR).encode("ascii", "replace")[:2]
        return _Native(dtype, allocated - stored, tell, None, header)
    if not isinstance(value, bytes) or len(value) != expected:
        return None
    return _Native(dtype, allocated - stored, None, value)


def _read_native(sl: SliceHeader, layout: _Native) -> np.ndarray | None:
    """Stored values of one slice (int16/uint16 in the file's byte order, shape (rows, columns)); None if the file no
    longer holds them (truncated or replaced since its header was read: pydicom's path then says why)."""
    count = sl.rows * sl.columns
    if layout.data is not None:
        raw = np.frombuffer(layout.data, dtype=layout.dtype, count=count).copy()
    else:
        raw = np.empty(count, dtype=layout.dtype)
        view = memoryview(raw).cast("B")
        try:
            with open(sl.path, "rb", buffering=0) as fh:
                fh.seek(layout.offset - (8 if len(layout.element_header) == 4 else 12))
                if fh.read(len(layout.element_header)) != layout.element_header:
                    return None  # not the element the header read saw: the file changed
                fh.seek(layout.offset)
                got = 0
                while got < len(view):
                    n = fh.readinto(view[got:])
                    if not n:
                        return None
                    got += n
        except OSError:
            return None
    if layout.unused_bits:
        np.left_shift(raw, layout.unused_bits, out=raw)
        np.right_shift(raw, layout.unused_bits, out=raw)
    return raw.reshape(sl.rows, sl.columns)


def slice_hu(sl: SliceHeader, out: np.ndarray | None = None) -> np.ndarray:
    """HU of one slice, shape (rows, columns), float32, padding already mapped to :data:`PADDING_HU`; written
    into ``out`` when given.

    Uncompressed 16-bit slices are read straight from the file (:func:`_native_layout`); any other slice is
    decoded by pydicom. Both give the same values.

    Raises:
        UnsupportedCompressionError: no installed decoder handles the transfer syntax.
        CorruptScanError: the pixel data cannot be decoded (truncated, wrong length).
    """
    raw = _stored_values(sl)
    slope, intercept = _rescale(sl.ds)
    hu = np.empty(raw.shape, np.float32) if out is None else out
    hu[...] = raw  # int -> float32: exact, as raw.astype(np.float32)
    if slope != 1.0:
        hu *= np.float32(slope)
    hu += np.float32(intercept)
    np.copyto(hu, np.float32(PADDING_HU), where=_padding(sl.ds, raw, hu))
    return hu


def _slice_hu_int16(sl: SliceHeader, out: np.ndarray) -> bool:
    """:func:`slice_hu` rounded and clipped to int16, into ``out``, computed in integers: for a slice whose
    :func:`_integer_rescale` holds, float32 ``raw * slope + intercept`` is an exact integer, so this is the same
    volume without a float copy. Returns whether any value was clipped (then the int16 plane is not the float one).

    Raises:
        _NotInteger: the stored values are wider than 16 bits (float32 would round them).
    """
    raw = _stored_values(sl)
    if raw.dtype.itemsize > 2 or raw.dtype.kind not in "iu":
        raise _NotInteger(sl.path)
    slope, intercept = _rescale(sl.ds)
    hu = raw.astype(np.int32)
    if slope != 1.0:
        hu *= int(slope)
    if intercept:
        hu += int(intercept)
    np.copyto(hu, PADDING_HU, where=_padding(sl.ds, raw, hu))  # afterwards every value is > PADDING_THRESHOLD_HU
    info = np.iinfo(raw.dtype)
    clipped = False
    if max(abs(int(info.min)), int(info.max)) * abs(slope) + intercept > 32767:  # else nothing can be clipped
        clipped = int(hu.max()) > 32767
        np.clip(hu, -32768, 32767, out=hu)
    out[...] = hu
    return clipped


class _NotInteger(Exception):
    """A slice whose HU the integer path cannot compute exactly: the series is decoded in float32."""


#: Largest |RescaleSlope| and |RescaleIntercept| of the integer path: 16-bit values times the slope plus the
#: intercept stay below 2**24, where float32 holds every integer (so float32 and int32 arithmetic agree).
_INT_SLOPE_MAX, _INT_INTERCEPT_MAX = 128, 2**22


def _integer_rescale(sl: SliceHeader) -> bool:
    """Whether ``sl``'s RescaleSlope and RescaleIntercept are integers small enough for :func:`_slice_hu_int16`."""
    try:
        slope, intercept = _rescale(sl.ds)
    except Exception:  # let the float path raise whatever it raised before
        return False
    return (
        slope.is_integer()
        and 1 <= abs(slope) <= _INT_SLOPE_MAX
        and intercept.is_integer()
        and abs(intercept) <= _INT_INTERCEPT_MAX
    )


def _stored_values(sl: SliceHeader) -> np.ndarray:
    """The slice's stored values: straight from the file when :func:`_native_layout` allows, else by pydicom."""
    layout = _native_layout(sl)
    raw = _read_native(sl, layout) if layout is not None else None
    return _pydicom_pixels(sl) if raw is None else raw


def _rescale(ds: Dataset) -> tuple[float, float]:
    return float(getattr(ds, "RescaleSlope", 1.0) or 1.0), float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)


def _padding(ds: Dataset, raw: np.ndarray, hu: np.ndarray) -> np.ndarray:
    """Padding voxels (as :func:`lungcad.io.hu.map_padding`): HU at or below the threshold, or a stored value
    within PixelPaddingValue (to PixelPaddingRangeLimit)."""
    padding = hu <= PADDING_THRESHOLD_HU
    ppv = getattr(ds, "PixelPaddingValue", None)
    if isinstance(ppv, int):
        limit = getattr(ds, "PixelPaddingRangeLimit", None)
        lo, hi = sorted((ppv, limit)) if isinstance(limit, int) else (ppv, ppv)
        padding |= (raw == lo) if lo == hi else (raw >= lo) & (raw <= hi)
    return padding


def _pydicom_pixels(sl: SliceHeader) -> np.ndarray:
    """The slice's stored values decoded by pydicom (any transfer syntax it has a decoder for)."""
    _check_decoder(sl.ds, sl.path)
    try:
        raw = sl.ds.pixel_array
    except Exception as exc:
        raise CorruptScanError(f"pixel data unreadable ({_one_line(exc)})", path=sl.path) from exc
    if raw.shape != (sl.rows, sl.columns):
        expected = f"({sl.rows}, {sl.columns})"
        raise CorruptScanError(f"pixel array has shape {raw.shape}", path=sl.path, expected=expected)
    return raw


def _check_decoder(ds: Dataset, path: Path) -> None:
    from pydicom.pixels import get_decoder

    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if ts is None or not ts.is_compressed:
        return
    try:
        decoder = get_decoder(ts)
        available = decoder.is_available
    except NotImplementedError:
        available = False
    if not available:
        raise UnsupportedCompressionError(
            f"pixel data compressed as '{ts.name}' ({ts}) and no installed decoder reads it",
            path=path,
            fix=f"pip install {_plugin_for(ts)}",
        )


def _plugin_for(ts: pydicom.uid.UID) -> str:
    name = ts.name.lower()
    if "2000" in name or "htj2k" in name:
        return "pylibjpeg pylibjpeg-openjpeg (or python-gdcm)"
    if "rle" in name:
        return "pylibjpeg pylibjpeg-rle"
    if "jpeg" in name:
        return "python-gdcm (or pylibjpeg pylibjpeg-libjpeg)"
    return "python-gdcm (if it supports this transfer syntax; otherwise convert with dcmdjpeg/gdcmconv)"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def read_pixels(
    slices: list[SliceHeader], *, as_float: bool = False
) -> tuple[list[SliceHeader], np.ndarray, list[str], bool]:
    """Decode every slice to HU, shape (Z, Y, X); truncated/undecodable slices are dropped with a warning naming
    the file (the gap is resampled later).

    The volume is allocated once (after the voxel-limit check) and each slice is decoded into its plane, in
    :func:`decode_threads` threads; a dropped slice's plane is filled by moving the later planes down. When every
    slice has an integer rescale (:func:`_integer_rescale`, the usual CT) and not ``as_float``, the volume is the
    final int16 (``clip(rint(HU))``, computed in integers); else float32 HU.

    Returns:
        kept slices, the volume, warnings, and whether int16 values were clipped (then the int16 volume is not the
        float one: resampling must decode again ``as_float``).
    """
    folder = slices[0].path.parent
    check_voxel_count((len(slices), slices[0].rows, slices[0].columns), path=folder, what="the series as declared")
    as_int16 = not as_float and all(_integer_rescale(sl) for sl in slices)
    volume = np.empty((len(slices), slices[0].rows, slices[0].columns), np.int16 if as_int16 else np.float32)

    def decode(k: int) -> CorruptScanError | bool:
        try:
            if as_int16:
                return _slice_hu_int16(slices[k], volume[k])
            slice_hu(slices[k], out=volume[k])
        except CorruptScanError as exc:
            return exc
        return False

    try:
        threads = decode_threads()
        if threads > 1 and len(slices) > 1:
            with ThreadPoolExecutor(threads, thread_name_prefix="lungcad-dicom") as pool:
                results = list(pool.map(decode, range(len(slices))))
        else:
            results = [decode(k) for k in range(len(slices))]
    except _NotInteger:
        del volume
        return read_pixels(slices, as_float=True)
    kept: list[SliceHeader] = []
    warnings: list[str] = []
    for k, (sl, result) in enumerate(zip(slices, results, strict=True)):
        if isinstance(result, CorruptScanError):
            warnings.append(f"skipped slice {result}")
            continue
        if len(kept) != k:
            volume[len(kept)] = volume[k]
        kept.append(sl)
    if not kept:
        first_error = next((r for r in results if isinstance(r, CorruptScanError)), None)
        reason = "" if first_error is None else f"; the first, {first_error}"
        raise CorruptScanError(
            f"no slice of the series could be decoded ({len(slices)} slices of {slices[0].rows} x "
            f"{slices[0].columns}{reason})",
            path=folder,
            fix=None if first_error is None else first_error.fix,
        )
    clipped = any(r is True for r in results)
    return kept, volume[: len(kept)], warnings, clipped


# ----------------------------------------------------------------------------------------------- main
def read_dicom_series(
    folder: str | Path,
    *,
    series_uid: str | None = None,
    gantry_tilt: TiltPolicy = "resample",
) -> CTScan:
    """Read one CT series from ``folder`` into a :class:`CTScan` (int16 HU, z/y/x, exact geometry).

    Args:
        folder: a folder of DICOM files (one patient; nested folders are searched if the top has none).
        series_uid: SeriesInstanceUID to read; default: the axial CT series with the most slices.
        gantry_tilt: "resample" tilted series onto an orthogonal grid (with a warning) or "refuse" them.
    """
    folder = Path(folder)
    slices, warnings, non_dicom = scan_folder(folder)
    groups = group_series(slices)
    chosen, choose_warnings = choose_series(groups, folder, series_uid)
    group, kept, volume, pixel_warnings, clipped = _read_decodable(chosen, groups, folder)
    warnings += (choose_warnings if group is chosen else []) + pixel_warnings
    first = kept[0]
    row_mm, col_mm = first.pixel_spacing or (1.0, 1.0)
    if first.pixel_spacing is None:
        warnings.append("PixelSpacing missing: assumed 1 mm")
    regularize = functools.partial(
        regularize_slices,
        positions=np.stack([s.position for s in kept]),
        orientation=first.orientation,
        pixel_spacing_yx=(row_mm, col_mm),
        gantry_tilt=gantry_tilt,
        source=folder,
        fill_hu=PADDING_HU,
        slice_thickness=_float_or_none(getattr(first.ds, "SliceThickness", None)),
    )
    if volume.dtype == np.int16:
        # whether the grid is resampled depends on the positions alone: ask on 1 x 1 planes first
        grid = regularize(np.full((len(kept), 1, 1), PADDING_HU, np.float32))
        if grid.resampled:  # the float32 HU it interpolates: exact from int16 unless values were clipped
            hu = read_pixels(kept, as_float=True)[1] if clipped else volume.astype(np.float32)
            del volume
            grid = regularize(hu)
        else:
            grid = dataclasses.replace(grid, array=volume)
    else:
        grid = regularize(volume)
    warnings += grid.warnings
    for w in warnings:
        log.warning("%s: %s", folder, w)
    array = grid.array if grid.array.dtype == np.int16 else _to_int16(grid.array)
    return CTScan(
        array=array,
        spacing=grid.spacing_zyx,
        origin=tuple(grid.origin_xyz),
        direction=grid.direction,
        id=folder.name,
        metadata=_metadata(group, kept, non_dicom, grid.resampled),
        warnings=tuple(warnings),
        source=folder,
    )


def _read_decodable(
    group: SeriesGroup, groups: list[SeriesGroup], folder: Path
) -> tuple[SeriesGroup, list[SliceHeader], np.ndarray, list[str], bool]:
    """Sort ``group``'s slices, drop duplicates and stray slices, decode them. When none of its slices decodes
    (e.g. most slices of the series claim a Rows that their pixel data does not have), the next group of the same
    series (other matrix size) is read instead, with a warning; the first group's error if none decodes."""
    same_uid = sorted((g for g in groups if g.uid == group.uid and g is not group), key=_series_rank, reverse=True)
    failure: CorruptScanError | None = None
    for candidate in [group, *same_uid]:
        log.info("%s: reading series %s", folder, candidate.describe())
        ordered, warnings = drop_duplicates(candidate.slices)
        if len(ordered) == 1 and len(candidate.slices) > 1:
            position = float(ordered[0].position @ ordered[0].normal)
            raise GeometryError(
                f"all {len(candidate.slices)} slices of series {candidate.uid} are at one position "
                f"({position:g} mm along the normal, e.g. {ordered[0].path.name}): not a volume",
                path=folder,
                expected="slices at different ImagePositionPatient (0020,0032)",
            )
        ordered, stray_warnings = drop_stray_slices(ordered)
        try:
            kept, volume, pixel_warnings, clipped = read_pixels(ordered)
        except CorruptScanError as exc:
            if not str(exc.problem).startswith("no slice of the series could be decoded"):
                raise
            failure = failure or exc
            continue
        warnings += stray_warnings + pixel_warnings
        if candidate is not group and failure is not None:
            others = sum(len(g.slices) for g in groups if g.uid == group.uid and g is not candidate)
            warnings.append(
                f"{failure.problem}: read the {len(candidate.slices)} slices of {candidate.slices[0].rows} x "
                f"{candidate.slices[0].columns} pixels instead, dropping the other {others} image(s) of the series"
            )
        return candidate, kept, volume, warnings, clipped
    assert failure is not None
    raise failure


def _to_int16(hu: np.ndarray, chunk: int = 8) -> np.ndarray:
    """``clip(rint(hu))`` as int16: ``hu`` (ours, float32) is rounded and clipped in place a few slices at a time
    (the chunk stays in cache; no float copy of the volume), in :func:`decode_threads` threads."""
    out = np.empty(hu.shape, np.int16)

    def convert(start: int) -> None:
        part = hu[start : start + chunk]
        np.rint(part, out=part)
        np.clip(part, -32768, 32767, out=part)
        out[start : start + chunk] = part

    starts = range(0, hu.shape[0], chunk)
    threads = decode_threads()
    if threads > 1 and len(starts) > 1:
        with ThreadPoolExecutor(threads, thread_name_prefix="lungcad-int16") as pool:
            list(pool.map(convert, starts))
    else:
        for start in starts:
            convert(start)
    return out


def _float_or_none(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _int_or_none(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _metadata(group: SeriesGroup, kept: list[SliceHeader], non_dicom: int, resampled: bool) -> dict:
    ds = group.first
    tags = {
        "series_uid": "SeriesInstanceUID",
        "study_uid": "StudyInstanceUID",
        "patient_id": "PatientID",
        "modality": "Modality",
        "series_description": "SeriesDescription",
        "manufacturer": "Manufacturer",
        "model": "ManufacturerModelName",
        "kvp": "KVP",
        "convolution_kernel": "ConvolutionKernel",
        "slice_thickness_mm": "SliceThickness",
        "study_date": "StudyDate",
        "body_part": "BodyPartExamined",
        "frame_of_reference_uid": "FrameOfReferenceUID",
    }
    meta: dict = {"format": "dicom"}
    for key, tag in tags.items():
        value = getattr(ds, tag, None)
        if value not in (None, ""):
            meta[key] = value if isinstance(value, (int, float)) else str(value)
    normal = kept[0].normal
    meta.update(
        slice_files=[str(s.path) for s in kept],
        sop_instance_uids=[str(getattr(s.ds, "SOPInstanceUID", "")) for s in kept],
        instance_numbers=[_int_or_none(getattr(s.ds, "InstanceNumber", None)) for s in kept],
        slice_positions_mm=[float(s.position @ normal) for s in kept],
        slices_read=len(kept),
        non_dicom_files=non_dicom,
        transfer_syntax=str(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else "",
        resampled=resampled,
    )
    return meta
