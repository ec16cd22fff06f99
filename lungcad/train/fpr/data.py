"""False-positive-reduction training data: labelled candidates, a patch cache, balanced sampling.

Candidates come from a LUNA16-style ``candidates.csv`` (``class`` 0/1 as given) and/or from the U-Net's
own candidates (mined hard negatives), labelled against ``annotations.csv``: 1 within a nodule's radius,
0 when farther than the radius plus ``label_margin_mm`` from every nodule and outside every excluded
finding; in-between candidates are ambiguous and left out. Patches are cut ``augment_margin`` voxels
larger than the model's input so random crops give small shifts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import tensorflow as tf
from scipy import ndimage

from lungcad.patches import PatchConfig, candidate_spacing, extract_patches
from lungcad.scan import CTScan
from lungcad.schema import XYZ
from lungcad.train.augment import check_jitter, scanner_jitter


@dataclass(frozen=True)
class FprSamplingConfig:
    """Labelling, augmentation and balancing (``sampling:`` section of ``configs/fpr.yaml``).

    Attributes:
        label_margin_mm: negatives must be this far beyond every nodule's radius.
        unknown_diameter_mm: excluded findings of unknown size (-1) use this diameter.
        augment_margin: extra voxels cut on each side for random-crop shifts.
        positive_fraction: share of positives in each batch.
        flip, rotate90: random flips / 90-degree in-plane rotations.
        hu_offset, contrast_range: HU offset (+-) and contrast jitter.
        scale_range: random zoom (low, high) about the candidate, > 1 magnifies; ``(1, 1)``: none (integer crops).
        hard_negative_fraction: share of the negative draws taken from the U-Net's own candidates (rows of the
            ``--candidates`` table whose ``source`` is ``unet``: the marks the FPR ranks at inference) instead of
            from all negatives alike (in the recipe's data the synthetic ``candidates.csv`` and blob rows
            outnumber them 13 to 1); 0: all alike (the bundled model).
        noise_hu: Gaussian noise of a standard deviation drawn in ``[0, noise_hu]`` HU added to each patch (dose).
        kernel_probability, blur_sigma_mm, sharpen_amount: the reconstruction kernel
            (:func:`lungcad.train.augment.scanner_jitter`; patch voxels of ``patches.spacing_mm``, 1 mm). 0:
            neither (models trained before 2026-12-05).
    """

    label_margin_mm: float
    unknown_diameter_mm: float
    augment_margin: int
    positive_fraction: float
    flip: bool
    rotate90: bool
    hu_offset: float
    contrast_range: tuple[float, float]
    scale_range: tuple[float, float] = (1.0, 1.0)
    hard_negative_fraction: float = 0.0
    noise_hu: float = 0.0
    kernel_probability: float = 0.0
    blur_sigma_mm: float = 0.0
    sharpen_amount: float = 0.0

    def __post_init__(self) -> None:
        low, high = self.scale_range
        if not 0 < low <= high:
            raise ValueError(f"sampling.scale_range {list(self.scale_range)}: expected 0 < low <= high")
        if not 0.0 <= self.hard_negative_fraction <= 1.0:
            raise ValueError(f"sampling.hard_negative_fraction {self.hard_negative_fraction}: expected 0 to 1")
        check_jitter(self)


def _gap_to_spheres(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each point: (distance - radius) to the nearest sphere surface, and whether it is inside one."""
    if len(centres) == 0:
        return np.full(len(points), np.inf), np.zeros(len(points), bool)
    d = np.linalg.norm(points[:, None, :] - centres[None, :, :], axis=-1) - radii[None, :]
    return d.min(axis=1), (d < 0).any(axis=1)


