"""Read LUNA16 ``.mhd/.raw``, ``.mha``, NIfTI (``.nii``, ``.nii.gz``) and ``.nrrd`` with SimpleITK.

SimpleITK's geometry is trusted for these formats (it applies the MetaImage TransformMatrix and
converts NIfTI's RAS to LPS), but nothing it allocates is: a header may declare any size. So the header is checked
first, before a pixel is read: MetaImage headers are parsed here (NDims, DimSize, spacing, the voxel limit of
:mod:`lungcad.io.limits`, data files inside the header's folder, the data's byte count or, compressed, its inflated
size, checked in bounded steps), every format's size and spacing through SimpleITK's header-only
``ReadImageInformation``. SimpleITK's own error for a short ``.raw`` blames a missing file; a short ``.zraw`` it
pads with zeros.
"""

from __future__ import annotations

import logging
import math
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lungcad.errors import CorruptScanError, ExternalDataError, GeometryError, UnsupportedFormatError
from lungcad.fileio import printable
from lungcad.io.hu import map_padding
from lungcad.io.limits import check_voxel_count
from lungcad.scan import CTScan

log = logging.getLogger(__name__)

#: MetaImage element types and their sizes in bytes.
MET_BYTES = {
    "MET_CHAR": 1,
    "MET_UCHAR": 1,
    "MET_SHORT": 2,
    "MET_USHORT": 2,
    "MET_INT": 4,
    "MET_UINT": 4,
    "MET_LONG": 8,
    "MET_ULONG": 8,
    "MET_FLOAT": 4,
    "MET_DOUBLE": 8,
}
#: numpy types of the MetaImage element types lungcad inflates itself (the others are read by SimpleITK).
MET_DTYPES = {
    "MET_CHAR": "i1",
    "MET_UCHAR": "u1",
    "MET_SHORT": "i2",
    "MET_USHORT": "u2",
    "MET_INT": "i4",
    "MET_UINT": "u4",
    "MET_FLOAT": "f4",
    "MET_DOUBLE": "f8",
}

#: Most bytes of a MetaImage/NRRD text header read (a header is a few hundred bytes; a LIST of file names a few
#: hundred kB): a binary file posing as a header is not read whole.
MAX_HEADER_BYTES = 1 << 20
#: Compressed MetaImage data are inflated this many bytes at a time when checked against the declared size, so
#: memory stays bounded whatever the header claims.
INFLATE_CHUNK = 1 << 20
#: Bytes inflated per step at most (the memory bound beyond the declared size; larger steps are faster).
INFLATE_OUT_CHUNK = 1 << 24


def scan_to_sitk(scan: CTScan) -> sitk.Image:
    """SimpleITK image with the scan's array and exact geometry (spacing/origin/direction in x, y, z)."""
    img = sitk.GetImageFromArray(np.ascontiguousarray(scan.array))
    img.SetSpacing(tuple(scan.spacing_xyz))
    img.SetOrigin(tuple(scan.origin))
    img.SetDirection(tuple(np.asarray(scan.direction, dtype=float).ravel()))
    return img


def parse_mhd_header(path: Path) -> dict[str, str]:
    """The ``key = value`` pairs of a MetaImage header (up to ElementDataFile)."""
    return _read_meta_header(path)[0]


def _read_meta_header(path: Path) -> tuple[dict[str, str], int, list[str]]:
    """A MetaImage header's pairs, the byte offset where its data begins (for ``ElementDataFile = LOCAL``), and the
    lines after the header (the file names of ``ElementDataFile = LIST``); at most :data:`MAX_HEADER_BYTES` read."""
    header: dict[str, str] = {}
    offset = 0
    try:
        with open(path, "rb") as fh:
            while offset < MAX_HEADER_BYTES:
                raw = fh.readline(MAX_HEADER_BYTES - offset)
                if not raw:
                    break
                offset += len(raw)
                line = raw.decode("latin-1").strip()
                if "=" not in line:
                    continue
                key, value = (part.strip() for part in line.split("=", 1))
                header[key] = value
                if key == "ElementDataFile":
                    break
            rest: list[str] = []
            if header.get("ElementDataFile", "").upper().startswith("LIST"):
                text = fh.read(MAX_HEADER_BYTES).decode("latin-1")
                rest = [line.strip() for line in text.splitlines() if line.strip()]
    except OSError as exc:
        raise CorruptScanError(f"cannot read header ({exc.strerror})", path=path) from exc
    return header, offset, rest


