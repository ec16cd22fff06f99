"""Plain helper functions for tests (importable as ``helpers``: pytest's pythonpath includes tests/)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _refuse_constant(name: str):
    raise ValueError(f"not strict JSON: {name}")


def read_strict_json(path: str | Path):
    """The JSON in ``path`` read as a strict parser reads it: ``NaN``, ``Infinity`` and ``-Infinity`` refused."""
    return json.loads(Path(path).read_text(encoding="utf-8"), parse_constant=_refuse_constant)


def rotation(axis: str, degrees: float) -> np.ndarray:
    """3x3 rotation about world axis 'x', 'y' or 'z'."""
    t = np.radians(degrees)
    c, s = np.cos(t), np.sin(t)
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def simple_chest(
    shape=(60, 96, 96),
    spacing=(2.5, 3.5, 3.5),
    lungs: str = "two",
    body_touches_edge: bool = False,
    nodule_radius_mm: float = 6.0,
    seed: int = 0,
):
    """A geometric chest (no anatomy detail) for lung-mask edge cases.

    Returns (CTScan, lung truth bool, juxtapleural nodule bool): body ellipse (40 HU) on a table, lungs as
    ellipsoids (-850 HU) whose size varies along z, a trachea (-1000 HU) from the top that splits into
    two main bronchi entering the lungs, and a solid nodule (30 HU) touching the left lung's outer wall.
    ``lungs``: "two", "one" (right lung only) or "merged" (lungs joined in front of the mediastinum).
    """
    from lungcad.scan import CTScan

    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    sz, sy, sx = spacing
    z, y, x = np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, spacing)), indexing="ij")
    cy, cx = ny * sy / 2, nx * sx / 2
    half_w = (nx * sx / 2) * (1.02 if body_touches_edge else 0.8)
    body = ((y - cy) / (0.55 * half_w)) ** 2 + ((x - cx) / half_w) ** 2 < 1
    hu = np.where(body, 40.0, -1000.0)
    hu[(y > cy + 0.6 * half_w) & (y < cy + 0.6 * half_w + 8)] = 200.0  # table
    zc = nz * sz
    rz = np.clip((z - 0.1 * zc) / (0.75 * zc), 0, 1)  # lungs grow from apex (top) to base
    height = (z > 0.1 * zc) & (z < 0.85 * zc)
    lung_r = 0.28 * half_w * (0.4 + 0.6 * np.sqrt(1 - rz))
    right = height & (((x - (cx - 0.42 * half_w)) / lung_r) ** 2 + ((y - cy) / (1.3 * lung_r)) ** 2 < 1)
    left = height & (((x - (cx + 0.42 * half_w)) / lung_r) ** 2 + ((y - cy) / (1.3 * lung_r)) ** 2 < 1)
    lung = right | (left if lungs != "one" else False)
    if lungs == "merged":
        lung |= height & (np.abs(x - cx) < 0.45 * half_w) & (np.abs(y - (cy - 0.5 * lung_r)) < 0.25 * lung_r)
    hu[lung] = -850.0
    airway = (np.hypot(x - cx, y - cy) < 8) & (z > 0.85 * zc)  # trachea above the lungs (top of volume)
    for side in (-1, 1):  # main bronchi from the carina into each lung
        t = np.clip((0.85 * zc - z) / (0.15 * zc), 0, 1)
        bx = cx + side * t * 0.42 * half_w
        airway |= (np.hypot(x - bx, y - cy) < 5) & (z > 0.7 * zc) & (z <= 0.85 * zc)
    hu[airway] = -1000.0
    wall_x = cx + 0.42 * half_w + lung_r[:, :, :] * 1.0
    nz0 = int(0.45 * nz)
    nodule_centre = (nz0 * sz, cy, float(wall_x[nz0, int(cy / sy), 0]) - nodule_radius_mm)
    nodule = (z - nodule_centre[0]) ** 2 + (y - nodule_centre[1]) ** 2 + (
        x - nodule_centre[2]
    ) ** 2 < nodule_radius_mm**2
    if lungs == "one":
        nodule[:] = False
    hu[nodule] = 30.0
    hu += rng.normal(0, 15, size=hu.shape)
    truth = (lung | nodule) & ~airway
    scan = CTScan(np.rint(hu).astype(np.int16), spacing, (-cx, -cy, -300.0), id=f"chest-{lungs}")
    return scan, truth, nodule


def tiny_scorer_config(scorer, **patch_changes):
    """A training config's ScorerConfig shrunk for tests: a WRN-10-1 on 16-voxel patches (``patch_changes`` to the
    patches too, e.g. ``spacing_mm=2.0``)."""
    import dataclasses

    return dataclasses.replace(
        scorer,
        model=dataclasses.replace(scorer.model, depth=10, widen_factor=1, patch_size=16),
        patches=dataclasses.replace(scorer.patches, size=16, **patch_changes),
    )


def tiny_scorer(path, config: str = "fpr"):
    """A random WRN-10-1 FPR model on 16-voxel patches (``configs/<config>.yaml`` otherwise), saved as a model
    directory at ``path``."""
    from lungcad.config import load_config
    from lungcad.fpr.inference import PatchScorer
    from lungcad.fpr.wideresnet import build_wideresnet
    from lungcad.train.fpr.train import FprTrainConfig

    scorer_config = tiny_scorer_config(load_config(FprTrainConfig, config).scorer)
    scorer = PatchScorer(build_wideresnet(scorer_config.model), scorer_config)
    scorer.save(path)
    return scorer


def tiny_detector_config(detector):
    """A training config's DetectorConfig shrunk for tests: a depth-3 U-Net with 4 base filters, no resampling."""
    import dataclasses

    return dataclasses.replace(
        detector,
        model=dataclasses.replace(detector.model, depth=3, base_filters=4),
        preprocess=dataclasses.replace(detector.preprocess, target_spacing_mm=None),
    )


