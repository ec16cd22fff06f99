"""One training loop for every model and every distribution strategy.

A stage describes its training as a :class:`Task` (model builder, per-example loss, dataset, validation);
:func:`fit` runs it: a custom ``strategy.run`` step with ``tf.nn.compute_average_loss``, a checkpoint
every epoch (model, optimizer, epoch) with ``resume``, ``history.csv``, TensorBoard scalars, the best
weights by a monitored validation metric, a training-curve PNG, and ``metrics.json``.

Reproducibility: the seed fixes weight initialisation and dropout (``keras.utils.set_random_seed``) and
each epoch's data stream is seeded by ``(seed, epoch)`` (or made for the epoch by ``Task.epoch_dataset``), so a
resumed run sees the same batches as an uninterrupted one.

Speed: each epoch's row records ``s_per_step`` (median seconds inside one training step: the first step's tracing
left out) and ``data_wait_s``
(seconds the loop waited for batches: the data stream is the bottleneck when it is large), plus what
``Task.data_stats`` reports (e.g. the on-the-fly generator's ``gen_patches_per_s``).
"""

from __future__ import annotations

import csv
import importlib.util
import io
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import keras
import numpy as np
import tensorflow as tf

from lungcad.errors import ConfigError
from lungcad.fileio import write_json_atomic, write_text_atomic
from lungcad.progress import progress

log = logging.getLogger(__name__)


#: History columns about speed, not quality: left out of the training curve's validation panel.
SPEED_KEYS = (
    "seconds",
    "s_per_step",
    "data_wait_s",
    "gen_patches_per_s",
    "gen_phantoms_per_s",
    "gen_patches",
    "gen_phantoms",
    "gen_workers",
    "gen_positive_fraction",
)


@dataclass(frozen=True)
class LoopConfig:
    """Training-loop settings (``train:`` section of each model's YAML).

    Attributes:
        epochs, steps_per_epoch: length of training.
        batch_size: per replica; the global batch is ``batch_size * replicas``.
        learning_rate: for one replica; scaled by ``lr_scaling`` ("linear": x replicas, or "none").
        weight_decay: AdamW decoupled weight decay.
        clip_norm: global gradient-norm clip (0 = none).
        seed: weights, dropout and data order.
        monitor, monitor_mode: validation metric that picks ``best.weights.h5`` ("max"/"min"); ``epoch`` with
            ``max`` keeps the last epoch (for a short cosine schedule, where a one-view metric on a few validation
            scans moves more between epochs than the weights improve).
        keep_checkpoints: checkpoints kept on disk.
        lr_schedule: "constant", or "cosine": decays per epoch from ``learning_rate`` to ``min_lr_fraction``
            of it over ``epochs`` (a resumed run with more ``--epochs`` stretches the curve).
        min_lr_fraction: the cosine schedule's floor, as a fraction of ``learning_rate``.
    """

    epochs: int
    steps_per_epoch: int
    batch_size: int
    learning_rate: float
    lr_scaling: Literal["linear", "none"]
    weight_decay: float
    clip_norm: float
    seed: int
    monitor: str
    monitor_mode: Literal["max", "min"]
    keep_checkpoints: int
    lr_schedule: Literal["constant", "cosine"] = "constant"
    min_lr_fraction: float = 0.0


@dataclass
class Task:
    """What a stage provides to :func:`fit`.

    Attributes:
        build_model: () -> keras.Model, called inside the strategy scope.
        loss: (y_true, y_pred, weight) -> per-example loss (B,), float32.
        dataset: (global_batch_size, seed) -> finite or infinite ``tf.data.Dataset`` of (x, y, weight); None when
            ``epoch_dataset`` is given.
        validate: (model) -> {metric: value}, run on the host after each epoch (may be None).
        epoch_dataset: optional (global_batch_size, epoch) -> the ``tf.data.Dataset`` of that (1-based) epoch, used
            instead of ``dataset``: a stream that makes each epoch's data from the epoch number (the on-the-fly
            generator of :mod:`lungcad.train.synthetic`), so a resumed run continues with the next epoch's data.
        data_stats: optional () -> {name: value} about the data stream since the last call (e.g. the generator's
            throughput), added to each epoch's row after its steps.
    """

    build_model: Callable[[], keras.Model]
    loss: Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]
    dataset: Callable[[int, int], tf.data.Dataset] | None
    validate: Callable[[keras.Model], dict[str, float]] | None = None
    epoch_dataset: Callable[[int, int], tf.data.Dataset] | None = None
    data_stats: Callable[[], dict[str, float]] | None = None


@dataclass
class FitResult:
    model: keras.Model
    history: list[dict[str, float]]
    best: dict[str, float]
    out_dir: Path


