"""busch2026 Fig. 4 (road distance vs image portion) and Fig. 2 (pseudo vs BEV ground truth).

Fig. 4 (Sec. IV-B) motivates the ranged metrics mIoU20/40/60: "the first 7.5 m of the road are
represented by approximately 50 % of the image, whereas the 7.5 m from 22.5 m to 30 m by circa
6 %". :func:`distance_bands` measures that split for one camera of a rig with the analytic
ray / ground-plane intersection (:func:`bevlib.render.ground_hits`).

Fig. 2 (Sec. III-C) sets the camera-view pseudo ground truth beside the nuScenes BEV ground
truth, each in the front view and in BEV; "the pseudo ground truth is projected to BEV using
nuScenes lidar data". :func:`lift_pseudo_to_bev_lidar` is that projection, and
:func:`render_labels_to_camera` renders the BEV ground truth into a camera with
:func:`bevlib.render.render_bev`.

The notebooks ``notebooks/fig4_distance_share.ipynb`` and ``notebooks/fig2_pseudo_vs_gt.ipynb``
(written by ``scripts/make_fig_notebooks.py``) call :func:`prepare_fig4` / :func:`prepare_fig2`
and the writers below; every output is written atomically.
"""
from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import geometry as geo
from ..bev import BEVGrid
from ..classes import ALL_CLASSES, IGNORE, NUM_ALL, NUM_BEV
from ..data.nuscenes_data import (CAMERAS, BEVTargetConfig, bev_ground_truth, camera_rig, load_image,
                                  open_nuscenes, scene_sample_tokens)
from ..io import atomic_savefig, atomic_write_text
from ..params import ParameterError
from ..render import ground_hits, render_bev

log = logging.getLogger(__name__)

#: busch2026 Sec. IV-B, Fig. 4, as printed (approximate, nuScenes; the camera is not named, the
#: figure shows a front view): percent of the image's road pixels per 7.5 m band of the 30 m
#: forward range. The middle bands are not given.
REPORTED_FIG4 = {(0.0, 7.5): 50.0, (22.5, 30.0): 6.0}
#: Ways to measure a ground point's distance (see :func:`distance_bands`).
DISTANCE_ORIGINS = ("camera", "ego")
#: Band colours (RGB 0-255), near to far, as the four colours of busch2026 Fig. 4.
BAND_COLORS = ((230, 25, 75), (245, 130, 48), (255, 225, 25), (60, 180, 75))
#: Colour of BEV cells no LiDAR ground point fell into (Fig. 2, lifted pseudo-label).
NO_POINT_RGB = (70, 70, 70)
#: nuScenes-lidarseg categories counted as ground when lidarseg is present.
GROUND_CATEGORY_PREFIX = "flat."


# ------------------------------------------------------------------------------------------------
# Shared: which dataset
# ------------------------------------------------------------------------------------------------

def resolve_dataroot(dataroot, version: str, world: dict | None, progress: bool = True,
                     prefer_real_keyframe: bool = False) -> tuple[str, str]:
    """The dataroot a figure reads, and a short description of it.

    Args:
        dataroot: a path; ``"embedded"`` for the embedded world; None for the default, which is
            the real keyframe (``<project>/../shared/nuscenes-keyframe``) when
            ``prefer_real_keyframe`` and it holds ``version``, else the embedded world.
        world: WorldConfig fields (``seed``, ``n_scenes``, ``keyframes_per_scene``, ``image_wh``)
            of the embedded world.
    Returns: (dataroot, description).
    Raises: OSError if the world cannot be generated into the cache.
    """
    from ..real_keyframe import default_dataroot

    if dataroot and dataroot != "embedded":
        return str(dataroot), f"nuScenes at {dataroot} ({version})"
    if dataroot is None and prefer_real_keyframe and (default_dataroot() / version).is_dir():
        return str(default_dataroot()), f"the real nuScenes keyframe ({default_dataroot().name}, {version})"
    from ..data.world import WorldConfig, ensure_world

    w = dict(world or {})
    if "image_wh" in w:
        w["image_wh"] = tuple(w["image_wh"])
    cfg = WorldConfig(version=version, **w)
    return str(ensure_world(cfg=cfg, progress=progress)), f"the embedded world (seed {cfg.seed}, {cfg.hash()})"


def _first_keyframe(nusc) -> str:
    return scene_sample_tokens(nusc, [nusc.scene[0]["name"]])[0]


def _check_camera(camera: str) -> None:
    if camera not in CAMERAS:
        raise ParameterError(f"parameter 'camera' must be one of {', '.join(CAMERAS)}, got {camera!r}")


