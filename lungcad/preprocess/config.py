"""Preprocessing configuration as frozen dataclasses.

The values live only in ``configs/preprocess.yaml`` (no defaults here, so code and file cannot drift):
``load_config(PreprocessConfig, "preprocess")``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class LungMaskConfig:
    """Classical lung segmentation settings (HU, mm, mL); meanings in ``configs/preprocess.yaml``."""

    working_spacing_mm: float
    air_threshold_hu: float
    airway_threshold_hu: float
    airway_max_ml: float
    min_lung_ml: float
    lung_min_height: float
    closing_radius_mm: float
    border_threshold_hu: float
    pleura_shell_voxels: int
    pleura_tile_voxels: int
    pleura_rim_voxels: int
    pleura_tolerance_mm: float


@dataclass(frozen=True)
class PreprocessConfig:
    """HU window, normalisation, target spacing (z, y, x) mm, crop margin and lung-mask settings."""

    hu_window: tuple[float, float]
    normalise: Literal["minmax", "none"]
    target_spacing_mm: tuple[float, float, float] | None
    crop_margin_mm: float
    output_dtype: Literal["float16", "float32", "int16"]
    lung_mask: LungMaskConfig

    def __post_init__(self) -> None:
        lo, hi = self.hu_window
        if not lo < hi:
            raise ValueError(f"hu_window must be [low, high] with low < high, got {self.hu_window}")
        if (self.normalise == "none") != (self.output_dtype == "int16"):
            raise ValueError("normalise: none keeps HU (output_dtype int16); minmax gives [0, 1] (float16/32)")


def default_config() -> PreprocessConfig:
    """The bundled ``configs/preprocess.yaml``."""
    from lungcad.config import load_config

    return load_config(PreprocessConfig, "preprocess")
