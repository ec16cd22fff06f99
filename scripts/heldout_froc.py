#!/usr/bin/env python
"""The false-positive reducer's held-out FROC on fresh phantoms, per set and pooled (issue #6's measure).

Steps, each resumable (rerun the same command after an interruption):

1. ``lungcad synth`` each held-out set (default: the seven seeds of the README's FPR table, 200 scans; none was
   used for training or for choosing a model);
2. ``lungcad detect --stage candidates`` once per set with the U-Net (bundled unless ``--unet``);
3. each FPR model (``--fpr-model``, repeatable; default the bundled one) rescores those candidates as
   ``lungcad detect --stage fpr`` does (:func:`lungcad.pipeline.score_candidates`: 8 views, U-Net fusion), without
   running the U-Net again;
4. ``lungcad evaluate froc`` per set and on all sets pooled (with ``--bootstrap`` resamplings of scans for 95% CIs);
   the table (``WORK/NAME_froc.md``, ``.csv``) and the pooled FROC picture (``WORK/froc/NAME/pooled/froc.png``).

    python scripts/heldout_froc.py --work /work/runs/heldout [--fpr-model DIR ...] [--sets 5000:10,5700:20]

Measured on 2026-12-02's 2-core machine: about 38 s per scan for steps 1-2 (synth 12-15 s, U-Net candidates
19 s), 3-4 s per scan and FPR model after; the 200 default scans about 2.3 hours.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
from pipeline_steps import concat_tables, lungcad
from tqdm import tqdm

from lungcad.fileio import write_atomic
from lungcad.io import load_scan
from lungcad.pipeline import default_model_dir, load_scorer, score_candidates

#: seed:scans of the README's FPR table: the recipe's test set, two fresh sets, the U-Net comparison set and the
#: risk model's three held-out patient sets.
DEFAULT_SETS = "5000:10,5700:20,5500:20,6000:20,8000:50,8500:40,8800:40"
TABLES = ("annotations.csv", "annotations_excluded.csv", "nodules.csv")


def parse_sets(text: str) -> list[tuple[int, int]]:
    """``"5000:10,5700:20"`` -> ``[(5000, 10), (5700, 20)]`` (seed, scans)."""
    try:
        sets = [tuple(int(v) for v in item.split(":")) for item in text.split(",") if item]
    except ValueError:
        sets = []
    if not sets or any(len(s) != 2 or s[1] < 1 for s in sets):
        raise SystemExit(f"--sets: expected SEED:SCANS[,SEED:SCANS...], got {text!r}")
    return sets  # type: ignore[return-value]


def prepare_set(work: Path, seed: int, scans: int, unet: str, workers: int) -> tuple[Path, Path]:
    """Phantoms and U-Net candidates of one set; returns (LUNA16 folder, candidates folder)."""
    synth = work / f"synth_{seed}"
    lungcad("synth", "-o", str(synth), "--scans", str(scans), "--seed", str(seed), "--format", "luna", "--compress",
            "--workers", str(workers))  # fmt: skip
    luna, detections = synth / "luna16", work / f"candidates_{seed}"
    lungcad("detect", str(luna), "-o", str(detections), "--stage", "candidates", "--model", unet, "--no-pictures",
            "--workers", str(workers))  # fmt: skip
    return luna, detections


def rescore(luna: Path, detections: Path, fpr: str, out: Path) -> Path:
    """``out`` (a CSV) with every candidate of ``detections`` scored by the FPR model ``fpr``; kept if present."""
    if out.is_file():
        return out
    table = pd.read_csv(detections / "candidates.csv")
    scored = []
    for uid, rows in tqdm(table.groupby("seriesuid", sort=True), desc=f"FPR {out.stem}", unit="scan"):
        path = next(luna.glob(f"subset*/{uid}.mhd"))
        scored.append(score_candidates(load_scan(path), rows.reset_index(drop=True), load_scorer(fpr)))
    write_atomic(out, lambda f: pd.concat(scored, ignore_index=True).to_csv(f, index=False))
    return out


def evaluate(luna_tables: Path, candidates: Path, out: Path, bootstrap: int, *, again: bool = False) -> dict:
    """``lungcad evaluate froc`` into ``out`` (kept from an earlier run unless ``again``); its froc.json."""
    if again or not (out / "froc.json").is_file():
        extra = ["--bootstrap", str(bootstrap)] if bootstrap else []
        lungcad("evaluate", "froc", "--annotations", str(luna_tables / "annotations.csv"),
                "--excluded", str(luna_tables / "annotations_excluded.csv"), "--nodules",
                str(luna_tables / "nodules.csv"), "--seriesuids", str(luna_tables / "seriesuids.csv"),
                "--candidates", str(candidates), "-o", str(out), *extra)  # fmt: skip
    return json.loads((out / "froc.json").read_text())


def pooled_tables(work: Path, lunas: list[Path]) -> Path:
    """One folder with every set's annotation tables and scan list concatenated (uids differ between seeds)."""
    folder = concat_tables(work / "pooled_tables", lunas, TABLES)
    uids = pd.concat([pd.read_csv(luna / "seriesuids.csv", header=None) for luna in lunas], ignore_index=True)
    uids.to_csv(folder / "seriesuids.csv", index=False, header=False)
    return folder