def _world_fields(p) -> dict:
    return dict(seed=p.world_seed, n_scenes=p.world_scenes, keyframes_per_scene=p.world_keyframes,
                image_wh=tuple(p.world_image_wh))


# ------------------------------------------------------------------------------------------------
# Fig. 4: share of road pixels per distance band
# ------------------------------------------------------------------------------------------------

@dataclass
class DistanceBands:
    """Result of :func:`distance_bands` (busch2026 Fig. 4).

    Attributes:
        edges_m: (n_bands + 1,) float64 band edges in metres, 0 .. forward range.
        band: (h, w) int8 band index of every pixel, -1 where the pixel is not a road pixel.
        pixels: (n_bands,) int64 road pixels per band.
        share_percent: (n_bands,) float64, ``100 * pixels / pixels.sum()`` (sums to 100).
        road_half_width_m / distance_origin: the definition used.
    """

    edges_m: np.ndarray
    band: np.ndarray
    pixels: np.ndarray
    share_percent: np.ndarray
    road_half_width_m: float
    distance_origin: str

    @property
    def definition(self) -> str:
        """One line stating what was counted."""
        d = ("longitudinal distance ahead of the camera (ego x of the ground point minus the camera's ego x)"
             if self.distance_origin == "camera" else "ego x of the ground point (the BEV frame's longitudinal axis)")
        return (f"pixels whose ray meets the flat ground z = 0 at |y_ego| <= {self.road_half_width_m:g} m and "
                f"0 <= d < {self.edges_m[-1]:g} m, d = {d}")


def distance_bands(K: np.ndarray, ego_T_cam: np.ndarray, image_hw: tuple[int, int], road_half_width_m: float,
                   forward_range_m: float = 30.0, n_bands: int = 4, distance_origin: str = "camera") -> DistanceBands:
    """Share of a camera's road pixels per equal distance band (busch2026 Sec. IV-B, Fig. 4).

    Definition: the road is the flat ground plane z = 0 of the ego frame, ``|y_ego| <=
    road_half_width_m`` (a straight road centred on the ego vehicle; ``road_half_width_m = 15``
    is the busch2026 BEV's lateral extent). A pixel is a road pixel when its ray points below the
    horizon and meets that strip at a distance ``0 <= d < forward_range_m``; ``d`` is the ground
    point's ego x minus the camera's ego x (``distance_origin="camera"``: distance ahead of the
    camera) or its ego x (``"ego"``: distance ahead of the ego origin, the rear axle, as the BEV
    grid counts it). Bands split ``[0, forward_range_m)`` into ``n_bands`` equal parts.

    Args:
        K: (3, 3) intrinsics in pixels for images of size ``image_hw`` = (h, w).
        ego_T_cam: (4, 4) camera -> ego transform (metres, float64).
    Returns: :class:`DistanceBands`.
    Raises: ValueError for a non-positive width / range / band count, an unknown origin, or a
        camera that sees no road pixel.
    """
    if not (road_half_width_m > 0 and forward_range_m > 0 and n_bands >= 1):
        raise ValueError(f"need road_half_width_m > 0, forward_range_m > 0, n_bands >= 1; got "
                         f"{road_half_width_m}, {forward_range_m}, {n_bands}")
    if distance_origin not in DISTANCE_ORIGINS:
        raise ValueError(f"distance_origin must be one of {DISTANCE_ORIGINS}, got {distance_origin!r}")
    T = np.asarray(ego_T_cam, np.float64)
    xy, below = ground_hits(np.asarray(K, np.float64)[None], T[None], image_hw)
    xy, below = xy[0], below[0]
    d = xy[..., 0] - (T[0, 3] if distance_origin == "camera" else 0.0)
    edges = np.linspace(0.0, forward_range_m, n_bands + 1)
    with np.errstate(invalid="ignore"):  # NaN hits above the horizon compare False
        road = below & (np.abs(xy[..., 1]) <= road_half_width_m) & (d >= 0) & (d < forward_range_m)
    band = np.full(d.shape, -1, np.int8)
    # searchsorted(side='right') - 1 puts d == edge into the band that starts there.
    band[road] = np.clip(np.searchsorted(edges, d[road], side="right") - 1, 0, n_bands - 1)
    pixels = np.bincount(band[road], minlength=n_bands).astype(np.int64)
    if pixels.sum() == 0:
        raise ValueError("the camera sees no road pixel within the forward range (is it facing backwards?)")
    return DistanceBands(edges, band, pixels, 100.0 * pixels / pixels.sum(), float(road_half_width_m),
                         distance_origin)


