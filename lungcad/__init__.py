"""lungcad: lung cancer CAD for chest CT.

In a notebook::

    import lungcad
    scan = lungcad.load_scan("scan.mhd")          # or a DICOM folder, .mha, NIfTI, NRRD
    result = lungcad.detect(scan)                  # bundled models; result.candidates, .cancer_probability
    lungcad.evaluate_froc(result, "annotations.csv").cpm

``import lungcad`` is light (numpy only): :func:`detect`, :func:`evaluate_froc` (:mod:`lungcad.api`) and
:func:`load_scan` (:mod:`lungcad.io`) are imported on first use (PEP 562), TensorFlow when a model first runs.

Stages (each a subpackage): ``io`` (read CT), ``synth`` (synthetic phantoms), ``preprocess``,
``candidates``, ``merge``, ``patches``, ``fpr``, ``risk``, ``train``, ``evaluate``; ``pipeline`` composes them.
The one volume type every stage passes along is :class:`lungcad.scan.CTScan`.
"""

import importlib as _importlib
import os as _os

__version__ = "0.1.0"

# TensorFlow's C++ start-up chatter (CUDA probing, CPU feature notes) is noise for CLI users.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# oneDNN kernels: ~2x faster U-Net inference at batch >= 4 on AVX2 CPUs, where TF leaves them off by
# default (measured: 30 vs 69 ms per 240x336 slice). Set TF_ENABLE_ONEDNN_OPTS=0 to turn them off.
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from lungcad.scan import CTScan  # noqa: E402

#: The names served lazily (name -> the module defining it), imported on first access by :func:`__getattr__`.
#: tests/test_architecture.py reads this map: a module using ``lungcad.<name>`` imports the module named here.
_LAZY = {
    "detect": "lungcad.api",
    "evaluate_froc": "lungcad.api",
    "DetectionResult": "lungcad.api",
    "load_scan": "lungcad.io",
}

__all__ = ["CTScan", "DetectionResult", "__version__", "detect", "evaluate_froc", "load_scan"]


def __getattr__(name: str):
    """PEP 562: ``lungcad.detect`` etc. import their module on first access, so ``import lungcad`` stays light."""
    if name not in _LAZY:
        raise AttributeError(f"module 'lungcad' has no attribute {name!r}")
    value = getattr(_importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
