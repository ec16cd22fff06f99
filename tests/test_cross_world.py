"""scripts/cross_world.py: set lists, model sets, candidate recall and one world's pooled row on hand-made tables
(the synth / detect steps it chains are tested with their own commands)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lungcad.pipeline import default_model_dir
from lungcad.synth.config import load_synth_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from cross_world import WORLDS, World, candidate_recall, measure_world, model_sets, parse_sets  # noqa: E402


def test_parse_sets_and_the_default_worlds():
    assert parse_sets("9100:30,9101:2") == ((9100, 30), (9101, 2)) and parse_sets("") == ()
    for bad in ("9100", "9100:0", "a:b"):
        with pytest.raises(SystemExit, match="SEED:SCANS"):
            parse_sets(bad)
    held = WORLDS["heldout"]
    assert (
        held.luna_synth == "world_heldout" and sum(n for _, n in held.luna) >= 20 and sum(n for _, n in held.dsb) >= 40
    )
    assert sum(n for _, n in WORLDS["phantoms"].luna) == 200
    # the validation world: the training world's ranges, LIDC validation patients only, seeds no trainer uses
    val = WORLDS["validation"]
    for config in (val.luna_synth, val.dsb_synth):
        assert load_synth_config(config).lidc.split == "validation"
    assert load_synth_config("world_train").lidc.split == "fit"
    train_seeds = {1000, 7000, 9000, 32000, 32100}  # train_default_models.py, configs/unet_world.yaml
    assert not {seed for seed, _ in val.luna + val.dsb} & train_seeds


def test_model_sets_name_the_bundled_models_and_refuse_incomplete_folders(tmp_path):
    assert model_sets(None) == {"bundled": default_model_dir("unet").parent.resolve()}
    (tmp_path / "v5" / "unet").mkdir(parents=True)
    with pytest.raises(SystemExit, match="no fpr, risk folder"):
        model_sets([str(tmp_path / "v5")])


def _candidates(uid: str, xyz: list[tuple[float, float, float]], unet: list[float], fused: list[float]) -> pd.DataFrame:
    x, y, z = np.array(xyz, dtype=float).T
    return pd.DataFrame({"seriesuid": uid, "coordX": x, "coordY": y, "coordZ": z, "probability": fused,
                         "unet_probability": unet})  # fmt: skip


def test_candidate_recall_counts_only_the_most_probable_candidates():
    annotations = pd.DataFrame({"seriesuid": ["a", "a", "b"], "coordX": [0.0, 50.0, 0.0], "coordY": 0.0,
                                "coordZ": 0.0, "diameter_mm": [6.0, 10.0, 4.0]})  # fmt: skip
    cands = pd.concat([
        _candidates("a", [(1.0, 0, 0), (50.0, 4.0, 0), (90.0, 0, 0)], [0.9, 0.1, 0.5], [0.9, 0.1, 0.5]),
        _candidates("b", [(0.0, 2.5, 0)], [0.8], [0.8]),  # 2.5 mm from a 4 mm nodule: outside its radius
    ])  # fmt: skip
    assert candidate_recall(annotations, cands, 3) == (2, 3)
    assert candidate_recall(annotations, cands, 2) == (1, 3)  # the 50 mm nodule's candidate is third in its scan


def _set(root: Path, seed: int, nodules: list[tuple[str, float]], labels: dict[str, int]) -> tuple[Path, Path]:
    """A LUNA16-layout set's tables and a detections folder: each nodule at x = 0 has one sure hit, and every scan
    one far false positive scored 0.5; patients.csv predicts 0.8 for cancer and 0.2 for the others."""
    data, det = root / f"data_{seed}" / "luna16", root / f"det_{seed}"
    data.mkdir(parents=True), det.mkdir(parents=True)
    uids = sorted(labels)
    ann = pd.DataFrame([{"seriesuid": u, "coordX": 0.0, "coordY": 0.0, "coordZ": 0.0, "diameter_mm": d}
                        for u, d in nodules])  # fmt: skip
    ann.to_csv(data / "annotations.csv", index=False)
    ann.head(0).to_csv(data / "annotations_excluded.csv", index=False)
    ann.to_csv(data / "nodules.csv", index=False)
    pd.Series(uids).to_csv(data / "seriesuids.csv", index=False, header=False)
    labelled = [u for u in uids if labels[u] is not None]  # None: an unlabelled patient (indeterminate nodules)
    pd.DataFrame({"id": labelled, "cancer": [labels[u] for u in labelled]}).to_csv(
        data / "cancer_labels.csv", index=False
    )
    with_nodule = {u for u, _ in nodules}
    cands = pd.concat([
        _candidates(u, [(0.5, 0, 0), (80.0, 0, 0)], [0.9, 0.6], [0.95, 0.5]) if u in with_nodule
        else _candidates(u, [(80.0, 0, 0)], [0.6], [0.5])
        for u in uids
    ])  # fmt: skip
    cands.to_csv(det / "candidates.csv", index=False)
    pd.DataFrame({"id": uids, "cancer": [0.8 if labels[u] else 0.2 for u in uids]}).to_csv(
        det / "patients.csv", index=False
    )
    return data, det


def test_measure_world_pools_the_sets_of_a_world(tmp_path):
    sets = [
        _set(tmp_path, 1, [("p1", 6.0), ("p2", 8.0)], {"p1": 1, "p2": 0}),
        _set(tmp_path, 2, [("q1", 5.0)], {"q1": 0, "q2": 1, "q3": None}),
    ]
    world = World("tiny", "synth", ((1, 2), (2, 2)), "synth", ())
    results = tmp_path / "work" / "results" / "m" / "tiny"
    results.mkdir(parents=True)
    for data, _ in sets:  # the lung-mask coverage of each set, as a finished run leaves it (no preprocessing here)
        pd.DataFrame(
            {"seriesuid": ["x"], "diameter_mm": [6.0], "inside": [0.97 if data.parent.name == "data_1" else 0.5]}
        ).to_csv(results / f"mask_{data.parent.name}.csv", index=False)
    row = measure_world(tmp_path / "work", "m", tmp_path, world, sets, bootstrap=50)
    assert row["scans"] == 5 and row["nodules"] == 3 and row["recall_at_30"] == 1.0
    assert row["cpm"] == 1.0 and row["sens_1fp"] == 1.0  # every nodule found above every false positive
    assert row["mask_worst"] == 0.5 and row["mask_under_95"] == 1
    assert row["patients"] == 4 and row["cancer_rate"] == 0.5 and row["auc"] == 1.0
    assert row["log_loss"] == pytest.approx(-np.log(0.8), abs=1e-3) and row["base_rate_log_loss"] == pytest.approx(
        np.log(2), abs=1e-3
    )
    assert (results / "froc.png").is_file() and (results / "calibration.png").is_file()
