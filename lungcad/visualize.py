"""The report of a detection: pictures, a page per scan with a findings table and slice viewers, and an index.

Every picture is drawn in radiological convention whatever the storage order of the scan: the patient's right on
the image's left, anterior up (axial), head up (coronal). The array is first turned onto the world LPS axes
(:func:`lps_view`: a transpose and flips chosen from the scan's direction, no interpolation) or sampled directly on
an LPS-aligned world grid (:func:`finding_stack`), so a ``.mhd`` stored flipped and a DICOM series of the same
patient give the same image.

Per scan, in ``OUT/pictures/<id>/``:

- ``overview.png``: axial and coronal maximum-intensity projections of the lungs (:func:`lung_mip`) with the shown
  findings marked and numbered by rank, orientation letters and a scale bar;
- ``finding_<rank>.png``: the axial slice through the finding's centre (lung window, circle of its diameter);
- ``finding_<rank>_lung.png`` / ``finding_<rank>_mediastinal.png``: the viewer's stacks, ``2 * viewer_slices + 1``
  axial crops of ``crop_mm`` around the centre, one below the other, one per scan slice, in the lung window
  (-1350..150 HU) and the mediastinal window (-160..240 HU);
- ``scan.html``: the findings table (rank, probability, diameter, world and voxel position, the slice as a viewer
  numbers it, side, the classifiers' probabilities when the risk stage ran) and a slice viewer per finding.

``OUT/index.html`` lists the scans by cancer probability (or their top finding's probability) with the overview, a
short findings table and a link to each scan's page.

Why plain HTML, canvas and a few KB of inline script and not NiiVue (the field's web viewer for NIfTI volumes):
the pages must open from disk (``file://``) without a server, offline, and without a JavaScript build. NiiVue
fetches its volumes with ``fetch``/XHR, which Chromium refuses from ``file://``, and needs an npm build or a CDN.
The viewer here shows PNG stacks that an ``<img>`` loads from disk, and ``drawImage`` on a canvas (allowed for
file images; reading pixels back, which a window/level drag would need, is not, hence one stack per window preset).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lungcad.fileio import to_json_text, write_atomic, write_text_atomic
from lungcad.patches import sample_hu
from lungcad.scan import CTScan
from lungcad.schema import VOXEL_ZYX, XYZ

LUNG_WINDOW_HU = (-1350.0, 150.0)
MEDIASTINAL_WINDOW_HU = (-160.0, 240.0)
#: The viewer's window presets (name -> HU range), the first one shown first.
WINDOWS = {"lung": LUNG_WINDOW_HU, "mediastinal": MEDIASTINAL_WINDOW_HU}
#: HU outside the scan's field of view in the crops.
OUTSIDE_HU = -1024.0
#: The per-finding nodule classifiers of the risk stage shown in the findings table (column -> header).
CLASSIFIER_COLUMNS = {"malignancy_logit": "P(malignant)", "shape_logit": "P(lobulated or spiculated)"}


@dataclass(frozen=True)
class PictureConfig:
    """``configs/pictures.yaml``: how many findings are drawn per scan, from which probability, crop side (mm),
    slices on each side of the centre in the viewer, viewer crop size (pixels)."""

    max_findings: int
    min_probability: float
    crop_mm: float
    viewer_slices: int = 10
    viewer_pixels: int = 128


def _gray(hu: np.ndarray, window: tuple[float, float] = LUNG_WINDOW_HU) -> np.ndarray:
    lo, hi = window
    return np.clip((hu.astype(np.float32) - lo) / (hi - lo), 0.0, 1.0)


def _bytes(hu: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    return np.rint(_gray(hu, window) * 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- orientation
def lps_axes(direction: np.ndarray) -> tuple[tuple[int, int, int], tuple[bool, bool, bool]]:
    """For an array ``(z, y, x)`` with the ITK ``direction``: which array axis runs along world z, y and x (the
    nearest, for an oblique scan) and whether it runs backwards (towards I, A or R)."""
    d = np.abs(np.asarray(direction, dtype=np.float64))
    src, flips = [0, 0, 0], [False, False, False]
    free_world, free_index = {0, 1, 2}, {0, 1, 2}
    # greedy on the largest cosines: a permutation even for a 45-degree tie
    for flat in np.argsort(-d, axis=None):
        w, j = divmod(int(flat), 3)
        if w in free_world and j in free_index:
            free_world.discard(w)
            free_index.discard(j)
            src[2 - w], flips[2 - w] = 2 - j, bool(direction[w, j] < 0)
    return tuple(src), tuple(flips)  # type: ignore[return-value]


@dataclass(frozen=True)
class LPSView:
    """An array turned onto the world axes: ``array[z, y, x]`` with +x towards the patient's left, +y posterior,
    +z superior (so ``array[k]`` shown as an image is radiological: right on the left, anterior up).

    Attributes:
        array: the turned array (a view, no copy).
        spacing: its voxel size ``(z, y, x)`` mm.
        src: for each of its axes the source array's axis.
        flips: which axes were reversed.
        source_shape: the source array's shape.
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    src: tuple[int, int, int]
    flips: tuple[bool, bool, bool]
    source_shape: tuple[int, int, int]

    def from_source(self, zyx: np.ndarray) -> np.ndarray:
        """Source voxel coordinates ``(..., 3)`` -> this view's."""
        zyx = np.asarray(zyx, dtype=np.float64)
        out = zyx[..., list(self.src)].copy()
        for a in range(3):
            if self.flips[a]:
                out[..., a] = self.source_shape[self.src[a]] - 1 - out[..., a]
        return out

    def to_source(self, zyx: np.ndarray) -> np.ndarray:
        """This view's voxel coordinates ``(..., 3)`` -> the source array's."""
        zyx = np.asarray(zyx, dtype=np.float64)
        out = np.empty_like(zyx)
        for a in range(3):
            value = zyx[..., a]
            out[..., self.src[a]] = self.source_shape[self.src[a]] - 1 - value if self.flips[a] else value
        return out


