"""lungcad: lung cancer CAD for chest CT.

Stages (each a subpackage): ``io`` (read CT), ``synth`` (synthetic phantoms), ``preprocess``,
``candidates``, ``merge``, ``patches``, ``fpr``, ``risk``, ``train``, ``evaluate``.
The one volume type every stage passes along is :class:`lungcad.scan.CTScan`.
"""

__version__ = "0.1.0"

from lungcad.scan import CTScan  # noqa: E402

__all__ = ["CTScan", "__version__"]
