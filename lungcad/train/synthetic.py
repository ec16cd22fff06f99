"""Training data made on the fly: examples cut from phantoms generated as training asks for them.

No phantom set is written first. A *maker* (a picklable callable, one per model: the U-Net's in
:mod:`lungcad.train.candidates.synthetic`, the FPR's and the classifiers' in :mod:`lungcad.train.fpr.synthetic`) turns
phantom ``(synth_seed, index)`` into ``patches_per_phantom`` training examples: it generates the phantom
(:func:`lungcad.synth.make_phantom`), runs the preprocessing inference runs, and cuts augmented patches with their
targets. :class:`ExampleStream` runs the maker in ``workers`` spawned processes (``workers`` 0: in this process),
keeps at most ``2 * workers`` phantoms in flight (a bounded queue), takes their results in job order and mixes the
patches of ``mix_phantoms`` phantoms at a time into a ``tf.data.Dataset``, so the generator runs while the model
trains.

Which phantoms: validation uses indices ``0 .. validation_scans - 1`` (generated once at the start, kept in memory),
epoch ``e`` uses ``e * EPOCH_STRIDE + 0, 1, ...``: every epoch new nodules in new surroundings, a pure function of
``(synth seed, epoch)``; the patch draws are seeded by ``(training seed, synth seed, index)`` and the mixing by
``(training seed, synth seed, epoch)``. So the same seeds give the same batches, and a run resumed from its last
checkpoint (a few MB in ``MODEL_DIR/checkpoints``; nothing else is needed) continues with exactly the data an
uninterrupted run sees.

Phantoms can be made at a reduced matrix (``size``, e.g. 256 instead of 512): the patient is the same, its pixels
coarser (about 1.3 instead of 0.65 mm in-plane), and the preprocessing resamples them to the model's grid: faster,
with small nodules and vessel edges blurrier than on real-resolution scans.

Speed (2 shared cores, load average ~4.5 from other jobs, default configs, 2 workers; epoch 2 of short runs): the
U-Net trains at 0.25 s per step of 16 patches (64 patches/s wanted) while its generator makes 13 patches/s at
``size`` 512 (0.10 phantoms/s, 128 patches each) and 22 patches/s at 256 (0.17 phantoms/s): a phantom and its
preprocessing take 6-15 s, so training waits for data unless ``patches_per_phantom`` is raised (about 384 at 256
keeps up). The FPR trains at 0.78 s per step of 32 patches (41 patches/s wanted); its generator makes 13 patches/s at
512 (0.21 phantoms/s, 64 each) and 35 patches/s at 256 (0.55 phantoms/s); running the bundled U-Net on every phantom
(``--unet``) makes a phantom about 10 times as dear (0.04-0.06 phantoms/s at 256: 3.5 patches/s with 64 each, 10-15
with 256 each). Each epoch's ``history.csv`` row has these numbers (``s_per_step``, ``data_wait_s``,
``gen_patches_per_s``, ``gen_phantoms_per_s``).
"""

from __future__ import annotations

import math
import multiprocessing
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from lungcad.errors import ConfigError
from lungcad.schema import XYZ

#: Phantom indices of epoch ``e`` start at ``e * EPOCH_STRIDE`` (validation: below it).
EPOCH_STRIDE = 1_000_000


@dataclass(frozen=True)
class SynthSource:
    """Where on-the-fly training data comes from (``lungcad train ... --synth CONFIG``).

    Attributes:
        config: synth config name (``configs/<name>.yaml``) or path.
        seed: the synthetic dataset's seed (phantom ``(seed, index)``).
        size: in-plane matrix of the phantoms (512: full resolution; 256: about 2 times faster, coarser pixels).
        patches_per_phantom: training examples cut from each phantom (more: faster, less varied).
        workers: generator processes (0: generate in the training process, between steps).
        validation_scans: phantoms of the fixed validation set (indices 0 .. n-1).
        max_slices: cap on slices per phantom (None: the config's); for tests and quick runs.
        mix_phantoms: the examples of this many phantoms are shuffled together into batches.
    """

    config: str = "synth"
    seed: int = 0
    size: int = 512
    patches_per_phantom: int = 128
    workers: int = 2
    validation_scans: int = 4
    max_slices: int | None = None
    mix_phantoms: int = 2

    def __post_init__(self) -> None:
        for name, low in (("seed", 0), ("size", 32), ("patches_per_phantom", 1), ("workers", 0), ("mix_phantoms", 1)):
            if getattr(self, name) < low:
                raise ConfigError(f"synthetic data: {name} must be >= {low}, got {getattr(self, name)}")
        if self.validation_scans < 1:
            raise ConfigError(f"synthetic data: validation_scans must be >= 1, got {self.validation_scans}")

    def synth_config(self):
        """The :class:`lungcad.synth.SynthConfig` the phantoms are drawn from; a :class:`ConfigError` for a config
        that draws LIDC-IDRI test patients' nodules (0801-1012 never reach training)."""
        from lungcad.synth import load_synth_config
        from lungcad.synth.config import check_training_world

        return check_training_world(load_synth_config(self.config, max_slices=self.max_slices))

    def info(self) -> dict[str, Any]:
        """What ``run.json`` records about the data (``synth``)."""
        from lungcad.synth import PHANTOM_VERSION

        return {**asdict(self), "phantom_version": PHANTOM_VERSION, "epoch_stride": EPOCH_STRIDE}


