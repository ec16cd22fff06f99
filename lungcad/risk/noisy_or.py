"""Per-patient cancer probability from scored candidates: a leaky noisy-OR (as the DSB 2017 winner).

Each of a patient's top ``k`` candidates (by FPR probability) is malignant with probability
``p_i = sigmoid(w . f_i + b)`` from its features ``f_i`` (FPR logit, log diameter, density, ...); the
patient has cancer unless every one of them is benign and the *leak* (cancer no candidate explains,
``sigmoid(leak_logit)``) is absent::

    P(cancer) = 1 - (1 - leak) * prod_i (1 - p_i)

A patient without candidates gets the leak, a sensible prior. Parameters are fitted by minimising the
patients' log loss (+ L2 on ``w``) with L-BFGS, which keeps the output calibrated. Outputs are clipped
to ``[clip, 1 - clip]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit


@dataclass
class NoisyOrRisk:
    """Leaky noisy-OR. ``weights`` (F,), ``bias`` and ``leak_logit`` are the fitted parameters."""

    top_k: int
    l2: float
    clip: float
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0))
    bias: float = -3.0
    leak_logit: float = -1.0

    def nodule_probability(self, features: np.ndarray) -> np.ndarray:
        """Malignancy probability (n,) of candidates with features (n, F)."""
        return expit(np.asarray(features, float) @ self.weights + self.bias)

    def patient_probability(self, patients: Sequence[np.ndarray]) -> np.ndarray:
        """P(cancer) (P,) for each patient's (n_j, F) candidate features, top-``k`` rows first."""
        return np.clip(1.0 - np.exp(self._log_benign(self._params(), patients)), self.clip, 1.0 - self.clip)

    def fit(self, patients: Sequence[np.ndarray], labels: np.ndarray) -> NoisyOrRisk:
        """Fit by minimising the mean patient log loss + L2; returns self."""
        n_features = next((p.shape[1] for p in patients if len(p)), 0)
        if self.weights.size != n_features:
            self.weights = np.zeros(n_features)
        y = np.asarray(labels, float)
        patients = [np.asarray(p, float)[: self.top_k] for p in patients]

        def objective(theta: np.ndarray) -> float:
            log_benign = self._log_benign(theta, patients)
            p_cancer = np.clip(-np.expm1(log_benign), 1e-12, 1 - 1e-12)
            loss = -np.mean(y * np.log(p_cancer) + (1 - y) * log_benign)
            return float(loss + self.l2 * np.sum(theta[:-2] ** 2))

        result = minimize(objective, self._params(), method="L-BFGS-B")
        self.weights, self.bias, self.leak_logit = result.x[:-2], float(result.x[-2]), float(result.x[-1])
        return self

    def _params(self) -> np.ndarray:
        return np.concatenate([self.weights, [self.bias, self.leak_logit]])

    def _log_benign(self, theta: np.ndarray, patients: Sequence[np.ndarray]) -> np.ndarray:
        """log P(no cancer) per patient: log(1 - leak) + sum_i log(1 - p_i) over the top-k."""
        w, b, leak = theta[:-2], theta[-2], theta[-1]
        out = np.empty(len(patients))
        for j, feats in enumerate(patients):
            feats = np.asarray(feats, float)[: self.top_k]
            logits = feats @ w + b if len(feats) else np.zeros(0)
            out[j] = -np.logaddexp(0.0, leak) - np.sum(np.logaddexp(0.0, logits))
        return out