@dataclass
class Fig4Params:
    """Every knob of notebooks/fig4_distance_share.ipynb (busch2026 Fig. 4)."""

    dataroot: str | None = None       # None: the real keyframe if present, else the embedded world; "embedded"
    version: str = "v1.0-mini"
    camera: str = "CAM_FRONT"
    sample_token: str | None = None   # None: the first keyframe of the first scene
    road_half_width_m: float = 7.0    # a road of two 3.5 m lanes each side of the ego
    distance_origin: str = "camera"   # "camera" | "ego", see distance_bands
    forward_range_m: float = 30.0     # busch2026: half of the 60 m BEV, in 4 quarters
    n_bands: int = 4
    world_seed: int = 0               # embedded world only
    world_scenes: int = 6
    world_keyframes: int = 16
    world_image_wh: tuple = (800, 450)
    output_dir: str | None = None     # None: <project>/outputs/fig4
    progress: bool = True

    def __post_init__(self):
        _check_camera(self.camera)
        if self.distance_origin not in DISTANCE_ORIGINS:
            raise ParameterError(f"parameter 'distance_origin' must be one of {DISTANCE_ORIGINS}, "
                                 f"got {self.distance_origin!r}")
        for n in ("road_half_width_m", "forward_range_m"):
            if not (isinstance(getattr(self, n), (int, float)) and getattr(self, n) > 0):
                raise ParameterError(f"parameter {n!r} must be a positive number of metres, got {getattr(self, n)!r}")
        if not (isinstance(self.n_bands, int) and self.n_bands >= 1):
            raise ParameterError(f"parameter 'n_bands' must be a positive integer, got {self.n_bands!r}")
        self.world_image_wh = tuple(self.world_image_wh)


@dataclass
class Fig4Data:
    """What :func:`prepare_fig4` read: one camera of one keyframe at its native resolution."""

    params: Fig4Params
    dataroot: str
    source: str
    sample_token: str
    image: np.ndarray          # (h, w, 3) uint8
    K: np.ndarray              # (3, 3) float64, pixels of ``image``
    ego_T_cam: np.ndarray      # (4, 4) float64
    bands: DistanceBands | None = None   # set by prepare_fig4

    @property
    def image_hw(self) -> tuple[int, int]:
        """(h, w) of the camera image in pixels."""
        return self.image.shape[0], self.image.shape[1]


def prepare_fig4(p: Fig4Params) -> Fig4Data:
    """Read the camera's calibration and image, and measure its distance bands.

    Raises: DataError / ParameterError naming the bad input.
    """
    dataroot, source = resolve_dataroot(p.dataroot, p.version, _world_fields(p), p.progress,
                                        prefer_real_keyframe=True)
    nusc = open_nuscenes(dataroot, p.version)
    token = p.sample_token or _first_keyframe(nusc)
    rig = camera_rig(nusc, token, cameras=(p.camera,))
    w, h = rig["native_wh"][0]
    image = load_image(nusc.get_sample_data_path(rig["sd_tokens"][0]), (w, h))
    data = Fig4Data(p, dataroot, source, token, image, rig["K"][0], rig["ego_T_cam"][0])
    data.bands = distance_bands(data.K, data.ego_T_cam, (h, w), p.road_half_width_m, p.forward_range_m,
                                p.n_bands, p.distance_origin)
    return data


def fig4_variants(data: Fig4Data, half_widths=None, origins=DISTANCE_ORIGINS) -> list[dict]:
    """Fig. 4 shares under each definition: every distance origin x {the chosen road width, the
    +-15 m BEV extent}. Returns rows ``{distance_origin, road_half_width_m, band_<a>-<b>_m: %}``."""
    p = data.params
    half_widths = half_widths or sorted({float(p.road_half_width_m), 15.0})
    rows = []
    for origin in origins:
        for hw in half_widths:
            b = distance_bands(data.K, data.ego_T_cam, data.image_hw, hw, p.forward_range_m, p.n_bands, origin)
            row = {"distance_origin": origin, "road_half_width_m": hw}
            row.update({_band_name(b.edges_m, i): round(float(s), 2) for i, s in enumerate(b.share_percent)})
            rows.append(row)
    return rows


def _band_name(edges, i) -> str:
    return f"band_{edges[i]:g}-{edges[i + 1]:g}_m"


def write_fig4_csv(bands: DistanceBands, path) -> Path:
    """``fig4.csv``: columns ``band_start_m, band_end_m, share_percent`` (atomic write)."""
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(["band_start_m", "band_end_m", "share_percent"])
    for i, s in enumerate(bands.share_percent):
        wr.writerow([f"{bands.edges_m[i]:g}", f"{bands.edges_m[i + 1]:g}", f"{s:.2f}"])
    return atomic_write_text(path, buf.getvalue())


