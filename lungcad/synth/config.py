"""Configuration of the synthetic phantoms: ``configs/synth.yaml`` loaded into frozen dataclasses.

Every number that shapes a phantom lives in the YAML file (the dataclasses have no defaults), so a
phantom change is a data change. Units: millimetres (mm) and Hounsfield units (HU). A pair
``[low, high]`` is a range drawn uniformly once per scan (or per object) unless said otherwise.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lungcad.config import load_config

Range = tuple[float, float]


@dataclass(frozen=True)
class GeometryConfig:
    """Scanner geometry: field of view, spacings, slice count, origin and direction."""

    inplane_spacing_mm: tuple[float, float, float]  # triangular (low, mode, high) spacing at a 512 matrix
    slice_spacing_mm: tuple[float, ...]  # choices for the slice spacing
    slice_spacing_weights: tuple[float, ...]
    slice_thickness_factor: Range  # thickness / spacing (>= 1: overlapping reconstructions)
    chest_length_mm: Range  # z extent of the scan
    apex_margin_mm: Range  # scan top above the lung apices
    base_margin_mm: Range  # scan bottom below the costophrenic recesses
    body_width_fraction: Range  # body width / FOV diameter
    body_offset_mm: Range  # body centre offset from the FOV centre (x and y each)
    fov_centre_mm: Range  # world x, y of the FOV centre (each)
    origin_z_mm: Range  # world z of the first slice
    flip_probability: float  # LUNA16 scans written with direction diag(-1, -1, 1)
    outside_fov_hu: tuple[int, ...]  # HU stored outside the scan circle in LUNA16 files (choices)
    outside_fov_weights: tuple[float, ...]


@dataclass(frozen=True)
class TissueHU:
    """Mean HU of each tissue class (ranges drawn per scan)."""

    air: float
    fat: Range
    muscle: Range
    blood: Range
    liver: Range
    csf: float
    cartilage: Range
    bone_cortex: Range
    bone_marrow: Range
    lung: Range  # anterior (non-dependent) parenchyma
    lung_gradient: Range  # extra HU in the posterior (dependent) lung
    lung_texture: Range  # amplitude of the low-frequency parenchymal texture
    table: float
    lung_expiration_hu: float  # HU added to the parenchyma at full expiration (anatomy.expiration = 1); 0 = none


@dataclass(frozen=True)
class AnatomyConfig:
    """Sizes of the body parts, for a patient whose body half-width is ``reference_half_width_mm``."""

    reference_half_width_mm: float
    body_aspect: Range  # AP / lateral body diameter
    fat_mm: Range
    muscle_mm: Range  # anterior and lateral chest-wall muscle
    back_muscle_mm: Range  # posterior (paraspinal) muscle
    rib_layer_mm: Range
    mediastinum_half_width_mm: Range
    apex_taper: Range  # thoracic width at the apex / at the base
    apex_cap_mm: Range  # height of the rounded lung apex
    dome_height_mm: Range  # right hemidiaphragm dome above the recess
    left_dome_drop_mm: Range  # left dome lower than the right
    heart_size_mm: tuple[float, float, float]  # semi-axes (lateral, AP, craniocaudal)
    heart_scale: Range
    aorta_radius_mm: Range
    trachea_radius_mm: Range
    carina_below_apex_mm: Range
    vertebra_radius_mm: Range
    vertebra_pitch_mm: Range
    rib_count: int
    rib_width_mm: Range
    rib_thickness_mm: Range
    rib_slope_mm: Range  # how much lower a rib's anterior end is than its posterior end
    gastric_bubble_probability: float
    table_probability: float
    texture_cell_mm: float
    # Per-scan body knobs, drawn from the ``body`` stream (see ``lungcad.synth.anatomy.draw_body``); the neutral
    # values (scales [1, 1], expiration [0, 0]) reproduce the phantoms of before bit for bit.
    habitus: Range  # subcutaneous fat / the drawn fat_mm (thin < 1 < obese)
    habitus_outward: float  # share of the extra fat that widens the body (the rest shrinks the chest inside it)
    body_aspect_scale: Range  # multiplies the drawn body_aspect (flat < 1 < barrel chest)
    expiration: Range  # breathing state: 0 full inspiration (as before) .. 1 full expiration (residual volume)
    expiration_height_loss: float  # share of the apex-to-recess lung height lost at full expiration
    expiration_dome_gain: float  # relative rise of the diaphragm domes at full expiration
    expiration_width_loss: float  # share of the thoracic cavity's width and depth lost at full expiration
    lung_width_scale: Range  # multiplies the thoracic cavity's lateral semi-axis (narrow < 1 < wide chest)
    cardiac_scale: Range  # multiplies the heart's semi-axes (> 1.3: cardiomegaly)
    mediastinum_scale: Range  # multiplies the mediastinum half-width


@dataclass(frozen=True)
class VesselConfig:
    """Pulmonary vessel and intrapulmonary airway trees (grown by random Murray-law branching)."""

    trees_per_lung: int
    root_radius_mm: Range
    min_radius_mm: float
    length_per_radius: Range  # segment length / radius
    taper: Range  # radius at a segment's end / at its start
    asymmetry: Range  # minor child radius / major child radius at a bifurcation
    angle_jitter: float  # random spread added to the Murray-optimal branching cosine
    outward_bias: float  # pull of each new segment away from the hilum
    direction_jitter: float
    max_generations: int
    airway_root_radius_mm: Range
    airway_min_radius_mm: float
    airway_wall_fraction: float  # wall thickness / lumen radius
    airway_wall_min_mm: float
    # Per-scan tree knobs, drawn from the ``body`` stream; neutral: scales [1, 1], shift [0, 0], tip_radius_mm null.
    calibre_scale: Range  # multiplies every vessel radius after growth
    asymmetry_scale: Range  # multiplies each bifurcation's minor/major radius ratio (< 1: more asymmetric)
    branch_cos_shift: Range  # added to the Murray branching cosines (< 0: wider branching angles)
    tortuosity: Range  # multiplies direction_jitter (how much a branch turns from one segment to the next)
    tip_radius_mm: Range | None  # null: off (vessels end as grown); else the radius vessels taper to at the pleura
    pleura_taper: Range  # radius cap gained per mm of distance from the pleura (mm / mm), when tip_radius_mm is set
    tip_taper_length: Range  # length of the cone appended to a blunt terminal vessel / its end radius
    hilum_relief_mm: float  # within this distance (x body scale) of a tree's root the cap is relaxed to its radius
    taper_grid_mm: float  # spacing of the grid of the distance-to-pleura field
    airway_calibre_scale: Range  # multiplies the airway lumen radii (trachea, bronchi and the intrapulmonary tree)
    airway_wall_scale: Range  # multiplies the airway wall thickness (> 1: bronchial wall thickening)


@dataclass(frozen=True)
class NoduleTypeHU:
    """Mean HU ranges of the nodule densities."""

    solid: Range
    ggo: Range
    calcified: Range
    texture: Range  # amplitude of the internal texture, solid
    ggo_texture: Range


@dataclass(frozen=True)
class NoduleConfig:
    """How many nodules, of which kind, where."""

    count_weights: tuple[float, ...]  # P(0), P(1), ... nodules >= 3 mm per scan
    diameter_median_mm: float  # log-normal diameter
    diameter_sigma: float
    diameter_range_mm: Range
    type_names: tuple[str, ...]
    type_weights: tuple[float, ...]
    shape_names: tuple[str, ...]
    shape_weights: tuple[float, ...]
    location_names: tuple[str, ...]
    location_weights: tuple[float, ...]
    hu: NoduleTypeHU
    aspect: Range  # ellipsoid semi-axis ratios
    core_fraction: Range  # part-solid: solid-core diameter / total diameter
    central_calcification_probability: float
    lobes: tuple[int, int]  # lobulated: number of blobs (inclusive)
    spikes: tuple[int, int]  # spiculated: number of spicules (inclusive)
    spike_length: Range  # spicule length / radius
    spike_width: Range  # spicule base half-width / radius
    edge_mm: float  # width of the soft edge
    tiny_count_weights: tuple[float, ...]  # P(0), P(1), ... excluded nodules < 3 mm
    tiny_diameter_mm: Range
    min_separation_mm: float
    pleura_margin_mm: float  # intraparenchymal nodules keep this far from the lung border
    min_free_fraction: float = 0.0  # share of a nodule's ball in aerated lung (not vessel, airway, wall)


@dataclass(frozen=True)
class NoiseConfig:
    """Reconstruction blur and quantum noise."""

    psf_sigma_mm: Range  # in-plane Gaussian point-spread function
    z_sigma_fraction: float  # extra slice-profile blur, as a fraction of the slice thickness
    sigma_hu: Range  # noise standard deviation at a 512 matrix (scales with 1 / pixel size)
    correlation_px: float  # in-plane noise correlation (sigma of the smoothing kernel, pixels)
    hu_clip: tuple[int, int]  # the scanner's HU range


@dataclass(frozen=True)
class CandidateConfig:
    """The candidates.csv rows per scan (LUNA16 V2 style)."""

    per_nodule: tuple[int, int]  # class-1 rows per nodule: the centre plus jittered copies
    vessel_points: int
    lung_points: int
    other_points: int
    min_vessel_radius_mm: float
    nodule_clearance_mm: float  # class-0 points keep this far outside every nodule


@dataclass(frozen=True)
class CancerRuleConfig:
    """Thresholds of the deterministic malignancy rule (see :mod:`lungcad.synth.cancer`)."""

    spiculated_min_mm: float
    solid_min_mm: float
    lobulated_min_mm: float


@dataclass(frozen=True)
class SynthConfig:
    """Everything that shapes a synthetic dataset."""

    max_slices: int | None  # cap on slices (the slice spacing grows to keep the whole chest); tests
    luna_subsets: int  # scans are spread over subset0..subset{n-1}
    geometry: GeometryConfig
    hu: TissueHU
    anatomy: AnatomyConfig
    vessels: VesselConfig
    nodules: NoduleConfig
    noise: NoiseConfig
    candidates: CandidateConfig
    cancer_rule: CancerRuleConfig

    def __post_init__(self) -> None:
        if self.max_slices is not None and self.max_slices < 8:
            raise ValueError(f"max_slices must be >= 8, got {self.max_slices}")
        if self.luna_subsets < 1:
            raise ValueError(f"luna_subsets must be >= 1, got {self.luna_subsets}")
        n = self.nodules
        for names, weights in (
            (n.type_names, n.type_weights),
            (n.shape_names, n.shape_weights),
            (n.location_names, n.location_weights),
            (self.geometry.slice_spacing_mm, self.geometry.slice_spacing_weights),
            (self.geometry.outside_fov_hu, self.geometry.outside_fov_weights),
        ):
            if len(names) != len(weights) or min(weights) < 0 or sum(weights) <= 0:
                raise ValueError(f"choices {names} need as many non-negative weights, got {weights}")
        known = {
            "type": {"solid", "part_solid", "ggo", "calcified"},
            "shape": {"smooth", "lobulated", "spiculated"},
            "location": {"intraparenchymal", "juxtapleural", "juxtavascular"},
        }
        for kind, names in (("type", n.type_names), ("shape", n.shape_names), ("location", n.location_names)):
            unknown = set(names) - known[kind]
            if unknown:
                raise ValueError(f"unknown nodule {kind} {sorted(unknown)}; known: {sorted(known[kind])}")


def load_synth_config(path: str | Path | None = None, **overrides: Any) -> SynthConfig:
    """Load ``configs/synth.yaml`` (or ``path``) into a :class:`SynthConfig`.

    ``overrides`` replace top-level keys (e.g. ``max_slices=40``); None values are ignored.
    Raises :class:`lungcad.errors.ConfigError` for unknown, missing or ill-typed keys.
    """
    return load_config(SynthConfig, "synth" if path is None else path, **overrides)


def with_overrides(config: SynthConfig, **overrides: Any) -> SynthConfig:
    """A copy of ``config`` with top-level fields replaced (None values ignored)."""
    changes = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(config, **changes) if changes else config
