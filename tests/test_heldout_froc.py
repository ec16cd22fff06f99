"""scripts/heldout_froc.py: the set list, the pooled tables the pooled FROC is scored on, and the table rows (the
synth / detect / evaluate steps it chains are tested with their own commands)."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from lungcad.evaluate.tables import read_annotations, read_seriesuids
from lungcad.pipeline import default_model_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from heldout_froc import DEFAULT_SETS, model_names, parse_sets, pooled_tables, row  # noqa: E402


def test_parse_sets_reads_seed_scan_pairs_and_refuses_malformed_lists():
    assert parse_sets("5000:10,5700:20") == [(5000, 10), (5700, 20)]
    assert sum(n for _, n in parse_sets(DEFAULT_SETS)) == 200
    for bad in ("", "5000", "5000:0", "5000:ten", "5000:10:3"):
        with pytest.raises(SystemExit, match="--sets"):
            parse_sets(bad)


def _luna(folder: Path, seed: int, scans: int) -> Path:
    """A LUNA16-layout folder's tables: one nodule per scan, one excluded finding in the first."""
    folder.mkdir(parents=True)
    uids = [f"1.2.{seed}.{i}" for i in range(scans)]
    nodules = pd.DataFrame({"seriesuid": uids, "coordX": -10.5, "coordY": 20.0, "coordZ": -150.25, "diameter_mm": 6.0})
    nodules.to_csv(folder / "annotations.csv", index=False)
    nodules.assign(type="solid").to_csv(folder / "nodules.csv", index=False)
    nodules.head(1).assign(diameter_mm=-1).to_csv(folder / "annotations_excluded.csv", index=False)
    pd.Series(uids).to_csv(folder / "seriesuids.csv", index=False, header=False)
    return folder


def test_pooled_tables_hold_every_sets_scans_and_nodules(tmp_path):
    lunas = [_luna(tmp_path / "a", 5000, 2), _luna(tmp_path / "b", 6000, 3)]
    pooled = pooled_tables(tmp_path / "work", lunas)
    uids = read_seriesuids(pooled / "seriesuids.csv")
    assert sorted(uids) == sorted([f"1.2.5000.{i}" for i in range(2)] + [f"1.2.6000.{i}" for i in range(3)])
    annotations = read_annotations(pooled / "annotations.csv")
    assert len(annotations) == 5 and set(annotations["seriesuid"]) == set(uids)
    assert len(pd.read_csv(pooled / "annotations_excluded.csv")) == 2
    assert list(pd.read_csv(pooled / "nodules.csv")["type"]) == ["solid"] * 5


def test_row_reports_cpm_and_the_seven_operating_points():
    froc = {"cpm": 0.81234, "nodules": 40, "sensitivity": {r: 0.5 + i / 20 for i, r in enumerate(
        ("0.125", "0.25", "0.5", "1", "2", "4", "8"))}}  # fmt: skip
    r = row("6000", 20, froc)
    assert r["cpm"] == 0.812 and r["scans"] == 20 and r["nodules"] == 40
    assert [r[f"sens@{x}"] for x in ("0.125", "1", "8")] == [0.5, 0.65, 0.8]


def test_model_names_name_the_bundled_model_and_refuse_two_folders_of_one_name(tmp_path):
    names = model_names([str(default_model_dir("fpr")), str(tmp_path / "runs" / "fprW4")])
    assert list(names.values()) == ["bundled", "fprW4"]
    with pytest.raises(SystemExit, match="share a name"):
        model_names([str(tmp_path / "a" / "fpr"), str(tmp_path / "b" / "fpr")])