def lps_view(array: np.ndarray, scan: CTScan) -> LPSView:
    """``array`` (on ``scan``'s grid, e.g. its HU or a mask) turned onto the world LPS axes (:class:`LPSView`)."""
    src, flips = lps_axes(scan.direction)
    turned = np.transpose(array, src)
    for a in range(3):
        if flips[a]:
            turned = np.flip(turned, axis=a)
    spacing = tuple(scan.spacing[s] for s in src)
    return LPSView(turned, spacing, src, flips, tuple(array.shape))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- numbers
def slice_numbers(scan: CTScan, xyz: np.ndarray) -> tuple[str, list[int | None]]:
    """The slice through each world point ``(N, 3)`` as a viewer numbers it: for a DICOM series the
    InstanceNumber (0020,0013) of the nearest slice (nearest along the slice normal, as ``slice_index``); for other
    formats the 1-based slice number along the array's slice axis. Returns the name of the number and the numbers
    (None outside the scan or when the slice has no InstanceNumber)."""
    xyz = np.atleast_2d(np.asarray(xyz, dtype=np.float64))
    positions, numbers = scan.metadata.get("slice_positions_mm"), scan.metadata.get("instance_numbers")
    if positions and scan.metadata.get("slice_files"):
        along = xyz @ scan.direction[:, 2]
        nearest = np.abs(along[:, None] - np.asarray(positions)[None, :]).argmin(axis=1)
        if numbers and len(numbers) == len(positions):
            return "InstanceNumber", [None if numbers[i] is None else int(numbers[i]) for i in nearest]
        return "InstanceNumber", [None] * len(xyz)
    z = np.rint(scan.world_to_voxel(xyz, outside="keep")[:, 0])
    return "slice", [int(k) + 1 if 0 <= k < scan.shape[0] else None for k in z]


