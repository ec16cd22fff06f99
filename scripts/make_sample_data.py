"""Regenerate ``sample_data/``: one small synthetic patient in the LUNA16 and DSB 2017 layouts.

    python scripts/make_sample_data.py [--out sample_data]

The case is dataset seed 2509, scan 0, on a 192 x 192 matrix with at most 96 slices (about 2.7 mm): a
LUNA16 scan stored flipped (direction diag(-1, -1, 1)) with five nodules of 10-16 mm (ground-glass,
spiculated solid, juxtavascular lobulated, spiculated part-solid, juxtapleural solid), cancer = 1. The
script checks the case still has at least three nodules >= 6 mm and that the folder stays <= 25 MB;
rerun it after every PHANTOM_VERSION bump.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from lungcad.synth import load_synth_config, write_dataset

SEED = 2509
SIZE = 192
MAX_SLICES = 96
MAX_BYTES = 25 * 1024 * 1024
GENERATED = ("luna16", "dsb2017", "synth_records", "synth.json")


def folder_bytes(folder: Path) -> int:
    """Total size of the files under ``folder``."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    """Rewrite the sample dataset; returns 0, or 1 if the result breaks the size or nodule checks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "sample_data")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in GENERATED:
        path = args.out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    config = load_synth_config(max_slices=MAX_SLICES)
    summary = write_dataset(args.out, 1, SEED, size=SIZE, fmt="both", config=config, progress=False)
    print(summary.line())
    size = folder_bytes(args.out)
    print(f"sample_data: {size / 1e6:.1f} MB")
    rows = (args.out / "luna16" / "annotations.csv").read_text().splitlines()[1:]
    visible = [r for r in rows if float(r.split(",")[4]) >= 6.0]
    if size > MAX_BYTES or len(visible) < 3:
        print(
            f"sample_data: expected <= {MAX_BYTES} bytes and >= 3 nodules of 6 mm, got {len(visible)}", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
