"""lungcad: lung cancer CAD for chest CT.

Stages (each a subpackage): ``io`` (read CT), ``synth`` (synthetic phantoms), ``preprocess``,
``candidates``, ``merge``, ``patches``, ``fpr``, ``risk``, ``train``, ``evaluate``.
The one volume type every stage passes along is :class:`lungcad.scan.CTScan`.
"""

import os as _os

__version__ = "0.1.0"

# TensorFlow's C++ start-up chatter (CUDA probing, CPU feature notes) is noise for CLI users.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# oneDNN kernels: ~2x faster U-Net inference at batch >= 4 on AVX2 CPUs, where TF leaves them off by
# default (measured: 30 vs 69 ms per 240x336 slice). Set TF_ENABLE_ONEDNN_OPTS=0 to turn them off.
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from lungcad.scan import CTScan  # noqa: E402

__all__ = ["CTScan", "__version__"]