def write_rows_csv(rows: list[dict], path) -> Path:
    """A list of same-keyed dicts as CSV (atomic write)."""
    buf = io.StringIO()
    wr = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    wr.writeheader()
    wr.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def fig4_markdown(data: Fig4Data, variants: list[dict]) -> str:
    """The comparison with busch2026's text: measured shares beside the reported ~50 % / ~6 %."""
    b = data.bands
    p = data.params
    lines = [f"**Fig. 4, measured** on {data.source}, {p.camera}, keyframe `{data.sample_token}`, "
             f"{data.image_hw[1]}x{data.image_hw[0]} px. Road pixels: {b.definition}.", "",
             "| band [m] | measured share [%] | reported share [%] (busch2026 Sec. IV-B, nuScenes) |",
             "|---|---:|---:|"]
    for i, s in enumerate(b.share_percent):
        rep = REPORTED_FIG4.get((float(b.edges_m[i]), float(b.edges_m[i + 1])))
        lines.append(f"| {b.edges_m[i]:g} - {b.edges_m[i + 1]:g} | {s:.1f} | "
                     f"{'~%g' % rep if rep is not None else 'not given'} |")
    names = [k for k in variants[0] if k.startswith("band_")]
    lines += ["", "The same under each definition (distance origin x road half-width):", "",
              "| distance from | road half-width [m] | " + " | ".join(n[5:].replace("_m", " m") for n in names) + " |",
              "|---|---:|" + "---:|" * len(names)]
    for r in variants:
        lines.append(f"| {r['distance_origin']} | {r['road_half_width_m']:g} | "
                     + " | ".join(f"{r[n]:.1f}" for n in names) + " |")
    lines += ["", "The reported numbers are busch2026's text (\"approximately 50 %\", \"circa 6 %\"), not measured "
              "here; the paper does not say from where it measures distance nor how wide its road is."]
    return "\n".join(lines) + "\n"


def plot_fig4(data: Fig4Data, path, variants: list[dict] | None = None) -> Path:
    """busch2026 Fig. 4: the camera image with the road coloured by distance band, and the share
    of road pixels per band as bars (measured; reported values as markers). Atomic PNG write."""
    return _save(_plot_fig4, path, data, variants)


def _save(plot, path, *args) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.style.context("default"):  # nuscenes-devkit's map API switches the global style
        fig = plot(*args)
    try:
        return atomic_savefig(fig, path, dpi=110)
    finally:
        plt.close(fig)


def _plot_fig4(data: Fig4Data, variants):
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    b = data.bands
    n = len(b.pixels)
    colors = np.array([BAND_COLORS[i % len(BAND_COLORS)] for i in range(n)], np.float32)
    img = data.image.astype(np.float32)
    m = b.band >= 0
    img[m] = 0.45 * img[m] + 0.55 * colors[b.band[m]]
    labels = [f"{b.edges_m[i]:g}-{b.edges_m[i + 1]:g} m" for i in range(n)]
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(13, 4.4), gridspec_kw={"width_ratios": [1.9, 1]})
    ax0.imshow(img.clip(0, 255).astype(np.uint8))
    ax0.set_axis_off()
    ax0.set_title(f"{data.params.camera}: road (|y| <= {b.road_half_width_m:g} m) by distance from the "
                  f"{b.distance_origin}", fontsize=10)
    ax0.legend(handles=[Patch(color=colors[i] / 255, label=labels[i]) for i in range(n)], loc="upper right",
               fontsize=8, framealpha=0.8)
    x = np.arange(n)
    series = [(f"|y| <= {b.road_half_width_m:g} m", b.share_percent)]
    if variants:
        for r in variants:
            if r["distance_origin"] == b.distance_origin and r["road_half_width_m"] != b.road_half_width_m:
                series.append((f"|y| <= {r['road_half_width_m']:g} m",
                               np.array([r[_band_name(b.edges_m, i)] for i in range(n)])))
    width = 0.8 / len(series)
    for k, (name, shares) in enumerate(series):
        pos = x - 0.4 + width * (k + 0.5)
        bars = ax1.bar(pos, shares, width, color=colors / 255, alpha=1.0 if k == 0 else 0.5,
                       edgecolor="black", label=f"measured, {name}")
        ax1.bar_label(bars, fmt="%.1f", fontsize=7)
    rep = [(i, REPORTED_FIG4[(float(b.edges_m[i]), float(b.edges_m[i + 1]))]) for i in range(n)
           if (float(b.edges_m[i]), float(b.edges_m[i + 1])) in REPORTED_FIG4]
    if rep:
        ax1.plot([i for i, _ in rep], [v for _, v in rep], "k*", ms=12, label="reported (busch2026 text, ~)")
    ax1.set_xticks(x, labels)
    ax1.set_ylabel("share of road pixels [%]")
    ax1.set_xlabel(f"distance from the {b.distance_origin} [m]")
    ax1.set_title("image portion per road distance (busch2026 Fig. 4)", fontsize=10)
    ax1.legend(fontsize=7)
    ax1.set_ylim(0, max(60.0, float(max(s.max() for _, s in series)) * 1.15))
    fig.suptitle(f"Measured on {data.source}", fontsize=9)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------
