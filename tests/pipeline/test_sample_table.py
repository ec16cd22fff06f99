"""``lungcad detect`` on the bundled sample scan gives the pinned table (all stages, bundled models), and the Python
API's :func:`lungcad.pipeline.detect_scan` gives the same table in memory without writing a file.

``sample_candidates.csv`` and ``sample_patients.csv`` are what ``lungcad detect sample_data/luna16`` wrote before
the #31 refactor (commit 3897261), with the two empty columns ``series_instance_uid, study_instance_uid`` added at
the end (#34: the DICOM series' UIDs; the sample is a ``.mhd`` scan, so they are empty). Other CPUs round float32
U-Net and WideResNet outputs differently in the last bits, so numbers are compared to 1e-3 (mm, probability, logit);
the rows, their order and the columns must be the same. The table is float32's (``precision="float32"``): bfloat16,
which ``--precision auto`` gives the FPR and the risk classifiers on CPUs with AMX or AVX512-BF16, moves probabilities
by up to 0.008 (tests/pipeline/test_precision.py; the held-out comparison in docs/benchmarks.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lungcad.io import load_scan
from lungcad.pipeline import detect_scan, detect_scans, model_set

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parents[1] / "sample_data" / "luna16"


def assert_same_table(found: pd.DataFrame, pinned: pd.DataFrame) -> None:
    assert list(found.columns) == list(pinned.columns)
    assert len(found) == len(pinned)
    for column in pinned.columns:
        if pd.api.types.is_numeric_dtype(pinned[column]):
            np.testing.assert_allclose(found[column].to_numpy(float), pinned[column].to_numpy(float), atol=1e-3,
                                       rtol=1e-4, err_msg=column, equal_nan=True)  # fmt: skip
        else:
            assert found[column].astype(str).tolist() == pinned[column].astype(str).tolist(), column


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    summary = detect_scans([SAMPLE], out, pictures=False, precision="float32")
    assert summary.exit_code == 0
    return out


@pytest.mark.slow
def test_detect_on_the_sample_gives_the_pinned_table(sample_run):
    assert_same_table(pd.read_csv(sample_run / "candidates.csv"), pd.read_csv(HERE / "sample_candidates.csv"))
    found, pinned = pd.read_csv(sample_run / "patients.csv"), pd.read_csv(HERE / "sample_patients.csv")
    assert found["id"].tolist() == pinned["id"].tolist()
    np.testing.assert_allclose(found["cancer"], pinned["cancer"], atol=1e-3)


@pytest.mark.slow
def test_the_python_api_gives_the_same_table_without_files(sample_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = next(SAMPLE.glob("subset*/*.mhd"))
    result = detect_scan(load_scan(path), model_set(precision="float32"))
    assert list(tmp_path.iterdir()) == []  # nothing written
    written = pd.read_csv(sample_run / "scans" / f"{path.stem}.csv")
    assert_same_table(result.candidates.reset_index(drop=True), written)
    assert result.cancer_probability == pytest.approx(pd.read_csv(sample_run / "patients.csv")["cancer"][0], abs=1e-9)
    assert result.candidates["probability"].is_monotonic_decreasing
    assert {"preprocess_s", "unet_and_merge_s", "fpr_s", "risk_s"} <= set(result.timings_s)