def label_candidates(
    candidates: pd.DataFrame, annotations: pd.DataFrame, excluded: pd.DataFrame, config: FprSamplingConfig
) -> pd.DataFrame:
    """``candidates`` (seriesuid, coordX..Z[, class]) with a ``label`` column; ambiguous rows dropped.

    Rows with a ``class`` (LUNA16 candidates) keep it as the label; the others (e.g. U-Net candidates, class
    missing or NaN) are labelled against the tables.
    """
    given = candidates["class"] if "class" in candidates.columns else pd.Series(np.nan, index=candidates.index)
    labels = np.where(given.notna(), given.fillna(-1), -1).astype(int)
    unlabelled = candidates[given.isna()]
    for uid, rows in unlabelled.groupby("seriesuid").groups.items():
        pts = candidates.loc[rows, XYZ].to_numpy(float)
        ann = annotations[annotations.seriesuid == uid]
        exc = excluded[excluded.seriesuid == uid]
        exc_d = exc.diameter_mm.to_numpy(float)
        exc_r = np.where(exc_d > 0, exc_d, config.unknown_diameter_mm) / 2
        gap, inside = _gap_to_spheres(pts, ann[XYZ].to_numpy(float), ann.diameter_mm.to_numpy(float) / 2)
        _, in_excluded = _gap_to_spheres(pts, exc[XYZ].to_numpy(float), exc_r)
        lab = np.where(inside, 1, np.where((gap > config.label_margin_mm) & ~in_excluded, 0, -1))
        labels[candidates.index.get_indexer(rows)] = lab
    out = candidates.assign(label=labels)
    return out[out.label >= 0].reset_index(drop=True)


#: ``source`` of the candidate rows whose negatives :attr:`FprSamplingConfig.hard_negative_fraction` favours.
HARD_SOURCE = "unet"


@dataclass
class PatchSet:
    """Patches of labelled candidates: ``patches`` float16 (N, ...), ``labels`` (N,), ``scan_ids`` (N,), ``hard``
    (N,) bool: the row is one of the U-Net's own candidates (see :func:`hard_rows`; all False when not given)."""

    patches: np.ndarray
    labels: np.ndarray
    scan_ids: np.ndarray
    hard: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.hard is None:
            self.hard = np.zeros(len(self.labels), dtype=bool)

    @classmethod
    def concat(cls, parts: list[PatchSet]) -> PatchSet:
        fields = ("patches", "labels", "scan_ids", "hard")
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in fields))

    def subset(self, mask: np.ndarray) -> PatchSet:
        return PatchSet(self.patches[mask], self.labels[mask], self.scan_ids[mask], self.hard[mask])


def hard_rows(table: pd.DataFrame) -> np.ndarray:
    """(N,) bool: rows of a labelled candidate table that came from the U-Net (``source`` == ``unet``)."""
    if "source" not in table.columns:
        return np.zeros(len(table), dtype=bool)
    return (table["source"] == HARD_SOURCE).to_numpy()


def table_spacing(table: pd.DataFrame, patch: PatchConfig) -> np.ndarray | None:
    """Per-row sampling step (mm) of a candidate table for size-scaled patches (its ``diameter_mm``), else None."""
    diameters = table["diameter_mm"].to_numpy(float) if "diameter_mm" in table.columns else None
    return candidate_spacing(patch, diameters)


def cut_patches(scan: CTScan, table: pd.DataFrame, patch: PatchConfig, margin: int) -> PatchSet:
    """Patches (with ``margin`` extra voxels per side, at the step of the unpadded patch) for the rows of one
    scan's labelled table."""
    big = replace(patch, size=patch.size + 2 * margin)
    values = extract_patches(scan, table[XYZ].to_numpy(float), big, table_spacing(table, patch)).astype(np.float16)
    return PatchSet(values, table.label.to_numpy(np.int8), np.full(len(table), scan.id))


def center_crop(patches: np.ndarray, size: int, dims: int) -> np.ndarray:
    """The central ``size`` voxels of each (margin-padded) patch along its ``dims`` spatial axes."""
    start = (patches.shape[1] - size) // 2
    index = (slice(None),) + (slice(start, start + size),) * dims
    return patches[index]