# Fig. 2: pseudo-label vs BEV ground truth, front view and BEV
# ------------------------------------------------------------------------------------------------

def lidar_ground_points(nusc, sample_token: str, ground_z_max_m: float = 0.3) -> tuple[np.ndarray, np.ndarray, str]:
    """A keyframe's LiDAR points in its ego frame, and which of them are ground.

    The keyframe's ego frame is the LIDAR_TOP ego pose (as in :func:`camera_rig`), so the points
    need only the LiDAR's ``calibrated_sensor`` transform.

    Returns:
        points: (P, 3) float64 metres, ego frame.
        ground: (P,) bool: lidarseg ``flat.*`` categories when the keyframe has lidarseg, else
            ``z_ego < ground_z_max_m``.
        rule: a short description of the ground rule used.
    Raises: DataError (via the devkit) if the keyframe has no LIDAR_TOP.
    """
    from nuscenes.utils.data_classes import LidarPointCloud

    from ..data.nuscenes_data import DataError

    sample = nusc.get("sample", sample_token)
    if "LIDAR_TOP" not in sample["data"]:
        raise DataError(f"sample {sample_token} has no LIDAR_TOP: Fig. 2 lifts pseudo-labels with the LiDAR")
    sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    pc = LidarPointCloud.from_file(nusc.get_sample_data_path(sd["token"]))
    points = geo.apply(geo.transform_from(cs["translation"], cs["rotation"]), pc.points[:3].T)
    lidarseg = {r["sample_data_token"]: r for r in getattr(nusc, "lidarseg", None) or []}
    if sd["token"] in lidarseg:
        lab = np.fromfile(Path(nusc.dataroot) / lidarseg[sd["token"]]["filename"], dtype=np.uint8)
        if lab.shape[0] == points.shape[0]:
            names = nusc.lidarseg_idx2name_mapping
            flat = np.array([names.get(i, "").startswith(GROUND_CATEGORY_PREFIX) for i in range(256)])
            return points, flat[lab], "lidarseg flat.* categories"
        log.warning("lidarseg of %s has %d labels for %d points: using the height rule", sd["token"],
                    lab.shape[0], points.shape[0])
    return points, points[:, 2] < ground_z_max_m, f"z_ego < {ground_z_max_m:g} m"


def lift_pseudo_to_bev_lidar(points_ego: np.ndarray, labels, K: np.ndarray, ego_T_cam: np.ndarray,
                             grid: BEVGrid, n_classes: int = NUM_ALL) -> np.ndarray:
    """Lift camera-view pseudo-labels to BEV with LiDAR points (busch2026 Fig. 2: "the pseudo
    ground truth is projected to BEV using nuScenes lidar data").

    Each (ground) point is projected into every camera; where it lands inside the image in front
    of the camera, it takes the class of the pixel it lands on (nearest pixel, OpenCV pixel
    centres at integers) and votes with it for the BEV cell that contains its (x, y). A cell takes
    its majority class (ties: the lower class index); cells without a vote are IGNORE. A point
    seen by two cameras votes twice. Pixels labelled IGNORE or >= ``n_classes`` do not vote.

    Args:
        points_ego: (P, 3) float metres in the keyframe's ego frame (pass only ground points).
        labels: (N, h, w) uint8 (or a list of N (h_i, w_i) maps) class ids, per camera.
        K: (N, 3, 3) intrinsics in pixels of each label map; ego_T_cam: (N, 4, 4) camera -> ego.
        grid: the BEV grid (rows/columns as :mod:`bevlib.bev`).
    Returns: (H, W) uint8 class ids, IGNORE where no point voted.
    Raises: ValueError if the numbers of label maps, intrinsics and extrinsics differ.
    """
    pts = np.asarray(points_ego, np.float64).reshape(-1, 3)
    K = np.asarray(K, np.float64)
    T = np.asarray(ego_T_cam, np.float64)
    if not (len(labels) == len(K) == len(T)):
        raise ValueError(f"{len(labels)} label maps, {len(K)} intrinsics and {len(T)} extrinsics: need one per camera")
    inside = grid.contains(pts[:, :2])
    pts = pts[inside]
    rc = np.rint(grid.xy_to_rowcol(pts[:, :2])).astype(np.int64)
    # A point exactly on the outer edge rounds one cell out: keep it in the edge cell.
    cell = np.clip(rc[:, 0], 0, grid.H - 1) * grid.W + np.clip(rc[:, 1], 0, grid.W - 1)
    cells, classes = [], []
    for lab, Kc, Tc in zip(labels, K, T):
        lab = np.asarray(lab)
        uv, _, front = geo.project(Kc, geo.invert(Tc), pts)
        u = np.rint(np.where(front, uv[:, 0], -1)).astype(np.int64)
        v = np.rint(np.where(front, uv[:, 1], -1)).astype(np.int64)
        ok = front & (u >= 0) & (v >= 0) & (u < lab.shape[1]) & (v < lab.shape[0])
        cls = lab[v[ok], u[ok]].astype(np.int64)
        keep = cls < n_classes
        cells.append(cell[ok][keep])
        classes.append(cls[keep])
    cells = np.concatenate(cells) if cells else np.zeros(0, np.int64)
    classes = np.concatenate(classes) if classes else np.zeros(0, np.int64)
    votes = np.bincount(cells * n_classes + classes, minlength=grid.H * grid.W * n_classes)
    votes = votes.reshape(grid.H * grid.W, n_classes)
    out = votes.argmax(1).astype(np.uint8)
    out[votes.sum(1) == 0] = IGNORE
    return out.reshape(grid.H, grid.W)


