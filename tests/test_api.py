"""The Python API as a notebook uses it: ``import lungcad`` (light), ``lungcad.load_scan``, ``lungcad.detect``,
``lungcad.evaluate_froc``, short reprs and Jupyter's pictures."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import simple_chest

import lungcad
from lungcad.cli.main import main
from lungcad.errors import ConfigError, ScanNotFoundError
from lungcad.io import write_mhd

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "luna16"
SAMPLE_SCAN = next(SAMPLE.glob("subset*/*.mhd"))
HEAVY = ("tensorflow", "keras", "pydicom", "SimpleITK", "matplotlib", "pandas")


def loaded_after(code: str) -> list[str]:
    """The heavy top-level packages a fresh interpreter has loaded after ``code``."""
    probe = f"import sys\n{code}\nprint(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    return eval(done.stdout.strip().splitlines()[-1])


def test_import_lungcad_is_light_and_tensorflow_waits_for_a_model():
    assert loaded_after("import lungcad; lungcad.CTScan; dir(lungcad)") == []
    assert "tensorflow" not in loaded_after("import lungcad; lungcad.load_scan; lungcad.detect; lungcad.evaluate_froc")


def test_the_lazy_names_import_on_first_use():
    from lungcad.api import detect, evaluate_froc
    from lungcad.io import load_scan

    assert (lungcad.detect, lungcad.evaluate_froc, lungcad.load_scan) == (detect, evaluate_froc, load_scan)
    assert {"detect", "evaluate_froc", "load_scan"} <= set(dir(lungcad))
    with pytest.raises(AttributeError, match="no attribute 'detec'"):
        lungcad.detec  # noqa: B018


def png_pixels(encoded: str) -> np.ndarray:
    from matplotlib.image import imread

    data = base64.b64decode(encoded)
    assert data.startswith(b"\x89PNG")
    return imread(io.BytesIO(data), format="png")


def test_scan_repr_is_one_short_line(make_scan):
    scan = make_scan(shape=(40, 64, 48), low=-1000, high=500)
    text = repr(scan)
    assert len(text) < 200 and "\n" not in text
    assert "id='patient0'" in text and "shape_zyx=(40, 64, 48)" in text and "spacing_zyx_mm=(1.25, 0.7, 0.8)" in text
    assert f"HU {scan.array.min()}..{scan.array.max()}" in text


def test_scan_html_shows_the_middle_slice_in_radiological_convention(make_scan):
    """A bright voxel in the first row and column: top-left as stored, bottom-right when the direction matrix says
    the columns run to the patient's right and the rows to anterior (radiological view: right on the left,
    anterior up)."""
    scan = make_scan(shape=(9, 32, 32), low=-1000, high=-999)
    array = scan.array.copy()
    array[4, 0, 0] = 400
    for direction, corner in ((np.eye(3), (0, 0)), (np.diag([-1.0, -1.0, 1.0]), (-1, -1))):
        shown = scan.with_array(array, direction=direction)
        page = shown._repr_html_()
        assert '<img src="data:image/png;base64,' in page and "shape_zyx=(9, 32, 32)" in page
        pixels = png_pixels(page.split("base64,")[1].split('"')[0])
        assert pixels.shape[:2] == (32, 32)
        bright = np.argwhere(pixels[..., 0] > 0.9)
        assert bright.tolist() == [[n % 32 for n in corner]]


def test_a_big_slice_is_shrunk_for_the_notebook(make_scan):
    pixels = png_pixels(make_scan(shape=(3, 600, 500)).slice_png_base64())
    assert max(pixels.shape[:2]) <= 256


def test_detect_takes_a_path_or_a_scan_and_shares_the_pipeline(tmp_path, confident_model):
    path = write_mhd(simple_chest(seed=1)[0], tmp_path / "1.2.3.mhd")
    from_path = lungcad.detect(path, "candidates", model=confident_model)
    from_scan = lungcad.detect(lungcad.load_scan(path), "candidates", model=confident_model)
    assert len(from_path.candidates) > 0 and from_path.stage == "candidates"
    pd.testing.assert_frame_equal(from_path.candidates, from_scan.candidates)
    assert from_path.scan.id == "1.2.3" and "read_s" in from_path.timings_s and "read_s" not in from_scan.timings_s
    assert from_path.cancer_probability is None
    text = repr(from_path)
    assert len(text) < 200 and "id='1.2.3'" in text and f"{len(from_path.candidates)} candidate(s)" in text


def test_detect_checks_its_arguments_before_reading(tmp_path, confident_model):
    with pytest.raises(ConfigError, match="unknown stage 'nodules'"):
        lungcad.detect(tmp_path / "missing.mhd", "nodules")
    with pytest.raises(ScanNotFoundError):
        lungcad.detect(tmp_path / "missing.mhd", "candidates", model=confident_model)


@pytest.fixture(scope="module")
def sample_result():
    scan = lungcad.load_scan(SAMPLE_SCAN)
    return lungcad.detect(scan, stage="fpr", precision="float32")  # the pinned table is float32's


def hits(candidates: pd.DataFrame, annotations: pd.DataFrame) -> int:
    """Annotated nodules with a candidate centre inside their sphere (the LUNA16 hit rule)."""
    xyz = candidates[["coordX", "coordY", "coordZ"]].to_numpy(float)
    found = 0
    for _, nodule in annotations.iterrows():
        distance = np.linalg.norm(xyz - nodule[["coordX", "coordY", "coordZ"]].to_numpy(float), axis=1)
        found += bool((distance <= nodule["diameter_mm"] / 2).any())
    return found


@pytest.mark.slow
def test_detect_finds_the_sample_nodules_in_its_top_five(sample_result):
    r = sample_result
    assert r.stage == "fpr" and r.cancer_probability is None and r.scan.id == SAMPLE_SCAN.stem
    assert r.candidates["probability"].is_monotonic_decreasing
    assert hits(r.candidates.head(5), pd.read_csv(SAMPLE / "annotations.csv")) >= 4
    assert {"preprocess_s", "unet_and_merge_s", "fpr_s"} <= set(r.timings_s)


@pytest.mark.slow
def test_the_api_gives_the_table_the_command_line_wrote(sample_result):
    """``lungcad detect`` pinned this table (tests/pipeline): the API runs the same per-scan core."""
    pinned = pd.read_csv(Path(__file__).parent / "pipeline" / "sample_candidates.csv")
    columns = ["coordX", "coordY", "coordZ", "probability", "diameter_mm"]
    found = sample_result.candidates
    assert len(found) == len(pinned)
    np.testing.assert_allclose(found[columns].to_numpy(float), pinned[columns].to_numpy(float), atol=1e-3)


@pytest.mark.slow
def test_result_reprs_and_pictures(sample_result):
    r = sample_result
    assert len(repr(r)) < 200 and len(repr(r.scan)) < 300
    assert "<table" in r._repr_html_() and "coordX" in r._repr_html_()
    picture = r.picture(1)
    assert picture.startswith(b"\x89PNG") and picture._repr_png_() == bytes(picture)
    assert repr(picture).startswith("<Picture PNG ")
    assert r.overview().startswith(b"\x89PNG") and len(r.reported()) <= 5
    with pytest.raises(IndexError, match="rank 0 is out of range"):
        r.picture(0)


@pytest.mark.slow
def test_evaluate_froc_gives_the_command_lines_cpm(sample_result, tmp_path, capsys):
    candidates = tmp_path / "candidates.csv"
    sample_result.candidates.to_csv(candidates, index=False)
    tables = ["--annotations", str(SAMPLE / "annotations.csv"), "--candidates", str(candidates)]
    extra = ["--excluded", str(SAMPLE / "annotations_excluded.csv"), "--seriesuids", str(SAMPLE / "seriesuids.csv")]
    assert main(["evaluate", "froc", *tables, *extra, "-o", str(tmp_path / "froc"), "--json"]) == 0
    cli = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    official = {"excluded": SAMPLE / "annotations_excluded.csv", "seriesuids": SAMPLE / "seriesuids.csv"}
    from_result = lungcad.evaluate_froc(sample_result, SAMPLE / "annotations.csv", **official)
    from_paths = lungcad.evaluate_froc(candidates, str(SAMPLE / "annotations.csv"), **official)
    from_frames = lungcad.evaluate_froc(
        pd.read_csv(candidates),
        pd.read_csv(SAMPLE / "annotations.csv"),
        excluded=pd.read_csv(SAMPLE / "annotations_excluded.csv"),
        seriesuids=[SAMPLE_SCAN.stem],
    )
    assert 0.5 < cli["cpm"] <= 1.0
    for result in (from_result, from_paths, from_frames):
        assert result.cpm == pytest.approx(cli["cpm"], abs=1e-12)
        assert list(result.sensitivity) == pytest.approx(list(cli["sensitivity"].values()), abs=1e-12)
    assert len(from_result.curve.fps) == len(from_result.curve.sensitivity) > 1
    assert repr(from_result).startswith(f"FrocResult(cpm={cli['cpm']:.4f}") and len(repr(from_result)) < 250