@dataclass
class Examples:
    """The training examples of one phantom: ``arrays`` (x, y, w), each (K, ...) float32; ``seconds`` the maker
    took; ``positives`` how many of the K are positives (nodule patches)."""

    arrays: tuple[np.ndarray, ...]
    seconds: float
    positives: int


def epoch_indices(epoch: int, count: int) -> list[int]:
    """Phantom indices of (1-based) ``epoch``: ``count`` of them from ``epoch * EPOCH_STRIDE``."""
    if epoch < 1 or count >= EPOCH_STRIDE:
        raise ValueError(f"epoch {epoch} (>= 1) with {count} phantoms (< {EPOCH_STRIDE})")
    return [epoch * EPOCH_STRIDE + i for i in range(count)]


def phantom_tables(phantom) -> tuple[pd.DataFrame, pd.DataFrame]:
    """LUNA16-style (annotations, excluded) tables (seriesuid, coordX..Z world mm, diameter_mm) of a phantom's
    nodules: those >= 3 mm to find, and the tiny excluded findings."""
    rows = [
        {"seriesuid": phantom.scan.id, **dict(zip(XYZ, n.world_xyz)), "diameter_mm": n.diameter_mm, "ex": n.excluded}
        for n in phantom.nodules
    ]
    table = pd.DataFrame(rows, columns=["seriesuid", *XYZ, "diameter_mm", "ex"])
    table = table.astype({**dict.fromkeys([*XYZ, "diameter_mm"], float), "ex": bool})  # numeric also when empty
    return (table[~table.ex.astype(bool)].drop(columns="ex"), table[table.ex.astype(bool)].drop(columns="ex"))


def phantom_nodules(phantom) -> pd.DataFrame:
    """A phantom's nodules as the rows ``lungcad synth`` writes to ``nodules.csv`` (id = seriesuid)."""
    return pd.DataFrame(
        [
            {
                "id": phantom.scan.id,
                **dict(zip(XYZ, n.world_xyz)),
                "diameter_mm": n.diameter_mm,
                "type": n.type,
                "shape": n.shape,
                "location": n.location,
                "malignant": int(n.malignant),
                "excluded": int(n.excluded),
            }
            for n in phantom.nodules
        ],
        columns=["id", *XYZ, "diameter_mm", "type", "shape", "location", "malignant", "excluded"],
    )


def phantom_candidates(phantom) -> pd.DataFrame:
    """A phantom's candidate points as ``candidates.csv`` rows (seriesuid, coordX..Z, class), ``source`` synth."""
    table = pd.DataFrame(np.asarray(phantom.candidates, float).reshape(-1, 3), columns=XYZ)
    return table.assign(
        seriesuid=phantom.scan.id, **{"class": np.asarray(phantom.candidate_classes, int)}, source="synth"
    )[["seriesuid", *XYZ, "class", "source"]]


def _call(maker: Callable, synth_seed: int, index: int, validation: bool):
    """Worker entry: ``maker(synth_seed, index, validation)`` (module level, so ``spawn`` can pickle it)."""
    return maker(synth_seed, index, validation)


def _pop_random(buffer: list, rng: np.random.Generator):
    """Remove and return a random element of ``buffer`` (swap with the last: O(1))."""
    i = int(rng.integers(len(buffer)))
    buffer[i], buffer[-1] = buffer[-1], buffer[i]
    return buffer.pop()


