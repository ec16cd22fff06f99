"""``lungcad inspect`` and the top-level CLI behaviour."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from lungcad import __version__
from lungcad.cli.main import main
from lungcad.io import write_dicom_series, write_mhd


def test_inspect_json_reports_geometry(tmp_path, make_scan, capsys):
    scan = make_scan(direction=np.diag([-1.0, -1.0, 1.0]))
    write_dicom_series(scan, tmp_path / "pat01", seed=1)
    assert main(["inspect", str(tmp_path / "pat01"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["id"] == "pat01" and info["modality"] == "CT" and info["slices"] == scan.shape[0]
    assert info["shape_zyx"] == list(scan.shape)
    np.testing.assert_allclose(info["origin_xyz_mm"], scan.origin, atol=1e-5)
    np.testing.assert_allclose(info["direction"], scan.direction, atol=1e-6)
    assert info["series_uid"] and info["warnings"] == []


def test_inspect_text_and_errors(tmp_path, make_scan, capsys):
    write_mhd(make_scan(), tmp_path / "a.mhd")
    assert main(["inspect", str(tmp_path / "a.mhd")]) == 0
    out = capsys.readouterr().out
    assert "spacing mm:  z 1.25, y 0.7, x 0.8" in out and "warnings:    none" in out
    assert main(["inspect", str(tmp_path / "missing.mhd")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"lungcad: error: {tmp_path / 'missing.mhd'}: no such file or folder"]


def test_console_script_version_and_help():
    out = subprocess.run([sys.executable, "-m", "lungcad.cli.main", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"lungcad {__version__}"
    out = subprocess.run([sys.executable, "-m", "lungcad.cli.main", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "inspect" in out.stdout
    out = subprocess.run([sys.executable, "-m", "lungcad.cli.main", "inspect"], capture_output=True, text=True)
    assert out.returncode == 2
