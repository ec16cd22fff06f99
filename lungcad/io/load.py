"""``load_scan(path) -> CTScan``: the single entry point for reading CT."""

from __future__ import annotations

from pathlib import Path

from lungcad.errors import ScanNotFoundError, UnsupportedFormatError
from lungcad.io.dicom import TiltPolicy, read_dicom_series, read_header
from lungcad.io.itk import read_itk_image
from lungcad.scan import CTScan

#: File suffixes read with SimpleITK.
ITK_SUFFIXES = (".mhd", ".mha", ".nii", ".nii.gz", ".nrrd")


def load_scan(
    path: str | Path,
    *,
    series_uid: str | None = None,
    gantry_tilt: TiltPolicy = "resample",
) -> CTScan:
    """Read a CT scan.

    Args:
        path: a DICOM folder (one patient/series; DSB layout), one ``.dcm`` file of a series (its folder
            is read, that file's series chosen), a LUNA16 ``.mhd`` (with its ``.raw``), ``.mha``, or
            NIfTI ``.nii``/``.nii.gz``.
        series_uid: for DICOM folders with several series, the SeriesInstanceUID to read (default: the
            axial CT series with the most slices).
        gantry_tilt: DICOM only: "resample" tilted series onto an orthogonal grid or "refuse" them.

    Returns:
        the scan: int16 HU in (z, y, x) with exact world geometry; ``scan.warnings`` lists repairs.

    Raises:
        lungcad.errors.LungcadError subclasses with a one-line message naming the path.
    """
    path = Path(path)
    if not path.exists():
        raise ScanNotFoundError("no such file or folder", path=path)
    if path.is_dir():
        return read_dicom_series(path, series_uid=series_uid, gantry_tilt=gantry_tilt)
    name = path.name.lower()
    if name.endswith(ITK_SUFFIXES):
        return read_itk_image(path)
    if name.endswith((".raw", ".zraw")):
        raise UnsupportedFormatError(
            "this is the data half of a MetaImage", path=path, fix=f"give the header {path.with_suffix('.mhd').name}"
        )
    ds = read_header(path)
    if ds is not None:
        uid = series_uid or str(getattr(ds, "SeriesInstanceUID", "") or "") or None
        return read_dicom_series(path.parent, series_uid=uid, gantry_tilt=gantry_tilt)
    raise UnsupportedFormatError(
        "not a format lungcad reads", path=path,
        expected="a DICOM folder or file, .mhd/.mha, or .nii/.nii.gz",
    )