def row(name: str, scans: int, froc: dict) -> dict:
    """One line of the table: CPM and the sensitivity at each of froc.json's FP rates (LUNA16's seven)."""
    return {"set": name, "scans": scans, "nodules": froc["nodules"], "cpm": round(froc["cpm"], 3),
            **{f"sens@{r}": round(v, 3) for r, v in froc["sensitivity"].items()}}  # fmt: skip


def write_table(work: Path, name: str, rows: list[dict], pooled: dict) -> Path:
    """``WORK/NAME_froc.csv`` and a Markdown table ``WORK/NAME_froc.md`` (with the pooled CIs when computed)."""
    table = pd.DataFrame(rows)
    table.to_csv(work / f"{name}_froc.csv", index=False)
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in table.itertuples(index=False)]
    boot = pooled.get("bootstrap")
    if boot:
        cpm, sens = boot["cpm"], boot["sensitivity"]["1"]
        lines.append(
            f"\npooled, 95% CIs over {boot['samples']} bootstrap resamplings of scans: CPM {cpm['low']:.3f}-"
            f"{cpm['high']:.3f}, sensitivity at 1 FP per scan {sens['low']:.3f}-{sens['high']:.3f}"
        )
    out = work / f"{name}_froc.md"
    out.write_text("\n".join(lines) + "\n")
    return out


def model_names(fprs: list[str]) -> dict[str, str]:
    """``{model folder: name}``: the folder's name (``bundled`` for the bundled model), which names its scores."""
    bundled = default_model_dir("fpr").resolve()
    names = {f: "bundled" if Path(f).resolve() == bundled else Path(f).resolve().name for f in fprs}
    if len(set(names.values())) < len(names):
        raise SystemExit(f"--fpr-model: two model folders share a name, their scores would mix: {sorted(names)}")
    return names


def run(work: Path, sets: list[tuple[int, int]], unet: str, fprs: list[str], bootstrap: int, workers: int) -> None:
    """Steps 1-4 for every set and FPR model; prints each model's table."""
    prepared = [(seed, scans, *prepare_set(work, seed, scans, unet, workers)) for seed, scans in sets]
    tables = pooled_tables(work, [luna for _, _, luna, _ in prepared])
    for fpr, name in model_names(fprs).items():
        rows, scored = [], []
        for seed, scans, luna, detections in prepared:
            csv = rescore(luna, detections, fpr, work / "scores" / name / f"{seed}.csv")
            rows.append(row(str(seed), scans, evaluate(luna, csv, work / "froc" / name / str(seed), 0)))
            scored.append(pd.read_csv(csv))
        pooled_csv = work / "scores" / name / "pooled.csv"
        write_atomic(pooled_csv, lambda f, s=scored: pd.concat(s, ignore_index=True).to_csv(f, index=False))
        pooled = evaluate(tables, pooled_csv, work / "froc" / name / "pooled", bootstrap, again=True)  # sets vary
        rows.append(row("pooled", sum(s for _, s in sets), pooled))
        out = write_table(work, name, rows, pooled)
        print(f"{name}:\n{out.read_text()}FROC picture: {work / 'froc' / name / 'pooled' / 'froc.png'}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="work folder (phantoms, candidates, scores)")
    parser.add_argument("--sets", default=DEFAULT_SETS, help=f"SEED:SCANS,... (default {DEFAULT_SETS})")
    parser.add_argument("--unet", default=str(default_model_dir("unet")), help="U-Net model folder (default bundled)")
    parser.add_argument("--fpr-model", action="append", help="FPR model folder, repeatable (default bundled)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamplings for the pooled CIs (0: none)")
    parser.add_argument("--workers", type=int, default=1, help="scans in parallel for synth and detect")
    args = parser.parse_args(argv)
    fprs = args.fpr_model or [str(default_model_dir("fpr"))]
    run(args.work, parse_sets(args.sets), args.unet, fprs, args.bootstrap, args.workers)


if __name__ == "__main__":
    main()
