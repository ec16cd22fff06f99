"""FPR: candidate labelling rules, a tiny WideResNet separating nodule balls from vessel tubes, and an
end-to-end training run on LUNA16-layout data."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from helpers import simple_chest, tiny_scorer, tiny_scorer_config

from lungcad.config import config_path, load_config
from lungcad.errors import ConfigError
from lungcad.fpr.inference import PatchScorer
from lungcad.io import write_mhd
from lungcad.scan import CTScan
from lungcad.train.fpr.data import PatchSet, label_candidates
from lungcad.train.fpr.train import FprTrainConfig, initial_wideresnet, roc_auc, train_fpr
from lungcad.train.loop import Task, fit

SAMPLING = load_config(FprTrainConfig, "fpr").sampling


def _table(rows):
    return pd.DataFrame(rows, columns=["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"])


def test_labels_inside_nodule_far_negative_ambiguous_and_excluded_dropped():
    ann = _table([["s", 0.0, 0.0, 0.0, 10.0]])
    exc = _table([["s", 50.0, 0.0, 0.0, -1.0]])
    cand = pd.DataFrame(
        {
            "seriesuid": ["s"] * 5,
            "coordX": [2.0, 7.0, 30.0, 52.0, 0.0],
            "coordY": 0.0,
            "coordZ": [0.0, 0.0, 0.0, 0.0, 4.9],
        }
    )
    out = label_candidates(cand, ann, exc, SAMPLING)
    # inside (1); 2 mm past the radius: ambiguous (margin 5 mm); far (0); in the excluded finding: dropped
    assert out[["coordX", "coordZ", "label"]].values.tolist() == [[2.0, 0.0, 1], [30.0, 0.0, 0], [0.0, 4.9, 1]]
    luna = cand.assign(**{"class": [1, 0, 0, 0, 0]})
    assert label_candidates(luna, ann, exc, SAMPLING).label.tolist() == [1, 0, 0, 0, 0]
    # LUNA16 rows keep their class; rows without one (U-Net candidates appended) are labelled by geometry
    mixed = pd.concat([luna.iloc[:2], cand], ignore_index=True)
    assert label_candidates(mixed, ann, exc, SAMPLING).label.tolist() == [1, 0, 1, 0, 1]


def _balls_and_tubes(n: int, size: int, seed: int) -> PatchSet:
    """2.5-D patches: a ball (nodule) looks round in all three planes, a tube (vessel) elongated in one."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - size / 2 + 0.5
    patches, labels = [], []
    for i in range(n):
        radius = rng.uniform(2.5, 5.0)
        planes = []
        for c in range(3):
            if i % 2 == 0:
                img = yy**2 + xx**2 <= radius**2
            else:
                angle = rng.uniform(0, np.pi) if c == 0 else 0.0
                d = np.abs(-np.sin(angle) * xx + np.cos(angle) * yy)
                img = d <= radius * (0.8 if c == 0 else 1.0) if c != 1 else (yy**2 + xx**2 <= radius**2)
            planes.append(np.where(img, 0.65, 0.1) + rng.normal(0, 0.03, (size, size)))
        patches.append(np.stack(planes, -1))
        labels.append(1 - i % 2)
    return PatchSet(np.clip(patches, 0, 1).astype(np.float16), np.array(labels, np.int8), np.array(["x"] * n))


@pytest.mark.slow
def test_tiny_wideresnet_separates_nodules_from_vessels(tmp_path):
    from lungcad.fpr.wideresnet import build_wideresnet
    from lungcad.train.fpr.data import make_dataset

    cfg = load_config(FprTrainConfig, "fpr")
    model_cfg = dataclasses.replace(cfg.scorer.model, depth=10, widen_factor=1, patch_size=16)
    sampling = dataclasses.replace(cfg.sampling, augment_margin=2)
    train = _balls_and_tubes(200, 20, seed=0)
    val = _balls_and_tubes(100, 20, seed=1)
    val_x = val.patches[:, 2:18, 2:18].astype(np.float32)

    def validate(model):
        scores = np.asarray(model(val_x, training=False))[:, 0]
        return {"val_auc": roc_auc(val.labels, scores)}

    loop = dataclasses.replace(cfg.train, epochs=4, steps_per_epoch=15, batch_size=16, learning_rate=0.003)
    task = Task(
        lambda: build_wideresnet(model_cfg),
        lambda y, p, w: (p - y)[:, 0] ** 2 * w,
        lambda batch, seed: make_dataset(train, 16, 2, sampling, batch, seed),
        validate,
    )
    result = fit(task, loop, tmp_path)
    assert result.best["val_auc"] >= 0.9