class ExampleStream:
    """Each epoch's examples, generated by ``maker`` in worker processes (see the module docstring).

    Args:
        maker: picklable ``(synth_seed, index, validation) -> Examples`` (training) or anything (validation).
        source: the :class:`SynthSource`.
        steps_per_epoch: training steps per epoch (each epoch makes exactly ``steps * global_batch`` examples).
        seed: the training seed (mixes the examples).
        signature: the ``tf.TensorSpec`` of one example's (x, y, w).
    """

    def __init__(self, maker: Callable, source: SynthSource, steps_per_epoch: int, seed: int, signature) -> None:
        self.maker = maker
        self.source = source
        self.steps = steps_per_epoch
        self.seed = seed
        self.signature = signature
        self._pool = None
        self._pending: deque = deque()  # ((index, validation), AsyncResult) started, in job order
        self._reset()

    def _reset(self) -> None:
        self._patches = self._phantoms = self._positives = 0
        self._busy = 0.0

    def pool(self):
        """The worker processes (``spawn``: safe beside TensorFlow's threads), started on first use."""
        if self._pool is None and self.source.workers > 0:
            self._pool = multiprocessing.get_context("spawn").Pool(self.source.workers)
        return self._pool

    def close(self) -> None:
        """Stop the worker processes."""
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None
            self._pending = deque()

    def results(self, indices: list[int], validation: bool = False, then: list[int] = ()) -> Iterator[Any]:
        """``maker``'s results for phantoms ``indices``, in that order; at most ``2 * workers`` in flight. Phantoms
        ``then`` (the next epoch's) are started as soon as there is room, so the workers go on while the epoch's
        last steps, its validation and its checkpoint run; a later call picks them up (or drops them unused)."""
        pool = self.pool()
        if pool is None:
            yield from (_call(self.maker, self.source.seed, int(i), validation) for i in indices)
            return
        wanted = [(int(i), validation) for i in indices]
        queue = wanted + [(int(i), False) for i in then]
        kept: deque = deque()
        for key, job in self._pending:  # started earlier: kept when they are the first ones wanted now
            if len(kept) < len(wanted) and wanted[len(kept)] == key:
                kept.append((key, job))
            else:
                break
        self._pending = kept
        ahead, started = 2 * self.source.workers, len(kept)
        for _ in wanted:
            while started < len(queue) and len(self._pending) < ahead:
                index, val = queue[started]
                job = pool.apply_async(_call, (self.maker, self.source.seed, index, val))
                self._pending.append((queue[started], job))
                started += 1
            yield self._pending.popleft()[1].get()

    def validation(self) -> list[Any]:
        """``maker``'s validation results for phantoms ``0 .. validation_scans - 1`` (generated in parallel)."""
        return list(self.results(list(range(self.source.validation_scans)), validation=True))

    def epoch_examples(self, count: int, epoch: int) -> Iterator[tuple[np.ndarray, ...]]:
        """Exactly ``count`` examples (x, y, w) of ``epoch``: its phantoms' patches, those of ``mix_phantoms``
        phantoms at a time shuffled together (seeded by the training seed, the synth seed and the epoch)."""
        per = self.source.patches_per_phantom
        indices = epoch_indices(epoch, math.ceil(count / per))
        following = epoch_indices(epoch + 1, len(indices))
        rng = np.random.default_rng([self.seed, self.source.seed, epoch])
        window = min(self.source.mix_phantoms * per, count)
        buffer: list = []
        given = 0
        for examples in self.results(indices, then=following):
            self._phantoms += 1
            self._busy += examples.seconds
            self._positives += examples.positives
            buffer.extend(zip(*examples.arrays))
            while len(buffer) >= window and given < count:
                given += 1
                yield _pop_random(buffer, rng)
        while buffer and given < count:
            given += 1
            yield _pop_random(buffer, rng)

    def _counted(self, count: int, epoch: int) -> Iterator[tuple[np.ndarray, ...]]:
        for example in self.epoch_examples(count, epoch):
            self._patches += 1
            yield example

    def epoch_dataset(self, global_batch: int, epoch: int):
        """The ``tf.data.Dataset`` of ``epoch``: ``steps_per_epoch`` batches of ``global_batch`` examples
        (:attr:`lungcad.train.loop.Task.epoch_dataset`)."""
        import tensorflow as tf

        count = self.steps * global_batch
        ds = tf.data.Dataset.from_generator(lambda: self._counted(count, epoch), output_signature=self.signature)
        return ds.batch(global_batch, drop_remainder=True).prefetch(2)

    def stats(self) -> dict[str, float]:
        """The generator's throughput since the last call (:attr:`lungcad.train.loop.Task.data_stats`):
        patches and phantoms per second of generation (per worker busy time; with several workers, their sum),
        how many, and the positives' share of the patches made."""
        workers = max(self.source.workers, 1)
        busy = self._busy / workers  # wall seconds the workers needed, were they busy side by side
        made = self._phantoms * self.source.patches_per_phantom
        out = {
            "gen_patches_per_s": made / busy if busy > 0 else math.nan,
            "gen_phantoms_per_s": self._phantoms / busy if busy > 0 else math.nan,
            "gen_patches": float(self._patches),
            "gen_phantoms": float(self._phantoms),
            "gen_workers": float(self.source.workers),
            "gen_positive_fraction": self._positives / made if made else math.nan,
        }
        self._reset()
        return out


def speed_summary(history: list[dict[str, float]]) -> dict[str, float]:
    """Mean over a run's epochs of its speed columns (``run.json``'s ``speed``): seconds per training step, seconds
    waited for data per epoch, the generator's patches and phantoms per second."""
    keys = ("s_per_step", "data_wait_s", "gen_patches_per_s", "gen_phantoms_per_s")
    out = {}
    for key in keys:
        values = [r[key] for r in history if key in r and not math.isnan(r[key])]
        if values:
            out[key] = round(float(np.mean(values)), 4)
    return out
