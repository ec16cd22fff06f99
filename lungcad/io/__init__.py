"""Stage 1, read CT: DICOM series (pydicom), LUNA16 ``.mhd/.raw``, ``.mha``, NIfTI and NRRD (SimpleITK).

``load_scan(path) -> CTScan`` is the one entry point for reading; ``find_scans(inputs) -> [ScanRef]`` finds what it
reads in files, folders and trees, and both name a scan by ``scan_id(path)``. Writers for the same formats live in
:mod:`lungcad.io.writers`.
"""

from lungcad.io.discover import ScanRef, find_scans
from lungcad.io.load import SCAN_SUFFIXES, load_scan, scan_id
from lungcad.io.writers import ct_slice_datasets, write_datasets, write_dicom_series, write_mhd

__all__ = [
    "SCAN_SUFFIXES",
    "ScanRef",
    "ct_slice_datasets",
    "find_scans",
    "load_scan",
    "scan_id",
    "write_datasets",
    "write_dicom_series",
    "write_mhd",
]
