"""The model registry of ``lungcad detect``: which model directories a run uses, checked, and loaded once per process.

Stages and their model directories (each written by ``lungcad train <stage>``):

========== ================== ==========================================================
stage      directory          loaded as
========== ================== ==========================================================
candidates ``unet``           :class:`lungcad.pipeline.detector.CandidateDetector`
fpr        ``fpr``            :class:`lungcad.fpr.inference.PatchScorer`
risk       ``risk``           :class:`lungcad.risk.model.RiskModel`
========== ================== ==========================================================

The bundled models (``lungcad/models/<dir>``, made by ``scripts/train_default_models.py``) are the defaults.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from lungcad.config import from_dict
from lungcad.errors import ConfigError
from lungcad.modeldir import CONFIG_FILES
from lungcad.modeldir import check_model_dir as check_dir
from lungcad.pipeline.precision import PRECISIONS, keras_policy, resolve_precision
from lungcad.preprocess.config import PreprocessConfig

log = logging.getLogger(__name__)

#: Where the bundled default models live (trained by scripts/train_default_models.py).
BUNDLED_MODELS = Path(__file__).resolve().parents[1] / "models"
#: Pipeline stages ``detect`` can stop after, in order.
STAGES = ("candidates", "fpr", "risk")


def default_model_dir(stage: str) -> Path:
    """The bundled model directory of ``stage`` ("unet", "fpr", "risk"); a clear error when it is not there."""
    path = BUNDLED_MODELS / stage
    if not path.is_dir():
        raise ConfigError(
            f"no bundled {stage} model in this installation",
            path=path,
            fix=f"train one with 'lungcad train {stage}' and pass --model DIR",
        )
    return path


def default_stage(fpr_model_dir: str | Path | None = None, risk_model_dir: str | Path | None = None) -> str:
    """The deepest stage whose models are given or bundled: "risk" in a full installation."""
    has_fpr = fpr_model_dir is not None or (BUNDLED_MODELS / "fpr").is_dir()
    has_risk = risk_model_dir is not None or (BUNDLED_MODELS / "risk").is_dir()
    return "risk" if has_fpr and has_risk else "fpr" if has_fpr else "candidates"


@dataclass(frozen=True)
class ModelSet:
    """The checked model directories (and blob-filter config file) one detection runs with.

    Attributes:
        unet: the U-Net model directory (candidates).
        fpr: the false-positive reducer's, or None to stop after the candidates.
        risk: the risk model's, or None to stop after the FPR (needs ``fpr``).
        blobs: a :class:`lungcad.candidates.blobs.BlobConfig` YAML file that adds blob-filter candidates, or None.
        precision: "auto", "float32" or "bfloat16" (:mod:`lungcad.pipeline.precision`), resolved by
            :meth:`precisions` on the machine that runs the models.
    """

    unet: str
    fpr: str | None = None
    risk: str | None = None
    blobs: str | None = None
    precision: str = "float32"

    @property
    def stage(self) -> str:
        """The last stage these models run (one of :data:`STAGES`)."""
        return "risk" if self.risk else "fpr" if self.fpr else "candidates"

    def record(self) -> dict[str, str]:
        """What a scan's result was made with (its JSON's ``model``): a rerun with other models redoes the scan."""
        extra = {k: v for k, v in (("fpr", self.fpr), ("risk", self.risk), ("blobs", self.blobs)) if v}
        return {"unet": self.unet, **extra}

    def precisions(self) -> dict[str, str]:
        """``{"unet": ..., "fpr": ..., "risk": ...}`` ("float32" or "bfloat16"), the models this set has, as
        :attr:`precision` resolves on this machine (:func:`lungcad.pipeline.precision.resolve_precision`): what a
        scan's JSON records as its ``precision``."""
        resolved = resolve_precision(self.precision)
        return {role: resolved[role] for role in ("unet", "fpr", "risk") if getattr(self, role)}


