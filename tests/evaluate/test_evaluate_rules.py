"""Hand-made LUNA16 cases with known answers, one per rule of the official evaluation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lungcad.errors import DataLayoutError
from lungcad.evaluate import FrocConfig, compute_froc
from lungcad.evaluate.analysis import size_bins
from lungcad.evaluate.matching import limit_marks

PTS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def status_of(result, x: float) -> str:
    """Matching status of the mark at world x (marks here have distinct x)."""
    c = result.match.candidates
    return c.loc[c["coordX"] == x, "status"].item()


@pytest.mark.parametrize(
    ("xyz", "hit"),
    [
        ((4.999, 0, 0), True),  # inside
        ((5.0, 0, 0), False),  # exactly on the radius: distance must be strictly below it
        ((3.0, 4.0, 0.0), False),  # on the radius in 2-D
        ((3.0, 3.99, 0.0), True),
        ((5.001, 0, 0), False),  # outside
        ((0, 0, -4.99), True),
    ],
)
def test_hit_is_strictly_inside_radius(annotations, candidates, xyz, hit):
    ann = annotations(("a", 0, 0, 0, 10.0))
    cand = candidates(("a", *xyz, 0.7))
    r = compute_froc(ann, cand, ["a"])
    assert r.n_detected == int(hit)
    assert r.count("fp") == int(not hit)
    assert r.sensitivity == pytest.approx((1.0 if hit else 0.0,) * 7)


def test_best_scored_hit_is_the_true_positive_and_other_hits_are_ignored(annotations, candidates):
    # 8 scans: one false positive = 1/8 FP per scan
    ann = annotations(("a", 0, 0, 0, 10.0), ("b", 0, 0, 0, 10.0))
    cand = candidates(
        ("a", 1, 0, 0, 0.3),  # weaker hit on nodule a (listed first)
        ("a", 2, 0, 0, 0.9),  # best hit on nodule a -> TP with score 0.9
        ("a", 3, 0, 0, 0.2),  # third hit: ignored, not a FP
        ("c", 50, 0, 0, 0.8),  # FP
        ("d", 50, 0, 0, 0.6),  # FP
        ("b", 0, 1, 0, 0.5),  # TP on nodule b
    )
    r = compute_froc(ann, cand, list("abcdefgh"))
    assert [status_of(r, x) for x in (1, 2, 3)] == ["double_hit", "tp", "double_hit"]
    assert r.count("fp") == 2
    nod = r.match.nodules.set_index("seriesuid")
    assert nod.loc["a", "probability"] == 0.9 and nod.loc["a", "hits"] == 3
    assert nod.loc["a", "hit_coordX"] == 2.0
    # curve: 0.9 TP (0, .5); 0.8 FP (1/8, .5); 0.6 FP (2/8, .5); 0.5 TP (2/8, 1)
    assert r.sensitivity == pytest.approx((0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0))
    assert r.cpm == pytest.approx(6.5 / 7)


def test_hit_on_excluded_annotation_is_ignored(annotations, candidates):
    ann = annotations(("a", 0, 0, 0, 10.0))
    exc = annotations(("a", 100, 0, 0, 8.0))
    cand = candidates(("a", 101, 0, 0, 0.99), ("a", 0, 0, 0, 0.5), ("a", 104.5, 0, 0, 0.98))
    r = compute_froc(ann, cand, ["a"], excluded=exc)
    assert status_of(r, 101) == "excluded_hit"
    assert status_of(r, 104.5) == "fp"  # 4.5 mm from an 8 mm excluded annotation: outside
    assert r.count("fp") == 1 and r.n_nodules == 1 and r.n_detected == 1
    # the FP at 0.98 precedes the TP: (1, 0) then (1, 1); exactly 1 FP/scan reads the top of the step
    assert r.sensitivity == pytest.approx((0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0))


def test_excluded_annotations_never_count_as_nodules(annotations, candidates):
    ann = annotations(("a", 0, 0, 0, 10.0))
    exc = annotations(("a", 100, 0, 0, 8.0), ("b", 0, 0, 0, 8.0))
    r = compute_froc(ann, candidates(("a", 0, 0, 0, 0.5)), ["a", "b"], excluded=exc)
    assert r.n_nodules == 1 and r.cpm == 1.0


def test_unknown_excluded_diameter_is_10_mm(annotations, candidates):
    ann = annotations(("a", 0, 0, 0, 10.0))
    exc = annotations(("a", 100, 0, 0, -1.0))
    cand = candidates(("a", 104.9, 0, 0, 0.9), ("a", 95.1, 0, 0, 0.9), ("a", 105.0, 0, 0, 0.8), ("a", 0, 0, 0, 0.1))
    r = compute_froc(ann, cand, ["a"], excluded=exc)
    assert [status_of(r, x) for x in (104.9, 95.1, 105.0)] == ["excluded_hit", "excluded_hit", "fp"]
    r5 = compute_froc(ann, cand, ["a"], excluded=exc, config=FrocConfig(unknown_diameter_mm=9.0))
    assert status_of(r5, 104.9) == "fp"


def test_mark_on_both_included_and_excluded_counts_for_the_included_nodule(annotations, candidates):
    # official: included annotations are matched first, so the mark is the nodule's hit, not ignored
    ann = annotations(("a", 0, 0, 0, 10.0))
    exc = annotations(("a", 3, 0, 0, 10.0))
    r = compute_froc(ann, candidates(("a", 2, 0, 0, 0.6)), ["a"], excluded=exc)
    assert status_of(r, 2) == "tp" and r.n_detected == 1 and r.cpm == 1.0


def test_one_mark_between_two_overlapping_nodules_detects_both(annotations, candidates):
    # official: a mark inside two included nodules is a hit of each (its script prints "This is strange")
    ann = annotations(("a", 0, 0, 0, 10.0), ("a", 6, 0, 0, 10.0))
    r = compute_froc(ann, candidates(("a", 3, 0, 0, 0.6)), ["a"])
    assert r.n_detected == 2 and r.cpm == 1.0
    assert r.match.nodules["hit_coordX"].tolist() == [3.0, 3.0]


def test_scans_without_marks_count_in_the_fp_denominator(annotations, candidates):
    ann = annotations(("a", 0, 0, 0, 10.0))
    cand = candidates(("a", 50, 0, 0, 0.9), ("a", 60, 0, 0, 0.8), ("a", 0, 0, 0, 0.5))
    two = compute_froc(ann, cand, ["a", "b"])  # 2 FPs / 2 scans
    assert two.curve.fps[-1] == 1.0
    assert two.sensitivity == pytest.approx((0, 0, 0, 1, 1, 1, 1))
    four = compute_froc(ann, cand, ["a", "b", "c", "d"])  # 2 FPs / 4 scans
    assert four.curve.fps[-1] == 0.5
    assert four.sensitivity == pytest.approx((0, 0, 1, 1, 1, 1, 1))
    assert four.cpm == pytest.approx(5 / 7)


def test_no_false_positives_at_all(annotations, candidates):
    ann = annotations(("a", 0, 0, 0, 10.0), ("b", 0, 0, 0, 10.0))
    cand = candidates(("a", 0, 0, 0, 0.9), ("a", 1, 0, 0, 0.4))
    r = compute_froc(ann, cand, ["a", "b"])
    assert r.count("fp") == 0
    assert r.sensitivity == (0.5,) * 7 and r.cpm == 0.5


def test_missed_nodules_stay_in_the_denominator(annotations, candidates):
    ann = annotations(*[(u, 0, 0, 0, 6.0) for u in "abcd"])
    r = compute_froc(ann, candidates(("a", 0, 0, 0, 0.9), ("b", 40, 0, 0, 0.8)), list("abcd"))
    assert r.n_nodules == 4 and r.n_detected == 1
    assert r.sensitivity == pytest.approx((0.25,) * 7)
    assert sorted(r.match.nodules.loc[~r.match.nodules["detected"], "seriesuid"]) == ["b", "c", "d"]


def test_nothing_detected_gives_zero_not_nan(annotations, candidates):
    # the official script returns NaN here (scikit-learn's tpr = 0/0); lungcad reports 0
    ann = annotations(("a", 0, 0, 0, 6.0))
    r = compute_froc(ann, candidates(("a", 40, 0, 0, 0.9)), ["a"])
    assert r.sensitivity == (0.0,) * 7 and r.cpm == 0.0


def test_no_nodule_in_the_listed_scans_is_an_error(annotations, candidates):
    with pytest.raises(DataLayoutError, match="no annotated nodule"):
        compute_froc(annotations(("a", 0, 0, 0, 6.0)), candidates(("b", 0, 0, 0, 0.9)), ["b"])


def test_tied_scores_form_one_curve_point_and_are_interpolated(annotations, candidates):
    # TP and FP share the score 0.8: one point (1/4 FP/scan, 1/2) straight from the origin
    ann = annotations(("a", 0, 0, 0, 10.0), ("b", 0, 0, 0, 10.0))
    cand = candidates(("a", 0, 0, 0, 0.8), ("a", 50, 0, 0, 0.8))
    r = compute_froc(ann, cand, list("abcd"))
    assert r.curve.fps.tolist() == [0.0, 0.25] and r.curve.sensitivity.tolist() == [0.0, 0.5]
    assert r.sensitivity == pytest.approx((0.25, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5))


def test_exact_operating_point_on_a_vertical_step_reads_its_top(annotations, candidates):
    ann = annotations(("a", 0, 0, 0, 10.0), ("b", 0, 0, 0, 10.0))
    cand = candidates(("c", 50, 0, 0, 0.9), ("a", 0, 0, 0, 0.8), ("d", 50, 0, 0, 0.7))
    r = compute_froc(ann, cand, list("abcdefgh"))
    assert r.sensitivity[0] == 0.5  # (1/8, 0) -> (1/8, 1/2): exactly 1/8 FP/scan gives 1/2
    # between 1/8 and 2/8 FP/scan the curve is flat at 1/2
    assert r.sensitivity[1] == 0.5


def test_official_float_rounding_of_the_fp_rate_is_reproduced(annotations, candidates):
    """The official rate (FP/F)*F/S rounds 3/187*187/24 just above 1/8, so at exactly 1/8 FP/scan the
    official script interpolates *below* the step of the nodule found right after the 3rd FP (0.25,
    not 0.5); lungcad reproduces it (cross-checked against the official script with scikit-learn)."""
    scans = [f"s{i}" for i in range(24)]
    ann = annotations(("s0", 0, 0, 0, 10), ("s0", 100, 0, 0, 10), ("s1", 0, 0, 0, 10), ("s1", 100, 100, 0, 10))
    probs = [0.99, 0.98, 0.97] + [0.9 - 0.001 * i for i in range(184)]
    fps = [(scans[i % 24], -200 - i, -200, 0, p) for i, p in enumerate(probs)]
    r = compute_froc(ann, candidates(("s0", 0, 0, 0, 0.995), ("s0", 100, 1, 0, 0.965), *fps), scans)
    assert r.count("fp") == 187
    assert 3 / 187 * 187 / 24 > 0.125
    assert r.sensitivity == (0.25, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5)


def test_max_marks_keeps_scores_strictly_above_the_101st(candidates):
    p = np.arange(101, dtype=float)
    assert limit_marks(p, 100).sum() == 100 and not limit_marks(p, 100)[0]
    tied = np.r_[np.arange(10, 108, dtype=float), 5.0, 5.0, 5.0, 5.0]  # 98 distinct + 4 tied at the cut
    assert limit_marks(tied, 100).sum() == 98
    assert limit_marks(tied, 0).all() and limit_marks(tied, -1).all()
    assert limit_marks(p[:100], 100).all()


def test_max_marks_applies_before_matching(annotations, candidates):
    ann = annotations(("a", 0, 0, 0, 10.0))
    fps = [("a", 100 + i, 0, 0, 0.5 + i / 1000) for i in range(100)]
    cand = candidates(*fps, ("a", 0, 0, 0, 0.1))  # the hit is the 101st mark
    r = compute_froc(ann, cand, ["a"])
    assert r.n_detected == 0 and r.count("over_max_marks") == 1 and r.count("fp") == 100
    r_all = compute_froc(ann, cand, ["a"], config=FrocConfig(max_marks_per_scan=0))
    assert r_all.n_detected == 1 and r_all.count("over_max_marks") == 0


def test_size_bins_are_lower_inclusive():
    d = np.array([2.9, 3.0, 4.99, 5.0, 10.0, 19.9, 20.0, 31.0, -1.0])
    assert size_bins(d, (3, 5, 10, 20)).tolist() == [
        "<3",
        "3-5",
        "3-5",
        "5-10",
        "10-20",
        "10-20",
        ">=20",
        ">=20",
        "unknown",
    ]


def test_sensitivity_by_size(annotations, candidates):
    ann = annotations(("a", 0, 0, 0, 4.0), ("a", 50, 0, 0, 12.0), ("b", 0, 0, 0, 25.0), ("b", 90, 0, 0, 7.0))
    cand = candidates(("a", 50, 0, 0, 0.9), ("b", 0, 0, 0, 0.8), ("b", 90, 0, 0, 0.1), ("a", -50, 0, 0, 0.5))
    r = compute_froc(ann, cand, ["a", "b"])
    t = r.by_size.set_index("bin")
    assert t.index.tolist() == ["3-5", "5-10", "10-20", ">=20"]
    assert t["nodules"].tolist() == [1, 1, 1, 1] and t["detected"].tolist() == [0, 1, 1, 1]
    assert t.loc["10-20", "cpm"] == 1.0 and t.loc["3-5", "cpm"] == 0.0
    # 5-10: its only TP (0.1) comes after the single FP (0.5 -> 1/2 FP/scan)
    assert t.loc["5-10", ["sens_0.125", "sens_0.5", "sens_1"]].tolist() == [0.0, 1.0, 1.0]


def test_nodules_outside_the_series_list_are_ignored(annotations, candidates):
    ann = annotations(("a", 0, 0, 0, 10.0), ("z", 0, 0, 0, 10.0))
    r = compute_froc(ann, candidates(("a", 0, 0, 0, 0.9)), ["a"])
    assert r.n_nodules == 1 and r.cpm == 1.0


def test_without_series_list_every_uid_in_the_tables_is_a_scan(annotations, candidates, caplog):
    ann = annotations(("a", 0, 0, 0, 10.0))
    exc = annotations(("e", 0, 0, 0, -1))
    r = compute_froc(ann, candidates(("b", 0, 0, 0, 0.9)), excluded=exc)
    assert set(r.match.scans) == {"a", "b", "e"}
    assert "no series list" in caplog.text


def test_result_frames_are_consistent(annotations, candidates):
    ann = annotations(("a", 0, 0, 0, 10.0))
    cand = candidates(("a", 0, 0, 0, 0.9), ("a", 30, 0, 0, 0.2))
    r = compute_froc(ann, cand, ["a"])
    assert isinstance(r.match.candidates, pd.DataFrame)
    assert r.count("tp") + r.count("fp") == 2
    assert r.cpm == pytest.approx(np.mean(r.sensitivity))
