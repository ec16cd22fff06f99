"""Write a :class:`CTScan` as LUNA16 ``.mhd/.raw`` or as a DSB-style DICOM series.

Used by ``lungcad synth`` and by tests that need real-format files with known geometry.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from lungcad.io.itk import scan_to_sitk
from lungcad.scan import CTScan

#: Prefix for the UIDs lungcad makes (the pydicom root, deterministic from an entropy source).
UID_PREFIX = pydicom.uid.PYDICOM_ROOT_UID


def write_mhd(scan: CTScan, path: str | Path, *, compress: bool = False) -> Path:
    """Write ``path`` (``.mhd`` + ``.raw`` beside it, LUNA16 layout; or ``.mha``/``.nii.gz``).

    The write goes to a temporary name first and is renamed into place, so a crash never leaves a
    half-written scan under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = scan_to_sitk(scan)
    if path.suffix != ".mhd":
        tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
        sitk.WriteImage(img, str(tmp), useCompression=compress)
        os.replace(tmp, path)
        return path
    tmp_stem = path.with_name(f".tmp-{os.getpid()}-{path.stem}")
    sitk.WriteImage(img, str(tmp_stem) + ".mhd", useCompression=compress)
    data_suffix = ".zraw" if compress else ".raw"
    header = Path(str(tmp_stem) + ".mhd").read_text()
    header = header.replace(
        f"ElementDataFile = {tmp_stem.name}{data_suffix}", f"ElementDataFile = {path.stem}{data_suffix}"
    )
    os.replace(str(tmp_stem) + data_suffix, path.with_suffix(data_suffix))
    tmp_header = Path(str(tmp_stem) + ".mhd")
    tmp_header.write_text(header)
    os.replace(tmp_header, path)
    return path


def deterministic_uid(*parts: object) -> str:
    """A valid DICOM UID derived only from ``parts`` (same inputs -> same UID on every machine)."""
    return generate_uid(prefix=UID_PREFIX, entropy_srcs=[str(p) for p in parts])


def ct_slice_datasets(
    scan: CTScan,
    *,
    patient_id: str | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
    rescale_intercept: float | Sequence[float] = -1024.0,
    rescale_slope: float | Sequence[float] = 1.0,
    signed: bool = True,
    padding_value: int | None = -2000,
    padding_mask: np.ndarray | None = None,
    series_description: str = "lungcad synthetic chest CT",
    slice_thickness: float | None = None,
) -> list[Dataset]:
    """One CT Image Storage dataset per axial slice of ``scan`` (index order k = 0..Z-1).

    Args:
        rescale_intercept, rescale_slope: scalars, or one value per slice (stored value
            ``raw = round((HU - intercept) / slope)``).
        signed: PixelRepresentation 1 (int16) or 0 (uint16; then raw must be >= 0).
        padding_value: raw value written where ``padding_mask`` is True (outside the scan circle),
            also stored as PixelPaddingValue; None writes no padding.
        padding_mask: bool ``(Z, Y, X)`` or ``(Y, X)``, True = padding.
    Returns:
        datasets with file meta, ready for :func:`pydicom.dcmwrite`.
    """
    nz = scan.shape[0]
    pid = patient_id or scan.id
    series_uid = series_uid or deterministic_uid("series", pid, scan.shape)
    template = _series_template(
        scan,
        pid,
        study_uid or deterministic_uid("study", pid),
        series_uid,
        series_description,
        slice_thickness if slice_thickness is not None else scan.spacing[0],
        signed,
        padding_value,
    )
    intercepts = np.broadcast_to(np.asarray(rescale_intercept, dtype=float), (nz,))
    slopes = np.broadcast_to(np.asarray(rescale_slope, dtype=float), (nz,))
    positions = scan.voxel_to_world(np.stack([np.arange(nz), np.zeros(nz), np.zeros(nz)], axis=1))
    normal_coord = positions @ np.cross(scan.direction[:, 0], scan.direction[:, 1])
    out = []
    for k in range(nz):
        mask = None if padding_mask is None else (padding_mask if padding_mask.ndim == 2 else padding_mask[k])
        ds = copy.deepcopy(template)
        ds.file_meta = _file_meta(deterministic_uid("sop", series_uid, k))
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [f"{v:.6f}" for v in positions[k]]
        ds.SliceLocation = f"{normal_coord[k]:.6f}"
        ds.RescaleIntercept = f"{intercepts[k]:g}"
        ds.RescaleSlope = f"{slopes[k]:g}"
        ds.PixelData = _stored_values(scan.array[k], intercepts[k], slopes[k], signed, padding_value, mask).tobytes()
        out.append(ds)
    return out


