"""Steps the dataset scripts share (``train_default_models.py``, ``luna16_cv.py``, ``dsb2017.py``): run a lungcad
command and stop on failure, choose the merge settings of a trained U-Net, build dataset views of links."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def call(command: list[str], name: str) -> None:
    """Run ``command``; stop on any non-zero exit, 3 (some scans failed) too: a bundle or a cross-validation result
    must never come from a partial run."""
    code = subprocess.call(command)
    if code != 0:
        raise SystemExit(f"{name} failed with exit code {code}")


def lungcad(*args: str) -> None:
    """``lungcad ARGS...`` in this interpreter."""
    print("+ lungcad", " ".join(args), flush=True)
    call([sys.executable, "-m", "lungcad.cli.main", *args], f"lungcad {args[0]}")


def tune_merge(unet: Path, data: Path) -> None:
    """``scripts/tune_merge.py``: sweep and apply once; later (a resumed training rewrote detector.yaml from the
    training config) re-apply the saved sweep's choice."""
    command = [sys.executable, str(REPO / "scripts" / "tune_merge.py"), "--model", str(unet), "--data", str(data)]
    call([*command, "--reapply" if (unet / "merge_sweep.csv").exists() else "--apply"], "tune_merge.py")


def link_into(folder: Path, sources: list[Path]) -> Path:
    """``folder`` holding a symlink to each source (file or folder) under its own name; existing links are kept."""
    folder.mkdir(parents=True, exist_ok=True)
    for source in sources:
        if not source.exists():
            raise SystemExit(f"{source}: no such file or folder")
        link = folder / source.name
        if not link.exists():
            link.symlink_to(source.resolve(), target_is_directory=source.is_dir())
    return folder


def concat_tables(folder: Path, sources: list[Path], names: tuple[str, ...]) -> Path:
    """``folder/NAME`` for each of ``names``: that CSV of every source folder that has it, concatenated (LUNA16
    tables of different datasets: their seriesuids differ)."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        tables = [pd.read_csv(src / name) for src in sources if (src / name).is_file()]
        pd.concat(tables, ignore_index=True).to_csv(folder / name, index=False)
    return folder
