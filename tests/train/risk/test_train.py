"""``lungcad train risk`` on tiny labelled scans, then ``lungcad detect --stage risk`` writes patients.csv."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from helpers import read_strict_json, simple_chest, tiny_scorer

from lungcad.cli.main import main
from lungcad.io import write_mhd

REPO = Path(__file__).resolve().parents[3]


def _labelled_scans(tmp_path, confident_model, config_name: str = "risk", cancer=(0, 1, 0, 1, 0, 1)):
    """Six tiny scans with cancer labels, the U-Net/FPR options and a 3-fold copy of ``configs/<config_name>.yaml``."""
    data = tmp_path / "scans"
    ids = [f"1.2.{k}" for k in range(6)]
    for k, uid in enumerate(ids):
        scan = simple_chest(seed=k, nodule_radius_mm=4.0 + 2 * k)[0]
        write_mhd(scan.with_array(scan.array, id=uid), data / f"{uid}.mhd")
    labels = tmp_path / "stage1_labels.csv"
    pd.DataFrame({"id": ids, "cancer": list(cancer)}).to_csv(labels, index=False)
    tiny_scorer(tmp_path / "fpr")
    models = ["--model", str(confident_model), "--fpr-model", str(tmp_path / "fpr")]
    config = tmp_path / f"{config_name}.yaml"
    config.write_text((REPO / "configs" / f"{config_name}.yaml").read_text().replace("folds: 5", "folds: 3"))
    return data, ids, labels, models, config


@pytest.mark.slow
def test_train_risk_then_detect_writes_the_dsb_submission(tmp_path, confident_model, capsys):
    data, ids, labels, models, config = _labelled_scans(tmp_path, confident_model)
    args = ["train", "risk", "--data", str(data), "--labels", str(labels), "-o", str(tmp_path / "risk")]
    assert main([*args, "--config", str(config), *models]) == 0
    out = capsys.readouterr().out
    assert "6 patients (3 with cancer), 3-fold CV" in out and "fold 2:" in out
    run = read_strict_json(tmp_path / "risk" / "run.json")
    assert len(run["cv"]["per_fold"]) == 3 and set(run["weights"]) == set(run["config"]["model"]["features"])
    assert (tmp_path / "risk" / "calibration.png").stat().st_size > 0
    assert len(list((tmp_path / "risk" / "features").glob("*.csv"))) == 6
    # the trained model in the full pipeline: one id,cancer row per scan
    out_dir = tmp_path / "out"
    detect = ["detect", str(data), "-o", str(out_dir), "--stage", "risk", *models]
    assert main([*detect, "--risk-model", str(tmp_path / "risk")]) == 0
    patients = pd.read_csv(out_dir / "patients.csv", dtype={"id": str})
    assert list(patients.columns) == ["id", "cancer"] and sorted(patients.id) == ids
    assert patients.cancer.between(0.001, 0.999).all()
    table = pd.read_csv(out_dir / "candidates.csv")
    assert {"log_diameter_mm", "mean_hu", "compactness"} <= set(table.columns)
    # pictures: an overview per scan, and index.html lists the patients by cancer probability, highest first
    page = (out_dir / "index.html").read_text()
    ranked = patients.sort_values("cancer", ascending=False, kind="stable").id
    cell = '<td class="id"><a href="pictures/{0}/scan.html">{0}</a></td>'.format
    assert [page.index(cell(uid)) for uid in ranked] == sorted(page.index(cell(uid)) for uid in ids)
    for uid in ids:
        record = json.loads((out_dir / "scans" / f"{uid}.json").read_text())
        for name in [record["pictures"]["overview"], *record["pictures"]["findings"]]:
            assert (out_dir / "pictures" / name).read_bytes()[:4] == b"\x89PNG"


def test_train_risk_without_both_classes_is_a_clear_error(tmp_path, confident_model, capsys):
    data = tmp_path / "scans"
    scan = simple_chest(seed=0)[0]
    write_mhd(scan.with_array(scan.array, id="1.2.0"), data / "1.2.0.mhd")
    labels = tmp_path / "labels.csv"
    labels.write_text("id,cancer\n1.2.0,0\n")
    tiny_scorer(tmp_path / "fpr")
    args = ["train", "risk", "--data", str(data), "--labels", str(labels), "-o", str(tmp_path / "risk")]
    assert main([*args, "--model", str(confident_model), "--fpr-model", str(tmp_path / "fpr")]) == 1
    assert "need both classes" in capsys.readouterr().err


@pytest.mark.slow
def test_train_risk_with_nodule_classifiers(tmp_path, confident_model, capsys):
    # two patients with cancer in three folds: one fold has none, so no AUC
    data, ids, labels, models, config = _labelled_scans(
        tmp_path, confident_model, "risk_classifiers", (0, 1, 0, 0, 0, 1)
    )
    risk = tmp_path / "risk"
    args = ["train", "risk", "--data", str(data), "--labels", str(labels), "-o", str(risk), "--config", str(config)]
    # the config's features use two classifiers' logits: with one missing, a clear error before any work
    tiny_scorer(tmp_path / "malignancy")
    (tmp_path / "malignancy" / "checkpoints").mkdir()
    given = ["--classifier", f"malignancy={tmp_path / 'malignancy'}"]
    assert main([*args, *models, *given]) == 2  # a configuration error
    assert "--classifier" in capsys.readouterr().err and not risk.exists()
    tiny_scorer(tmp_path / "shape")
    assert main([*args, *models, *given, "--classifier", f"shape={tmp_path / 'shape'}"]) == 0
    assert "AUC n/a" in capsys.readouterr().out
    for name in ("malignancy", "shape"):
        assert (risk / "classifiers" / name / "model.keras").is_file()
    assert not (risk / "classifiers" / "malignancy" / "checkpoints").exists()
    assert {"malignancy_logit", "shape_logit"} <= set(json.loads((risk / "run.json").read_text())["weights"])
    # detect loads the classifier from the risk model directory
    out_dir = tmp_path / "out"
    assert main(["detect", str(data), "-o", str(out_dir), *models, "--risk-model", str(risk), "--no-pictures"]) == 0
    table = pd.read_csv(out_dir / "candidates.csv")
    assert table.malignancy_logit.notna().any() and table.shape_logit.notna().any()
    assert sorted(pd.read_csv(out_dir / "patients.csv", dtype={"id": str}).id) == ids
    # features are cached per detections, settings and classifier files: another shape classifier is measured
    # again (never a stale shape_logit), the same one is read back
    assert len(list((risk / "features").glob("*.csv"))) == 6
    tiny_scorer(tmp_path / "shape2")
    again = [*args, *models, *given, "--detections", str(risk / "detections"), "--classifier"]
    assert main([*again, f"shape={tmp_path / 'shape2'}"]) == 0
    assert len(list((risk / "features").glob("*.csv"))) == 12
    assert main([*again, f"shape={tmp_path / 'shape'}"]) == 0
    assert len(list((risk / "features").glob("*.csv"))) == 12
