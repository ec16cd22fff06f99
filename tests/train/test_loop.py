"""The shared training loop: learns, checkpoints, resumes exactly where it stopped, reproducible."""

from __future__ import annotations

import csv
import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import read_strict_json

from lungcad.train.loop import LoopConfig, Task, fit

CONFIG = LoopConfig(
    epochs=4,
    steps_per_epoch=8,
    batch_size=16,
    learning_rate=0.05,
    lr_scaling="linear",
    weight_decay=0.0,
    clip_norm=5.0,
    seed=3,
    monitor="val_accuracy",
    monitor_mode="max",
    keep_checkpoints=2,
)
RNG = np.random.default_rng(0)
X_VAL = RNG.normal(size=(200, 2)).astype(np.float32)
Y_VAL = (X_VAL[:, 0] + X_VAL[:, 1] > 0).astype(np.float32)


def _task() -> Task:
    def build():
        inputs = keras.Input((2,))
        hidden = keras.layers.Dense(8, activation="relu")(inputs)
        hidden = keras.layers.Dropout(0.1)(hidden)
        # float32 outputs, as lungcad's models have: the loss stays float32 under a mixed precision policy
        return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", dtype="float32")(hidden))

    def loss(y, pred, w):
        return keras.losses.binary_crossentropy(y, pred) * w

    def dataset(global_batch, seed):
        x = np.random.default_rng(seed).normal(size=(1024, 2)).astype(np.float32)
        y = (x[:, :1] + x[:, 1:] > 0).astype(np.float32)
        return tf.data.Dataset.from_tensor_slices((x, y, np.ones(1024, np.float32))).batch(global_batch)

    def validate(model):
        pred = np.asarray(model(X_VAL, training=False))[:, 0]
        return {"val_accuracy": float(np.mean((pred > 0.5) == Y_VAL))}

    return Task(build, loss, dataset, validate)


def test_fit_learns_and_writes_outputs(tmp_path):
    result = fit(_task(), CONFIG, tmp_path / "run")
    assert result.best["val_accuracy"] >= 0.9
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    for name in ("history.csv", "best.weights.h5", "last.weights.h5", "training_curve.png", "metrics.json"):
        assert (tmp_path / "run" / name).exists(), name
    assert (tmp_path / "run" / "tensorboard").is_dir()
    metrics = read_strict_json(tmp_path / "run" / "metrics.json")
    assert metrics["best"]["val_accuracy"] == result.best["val_accuracy"] and metrics["last"]["epoch"] == 4
    rows = list(csv.DictReader((tmp_path / "run" / "history.csv").read_text().splitlines()))
    assert [int(float(r["epoch"])) for r in rows] == [1, 2, 3, 4]


