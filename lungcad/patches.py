"""Stage 5, patches: fixed-size patches cut around world-coordinate candidates.

Patches are sampled on a grid aligned with the *patient* (world LPS) axes, at a fixed spacing in mm,
whatever the scan's own spacing and direction: a LUNA16 scan stored flipped gives the same patch as its
unflipped twin. Axes of a cube: ``[z, y, x]`` = world +z (superior), +y (posterior), +x (patient left),
centre voxel ``size // 2`` on the candidate. 2.5-D patches are the axial, coronal and sagittal planes
through the centre as 3 channels (the seed WideResNet's 3-channel input); 9-view patches add the six planes
through the cube's diagonals (Setio et al., IEEE TMI 2016, multi-view ConvNets for LUNA16 false-positive
reduction): a vessel oblique to all three orthogonal planes is a round blob in each of them, but a tube in the
diagonal plane along it. Values are HU windowed and
scaled to [0, 1]; outside the volume counts as air. All candidates of a scan are sampled in one
``scipy.ndimage.map_coordinates`` call (trilinear): no Python loop per voxel or per patch.

With ``diameters_across > 0`` the step is chosen per candidate so that the patch spans that many times its
diameter (never finer than ``spacing_mm``): every nodule fills the same share of its patch, at the resolution
its size allows (the nodule classifiers' shape cues: spicules of a 30 mm nodule reach beyond a fixed 32 mm
patch, those of an 8 mm one are a few voxels wide in it).

With ``scales`` (e.g. ``[1.0, 0.5]``) each patch is cut at several steps, ``spacing_mm`` times each scale, all on
the same centre and with the same number of voxels, and the scales' planes (or cubes) are stacked as channels: a
32 mm view for the context (vessel, wall) and a 16 mm view at 0.5 mm in which a 3 mm nodule spans 6 voxels instead
of 3 (multi-scale input, as in Shen et al., IPMI 2015, multi-scale CNNs for lung nodule classification).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from scipy import ndimage

from lungcad.io.hu import PADDING_HU
from lungcad.preprocess.intensity import window_normalise
from lungcad.scan import CTScan


@dataclass(frozen=True)
class PatchConfig:
    """Patch geometry (``scorer.patches`` of ``configs/fpr.yaml``; a model's ``fpr.yaml`` ``patches``).

    Attributes:
        size: voxels per side (odd sizes put the candidate exactly on the centre voxel).
        spacing_mm: isotropic sampling step in mm.
        mode: "2.5d" -> (N, size, size, 3) orthogonal planes; "9view" -> (N, size, size, 9) orthogonal and
            diagonal planes (:data:`PLANE_AXES`); "3d" -> (N, size, size, size, 1) cubes.
        hu_window: HU mapped to [0, 1].
        diameters_across: > 0: the patch spans this many candidate diameters (``spacing_mm`` is then the finest
            step); 0: every patch has the step ``spacing_mm``.
        scales: step multipliers, one view per scale, stacked scale-major as channels (``(1.0,)``: one scale).
    """

    size: int
    spacing_mm: float
    mode: Literal["2.5d", "9view", "3d"]
    hu_window: tuple[float, float]
    diameters_across: float = 0.0
    scales: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if self.mode not in CHANNELS:
            raise ValueError(f"patches.mode {self.mode!r}: expected one of {sorted(CHANNELS)}")
        if not self.scales or min(self.scales) <= 0:
            raise ValueError(f"patches.scales {list(self.scales)}: expected one or more positive step multipliers")

    @property
    def channels(self) -> int:
        """Channels of a patch: planes ("2.5d"/"9view") or cubes ("3d", 1 each) times the number of scales."""
        return CHANNELS[self.mode] * len(self.scales)


_S = np.sqrt(0.5)
_X, _Y, _Z = np.eye(3)  # world axes as (x, y, z) vectors
#: (row, column) unit vectors in world (x, y, z) of each plane of a planar patch mode, in channel order.
PLANE_AXES: dict[str, tuple[tuple[np.ndarray, np.ndarray], ...]] = {
    "2.5d": ((_Y, _X), (_Z, _X), (_Z, _Y)),  # axial, coronal, sagittal
}
PLANE_AXES["9view"] = PLANE_AXES["2.5d"] + (
    ((_Y + _Z) * _S, _X), ((_Y - _Z) * _S, _X),  # planes holding the x axis, diagonal in y-z
    ((_X + _Z) * _S, _Y), ((_X - _Z) * _S, _Y),  # ... the y axis, diagonal in x-z
    (_Z, (_X + _Y) * _S), (_Z, (_X - _Y) * _S),  # ... the z axis, diagonal in x-y
)  # fmt: skip
CHANNELS = {"3d": 1} | {mode: len(axes) for mode, axes in PLANE_AXES.items()}


def _offsets(config: PatchConfig) -> np.ndarray:
    """1-D offsets (mm) of the patch grid from its centre voxel ``size // 2``."""
    return (np.arange(config.size) - config.size // 2) * config.spacing_mm


def patch_points(config: PatchConfig) -> np.ndarray:
    """World offsets (mm, x, y, z) of every patch voxel from the centre, shape (*patch_shape, 3):
    (size, size, size, scales, 3) for "3d", (size, size, planes * scales, 3) for planar modes."""
    views = []
    for scale in config.scales:
        o = _offsets(config) * scale
        if config.mode == "3d":
            z, y, x = np.meshgrid(o, o, o, indexing="ij")
            views.append(np.stack([x, y, z], axis=-1))
        else:
            views.extend(o[:, None, None] * row + o[None, :, None] * col for row, col in PLANE_AXES[config.mode])
    return np.stack(views, axis=-2)


def candidate_spacing(config: PatchConfig, diameters_mm: np.ndarray | None) -> np.ndarray | None:
    """Per-candidate sampling step (N,) mm when ``config.diameters_across > 0``, else None (fixed step).

    Raises:
        ValueError: size-scaled patches without the candidates' diameters.
    """
    if config.diameters_across <= 0:
        return None
    if diameters_mm is None:
        raise ValueError("size-scaled patches (diameters_across > 0) need each candidate's diameter_mm")
    diameters = np.nan_to_num(np.asarray(diameters_mm, dtype=np.float64), nan=0.0)
    return np.maximum(config.spacing_mm, config.diameters_across * diameters / config.size)


def extract_patches(
    scan: CTScan, centres_xyz: np.ndarray, config: PatchConfig, spacing_mm: np.ndarray | None = None
) -> np.ndarray:
    """Patches around world centres (N, 3) mm.

    Args:
        spacing_mm: per-candidate sampling step (N,) mm (see :func:`candidate_spacing`); None: ``config.spacing_mm``.

    Returns:
        float32 (N, size, size, config.channels) for planar modes or (N, size, size, size, config.channels) for
        "3d", in [0, 1].
    """
    centres = np.atleast_2d(np.asarray(centres_xyz, dtype=np.float64))
    if spacing_mm is None:
        offsets = patch_points(config)[None]
    else:  # unit-step offsets scaled per candidate
        unit = patch_points(replace(config, spacing_mm=1.0))
        offsets = unit[None] * np.asarray(spacing_mm, dtype=np.float64).reshape((-1,) + (1,) * unit.ndim)
    world = centres.reshape((-1,) + (1,) * (offsets.ndim - 2) + (3,)) + offsets
    values = sample_hu(scan, world.reshape(-1, 3))
    return window_normalise(values, config.hu_window).reshape(world.shape[:-1])


def sample_hu(scan: CTScan, world_xyz: np.ndarray, outside_hu: float = PADDING_HU) -> np.ndarray:
    """HU (M,) float32 of ``scan`` at world points (M, 3) mm (x, y, z), trilinear; ``outside_hu`` beyond the volume.
    The one world-grid sampler of the per-candidate stages (patches, risk features)."""
    voxels = scan.world_to_voxel(np.asarray(world_xyz, dtype=np.float64), outside="keep")  # (M, 3) z, y, x
    return ndimage.map_coordinates(scan.array, voxels.T, order=1, mode="constant", cval=outside_hu, output=np.float32)
