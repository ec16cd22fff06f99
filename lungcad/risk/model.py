"""The risk model: candidate features -> leaky noisy-OR over each patient's top-k candidates -> P(cancer).

Features (see :mod:`lungcad.risk.features`) are standardised with the training set's mean and standard
deviation; the noisy-OR is :class:`lungcad.risk.noisy_or.NoisyOrRisk`. A model directory holds
``risk.json``: the config, the feature statistics and the fitted parameters (a few numbers), and, for each
feature ``NAME_logit`` of a nodule classifier, that classifier in ``classifiers/NAME/`` (a WideResNet model
directory, see :mod:`lungcad.train.risk.classifiers`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lungcad.config import from_dict, to_dict
from lungcad.errors import ConfigError
from lungcad.fileio import write_json_atomic
from lungcad.risk.features import FEATURES, FeatureConfig, candidate_features, classifier_names
from lungcad.risk.noisy_or import NoisyOrRisk
from lungcad.schema import by_probability

RISK_FILE = "risk.json"
CLASSIFIERS_DIR = "classifiers"  # the nodule classifiers' folders inside a risk model directory


@dataclass(frozen=True)
class NoisyOrConfig:
    """``model:`` section of ``configs/risk.yaml``.

    Attributes:
        features: candidate feature columns the model uses (names from :data:`lungcad.risk.features.FEATURES`).
        top_k: candidates per patient, by FPR probability.
        l2: penalty on the feature weights.
        clip: outputs are kept in ``[clip, 1 - clip]``.
    """

    features: tuple[str, ...]
    top_k: int
    l2: float
    clip: float


@dataclass(frozen=True)
class RiskConfig:
    """What scoring needs: how features are measured and the model's form."""

    features: FeatureConfig
    model: NoisyOrConfig


def patient_matrices(candidates: pd.DataFrame, ids: Sequence[str], config: NoisyOrConfig) -> list[np.ndarray]:
    """Per patient id: the (n <= top_k, F) feature rows of their most probable candidates (``seriesuid`` = id)."""
    ordered = by_probability(candidates)
    groups = {uid: g for uid, g in ordered.groupby("seriesuid", sort=False)}
    empty = np.zeros((0, len(config.features)))
    return [groups[i][list(config.features)].to_numpy(float)[: config.top_k] if i in groups else empty for i in ids]


class RiskModel:
    """A fitted risk model: ``predict(candidates, ids)`` gives P(cancer) per patient."""

    def __init__(
        self, config: RiskConfig, mean: np.ndarray, std: np.ndarray, noisy_or: NoisyOrRisk, classifiers=None
    ) -> None:
        self.config, self.mean, self.std, self.noisy_or = config, np.asarray(mean), np.asarray(std), noisy_or
        self.classifiers = dict(classifiers or {})  # {NAME: PatchScorer} of the nodule classifiers

    def features(self, scan, candidates: pd.DataFrame) -> pd.DataFrame:
        """:func:`~lungcad.risk.features.candidate_features` of ``candidates``, as this model measures them."""
        return candidate_features(scan, candidates, self.config.features, self.classifiers)

    @property
    def feature_columns(self) -> list[str]:
        """Every feature column this model measures (the ones it uses and the hand-made ones)."""
        return list(dict.fromkeys([*FEATURES, *self.config.model.features]))

    @classmethod
    def fit(cls, candidates: pd.DataFrame, labels: pd.Series, config: RiskConfig) -> RiskModel:
        """Fit on scored candidates with features and ``labels`` (0/1 indexed by patient id)."""
        ids = [str(i) for i in labels.index]
        raw = patient_matrices(candidates, ids, config.model)
        stacked = np.concatenate([m for m in raw if len(m)] or [np.zeros((1, len(config.model.features)))])
        mean, std = stacked.mean(0), stacked.std(0)
        std = np.where(std > 1e-9, std, 1.0)
        m = config.model
        noisy_or = NoisyOrRisk(top_k=m.top_k, l2=m.l2, clip=m.clip)
        noisy_or.fit([(x - mean) / std for x in raw], labels.to_numpy(float))
        return cls(config, mean, std, noisy_or)

    def predict(self, candidates: pd.DataFrame, ids: Sequence[str]) -> np.ndarray:
        """P(cancer) (P,) for patient ``ids``; a patient without candidates gets the leak (the prior)."""
        raw = patient_matrices(candidates, [str(i) for i in ids], self.config.model)
        return self.noisy_or.patient_probability([(x - self.mean) / self.std for x in raw])

    def save(self, model_dir: str | Path) -> Path:
        """Write ``risk.json`` into ``model_dir``."""
        record = {
            "config": to_dict(self.config),
            "feature_mean": self.mean.tolist(),
            "feature_std": self.std.tolist(),
            "weights": self.noisy_or.weights.tolist(),
            "bias": self.noisy_or.bias,
            "leak_logit": self.noisy_or.leak_logit,
        }
        path = Path(model_dir) / RISK_FILE
        write_json_atomic(path, record)
        return Path(model_dir)

    @classmethod
    def load(cls, model_dir: str | Path, policy: str = "float32") -> RiskModel:
        """Read a directory written by ``lungcad train risk``; its nodule classifiers compute under the Keras
        dtype ``policy`` (:meth:`lungcad.fpr.inference.PatchScorer.load`)."""
        path = check_model_dir(model_dir) / RISK_FILE
        try:
            record = json.loads(path.read_text())
            config = from_dict(RiskConfig, record["config"], source=str(path))
            m = config.model
            noisy_or = NoisyOrRisk(
                top_k=m.top_k,
                l2=m.l2,
                clip=m.clip,
                weights=np.asarray(record["weights"], float),
                bias=float(record["bias"]),
                leak_logit=float(record["leak_logit"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"unreadable risk model: {exc}", path=path) from exc
        classifiers = load_classifiers(
            {name: Path(model_dir) / CLASSIFIERS_DIR / name for name in classifier_names(m.features)}, policy
        )
        return cls(config, np.asarray(record["feature_mean"]), np.asarray(record["feature_std"]), noisy_or, classifiers)


def load_classifiers(folders: dict[str, Path], policy: str = "float32") -> dict:
    """``{NAME: PatchScorer}`` of nodule classifier model directories (computing under the Keras dtype
    ``policy``); ConfigError naming a missing one."""
    from lungcad.fpr.inference import PatchScorer
    from lungcad.fpr.inference import check_model_dir as check_classifier

    out = {}
    for name, folder in folders.items():
        if not Path(folder).is_dir():
            raise ConfigError(
                f"no classifier for the feature {name}_logit",
                path=folder,
                fix=f"train one with 'lungcad train classifier' and give 'lungcad train risk --classifier {name}=DIR'",
            )
        out[name] = PatchScorer.load(check_classifier(folder), policy)
    return out


def check_model_dir(model_dir: str | Path) -> Path:
    """``model_dir`` if it holds a risk model (``risk.json``), else ConfigError naming the fix."""
    path = Path(model_dir)
    if not (path / RISK_FILE).is_file():
        raise ConfigError(
            f"not a risk model directory (no {RISK_FILE})", path=path, fix="train one with 'lungcad train risk'"
        )
    return path