def scaled_crop(patch: np.ndarray, size: int, dims: int, zoom: float, rng) -> np.ndarray:
    """A ``size``-voxel crop of a margin-padded patch, magnified ``zoom`` times about the candidate (voxel
    ``shape // 2`` -> ``size // 2``) and shifted at random by up to the padding's width (input voxels) while
    staying inside it (linear interpolation).

    Args:
        patch: (P, ..., channels) with ``dims`` spatial axes of P voxels.

    Returns:
        float32 (size, ..., channels).
    """
    padded, centre_in, centre_out = patch.shape[0], patch.shape[0] // 2, size // 2
    margin = (padded - size) // 2  # shifts of at most the padding (as integer crops), inside the padded patch
    low = max(-margin, centre_out / zoom - centre_in)
    high = min(margin, padded - 1 - centre_in - (size - 1 - centre_out) / zoom)
    shift = rng.uniform(low, high, size=dims) if low < high else np.zeros(dims)
    axes = [centre_in + (np.arange(size) - centre_out) / zoom + shift[a] for a in range(dims)]
    grid = np.meshgrid(*axes, np.arange(patch.shape[-1]), indexing="ij")
    return ndimage.map_coordinates(patch.astype(np.float32), grid, order=1, mode="nearest")


#: HU per unit of a [0, 1]-normalised patch (the offset jitter's historical scale, kept for its draws).
HU_PER_UNIT = 2000.0


def augment(patch: np.ndarray, size: int, dims: int, config: FprSamplingConfig, rng) -> np.ndarray:
    """Random crop (shift), zoom (``scale_range``), flips, 90-degree in-plane rotation, kernel and noise
    (:func:`scanner_jitter`) and intensity jitter of one patch."""
    if config.scale_range == (1.0, 1.0):  # integer crops, the random draws of models trained before scaling
        start = rng.integers(0, patch.shape[0] - size + 1, size=dims)
        out = patch[tuple(slice(s, s + size) for s in start)].astype(np.float32)
    else:
        out = scaled_crop(patch, size, dims, rng.uniform(*config.scale_range), rng)
    if config.flip:
        for axis in range(dims):
            if rng.random() < 0.5:
                out = np.flip(out, axis)
    if config.rotate90:
        out = np.rot90(out, k=int(rng.integers(4)), axes=(dims - 2, dims - 1))
    out = scanner_jitter(out, dims, config, rng, HU_PER_UNIT)
    jitter = out * rng.uniform(*config.contrast_range) + rng.uniform(-config.hu_offset, config.hu_offset) / HU_PER_UNIT
    return np.clip(jitter, 0.0, 1.0)


def balanced_stream(data: PatchSet, size: int, dims: int, config: FprSamplingConfig, seed: int) -> Iterator:
    """Endless seeded (x, y, w) samples, positives drawn with probability ``positive_fraction``; a negative comes
    from the hard ones (:attr:`PatchSet.hard`) with probability ``hard_negative_fraction``, else from all."""
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(data.labels == 1), np.flatnonzero(data.labels == 0)
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError(f"need positives and negatives, got {len(pos)} and {len(neg)}")
    hard = np.flatnonzero((data.labels == 0) & data.hard)
    favour = config.hard_negative_fraction if len(hard) else 0.0  # 0: no extra draw, the bundled model's stream
    while True:
        is_pos = rng.random() < config.positive_fraction
        pool = pos if is_pos else hard if favour and rng.random() < favour else neg
        i = pool[rng.integers(len(pool))]
        x = augment(data.patches[i], size, dims, config, rng)
        yield x, np.float32([float(is_pos)]), np.float32(1.0)


def make_dataset(data: PatchSet, size: int, dims: int, config: FprSamplingConfig, batch: int, seed: int):
    """Batched ``tf.data.Dataset`` of :func:`balanced_stream`."""
    sample = augment(data.patches[0], size, dims, config, np.random.default_rng(0))
    signature = (
        tf.TensorSpec(sample.shape, tf.float32),
        tf.TensorSpec((1,), tf.float32),
        tf.TensorSpec((), tf.float32),
    )
    ds = tf.data.Dataset.from_generator(
        lambda: balanced_stream(data, size, dims, config, seed), output_signature=signature
    )
    return ds.batch(batch, drop_remainder=True).prefetch(2)