@pytest.mark.slow
def test_train_fpr_end_to_end_and_scorer(tmp_path):
    data = tmp_path / "data"
    rows, ann = [], []
    for k in range(3):
        scan, truth, nodule = simple_chest(seed=k)
        uid = f"1.3.{k}"
        write_mhd(scan.with_array(scan.array, id=uid), data / "subset0" / f"{uid}.mhd")
        centre = scan.voxel_to_world(np.argwhere(nodule).mean(0))
        ann.append([uid, *centre, 12.0])
        rows.append([uid, *centre, 1])
        lung = np.argwhere(truth & ~nodule)
        for idx in np.random.default_rng(k).choice(len(lung), 6, replace=False):
            rows.append([uid, *scan.voxel_to_world(lung[idx]), 0])
    pd.DataFrame(rows, columns=["seriesuid", "coordX", "coordY", "coordZ", "class"]).to_csv(
        data / "candidates.csv", index=False
    )
    _table(ann).to_csv(data / "annotations.csv", index=False)
    cfg = load_config(FprTrainConfig, "fpr")
    cfg = dataclasses.replace(
        cfg,
        scorer=dataclasses.replace(  # 8 views saved for inference; validation scores single views
            tiny_scorer_config(cfg.scorer, spacing_mm=2.0), test_time_transforms=8
        ),
        validation_fraction=0.34,
        train=dataclasses.replace(cfg.train, epochs=2, steps_per_epoch=3, batch_size=8),
        unet_weights=(0.0, 0.9),
    )
    # U-Net-style candidates (no class column): the nodule centre and two lung points per scan, with a mean U-Net
    # probability that tells them apart perfectly
    positives, negatives = [r[:4] for r in rows if r[4] == 1], [r[:4] for r in rows if r[4] == 0][::3]
    unet = pd.DataFrame(positives + negatives, columns=["seriesuid", "coordX", "coordY", "coordZ"])
    unet = unet.assign(probability=0.5, mean_probability=[0.9] * len(positives) + [0.01] * len(negatives))
    unet.to_csv(tmp_path / "unet.csv", index=False)
    result = train_fpr(data, tmp_path / "model", cfg, candidates=tmp_path / "unet.csv")
    last = result.history[-1]
    assert "val_auc" in last and 0.0 <= last["val_cpm"] <= 1.0
    run = json.loads((tmp_path / "model" / "run.json").read_text())
    assert len(run["data_fingerprint"]) == 16 and run["lungcad_version"]
    scorer = PatchScorer.load(tmp_path / "model")
    assert scorer.config.test_time_transforms == 8
    # the fusion weight is chosen on the validation scan: at 0.9 the U-Net's perfect ranking wins; 0.0 keeps
    # the FPR's own CPM; the saved weight is the better of the two (0.0 on a tie)
    fusion = run["fusion"]
    assert fusion["validation_cpm"]["0.9"] == pytest.approx(1.0) and fusion["validation_scans"] == 1
    cpm = {float(w): c for w, c in fusion["validation_cpm"].items()}
    assert scorer.config.unet_weight == fusion["unet_weight"] == (0.9 if cpm[0.0] < 1.0 else 0.0)
    scan, _, nodule = simple_chest(seed=0)
    probs = scorer.score(scan, np.array([scan.voxel_to_world(np.argwhere(nodule).mean(0))]))
    assert probs.shape == (1,) and 0.0 <= probs[0] <= 1.0


def test_patch_cache_is_cut_again_for_other_candidates_and_reused_for_the_same(tmp_path):
    from lungcad.train.fpr.train import build_patch_cache

    data = tmp_path / "data"
    scan, _, nodule = simple_chest(seed=0)
    write_mhd(scan.with_array(scan.array, id="1.5.0"), data / "subset0" / "1.5.0.mhd")
    centre = scan.voxel_to_world(np.argwhere(nodule).mean(0))
    table = pd.DataFrame([["1.5.0", *centre, 1], ["1.5.0", *(centre + 20.0), 0]])
    table.columns = ["seriesuid", "coordX", "coordY", "coordZ", "label"]
    cfg = load_config(FprTrainConfig, "fpr")
    scorer = cfg.scorer
    scorer = dataclasses.replace(
        scorer,
        model=dataclasses.replace(scorer.model, patch_size=16),
        patches=dataclasses.replace(scorer.patches, size=16, spacing_mm=2.0),
    )
    cfg = dataclasses.replace(cfg, scorer=scorer)
    first = build_patch_cache(data, tmp_path / "cache", table, cfg)
    assert first.labels.tolist() == [1, 0]
    cached = tmp_path / "cache" / "1.5.0.npz"
    stamp = cached.stat().st_mtime_ns
    assert build_patch_cache(data, tmp_path / "cache", table, cfg).labels.tolist() == [1, 0]
    assert cached.stat().st_mtime_ns == stamp  # same candidates: reused
    assert first.hard.tolist() == [False, False]  # no source column: nothing is the U-Net's
    sourced = build_patch_cache(data, tmp_path / "cache", table.assign(source=["blob", "unet"]), cfg)
    assert sourced.hard.tolist() == [False, True] and cached.stat().st_mtime_ns == stamp  # same patches, reused
    other = build_patch_cache(data, tmp_path / "cache", table.iloc[[1]], cfg)
    assert other.labels.tolist() == [0] and len(other.patches) == 1  # other candidates: cut again, not the old ones


