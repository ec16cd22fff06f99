"""Distribution: 2 logical CPU replicas train exactly like 1 replica on the same global batch.

The CPU can only be split before TensorFlow starts, so the comparison runs in a fresh process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, sys, dataclasses, logging
    logging.basicConfig(level=logging.INFO)
    import numpy as np
    from lungcad.train.strategy import make_strategy
    mirrored = make_strategy("mirrored", cpu_replicas=2)
    import keras, tensorflow as tf
    from lungcad.train.loop import LoopConfig, Task, fit

    def task():
        def build():
            inputs = keras.Input((3,))
            return keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Dense(6, activation="tanh")(inputs)))
        def data(global_batch, seed):
            x = np.random.default_rng(7).normal(size=(64, 3)).astype(np.float32)
            y = (x @ np.array([[1.0], [-2.0], [0.5]], np.float32))
            return tf.data.Dataset.from_tensor_slices((x, y, np.ones(64, np.float32))).batch(global_batch)
        return Task(build, lambda y, p, w: tf.reduce_mean((p - y) ** 2, axis=1) * w, data, None)

    cfg = LoopConfig(epochs=1, steps_per_epoch=3, batch_size=16, learning_rate=0.05, lr_scaling="none",
                     weight_decay=0.0, clip_norm=0.0, seed=0, monitor="loss", monitor_mode="min", keep_checkpoints=1)
    one = fit(task(), cfg, sys.argv[1] + "/one", strategy=tf.distribute.get_strategy())
    two = fit(task(), dataclasses.replace(cfg, batch_size=8), sys.argv[1] + "/two", strategy=mirrored)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(one.model.get_weights(), two.model.get_weights()))
    print(json.dumps({"replicas": mirrored.num_replicas_in_sync, "loss_one": one.history[0]["loss"],
                      "loss_two": two.history[0]["loss"], "max_weight_diff": diff}))
    """
)


@pytest.mark.slow
def test_two_cpu_replicas_match_one_replica_on_the_same_global_batch(tmp_path):
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["loss_two"] == pytest.approx(result["loss_one"], rel=1e-5)
    assert result["max_weight_diff"] < 1e-5
    assert "2 replica(s) in sync" in out.stderr