def render_labels_to_camera(bev_labels: np.ndarray, K: np.ndarray, ego_T_cam: np.ndarray,
                            image_hw: tuple[int, int], grid: BEVGrid, n_classes: int = NUM_BEV) -> np.ndarray:
    """A BEV class map seen from a camera (busch2026 Fig. 2b, front view of the BEV ground truth).

    The map is one-hot encoded, rendered with :func:`bevlib.render.render_bev` (bilinear) and
    reduced by argmax, i.e. each pixel takes the class with the largest bilinear weight among
    the four BEV cells around the ground point it sees.

    Args:
        bev_labels: (H, W) integer class ids in [0, n_classes) or IGNORE (no class).
        K: (3, 3) pixels of an (h, w) = ``image_hw`` image; ego_T_cam: (4, 4) camera -> ego.
    Returns: (h, w) uint8 class ids; IGNORE where the pixel's ray misses the grid (sky, outside
        the BEV extent) or sees only IGNORE cells.
    """
    lab = torch.as_tensor(np.asarray(bev_labels).astype(np.int64))
    onehot = F.one_hot(lab.clamp(0, n_classes), n_classes + 1)[..., :n_classes]   # IGNORE -> all zero
    onehot = onehot.permute(2, 0, 1)[None].float()
    rendered, valid = render_bev(onehot, np.asarray(K)[None, None], np.asarray(ego_T_cam)[None, None],
                                 image_hw, grid.with_shape(*lab.shape))
    rendered = rendered[0, 0]
    out = rendered.argmax(0).to(torch.uint8)
    out[~valid[0, 0] | (rendered.sum(0) < 0.5)] = IGNORE
    return out.numpy()


@dataclass
class Fig2Params:
    """Every knob of notebooks/fig2_pseudo_vs_gt.ipynb (busch2026 Fig. 2)."""

    dataroot: str | None = None          # None / "embedded": the embedded world; or a nuScenes path
    version: str = "v1.0-mini"
    world_seed: int = 0                  # embedded world only
    world_scenes: int = 6
    world_keyframes: int = 16
    world_image_wh: tuple = (800, 450)
    labeler: str = "synthetic"           # "synthetic" (embedded world) | "mask2former"
    pseudo_noise: float = 0.1
    mask2former_weights: str | None = None
    seed: int = 0
    sample_token: str | None = None      # None: the keyframe with most map markings ahead (see pick_keyframe)
    camera: str = "CAM_FRONT"
    bev_hw: tuple = (150, 150)           # busch2026: 150 x 150 over +-30 m x +-15 m
    line_width_m: float = 0.6
    ground_z_max_m: float = 0.3          # ground rule where there is no lidarseg
    output_dir: str | None = None        # None: <project>/outputs/fig2
    progress: bool = True

    def __post_init__(self):
        _check_camera(self.camera)
        if self.labeler not in ("synthetic", "mask2former"):
            raise ParameterError(f"parameter 'labeler' must be 'synthetic' or 'mask2former', got {self.labeler!r}")
        if self.labeler == "mask2former" and not self.mask2former_weights:
            raise ParameterError("parameter 'mask2former_weights' (a local path) is required with "
                                 "labeler='mask2former'")
        v = self.bev_hw
        if not (isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) and x > 0 for x in v)):
            raise ParameterError(f"parameter 'bev_hw' must be two positive integers, got {v!r}")
        self.bev_hw = tuple(v)
        self.world_image_wh = tuple(self.world_image_wh)

    @property
    def grid(self) -> BEVGrid:
        """The BEV grid: ``bev_hw`` cells over +-30 m x +-15 m (ego frame)."""
        return BEVGrid(H=self.bev_hw[0], W=self.bev_hw[1])


