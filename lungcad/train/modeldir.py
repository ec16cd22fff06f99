"""Model directories: what ``lungcad train <model>`` writes and ``lungcad detect --model DIR`` reads.

A model directory holds ``model.keras`` (the Keras model) and one YAML file with what inference needs
besides the weights (``detector.yaml`` for the U-Net, ``fpr.yaml`` for the WideResNet), plus the training
loop's outputs, ``train_config.yaml`` and ``run.json`` (version, data, scans, best epoch).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import keras
import yaml

from lungcad import __version__
from lungcad.config import from_dict, to_dict
from lungcad.errors import ConfigError
from lungcad.fileio import write_text_atomic

T = TypeVar("T")
MODEL_FILE = "model.keras"
#: How each ``lungcad train`` command's model is named in messages.
LABELS = {"unet": "U-Net", "fpr": "FPR"}


def check_model_dir(model_dir: str | Path, config_file: str, command: str) -> Path:
    """``model_dir`` if it holds ``model.keras`` and ``config_file``, else a ConfigError naming ``command``."""
    model_dir = Path(model_dir)
    for name in (MODEL_FILE, config_file):
        if not (model_dir / name).is_file():
            raise ConfigError(
                f"not a {LABELS.get(command, command)} model directory: {name} missing",
                path=model_dir,
                fix=f"give a folder written by 'lungcad train {command}'",
            )
    return model_dir


def float32_model(model: keras.Model) -> keras.Model:
    """``model``, or a copy of it with the same weights that computes in float32.

    Training under ``--mixed-precision`` leaves a bfloat16/float16 policy in every layer's saved config, and a
    model loaded with it computes in that precision: slow on CPUs without bfloat16 units, unsupported by some.
    The weights are float32 either way, so the saved model is made to compute in float32 wherever it runs."""
    if all(layer.compute_dtype == "float32" for layer in model.layers):
        return model
    config = model.get_config()
    for layer in config["layers"]:
        layer["config"]["dtype"] = "float32"
    copy = model.__class__.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def save_model_dir(model: keras.Model, config: Any, model_dir: str | Path, config_file: str) -> Path:
    """Write ``model.keras`` (computing in float32: :func:`float32_model`) and the inference config (a dataclass)
    as ``config_file``."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    float32_model(model).save(model_dir / MODEL_FILE)
    write_text_atomic(model_dir / config_file, yaml.safe_dump(to_dict(config), sort_keys=False))
    return model_dir


def load_model_dir(model_dir: str | Path, config_cls: type[T], config_file: str, command: str) -> tuple[keras.Model, T]:
    """The Keras model and the inference config of a model directory."""
    model_dir = check_model_dir(model_dir, config_file, command)
    path = model_dir / config_file
    config = from_dict(config_cls, yaml.safe_load(path.read_text()), source=str(path))
    return keras.models.load_model(model_dir / MODEL_FILE, compile=False), config


def start_from(model: keras.Model, source: keras.Model, settings: str, found: Any, expected: Any, path: Path):
    """``model`` with the weights of ``source``, a trained model loaded for ``--init`` (fine-tuning), whose config file
    ``path`` gave the ``settings`` ``found``; ConfigError unless they are the ``expected`` ones (same architecture)."""
    if found != expected:
        raise ConfigError(
            f"--init model has {settings} {found}, the config asks for {expected}",
            path=path,
            fix=f"fine-tune with the init model's {settings}",
        )
    model.set_weights(source.get_weights())
    return model


def finish_run(result: Any, out: Path, train_config: Any, info: dict[str, Any]) -> None:
    """After :func:`lungcad.train.loop.fit`: load the best epoch's weights into ``result.model`` and write
    ``train_config.yaml`` and ``run.json`` (lungcad version, ``info``, best epoch's metrics)."""
    load_best_weights(result, out)
    write_run_record(result, out, train_config, info)


def load_best_weights(result: Any, out: Path) -> None:
    """Load ``out/best.weights.h5`` (the monitored best epoch) into ``result.model``, where it exists."""
    if (out / "best.weights.h5").exists():
        result.model.load_weights(out / "best.weights.h5")


def write_run_record(result: Any, out: Path, train_config: Any, info: dict[str, Any]) -> None:
    """Write ``train_config.yaml`` and ``run.json`` (lungcad version, ``info``, best epoch's metrics)."""
    write_text_atomic(out / "train_config.yaml", yaml.safe_dump(to_dict(train_config), sort_keys=False))
    record = {"lungcad_version": __version__, **info, "best": result.best}
    write_text_atomic(out / "run.json", json.dumps(record, indent=1))
