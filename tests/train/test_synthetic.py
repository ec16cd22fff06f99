"""Training data made on the fly (``lungcad train unet|fpr|classifier --synth``): no phantom set written first,
reproducible, new phantoms each epoch, resumable from the checkpoint alone, patches centred on the nodules."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import confident_unet, tiny_scorer_config, tiny_unet_config

from lungcad.cli.main import main
from lungcad.config import load_config, to_dict
from lungcad.train import loop
from lungcad.train.candidates.synthetic import UNetMaker, signature, train_unet_synth
from lungcad.train.candidates.train import UNetTrainConfig
from lungcad.train.fpr.synthetic import PatchMaker, fpr_points
from lungcad.train.fpr.train import FprTrainConfig
from lungcad.train.risk.classifiers import ClassifierTrainConfig
from lungcad.train.synthetic import EPOCH_STRIDE, ExampleStream, SynthSource, epoch_indices, phantom_tables

SOURCE = SynthSource(
    "synth", seed=3, size=96, patches_per_phantom=4, workers=0, validation_scans=2, max_slices=32, mix_phantoms=2
)


def _patch_config(cls=FprTrainConfig, name: str = "fpr"):
    cfg = load_config(cls, name)
    return dataclasses.replace(
        cfg,
        scorer=tiny_scorer_config(cfg.scorer, spacing_mm=2.0),
        train=dataclasses.replace(cfg.train, epochs=1, steps_per_epoch=2, batch_size=8),
    )


def _write(config, path):
    path.write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    return str(path)


def _synth_args(*extra: str) -> list[str]:
    return ["--synth", "synth", "--synth-seed", "3", "--synth-size", "96", "--synth-max-slices", "32",
            "--synth-patches", "4", "--synth-workers", "0", "--synth-val", "2", *extra]  # fmt: skip


def _history(path) -> list[dict]:
    with open(path / "history.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _stream(config: UNetTrainConfig, source: SynthSource = SOURCE) -> ExampleStream:
    maker = UNetMaker(source.synth_config(), source.size, config, source.patches_per_phantom, config.train.seed)
    return ExampleStream(maker, source, config.train.steps_per_epoch, config.train.seed, signature(config))


@pytest.fixture(scope="module")
def unet_dir(tmp_path_factory):
    """``lungcad train unet --synth`` into a fresh folder, no data folder anywhere."""
    tmp = tmp_path_factory.mktemp("unet")
    config = _write(tiny_unet_config(steps_per_epoch=2), tmp / "unet.yaml")
    assert main(["train", "unet", *_synth_args(), "--config", config, "-o", str(tmp / "model")]) == 0
    return tmp / "model"


@pytest.mark.slow
def test_train_unet_synth_needs_no_data_folder_and_writes_a_model(unet_dir):
    for name in ("model.keras", "detector.yaml", "run.json", "history.csv", "checkpoints"):
        assert (unet_dir / name).exists(), name
    assert not (unet_dir / "cache").exists()  # nothing preprocessed to disk
    run = json.loads((unet_dir / "run.json").read_text())
    assert run["data"] == "synth:synth" and run["synth"]["seed"] == 3 and run["synth"]["size"] == 96
    assert {"s_per_step", "gen_patches_per_s", "gen_phantoms_per_s"} <= set(run["speed"])
    rows = _history(unet_dir)
    assert [float(r["epoch"]) for r in rows] == [1.0, 2.0]
    for row in rows:  # throughput beside the training step's time, every epoch
        assert float(row["gen_patches_per_s"]) > 0 and float(row["s_per_step"]) > 0
        assert float(row["gen_patches"]) == 2 * 4 and float(row["gen_phantoms"]) == 2  # 2 steps of 4, 4 a phantom


def test_same_seeds_give_the_same_batches_and_each_epoch_new_phantoms():
    config = tiny_unet_config(steps_per_epoch=2)
    first = list(_stream(config).epoch_examples(8, epoch=1))
    again = list(_stream(config).epoch_examples(8, epoch=1))
    for a, b in zip(first, again, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
    second = list(_stream(config).epoch_examples(8, epoch=2))
    assert not np.array_equal(np.stack([e[0] for e in first]), np.stack([e[0] for e in second]))
    assert set(epoch_indices(1, 2)) == {EPOCH_STRIDE, EPOCH_STRIDE + 1}
    assert not set(epoch_indices(1, 50)) & set(epoch_indices(2, 50))  # no phantom seen twice
    assert min(epoch_indices(1, 50)) >= SOURCE.validation_scans  # nor a validation phantom
    other = list(_stream(config, dataclasses.replace(SOURCE, seed=4)).epoch_examples(8, epoch=1))
    assert not np.array_equal(np.stack([e[0] for e in first]), np.stack([e[0] for e in other]))
    worker = _stream(config, dataclasses.replace(SOURCE, workers=1))  # spawned; the next epoch started early
    try:
        for epoch, want in ((1, first), (2, second)):
            got = list(worker.epoch_examples(8, epoch=epoch))
            np.testing.assert_array_equal(np.stack([e[0] for e in got]), np.stack([e[0] for e in want]))
        assert [key for key, _ in worker._pending] == [(epoch_indices(3, 1)[0], False)]  # 2 in flight, 1 taken
    finally:
        worker.close()


@pytest.mark.slow
def test_resume_from_the_checkpoint_alone_continues_with_the_next_epochs_data(tmp_path, monkeypatch):
    """A run cut off in epoch 2 (its generator in a worker process) and continued elsewhere from its checkpoints
    alone ends with the weights of the uninterrupted run."""
    full = train_unet_synth(SOURCE, tmp_path / "full", tiny_unet_config(steps_per_epoch=2))
    run_epoch = loop._run_epoch

    def cut_off(*args):
        if args[-1] == 2:
            raise KeyboardInterrupt
        return run_epoch(*args)

    monkeypatch.setattr(loop, "_run_epoch", cut_off)
    with pytest.raises(KeyboardInterrupt):
        train_unet_synth(dataclasses.replace(SOURCE, workers=1), tmp_path / "cut", tiny_unet_config(steps_per_epoch=2))
    monkeypatch.undo()
    shutil.copytree(tmp_path / "cut" / "checkpoints", tmp_path / "moved" / "checkpoints")
    size = sum(f.stat().st_size for f in (tmp_path / "moved" / "checkpoints").rglob("*") if f.is_file())
    assert size < 5e6
    resumed = train_unet_synth(SOURCE, tmp_path / "moved", tiny_unet_config(steps_per_epoch=2), resume=True)
    assert [r["epoch"] for r in resumed.history] == [2.0]
    assert resumed.history[-1]["loss"] == pytest.approx(full.history[-1]["loss"], abs=1e-5)
    for a, b in zip(full.model.get_weights(), resumed.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_unet_patches_hold_the_nodule_targets():
    config = tiny_unet_config(steps_per_epoch=2)
    maker = UNetMaker(SOURCE.synth_config(), 128, config, 16, 1)
    x, y, w = maker(3, 5).arrays  # phantom (3, 5) has nodules
    assert x.shape == (16, 32, 32, 5) and y.shape == w.shape == (16, 32, 32, 1)
    positives = y.reshape(16, -1).max(axis=1) > 0
    assert positives.any()
    centre = x[..., 2:3]  # the patch's own slice
    assert centre[y > 0].mean() > centre[(y == 0) & (x[..., 2:3] < 0.3)].mean() + 0.1  # nodule brighter than lung


def test_fpr_patches_are_centred_on_the_nodules():
    config = _patch_config()
    config = dataclasses.replace(config, sampling=dataclasses.replace(config.sampling, augment_margin=0))
    synth = SOURCE.synth_config()
    maker = PatchMaker(synth, 128, config, 64, 2, fpr_points)
    examples = maker(3, 5)
    x, y, _ = examples.arrays
    assert x.shape == (64, 16, 16, 3) and examples.positives == int(y.sum()) > 10
    centre = x[:, 7:9, 7:9, 0].mean(axis=(1, 2))  # the axial plane's 2x2 centre, [0, 1] over -1200..600 HU
    lung = (-750 + 1200) / 1800
    assert np.median(centre[y[:, 0] == 1]) > lung  # a nodule at the centre
    assert np.median(centre[y[:, 0] == 0]) < np.median(centre[y[:, 0] == 1])


def test_fpr_points_label_the_unets_candidates_by_the_phantoms_truth():
    from lungcad.synth import make_phantom

    config = _patch_config()
    phantom = make_phantom(3, 5, size=96, config=SOURCE.synth_config())
    nodules, _ = phantom_tables(phantom)
    assert len(nodules)
    at = nodules.iloc[0][["coordX", "coordY", "coordZ"]].to_numpy(float)
    unet = nodules.iloc[:1][["seriesuid", "coordX", "coordY", "coordZ"]].assign(source="unet")
    far = unet.assign(coordX=at[0] + 500.0)
    table = fpr_points(config, phantom, __import__("pandas").concat([unet, far]), 0)
    mine = table[table.source == "unet"]
    assert sorted(mine.label) == [0, 1]
    assert len(table[table.source == "synth"]) > 100


@pytest.mark.slow
@pytest.mark.parametrize("with_unet", [False, True])
def test_train_fpr_synth_runs(tmp_path, with_unet):
    out = tmp_path / "fpr"
    args = ["train", "fpr", *_synth_args(), "--config", _write(_patch_config(), tmp_path / "fpr.yaml"), "-o", str(out)]
    if with_unet:
        confident_unet(tmp_path / "unet", merge=load_config(UNetTrainConfig, "unet").detector.merge)
        args += ["--unet", str(tmp_path / "unet")]
    assert main(args) == 0
    assert (out / "model.keras").exists() and (out / "fpr.yaml").exists()
    row = _history(out)[-1]
    assert "val_auc" in row and float(row["gen_patches_per_s"]) > 0
    assert ("val_cpm" in row) == with_unet
    run = json.loads((out / "run.json").read_text())
    assert run["unet"] == (str(tmp_path / "unet") if with_unet else None)


@pytest.mark.slow
def test_train_classifier_synth_runs(tmp_path):
    out = tmp_path / "clf"
    config = _write(_patch_config(ClassifierTrainConfig, "malignancy"), tmp_path / "clf.yaml")
    assert main(["train", "classifier", *_synth_args(), "--config", config, "-o", str(out)]) == 0
    assert (out / "model.keras").exists()
    assert json.loads((out / "run.json").read_text())["target"] == "malignant"


def test_data_folder_options_are_refused_with_synth(tmp_path):
    assert main(["train", "fpr", *_synth_args("--candidates", "x.csv"), "-o", str(tmp_path / "m")]) == 2
    assert main(["train", "classifier", *_synth_args("--nodules", "n.csv"), "-o", str(tmp_path / "m")]) == 2
    assert main(["train", "fpr", "--data", str(tmp_path), "--unet", "u", "-o", str(tmp_path / "m")]) == 2


def test_phantom_tables_stay_numeric_for_a_phantom_without_nodules():
    """A training-world phantom may have no nodule to find (all LIDC readings excluded): its empty tables keep float
    columns, so validation phantoms' tables concatenate into numbers and the FROC matching (np.sqrt of the radii)
    works; this crashed the first epoch of an on-the-fly U-Net training on world_train."""
    from types import SimpleNamespace

    from lungcad.evaluate.matching import match
    from lungcad.train.synthetic import phantom_tables

    empty = SimpleNamespace(scan=SimpleNamespace(id="a"), nodules=[])
    one = SimpleNamespace(
        scan=SimpleNamespace(id="b"),
        nodules=[SimpleNamespace(world_xyz=(1.0, 2.0, 3.0), diameter_mm=6.0, excluded=False)],
    )
    annotations = pd.concat([phantom_tables(empty)[0], phantom_tables(one)[0]], ignore_index=True)
    assert annotations["diameter_mm"].dtype == float and annotations["coordX"].dtype == float
    marks = pd.DataFrame({"seriesuid": ["b"], "coordX": [1.0], "coordY": [2.0], "coordZ": [3.0], "probability": [0.9]})
    result = match(annotations, marks, ["a", "b"], excluded=annotations.iloc[:0])
    assert result.nodules["detected"].tolist() == [1]