def body_midline_x(pre_scan: CTScan, lung: np.ndarray) -> float | None:
    """World x (mm) of the middle of the lungs' left-right extent (the body's midline, near enough to say on which
    side a finding lies); None without lungs."""
    view = lps_view(np.asarray(lung), pre_scan)
    columns = np.flatnonzero(view.array.any(axis=(0, 1)))
    if columns.size == 0:
        return None
    centre = np.array([(view.array.shape[0] - 1) / 2, (view.array.shape[1] - 1) / 2, 0.0])
    ends = np.stack([centre, centre])
    ends[:, 2] = columns[0], columns[-1]
    return float(pre_scan.voxel_to_world(view.to_source(ends))[:, 0].mean())


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-float(np.clip(x, -60, 60))))


def findings_rows(scan: CTScan, shown: pd.DataFrame, midline_x: float | None = None) -> tuple[str, list[dict]]:
    """The findings table of ``shown`` (rank order): one JSON-able dict per finding with ``rank``,
    ``probability``, ``diameter_mm``, ``world_xyz_mm``, ``voxel_zyx`` (on ``scan``'s grid), ``slice`` (the number a
    viewer shows, :func:`slice_numbers`), ``side`` (``right``/``left`` of the body midline ``midline_x``: LPS +x is
    the patient's left; None without a midline) and, when the risk stage ran, ``P(...)`` of each nodule classifier.
    Returns the slice number's name too."""
    if shown.empty:
        return "slice", []
    xyz = shown[XYZ].to_numpy(float)
    if all(c in shown.columns for c in VOXEL_ZYX):
        zyx = shown[VOXEL_ZYX].to_numpy(float)
    else:
        zyx = scan.world_to_voxel(xyz, outside="keep")
    name, numbers = slice_numbers(scan, xyz)
    rows = []
    for rank, ((_, row), point, voxel, number) in enumerate(zip(shown.iterrows(), xyz, zyx, numbers), start=1):
        diameter = row.get("diameter_mm", float("nan"))
        side = None if midline_x is None else ("left" if point[0] > midline_x else "right")
        entry = {
            "rank": rank,
            "probability": float(row["probability"]),
            "diameter_mm": None if pd.isna(diameter) else float(diameter),
            "world_xyz_mm": [round(float(v), 1) for v in point],
            "voxel_zyx": [round(float(v), 1) for v in voxel],
            "slice": number,
            "side": side,
        }
        for column, header in CLASSIFIER_COLUMNS.items():
            if column in shown.columns and not pd.isna(row[column]):
                entry[header] = _sigmoid(row[column])
        rows.append(entry)
    return name, rows


# ---------------------------------------------------------------------------------------------- pictures
def lung_mip(hu: np.ndarray, lung: np.ndarray, axis: int = 0) -> np.ndarray:
    """Maximum-intensity projection of HU inside the lung mask (outside counts as -1024) along ``axis`` (0: axial),
    so the chest wall does not hide the vessels and nodules."""
    return np.where(lung, hu, -1024).max(axis=axis)


def overview_images(scan: CTScan, lung: np.ndarray) -> tuple[np.ndarray, np.ndarray, LPSView]:
    """The axial (Y, X) and coronal (Z, X) lung MIPs of ``scan`` in radiological convention (patient's right on the
    left; anterior up, head up) and the :class:`LPSView` they come from (to place points)."""
    view = lps_view(scan.array, scan)
    mask = lps_view(np.asarray(lung), scan).array
    axial = lung_mip(view.array, mask, axis=0)
    coronal = lung_mip(view.array, mask, axis=1)[::-1]  # +z is superior: head up
    return axial, coronal, view


def _orientation(ax, top: str, bottom: str, left: str = "R", right: str = "L") -> None:
    style = {"color": "orange", "fontsize": 9, "fontweight": "bold", "transform": ax.transAxes}
    ax.text(0.5, 0.98, top, ha="center", va="top", **style)
    ax.text(0.5, 0.02, bottom, ha="center", va="bottom", **style)
    ax.text(0.01, 0.5, left, ha="left", va="center", **style)
    ax.text(0.99, 0.5, right, ha="right", va="center", **style)


def _scale_bar(ax, width_px: int, height_px: int, mm_per_px: float, mm: float = 50.0) -> None:
    length = mm / mm_per_px
    x1, y = width_px * 0.95, height_px * 0.93
    ax.plot([x1 - length, x1], [y, y], color="white", lw=2)
    ax.text(
        x1 - length / 2,
        y - height_px * 0.02,
        f"{mm:g} mm",
        color="white",
        fontsize=7,
        ha="center",
        va="bottom",
        bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "linewidth": 0},
    )


