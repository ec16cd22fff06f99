"""``lungcad demo``: synthetic patients -> the full pipeline with the bundled models -> scored against the truth.

1. ``lungcad synth`` writes ``scans`` phantoms (LUNA16 layout, a fixed seed no bundled model was trained on);
2. ``lungcad detect`` runs every bundled stage over them (candidates, FPR, risk), with pictures;
3. ``lungcad evaluate froc`` scores the candidates against the phantoms' annotations, and, when the risk stage
   ran, ``lungcad evaluate dsb`` scores ``patients.csv`` against the phantoms' cancer labels.

With ``data`` (a LUNA16-layout folder with ``annotations.csv``, e.g. the checkout's ``sample_data/luna16``) step 1
is skipped and that folder is detected and scored instead; ``cancer_labels.csv`` (``id,cancer``) beside it, when
present, scores the risk stage.

Everything lands in ``OUT`` (``data/``, ``detect/`` with ``index.html``, ``froc/``, ``dsb/``); rerunning resumes.
"""

from __future__ import annotations

from pathlib import Path

from lungcad.errors import DataLayoutError
from lungcad.fileio import write_json_atomic

DEMO_SEED = 90210


def run_demo(
    out: str | Path,
    scans: int = 3,
    *,
    seed: int = DEMO_SEED,
    size: int = 512,
    workers: int = 1,
    data: str | Path | None = None,
) -> dict:
    """Run the demo into ``out`` (``scans`` phantoms of ``size`` x ``size`` pixels, or the LUNA16-layout folder
    ``data``); returns the summary also written to ``OUT/demo.json``."""
    from lungcad.evaluate import compute_dsb_files, compute_froc_files, write_dsb_outputs, write_froc_outputs
    from lungcad.pipeline import detect_scans
    from lungcad.synth import write_dataset

    out = Path(out)
    if data is None:
        write_dataset(out / "data", scans, seed, size=size, fmt="luna", workers=workers)
        luna = out / "data" / "luna16"
    else:
        luna = Path(data)
        if not (luna / "annotations.csv").is_file():
            raise DataLayoutError("not a LUNA16-layout folder: no annotations.csv to score against", path=luna)

    def optional(name: str) -> Path | None:
        return luna / name if (luna / name).is_file() else None

    detections = out / "detect"
    batch = detect_scans([luna], detections, workers=workers)
    froc = compute_froc_files(
        luna / "annotations.csv",
        detections / "candidates.csv",
        excluded=optional("annotations_excluded.csv"),
        seriesuids=optional("seriesuids.csv"),
    )
    write_froc_outputs(froc, out / "froc", title="lungcad demo")
    summary = {
        "data": str(luna),
        "scans": len(batch.done) + len(batch.skipped) + len(batch.failed),
        "failed_scans": len(batch.failed),
        "nodules": int(froc.n_nodules),
        "detected": int(froc.n_detected),
        "cpm": froc.cpm,
        "froc_png": str(out / "froc" / "froc.png"),
        "report": str(detections / "index.html"),
    }
    if (detections / "patients.csv").exists() and optional("cancer_labels.csv"):
        dsb = compute_dsb_files(luna / "cancer_labels.csv", detections / "patients.csv")
        write_dsb_outputs(dsb, out / "dsb")
        summary.update(patients=dsb.n, with_cancer=dsb.positives, log_loss=dsb.log_loss, auc=dsb.auc)
    write_json_atomic(out / "demo.json", summary)
    return summary


def format_summary(summary: dict) -> str:
    """Lines for the terminal."""
    lines = [
        f"demo: {summary['scans']} scans ({summary['data']}), "
        f"{summary['detected']}/{summary['nodules']} nodules found, CPM {summary['cpm']:.3f} "
        f"(FROC plot {summary['froc_png']})"
    ]
    if "log_loss" in summary:
        auc = summary["auc"]
        lines.append(
            f"      {summary['patients']} patients ({summary['with_cancer']} with cancer): log loss "
            f"{summary['log_loss']:.3f}, AUC {'n/a' if auc != auc else f'{auc:.3f}'}"
        )
    lines.append(f"      report: {summary['report']}")
    return "\n".join(lines)
