"""U-Net training data: 2.5-D slice patches sampled from the preprocess cache.

Each sample is a ``(P, P, 2c + 1)`` stack of adjacent normalised axial slices (``c`` = context slices,
edge slices repeated at the volume's ends), its ``(P, P, 1)`` nodule target and a ``(P, P, 1)`` loss
weight (0 on excluded findings). Patches are centred on a nodule (positives), on a vessel-like bright
voxel inside the lungs (hard negatives: the detector's main confusion) or on a random lung voxel
(negatives), in configured proportions, then augmented: flips, small rotations and scalings, HU offset
and contrast jitter.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from scipy import ndimage

from lungcad.candidates.targets import nodule_targets
from lungcad.preprocess.pipeline import PreprocessedScan
from lungcad.train.augment import check_jitter, scanner_jitter


@dataclass(frozen=True)
class SamplingConfig:
    """Patch sampling and augmentation (``sampling:`` section of ``configs/unet.yaml``).

    Attributes:
        patch_size: patch side in pixels of the cache grid.
        positive_fraction, hard_negative_fraction: shares of nodule / vessel-centred patches (the rest
            are random lung patches).
        hard_negative_hu: HU above which a lung voxel (outside nodules) counts as vessel-like.
        max_shift_fraction: a positive's nodule centre is shifted up to this fraction of the patch.
        flip: random left-right / up-down flips.
        rotation_deg, scale_range: in-plane rotation (+-deg) and isotropic scaling range.
        hu_offset, contrast_range: added HU offset (+-) and multiplicative contrast jitter.
        positive_size_power: nodule ``i`` is drawn as a positive with weight ``d_i ** -power`` (``d_i`` its
            equivalent diameter in mm): 0 draws every nodule alike, 1 draws a 4 mm nodule 5 times as often as
            a 20 mm one (the small ones are the detector's misses).
        positive_contact_boost: that weight times ``1 + boost * contact``, ``contact`` the fraction of the
            nodule's surface touching vessel-bright or wall voxels (juxtavascular / juxtapleural nodules).
        positive_miss_boost: hard-positive mining when fine-tuning (``--init``): that weight times
            ``1 + boost * miss``, ``miss = 1 - peak`` with ``peak`` the starting model's highest probability
            on the nodule (:func:`lungcad.train.candidates.mining.nodule_peaks`): the nodules it misses are drawn
            up to ``1 + boost`` times as often.
        noise_hu, kernel_probability, blur_sigma_mm, sharpen_amount: dose and reconstruction kernel per patch
            (:func:`lungcad.train.augment.scanner_jitter`, each context slice filtered in-plane); 0: none (the
            models trained before 2026-12-05).
    """

    patch_size: int
    positive_fraction: float
    hard_negative_fraction: float
    hard_negative_hu: float
    max_shift_fraction: float
    flip: bool
    rotation_deg: float
    scale_range: tuple[float, float]
    hu_offset: float
    contrast_range: tuple[float, float]
    positive_size_power: float = 0.0
    positive_contact_boost: float = 0.0
    positive_miss_boost: float = 0.0
    noise_hu: float = 0.0
    kernel_probability: float = 0.0
    blur_sigma_mm: float = 0.0
    sharpen_amount: float = 0.0

    def __post_init__(self) -> None:
        check_jitter(self)
        for name in ("positive_size_power", "positive_contact_boost", "positive_miss_boost"):
            if getattr(self, name) < 0:
                raise ValueError(f"sampling.{name} must be >= 0, got {getattr(self, name)}")


class SliceMask:
    """A sparse bool (Z, Y, X) mask kept as its non-empty axial planes (nodule targets are a few slices)."""

    def __init__(self, mask: np.ndarray):
        self.shape = mask.shape
        self.planes = {int(z): mask[z].copy() for z in np.flatnonzero(mask.any(axis=(1, 2)))}

    def __getitem__(self, z: int) -> np.ndarray:
        plane = self.planes.get(int(z))
        return plane if plane is not None else np.zeros(self.shape[1:], dtype=bool)


@dataclass
class TrainingScan:
    """One cached scan with its targets and the voxels patches are centred on (z, y, x indices)."""

    id: str
    image: np.ndarray  # (Z, Y, X) normalised (memory-mapped cache)
    target: SliceMask
    ignore: SliceMask
    nodules: list[np.ndarray]  # per nodule (connected target component): (N_i, 3) of its voxels
    nodule_weights: np.ndarray  # (n_nodules,) relative chance of each nodule being drawn as a positive
    vessel_voxels: np.ndarray  # (M, 3) bright lung voxels outside nodules
    lung_voxels: np.ndarray  # (K, 3) random lung voxels
    hu_window: tuple[float, float]
    pixel_mm: float = 1.0  # in-plane voxel size of the cache grid


def training_scan(pre: PreprocessedScan, annotations, excluded, config: SamplingConfig, rng) -> TrainingScan:
    """Targets for a cached scan and the voxels its patches are centred on (subsampled pools).

    Positives are drawn per nodule (see :func:`patch_stream`), so a 4 mm nodule is sampled at least as often
    as a 30 mm one, which has 400 times its voxels; :func:`positive_weight` favours small and attached ones.
    """
    target, ignore = nodule_targets(pre.scan, annotations, excluded)
    image = np.asarray(pre.image)
    lung = np.asarray(pre.lung_mask)
    lo, hi = pre.info["hu_window"]
    threshold = (config.hard_negative_hu - lo) / (hi - lo)
    vessel = lung & (image > threshold) & ~ndimage.binary_dilation(target | ignore, iterations=2)

    def pool(mask: np.ndarray, limit: int = 20000) -> np.ndarray:
        idx = np.flatnonzero(mask)
        if idx.size > limit:
            idx = rng.choice(idx, limit, replace=False)
        return np.column_stack(np.unravel_index(idx, mask.shape)) if idx.size else np.zeros((0, 3), int)

    labels, n = ndimage.label(target)
    nodules, weights = [], []
    bright = (image > threshold) | ~lung
    for lab, box in enumerate(ndimage.find_objects(labels), start=1):
        component = labels[box] == lab
        nodules.append(pool(component, limit=2000) + np.array([b.start for b in box]))
        weights.append(positive_weight(component, bright, box, pre.scan.spacing, config))
    return TrainingScan(
        pre.scan.id,
        image,
        SliceMask(target),
        SliceMask(ignore),
        nodules,
        np.asarray(weights, dtype=float),
        pool(vessel),
        pool(lung),
        (lo, hi),
        float(pre.scan.spacing[1]),
    )


def positive_weight(
    component: np.ndarray, bright: np.ndarray, box: tuple[slice, ...], spacing_mm, config: SamplingConfig
) -> float:
    """Sampling weight of one nodule: ``d ** -positive_size_power * (1 + positive_contact_boost * contact)``.

    Args:
        component: bool mask of the nodule inside ``box`` (a bounding box of the (Z, Y, X) grid).
        bright: (Z, Y, X) bool, vessel-bright lung voxels or voxels outside the lungs.
        spacing_mm: grid spacing (z, y, x) in mm, for the equivalent diameter ``d`` (mm).
    """
    volume_mm3 = float(component.sum()) * float(np.prod(spacing_mm))
    diameter_mm = max((6.0 * volume_mm3 / np.pi) ** (1.0 / 3.0), 1.0)
    grown = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box)
    padded = np.zeros([g.stop - g.start for g in grown], dtype=bool)
    padded[tuple(slice(b.start - g.start, b.stop - g.start) for b, g in zip(box, grown))] = component
    shell = ndimage.binary_dilation(padded) & ~padded
    contact = float(bright[grown][shell].mean()) if shell.any() else 0.0
    return diameter_mm**-config.positive_size_power * (1.0 + config.positive_contact_boost * contact)


def _stack(scan: TrainingScan, z: int, context: int) -> np.ndarray:
    """(Y, X, 2c+1) float32 slices z-c..z+c, indices clamped at the volume ends."""
    zs = np.clip(np.arange(z - context, z + context + 1), 0, scan.image.shape[0] - 1)
    return np.moveaxis(scan.image[zs].astype(np.float32), 0, -1)


def _centre(
    scan: TrainingScan, kind: str, rng: np.random.Generator, config: SamplingConfig, nodule: int | None = None
) -> np.ndarray:
    """A patch centre (z, y, x): a voxel of nodule ``nodule`` (shifted in-plane), a vessel or a lung voxel."""
    if kind == "pos" and nodule is not None and scan.nodules:
        pool = scan.nodules[nodule]
    else:
        pool = scan.vessel_voxels if kind == "hard" else scan.lung_voxels
    if len(pool) == 0:
        pool = scan.lung_voxels if len(scan.lung_voxels) else np.array([[s // 2 for s in scan.image.shape]])
    centre = pool[rng.integers(len(pool))].astype(float)
    if kind == "pos":
        shift = config.max_shift_fraction * config.patch_size
        centre[1:] += rng.uniform(-shift, shift, size=2)
    return centre


def _affine(rng: np.random.Generator, config: SamplingConfig) -> np.ndarray:
    """2x2 output->input matrix: rotation, scaling and flips."""
    angle = np.radians(rng.uniform(-config.rotation_deg, config.rotation_deg))
    scale = rng.uniform(*config.scale_range)
    c, s = np.cos(angle), np.sin(angle)
    matrix = np.array([[c, -s], [s, c]]) / scale
    if config.flip:
        matrix = matrix @ np.diag(rng.choice([-1.0, 1.0], size=2))
    return matrix


def sample_patch(
    scan: TrainingScan, kind: str, context: int, config: SamplingConfig, rng, nodule: int | None = None
) -> tuple[np.ndarray, ...]:
    """One augmented sample (x (P,P,C), y (P,P,1), w (P,P,1)), float32, centred as ``kind`` says
    (``kind == "pos"``: on nodule number ``nodule`` of the scan, a random one when None)."""
    p = config.patch_size
    if kind == "pos" and nodule is None and scan.nodules:
        nodule = int(rng.integers(len(scan.nodules)))
    centre = _centre(scan, kind, rng, config, nodule)
    z = int(round(centre[0]))
    matrix = _affine(rng, config)
    offset = centre[1:] - matrix @ np.array([(p - 1) / 2, (p - 1) / 2])
    air = (-1024.0 - scan.hu_window[0]) / (scan.hu_window[1] - scan.hu_window[0])

    def warp(plane: np.ndarray, order: int, fill: float) -> np.ndarray:
        return ndimage.affine_transform(
            plane, matrix, offset, output_shape=(p, p), order=order, mode="constant", cval=fill
        )

    stack = _stack(scan, z, context)
    x = np.stack([warp(stack[..., i], 1, air) for i in range(stack.shape[-1])], axis=-1)
    y = warp(scan.target[z].astype(np.float32), 0, 0.0)
    w = 1.0 - warp(scan.ignore[z].astype(np.float32), 0, 0.0)
    lo, hi = scan.hu_window
    x = scanner_jitter(x, 2, config, rng, hi - lo, voxel_mm=scan.pixel_mm)
    offset_norm = rng.uniform(-config.hu_offset, config.hu_offset) / (hi - lo)
    x = np.clip(x * rng.uniform(*config.contrast_range) + offset_norm, 0.0, 1.0)
    return x.astype(np.float32), y[..., None], w[..., None].astype(np.float32)


def patch_stream(
    scans: list[TrainingScan], context: int, config: SamplingConfig, seed: int
) -> Iterator[tuple[np.ndarray, ...]]:
    """Endless seeded stream of samples over ``scans``."""
    rng = np.random.default_rng(seed)
    kinds = np.array(["pos", "hard", "neg"])
    neg = 1.0 - config.positive_fraction - config.hard_negative_fraction
    probs = np.array([config.positive_fraction, config.hard_negative_fraction, neg])
    nodules = [(i, j) for i, s in enumerate(scans) for j in range(len(s.nodules))]  # positives: by nodule
    weights = np.array([scans[i].nodule_weights[j] for i, j in nodules], dtype=float)
    uniform = weights.size == 0 or bool(np.allclose(weights, weights[0]))  # the stream of earlier versions
    weights = weights / weights.sum() if weights.size else weights
    while True:
        kind = str(rng.choice(kinds, p=probs))
        if kind == "pos" and nodules:
            pick = rng.integers(len(nodules)) if uniform else rng.choice(len(nodules), p=weights)
            i, j = nodules[pick]
            yield sample_patch(scans[i], kind, context, config, rng, nodule=j)
        else:
            yield sample_patch(scans[rng.integers(len(scans))], kind, context, config, rng)


def make_dataset(scans: list[TrainingScan], context: int, config: SamplingConfig, batch: int, seed: int):
    """``tf.data.Dataset`` of batched (x, y, w) from :func:`patch_stream`."""
    p, channels = config.patch_size, 2 * context + 1
    signature = (
        tf.TensorSpec((p, p, channels), tf.float32),
        tf.TensorSpec((p, p, 1), tf.float32),
        tf.TensorSpec((p, p, 1), tf.float32),
    )
    ds = tf.data.Dataset.from_generator(lambda: patch_stream(scans, context, config, seed), output_signature=signature)
    return ds.batch(batch, drop_remainder=True).prefetch(2)


def dice_bce_loss(
    y_true: tf.Tensor, y_pred: tf.Tensor, weight: tf.Tensor, pos_weight: float = 1.0, smooth: float = 1.0
) -> tf.Tensor:
    """Per-example (B,) loss: binary cross-entropy (nodule pixels weighted ``pos_weight``) + (1 - soft Dice).

    The Dice is computed over the whole (per-replica) batch and added to every example: a per-example Dice
    rewards empty predictions on the many nodule-free patches and collapsed training to all zeros.
    Pixels with weight 0 (excluded findings) are ignored.
    """
    y_pred = tf.clip_by_value(tf.cast(y_pred, tf.float32), 1e-6, 1.0 - 1e-6)
    bce = -(pos_weight * y_true * tf.math.log(y_pred) + (1.0 - y_true) * tf.math.log(1.0 - y_pred))
    axes = [1, 2, 3]
    bce = tf.reduce_sum(bce * weight, axes) / (tf.reduce_sum(weight, axes) + 1e-6)
    inter = tf.reduce_sum(y_true * y_pred * weight)
    total = tf.reduce_sum((y_true + y_pred) * weight)
    return bce + 1.0 - (2.0 * inter + smooth) / (total + smooth)
