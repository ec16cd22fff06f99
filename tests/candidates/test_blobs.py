"""Blob-filter candidates: exact Hessian eigenvalues of a quadratic; a small nodule beside a vessel is found at
its world position, the vessel is not; peaks near U-Net candidates are dropped."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import confident_unet

from lungcad.candidates.blobs import BlobConfig, blob_candidates, hessian_eigenvalues
from lungcad.pipeline.detector import CandidateDetector
from lungcad.preprocess.crop import Box
from lungcad.preprocess.intensity import window_normalise
from lungcad.preprocess.pipeline import PreprocessedScan
from lungcad.scan import CTScan

CONFIG = BlobConfig(
    sigmas_mm=(1.0, 1.5, 2.2, 3.0), min_hu=-750.0, peak_window_mm=5.0, max_candidates=10, exclusion_mm=5.0
)
SPACING = (1.25, 0.8, 0.9)  # z, y, x mm
ORIGIN = (-61.3, 24.9, -211.4)  # x, y, z mm


def test_hessian_of_a_quadratic_is_exact_in_mm():
    z, y, x = np.meshgrid(*[np.arange(n) * s for n, s in zip((9, 10, 11), SPACING, strict=True)], indexing="ij")
    f = -(3.0 * z**2 + 0.5 * y**2 + 1.5 * x**2) + 0.25 * x * y  # curvatures per mm^2
    index = (np.array([4, 2]), np.array([5, 5]), np.array([5, 3]))
    ev = hessian_eigenvalues(f, SPACING, index)
    expected = np.linalg.eigvalsh(np.array([[-6.0, 0, 0], [0, -1.0, 0.25], [0, 0.25, -3.0]]))
    np.testing.assert_allclose(ev, [expected, expected], atol=1e-9)


def _lung_with_nodule_and_vessel(nodule_zyx, direction=None):
    """-850 HU lung, a 5 mm -20 HU ball at voxel ``nodule_zyx`` and a 4.4 mm-wide vessel along world x 9 mm
    away in y; returns the scan, its lung mask and the nodule's world position (mm)."""
    shape = (40, 70, 64)
    scan = CTScan(np.zeros(shape, np.int16), SPACING, ORIGIN, np.eye(3) if direction is None else direction)
    nodule = scan.voxel_to_world(nodule_zyx)
    zyx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    rel = scan.voxel_to_world(zyx) - nodule
    ball = np.linalg.norm(rel, axis=1) <= 2.5
    vessel = np.linalg.norm((rel - [0.0, 9.0, 0.0])[:, 1:], axis=1) <= 2.2
    hu = np.where(ball | vessel, -20, -850).reshape(shape).astype(np.int16)
    return scan.with_array(hu), np.ones(shape, bool), nodule


@pytest.mark.parametrize("direction", [np.eye(3), np.diag([-1.0, -1.0, 1.0])])
def test_a_small_nodule_is_the_strongest_blob_and_the_vessel_beside_it_is_not(direction):
    scan, lung, nodule = _lung_with_nodule_and_vessel([19.6, 33.3, 30.4], direction)  # between voxels
    table = blob_candidates(scan.array, scan, lung, CONFIG)
    xyz = table[["coordX", "coordY", "coordZ"]].to_numpy(float)
    top = table.iloc[0]
    assert np.linalg.norm(xyz[0] - nodule) < 1.0
    assert 3.4 <= top.diameter_mm <= 7.7  # the 5 mm ball's scale: 1.5 or 2.2 mm
    assert (table.blob_response.iloc[1:] < 0.2 * top.blob_response).all()  # the tube: at most weak bumps
    np.testing.assert_allclose(scan.voxel_to_world(table[["grid_z", "grid_y", "grid_x"]].to_numpy()), xyz)
    near = nodule + [0.0, 0.0, 3.0]  # e.g. a U-Net candidate 3 mm above
    kept = blob_candidates(scan.array, scan, lung, CONFIG, exclude_xyz=near[None])
    gap = np.linalg.norm(kept[["coordX", "coordY", "coordZ"]].to_numpy(float) - near, axis=1)
    assert (gap > CONFIG.exclusion_mm).all() and len(kept) == (np.linalg.norm(xyz - near, axis=1) > 5.0).sum()
    assert np.linalg.norm(kept[["coordX", "coordY", "coordZ"]].to_numpy(float) - nodule, axis=1).min() > 1.0


def test_nothing_outside_the_lung_and_a_bad_scale_is_refused():
    scan, lung, _ = _lung_with_nodule_and_vessel([20, 35, 30])
    assert blob_candidates(scan.array, scan, np.zeros_like(lung), CONFIG).empty
    with pytest.raises(ValueError, match="sigmas_mm"):
        BlobConfig(sigmas_mm=(0.0, 1.0), min_hu=-750.0, peak_window_mm=5.0, max_candidates=5, exclusion_mm=5.0)


@pytest.mark.parametrize("bias", [-8.0, 8.0])
def test_detector_adds_blobs_the_unet_missed_after_its_own_candidates(tmp_path, bias):
    """A U-Net silent everywhere (bias -8): the nodule comes from the blob filter, with the U-Net's ~0 score; a
    U-Net firing everywhere (+8): one U-Net candidate covers the lung and no blob is added near it."""
    scan, lung, nodule = _lung_with_nodule_and_vessel([19.6, 33.3, 30.4])
    detector = CandidateDetector.load(confident_unet(tmp_path / "unet", bias=bias, blobs=CONFIG))
    assert detector.config.blobs == CONFIG  # saved in detector.yaml and read back
    image = window_normalise(scan.array, detector.config.preprocess.hu_window).astype(np.float16)
    pre = PreprocessedScan(scan, image, lung, Box((0, 0, 0), scan.shape))
    table = detector.detect_preprocessed(pre)
    unet, blobs = table[table.source == "unet"], table[table.source == "blob"]
    assert (table.seriesuid == scan.id).all() and list(table.source) == ["unet"] * len(unet) + ["blob"] * len(blobs)
    if bias < 0:
        assert unet.empty and np.linalg.norm(blobs.iloc[0][["coordX", "coordY", "coordZ"]] - nodule) < 1.0
        assert (blobs.probability < 0.01).all()
    else:
        assert len(unet) >= 1 and (unet.probability > 0.99).all()
        gaps = np.linalg.norm(blobs[["coordX", "coordY", "coordZ"]].to_numpy(float)[:, None]
                              - unet[["coordX", "coordY", "coordZ"]].to_numpy(float)[None], axis=2)  # fmt: skip
        assert (gaps > CONFIG.exclusion_mm).all()
