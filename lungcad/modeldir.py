"""Model directories: what ``lungcad train <model>`` writes and ``lungcad detect --model DIR`` reads (inference side;
the training side, ``--init`` and run records, is :mod:`lungcad.train.modeldir`).

A model directory holds ``model.keras`` (the Keras model) and one YAML file with what inference needs
besides the weights (``detector.yaml`` for the U-Net, ``fpr.yaml`` for the WideResNet), plus the training
loop's outputs, ``train_config.yaml`` and ``run.json`` (version, data, scans, best epoch).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from lungcad.config import from_dict, to_dict
from lungcad.errors import ConfigError
from lungcad.fileio import write_text_atomic

if TYPE_CHECKING:  # Keras (TensorFlow, seconds) is imported only when a model is loaded or saved
    import keras

T = TypeVar("T")
MODEL_FILE = "model.keras"
#: How each ``lungcad train`` command's model is named in messages.
LABELS = {"unet": "U-Net", "fpr": "FPR"}
#: The inference config file beside ``model.keras`` in each ``lungcad train`` command's model directory (here, so
#: that a model directory is checked without importing the modules that load it, and TensorFlow with them).
CONFIG_FILES = {"unet": "detector.yaml", "fpr": "fpr.yaml"}


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


def mixed_precision_model(model: keras.Model, policy: str = "mixed_bfloat16") -> keras.Model:
    """A copy of ``model`` with the same weights whose layers compute under the Keras dtype policy ``policy`` (e.g.
    ``"mixed_bfloat16"``: bfloat16 arithmetic, float32 weights), its output layers in float32 (the probabilities at
    full precision); ``model`` itself for ``"float32"`` (:func:`float32_model`)."""
    if policy == "float32":
        return float32_model(model)
    config = model.get_config()
    entries = config.get("output_layers", [])
    entries = [entries] if entries and isinstance(entries[0], str) else entries  # one output: [name, 0, 0]
    outputs = {entry[0] for entry in entries}
    for layer in config["layers"]:
        if layer["class_name"] != "InputLayer":
            layer["config"]["dtype"] = "float32" if layer["config"]["name"] in outputs else policy
    copy = model.__class__.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def inference_graph(model: keras.Model, input_signature: list) -> Any:
    """One ``tf.function`` calling ``model`` in inference mode, its output cast to float32 (a bfloat16 model's too):
    a graph built once per input shape instead of eager calls. A named function, not a lambda: AutoGraph cannot
    parse a lambda's source when a formatter splits it, and warns at every model load."""
    import tensorflow as tf

    def infer(x):
        return tf.cast(model(x, training=False), tf.float32)

    return tf.function(infer, input_signature=input_signature)


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
    import keras

    return keras.models.load_model(model_dir / MODEL_FILE, compile=False), config
