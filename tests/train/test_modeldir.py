"""The training run record: ``run.json`` is strict JSON whatever the metrics hold."""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
from helpers import read_strict_json

from lungcad import __version__
from lungcad.train.modeldir import write_run_record


@dataclass(frozen=True)
class _Config:
    epochs: int = 2


def test_run_json_writes_a_nan_metric_and_numpy_numbers_as_strict_json(tmp_path):
    result = SimpleNamespace(best={"epoch": 2.0, "val_loss": math.nan, "val_cpm": np.float32(0.5)})
    write_run_record(result, tmp_path, _Config(), {"train_scans": ("a", "b"), "nodules": np.int64(3)})
    record = read_strict_json(tmp_path / "run.json")
    assert record == {
        "lungcad_version": __version__,
        "train_scans": ["a", "b"],
        "nodules": 3,
        "best": {"epoch": 2.0, "val_loss": None, "val_cpm": 0.5},
    }
    assert (tmp_path / "train_config.yaml").read_text() == "epochs: 2\n"