def pick_keyframe(nusc, grid: BEVGrid, cfg: BEVTargetConfig, max_candidates: int = 24) -> str:
    """A keyframe worth showing: among the first ``max_candidates`` keyframes (scene order), the
    one whose BEV ground truth has the most marking cells ahead of the ego (x > 0), crosswalk cells
    counting triple (busch2026 Fig. 2 discusses the crosswalk style). The first keyframe when no
    map is present."""
    tokens = scene_sample_tokens(nusc, [s["name"] for s in nusc.scene])[:max_candidates]
    ahead = grid.cell_centers()[..., 0] > 0
    best, best_score = tokens[0], -1
    for t in tokens:
        gt = bev_ground_truth(nusc, t, grid, cfg)
        if gt is None:
            return tokens[0]
        g = gt[ahead]
        score = int(((g > 0) & (g < NUM_BEV)).sum() + 2 * (g == ALL_CLASSES.index("crosswalk")).sum())
        if score > best_score:
            best, best_score = t, score
    return best


@dataclass
class Fig2Data:
    """What :func:`prepare_fig2` produced for one keyframe (all numpy)."""

    params: Fig2Params
    source: str
    sample_token: str
    image: np.ndarray          # (h, w, 3) uint8, the chosen camera at native resolution
    pseudo_front: np.ndarray   # (h, w) uint8 pseudo-label of that camera
    gt_front: np.ndarray       # (h, w) uint8 BEV GT rendered into it (IGNORE off the grid); None w/o map
    pseudo_bev: np.ndarray     # (H, W) uint8 LiDAR-lifted pseudo-label, IGNORE where no point
    gt_bev: np.ndarray         # (H, W) uint8 BEV ground truth; None without a map expansion
    ground_rule: str
    n_ground_points: int


def prepare_fig2(p: Fig2Params) -> Fig2Data:
    """Everything Fig. 2 shows for one keyframe: pseudo-labels of its 6 cameras (generated once
    and cached, as busch2026 does), LiDAR-lifted to BEV; the BEV ground truth and its rendering
    into ``p.camera``.

    Raises: ParameterError for the synthetic labeller on data that is not an embedded world;
        DataError naming missing files or records.
    """
    from ..data.pseudo import cache_pseudo_labels, load_pseudo_label
    from .busch2026 import make_labeler

    dataroot, source = resolve_dataroot(None if p.dataroot in (None, "embedded") else p.dataroot, p.version,
                                        _world_fields(p), p.progress)
    if p.labeler == "synthetic" and not (Path(dataroot) / "bevlib_world.json").exists():
        raise ParameterError(f"labeler='synthetic' needs the embedded world's camera semantics; {dataroot} is not "
                             "one: use labeler='mask2former' with mask2former_weights")
    nusc = open_nuscenes(dataroot, p.version)
    grid = p.grid
    tcfg = BEVTargetConfig(line_width_m=p.line_width_m)
    token = p.sample_token or pick_keyframe(nusc, grid, tcfg)
    rig = camera_rig(nusc, token)
    labeler = make_labeler(p)
    cache_pseudo_labels(nusc, labeler, rig["sd_tokens"], progress=p.progress)
    labels = [load_pseudo_label(dataroot, labeler.name, t) for t in rig["sd_tokens"]]
    # Mask2Former may label at another size than the JPEG: scale each camera's K to its label map.
    Ks = np.stack([geo.scale_intrinsics(K, wh, (lab.shape[1], lab.shape[0]))
                   for K, wh, lab in zip(rig["K"], rig["native_wh"], labels)])
    points, ground, rule = lidar_ground_points(nusc, token, p.ground_z_max_m)
    pseudo_bev = lift_pseudo_to_bev_lidar(points[ground], labels, Ks, rig["ego_T_cam"], grid)

    c = CAMERAS.index(p.camera)
    lab_c = labels[c]
    h, w = lab_c.shape
    image = load_image(nusc.get_sample_data_path(rig["sd_tokens"][c]), (w, h))
    gt_bev = bev_ground_truth(nusc, token, grid, tcfg)
    gt_front = None if gt_bev is None else render_labels_to_camera(gt_bev, Ks[c], rig["ego_T_cam"][c], (h, w), grid)
    return Fig2Data(p, source, token, image, lab_c, gt_front, pseudo_bev, gt_bev, rule, int(ground.sum()))


