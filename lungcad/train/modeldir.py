"""Model directories, training side: start from a trained model (``--init``) and write the run record
(``train_config.yaml``, ``run.json``) beside what :mod:`lungcad.modeldir` saves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import yaml

from lungcad import __version__
from lungcad.config import to_dict
from lungcad.errors import ConfigError
from lungcad.fileio import write_json_atomic, write_text_atomic


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
    write_json_atomic(out / "run.json", record)
