"""``lungcad detect --stage candidates``: batch outputs, a corrupt scan recorded, resume, model errors."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pandas as pd
import pytest
from helpers import read_strict_json, simple_chest, tiny_detector_config, tiny_scorer

from lungcad.candidates.unet import build_unet
from lungcad.cli.main import main
from lungcad.config import load_config
from lungcad.fpr.inference import PatchScorer
from lungcad.io import write_dicom_series, write_mhd
from lungcad.pipeline.detector import CandidateDetector
from lungcad.train.candidates.train import UNetTrainConfig


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    detector = tiny_detector_config(load_config(UNetTrainConfig, "unet").detector)
    path = tmp_path_factory.mktemp("model")
    return CandidateDetector(build_unet(detector.model), detector).save(path)


def test_detect_batch_with_corrupt_scan_and_resume(tmp_path, tiny_model, capsys):
    data = tmp_path / "in"
    scan, _, _ = simple_chest(seed=1)
    write_mhd(scan, data / "luna" / "1.2.3.mhd")
    write_dicom_series(simple_chest(seed=2)[0], data / "dsb" / "patientA")
    bad = write_mhd(scan, data / "luna" / "1.2.4.mhd")
    bad.with_suffix(".raw").write_bytes(b"\x00" * 100)
    out = tmp_path / "out"
    assert main(["detect", str(data), "-o", str(out), "--model", str(tiny_model), "--stage", "candidates"]) == 3
    assert "2 scans done, 0 already done, 1 failed" in capsys.readouterr().out
    errors = pd.read_csv(out / "errors.csv")
    assert list(errors.id) == ["1.2.4"] and "truncated" in errors.error[0]
    table = pd.read_csv(out / "candidates.csv")
    assert list(table.columns[:6]) == ["seriesuid", "coordX", "coordY", "coordZ", "probability", "diameter_mm"]
    assert set(table.seriesuid) <= {"1.2.3", "patientA"}
    record = read_strict_json(out / "scans" / "patientA.json")
    assert record["geometry"]["modality"] == "CT" and "total_s" in record["timings_s"]
    assert len(record["candidates"]) == (table.seriesuid == "patientA").sum()
    stamp = (out / "scans" / "1.2.3.json").stat().st_mtime_ns
    assert main(["detect", str(data), "-o", str(out), "--model", str(tiny_model), "--stage", "candidates"]) == 3
    assert "0 scans done, 2 already done, 1 failed" in capsys.readouterr().out
    assert (out / "scans" / "1.2.3.json").stat().st_mtime_ns == stamp
    assert len(pd.read_csv(out / "candidates.csv")) == len(table)


def test_detect_with_a_folder_that_is_not_a_model(tmp_path, capsys):
    write_mhd(simple_chest()[0], tmp_path / "a.mhd")
    assert main(["detect", str(tmp_path / "a.mhd"), "-o", str(tmp_path / "o"), "--model", str(tmp_path)]) == 2
    assert "not a U-Net model directory" in capsys.readouterr().err


def test_detect_fpr_stage_puts_the_wideresnet_score_in_probability(tmp_path, confident_model):
    tiny_model = confident_model
    scan, _, _ = simple_chest(seed=1)
    write_mhd(scan.with_array(scan.array, id="1.2.3"), tmp_path / "in" / "1.2.3.mhd")
    scorer = tiny_scorer(tmp_path / "fpr")
    out = tmp_path / "out"
    assert (
        main(
            ["detect", str(tmp_path / "in"), "-o", str(out / "c"), "--model", str(tiny_model), "--stage", "candidates"]
        )
        == 0
    )
    # float32: compared with the float32 scorer to 1e-5 (bfloat16, --precision auto on AMX, is tested in
    # tests/pipeline/test_precision.py)
    args = [
        "--model",
        str(tiny_model),
        "--stage",
        "fpr",
        "--fpr-model",
        str(tmp_path / "fpr"),
        "--precision",
        "float32",
    ]
    assert main(["detect", str(tmp_path / "in"), "-o", str(out / "f"), *args]) == 0
    unet = pd.read_csv(out / "c" / "candidates.csv")
    fpr = pd.read_csv(out / "f" / "candidates.csv")
    assert len(unet) > 0 and len(fpr) == len(unet)
    assert list(fpr.columns[:6]) == ["seriesuid", "coordX", "coordY", "coordZ", "probability", "diameter_mm"]
    assert fpr.probability.is_monotonic_decreasing
    merged = fpr.merge(unet, on=["coordX", "coordY", "coordZ"], suffixes=("", "_c"))
    assert len(merged) == len(unet) and (merged.unet_probability == merged.probability_c).all()
    from lungcad.io import load_scan

    loaded = load_scan(tmp_path / "in" / "1.2.3.mhd")
    expected = scorer.score(loaded, fpr[["coordX", "coordY", "coordZ"]].to_numpy(float))
    assert fpr.probability.to_numpy() == pytest.approx(expected, abs=1e-5)
    assert fpr.fpr_probability.to_numpy() == pytest.approx(expected, abs=1e-5)  # unet_weight 0: the FPR alone
    assert json.loads((out / "f" / "scans" / "1.2.3.json").read_text())["model"]["fpr"] == str(tmp_path / "fpr")
    # a model with a fusion weight: probability is the FPR's fused with the candidate's mean U-Net probability
    fused = PatchScorer(scorer.model, dataclasses.replace(scorer.config, unet_weight=0.3))
    fused.save(tmp_path / "fused")
    args_fused = [*args[:-4], "--fpr-model", str(tmp_path / "fused"), "--precision", "float32"]
    assert main(["detect", str(tmp_path / "in"), "-o", str(out / "g"), *args_fused]) == 0
    g = pd.read_csv(out / "g" / "candidates.csv")
    assert g.fpr_probability.to_numpy() == pytest.approx(
        scorer.score(loaded, g[["coordX", "coordY", "coordZ"]].to_numpy(float)), abs=1e-5
    )
    assert g.probability.to_numpy() == pytest.approx(g.fpr_probability**0.7 * g.mean_probability**0.3, rel=1e-6)
    assert g.probability.is_monotonic_decreasing
    # a rerun into the candidates-only folder with another stage is not "already done": the scan is redone
    assert main(["detect", str(tmp_path / "in"), "-o", str(out / "c"), *args]) == 0
    assert pd.read_csv(out / "c" / "candidates.csv").equals(fpr)


def test_detect_fpr_stage_without_a_model_says_how_to_get_one(tmp_path, tiny_model, capsys):
    write_mhd(simple_chest()[0], tmp_path / "a.mhd")
    args = ["--model", str(tiny_model), "--stage", "fpr", "--fpr-model", str(tmp_path / "none")]
    assert main(["detect", str(tmp_path / "a.mhd"), "-o", str(tmp_path / "o"), *args]) == 2
    assert "lungcad train fpr" in capsys.readouterr().err


def test_default_stage_is_the_deepest_one_with_models(tmp_path, monkeypatch):
    import lungcad.pipeline.models as detect

    monkeypatch.setattr(detect, "BUNDLED_MODELS", tmp_path)
    assert detect.default_stage() == "candidates"
    assert detect.default_stage(fpr_model_dir="m") == "fpr"
    (tmp_path / "fpr").mkdir()
    (tmp_path / "risk").mkdir()
    assert detect.default_stage() == "risk"


def test_dicom_candidates_name_the_slice_through_their_centre(tmp_path, confident_model):
    import pydicom
    from helpers import rotation

    scan, _, _ = simple_chest(seed=3)
    flipped = scan.with_array(scan.array, direction=rotation("x", 180.0))  # feet-first-like: z runs the other way
    # UIDs that a CSV reader would take for numbers (1.20 -> 1.2) unless read as text
    write_dicom_series(flipped, tmp_path / "in" / "patientB", series_uid="1.20", study_uid="1.30")
    write_mhd(simple_chest(seed=4)[0], tmp_path / "in" / "9.8.7.mhd")
    out = tmp_path / "out"
    assert (
        main(["detect", str(tmp_path / "in"), "-o", str(out), "--model", str(confident_model), "--stage", "candidates"])
        == 0
    )
    both = pd.read_csv(out / "candidates.csv", dtype=str, keep_default_na=False)
    assert list(both.columns[-2:]) == ["series_instance_uid", "study_instance_uid"]
    other = both[both.seriesuid == "9.8.7"]
    assert len(other) > 0 and (other.series_instance_uid == "").all() and (other.study_instance_uid == "").all()
    dicom = both[both.seriesuid != "9.8.7"]
    assert len(dicom) > 0 and (dicom.seriesuid == "patientB").all()  # the folder name: the DSB patient id
    assert (dicom.series_instance_uid == "1.20").all() and (dicom.study_instance_uid == "1.30").all()
    table = pd.read_csv(out / "candidates.csv", dtype={"seriesuid": str, "sop_instance_uid": str})
    table = table[table.seriesuid == "patientB"]
    by_uid = {}
    for path in (tmp_path / "in" / "patientB").iterdir():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        by_uid[ds.SOPInstanceUID] = np.asarray(ds.ImagePositionPatient, float)
    normal = flipped.direction[:, 2]
    for _, row in table.iterrows():
        centre = row[["coordX", "coordY", "coordZ"]].to_numpy(float)
        gap = abs((by_uid[row.sop_instance_uid] - centre) @ normal)
        assert gap <= flipped.spacing[0] / 2 + 1e-6
        # voxel coordinates are in the input scan's grid: back to the same world point
        np.testing.assert_allclose(
            flipped.voxel_to_world(row[["voxel_z", "voxel_y", "voxel_x"]].to_numpy(float)), centre, atol=1e-6
        )


@pytest.mark.slow
def test_dask_local_cluster_gives_the_local_run_outputs(tmp_path, confident_model, capsys):
    distributed = pytest.importorskip("distributed")
    data = tmp_path / "in"
    for k in range(2):
        scan = simple_chest(seed=k)[0]
        write_mhd(scan.with_array(scan.array, id=f"1.2.{k}"), data / f"1.2.{k}.mhd")
    bad = write_mhd(simple_chest(seed=0)[0], data / "1.2.9.mhd")
    bad.with_suffix(".raw").write_bytes(b"\x00" * 10)
    args = ["--model", str(confident_model), "--stage", "candidates", "--no-pictures"]
    assert main(["detect", str(data), "-o", str(tmp_path / "local"), *args]) == 3
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        remote = ["detect", str(data), "-o", str(tmp_path / "dask"), *args, "--scheduler", cluster.scheduler_address]
        assert main(remote) == 3
        assert "2 scans done, 0 already done, 1 failed" in capsys.readouterr().out
        assert main(remote) == 3  # resume: finished scans are skipped, the bad one retried
        assert "0 scans done, 2 already done, 1 failed" in capsys.readouterr().out
    local, dask = (pd.read_csv(tmp_path / d / "candidates.csv") for d in ("local", "dask"))
    pd.testing.assert_frame_equal(local, dask)
    assert pd.read_csv(tmp_path / "dask" / "errors.csv").id.tolist() == ["1.2.9"]


def test_unreachable_scheduler_is_a_clear_error(tmp_path, confident_model, capsys):
    pytest.importorskip("distributed")
    write_mhd(simple_chest()[0], tmp_path / "a.mhd")
    args = ["--model", str(confident_model), "--stage", "candidates", "--scheduler", "tcp://127.0.0.1:9"]
    assert main(["detect", str(tmp_path / "a.mhd"), "-o", str(tmp_path / "o"), *args]) == 2
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in capsys.readouterr().err


def test_blobs_option_adds_the_filter_s_candidates_and_is_part_of_the_resume_record(tmp_path, capsys):
    """A U-Net that finds nothing; ``--blobs`` finds an 8 mm nodule in the lung at its world position, and a
    rerun without it into the same folder redoes the scan (no blob rows left). A bad config stops the run."""
    from helpers import confident_unet

    scan, _, _ = simple_chest(shape=(40, 120, 120), spacing=(2.5, 1.6, 1.6), seed=3)
    zyx = np.stack(np.meshgrid(*[np.arange(n) for n in scan.shape], indexing="ij"), -1).reshape(-1, 3)
    nodule = scan.voxel_to_world([18.0, 60.0, 36.0])  # inside the right lung
    ball = (np.linalg.norm(scan.voxel_to_world(zyx) - nodule, axis=1) <= 4.0).reshape(scan.shape)
    with_nodule = scan.with_array(np.where(ball, 30, scan.array).astype(np.int16), id="4.5.6")
    write_mhd(with_nodule, tmp_path / "in" / "4.5.6.mhd")
    silent = confident_unet(tmp_path / "silent", bias=-8.0)
    args = [
        "detect",
        str(tmp_path / "in"),
        "-o",
        str(tmp_path / "out"),
        "--model",
        str(silent),
        "--stage",
        "candidates",
    ]
    assert main([*args, "--blobs"]) == 0
    table = pd.read_csv(tmp_path / "out" / "candidates.csv")
    assert len(table) and (table.source == "blob").all()
    gap = np.linalg.norm(table[["coordX", "coordY", "coordZ"]].to_numpy(float) - nodule, axis=1)
    assert gap[0] < 2.5 and gap.argmin() == 0  # the strongest blob is the nodule
    record = json.loads((tmp_path / "out" / "scans" / "4.5.6.json").read_text())
    assert record["model"]["blobs"].endswith("blobs.yaml")
    assert main(args) == 0
    assert pd.read_csv(tmp_path / "out" / "candidates.csv").empty  # redone without the filter
    bad = tmp_path / "bad.yaml"
    bad.write_text("sigmas_mm: []\nmin_hu: -750\npeak_window_mm: 5\nmax_candidates: 5\nexclusion_mm: 5\n")
    assert main([*args, "--blobs", str(bad)]) == 2
    assert "bad.yaml" in capsys.readouterr().err


def test_detect_one_scan_says_scan_and_its_start_up(tmp_path, tiny_model, capsys):
    from lungcad.batch import process_age

    write_mhd(simple_chest(seed=3)[0], tmp_path / "in" / "1.2.5.mhd")
    args = ["detect", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(tiny_model)]
    age = process_age()
    assert main([*args, "--stage", "candidates", "--no-pictures"]) == 0
    line = capsys.readouterr().out
    startup = re.search(
        r"^detect: 1 scan done, 0 already done, 0 failed in [\d.]+ s, [\d.]+ s/scan, start-up ([\d.]+) s;", line
    )
    assert startup, line
    assert float(startup[1]) >= round(age, 1)  # from the process's start (here: pytest's) to the first scan's read
