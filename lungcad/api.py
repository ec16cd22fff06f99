"""The Python API for notebooks and scripts: one call per task, served lazily from the package itself.

::

    import lungcad

    scan = lungcad.load_scan("sample_data/luna16/subset0/1.2.826....mhd")   # a CTScan (HU, world geometry)
    result = lungcad.detect(scan)            # or lungcad.detect("path/to/scan.mhd"); bundled models, every stage
    result.candidates.head()                 # the candidate table (lungcad.schema), most probable first
    result.cancer_probability                # the patient's P(cancer) (stage "risk"), else None
    result.picture(1)                        # PNG of the top finding's axial slice (shown inline in Jupyter)
    result.overview()                        # PNG of the lung MIP with the reported findings numbered
    froc = lungcad.evaluate_froc(result, "sample_data/luna16/annotations.csv")
    froc.cpm, froc.sensitivity

:func:`detect` runs :func:`lungcad.pipeline.run.detect_scan`, the same per-scan core as ``lungcad detect`` (which adds
the files: :mod:`lungcad.pipeline.writers`); models load once per process (:mod:`lungcad.pipeline.models`).
"""

from __future__ import annotations

import html
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lungcad.evaluate.analysis import FrocResult
from lungcad.evaluate.config import FrocConfig
from lungcad.pipeline.models import ModelSet
from lungcad.pipeline.run import Detection
from lungcad.scan import CTScan

__all__ = ["DetectionResult", "Picture", "detect", "evaluate_froc"]


class Picture(bytes):
    """PNG bytes that Jupyter shows as an image (``_repr_png_``); :meth:`save` writes them to a file."""

    def _repr_png_(self) -> bytes:
        return bytes(self)

    def save(self, path: str | Path) -> Path:
        """Write the PNG to ``path``; returns it."""
        path = Path(path)
        path.write_bytes(self)
        return path

    def __repr__(self) -> str:
        width, height = int.from_bytes(self[16:20], "big"), int.from_bytes(self[20:24], "big")  # the IHDR chunk
        return f"<Picture PNG {width}x{height}, {len(self) / 1024:.0f} KiB>"


@dataclass(repr=False, eq=False)
class DetectionResult(Detection):
    """What :func:`detect` found in one scan: a :class:`lungcad.pipeline.run.Detection` (``scan``, ``preprocessed``,
    ``candidates``, ``cancer_probability``, ``timings_s``) with the models it ran and pictures on demand.

    Attributes:
        models: the checked model directories it ran (``models.stage``: the last stage run).
    """

    models: ModelSet | None = None

    @property
    def stage(self) -> str | None:
        """The last stage run: "candidates", "fpr" or "risk"."""
        return None if self.models is None else self.models.stage

    def reported(self) -> pd.DataFrame:
        """The findings the report draws (``configs/pictures.yaml``: the most probable, above a threshold)."""
        from lungcad.visualize import reported_findings

        return reported_findings(self.candidates, _picture_config())

    def picture(self, rank: int = 1) -> Picture:
        """PNG of the axial slice through the candidate of ``rank`` (1 = the most probable), as the report's key image
        (radiological convention, lung window, the finding circled)."""
        from lungcad.schema import XYZ
        from lungcad.visualize import finding_stack, key_image

        if not 1 <= rank <= len(self.candidates):
            raise IndexError(f"rank {rank} is out of range: {self.scan.id} has {len(self.candidates)} candidate(s)")
        row, config = self.candidates.iloc[rank - 1], _picture_config()
        stack = finding_stack(self.scan, row[XYZ].to_numpy(float), config.crop_mm, config.viewer_pixels, 0)
        return _png(lambda path: key_image(stack, float(row["diameter_mm"]), path))

    def overview(self) -> Picture:
        """PNG of the axial lung MIP (preprocessed grid) with the :meth:`reported` findings numbered by rank."""
        from lungcad.visualize import overview_picture

        pre = self.preprocessed
        return _png(lambda path: overview_picture(pre.scan, np.asarray(pre.lung_mask), self.reported(), path))

    def __repr__(self) -> str:
        top = f", top probability {self.candidates['probability'].iloc[0]:.3f}" if len(self.candidates) else ""
        cancer = "" if self.cancer_probability is None else f", cancer_probability={self.cancer_probability:.3f}"
        seconds = sum(v for k, v in self.timings_s.items() if k.endswith("_s"))
        return (
            f"DetectionResult(id={self.scan.id!r}, stage={self.stage!r}, {len(self.candidates)} candidate(s)"
            f"{top}{cancer}, {seconds:.1f} s)"
        )

    def _repr_html_(self) -> str:
        head = self.candidates.head(10)[[c for c in _SHOWN_COLUMNS if c in self.candidates.columns]]
        return f"<p><code>{html.escape(repr(self))}</code></p>" + head.to_html(float_format=lambda v: f"{v:.3f}")


_SHOWN_COLUMNS = ("coordX", "coordY", "coordZ", "probability", "diameter_mm", "voxel_z", "voxel_y", "voxel_x")


def _picture_config():
    from lungcad.config import load_config
    from lungcad.visualize import PictureConfig

    return load_config(PictureConfig, "pictures")


def _png(draw) -> Picture:
    """The PNG that ``draw(path)`` writes (the report's picture functions write files), read back as bytes."""
    with tempfile.TemporaryDirectory(prefix="lungcad-picture-") as folder:
        return Picture(Path(draw(Path(folder) / "picture.png")).read_bytes())