def _stored_values(
    hu: np.ndarray, intercept: float, slope: float, signed: bool, padding_value: int | None, padding: np.ndarray | None
) -> np.ndarray:
    """Stored pixel values of one slice: ``round((HU - intercept) / slope)``, padding, clipped to the type."""
    raw = np.rint((hu.astype(np.float64) - intercept) / slope)
    if padding is not None and padding_value is not None:
        raw[padding] = padding_value
    dtype = np.int16 if signed else np.uint16
    info = np.iinfo(dtype)
    return np.clip(raw, info.min, info.max).astype(dtype)


def _file_meta(sop_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = deterministic_uid("lungcad-implementation")
    return meta


def _series_template(
    scan: CTScan,
    pid: str,
    study_uid: str,
    series_uid: str,
    description: str,
    thickness: float,
    signed: bool,
    padding_value: int | None,
) -> Dataset:
    """The tags every slice of the series shares (patient, study, series, geometry, pixel format)."""
    d = scan.direction
    ny, nx = scan.shape[1:]
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.StudyDate = ds.SeriesDate = "20170101"
    ds.Modality = "CT"
    ds.Manufacturer = "lungcad synthetic"
    ds.SeriesDescription = description
    ds.PatientName = ds.PatientID = pid
    ds.BodyPartExamined = "CHEST"
    ds.SliceThickness = f"{thickness:.4g}"
    ds.KVP = "120"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = 2
    ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*d[:, 0], *d[:, 1])]
    ds.FrameOfReferenceUID = deterministic_uid("frame", pid)
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = ny, nx
    ds.PixelSpacing = [f"{scan.spacing[1]:.6f}", f"{scan.spacing[2]:.6f}"]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1 if signed else 0
    if padding_value is not None:
        ds.PixelPaddingValue = int(padding_value)
    ds.WindowCenter, ds.WindowWidth = "-600", "1500"
    ds.RescaleType = "HU"
    return ds


def write_datasets(datasets: Sequence[Dataset], folder: str | Path, names: Sequence[str]) -> list[Path]:
    """Write each dataset to ``folder/name`` (atomically: temp name, then rename)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds, name in zip(datasets, names, strict=True):
        path = folder / name
        tmp = folder / f".tmp-{os.getpid()}-{name}"
        pydicom.dcmwrite(tmp, ds, enforce_file_format=True)
        os.replace(tmp, path)
        paths.append(path)
    return paths


def write_dicom_series(
    scan: CTScan,
    folder: str | Path,
    *,
    shuffle_names: bool = True,
    seed: int = 0,
    **dataset_options,
) -> list[Path]:
    """Write ``scan`` as one DICOM file per slice in ``folder`` (DSB 2017 layout).

    With ``shuffle_names`` the file names are random hex strings unrelated to slice order, as in DSB 2017,
    so readers cannot rely on names. ``dataset_options`` go to :func:`ct_slice_datasets`.
    """
    datasets = ct_slice_datasets(scan, **dataset_options)
    if shuffle_names:
        rng = np.random.default_rng(seed)
        names = [f"{rng.integers(0, 2**63):016x}.dcm" for _ in datasets]
    else:
        names = [f"{k + 1:04d}.dcm" for k in range(len(datasets))]
    return write_datasets(datasets, folder, names)
