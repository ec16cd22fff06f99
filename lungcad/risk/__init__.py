"""Stage 7, risk: a per-patient cancer probability from the scored candidates (leaky noisy-OR)."""

from lungcad.risk.noisy_or import NoisyOrRisk

__all__ = ["NoisyOrRisk"]
