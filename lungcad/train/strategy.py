"""Distribution strategies for every ``lungcad train`` command.

``default`` (one device), ``mirrored`` (all visible GPUs, ``gpus`` of them, or ``cpu_replicas`` logical
CPU devices so mirrored training runs and is tested without a GPU) and ``multiworker`` (configured from
``TF_CONFIG``). The same custom training step runs under each (Keras 3 ``model.fit`` fails under
MultiWorkerMirroredStrategy, keras-team/keras #20585, and sometimes under MirroredStrategy, #21069).
"""

from __future__ import annotations

import logging
from typing import Literal

import tensorflow as tf

log = logging.getLogger(__name__)

StrategyKind = Literal["default", "mirrored", "multiworker"]


def split_cpu(replicas: int) -> None:
    """Split the CPU into ``replicas`` logical devices; only possible before TF initialises its runtime."""
    cpus = tf.config.list_physical_devices("CPU")
    current = tf.config.get_logical_device_configuration(cpus[0])
    if current and len(current) == replicas:
        return
    try:
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * replicas)
    except RuntimeError as exc:
        raise RuntimeError(
            f"cannot split the CPU into {replicas} devices after TensorFlow has started; "
            "call make_strategy first thing in the process"
        ) from exc


def make_strategy(kind: StrategyKind = "default", *, gpus: int | None = None, cpu_replicas: int | None = None):
    """A ``tf.distribute.Strategy`` of the given kind; logs the number of replicas in sync."""
    if kind == "default":
        strategy = tf.distribute.get_strategy()
    elif kind == "mirrored":
        if cpu_replicas:
            split_cpu(cpu_replicas)
            devices = [f"/cpu:{i}" for i in range(cpu_replicas)]
        else:
            physical = tf.config.list_physical_devices("GPU")
            devices = [f"/gpu:{i}" for i in range(len(physical) if gpus is None else min(gpus, len(physical)))]
            devices = devices or ["/cpu:0"]
        strategy = tf.distribute.MirroredStrategy(devices)
    elif kind == "multiworker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        raise ValueError(f"strategy must be default, mirrored or multiworker, got {kind!r}")
    log.info("strategy %s: %d replica(s) in sync", kind, strategy.num_replicas_in_sync)
    return strategy
