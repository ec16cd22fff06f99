"""An independent brute-force LUNA16 evaluation (plain loops, written from the rules) against lungcad."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lungcad.evaluate import FrocConfig, compute_froc

PTS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def reference_sensitivities(ann, exc, cand, scans, max_marks=100):
    """Loop over annotations, marks and thresholds; count; interpolate by hand."""
    tp_scores, fp_scores, n_nodules = [], [], 0
    for uid in scans:
        marks = [tuple(r) for r in cand[cand.seriesuid == uid][["coordX", "coordY", "coordZ", "probability"]].values]
        if 0 < max_marks < len(marks):
            cut = sorted((m[3] for m in marks), reverse=True)[max_marks]
            marks = [m for m in marks if m[3] > cut]
        used = set()
        for _, a in ann[ann.seriesuid == uid].iterrows():
            n_nodules += 1
            r = (a.diameter_mm if a.diameter_mm >= 0 else 10.0) / 2.0
            hits = [
                i
                for i, m in enumerate(marks)
                if (m[0] - a.coordX) ** 2 + (m[1] - a.coordY) ** 2 + (m[2] - a.coordZ) ** 2 < r * r
            ]
            used.update(hits)
            if hits:
                tp_scores.append(max(marks[i][3] for i in hits))
        for _, e in exc[exc.seriesuid == uid].iterrows():
            r = (e.diameter_mm if e.diameter_mm >= 0 else 10.0) / 2.0
            for i, m in enumerate(marks):
                if (m[0] - e.coordX) ** 2 + (m[1] - e.coordY) ** 2 + (m[2] - e.coordZ) ** 2 < r * r:
                    used.add(i)
        fp_scores += [m[3] for i, m in enumerate(marks) if i not in used]
    n_fp, n_tp, n_scans = len(fp_scores), len(tp_scores), len(scans)
    xs, ys = [0.0], [0.0]
    for t in sorted(set(tp_scores) | set(fp_scores), reverse=True):
        fp = sum(s >= t for s in fp_scores)
        tp = sum(s >= t for s in tp_scores)
        # the documented (official) float formula of the rates
        xs.append(fp / n_fp * n_fp / n_scans if n_fp else 0.0)
        ys.append(tp / n_tp * n_tp / n_nodules if n_tp else 0.0)
    return [interpolate(xs, ys, x) for x in PTS]


def interpolate(xs, ys, x):
    """Piecewise-linear curve value at x: top of a vertical step, last value beyond the end."""
    j = max(i for i, v in enumerate(xs) if v <= x)
    if j == len(xs) - 1 or xs[j] == x:
        return ys[j]
    return ys[j] + (ys[j + 1] - ys[j]) * (x - xs[j]) / (xs[j + 1] - xs[j])


def random_case(seed: int, discrete: bool):
    rng = np.random.default_rng(seed)
    n_scans = int(rng.choice([5, 8, 13, 20]))
    scans = [f"1.3.6.{seed}.{i}" for i in range(n_scans)]
    ann_rows, exc_rows, cand_rows = [], [], []
    for uid in scans:
        centres = rng.uniform(-60, 60, size=(int(rng.integers(0, 4)), 3))
        for c in centres:
            ann_rows.append((uid, *c, float(rng.choice([3.5, 5.0, 8.0, 12.0, 25.0]))))
        for c in rng.uniform(-60, 60, size=(int(rng.integers(0, 3)), 3)):
            exc_rows.append((uid, *c, float(rng.choice([-1.0, 4.0, 9.0]))))
        n = int(rng.choice([0, 5, 30, 110]))
        pts = rng.uniform(-60, 60, size=(n, 3))
        near = rng.random(n) < 0.3
        if len(centres) and near.any():
            pts[near] = centres[rng.integers(len(centres), size=near.sum())] + rng.normal(0, 2.5, size=(near.sum(), 3))
        p = np.round(rng.random(n), 1) if discrete else rng.random(n)
        cand_rows += [(uid, *xyz, float(s)) for xyz, s in zip(pts, p)]
    cols = ["seriesuid", "coordX", "coordY", "coordZ"]
    return (
        pd.DataFrame(ann_rows, columns=[*cols, "diameter_mm"]),
        pd.DataFrame(exc_rows, columns=[*cols, "diameter_mm"]),
        pd.DataFrame(cand_rows, columns=[*cols, "probability"]),
        scans,
    )


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("discrete", [False, True], ids=["continuous", "tied-scores"])
def test_matches_brute_force_reference(seed, discrete):
    ann, exc, cand, scans = random_case(seed, discrete)
    if ann.empty:
        pytest.skip("no nodule drawn")
    result = compute_froc(ann, cand, scans, excluded=exc)
    expected = reference_sensitivities(ann, exc, cand, scans)
    assert result.sensitivity == pytest.approx(expected, abs=1e-12)
    assert result.cpm == pytest.approx(sum(expected) / 7, abs=1e-12)
    assert all(math.isfinite(s) for s in result.sensitivity)


def test_matches_reference_without_mark_limit():
    ann, exc, cand, scans = random_case(99, discrete=True)
    result = compute_froc(ann, cand, scans, excluded=exc, config=FrocConfig(max_marks_per_scan=0))
    assert result.sensitivity == pytest.approx(reference_sensitivities(ann, exc, cand, scans, 0), abs=1e-12)
