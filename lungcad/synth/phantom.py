"""Build one synthetic chest CT: :func:`make_phantom` -> :class:`Phantom`.

Random streams: ``SeedSequence([seed, index])`` is split into independent child streams for geometry,
anatomy, vessels, nodules, noise and candidates, so a phantom depends only on ``(seed, index)``, the
config and :data:`PHANTOM_VERSION`; the matrix size changes the pixels, not the patient.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import numpy as np

from lungcad.io.writers import deterministic_uid
from lungcad.scan import CTScan
from lungcad.synth.anatomy import LEFT_LUNG, draw_anatomy
from lungcad.synth.cancer import patient_cancer
from lungcad.synth.candidates import candidate_points
from lungcad.synth.config import SynthConfig, load_synth_config
from lungcad.synth.disease import draw_disease
from lungcad.synth.geometry import Geometry, draw_geometry
from lungcad.synth.lidc_nodules import substitute
from lungcad.synth.nodule_render import draw_nodules
from lungcad.synth.nodules import NoduleSpec, draw_kinds, place_nodules
from lungcad.synth.noise import draw_noise
from lungcad.synth.raster import Canvas, Segments, draw_segments
from lungcad.synth.scanner import finish_scan, substream
from lungcad.synth.slices import render_anatomy
from lungcad.synth.vessels import airway_trees, vessel_trees

#: Bump on every deliberate change of the generated data (recorded in ``synth.json``; see the pinned test). It is
#: part of every UID and patient id, so data of two versions never share an identifier (caches key on them).
#: 2: nodules keep at least ``min_free_fraction`` of their ball out of vessels, airways and the chest wall.
PHANTOM_VERSION = 2
#: Seeds the random streams: phantom ``(seed, index)`` keeps its anatomy, vessels and nodule kinds across phantom
#: versions that do not re-lay the streams, so a version's effect can be compared scan by scan.
STREAM_VERSION = 1

#: Child streams of ``SeedSequence([STREAM_VERSION, seed, index])``. New streams are only ever appended: the
#: ``spawn`` keys of the earlier ones stay the same, so knobs drawn from a new stream (the randomized world's
#: scanner, disease and body settings, the LIDC nodules) leave every existing phantom unchanged when they are off.
STREAMS = ("geometry", "anatomy", "vessels", "nodules", "noise", "candidates", "scanner", "disease", "body", "lidc")


@dataclass(frozen=True)
class Nodule:
    """Ground truth of one nodule.

    Attributes:
        world_xyz: centre in world mm (LPS), computed with ``CTScan.voxel_to_world``.
        voxel_zyx: centre as a fractional voxel index of the phantom's scan array.
        diameter_mm: nominal diameter (spicules not included).
        type: ``solid`` | ``part_solid`` | ``ggo`` | ``calcified``.
        shape: ``smooth`` | ``lobulated`` | ``spiculated``.
        location: ``intraparenchymal`` | ``juxtapleural`` | ``juxtavascular``.
        lung: ``left`` | ``right``.
        malignant: by the rule of :mod:`lungcad.synth.cancer`.
        excluded: a < 3 mm finding (``annotations_excluded.csv``), not a nodule to detect.
        core_diameter_mm: part-solid nodules: diameter of the solid core.
        source: ``parametric`` or ``lidc``.
        lidc: an LIDC-IDRI nodule's labels: ``patient_id``, ``annotation_ids`` (``;``-joined), ``readers`` and the
            nine median ratings (``malignancy``, ``spiculation``, ``lobulation``, ``texture``, ...); None otherwise.
    """

    world_xyz: tuple[float, float, float]
    voxel_zyx: tuple[float, float, float]
    diameter_mm: float
    type: str
    shape: str
    location: str
    lung: str
    malignant: bool
    excluded: bool
    core_diameter_mm: float | None = None
    source: str = "parametric"
    lidc: dict | None = None


@dataclass(frozen=True)
class Phantom:
    """One synthetic patient.

    Attributes:
        scan: int16 HU ``(Z, Y, X)``; identity direction, or ``diag(-1, -1, 1)`` when ``flipped``.
        lungs: uint8 ``(Z, Y, X)`` labels in the same index space: 3 left lung, 4 right lung,
            5 trachea and main bronchi, 0 elsewhere.
        nodules: ground truth (>= 3 mm nodules and excluded tiny findings).
        candidates: ``(N, 3)`` world xyz mm; ``candidate_classes`` ``(N,)`` 1 nodule / 0 not.
        vessels: vessel segments in world mm (``a``, ``b`` ``(M, 3)``, radii ``ra``, ``rb`` mm).
        fov_mask: bool ``(Y, X)`` True inside the scan circle (same index space).
        geometry: the drawn geometry (canonical grid).
        seed, index: what the phantom was made from.
        series_uid: LUNA16 seriesuid; patient_id: DSB-style 32-hex id.
        cancer: 1 if any nodule is malignant, 0 if none, None when the patient's label is left out
            (an indeterminate LIDC nodule; :mod:`lungcad.synth.cancer`).
    """

    scan: CTScan = field(repr=False)
    lungs: np.ndarray = field(repr=False)
    nodules: tuple[Nodule, ...]
    candidates: np.ndarray = field(repr=False)
    candidate_classes: np.ndarray = field(repr=False)
    vessels: Segments = field(repr=False)
    fov_mask: np.ndarray = field(repr=False)
    geometry: Geometry = field(repr=False)
    seed: int
    index: int
    series_uid: str
    patient_id: str
    cancer: int | None

    @property
    def flipped(self) -> bool:
        """Whether the arrays are stored with direction ``diag(-1, -1, 1)``."""
        return bool(self.scan.direction[0, 0] < 0)

    def canonical(self) -> Phantom:
        """The same patient stored with identity direction (arrays un-flipped; world positions unchanged)."""
        if not self.flipped:
            return self
        geom = self.geometry
        arr = np.ascontiguousarray(self.scan.array[:, ::-1, ::-1])
        scan = geom.canonical_scan(arr, self.scan.id, dict(self.scan.metadata))
        nodules = []
        for n in self.nodules:
            v = geom.written_voxel(np.asarray(n.voxel_zyx))  # the flip is its own inverse
            w = scan.voxel_to_world(v)
            nodules.append(replace(n, voxel_zyx=_tuple(v), world_xyz=_tuple(w)))
        return replace(
            self,
            scan=scan,
            lungs=np.ascontiguousarray(self.lungs[:, ::-1, ::-1]),
            fov_mask=np.ascontiguousarray(self.fov_mask[::-1, ::-1]),
            nodules=tuple(nodules),
        )

    def label_scan(self) -> CTScan:
        """The lung labels as a uint8 volume with the scan's geometry (for ``write_mhd``)."""
        return self.scan.with_array(self.lungs, metadata={})