def _positive_ints(path: Path, key: str, value: str, n: int) -> list[int]:
    """``n`` whole numbers > 0 from a header value, or CorruptScanError naming the key."""
    try:
        numbers = [int(v) for v in value.split()]
    except ValueError:
        numbers = []
    if len(numbers) != n or any(v <= 0 for v in numbers):
        raise CorruptScanError(
            f"header has {key} = {value[:80]!r}", path=path, expected=f"{n} whole numbers > 0 (a 3-D CT volume)"
        )
    return numbers


def _check_spacing(path: Path, key: str, spacing: list[float]) -> None:
    """GeometryError naming ``key`` unless every spacing is a finite number > 0."""
    if len(spacing) != 3 or not all(math.isfinite(v) and v > 0 for v in spacing):
        raise GeometryError(
            f"header has {key} = {' '.join(f'{v:g}' for v in spacing)}", path=path, expected="3 finite spacings > 0 mm"
        )


def _meta_geometry(path: Path, header: dict[str, str]) -> list[int]:
    """Check a MetaImage header's NDims, DimSize, spacing, ElementType and channels; its DimSize (x, y, z).

    Raises:
        CorruptScanError: a missing or malformed key; GeometryError: not a 3-D scalar volume, spacing <= 0 or NaN;
        ScanTooLargeError: DimSize over the voxel limit (:mod:`lungcad.io.limits`).
    """
    for key in ("NDims", "DimSize", "ElementType", "ElementDataFile"):
        if key not in header:
            raise CorruptScanError(f"MetaImage header has no {key}", path=path)
    if header["NDims"] != "3":
        raise GeometryError(
            f"header has NDims = {header['NDims'][:80]!r}", path=path, expected="NDims = 3 (a 3-D CT volume)"
        )
    dims = _positive_ints(path, "DimSize", header["DimSize"], 3)
    check_voxel_count(dims[::-1], path=path, what="the scan its header declares")
    key = "ElementSpacing" if "ElementSpacing" in header else "ElementSize" if "ElementSize" in header else None
    if key is not None:
        try:
            spacing = [float(v) for v in header[key].split()]
        except ValueError:
            spacing = [math.nan]
        _check_spacing(path, key, spacing)
    if header["ElementType"] not in MET_BYTES:
        raise CorruptScanError(
            f"unsupported ElementType {header['ElementType'][:80]}", path=path, expected=", ".join(MET_BYTES)
        )
    if header.get("ElementNumberOfChannels", "1") != "1":
        raise GeometryError(
            f"header has ElementNumberOfChannels = {header['ElementNumberOfChannels'][:80]!r}",
            path=path,
            expected="a scalar CT volume (1 channel)",
        )
    return dims


def _data_names(path: Path, key: str, value: str, listed: list[str], slices: int) -> list[str]:
    """The data file names a header's ``key`` (ElementDataFile, NRRD data file) gives: one name, the ``LIST`` lines,
    or a ``pattern min max step`` (printf-style) expanded, at most ``slices`` files."""
    if value.upper().startswith("LIST"):
        return listed
    tokens = value.split()
    if len(tokens) >= 4 and "%" in tokens[0]:
        try:
            first, last, step = (int(t) for t in tokens[1:4])
            count = len(range(first, last + 1, step)) if step else slices + 1
            if count > slices:
                raise ValueError
            return [tokens[0] % i for i in range(first, last + 1, step)]
        except (ValueError, TypeError):
            raise CorruptScanError(
                f"header has {key} = {value[:80]!r}", path=path, expected=f"a file pattern with at most {slices} files"
            ) from None
    return [value]