def detect(
    path_or_scan: str | Path | CTScan,
    stage: str | None = None,
    *,
    model: str | Path | None = None,
    fpr_model: str | Path | None = None,
    risk_model: str | Path | None = None,
    blobs: str | Path | None = None,
    precision: str = "auto",
) -> DetectionResult:
    """Find nodules in one scan, in memory (no file written): what ``lungcad detect`` computes per scan.

    Args:
        path_or_scan: a :class:`~lungcad.scan.CTScan` or anything :func:`lungcad.io.load_scan` reads (a DICOM
            folder, ``.mhd``, ``.mha``, NIfTI, NRRD).
        stage: the last stage to run: "candidates" (U-Net), "fpr" (false-positive reduction) or "risk" (also the
            patient's P(cancer)); default: as far as models are bundled or given ("risk" in a full installation).
        model, fpr_model, risk_model: model directories (``lungcad train unet|fpr|risk``); default: the bundled.
        blobs: also add blob-filter candidates (a config name in ``configs/``, e.g. "blobs", or a YAML path).
        precision: "auto" (bfloat16 for the models that run faster in it, where the CPU has AMX or AVX512-BF16),
            "float32" or "bfloat16" (every model): :mod:`lungcad.pipeline.precision`; ``result.precision`` says
            what each model computed in.

    Returns:
        a :class:`DetectionResult`: ``candidates`` (DataFrame, most probable first: world mm ``coordX..Z``,
        ``probability``, ``diameter_mm``, voxel indices ``voxel_z, voxel_y, voxel_x`` on the scan's grid),
        ``cancer_probability`` (None below stage "risk"), ``scan``, ``timings_s``, ``picture(rank)``, ``overview()``.

    Raises:
        lungcad.errors.LungcadError subclasses (one line naming the file and the fix): models are checked before
        the scan is read.
    """
    from lungcad.pipeline.models import model_set
    from lungcad.pipeline.run import detect_scan

    models = model_set(stage, model, fpr_model, risk_model, blobs, precision)
    timings: dict[str, float] = {}
    if isinstance(path_or_scan, CTScan):
        scan = path_or_scan
    else:
        from lungcad.io import load_scan

        t = time.perf_counter()
        scan = load_scan(path_or_scan)
        timings["read_s"] = time.perf_counter() - t
    found = detect_scan(scan, models, timings)
    return DetectionResult(
        found.scan,
        found.preprocessed,
        found.candidates,
        found.cancer_probability,
        found.timings_s,
        found.precision,
        models=models,
    )


def evaluate_froc(
    candidates: pd.DataFrame | str | Path | Detection | Sequence[Detection],
    annotations: pd.DataFrame | str | Path,
    *,
    seriesuids: Sequence[str] | str | Path | None = None,
    excluded: pd.DataFrame | str | Path | None = None,
    config: FrocConfig | str | Path | None = "evaluate",
) -> FrocResult:
    """LUNA16 FROC and CPM of CAD marks against annotations, as ``lungcad evaluate froc`` computes them.

    Args:
        candidates: the marks: a :func:`detect` result (or a list of them), a DataFrame (``seriesuid, coordX,
            coordY, coordZ`` world mm, ``probability``) or a CSV path (e.g. ``lungcad detect``'s candidates.csv).
        annotations: the nodules (``seriesuid, coordX, coordY, coordZ, diameter_mm``): a DataFrame or a CSV path
            (LUNA16's annotations.csv).
        seriesuids: the scans evaluated (the false-positive denominator): ids, or a file of one per line; default:
            the results' scan ids when ``candidates`` are results, else every id in the tables (with a warning).
        excluded: annotations whose hits are ignored (LUNA16's annotations_excluded.csv), DataFrame or path.
        config: a :class:`lungcad.evaluate.FrocConfig`, or the evaluate config (name or YAML path) whose ``froc``
            section to use; default ``configs/evaluate.yaml``, as the command line.

    Returns:
        a :class:`lungcad.evaluate.FrocResult`: ``cpm``, ``sensitivity`` at ``operating_points`` (FPs per scan),
        ``curve`` (``fps``, ``sensitivity``), ``match`` (per nodule and per mark), ``by_size``.
        ``lungcad.evaluate.write_froc_outputs(result, folder)`` writes the CLI's files and plot.
    """
    from lungcad.evaluate.analysis import compute_froc
    from lungcad.evaluate.config import load_evaluate_config
    from lungcad.evaluate.tables import read_annotations, read_candidates, read_seriesuids

    cfg = config if isinstance(config, FrocConfig) else load_evaluate_config(config).froc
    source = None
    if isinstance(candidates, Detection):
        candidates = [candidates]
    if isinstance(candidates, (str, Path)):
        source = str(candidates)
        table = read_candidates(candidates, score_column=cfg.score_column)
    elif isinstance(candidates, pd.DataFrame):
        table = _scored(candidates, cfg.score_column)
    else:
        results = list(candidates)
        table = _scored(pd.concat([r.candidates.assign(seriesuid=r.scan.id) for r in results]), cfg.score_column)
        if seriesuids is None:
            seriesuids = [r.scan.id for r in results]
    if isinstance(annotations, (str, Path)):
        annotations = read_annotations(annotations)
    if isinstance(excluded, (str, Path)):
        excluded = read_annotations(excluded, excluded=True)
    if isinstance(seriesuids, (str, Path)):
        seriesuids = read_seriesuids(seriesuids)
    return compute_froc(
        annotations,
        table,
        None if seriesuids is None else list(seriesuids),
        excluded=excluded,
        config=cfg,
        candidates_source=source,
    )


def _scored(table: pd.DataFrame, score_column: str) -> pd.DataFrame:
    """``table`` with its ``score_column`` as the ``probability`` the FROC ranks by (as
    :func:`lungcad.evaluate.read_candidates` does for files)."""
    if score_column == "probability":
        return table
    return table.drop(columns=["probability"], errors="ignore").rename(columns={score_column: "probability"})