def _tuple(v: np.ndarray) -> tuple[float, float, float]:
    return tuple(round(float(x), 6) for x in v)  # type: ignore[return-value]


def scan_rngs(seed: int, index: int) -> dict[str, np.random.Generator]:
    """Independent generators for each part of phantom ``(seed, index)``."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got {seed}, {index}")
    children = np.random.SeedSequence([STREAM_VERSION, seed, index]).spawn(len(STREAMS))
    return {name: np.random.default_rng(child) for name, child in zip(STREAMS, children, strict=True)}


def patient_id(seed: int, index: int) -> str:
    """DSB-style patient id: 32 lowercase hex characters derived from ``(seed, index)``."""
    return hashlib.md5(f"lungcad-synth:{PHANTOM_VERSION}:{seed}:{index}".encode()).hexdigest()


def series_uid(seed: int, index: int) -> str:
    """LUNA16-style seriesuid (a DICOM UID) derived from ``(seed, index)``."""
    return deterministic_uid("lungcad-synth", PHANTOM_VERSION, seed, index)


def _world(scan: CTScan, geom: Geometry, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Patient points ``(N, 3)`` -> (written voxel zyx ``(N, 3)``, world xyz ``(N, 3)``) via ``voxel_to_world``."""
    v = geom.written_voxel(geom.to_voxel(np.asarray(pts, dtype=np.float64).reshape(-1, 3)))
    return v, scan.voxel_to_world(v)