def _data_file(path: Path, key: str, name: str, allow_external_data: bool) -> Path:
    """The data file ``name`` (relative to the header's folder), refused when it resolves (symlinks followed)
    outside that folder unless ``allow_external_data``, or when it is not a file. A header that is itself a symlink
    may also have its data beside its target (a folder of links to LUNA16's ``.mhd`` and ``.raw``)."""
    data = path.parent / name
    folders = (path.absolute().parent.resolve(), path.resolve().parent)
    resolved = data.absolute().resolve()
    if not allow_external_data and not any(resolved.is_relative_to(f) for f in folders):
        raise ExternalDataError(
            f"header's {key} {name[:200]} is outside the header's folder ({resolved})",
            path=path,
            fix="put the data file beside the header, or allow it with --allow-external-data "
            "(load_scan(..., allow_external_data=True)) if you trust this header",
        )
    if not data.is_file():
        raise CorruptScanError(
            f"data file {name[:200]} named by the header does not exist",
            path=path,
            fix=f"put {name[:200]} beside the header",
        )
    return data


def check_mhd_data(path: Path, *, allow_external_data: bool = False) -> dict[str, str]:
    """Check a MetaImage header (``.mhd``/``.mha``) and its data before anything is allocated (see
    :func:`checked_mhd_data`); returns the header."""
    return checked_mhd_data(path, allow_external_data=allow_external_data)[0]


def checked_mhd_data(
    path: Path, *, allow_external_data: bool = False, keep_inflated: bool = False
) -> tuple[dict[str, str], np.ndarray | None]:
    """Check a MetaImage header (``.mhd``/``.mha``) and its data before anything is allocated; returns the header
    and, with ``keep_inflated``, the inflated bytes (uint8, exactly the declared size) of single-file compressed data
    (None otherwise): the check inflates them anyway, so the reader need not inflate them a second time.

    The header must declare a 3-D scalar volume within the voxel limit with positive spacing; its data files must
    lie in the header's folder (unless ``allow_external_data``) and hold exactly the declared bytes: raw data by
    file size, compressed data by inflating it in bounded steps (:data:`INFLATE_CHUNK`), never past the declared
    size.

    Raises:
        CorruptScanError, GeometryError, ScanTooLargeError, ExternalDataError: one line naming the header and the key.
    """
    header, offset, listed = _read_meta_header(path)
    dims = _meta_geometry(path, header)
    element = header["ElementType"]
    expected = math.prod(dims) * MET_BYTES[element]
    shape = f"{'x'.join(map(str, dims))} {element}"
    value = header["ElementDataFile"]
    compressed = header.get("CompressedData", "False").lower() == "true"
    if value.upper() == "LOCAL":
        files, skip = [path], offset
    else:
        names = _data_names(path, "ElementDataFile", value, listed, dims[2])
        files = [_data_file(path, "ElementDataFile", n, allow_external_data) for n in names]
        try:
            skip = int(header.get("HeaderSize", "0"))
        except ValueError:
            skip = 0
    if len(files) > 1:  # LIST or pattern: one header size per file; compressed lists are bounded by the voxel limit
        if not compressed:
            _check_byte_count(path, files[0].name, sum(f.stat().st_size for f in files), expected, shape)
        return header, None
    data = files[0]
    size = data.stat().st_size
    if compressed:
        available = size - offset if data == path else size
        stored = header.get("CompressedDataSize", "").strip()
        length = int(stored) if stored.isdigit() and int(stored) > 0 else available
        if length > available:
            raise CorruptScanError(
                f"header has CompressedDataSize = {length} but {data.name} holds {available} bytes: it is truncated",
                path=path,
                fix="copy or download the data again",
            )
        inflated = _check_inflated(path, data, size - available, length, expected, shape, keep=keep_inflated)
        return header, inflated
    if skip == -1:  # HeaderSize = -1: the data are the file's last bytes
        if size < expected:
            _check_byte_count(path, data.name, size, expected, shape)
    else:
        _check_byte_count(path, data.name, size - max(skip, 0), expected, shape)
    return header, None


def _check_byte_count(path: Path, name: str, actual: int, expected: int, shape: str) -> None:
    """CorruptScanError unless the raw data hold exactly the declared bytes."""
    if actual < expected:
        raise CorruptScanError(
            f"{name} holds {actual} bytes, expected {expected} ({shape}): the file is truncated",
            path=path,
            fix="copy or download the .raw again",
        )
    if actual > expected:
        raise CorruptScanError(
            f"{name} holds {actual} bytes, expected {expected} ({shape}): the header does not describe this data",
            path=path,
            fix="check DimSize, ElementType and HeaderSize in the header",
        )


