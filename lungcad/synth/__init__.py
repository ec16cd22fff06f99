"""Synthetic chest CT phantoms with known nodules (``lungcad synth``).

Each phantom is a patient drawn at random from ``configs/synth.yaml``: body with skin, fat and muscle;
two lungs whose shape varies along z, with apices and diaphragm domes (the right one higher); heart,
aorta, vena cava, oesophagus; trachea and main bronchi; branching, tapering pulmonary vessel and airway
trees; ribs, spine and sternum; the CT table; then reconstruction blur, correlated noise, the scanner's
HU range and circular field of view. Nodules are solid, part-solid, ground-glass or calcified; smooth,
lobulated or spiculated; intraparenchymal, juxtapleural or juxtavascular; 3-30 mm, plus tiny excluded
findings (1.5-2.9 mm). Spacings are random (0.5-0.9 mm in-plane at a 512 matrix, 0.625-2.5 mm slices),
origins realistic, and about one LUNA16 scan in five is stored flipped (direction ``diag(-1, -1, 1)``).

Cancer rule (DSB ``stage1_labels.csv``): a nodule is malignant when it is solid or part-solid, not an
excluded finding, and (diameter >= 15 mm, or spiculated and >= 8 mm, or lobulated and >= 12 mm); a
patient has ``cancer = 1`` when any nodule is malignant (thresholds in ``cancer_rule`` of the config; see
:mod:`lungcad.synth.cancer`).

Public API:

- :func:`make_phantom` ``(seed, index=0, *, size=512, config=None) -> Phantom`` (``Phantom.scan`` is a
  :class:`lungcad.scan.CTScan`, ``Phantom.lungs`` the label array, ``Phantom.nodules`` the
  :class:`Nodule` records);
- :func:`write_dataset` ``(out, n_scans, seed, size=512, fmt="both", config=None) -> DatasetSummary``;
- :func:`load_synth_config`, :class:`SynthConfig`, :data:`PHANTOM_VERSION`.

Determinism: scan ``i`` of dataset ``seed`` uses ``numpy.random.SeedSequence([STREAM_VERSION, seed, i])``
split into independent streams; the matrix size changes the pixels, not the patient. Bump
:data:`PHANTOM_VERSION` on every deliberate change of the generated data: it is part of every UID and patient
id. ``STREAM_VERSION`` changes only when the streams are re-laid, so the same ``(seed, i)`` stays the same
patient across versions (version 2 moved the nodules that version 1 hid in vessels and airways).
"""

from lungcad.synth.cancer import is_malignant, patient_cancer
from lungcad.synth.config import SynthConfig, load_synth_config, with_overrides
from lungcad.synth.datasets import DatasetSummary, write_dataset
from lungcad.synth.phantom import PHANTOM_VERSION, Nodule, Phantom, make_phantom

__all__ = [
    "PHANTOM_VERSION",
    "DatasetSummary",
    "Nodule",
    "Phantom",
    "SynthConfig",
    "is_malignant",
    "load_synth_config",
    "make_phantom",
    "patient_cancer",
    "with_overrides",
    "write_dataset",
]
