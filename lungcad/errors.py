"""Every exception lungcad raises on purpose.

Each error renders as one line that names the file, the problem, what was expected and the fix, e.g.::

    /data/p1/IM12.dcm: pixel data is 1024 bytes, expected 524288 (512x512 x 16 bit); fix: re-export the slice

The CLI prints ``str(error)`` and exits with :attr:`LungcadError.exit_code`; batch commands record the
same line in their errors file.
"""

from __future__ import annotations

from pathlib import Path


class LungcadError(Exception):
    """Base class. ``path`` is the file or folder concerned (may be None for pure-API errors)."""

    exit_code = 1

    def __init__(
        self,
        problem: str,
        *,
        path: str | Path | None = None,
        expected: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        self.expected = expected
        self.fix = fix
        parts = [f"{self.path}: {problem}" if self.path else problem]
        if expected:
            parts.append(f"expected {expected}")
        if fix:
            parts.append(f"fix: {fix}")
        super().__init__("; ".join(p.replace("\n", " ") for p in parts))


class ScanNotFoundError(LungcadError):
    """The input path does not exist."""


class UnsupportedFormatError(LungcadError):
    """The path is neither a DICOM folder nor a file format lungcad reads."""


class NoDicomError(LungcadError):
    """A folder holds no readable DICOM image slices."""


class NotCTError(LungcadError):
    """The DICOM series found are not CT (e.g. MR, PT, SR only)."""


class SeriesNotFoundError(LungcadError):
    """A requested SeriesInstanceUID is not in the folder."""


class CorruptScanError(LungcadError):
    """A file is truncated or unreadable (short .raw, cut DICOM pixel data, ...)."""


class UnsupportedCompressionError(LungcadError):
    """DICOM pixel data uses a transfer syntax that no installed decoder handles."""


class GeometryError(LungcadError):
    """Slice geometry lungcad refuses to interpret (mixed orientations, tilt it cannot resample, ...)."""


class OutsideVolumeError(LungcadError):
    """A world coordinate maps outside the voxel grid of a scan."""


class ConfigError(LungcadError):
    """A configuration file is missing, malformed, or has unknown/ill-typed keys."""

    exit_code = 2


class DataLayoutError(LungcadError):
    """A dataset folder or table does not follow the expected layout (LUNA16 / DSB 2017 / ours)."""


class ScanTooLargeError(LungcadError):
    """A scan's declared or resampled size exceeds the voxel limit (:mod:`lungcad.io.limits`); refused before
    anything is allocated."""


class ExternalDataError(LungcadError):
    """A scan header (MetaImage ElementDataFile, NRRD data file) names pixel data outside the header's own folder;
    refused unless the caller allows it (``load_scan(..., allow_external_data=True)``, ``--allow-external-data``)."""


class OutputError(LungcadError):
    """The output folder cannot be created or written (read-only, not a folder, no permission); checked before any
    scan is read."""


class OutputBusyError(OutputError):
    """Another lungcad run holds the output folder's lock (``OUT/.lock``)."""


class InvalidUIDError(LungcadError):
    """A DICOM UID that is not valid (DICOM PS3.5 9.1: digits and dots, no leading zeros, at most 64 characters)
    where lungcad would have to copy it, e.g. into a DICOM SR's references to its source."""


class PacsError(LungcadError):
    """A DICOMweb server cannot be reached, answers with an error, or has no such study (``lungcad.pacs``)."""