def _bev_rgb(labels: np.ndarray) -> np.ndarray:
    from ..viz import colorize

    rgb = colorize(labels)
    rgb[labels == IGNORE] = NO_POINT_RGB
    return rgb


def plot_fig2(data: Fig2Data, path) -> Path:
    """busch2026 Fig. 2: (a) pseudo ground truth, (b) nuScenes BEV ground truth, each in the
    front view (left) and in BEV (right); the legend names the classes shown. Atomic PNG write."""
    return _save(_plot_fig2, path, data)


def _plot_fig2(data: Fig2Data):
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    from ..viz import legend_handles, overlay

    p = data.params
    g = p.grid
    extent = (g.y_max, g.y_min, g.x_min, g.x_max)  # left, right, bottom, top: driver-up map, left = +y
    img_h, img_w = data.image.shape[:2]
    # Panel widths proportional to their aspect ratios, so both panels of a row share a height.
    ratios = [img_w / img_h, (g.y_max - g.y_min) / (g.x_max - g.x_min)]
    fig_w = 12.0
    row_h = 0.92 * fig_w / sum(ratios)
    fig, axes = plt.subplots(2, 2, figsize=(fig_w, 2 * row_h + 1.6), gridspec_kw={"width_ratios": ratios},
                             layout="constrained")
    panels = [
        ("(a) pseudo GT, front view", data.pseudo_front, "front"),
        ("(a) pseudo GT lifted to BEV with LiDAR", data.pseudo_bev, "bev"),
        ("(b) nuScenes GT rendered into the front view", data.gt_front, "front"),
        ("(b) nuScenes BEV GT", data.gt_bev, "bev"),
    ]
    shown = set()
    for ax, (title, lab, kind) in zip(axes.flat, panels):
        ax.set_title(title, fontsize=9)
        if lab is None:
            ax.text(0.5, 0.5, "no map expansion:\nBEV ground truth absent", ha="center", va="center",
                    transform=ax.transAxes)
            ax.set_axis_off()
            continue
        shown |= {int(c) for c in np.unique(lab) if 0 < c < NUM_ALL}
        if kind == "front":
            ax.imshow(overlay(data.image, lab, alpha=0.65))
            ax.set_axis_off()
        else:
            ax.imshow(_bev_rgb(lab), extent=extent, interpolation="nearest")
            # The ego vehicle's footprint (nuScenes ego origin: rear axle; about 4.9 m x 1.9 m).
            ax.add_patch(Rectangle((-0.95, -1.0), 1.9, 4.9, fill=False, ec="white", lw=1))
            ax.set_xlabel("y [m] (left +)", fontsize=8)
            ax.set_ylabel("x [m] (forward)", fontsize=8)
            ax.tick_params(labelsize=7)
    handles = legend_handles(sorted(shown)) + [Patch(color=np.array(NO_POINT_RGB) / 255.0,
                                                     label="BEV: no LiDAR ground point")]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 8), fontsize=8, frameon=False)
    fig.suptitle(f"busch2026 Fig. 2 on {data.source}, keyframe {data.sample_token[:8]}, {p.camera}; "
                 f"LiDAR ground: {data.ground_rule} ({data.n_ground_points} points)", fontsize=9)
    return fig


def fig2_summary(data: Fig2Data) -> str:
    """Markdown: per BEV class, the cells labelled in the lifted pseudo-label and in the GT."""
    lines = [f"Keyframe `{data.sample_token}` of {data.source}. LiDAR ground points: {data.n_ground_points} "
             f"({data.ground_rule}); BEV cells with a LiDAR vote: {int((data.pseudo_bev != IGNORE).sum())} of "
             f"{data.pseudo_bev.size}.", "",
             "| class | lifted pseudo-label cells | BEV GT cells |", "|---|---:|---:|"]
    for c in range(1, NUM_ALL):
        a = int((data.pseudo_bev == c).sum())
        b = int((data.gt_bev == c).sum()) if data.gt_bev is not None else None
        if a or b:
            lines.append(f"| {ALL_CLASSES[c]} | {a} | {b if b is not None else 'absent'} |")
    return "\n".join(lines) + "\n"