def worker_dir(out: Path, strategy) -> Path:
    """Where this process writes: ``out`` for the chief (or a single process); under multi-worker training
    the other workers write their (identical) checkpoints to ``out/workers/<type>-<index>``, since every
    worker must take part in saving but only the chief's copy is the result."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return out
    task_type, index = resolver.task_type, resolver.task_id
    is_chief = task_type == "chief" or (
        task_type == "worker" and index == 0 and "chief" not in resolver.cluster_spec().as_dict()
    )
    return out if is_chief else out / "workers" / f"{task_type}-{index}"


def _learning_rate(config: LoopConfig, replicas: int) -> float:
    return config.learning_rate * (replicas if config.lr_scaling == "linear" else 1)


def epoch_learning_rate(config: LoopConfig, replicas: int, epoch: int) -> float:
    """The learning rate of ``epoch`` (1-based): constant, or the cosine curve from the base rate to
    ``min_lr_fraction`` of it, taken at the epoch's middle step. Set per epoch on the optimizer's rate
    variable, so checkpoints look the same under either schedule and a run can switch on ``--resume``."""
    base = _learning_rate(config, replicas)
    if config.lr_schedule == "constant":
        return base
    if config.lr_schedule != "cosine":
        raise ConfigError(f"unknown lr_schedule {config.lr_schedule!r}", expected="constant or cosine")
    progress = min(1.0, (epoch - 0.5) / max(1, config.epochs))
    return base * (config.min_lr_fraction + (1 - config.min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * progress)))


def _make_step(model, optimizer, loss_fn, strategy, global_batch: int, clip_norm: float):
    """One training step per replica. With a loss-scaling optimizer (float16) the gradients of the scaled loss are
    clipped at ``clip_norm`` times the scale (the unscaled gradients at ``clip_norm``); non-finite ones make the
    optimizer skip the step and lower the scale."""
    scaling = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    @tf.function
    def step_fn(batch):
        def replica_step(x, y, w):
            with tf.GradientTape() as tape:
                pred = model(x, training=True)
                loss = tf.nn.compute_average_loss(loss_fn(y, pred, w), global_batch_size=global_batch)
                if model.losses:
                    loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
                scaled = optimizer.scale_loss(loss) if scaling else loss
            grads = tape.gradient(scaled, model.trainable_variables)
            if clip_norm > 0:
                limit = clip_norm * optimizer.dynamic_scale if scaling else clip_norm
                grads, _ = tf.clip_by_global_norm(grads, limit)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        per_replica = strategy.run(replica_step, args=batch)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    return step_fn


def _write_history(path: Path, history: list[dict[str, float]]) -> None:
    keys = list(dict.fromkeys(k for row in history for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    write_text_atomic(path, buf.getvalue())


def _read_history(path: Path, upto_epoch: int) -> list[dict[str, float]]:
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        rows = [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(fh)]
    return [r for r in rows if r["epoch"] <= upto_epoch]


def plot_history(history: list[dict[str, float]], path: Path, title: str) -> None:
    """Training curve PNG: loss on the left, validation metrics on the right."""
    import matplotlib.pyplot as plt

    from lungcad.evaluate.plots import save_figure  # also selects matplotlib's Agg backend

    epochs = [r["epoch"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [r["loss"] for r in history], marker="o")
    ax1.set(xlabel="epoch", ylabel="training loss", title=title)
    for key in sorted({k for r in history for k in r} - {"epoch", "loss", "learning_rate"} - set(SPEED_KEYS)):
        ax2.plot(epochs, [r.get(key, math.nan) for r in history], marker="o", label=key)
    ax2.set(xlabel="epoch", title="validation")
    if ax2.lines:
        ax2.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def tensorboard_writer(folder: Path):
    """A TensorBoard summary writer into ``folder``, or None (with one log line) when the ``tensorboard`` package is
    not installed (``pip install 'lungcad[train]'``): training then writes history.csv and the curve only."""
    if importlib.util.find_spec("tensorboard") is None:
        log.info("tensorboard is not installed: no TensorBoard logs (pip install 'lungcad[train]')")
        return None
    return tf.summary.create_file_writer(str(folder))


def fit(task: Task, config: LoopConfig, out_dir: str | Path, *, strategy=None, resume: bool = False) -> FitResult:
    """Train ``task`` into ``out_dir`` (checkpoints/, history.csv, tensorboard/, best.weights.h5,
    last.weights.h5, training_curve.png, metrics.json)."""
    strategy = strategy or tf.distribute.get_strategy()
    out = worker_dir(Path(out_dir), strategy)
    out.mkdir(parents=True, exist_ok=True)
    replicas = strategy.num_replicas_in_sync
    global_batch = config.batch_size * replicas
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = task.build_model()
        optimizer = keras.optimizers.AdamW(_learning_rate(config, replicas), weight_decay=config.weight_decay)
        if keras.mixed_precision.global_policy().name == "mixed_float16":  # small float16 gradients underflow
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)  # must exist before the tf.function step (MirroredStrategy)
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False)
        # dropout's random state lives in Keras seed generators, which the model's checkpoint does not track
        seed_states = [v.value for v in model.non_trainable_variables if "seed_generator" in v.path]
        ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_var, seed_states=seed_states)
    manager = tf.train.CheckpointManager(ckpt, out / "checkpoints", max_to_keep=config.keep_checkpoints)
    if resume and manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        log.info("resumed from %s (epoch %d)", manager.latest_checkpoint, int(epoch_var.numpy()))
    elif resume:
        log.info("no checkpoint in %s: starting from epoch 1", out / "checkpoints")
    start = int(epoch_var.numpy())
    history = _read_history(out / "history.csv", start)
    step_fn = _make_step(model, optimizer, task.loss, strategy, global_batch, config.clip_norm)
    writer = tensorboard_writer(out / "tensorboard")
    log.info(
        "training %s: %d replica(s), global batch %d, epochs %d..%d",
        model.name,
        replicas,
        global_batch,
        start + 1,
        config.epochs,
    )
    for epoch in range(start + 1, config.epochs + 1):
        rate = epoch_learning_rate(config, replicas, epoch)
        optimizer.learning_rate.assign(rate)
        row = {**_run_epoch(task, config, strategy, step_fn, model, global_batch, epoch), "learning_rate": rate}
        history.append(row)
        epoch_var.assign(epoch)
        manager.save(checkpoint_number=epoch)
        _write_history(out / "history.csv", history)
        if writer is not None:
            with writer.as_default(step=epoch):
                for key, value in row.items():
                    tf.summary.scalar(key, value)
        if _is_best(row, history, config):
            model.save_weights(out / "best.weights.h5")
        log.info("epoch %d: %s", epoch, ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch"))
        log.info("epoch %d: %s", epoch, speed_line(row))
    model.save_weights(out / "last.weights.h5")
    best = _best_row(history, config)
    if history:
        plot_history(history, out / "training_curve.png", model.name)
    write_json_atomic(
        out / "metrics.json",
        {"best": best, "last": history[-1] if history else {}, "replicas": replicas, "global_batch": global_batch},
    )
    return FitResult(model, history, best, out)


def speed_line(row: dict[str, float]) -> str:
    """The epoch's speed in words: seconds per training step, waiting for data, the generator's throughput."""
    text = f"training {row.get('s_per_step', math.nan):.3f} s/step, waited {row.get('data_wait_s', math.nan):.1f} s"
    text += " for data"
    if "gen_patches_per_s" in row:
        text += (
            f"; generator {row['gen_patches_per_s']:.1f} patches/s, {row['gen_phantoms_per_s']:.3f} phantoms/s "
            f"({int(row['gen_patches'])} patches from {int(row['gen_phantoms'])} phantoms, "
            f"{int(row['gen_workers'])} worker(s))"
        )
    return text


def _run_epoch(task: Task, config: LoopConfig, strategy, step_fn, model, global_batch: int, epoch: int) -> dict:
    t0 = time.perf_counter()
    if task.epoch_dataset is not None:
        data = task.epoch_dataset(global_batch, epoch)
    else:
        data = task.dataset(global_batch, config.seed * 100_003 + epoch)
    data = data.take(config.steps_per_epoch)
    losses, step_s, wait_s = [], [], 0.0
    batches = iter(
        progress(
            strategy.experimental_distribute_dataset(data),
            total=config.steps_per_epoch,
            desc=f"epoch {epoch}/{config.epochs}",
            unit="step",
            leave=False,
        )
    )
    while True:
        t = time.perf_counter()
        batch = next(batches, None)
        wait_s += time.perf_counter() - t
        if batch is None:
            break
        t = time.perf_counter()
        losses.append(float(step_fn(batch)))  # float() waits for the step
        step_s.append(time.perf_counter() - t)
    row = {"epoch": float(epoch), "loss": float(np.mean(losses)) if losses else math.nan}
    row |= {"s_per_step": float(np.median(step_s)) if step_s else math.nan, "data_wait_s": wait_s}
    if task.data_stats is not None:
        row.update({k: float(v) for k, v in task.data_stats().items()})
    if task.validate is not None:
        row.update({k: float(v) for k, v in task.validate(model).items()})
    row["seconds"] = time.perf_counter() - t0
    return row


def _best_row(history: list[dict[str, float]], config: LoopConfig) -> dict[str, float]:
    scored = [r for r in history if config.monitor in r and not math.isnan(r[config.monitor])]
    if not scored:
        return history[-1] if history else {}
    sign = 1.0 if config.monitor_mode == "max" else -1.0
    # ties go to the later epoch: as good on the monitor and trained longer (a saturated recall otherwise
    # keeps the first epoch that reached it)
    return max(scored, key=lambda r: (sign * r[config.monitor], r["epoch"]))


def _is_best(row: dict[str, float], history: list[dict[str, float]], config: LoopConfig) -> bool:
    best = _best_row(history, config)
    return best.get("epoch") == row["epoch"]
