"""Nodule classifiers: the training table (nodule labels by the configured target + a few non-nodules), the
--classifier option, and a tiny CLI training run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import simple_chest

from lungcad.cli.main import main
from lungcad.config import load_config
from lungcad.errors import ConfigError, DataLayoutError
from lungcad.fpr.inference import PatchScorer
from lungcad.io import write_mhd
from lungcad.train.risk.classifiers import ClassifierTrainConfig, parse_classifier_options, read_nodules, training_table

MALIGNANCY = load_config(ClassifierTrainConfig, "malignancy")
SHAPE = load_config(ClassifierTrainConfig, "shape")

REPO = Path(__file__).resolve().parents[3]
HEADER = "id,coordX,coordY,coordZ,diameter_mm,type,shape,malignant,excluded\n"
ROWS = [
    "a,1,2,3,12,solid,spiculated,1,0",
    "a,4,5,6,2,solid,smooth,0,1",  # excluded finding
    "b,7,8,9,9,part_solid,smooth,0,0",
    "b,1,1,1,5,solid,lobulated,0,0",  # < 6 mm
    "c,2,2,2,10,ggo,lobulated,0,0",  # ground glass
]


def test_read_nodules_labels_by_the_configured_target_and_names_bad_files(tmp_path):
    path = tmp_path / "nodules.csv"
    path.write_text(HEADER + "\n".join(ROWS) + "\n")
    assert read_nodules(path, MALIGNANCY).values.tolist() == [
        ["a", 1.0, 2.0, 3.0, 1, 12.0], ["b", 7.0, 8.0, 9.0, 0, 9.0], ["b", 1.0, 1.0, 1.0, 0, 5.0],
        ["c", 2.0, 2.0, 2.0, 0, 10.0],
    ]  # fmt: skip
    # shape: lobulated/spiculated vs smooth, solid and part-solid nodules >= 6 mm only
    assert read_nodules(path, SHAPE).values.tolist() == [["a", 1.0, 2.0, 3.0, 1, 12.0], ["b", 7.0, 8.0, 9.0, 0, 9.0]]
    path.write_text("id,coordX,coordY,coordZ\na,1,2,3\n")
    with pytest.raises(DataLayoutError, match="malignant") as err:
        read_nodules(path, MALIGNANCY)
    assert str(path) in str(err.value)
    with pytest.raises(DataLayoutError, match="not found"):
        read_nodules(tmp_path / "missing.csv", MALIGNANCY)


def test_classifier_options_are_name_equals_folder():
    assert parse_classifier_options(["malignancy=m/a", "shape=/x/s"]) == {"malignancy": "m/a", "shape": "/x/s"}
    assert parse_classifier_options(None) == {}
    for bad in ("malignancy", "=dir", "my-name=dir", "shape="):
        with pytest.raises(ConfigError, match="NAME=DIR"):
            parse_classifier_options([bad])


def test_training_table_adds_a_few_seeded_non_nodules_per_scan():
    nodules = pd.DataFrame({"seriesuid": ["a", "b"], "coordX": 0.0, "coordY": 0.0, "coordZ": 0.0, "label": [1, 0]})
    rows = [[uid, float(i), 0.0, 0.0, cls] for uid in "abc" for i, cls in enumerate([1, 0, 0, 0, 0])]
    candidates = pd.DataFrame(rows, columns=["seriesuid", "coordX", "coordY", "coordZ", "class"])
    table = training_table(nodules, candidates, per_scan=2, seed=0)
    added = table.iloc[2:]
    # two class-0 rows of each scan with nodules (never a class-1 row, never scan c), all labelled 0
    assert sorted(added.seriesuid) == ["a", "a", "b", "b"] and (added.label == 0).all() and (added.coordX > 0).all()
    assert table.iloc[:2].label.tolist() == [1, 0]
    assert training_table(nodules, candidates, per_scan=2, seed=0).equals(table)
    assert len(training_table(nodules, None, per_scan=2, seed=0)) == 2


def test_training_table_cuts_each_nodule_once_per_diameter_jitter_factor():
    nodules = pd.DataFrame(
        {
            "seriesuid": ["a", "b"],
            "coordX": 0.0,
            "coordY": 0.0,
            "coordZ": 0.0,
            "label": [1, 0],
            "diameter_mm": [8.0, 20.0],
        }
    )
    candidates = pd.DataFrame([["a", 5.0, 0.0, 0.0, 0]], columns=["seriesuid", "coordX", "coordY", "coordZ", "class"])
    table = training_table(nodules, candidates, per_scan=1, seed=0, jitter=(0.8, 1.0, 1.25), unknown_diameter_mm=7.0)
    assert table.diameter_mm.tolist() == pytest.approx([6.4, 16.0, 8.0, 20.0, 10.0, 25.0, 7.0])
    assert table.label.tolist() == [1, 0, 1, 0, 1, 0, 0]


@pytest.mark.slow
def test_train_classifier_cli_writes_a_classifier(tmp_path, capsys):
    data = tmp_path / "data"
    nodules, candidates = [], []
    for k in range(4):
        scan, truth, nodule = simple_chest(seed=k, nodule_radius_mm=4.0 + 2 * k)
        uid = f"1.4.{k}"
        write_mhd(scan.with_array(scan.array, id=uid), data / "subset0" / f"{uid}.mhd")
        nodules.append([uid, *scan.voxel_to_world(np.argwhere(nodule).mean(0)), 8.0 + 4 * k, "solid", k % 2, 0])
        lung = np.argwhere(truth & ~nodule)
        for idx in np.random.default_rng(k).choice(len(lung), 4, replace=False):
            candidates.append([uid, *scan.voxel_to_world(lung[idx]), 0])
    columns = ["id", "coordX", "coordY", "coordZ", "diameter_mm", "type", "malignant", "excluded"]
    pd.DataFrame(nodules, columns=columns).to_csv(data / "nodules.csv", index=False)
    pd.DataFrame(candidates, columns=["seriesuid", "coordX", "coordY", "coordZ", "class"]).to_csv(
        data / "candidates.csv", index=False
    )
    pd.DataFrame(nodules, columns=columns).drop(columns=["type", "malignant", "excluded"]).rename(
        columns={"id": "seriesuid"}
    ).to_csv(data / "annotations.csv", index=False)
    config = tmp_path / "malignancy.yaml"
    text = (REPO / "configs" / "malignancy.yaml").read_text()
    text = text.replace("depth: 16", "depth: 10").replace("widen_factor: 2", "widen_factor: 1")
    text = text.replace("patch_size: 32", "patch_size: 16").replace("size: 32", "size: 16")
    config.write_text(text.replace("validation_fraction: 0.15", "validation_fraction: 0.5"))
    args = ["train", "classifier", "--data", str(data), "-o", str(tmp_path / "model"), "--config", str(config)]
    assert main([*args, "--epochs", "1", "--steps", "2"]) == 0
    assert "train classifier (malignant): best epoch" in capsys.readouterr().out
    run = json.loads((tmp_path / "model" / "run.json").read_text())
    total = run["train_candidates"]["total"] + run["validation_candidates"]["total"]
    assert run["positive_nodules"] == 2 and run["target"] == "malignant"
    assert total == 4 + 4 * 3  # every nodule + 3 non-nodules per scan
    scorer = PatchScorer.load(tmp_path / "model")
    assert scorer.config.patches.size == 16