def overview_picture(scan: CTScan, lung: np.ndarray, table: pd.DataFrame, path: Path) -> Path:
    """PNG of the axial and coronal lung MIPs of ``scan`` (e.g. the preprocessed grid, with its lung mask
    (Z, Y, X)) with the findings of ``table`` numbered by rank, orientation letters and a scale bar."""
    from matplotlib.figure import Figure

    from lungcad.evaluate.plots import save_figure

    axial, coronal, view = overview_images(scan, lung)
    sz, sy, sx = view.spacing
    points = view.from_source(scan.world_to_voxel(table[XYZ].to_numpy(float), outside="keep")) if len(table) else []
    fig = Figure(figsize=(7.6, 4.0))
    for i, (image, aspect, title) in enumerate(
        [(axial, sy / sx, "axial MIP of the lungs"), (coronal, sz / sx, "coronal MIP of the lungs")]
    ):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.imshow(_gray(image), cmap="gray", vmin=0, vmax=1, aspect=aspect, interpolation="antialiased")
        for rank, (zz, yy, xx) in enumerate(points, start=1):
            row = yy if i == 0 else coronal.shape[0] - 1 - zz
            ax.scatter([xx], [row], s=90, facecolors="none", edgecolors="yellow", linewidths=1.0)
            ax.annotate(str(rank), (xx, row), xytext=(5, 5), textcoords="offset points", color="yellow", fontsize=8)
        if i == 0:
            _orientation(ax, "A", "P")
        else:
            _orientation(ax, "S", "I")
        _scale_bar(ax, image.shape[1], image.shape[0], sx)
        ax.set_title(title, fontsize=8)
        ax.set_axis_off()
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.93, wspace=0.03)
    return save_figure(fig, path, dpi=100)


@dataclass(frozen=True)
class FindingStack:
    """Axial crops around a finding on an LPS-aligned world grid (radiological: right on the left, anterior up).

    Attributes:
        hu: ``(n, P, P)`` HU, one crop per scan slice, in the scan's slice order.
        pixel_mm: the crops' pixel size (mm).
        offsets_mm: each crop's world z minus the finding's centre z (mm).
        slices: each crop's slice as a viewer numbers it (:func:`slice_numbers`; None outside the scan).
        centre: index of the crop through the centre.
    """

    hu: np.ndarray
    pixel_mm: float
    offsets_mm: np.ndarray
    slices: list[int | None]
    centre: int


def finding_stack(scan: CTScan, centre_xyz, crop_mm: float = 80.0, pixels: int = 128, half: int = 10) -> FindingStack:
    """The crops of :class:`FindingStack` around the world point ``centre_xyz`` (mm): ``2 * half + 1`` axial planes
    through the scan's slices nearest the centre and ``half`` on each side, ``crop_mm`` wide in ``pixels``
    (trilinear in HU from the scan's own grid, exact for any direction: :func:`lungcad.patches.sample_hu`)."""
    centre = np.asarray(centre_xyz, dtype=np.float64)
    slice_axis = lps_axes(scan.direction)[0][0]  # the source array axis along world z
    voxel = scan.world_to_voxel(centre, outside="keep")
    nearest = round(float(voxel[slice_axis]))
    steps = np.arange(nearest - half, nearest + half + 1)
    if scan.world_to_voxel(centre + [0, 0, 1.0], outside="keep")[slice_axis] < voxel[slice_axis]:
        steps = steps[::-1]  # the scan's slices run from head to feet: show them in that order too
    plane_voxels = np.repeat(voxel[None, :], len(steps), axis=0)
    plane_voxels[:, slice_axis] = steps
    plane_z = scan.voxel_to_world(plane_voxels)[:, 2]
    pixel_mm = crop_mm / pixels
    u = (np.arange(pixels) - (pixels - 1) / 2) * pixel_mm
    # an LPS-aligned world grid: x (to the patient's left) along the columns, y (to posterior) along the rows
    z, y, x = np.meshgrid(plane_z, centre[1] + u, centre[0] + u, indexing="ij")
    hu = sample_hu(scan, np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1), outside_hu=OUTSIDE_HU)
    points = np.repeat(centre[None, :], len(plane_z), axis=0)
    points[:, 2] = plane_z
    _, numbers = slice_numbers(scan, points)
    offsets = plane_z - centre[2]
    return FindingStack(
        hu.reshape(len(steps), pixels, pixels), pixel_mm, offsets, numbers, int(np.abs(offsets).argmin())
    )


