"""The deterministic malignancy rule that labels synthetic patients (DSB ``stage1_labels.csv``).

A nodule is **malignant** when it is solid or part-solid (not ground-glass, not calcified), is not an
excluded (< 3 mm) finding, and

1. its diameter is >= ``solid_min_mm`` (15 mm), or
2. it is spiculated with diameter >= ``spiculated_min_mm`` (8 mm), or
3. it is lobulated with diameter >= ``lobulated_min_mm`` (12 mm).

A patient's ``cancer`` is 1 when at least one of their nodules is malignant, else 0. Thresholds are in
``configs/synth.yaml`` (``cancer_rule``); with the shipped nodule distributions about a quarter of the
patients are cancer = 1 (the real DSB 2017 stage-1 rate is ~26%).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from lungcad.synth.config import CancerRuleConfig


class NoduleKind(Protocol):
    """What the rule looks at."""

    diameter_mm: float
    type: str
    shape: str
    excluded: bool


def is_malignant(kind: NoduleKind, rule: CancerRuleConfig) -> bool:
    """Whether one nodule is malignant under ``rule`` (see the module docstring)."""
    if kind.excluded or kind.type not in ("solid", "part_solid"):
        return False
    d = kind.diameter_mm
    return (
        d >= rule.solid_min_mm
        or (kind.shape == "spiculated" and d >= rule.spiculated_min_mm)
        or (kind.shape == "lobulated" and d >= rule.lobulated_min_mm)
    )


def patient_cancer(kinds: Iterable[NoduleKind], rule: CancerRuleConfig) -> int:
    """1 if any nodule is malignant, else 0."""
    return int(any(is_malignant(k, rule) for k in kinds))