def confident_unet(path, bias: float = 5.0, **detector_changes):
    """A tiny U-Net whose output is ~1 everywhere (zero kernel, bias +5; a negative ``bias``: ~0 everywhere),
    saved at ``path`` with ``detector_changes`` to its DetectorConfig: candidates wherever there is lung,
    whatever the random initialisation."""
    import dataclasses

    from lungcad.candidates.unet import build_unet
    from lungcad.config import load_config
    from lungcad.pipeline.detector import CandidateDetector
    from lungcad.train.candidates.train import UNetTrainConfig

    detector = tiny_detector_config(load_config(UNetTrainConfig, "unet").detector)
    model = build_unet(detector.model)
    last = [layer for layer in model.layers if layer.weights][-1]
    kernel, last_bias = last.get_weights()
    last.set_weights([np.zeros_like(kernel), np.full_like(last_bias, bias)])
    return CandidateDetector(model, dataclasses.replace(detector, **detector_changes)).save(path)


def tiny_unet_config(epochs: int = 2, steps_per_epoch: int = 3):
    """The bundled U-Net training config shrunk for tests: depth 3, 4 base filters, 32-pixel patches, no resampling,
    ``epochs`` x ``steps_per_epoch`` steps of 4 patches, 6 validation patches, recall on 1 scan."""
    import dataclasses

    from lungcad.config import load_config
    from lungcad.train.candidates.train import UNetTrainConfig

    cfg = load_config(UNetTrainConfig, "unet")
    return dataclasses.replace(
        cfg,
        detector=tiny_detector_config(cfg.detector),
        sampling=dataclasses.replace(cfg.sampling, patch_size=32),
        train=dataclasses.replace(cfg.train, epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=4),
        validation_patches=6,
        recall_scans=1,
    )


def gdcm_transcode(path, syntax) -> None:
    """Rewrite the DICOM file ``path`` in gdcm transfer syntax ``syntax`` (``gdcm.TransferSyntax.JPEGLSLossless``)."""
    import gdcm

    reader = gdcm.ImageReader()
    reader.SetFileName(str(path))
    assert reader.Read()
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(syntax))
    change.SetInput(reader.GetImage())
    assert change.Change()
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(path))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write()
