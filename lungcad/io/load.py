"""``load_scan(path) -> CTScan``: the single entry point for reading CT."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from lungcad.errors import ScanNotFoundError, UnsupportedFormatError
from lungcad.fileio import printable
from lungcad.io.dicom import TiltPolicy, read_dicom_series, read_header
from lungcad.io.itk import read_itk_image
from lungcad.io.limits import check_minimum_shape
from lungcad.scan import CTScan

#: Volume files ``load_scan`` reads (with SimpleITK), lower case: the one list, which discovery
#: (:func:`lungcad.io.find_scans`) also finds. DICOM is recognised by content, whatever its file names.
SCAN_SUFFIXES = (".mhd", ".mha", ".nii", ".nii.gz", ".nrrd")


#: The id of a scan whose path names no folder or file (the file system's root).
ROOT_ID = "scan"


def scan_id(path: str | Path) -> str:
    """The id of the scan at ``path`` (its output name): the file name without its volume suffix (a LUNA16
    ``.mhd``'s seriesuid), or the name of the DICOM folder or file.

    Both :func:`load_scan` (``CTScan.id``) and discovery (``ScanRef.id``) name scans by this one rule. The name is
    that of the resolved path when ``path`` ends in ``.`` or ``..`` (``lungcad detect .`` inside a scan folder), so
    an id is never empty, ``.`` or ``..``; the bytes of a non-UTF-8 name are written ``\\xNN``
    (:func:`lungcad.fileio.printable`), so an id can be written to any table. Outputs are named by
    :func:`lungcad.fileio.safe_stem` of the id.
    """
    path = Path(path)
    name = path.name
    if name in ("", ".", ".."):
        name = path.resolve().name
    for suffix in SCAN_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return printable(name) or ROOT_ID


def load_scan(
    path: str | Path,
    *,
    series_uid: str | None = None,
    gantry_tilt: TiltPolicy = "resample",
    allow_external_data: bool = False,
) -> CTScan:
    """Read a CT scan.

    Args:
        path: a DICOM folder (one patient/series; DSB layout), one ``.dcm`` file of a series (its folder
            is read, that file's series chosen), a LUNA16 ``.mhd`` (with its ``.raw``), ``.mha``, or
            NIfTI ``.nii``/``.nii.gz``.
        series_uid: for DICOM folders with several series, the SeriesInstanceUID to read (default: the
            axial CT series with the most slices).
        gantry_tilt: DICOM only: "resample" tilted series onto an orthogonal grid or "refuse" them.
        allow_external_data: MetaImage/NRRD only: read data files that lie outside the header's folder
            (``ElementDataFile = ../../x.raw``, an absolute path, a symlink out); refused by default.

    Returns:
        the scan: int16 HU in (z, y, x) with exact world geometry, named ``scan_id(path)`` (so a scan read
        from a ``ScanRef``'s path has that ref's id); ``scan.warnings`` lists repairs.

    Raises:
        lungcad.errors.LungcadError subclasses with a one-line message naming the path; a scan smaller than the
        pipeline's minimum (:func:`lungcad.io.limits.check_minimum_shape`) is refused.
    """
    path = Path(path)
    scan = _read(path, series_uid, gantry_tilt, allow_external_data)
    check_minimum_shape(scan.shape, scan.spacing, path=path)
    sid = scan_id(path)
    return scan if scan.id == sid else replace(scan, id=sid)


def _read(path: Path, series_uid: str | None, gantry_tilt: TiltPolicy, allow_external_data: bool) -> CTScan:
    """Dispatch ``path`` to its reader (see :func:`load_scan`)."""
    if not path.exists():
        raise ScanNotFoundError("no such file or folder", path=path)
    if path.is_dir():
        return read_dicom_series(path, series_uid=series_uid, gantry_tilt=gantry_tilt)
    name = path.name.lower()
    if name.endswith(SCAN_SUFFIXES):
        return read_itk_image(path, allow_external_data=allow_external_data)
    if name.endswith((".raw", ".zraw")):
        raise UnsupportedFormatError(
            "this is the data half of a MetaImage", path=path, fix=f"give the header {path.with_suffix('.mhd').name}"
        )
    ds = read_header(path)
    if ds is not None:
        uid = series_uid or str(getattr(ds, "SeriesInstanceUID", "") or "") or None
        return read_dicom_series(path.parent, series_uid=uid, gantry_tilt=gantry_tilt)
    raise UnsupportedFormatError(
        "not a format lungcad reads",
        path=path,
        expected=f"a DICOM folder or file, or a {'/'.join(SCAN_SUFFIXES)} file",
    )
