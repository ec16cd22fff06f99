"""MultiWorkerMirroredStrategy: two processes on loopback (TF_CONFIG with 127.0.0.1 ports) complete a tiny
training with the shared loop; the chief writes the model directory, the other worker a sub-folder."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

WORKER = textwrap.dedent(
    """
    import json, sys, logging
    logging.basicConfig(level=logging.INFO)
    import numpy as np
    from lungcad.train.strategy import make_strategy
    strategy = make_strategy("multiworker")
    import keras, tensorflow as tf
    from lungcad.train.loop import LoopConfig, Task, fit

    def build():
        inputs = keras.Input((3,))
        return keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Dense(6, activation="tanh")(inputs)))

    def data(global_batch, seed):
        x = np.random.default_rng(7).normal(size=(64, 3)).astype(np.float32)
        y = x @ np.array([[1.0], [-2.0], [0.5]], np.float32)
        return tf.data.Dataset.from_tensor_slices((x, y, np.ones(64, np.float32))).batch(global_batch)

    cfg = LoopConfig(epochs=2, steps_per_epoch=3, batch_size=8, learning_rate=0.05, lr_scaling="none",
                     weight_decay=0.0, clip_norm=0.0, seed=0, monitor="loss", monitor_mode="min", keep_checkpoints=1)
    task = Task(build, lambda y, p, w: tf.reduce_mean((p - y) ** 2, axis=1) * w, data, None)
    result = fit(task, cfg, sys.argv[1], strategy=strategy)
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "loss": [r["loss"] for r in result.history],
                      "out": str(result.out_dir)}))
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_workers_on_loopback_train_together(tmp_path):
    cluster = {"worker": [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]}
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", WORKER, str(tmp_path / "model")],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert [r["replicas"] for r in results] == [2, 2]
    assert results[0]["loss"] == results[1]["loss"] and results[0]["loss"][1] < results[0]["loss"][0]
    assert results[0]["out"] == str(tmp_path / "model")
    assert results[1]["out"] == str(tmp_path / "model" / "workers" / "worker-1")
    assert (tmp_path / "model" / "history.csv").exists() and (tmp_path / "model" / "last.weights.h5").exists()
