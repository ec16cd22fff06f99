"""Stage 1, read CT: DICOM series (pydicom), LUNA16 ``.mhd/.raw``, ``.mha`` and NIfTI (SimpleITK).

``load_scan(path) -> CTScan`` is the one entry point; writers for the same formats live in
:mod:`lungcad.io.writers`.
"""

from lungcad.io.load import load_scan
from lungcad.io.writers import ct_slice_datasets, write_datasets, write_dicom_series, write_mhd

__all__ = ["ct_slice_datasets", "load_scan", "write_datasets", "write_dicom_series", "write_mhd"]