def _nodule_records(scan: CTScan, geom: Geometry, specs: list[NoduleSpec]) -> tuple[Nodule, ...]:
    """Public records of the placed nodules."""
    out = []
    for spec in specs:
        v, w = _world(scan, geom, np.asarray(spec.centre))
        k = spec.kind
        out.append(
            Nodule(
                world_xyz=_tuple(w[0]),
                voxel_zyx=_tuple(v[0]),
                diameter_mm=k.diameter_mm,
                type=k.type,
                shape=k.shape,
                location=k.location,
                lung="left" if spec.lung == LEFT_LUNG else "right",
                malignant=spec.malignant,
                excluded=k.excluded,
                core_diameter_mm=spec.core_diameter_mm,
                source="parametric" if k.lidc is None else "lidc",
                lidc=None if k.lidc is None else _lidc_labels(k.lidc),
            )
        )
    return tuple(out)


def _lidc_labels(nodule) -> dict:
    """The public labels of an LIDC nodule (:class:`lungcad.synth.lidc_nodules.LidcNodule`)."""
    return {
        "patient_id": nodule.patient_id,
        "annotation_ids": nodule.annotation_ids,
        "readers": nodule.readers,
        **dict(nodule.ratings),
    }


def _world_segments(scan: CTScan, geom: Geometry, segs: Segments) -> Segments:
    """Segments with end points mapped to world mm."""
    return replace(segs, a=_world(scan, geom, segs.a)[1], b=_world(scan, geom, segs.b)[1])


def make_phantom(seed: int, index: int = 0, *, size: int = 512, config: SynthConfig | None = None) -> Phantom:
    """Generate phantom ``index`` of dataset ``seed`` on a ``size`` x ``size`` matrix.

    Args:
        seed, index: non-negative integers; the same pair gives the same bytes.
        size: in-plane matrix (pixel spacing = FOV / size); >= 32.
        config: a :class:`SynthConfig` (default: ``configs/synth.yaml``).
    """
    if size < 32:
        raise ValueError(f"size must be >= 32, got {size}")
    cfg = config if config is not None else load_synth_config()
    rngs = scan_rngs(seed, index)
    geom = draw_geometry(rngs["geometry"], cfg, size, substream(rngs["scanner"], "geometry"))
    an = draw_anatomy(rngs["anatomy"], cfg, geom, rngs["body"])
    vessels = vessel_trees(rngs["vessels"], an, cfg)
    airways = airway_trees(rngs["vessels"], an, cfg)
    disease = draw_disease(rngs["disease"], cfg.disease, an, airways)
    kinds = substitute(rngs["lidc"], cfg, draw_kinds(rngs["nodules"], cfg))
    hidden = disease.hides if disease.present else None  # no nodule where disease would hide it
    specs = place_nodules(rngs["nodules"], an, cfg, vessels, kinds, airways, hidden)
    vol, labels = render_anatomy(an, geom)
    disease.render(vol, labels, geom)  # lung disease backgrounds; effusion voxels leave the lung labels
    canvas = Canvas(vol, labels, geom)
    draw_segments(canvas, airways, an.hu["muscle"], "brighten", *an.airway_wall)
    draw_segments(canvas, airways, an.hu["air"], "darken")
    draw_segments(canvas, vessels, an.hu["blood"], "brighten")
    draw_nodules(canvas, specs, cfg.nodules.edge_mm)
    del canvas
    noise = draw_noise(rngs["noise"], cfg.noise, geom)
    hu = finish_scan(vol, geom, rngs["noise"], rngs["scanner"], cfg.noise, noise)
    del vol
    uid, pid = series_uid(seed, index), patient_id(seed, index)
    meta = {"series_uid": uid, "patient_id": pid, "modality": "CT", "phantom_version": PHANTOM_VERSION}
    scan = geom.written_scan(hu, uid, meta)
    lungs = geom.written_scan(labels, uid, {}).array
    fov = geom.fov_mask()
    fov = fov[::-1, ::-1].copy() if geom.flipped else fov
    z_max = min(geom.chest_mm, (geom.nz - 1) * geom.sz)
    pts, classes = candidate_points(rngs["candidates"], an, cfg.candidates, specs, vessels, z_max)
    return Phantom(
        scan=scan,
        lungs=lungs,
        nodules=_nodule_records(scan, geom, specs),
        candidates=_world(scan, geom, pts)[1],
        candidate_classes=classes,
        vessels=_world_segments(scan, geom, vessels),
        fov_mask=fov,
        geometry=geom,
        seed=seed,
        index=index,
        series_uid=uid,
        patient_id=pid,
        cancer=patient_cancer((s.kind for s in specs), cfg.cancer_rule),
    )