def _save_png(array: np.ndarray, path: Path) -> Path:
    from PIL import Image

    return write_atomic(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG", compress_level=3))


def key_image(stack: FindingStack, diameter_mm: float, path: Path, scale: int = 2) -> Path:
    """``finding_<rank>.png``: the centre crop (lung window, ``scale`` times enlarged) with a yellow circle of
    the finding's diameter."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(_bytes(stack.hu[stack.centre], LUNG_WINDOW_HU)).convert("RGB")
    image = image.resize((image.width * scale, image.height * scale), Image.Resampling.BILINEAR)
    radius = (max(float(diameter_mm), 3.0) / 2 / stack.pixel_mm + 2) * scale
    c = image.width / 2
    ImageDraw.Draw(image).ellipse([c - radius, c - radius, c + radius, c + radius], outline=(255, 220, 0), width=2)
    return write_atomic(path, lambda tmp: image.save(tmp, format="PNG"))


def reported_findings(table: pd.DataFrame, config: PictureConfig) -> pd.DataFrame:
    """The findings a scan reports (pictures, DICOM SR): the ``max_findings`` most probable at or above
    ``min_probability`` (``table`` sorted by probability, highest first)."""
    return table[table["probability"] >= config.min_probability].head(config.max_findings)


def scan_pictures(
    scan: CTScan, pre, shown: pd.DataFrame, folder: Path, config: PictureConfig, cancer_probability=None
) -> dict:
    """The report of one scan in ``folder``: the overview (on the preprocessed scan ``pre``: its grid and lung mask),
    per finding of ``shown`` (:func:`reported_findings`, in rank order) its key image and viewer stacks (on
    ``scan``), and ``scan.html`` (findings table and viewers). Returns the JSON-able record: ``{"overview": name,
    "findings": [key image names], "page": name, "slice_number": its name, "table": [findings_rows]}``, names
    relative to ``folder``'s parent."""
    lung = np.asarray(pre.lung_mask)
    overview = overview_picture(pre.scan, lung, shown, folder / "overview.png")
    slice_name, rows = findings_rows(scan, shown, body_midline_x(pre.scan, lung))
    viewers, keys = [], []
    for row in rows:
        rank = row["rank"]
        stack = finding_stack(scan, row["world_xyz_mm"], config.crop_mm, config.viewer_pixels, config.viewer_slices)
        keys.append(key_image(stack, row["diameter_mm"] or 6.0, folder / f"finding_{rank}.png"))
        sprites = {}
        for name, window in WINDOWS.items():
            strip = _bytes(stack.hu, window).reshape(-1, stack.hu.shape[2])
            sprites[name] = _save_png(strip, folder / f"finding_{rank}_{name}.png").name
        viewers.append((row, stack, sprites))
    rel = folder.name
    page = folder / "scan.html"
    write_text_atomic(page, scan_page(scan, overview.name, slice_name, rows, viewers, cancer_probability))
    return {
        "overview": f"{rel}/{overview.name}",
        "findings": [f"{rel}/{p.name}" for p in keys],
        "page": f"{rel}/{page.name}",
        "slice_number": slice_name,
        "table": rows,
    }


# ---------------------------------------------------------------------------------------------- HTML
STYLE = (
    "body{font-family:sans-serif;margin:1em;color:#111}table{border-collapse:collapse}"
    "td,th{border-bottom:1px solid #ccc;padding:3px 6px;vertical-align:top;text-align:left}"
    "td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#eee}"
    ".viewer{display:inline-block;margin:0 1.5em 1.5em 0;vertical-align:top}"
    "canvas{background:#000;display:block;cursor:ns-resize}.viewer .stack{display:none}"
    "td.id{min-width:11em;max-width:14em;word-break:break-all}"
    ".viewer button.on{font-weight:bold}.muted{color:#666;font-size:90%}"
)

#: Marks each ``<img>`` loaded or failed (``data-state``), so a headless browser's DOM dump shows it.
IMG_STATE = "onload=\"this.dataset.state='loaded'\" onerror=\"this.dataset.state='failed'\""

#: The slice viewer: a canvas per finding drawing one crop of a stack (one PNG per window preset, crops one below
#: the other); wheel, arrow keys or the slider scroll; buttons switch the window. Letters, scale bar and the
#: finding's circle are drawn on the canvas, so they stay readable at any zoom.
VIEWER_SCRIPT = """
(function () {
  function setup(v) {
    var d = JSON.parse(v.dataset.stack), canvas = v.querySelector('canvas'), g = canvas.getContext('2d');
    var slider = v.querySelector('input'), label = v.querySelector('.where'), win = d.windows[0], i = d.centre;
    var imgs = {};
    v.querySelectorAll('img.stack').forEach(function (img) { imgs[img.dataset.window] = img; });
    function draw() {
      var img = imgs[win], s = canvas.width, p = d.pixels;
      if (!img.complete || !img.naturalWidth) { return; }
      g.imageSmoothingEnabled = true;
      g.drawImage(img, 0, i * p, p, p, 0, 0, s, s);
      var k = s / p / d.pixel_mm, dz = Math.abs(d.offsets[i]), r = d.radius_mm;
      g.strokeStyle = '#ffd700'; g.lineWidth = 1.5; g.beginPath();
      if (dz < r) { g.arc(s / 2, s / 2, Math.sqrt(r * r - dz * dz) * k + 3, 0, 2 * Math.PI); }
      else { g.moveTo(s / 2 - 12, s / 2); g.lineTo(s / 2 - 5, s / 2); g.moveTo(s / 2 + 5, s / 2);
             g.lineTo(s / 2 + 12, s / 2); }
      g.stroke();
      g.fillStyle = '#ffa500'; g.font = 'bold 14px sans-serif'; g.textAlign = 'center';
      g.fillText('A', s / 2, 16); g.fillText('P', s / 2, s - 6);
      g.textAlign = 'left'; g.fillText('R', 5, s / 2 + 5); g.textAlign = 'right'; g.fillText('L', s - 5, s / 2 + 5);
      var bar = 20 * k;
      g.strokeStyle = '#fff'; g.lineWidth = 2; g.beginPath();
      g.moveTo(s - 10 - bar, s - 12); g.lineTo(s - 10, s - 12); g.stroke();
      g.fillStyle = '#fff'; g.font = '11px sans-serif'; g.textAlign = 'center';
      g.fillText('20 mm', s - 10 - bar / 2, s - 17);
      var n = d.slices[i];
      label.textContent = d.slice_name + ' ' + (n === null ? '(outside the scan)' : n) + ' \\u00b7 ' +
        (d.offsets[i] >= 0 ? '+' : '') + d.offsets[i].toFixed(1) + ' mm from the centre \\u00b7 ' + win + ' window';
      slider.value = i;
      canvas.dataset.drawn = d.slice_name + ' ' + n + ' ' + win;
    }
    function go(j) { i = Math.max(0, Math.min(d.offsets.length - 1, j)); draw(); }
    slider.max = d.offsets.length - 1;
    slider.addEventListener('input', function () { go(parseInt(slider.value, 10)); });
    canvas.addEventListener('wheel', function (e) { e.preventDefault(); go(i + (e.deltaY > 0 ? 1 : -1)); },
                            {passive: false});
    canvas.addEventListener('keydown', function (e) {
      if (e.key !== 'ArrowUp' && e.key !== 'ArrowDown') { return; }
      e.preventDefault(); go(i + (e.key === 'ArrowDown' ? 1 : -1));
    });
    v.querySelectorAll('button[data-window]').forEach(function (b) {
      b.addEventListener('click', function () {
        win = b.dataset.window;
        v.querySelectorAll('button[data-window]').forEach(function (o) { o.classList.toggle('on', o === b); });
        draw();
      });
    });
    Object.keys(imgs).forEach(function (w) {
      imgs[w].addEventListener('load', function () { if (w === win) { draw(); } });
    });
    draw();
  }
  document.querySelectorAll('.viewer').forEach(setup);
})();
"""


def _fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "&ndash;"
    return f"{value:.{digits}f}" if isinstance(value, float) else html.escape(str(value))


def findings_table(slice_name: str, rows: list[dict], link: str = "#finding-", images: list[str] | None = None) -> str:
    """The HTML findings table (``class="findings"``, a ``<tr class="finding">`` per finding), each rank linking to
    ``link + rank``; with ``images`` (one key image per finding: the index's compact table) the positions give way to
    a thumbnail."""
    extra = [h for h in CLASSIFIER_COLUMNS.values() if any(h in r for r in rows)]
    slice_header = "InstanceNumber" if slice_name == "InstanceNumber" else "slice (1-based)"
    position = "" if images else "<th>world x, y, z (mm, LPS)</th><th>voxel z, y, x</th>"
    head = (
        f"<tr><th>#</th>{'<th>axial</th>' if images else ''}<th>probability</th><th>diameter (mm)</th>{position}"
        f"<th>{slice_header}</th><th>side</th>" + "".join(f"<th>{html.escape(h)}</th>" for h in extra) + "</tr>"
    )
    body = []
    for i, r in enumerate(rows):
        target = html.escape(f"{link}{r['rank']}")
        cells = [f'<td class="n"><a href="{target}">{r["rank"]}</a></td>']
        if images:
            src = html.escape(images[i])
            cells.append(
                f'<td><a href="{target}"><img src="{src}" height="64" alt="#{r["rank"]}" {IMG_STATE}></a></td>'
            )
        cells += [f'<td class="n">{_fmt(r["probability"], 3)}</td>', f'<td class="n">{_fmt(r["diameter_mm"], 1)}</td>']
        if not images:
            cells.append(f'<td class="n">{", ".join(f"{v:.1f}" for v in r["world_xyz_mm"])}</td>')
            cells.append(f'<td class="n">{", ".join(f"{v:.1f}" for v in r["voxel_zyx"])}</td>')
        cells += [
            f'<td class="n">{_fmt(r["slice"])}</td>',
            f"<td>{_fmt(r['side'])}</td>",
            *(f'<td class="n">{_fmt(r.get(h), 3)}</td>' for h in extra),
        ]
        body.append(f'<tr class="finding">{"".join(cells)}</tr>')
    return f'<table class="findings">{head}{"".join(body)}</table>'


def _page(title: str, body: str, script: str = "") -> str:
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{body}"
        + (f"<script>{script}</script>" if script else "")
        + "</body></html>"
    )


