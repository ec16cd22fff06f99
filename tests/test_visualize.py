"""The report (lungcad.visualize): radiological orientation whatever the storage, the findings table's numbers, the
per-scan page and index, and the pages in a real browser (headless Chromium)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from helpers import simple_chest

from lungcad.scan import CTScan
from lungcad.visualize import (
    PictureConfig,
    finding_stack,
    findings_rows,
    lps_view,
    overview_images,
    scan_pictures,
    slice_numbers,
    write_index,
)

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
CONFIG = PictureConfig(max_findings=5, min_probability=0.5, crop_mm=80.0, viewer_slices=10, viewer_pixels=128)

#: Storage orders of one world: identity, LUNA16's flipped x and y, feet-first slices, a permutation of the axes.
DIRECTIONS = {
    "identity": np.eye(3),
    "flipped_xy": np.diag([-1.0, -1.0, 1.0]),
    "feet_first": np.diag([1.0, 1.0, -1.0]),
    "permuted": np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]),
}


def marker_scan(direction: np.ndarray, n: int = 33, spacing: float = 2.0) -> CTScan:
    """A cube of 2 mm voxels centred on world (0, 0, 0) stored with ``direction``: air, with a bright block towards
    the patient's left (+x), anterior (-y) and head (+z) of the centre."""
    origin = -direction @ np.full(3, spacing * (n - 1) / 2)
    empty = CTScan(np.zeros((n, n, n), np.int16), (spacing,) * 3, origin, direction)
    zyx = np.stack(np.meshgrid(*(np.arange(n),) * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    x, y, z = empty.voxel_to_world(zyx).T
    block = (np.abs(x - 16) < 5) & (np.abs(y + 12) < 5) & (np.abs(z - 10) < 5)
    return empty.with_array(np.where(block, 400, -1000).astype(np.int16).reshape(n, n, n))


@pytest.mark.parametrize("name", list(DIRECTIONS))
def test_every_storage_is_drawn_radiologically(name):
    scan = marker_scan(DIRECTIONS[name])
    axial, coronal, _ = overview_images(scan, np.ones(scan.shape, bool))
    reference_axial, reference_coronal, _ = overview_images(marker_scan(np.eye(3)), np.ones(scan.shape, bool))
    assert np.array_equal(axial, reference_axial) and np.array_equal(coronal, reference_coronal)
    rows, cols = np.nonzero(axial > 0)
    assert cols.min() > 16 and rows.max() < 16  # patient's left on the image's right, anterior up
    rows, cols = np.nonzero(coronal > 0)
    assert cols.min() > 16 and rows.max() < 16  # head up
    stack = finding_stack(scan, (0.0, 0.0, 10.0), crop_mm=60.0, pixels=30, half=3)
    centre = stack.hu[stack.centre]
    rows, cols = np.nonzero(centre > 0)
    assert cols.min() > 15 and rows.max() < 15 and abs(stack.offsets_mm[stack.centre]) < 1e-6
    order = np.argsort(stack.offsets_mm)
    reference = finding_stack(marker_scan(np.eye(3)), (0.0, 0.0, 10.0), crop_mm=60.0, pixels=30, half=3)
    np.testing.assert_allclose(stack.hu[order], reference.hu, atol=1e-3)


def test_luna16_and_dicom_copies_of_the_sample_are_drawn_alike():
    from lungcad.io import load_scan

    mhd = load_scan(next((SAMPLE / "luna16" / "subset0").glob("*.mhd")))
    dicom = load_scan(next((SAMPLE / "dsb2017" / "stage1").iterdir()))
    assert not np.array_equal(mhd.array, dicom.array)  # stored rotated by 180 degrees (x and y flipped)
    assert np.array_equal(lps_view(mhd.array, mhd).array, lps_view(dicom.array, dicom).array)
    nodule = pd.read_csv(SAMPLE / "luna16" / "annotations.csv")[["coordX", "coordY", "coordZ"]].to_numpy()[1]
    a, b = finding_stack(mhd, nodule), finding_stack(dicom, nodule)
    np.testing.assert_allclose(a.hu, b.hu, atol=1.0)
    assert a.slices == b.slices and None not in a.slices  # here the instance numbers count from the feet, from 1
    name, numbers = slice_numbers(dicom, nodule)
    expected = int(round(dicom.world_to_voxel(nodule)[0]))
    assert name == "InstanceNumber" and numbers == [dicom.metadata["instance_numbers"][expected]] == [expected + 1]


def test_dicom_slices_are_numbered_by_their_instance_number():
    positions = [float(z) for z in np.arange(6) * 2.0]
    scan = CTScan(
        np.zeros((6, 8, 8), np.int16),
        (2.0, 1.0, 1.0),
        (0.0, 0.0, 0.0),
        metadata={
            "slice_files": ["f"] * 6,
            "slice_positions_mm": positions,
            "instance_numbers": [60, 50, 40, 30, 20, 10],
        },
    )
    assert slice_numbers(scan, [[0, 0, 3.9], [0, 0, 0.2]]) == ("InstanceNumber", [40, 60])
    plain = scan.with_array(scan.array, metadata={})
    assert slice_numbers(plain, [[0, 0, 3.9], [0, 0, 0.2], [0, 0, 50.0]]) == ("slice", [3, 1, None])


def test_findings_rows_side_and_classifiers():
    scan = CTScan(np.zeros((10, 10, 10), np.int16), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    shown = pd.DataFrame(
        {
            "coordX": [8.0, 1.0],
            "coordY": [5.0, 5.0],
            "coordZ": [4.2, 6.0],
            "probability": [0.9, 0.7],
            "diameter_mm": [6.0, np.nan],
            "malignancy_logit": [0.0, 2.0],
        }
    )
    name, rows = findings_rows(scan, shown, midline_x=4.5)
    assert name == "slice" and [r["rank"] for r in rows] == [1, 2]
    assert [r["side"] for r in rows] == ["left", "right"]  # LPS: +x is the patient's left
    assert [r["slice"] for r in rows] == [5, 7] and rows[1]["diameter_mm"] is None
    assert rows[0]["P(malignant)"] == pytest.approx(0.5) and rows[1]["P(malignant)"] == pytest.approx(0.8808, abs=1e-4)
    assert "P(lobulated or spiculated)" not in rows[0]
    json.dumps(rows)


def chest_report(out: Path) -> dict:
    """A scan's report of the geometric chest (stored flipped as LUNA16 does) with its nodule and a second finding,
    and OUT/index.html; returns the pictures record."""
    chest, lung, nodule = simple_chest()
    scan = CTScan(
        chest.array[:, ::-1, ::-1].copy(),
        chest.spacing,
        (-chest.origin[0], -chest.origin[1], chest.origin[2]),
        np.diag([-1.0, -1.0, 1.0]),
        id="chest",
    )
    centre = chest.voxel_to_world(np.argwhere(nodule).mean(axis=0))
    shown = pd.DataFrame(
        {
            "coordX": [centre[0], -centre[0]],
            "coordY": [centre[1]] * 2,
            "coordZ": [centre[2]] * 2,
            "probability": [0.93, 0.61],
            "diameter_mm": [12.0, 5.0],
        }
    )
    pre = SimpleNamespace(scan=scan, lung_mask=lung[:, ::-1, ::-1])
    record = scan_pictures(scan, pre, shown, out / "pictures" / "chest", CONFIG, cancer_probability=0.42)
    record["centre"] = centre
    records = [
        {
            "id": "chest",
            "cancer_probability": 0.42,
            "pictures": json.loads(json.dumps({k: v for k, v in record.items() if k != "centre"})),
        }
    ]
    write_index(out, records)
    return record


def test_scan_report_files(tmp_path):
    record = chest_report(tmp_path)
    folder = tmp_path / "pictures" / "chest"
    assert record["page"] == "chest/scan.html" and record["findings"] == ["chest/finding_1.png", "chest/finding_2.png"]
    assert [r["side"] for r in record["table"]] == ["left", "right"]  # the nodule touches the left lung's wall
    for name in ["overview.png", "finding_1.png", "finding_1_lung.png", "finding_2_mediastinal.png"]:
        assert (folder / name).read_bytes()[:4] == b"\x89PNG"
    from PIL import Image

    strip = Image.open(folder / "finding_1_lung.png")
    assert strip.size == (128, 128 * 21) and strip.mode == "L"
    assert sum(p.stat().st_size for p in folder.iterdir()) < 2_000_000
    page = (folder / "scan.html").read_text()
    assert page.count('<tr class="finding">') == 2 and "P(cancer)" in page and "0.420" in page
    assert "http://" not in page and "https://" not in page  # nothing fetched: works offline from file://


# ------------------------------------------------------------------------------------------- headless Chromium
CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not on PATH (apt-get install -y chromium; .ci/run installs it)"
)


def browse(url: str, tmp: Path, *extra: str) -> tuple[str, list[str]]:
    """The DOM of ``url`` after Chromium ran its scripts (5 s of virtual time) and its console lines."""
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            f"--user-data-dir={tmp / 'chromium-profile'}",
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout, [line for line in result.stderr.splitlines() if "CONSOLE" in line]


def image_states(dom: str) -> list[str]:
    return re.findall(r'<img[^>]*data-state="(\w+)"', dom)


@needs_chromium
def test_browser_harness_sees_script_errors_and_missing_images(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text(
        "<!doctype html><body><img src='missing.png' onload=\"this.dataset.state='loaded'\" "
        "onerror=\"this.dataset.state='failed'\"><script>notDefined();</script></body>"
    )
    dom, console = browse(page.as_uri(), tmp_path, "--dump-dom")
    assert image_states(dom) == ["failed"] and any("notDefined" in line for line in console)


@needs_chromium
def test_report_pages_in_headless_chromium(tmp_path):
    record = chest_report(tmp_path)
    dom, console = browse((tmp_path / "index.html").as_uri(), tmp_path, "--dump-dom")
    assert console == []
    assert dom.count('<tr class="scan">') == 1 and dom.count('<tr class="finding">') == 2
    assert image_states(dom) == ["loaded"] * 3  # the overview and the findings' key images
    page = tmp_path / "pictures" / "chest" / "scan.html"
    dom, console = browse(page.as_uri(), tmp_path, "--dump-dom")
    assert console == []
    assert dom.count('<tr class="finding">') == 2
    assert image_states(dom) == ["loaded"] * 5  # two windows per viewer and the overview
    centre_slice = record["table"][0]["slice"]
    drawn = re.findall(r'<canvas[^>]*data-drawn="([^"]+)"', dom)
    assert drawn[0] == f"slice {centre_slice} lung" and len(drawn) == 2  # the viewers ran, on the centre slice
    shot = tmp_path / "scan.png"
    browse(page.as_uri(), tmp_path, f"--screenshot={shot}", "--window-size=1280,900")
    assert shot.read_bytes()[:4] == b"\x89PNG"


def test_stack_outside_the_scan_is_air_without_slice_numbers():
    scan = marker_scan(np.eye(3), n=9)
    stack = finding_stack(scan, (500.0, 0.0, 500.0), crop_mm=20.0, pixels=8, half=2)
    assert stack.hu.shape == (5, 8, 8) and np.all(stack.hu == -1024) and stack.slices == [None] * 5