def model_set(
    stage: str | None = None,
    model_dir: str | Path | None = None,
    fpr_model_dir: str | Path | None = None,
    risk_model_dir: str | Path | None = None,
    blobs: str | Path | None = None,
    precision: str = "auto",
) -> ModelSet:
    """The checked models ``stage`` needs (default :func:`default_stage`), the bundled ones where none is given;
    ``blobs`` is a config name in ``configs/`` or a YAML path, checked now (a bad file fails before any scan is
    read); ``precision`` one of :data:`lungcad.pipeline.precision.PRECISIONS`."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}", expected=" or ".join(PRECISIONS))
    stage = stage or default_stage(fpr_model_dir, risk_model_dir)
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}", expected=" or ".join(STAGES))
    needed = STAGES.index(stage)
    # a missing folder is reported now, before the checks below import TensorFlow (seconds)
    given = (("unet", model_dir, 0), ("fpr", fpr_model_dir, 1), ("risk", risk_model_dir, 2))
    for name, path, index in given:
        if path is not None and index <= needed and not Path(path).is_dir():
            raise ConfigError(
                "no such model directory", path=path, fix=f"give a folder written by 'lungcad train {name}'"
            )
    from lungcad.risk.model import check_model_dir as check_risk

    # checked by their files only: TensorFlow is imported when a model is loaded (the first scan), not here
    unet = str(check_dir(model_dir or default_model_dir("unet"), CONFIG_FILES["unet"], "unet"))
    fpr = str(check_dir(fpr_model_dir or default_model_dir("fpr"), CONFIG_FILES["fpr"], "fpr")) if needed >= 1 else None
    risk = str(check_risk(risk_model_dir or default_model_dir("risk"))) if needed >= 2 else None
    return ModelSet(unet, fpr, risk, blob_config_path(blobs), precision)


@functools.lru_cache(maxsize=8)
def unet_preprocess_config(model_dir: str) -> PreprocessConfig:
    """The preprocessing (grid, HU window, lung mask) the U-Net of ``model_dir`` was trained on: its
    ``detector.yaml``'s ``preprocess`` section, read without TensorFlow (the scan is preprocessed while the models
    load, :func:`preload`)."""
    path = Path(model_dir) / CONFIG_FILES["unet"]
    section = (yaml.safe_load(path.read_text()) or {}).get("preprocess")
    if not isinstance(section, dict):
        raise ConfigError("no preprocess section", path=path, fix="give a folder written by 'lungcad train unet'")
    return from_dict(PreprocessConfig, section, source=str(path), prefix="preprocess.")


def blob_config_path(blobs: str | Path | None) -> str | None:
    """The blob-filter config file (``"blobs"`` -> ``configs/blobs.yaml``), checked now."""
    if blobs is None:
        return None
    from lungcad.candidates.blobs import BlobConfig
    from lungcad.config import config_path, load_config

    path = config_path(blobs)
    load_config(BlobConfig, path)
    return str(path)


#: Seconds this process's work has been held by model loading (importing TensorFlow, reading ``model.keras``,
#: building each model's graph), in its own thread or waiting for a :func:`preload`: part of a run's start-up.
_LOADING = [0.0]


def loading_seconds() -> float:
    """Seconds this process has spent in :func:`load_detector`, :func:`load_scorer` and :func:`load_risk_model`
    (first calls: later ones are cached; the first one includes importing TensorFlow), or waiting in them for a
    :func:`preload` thread; the preload thread's own loading is not counted (it runs beside the work)."""
    return _LOADING[0]


@dataclass
class Preload:
    """A background load of a :class:`ModelSet` (:func:`preload`): its thread, and the seconds it spent loading."""

    thread: threading.Thread | None = None
    seconds: float = 0.0


#: model set -> its background load, started once per process
_PRELOADS: dict[ModelSet, Preload] = {}
#: ``.preload``: the :class:`Preload` whose thread this is (unset in other threads)
_THREAD = threading.local()