def test_resume_continues_from_saved_epoch_and_matches_uninterrupted_run(tmp_path):
    full = fit(_task(), CONFIG, tmp_path / "full")
    fit(_task(), dataclasses.replace(CONFIG, epochs=2), tmp_path / "split")
    resumed = fit(_task(), CONFIG, tmp_path / "split", resume=True)
    assert [r["epoch"] for r in resumed.history] == [1.0, 2.0, 3.0, 4.0]
    for a, b in zip(full.model.get_weights(), resumed.model.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert abs(resumed.history[-1]["loss"] - full.history[-1]["loss"]) < 1e-5


def test_same_seed_same_metrics(tmp_path):
    short = dataclasses.replace(CONFIG, epochs=1)
    a = fit(_task(), short, tmp_path / "a")
    b = fit(_task(), short, tmp_path / "b")
    assert a.history[0]["loss"] == b.history[0]["loss"]


def test_best_epoch_ties_go_to_the_later_epoch():
    import dataclasses

    from lungcad.train.loop import _best_row

    history = [
        {"epoch": 1.0, "val_recall": 0.5},
        {"epoch": 2.0, "val_recall": 0.9},
        {"epoch": 3.0, "val_recall": 0.9},
        {"epoch": 4.0, "val_recall": 0.8},
    ]
    assert _best_row(history, dataclasses.replace(CONFIG, monitor="val_recall"))["epoch"] == 3.0
    lowest = dataclasses.replace(CONFIG, monitor="val_recall", monitor_mode="min")
    assert _best_row(history, lowest)["epoch"] == 1.0
    assert _best_row(history + [{"epoch": 5.0, "val_recall": 0.5}], lowest)["epoch"] == 5.0
    # monitor "epoch" (max) keeps the last epoch's weights, whatever a noisy validation metric says
    assert _best_row(history, dataclasses.replace(CONFIG, monitor="epoch"))["epoch"] == 4.0


def test_cosine_schedule_decays_to_its_floor_and_resumes_from_a_constant_rate_checkpoint(tmp_path):
    from lungcad.train.loop import epoch_learning_rate

    cosine = dataclasses.replace(CONFIG, lr_schedule="cosine", min_lr_fraction=0.1)
    rates = [epoch_learning_rate(cosine, 1, e) for e in (1, 2, 3, 4)]
    assert rates == sorted(rates, reverse=True) and 0.1 * 0.05 < rates[-1] < 0.15 * 0.05 < 0.9 * 0.05 < rates[0]
    assert epoch_learning_rate(cosine, 2, 1) == pytest.approx(2 * rates[0])  # linear scaling with replicas
    run = fit(_task(), cosine, tmp_path / "cos")
    assert [r["learning_rate"] for r in run.history] == pytest.approx(rates)
    # a run trained at a constant rate continues on the cosine curve (same checkpoint layout)
    fit(_task(), dataclasses.replace(CONFIG, epochs=2), tmp_path / "switch")
    resumed = fit(_task(), cosine, tmp_path / "switch", resume=True)
    assert [r["learning_rate"] for r in resumed.history] == pytest.approx([0.05, 0.05, *rates[2:]])


def test_unknown_schedule_is_a_config_error(tmp_path):
    from lungcad.errors import ConfigError

    with pytest.raises(ConfigError, match="lr_schedule"):
        fit(_task(), dataclasses.replace(CONFIG, lr_schedule="step"), tmp_path / "bad")


def test_mixed_precision_option_picks_the_compute_dtype_and_bfloat16_still_learns(tmp_path):
    from lungcad.cli.main import build_parser
    from lungcad.cli.train import _strategy

    parse = build_parser().parse_args
    base = ["train", "unet", "--data", "d", "-o", "m"]
    assert parse(base).mixed_precision is None
    assert parse([*base, "--mixed-precision"]).mixed_precision == "float16"  # given alone: the GPU default
    args = parse([*base, "--mixed-precision", "bfloat16"])
    try:
        _strategy(args)
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
        result = fit(_task(), CONFIG, tmp_path / "run")
        assert result.model.layers[1].compute_dtype == "bfloat16" and result.model.layers[1].dtype == "float32"
        assert result.best["val_accuracy"] >= 0.9
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_float16_training_scales_the_loss_and_still_learns(tmp_path):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        result = fit(_task(), CONFIG, tmp_path / "run")
        assert result.model.layers[1].compute_dtype == "float16" and result.model.layers[1].dtype == "float32"
        assert result.best["val_accuracy"] >= 0.9
        saved = dict(tf.train.list_variables(tf.train.latest_checkpoint(tmp_path / "run" / "checkpoints")))
        assert "optimizer/dynamic_scale/.ATTRIBUTES/VARIABLE_VALUE" in saved  # a loss-scaling optimizer, checkpointed
        again = fit(_task(), dataclasses.replace(CONFIG, epochs=5), tmp_path / "run", resume=True)  # scale restored
        assert [r["epoch"] for r in again.history] == [1, 2, 3, 4, 5]
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_training_without_tensorboard_skips_only_its_logs(tmp_path, monkeypatch):
    """``tensorboard`` is the ``lungcad[train]`` extra: without it training runs and writes everything else."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    result = fit(_task(), dataclasses.replace(CONFIG, epochs=1), tmp_path / "run")
    assert not (tmp_path / "run" / "tensorboard").exists()
    assert (tmp_path / "run" / "history.csv").is_file() and result.history