def _check_inflated(
    path: Path, data: Path, offset: int, length: int, expected: int, shape: str, *, keep: bool = False
) -> np.ndarray | None:
    """CorruptScanError unless the zlib/gzip stream of ``length`` bytes at ``offset`` in ``data`` inflates to exactly
    ``expected`` bytes; inflates :data:`INFLATE_CHUNK` at a time and stops past ``expected`` (memory bounded). With
    ``keep``, returns the inflated bytes (uint8, ``expected`` of them; the buffer grows with the data actually
    inflated, so a header declaring more than its data holds allocates nothing beyond the data)."""
    inflater = zlib.decompressobj(47)  # 32 + 15: zlib or gzip header
    kept = bytearray() if keep else None
    total = 0
    try:
        with open(data, "rb") as fh:
            fh.seek(offset)
            while length > 0 and not inflater.eof and total <= expected:
                chunk = fh.read(min(INFLATE_CHUNK, length))
                if not chunk:
                    break
                length -= len(chunk)
                while total <= expected:
                    out = inflater.decompress(chunk, INFLATE_OUT_CHUNK)
                    if kept is not None and total + len(out) <= expected:
                        kept += out
                    total += len(out)
                    chunk = inflater.unconsumed_tail
                    if inflater.eof or (not chunk and len(out) < INFLATE_OUT_CHUNK):
                        break
    except zlib.error as exc:
        raise CorruptScanError(
            f"compressed data in {data.name} is corrupt ({exc})", path=path, fix="copy or download the data again"
        ) from exc
    if total < expected:
        raise CorruptScanError(
            f"compressed data in {data.name} inflate to {total} bytes, expected {expected} ({shape}): "
            "the file is truncated or the header's DimSize is wrong",
            path=path,
            fix="copy or download the data again, or check DimSize and ElementType in the header",
        )
    if total > expected:
        raise CorruptScanError(
            f"compressed data in {data.name} inflate to more than {expected} bytes ({shape}): "
            "the header does not describe this data",
            path=path,
            fix="check DimSize and ElementType in the header",
        )
    return None if kept is None else np.frombuffer(kept, np.uint8)


def check_nrrd_data(path: Path, *, allow_external_data: bool = False) -> None:
    """Refuse a NRRD header whose ``data file`` lies outside its folder (unless ``allow_external_data``)."""
    fields: dict[str, str] = {}
    listed: list[str] = []
    try:
        with open(path, "rb") as fh:
            head = fh.read(MAX_HEADER_BYTES).decode("latin-1")
    except OSError as exc:
        raise CorruptScanError(f"cannot read header ({exc.strerror})", path=path) from exc
    lines = head.split("\n")
    for i, line in enumerate(lines[1:], start=1):
        line = line.strip()
        if not line:
            break
        if line.startswith("#") or ":=" in line or ":" not in line:
            continue
        key, value = (part.strip() for part in line.split(":", 1))
        fields[key.lower()] = value
        if key.lower() in ("data file", "datafile") and value.upper().startswith("LIST"):
            listed = [n.strip() for n in lines[i + 1 :] if n.strip()]
            break
    key = "data file" if "data file" in fields else "datafile" if "datafile" in fields else None
    if key is None:
        return
    try:
        slices = int(fields.get("sizes", "").split()[-1])
    except (ValueError, IndexError):
        slices = 1
    for name in _data_names(path, key, fields[key], listed, max(slices, 1)):
        _data_file(path, key, name, allow_external_data)