def test_init_starts_from_a_trained_models_weights_of_the_same_architecture_and_patches(tmp_path):
    source = tiny_scorer(tmp_path / "source")
    start = initial_wideresnet(source.config, tmp_path / "source")
    for a, b in zip(start.get_weights(), source.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    other_patches = dataclasses.replace(
        source.config, patches=dataclasses.replace(source.config.patches, spacing_mm=0.7)
    )
    with pytest.raises(ConfigError, match="model/patch settings"):
        initial_wideresnet(other_patches, tmp_path / "source")


def test_shipped_9view_config_fits_and_a_model_not_fitting_its_patches_is_refused(tmp_path):
    nine = load_config(FprTrainConfig, "fpr_9view")
    assert (nine.scorer.patches.mode, nine.scorer.patches.channels, nine.scorer.model.channels) == ("9view", 9, 9)
    text = config_path("fpr").read_text().replace("mode: 2.5d", "mode: 9view")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)  # 9 views into a 3-channel WideResNet
    with pytest.raises(ConfigError, match=r"bad\.yaml.*channels.*expected \(2, 32, 9\)"):
        load_config(FprTrainConfig, bad)
    tiny_scorer(tmp_path / "nine", "fpr_9view")
    scorer = PatchScorer.load(tmp_path / "nine")  # saved and loaded with its 9-view patches
    scan = CTScan(np.full((20, 30, 30), -800, np.int16), (2.0, 0.7, 0.7), (-10.0, 5.0, 30.0))
    scores = scorer.score(scan, scan.voxel_to_world(np.array([[10, 15, 15], [5, 5, 20]], float)))
    assert scorer.config.patches.channels == 9 and scores.shape == (2,) and np.all((scores > 0) & (scores < 1))


def test_validation_cpm_counts_only_the_scans_with_unet_candidates(tmp_path):
    from lungcad.train.fpr.train import validation_froc

    data, ann = tmp_path / "data", []
    for k in range(2):
        scan, _, nodule = simple_chest(seed=k)
        uid = f"1.3.{k}"
        write_mhd(scan.with_array(scan.array, id=uid), data / "subset0" / f"{uid}.mhd")
        ann.append([uid, *scan.voxel_to_world(np.argwhere(nodule).mean(0)), 12.0])
    # the U-Net ran on scan 0 only, and its one candidate is that scan's nodule
    unet = pd.DataFrame([ann[0][:4]], columns=["seriesuid", "coordX", "coordY", "coordZ"])
    cfg = load_config(FprTrainConfig, "fpr")
    cfg = dataclasses.replace(cfg, scorer=tiny_scorer_config(cfg.scorer))
    cpm = validation_froc(data, unet, _table(ann), _table([]), ["1.3.0", "1.3.1"], cfg)
    assert cpm(tiny_scorer(tmp_path / "model")) == pytest.approx(1.0)  # scan 1's nodule is not a miss
    # blob-filter rows (mined hard negatives) are not the FPR stage's candidates: scan 1 still does not count
    far = [ann[1][0], ann[1][1] + 40.0, *ann[1][2:4]]
    mined = pd.DataFrame([ann[0][:4], far], columns=["seriesuid", "coordX", "coordY", "coordZ"])
    cpm = validation_froc(data, mined.assign(source=["unet", "blob"]), _table(ann), _table([]), ["1.3.0", "1.3.1"], cfg)
    assert cpm(tiny_scorer(tmp_path / "model")) == pytest.approx(1.0)
    cpm = validation_froc(data, mined, _table(ann), _table([]), ["1.3.0", "1.3.1"], cfg)
    assert cpm(tiny_scorer(tmp_path / "model")) <= 0.5  # without a source column every row counts: scan 1 misses