def scan_page(
    scan: CTScan,
    overview: str,
    slice_name: str,
    rows: list[dict],
    viewers: list[tuple[dict, FindingStack, dict[str, str]]],
    cancer_probability: float | None = None,
) -> str:
    """``scan.html``: the scan's overview, findings table and a slice viewer per finding (file names relative to
    the page)."""
    cancer = "" if cancer_probability is None else f"<p>P(cancer) for the patient: <b>{cancer_probability:.3f}</b></p>"
    parts = [
        '<p><a href="../../index.html">&larr; all scans</a></p>',
        f"<h1>{html.escape(scan.id)}</h1>",
        f"<p class='muted'>{html.escape(scan.metadata.get('format', str(scan.source or '')))}, "
        f"{scan.shape[0]} slices of {scan.spacing[0]:.2f} mm, pixels {scan.spacing[1]:.2f} x {scan.spacing[2]:.2f} "
        "mm. Images in radiological convention: the patient's right on the image's left, anterior up, head up. "
        "Research software, not for clinical use.</p>",
        cancer,
        f"<h2>Findings ({len(rows)})</h2>",
        findings_table(slice_name, rows) if rows else "<p>No finding above the reporting threshold.</p>",
    ]
    for row, stack, sprites in viewers:
        rank = row["rank"]
        data = {
            "pixels": int(stack.hu.shape[1]),
            "pixel_mm": stack.pixel_mm,
            "offsets": [round(float(o), 2) for o in stack.offsets_mm],
            "slices": stack.slices,
            "centre": stack.centre,
            "radius_mm": max(row["diameter_mm"] or 6.0, 3.0) / 2,
            "slice_name": "InstanceNumber" if slice_name == "InstanceNumber" else "slice",
            "windows": list(sprites),
        }
        imgs = "".join(
            f'<img class="stack" data-window="{w}" src="{html.escape(name)}" alt="{w} window" {IMG_STATE}>'
            for w, name in sprites.items()
        )
        buttons = "".join(
            f'<button type="button" data-window="{w}"{" class=on" if i == 0 else ""}>'
            f"{w} ({WINDOWS[w][0]:g}..{WINDOWS[w][1]:g} HU)</button>"
            for i, w in enumerate(sprites)
        )
        size = f"{row['diameter_mm']:.1f} mm" if row["diameter_mm"] is not None else ""
        parts.append(
            f'<div class="viewer" id="finding-{rank}" data-stack="{html.escape(to_json_text(data, indent=None))}">'
            f"<h3>#{rank}: p = {row['probability']:.3f}, {size}, {_fmt(row['side'])}</h3>"
            f'<canvas width="384" height="384" tabindex="0"></canvas>'
            f'<input type="range" min="0" value="{stack.centre}" aria-label="slice"> {buttons}'
            f'<div class="where muted"></div>{imgs}</div>'
        )
    parts.append(f'<h2>Overview</h2><p><img src="{html.escape(overview)}" alt="overview" {IMG_STATE}></p>')
    return _page(f"lungcad: {scan.id}", "".join(parts), VIEWER_SCRIPT)


