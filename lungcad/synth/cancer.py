"""The deterministic malignancy rule that labels synthetic patients (DSB ``stage1_labels.csv``).

A nodule is **malignant** when it is solid or part-solid (not ground-glass, not calcified), is not an
excluded (< 3 mm) finding, and

1. its diameter is >= ``solid_min_mm`` (15 mm), or
2. it is spiculated with diameter >= ``spiculated_min_mm`` (8 mm), or
3. it is lobulated with diameter >= ``lobulated_min_mm`` (12 mm).

An **LIDC-IDRI nodule** (``lidc`` in the config, :mod:`lungcad.synth.lidc_nodules`) follows its readers instead,
as is usual with LIDC: malignant when the median of its readers' malignancy ratings is >= 4 (moderately or highly
suspicious), benign when <= 2, **indeterminate** in between (3, or a median of 2.5 or 3.5); an excluded one (fewer
than ``lidc.min_readers`` readers) counts for nothing.

A patient's ``cancer`` is 1 when at least one of their nodules is malignant. Otherwise it is 0, except for a
patient with an indeterminate LIDC nodule under ``cancer_rule.lidc_indeterminate: exclude`` (the default), who
gets no label (``None``: no row in ``stage1_labels.csv``), as LIDC studies leave rating-3 nodules out;
``benign`` counts them as 0. Thresholds are in ``configs/synth.yaml`` (``cancer_rule``); with the shipped
parametric nodule distributions about a quarter of the patients are cancer = 1 (the real DSB 2017 stage-1 rate
is ~26%).
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
    lidc: object  # an LIDC nodule (its ``rating(name)``) or None


def lidc_malignancy(kind: NoduleKind) -> float | None:
    """The median malignancy rating of an LIDC nodule (None for a parametric one)."""
    lidc = getattr(kind, "lidc", None)
    return None if lidc is None else float(lidc.rating("malignancy"))


def is_malignant(kind: NoduleKind, rule: CancerRuleConfig) -> bool:
    """Whether one nodule is malignant under ``rule`` (see the module docstring)."""
    if kind.excluded:
        return False
    m = lidc_malignancy(kind)
    if m is not None:
        return m >= 4
    if kind.type not in ("solid", "part_solid"):
        return False
    d = kind.diameter_mm
    return (
        d >= rule.solid_min_mm
        or (kind.shape == "spiculated" and d >= rule.spiculated_min_mm)
        or (kind.shape == "lobulated" and d >= rule.lobulated_min_mm)
    )


def is_indeterminate(kind: NoduleKind) -> bool:
    """An LIDC nodule (not excluded) whose median malignancy is strictly between 2 and 4."""
    m = lidc_malignancy(kind)
    return m is not None and not kind.excluded and 2 < m < 4


def patient_cancer(kinds: Iterable[NoduleKind], rule: CancerRuleConfig) -> int | None:
    """1 if any nodule is malignant; else None when an LIDC nodule is indeterminate and the rule excludes those
    patients; else 0."""
    kinds = list(kinds)
    if any(is_malignant(k, rule) for k in kinds):
        return 1
    if rule.lidc_indeterminate == "exclude" and any(is_indeterminate(k) for k in kinds):
        return None
    return 0
