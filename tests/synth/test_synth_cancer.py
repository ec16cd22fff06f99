"""The documented malignancy rule and the cancer rate it gives."""

from __future__ import annotations

import numpy as np
import pytest

from lungcad.synth import is_malignant, load_synth_config, patient_cancer
from lungcad.synth.nodules import NoduleKind, draw_kinds
from lungcad.synth.phantom import scan_rngs

RULE = load_synth_config().cancer_rule


@pytest.mark.parametrize(
    ("kind", "malignant"),
    [
        (NoduleKind(15.0, "solid", "smooth", "intraparenchymal"), True),
        (NoduleKind(14.9, "solid", "smooth", "intraparenchymal"), False),
        (NoduleKind(16.0, "part_solid", "smooth", "juxtapleural"), True),
        (NoduleKind(25.0, "ggo", "lobulated", "intraparenchymal"), False),
        (NoduleKind(25.0, "calcified", "lobulated", "intraparenchymal"), False),
        (NoduleKind(8.0, "solid", "spiculated", "juxtavascular"), True),
        (NoduleKind(7.9, "solid", "spiculated", "juxtavascular"), False),
        (NoduleKind(12.0, "part_solid", "lobulated", "intraparenchymal"), True),
        (NoduleKind(11.9, "solid", "lobulated", "intraparenchymal"), False),
        (NoduleKind(20.0, "solid", "smooth", "intraparenchymal", excluded=True), False),
    ],
)
def test_rule(kind, malignant):
    assert is_malignant(kind, RULE) is malignant


def test_patient_cancer_is_any_malignant():
    benign = NoduleKind(5.0, "solid", "smooth", "intraparenchymal")
    bad = NoduleKind(20.0, "solid", "smooth", "intraparenchymal")
    assert patient_cancer([], RULE) == 0
    assert patient_cancer([benign, benign], RULE) == 0
    assert patient_cancer([benign, bad], RULE) == 1


def test_cancer_rate_near_dsb():
    cfg = load_synth_config()
    labels = [patient_cancer(draw_kinds(scan_rngs(99, i)["nodules"], cfg), cfg.cancer_rule) for i in range(2000)]
    assert 0.21 <= np.mean(labels) <= 0.31


def test_kinds_are_varied_and_plausible():
    cfg = load_synth_config()
    kinds = [k for i in range(300) for k in draw_kinds(scan_rngs(98, i)["nodules"], cfg)]
    real = [k for k in kinds if not k.excluded]
    assert {k.type for k in real} == {"solid", "part_solid", "ggo", "calcified"}
    assert {k.shape for k in real} == {"smooth", "lobulated", "spiculated"}
    assert {k.location for k in real} == {"intraparenchymal", "juxtapleural", "juxtavascular"}
    assert all(3.0 <= k.diameter_mm <= 30.0 for k in real)
    assert all(1.5 <= k.diameter_mm < 3.0 for k in kinds if k.excluded)
    assert not any(k.shape == "spiculated" and k.type in ("ggo", "calcified") for k in kinds)