def write_index(out: Path, records: list[dict]) -> Path | None:
    """``OUT/index.html`` from the finished scans' JSON ``records`` (those with pictures); None when there are none."""
    records = [r for r in records if "pictures" in r]
    if not records:
        return None

    def key(r: dict) -> float:
        top = max((c["probability"] for c in r.get("candidates", [])), default=0.0)
        return r.get("cancer_probability", top)

    rows = []
    for r in sorted(records, key=key, reverse=True):
        pics = r["pictures"]
        cancer = f"{r['cancer_probability']:.3f}" if r.get("cancer_probability") is not None else "&ndash;"
        overview = f"pictures/{html.escape(pics['overview'])}"
        page = pics.get("page")
        name = html.escape(r["id"])
        title = f'<a href="pictures/{html.escape(page)}">{name}</a>' if page else name
        if "table" in pics:
            link = f"pictures/{page}#finding-"
            images = [f"pictures/{p}" for p in pics["findings"]]
            table = (
                findings_table(pics.get("slice_number", "slice"), pics["table"], link, images) if pics["table"] else ""
            )
        else:  # a record written before the findings table existed: its key images
            table = " ".join(f'<img src="pictures/{html.escape(p)}" height="96" {IMG_STATE}>' for p in pics["findings"])
        rows.append(
            f'<tr class="scan"><td class="id">{title}</td><td class="n">{cancer}</td>'
            f'<td class="n">{len(pics["findings"])}</td>'
            f'<td><a href="{overview}"><img src="{overview}" height="140" {IMG_STATE}></a></td><td>{table}</td></tr>'
        )
    page = _page(
        "lungcad detections",
        f"<h1>lungcad detections: {len(records)} scan(s)</h1><p class='muted'>Research software, not for clinical "
        "use. Open a scan for its slice viewers. Images: the patient's right on the image's left.</p>"
        "<table class='scans'><tr><th>scan</th><th>P(cancer)</th><th>findings</th><th>overview (lung MIP)</th>"
        "<th>findings</th></tr>" + "".join(rows) + "</table>",
    )
    path = out / "index.html"
    write_text_atomic(path, page)
    return path