def test_in_plane_views_are_the_eight_rotations_and_mirror_images_first_the_patch_itself():
    from lungcad.fpr.inference import in_plane_views

    planar = np.random.default_rng(0).random((2, 5, 5, 3)).astype(np.float32)
    views = in_plane_views(planar, 8, dims=2).reshape(8, 2, 5, 5, 3)
    np.testing.assert_array_equal(views[0], planar)
    np.testing.assert_array_equal(views[1][1, :, :, 2], np.rot90(planar[1, :, :, 2]))  # each plane turned alike
    assert len({v.tobytes() for v in views}) == 8
    cube = np.random.default_rng(1).random((1, 4, 4, 4, 1)).astype(np.float32)
    turned = in_plane_views(cube, 4, dims=3).reshape(4, 1, 4, 4, 4, 1)
    for k in range(4):  # the first spatial axis (z) stays: each z slice turns in its own plane
        np.testing.assert_array_equal(turned[k][0, 2, :, :, 0], np.rot90(cube[0, 2, :, :, 0], k))


def test_test_time_transforms_average_the_scores_of_the_views(tmp_path):
    from lungcad.fpr.inference import in_plane_views

    tiny = tiny_scorer(tmp_path / "model")
    plain = PatchScorer(tiny.model, dataclasses.replace(tiny.config, test_time_transforms=1))
    patches = np.random.default_rng(2).random((3, 16, 16, 3)).astype(np.float32)
    each = plain.score_patches(in_plane_views(patches, 8, dims=2)).reshape(8, 3)
    tta = PatchScorer(plain.model, dataclasses.replace(plain.config, test_time_transforms=8))
    np.testing.assert_allclose(tta.score_patches(patches), each.mean(axis=0), rtol=1e-5, atol=1e-6)
    assert tta.score_patches(patches[:0]).shape == (0,)
    tta.save(tmp_path / "tta")
    assert PatchScorer.load(tmp_path / "tta").config.test_time_transforms == 8
    yaml_file = tmp_path / "tta" / "fpr.yaml"  # a model directory written before the option: one view
    yaml_file.write_text("".join(x for x in yaml_file.read_text().splitlines(True) if "test_time" not in x))
    assert PatchScorer.load(tmp_path / "tta").config.test_time_transforms == 1
    with pytest.raises(ValueError, match="test_time_transforms 3"):
        dataclasses.replace(plain.config, test_time_transforms=3)
    bad = tmp_path / "bad.yaml"  # a training config with an unknown count fails on loading, naming its file
    bad.write_text(config_path("fpr").read_text().replace("test_time_transforms: 8", "test_time_transforms: 3"))
    with pytest.raises(ConfigError, match=r"bad\.yaml.*test_time_transforms 3"):
        load_config(FprTrainConfig, bad)


def test_a_training_config_may_not_set_the_fusion_weight_training_chooses(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: fpr\nscorer:\n  unet_weight: 0.3\n")
    with pytest.raises(
        ConfigError, match=r"bad\.yaml.*scorer\.unet_weight 0\.3: training chooses it from unet_weights"
    ):
        load_config(FprTrainConfig, bad)
    assert load_config(FprTrainConfig, "fpr").scorer.unet_weight == 0.0


def test_shipped_3d_config_scores_cubes(tmp_path):
    cubes = load_config(FprTrainConfig, "fpr_3d")
    assert (cubes.scorer.patches.mode, cubes.scorer.model.dims, cubes.scorer.model.channels) == ("3d", 3, 1)
    assert cubes.scorer.patches.size * cubes.scorer.patches.spacing_mm == pytest.approx(30.0)  # a 30 mm cube
    scorer = tiny_scorer(tmp_path / "cubes", "fpr_3d")
    scan = CTScan(np.full((20, 30, 30), -800, np.int16), (2.0, 0.7, 0.7), (-10.0, 5.0, 30.0))
    scores = scorer.score(scan, scan.voxel_to_world(np.array([[10, 15, 15], [5, 5, 20]], float)))
    assert scores.shape == (2,) and np.all((scores > 0) & (scores < 1))


def test_shipped_multiscale_config_scores_two_scale_patches(tmp_path):
    two = load_config(FprTrainConfig, "fpr_multiscale")
    assert (two.scorer.patches.scales, two.scorer.patches.channels, two.scorer.model.channels) == ((1.0, 0.5), 6, 6)
    scorer = tiny_scorer(tmp_path / "two", "fpr_multiscale")
    loaded = PatchScorer.load(tmp_path / "two")  # saved and loaded with its scales
    assert loaded.config.patches.scales == (1.0, 0.5)
    scan = CTScan(np.full((20, 30, 30), -800, np.int16), (2.0, 0.7, 0.7), (-10.0, 5.0, 30.0))
    centres = scan.voxel_to_world(np.array([[10, 15, 15], [5, 5, 20]], float))
    scores = loaded.score(scan, centres)
    assert scores.shape == (2,) and np.all((scores > 0) & (scores < 1))
    np.testing.assert_allclose(scores, scorer.score(scan, centres), rtol=1e-5)
