"""Read LUNA16 ``.mhd/.raw``, ``.mha`` and NIfTI (``.nii``, ``.nii.gz``) with SimpleITK.

SimpleITK's geometry is trusted for these formats (it applies the MetaImage TransformMatrix and
converts NIfTI's RAS to LPS), but its error for a short ``.raw`` blames a missing file, so the header is
parsed first and the data file's byte count checked here.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lungcad.errors import CorruptScanError, GeometryError, UnsupportedFormatError
from lungcad.fileio import printable
from lungcad.io.hu import map_padding
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


def scan_to_sitk(scan: CTScan) -> sitk.Image:
    """SimpleITK image with the scan's array and exact geometry (spacing/origin/direction in x, y, z)."""
    img = sitk.GetImageFromArray(np.ascontiguousarray(scan.array))
    img.SetSpacing(tuple(scan.spacing_xyz))
    img.SetOrigin(tuple(scan.origin))
    img.SetDirection(tuple(np.asarray(scan.direction, dtype=float).ravel()))
    return img


def parse_mhd_header(path: Path) -> dict[str, str]:
    """The ``key = value`` pairs of a MetaImage header (up to ElementDataFile)."""
    header: dict[str, str] = {}
    try:
        with open(path, "rb") as fh:
            for raw in fh:
                line = raw.decode("latin-1").strip()
                if "=" not in line:
                    continue
                key, value = (part.strip() for part in line.split("=", 1))
                header[key] = value
                if key == "ElementDataFile":
                    break
    except OSError as exc:
        raise CorruptScanError(f"cannot read header ({exc.strerror})", path=path) from exc
    return header


def check_mhd_data(path: Path) -> dict[str, str]:
    """Check that the data file a ``.mhd`` names exists and holds enough bytes.

    Raises:
        CorruptScanError: missing keys, missing data file, or a data file shorter than the header says.
    """
    header = parse_mhd_header(path)
    for key in ("DimSize", "ElementType", "ElementDataFile"):
        if key not in header:
            raise CorruptScanError(f"MetaImage header has no {key}", path=path)
    data_name = header["ElementDataFile"]
    if data_name.upper() == "LOCAL" or data_name.upper().startswith("LIST"):
        return header
    data = path.parent / data_name
    if not data.is_file():
        raise CorruptScanError(
            f"data file {data_name} named by the header does not exist",
            path=path,
            fix=f"put {data_name} beside the .mhd",
        )
    if header.get("CompressedData", "False").lower() == "true":
        return header
    dims = [int(v) for v in header["DimSize"].split()]
    element = header["ElementType"]
    if element not in MET_BYTES:
        raise CorruptScanError(f"unsupported ElementType {element}", path=path, expected=", ".join(MET_BYTES))
    channels = int(header.get("ElementNumberOfChannels", "1"))
    expected = int(np.prod(dims)) * MET_BYTES[element] * channels
    skip = int(header.get("HeaderSize", "0"))
    actual = data.stat().st_size - max(skip, 0)
    if actual < expected:
        shape = "x".join(map(str, dims))
        raise CorruptScanError(
            f"{data.name} holds {actual} bytes, expected {expected} ({shape} {element}): the file is truncated",
            path=path,
            fix="copy or download the .raw again",
        )
    return header


def read_itk_image(path: str | Path) -> CTScan:
    """Read a ``.mhd``/``.mha``/``.nii``/``.nii.gz``/``.nrrd`` CT volume into a :class:`CTScan` (int16 HU).

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
    header = check_mhd_data(path) if path.suffix.lower() == ".mhd" else {}
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        msg = " ".join(str(exc).split())
        raise CorruptScanError(f"SimpleITK could not read it ({msg[-200:]})", path=path) from exc
    if image.GetDimension() != 3:
        raise GeometryError(f"image has {image.GetDimension()} dimensions", path=path, expected="a 3-D CT volume")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise GeometryError("image has several components per voxel", path=path, expected="a scalar CT volume")
    array = sitk.GetArrayViewFromImage(image)
    warnings: list[str] = []
    hu = _to_int16_hu(array, warnings)
    meta = {"format": path.suffix.lower().lstrip("."), "pixel_type": image.GetPixelIDTypeAsString()}
    if header:
        meta.update({f"mhd_{k}": v for k, v in header.items() if k in ("TransformMatrix", "AnatomicalOrientation")})
    for w in warnings:
        log.warning("%s: %s", path, w)
    return CTScan(
        array=hu,
        spacing=tuple(image.GetSpacing()[::-1]),
        origin=tuple(image.GetOrigin()),
        direction=np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3),
        id=path.name,
        metadata=meta,
        warnings=tuple(warnings),
        source=path,
    )


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