def preload(models: ModelSet) -> Preload | None:
    """Start loading ``models`` (importing TensorFlow, once, in that thread) in a background thread, while the
    caller goes on preprocessing the first scan with no TensorFlow; a load function called meanwhile
    (:func:`load_detector` ...) waits for it. Returns the new :class:`Preload`, or None when ``models`` were
    preloaded before in this process. A failure there is only logged at DEBUG: the caller's own load raises it."""
    if models in _PRELOADS:
        return None
    _PRELOADS[models] = job = Preload()
    job.thread = threading.Thread(target=_load_in_background, args=(job, models), name="lungcad-load-models")
    job.thread.start()
    return job


def _load_in_background(job: Preload, models: ModelSet) -> None:
    _THREAD.preload = job
    try:
        load_models(models)
    except Exception as exc:  # noqa: BLE001 - the first scan's own load raises it where it is reported
        log.debug("loading the models beside the first scan failed: %s", exc)


def _wait_for_preloads() -> None:
    """Block until every :func:`preload` thread (other than this one) is done; the wait counts in
    :func:`loading_seconds`."""
    for job in list(_PRELOADS.values()):
        if job.thread is not threading.current_thread() and job.thread.is_alive():
            t0 = time.perf_counter()
            job.thread.join()
            _LOADING[0] += time.perf_counter() - t0


def _timed(load):
    """``load`` cached per process (``functools.lru_cache``), its first calls' seconds added to
    :func:`loading_seconds` (to its :class:`Preload` in a preload thread); it first waits for running preloads
    (one thread loads at a time: TensorFlow is imported by one)."""
    cached = functools.lru_cache(maxsize=4)(load)

    @functools.wraps(load)
    def wrapper(*args, **kwargs):
        _wait_for_preloads()
        misses = cached.cache_info().misses
        t0 = time.perf_counter()
        value = cached(*args, **kwargs)
        if cached.cache_info().misses > misses:
            job = getattr(_THREAD, "preload", None)
            if job is not None:
                job.seconds += time.perf_counter() - t0
            else:
                _LOADING[0] += time.perf_counter() - t0
        return value

    wrapper.cache_clear = cached.cache_clear
    wrapper.cache_info = cached.cache_info
    return wrapper


@_timed
def load_detector(model_dir: str, blobs: str | None = None, precision: str = "float32"):
    """The U-Net candidate detector of ``model_dir`` computing in ``precision`` ("float32", "bfloat16"; cached per
    process); with ``blobs`` (a BlobConfig YAML) it also adds blob-filter candidates
    (:mod:`lungcad.candidates.blobs`), whatever its ``detector.yaml`` says."""
    from lungcad.candidates.blobs import BlobConfig
    from lungcad.config import load_config
    from lungcad.pipeline.detector import CandidateDetector

    detector = CandidateDetector.load(model_dir, precision)
    if blobs is None:
        return detector
    config = replace(detector.config, blobs=load_config(BlobConfig, blobs))
    return CandidateDetector(detector.model, config, detector.source)


@_timed
def load_scorer(model_dir: str, precision: str = "float32"):
    """The patch scorer (FPR, nodule classifier) of ``model_dir`` computing in ``precision``, cached per process."""
    from lungcad.fpr.inference import PatchScorer

    return PatchScorer.load(model_dir, keras_policy(precision))


@_timed
def load_risk_model(model_dir: str, precision: str = "float32"):
    """The risk model of ``model_dir`` (its nodule classifiers computing in ``precision``), cached per process."""
    from lungcad.risk.model import RiskModel

    return RiskModel.load(model_dir, keras_policy(precision))


def load_models(models: ModelSet) -> float:
    """Load (once per process) every model of ``models``; returns the seconds it took now (0 when all were loaded
    before)."""
    before = loading_seconds()
    precision = models.precisions()
    load_detector(models.unet, models.blobs, precision["unet"])
    if models.fpr is not None:
        load_scorer(models.fpr, precision["fpr"])
    if models.risk is not None:
        load_risk_model(models.risk, precision["risk"])
    return loading_seconds() - before
