"""Start-up of ``lungcad detect`` (#35): TensorFlow is imported by one background thread, which loads the models
while the main thread preprocesses the first scan; each model's graph is built once per process whatever
the scan's shape, and the summary says how long the start-up took."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
from helpers import simple_chest, tiny_detector_config

from lungcad.io import write_mhd

ROOT = Path(__file__).resolve().parents[2]

# lungcad detect's CLI, where the import of keras and TensorFlow is held until the first scan is preprocessed: the
# read and the preprocess must not need them, and only the model-loading thread imports them
PROBE = """
import importlib.abc, json, sys, threading
from lungcad import tfquiet
import lungcad.pipeline.batch as batch
from lungcad.cli.main import main

gate, seen = threading.Event(), {}

class Gate(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name in ("keras", "tensorflow") and name not in seen:
            seen[name] = threading.current_thread().name
            if not gate.is_set():
                seen["gate_opened"] = gate.wait(60)
        return None

tfquiet.install()
sys.meta_path.insert(0, Gate())  # before tfquiet's finder
preprocess_for = batch.preprocess_for

def preprocessed(scan, models, timings):
    pre = preprocess_for(scan, models, timings)
    seen["preprocessed"] = "tensorflow" not in sys.modules and "preprocess_s" in timings
    gate.set()
    return pre

batch.preprocess_for = preprocessed
code = main(["detect", *sys.argv[1:], "--stage", "candidates", "--no-pictures", "-q"])
print("PROBE", json.dumps({"code": code, **seen}))
"""


def test_tensorflow_loads_in_one_background_thread_while_the_first_scan_is_read_and_preprocessed(tmp_path):
    from lungcad.candidates.unet import build_unet
    from lungcad.config import load_config
    from lungcad.pipeline.detector import CandidateDetector
    from lungcad.train.candidates.train import UNetTrainConfig

    detector = tiny_detector_config(load_config(UNetTrainConfig, "unet").detector)
    model = CandidateDetector(build_unet(detector.model), detector).save(tmp_path / "unet")
    scan = write_mhd(simple_chest(shape=(24, 48, 48))[0], tmp_path / "a.mhd")
    run = subprocess.run(
        [sys.executable, "-c", PROBE, str(scan), "-o", str(tmp_path / "out"), "--model", str(model)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    line = [x for x in run.stdout.splitlines() if x.startswith("PROBE ")]
    assert line, run.stderr[-2000:]
    seen = json.loads(line[0][6:])
    assert seen == {
        "code": 0,
        "keras": "lungcad-load-models",  # the main thread never imported them
        "tensorflow": "lungcad-load-models",
        "gate_opened": True,  # the main thread read and preprocessed the scan while the import waited
        "preprocessed": True,  # with no TensorFlow
    }, run.stderr[-2000:]
    assert (tmp_path / "out" / "candidates.csv").is_file()


def test_the_preprocessing_read_before_the_model_is_the_detectors_own(tmp_path):
    from lungcad.config import load_config, to_dict
    from lungcad.pipeline.detector import DETECTOR_FILE
    from lungcad.pipeline.models import unet_preprocess_config
    from lungcad.preprocess.config import default_config
    from lungcad.train.candidates.train import UNetTrainConfig

    detector = tiny_detector_config(load_config(UNetTrainConfig, "unet").detector)
    assert detector.preprocess != default_config()  # a config of its own, not the defaults
    (tmp_path / DETECTOR_FILE).write_text(yaml.safe_dump(to_dict(detector)))
    assert unet_preprocess_config(str(tmp_path)) == detector.preprocess


def test_model_loading_is_timed_once_per_model(tmp_path):
    from lungcad.candidates.unet import build_unet
    from lungcad.config import load_config
    from lungcad.pipeline.detector import CandidateDetector
    from lungcad.pipeline.models import load_detector, loading_seconds
    from lungcad.train.candidates.train import UNetTrainConfig

    detector = tiny_detector_config(load_config(UNetTrainConfig, "unet").detector)
    path = str(CandidateDetector(build_unet(detector.model), detector).save(tmp_path / "unet"))
    before = loading_seconds()
    first = load_detector(path)
    loaded = loading_seconds()
    assert loaded > before
    assert load_detector(path) is first and loading_seconds() == loaded  # cached: no second load, no time


def test_the_unet_graph_is_traced_once_for_every_crop_and_batch_shape():
    from lungcad.candidates.unet import build_unet
    from lungcad.config import load_config
    from lungcad.pipeline.detector import CandidateDetector
    from lungcad.train.candidates.train import UNetTrainConfig

    config = tiny_detector_config(load_config(UNetTrainConfig, "unet").detector)
    detector = CandidateDetector(build_unet(config.model), config)
    rng = np.random.default_rng(0)
    for shape in ((5, 24, 32), (9, 40, 28), (3, 17, 23)):  # per-scan lung crops of other sizes
        lung = np.zeros(shape, bool)
        lung[1:-1, 2:-2, 2:-2] = True
        prob = detector.probability(rng.normal(size=shape).astype(np.float32), lung)
        assert prob.shape == shape
    assert detector.infer.experimental_get_tracing_count() == 1


def test_the_wideresnet_graph_is_traced_once_for_every_batch_size(tmp_path):
    from helpers import tiny_scorer

    scorer = tiny_scorer(tmp_path / "fpr")
    side, channels = scorer.model.input_shape[1], scorer.model.input_shape[-1]
    rng = np.random.default_rng(0)
    for n in (1, 3, 7):
        patches = rng.normal(size=(n, *scorer.model.input_shape[1:])).astype(np.float32)
        assert scorer.score_patches(patches).shape == (n,)
    assert side and channels and scorer.infer.experimental_get_tracing_count() == 1


def test_a_single_scan_run_logs_the_model_loading_once(tmp_path, caplog):
    import logging

    from lungcad.candidates.unet import build_unet
    from lungcad.config import load_config
    from lungcad.io import ScanRef
    from lungcad.pipeline import detect_one, model_set
    from lungcad.pipeline.detector import CandidateDetector
    from lungcad.train.candidates.train import UNetTrainConfig

    detector = tiny_detector_config(load_config(UNetTrainConfig, "unet").detector)
    CandidateDetector(build_unet(detector.model), detector).save(tmp_path / "unet")
    models = model_set("candidates", tmp_path / "unet")
    ref = ScanRef("s1", write_mhd(simple_chest(shape=(12, 48, 48))[0], tmp_path / "s1.mhd"))
    with caplog.at_level(logging.INFO, logger="lungcad.pipeline.batch"):
        for run in ("a", "b"):
            detect_one(ref, out=tmp_path / run, models=models, pictures=False, stages=True)
    assert sum("s1: models loaded in" in r.getMessage() for r in caplog.records) == 1  # the second run: cached
