"""Which arithmetic each model of ``lungcad detect`` runs in: float32, or bfloat16 where the CPU has units for it.

CPUs with AMX (``amx_bf16``) or AVX512-BF16 (``avx512_bf16``) multiply bfloat16 matrices in hardware, through
oneDNN; a model then runs under the Keras ``mixed_bfloat16`` policy (bfloat16 arithmetic, float32 weights, the
output layer in float32: :func:`lungcad.modeldir.mixed_precision_model`).

``--precision auto`` (the default) runs in bfloat16 only the models measured faster in it on such a CPU
(:data:`AUTO_BFLOAT16`): the patch scorers (the FPR WideResNet, the risk model's nodule classifiers), 2.9x faster
(0.13 vs 0.37 s per batch of 64 patches on 2 cores of a Sapphire Rapids class CPU with AMX). The U-Net (8..128
filters) is slower in bfloat16 there (0.24 vs 0.18 s per 8 slices) and stays float32 unless forced
(``--precision bfloat16``); ``--precision float32`` forces float32 everywhere.
"""

from __future__ import annotations

import functools
from pathlib import Path

from lungcad.errors import ConfigError

#: The ``--precision`` choices.
PRECISIONS = ("auto", "float32", "bfloat16")
#: CPU flags (``/proc/cpuinfo``) of hardware bfloat16 arithmetic.
BF16_FLAGS = ("amx_bf16", "avx512_bf16")
#: Model roles of a run: the U-Net, the FPR, the risk model's nodule classifiers.
ROLES = ("unet", "fpr", "risk")
#: The roles ``auto`` runs in bfloat16 on a CPU with :data:`BF16_FLAGS` (measured faster there, results kept:
#: see the module docstring and docs/benchmarks.md).
AUTO_BFLOAT16 = ("fpr", "risk")


def has_bf16_units(cpuinfo: str) -> bool:
    """Whether ``cpuinfo`` (the text of ``/proc/cpuinfo``) lists a CPU flag of :data:`BF16_FLAGS` on a ``flags``
    line (a whole word: ``avx512_bf16`` counts, ``avx512_bf16x`` or the word in another line does not)."""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags" and set(value.split()) & set(BF16_FLAGS):
            return True
    return False


def read_cpuinfo(path: str | Path = "/proc/cpuinfo") -> str:
    """The text of ``/proc/cpuinfo`` ("" where there is none: macOS, Windows: no bfloat16 detected)."""
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


@functools.lru_cache(maxsize=1)
def machine_has_bf16() -> bool:
    """:func:`has_bf16_units` of this machine's ``/proc/cpuinfo``, read once per process (every scan resolves its
    precision; the file is hundreds of KB on a many-core machine)."""
    return has_bf16_units(read_cpuinfo())


def resolve_precision(requested: str = "auto", cpuinfo: str | None = None) -> dict[str, str]:
    """``{role: "float32" | "bfloat16"}`` for every role of :data:`ROLES`: ``requested`` "float32" or "bfloat16"
    forces it on every model; "auto" gives bfloat16 to the :data:`AUTO_BFLOAT16` roles when ``cpuinfo`` (default:
    this machine's) shows bfloat16 units (:func:`has_bf16_units`), float32 to the others."""
    if requested not in PRECISIONS:
        raise ConfigError(f"unknown precision {requested!r}", expected=" or ".join(PRECISIONS))
    if requested != "auto":
        return dict.fromkeys(ROLES, requested)
    bf16 = machine_has_bf16() if cpuinfo is None else has_bf16_units(cpuinfo)
    return {role: "bfloat16" if bf16 and role in AUTO_BFLOAT16 else "float32" for role in ROLES}


def keras_policy(precision: str) -> str:
    """The Keras dtype policy a model loaded in ``precision`` runs under."""
    return {"float32": "float32", "bfloat16": "mixed_bfloat16"}[precision]
