"""The candidate table: the one schema every stage after the U-Net reads and writes (a pandas DataFrame, a row per
candidate).

=================================== ====================================================================
column                              meaning
=================================== ====================================================================
``seriesuid``                       the scan's id (:attr:`lungcad.scan.CTScan.id`)
``coordX, coordY, coordZ``          centre in world mm (patient LPS, as LUNA16's tables): :data:`XYZ`
``probability``                     the stage's nodule probability; tables are sorted by it, highest first
``diameter_mm``                     estimated diameter, mm
``grid_z, grid_y, grid_x``          fractional voxel index on the *preprocessing* grid (merge, blob filter):
                                    :data:`GRID_ZYX`
``voxel_z, voxel_y, voxel_x``       fractional voxel index on the *input scan's own* grid (``lungcad detect``'s
                                    output): :data:`VOXEL_ZYX`
``unet_probability``,               after the FPR: the U-Net's score, the WideResNet's, and ``probability``
``fpr_probability``                 their fusion (:mod:`lungcad.fpr.fusion`)
``slice_index, sop_instance_uid``   DICOM input only: the 0-based index and SOPInstanceUID of the slice nearest the
                                    centre (``lungcad detect``'s output)
``series_instance_uid``,            the DICOM series' SeriesInstanceUID and StudyInstanceUID (tags (0020,000E),
``study_instance_uid``              (0020,000D)), last in ``lungcad detect``'s output: :data:`DICOM_UIDS`; empty
                                    (None) for other input. ``seriesuid`` stays the scan's id (for DICOM the folder
                                    name, e.g. a DSB 2017 patient id), so these name the series for a PACS
=================================== ====================================================================

``lungcad detect``'s ``candidates.csv`` starts with :data:`SUBMISSION_COLUMNS` (the LUNA16 submission format).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: World centre columns (mm, LPS), in x, y, z order.
XYZ = ["coordX", "coordY", "coordZ"]
#: Fractional voxel index (z, y, x) on the preprocessing grid the candidates were found on.
GRID_ZYX = ["grid_z", "grid_y", "grid_x"]
#: Fractional voxel index (z, y, x) on the input scan's own grid.
VOXEL_ZYX = ["voxel_z", "voxel_y", "voxel_x"]
#: The DICOM series' SeriesInstanceUID and StudyInstanceUID, the last columns of ``lungcad detect``'s tables (None
#: for non-DICOM input: an empty CSV cell, a JSON null).
DICOM_UIDS = ["series_instance_uid", "study_instance_uid"]
#: Leading columns of ``candidates.csv`` (the LUNA16 submission format); the extras follow.
SUBMISSION_COLUMNS = ["seriesuid", "coordX", "coordY", "coordZ", "probability", "diameter_mm"]


def centres_xyz(table: pd.DataFrame) -> np.ndarray:
    """World centres (N, 3) in mm, x, y, z, as float."""
    return table[XYZ].to_numpy(float)


def by_probability(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` sorted by ``probability``, highest first; ties keep their order (stable); index reset."""
    return table.sort_values("probability", ascending=False, kind="stable").reset_index(drop=True)


def submission_order(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with :data:`SUBMISSION_COLUMNS` first, the other columns after in their order."""
    return table[SUBMISSION_COLUMNS + [c for c in table.columns if c not in SUBMISSION_COLUMNS]]