def read_itk_image(path: str | Path, *, allow_external_data: bool = False) -> CTScan:
    """Read a ``.mhd``/``.mha``/``.nii``/``.nii.gz``/``.nrrd`` CT volume into a :class:`CTScan` (int16 HU).

    The header is checked before any pixel is read (:func:`check_mhd_data` for MetaImage, then SimpleITK's
    header-only ReadImageInformation for every format): a 3-D scalar volume within the voxel limit, positive
    spacing, data files inside the header's folder unless ``allow_external_data``.

    The id is the file name as is; :func:`lungcad.io.load_scan` names the scan by :func:`lungcad.io.scan_id`
    (the name without its suffix: the LUNA16 seriesuid for ``.mhd``).
    """
    path = Path(path)
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:  # SimpleITK aborts the process on such a name (std::logic_error)
        raise UnsupportedFormatError(
            "the file name is not valid UTF-8, which SimpleITK cannot open",
            path=printable(str(path)),
            fix="rename the file to a UTF-8 name",
        ) from None
    suffix = path.suffix.lower()
    header, inflated = {}, None
    if suffix in (".mhd", ".mha"):
        keep = header_dtype(parse_mhd_header(path)) is not None
        header, inflated = checked_mhd_data(path, allow_external_data=allow_external_data, keep_inflated=keep)
    if suffix == ".nrrd":
        check_nrrd_data(path, allow_external_data=allow_external_data)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        msg = " ".join(str(exc).split())
        raise CorruptScanError(f"SimpleITK could not read it ({msg[-200:]})", path=path) from exc
    if reader.GetDimension() != 3:
        raise GeometryError(f"image has {reader.GetDimension()} dimensions", path=path, expected="a 3-D CT volume")
    if reader.GetNumberOfComponents() != 1:
        raise GeometryError("image has several components per voxel", path=path, expected="a scalar CT volume")
    check_voxel_count(reader.GetSize()[::-1], path=path, what="the scan its header declares")
    _check_spacing(path, "spacing", list(reader.GetSpacing()))
    if inflated is not None:  # compressed MetaImage inflated by the check: its pixels, with ITK's geometry
        array = inflated.view(header_dtype(header)).reshape(reader.GetSize()[::-1])
        geometry = reader
    else:
        try:
            geometry = reader.Execute()
        except RuntimeError as exc:
            msg = " ".join(str(exc).split())
            raise CorruptScanError(f"SimpleITK could not read it ({msg[-200:]})", path=path) from exc
        array = sitk.GetArrayViewFromImage(geometry)
    warnings: list[str] = []
    hu = _to_int16_hu(array, warnings)
    pixel_type = sitk.GetPixelIDValueAsString(reader.GetPixelID())
    meta = {"format": path.suffix.lower().lstrip("."), "pixel_type": pixel_type}
    if header:
        meta.update({f"mhd_{k}": v for k, v in header.items() if k in ("TransformMatrix", "AnatomicalOrientation")})
    for w in warnings:
        log.warning("%s: %s", path, w)
    return CTScan(
        array=hu,
        spacing=tuple(geometry.GetSpacing()[::-1]),
        origin=tuple(geometry.GetOrigin()),
        direction=np.asarray(geometry.GetDirection(), dtype=np.float64).reshape(3, 3),
        id=path.name,
        metadata=meta,
        warnings=tuple(warnings),
        source=path,
    )


def header_dtype(header: dict[str, str]) -> np.dtype | None:
    """The numpy type of a MetaImage's voxels as stored (element type and byte order), for compressed data lungcad
    inflates itself; None where SimpleITK reads them (several channels, an element type not in :data:`MET_DTYPES`)."""
    channels = header.get("ElementNumberOfChannels", "1").strip() or "1"
    code = MET_DTYPES.get(header.get("ElementType", "").strip())
    if code is None or channels != "1":
        return None
    msb = (header.get("BinaryDataByteOrderMSB") or header.get("ElementByteOrderMSB") or "False").strip().lower()
    return np.dtype((">" if msb == "true" else "<") + code)


def _to_int16_hu(array: np.ndarray, warnings: list[str]) -> np.ndarray:
    """Round/clip any pixel type to int16 HU and map padding (<= -2000 HU) to air."""
    if np.issubdtype(array.dtype, np.floating):
        out = np.clip(np.rint(array), -32768, 32767).astype(np.int16)
    elif array.dtype == np.int16:
        out = np.array(array, copy=True)
    else:
        if array.size and (array.max() > 32767 or array.min() < -32768):
            warnings.append("values beyond the int16 range were clipped")
        out = np.clip(array, -32768, 32767).astype(np.int16)
    map_padding(out)
    return out
