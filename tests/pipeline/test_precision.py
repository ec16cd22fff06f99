"""bfloat16 inference (#35): the CPU's bfloat16 units detected from its flags, ``--precision`` resolved per model,
passed from the command line and the Python API to the models, recorded in the scan's JSON and the summary, and a
bfloat16 model computing close to its float32 original."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import simple_chest, tiny_detector_config, tiny_scorer

from lungcad.errors import ConfigError
from lungcad.io import write_mhd
from lungcad.pipeline import precision as precision_module
from lungcad.pipeline.precision import AUTO_BFLOAT16, has_bf16_units, resolve_precision

SAPPHIRE = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R)\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile\n"
ZEN2 = "processor\t: 0\nmodel name\t: AMD EPYC 7R32\nflags\t\t: fpu sse2 avx2 fma\n"


@pytest.mark.parametrize(
    ("cpuinfo", "expected"),
    [
        (SAPPHIRE, True),
        ("flags : fpu avx2 amx_bf16 amx_tile\n", True),  # AMX without AVX512-BF16
        (ZEN2, False),
        ("flags : fpu avx512_bf16x avx512f\n", False),  # a whole flag, not a prefix
        ("model name : avx512_bf16 edition\nflags : fpu avx2\n", False),  # only the flags line counts
        ("", False),  # no /proc/cpuinfo (macOS, Windows)
    ],
)
def test_bf16_units_are_read_from_the_cpu_flags(cpuinfo, expected):
    assert has_bf16_units(cpuinfo) is expected


def test_auto_gives_bfloat16_only_to_the_models_measured_faster_and_only_on_a_bf16_cpu():
    on_amx = resolve_precision("auto", SAPPHIRE)
    assert {role for role, dtype in on_amx.items() if dtype == "bfloat16"} == set(AUTO_BFLOAT16)
    assert on_amx["unet"] == "float32"  # slower in bfloat16 on AMX: stays float32 unless forced
    assert set(resolve_precision("auto", ZEN2).values()) == {"float32"}
    assert set(resolve_precision("bfloat16", ZEN2).values()) == {"bfloat16"}  # forced
    assert set(resolve_precision("float32", SAPPHIRE).values()) == {"float32"}  # forced off
    with pytest.raises(ConfigError, match="unknown precision 'fp16'"):
        resolve_precision("fp16", SAPPHIRE)


def test_a_model_set_resolves_auto_on_the_machine_that_runs_it(monkeypatch, confident_model, request):
    from lungcad.pipeline import model_set

    models = model_set("candidates", confident_model)
    assert models.precision == "auto"
    precision_module.machine_has_bf16.cache_clear()  # read once per process: read the patched text, then forget it
    request.addfinalizer(precision_module.machine_has_bf16.cache_clear)
    monkeypatch.setattr(precision_module, "read_cpuinfo", lambda: SAPPHIRE)
    assert models.precisions() == {"unet": "float32"}
    assert model_set("candidates", confident_model, precision="bfloat16").precisions() == {"unet": "bfloat16"}
    with pytest.raises(ConfigError, match="unknown precision"):
        model_set("candidates", confident_model, precision="half")


def test_a_bfloat16_scorer_computes_in_bfloat16_close_to_float32(tmp_path):
    from lungcad.fpr.inference import PatchScorer

    tiny_scorer(tmp_path / "fpr")
    fp32 = PatchScorer.load(tmp_path / "fpr")
    bf16 = PatchScorer.load(tmp_path / "fpr", "mixed_bfloat16")
    assert {layer.compute_dtype for layer in bf16.model.layers[1:-1]} == {"bfloat16"}
    assert bf16.model.layers[-1].compute_dtype == "float32"  # the probabilities at full precision
    patches = np.random.default_rng(0).uniform(0, 1, (24, *fp32.model.input_shape[1:])).astype(np.float32)
    a, b = fp32.score_patches(patches), bf16.score_patches(patches)
    assert b.dtype == np.float32
    assert not np.array_equal(a, b)  # bfloat16 arithmetic did run
    np.testing.assert_allclose(b, a, atol=0.02)


def test_a_bfloat16_unet_gives_probabilities_close_to_float32(tmp_path):
    from lungcad.candidates.unet import build_unet
    from lungcad.config import load_config
    from lungcad.pipeline.detector import CandidateDetector
    from lungcad.train.candidates.train import UNetTrainConfig

    config = tiny_detector_config(load_config(UNetTrainConfig, "unet").detector)
    path = CandidateDetector(build_unet(config.model), config).save(tmp_path / "unet")
    fp32, bf16 = CandidateDetector.load(path), CandidateDetector.load(path, "bfloat16")
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 1, (6, 24, 32)).astype(np.float32)
    lung = np.ones(image.shape, bool)
    a, b = fp32.probability(image, lung), bf16.probability(image, lung)
    assert not np.array_equal(a, b)
    np.testing.assert_allclose(b, a, atol=0.02)


def test_precision_flag_reaches_the_models_the_json_and_the_summary(tmp_path, confident_model, capsys):
    from lungcad.cli.main import main

    write_mhd(simple_chest(shape=(10, 40, 40))[0], tmp_path / "in" / "1.2.7.mhd")
    base = ["detect", str(tmp_path / "in"), "--model", str(confident_model), "--stage", "candidates", "--no-pictures"]
    for precision in ("bfloat16", "float32"):
        assert main([*base, "-o", str(tmp_path / precision), "--precision", precision]) == 0
        record = json.loads((tmp_path / precision / "scans" / "1.2.7.json").read_text())
        assert record["precision"] == {"unet": precision}
        assert f"; precision: U-Net {precision}; candidates in" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([*base, "-o", str(tmp_path / "x"), "--precision", "float16"])


def test_the_python_api_takes_and_reports_the_precision(confident_model):
    import lungcad

    scan = simple_chest(shape=(10, 40, 40))[0]
    result = lungcad.detect(scan, "candidates", model=confident_model, precision="bfloat16")
    assert result.precision == {"unet": "bfloat16"}
    assert result.models.precision == "bfloat16"
