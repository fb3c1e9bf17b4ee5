"""busch2026 Fig. 4 (road distance vs image portion) and Fig. 2 (pseudo vs BEV ground truth).

Fig. 4 (Sec. IV-B) motivates the ranged metrics mIoU20/40/60: "the first 7.5 m of the road are
represented by approximately 50 % of the image, whereas the 7.5 m from 22.5 m to 30 m by circa
6 %". :func:`distance_bands` measures that split for one camera of a rig with the analytic
ray / ground-plane intersection (:func:`bevlib.render.ground_hits`), under every reading of
"road", "distance" and "portion" the text leaves open (:func:`fig4_variants`); the default,
:class:`Fig4Params`, is the one closest to the text.

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
from ..data.source import WorldParams, resolve_dataroot
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
#: What "approximately" / "circa" is taken to mean for each reported value, in percentage points:
#: "approximately 50 %" is a round "half" (+-5 pp), "circa 6 %" is given to one significant digit
#: (+-0.5 pp: 5.5 .. 6.5 would all be written "circa 6 %").
REPORTED_FIG4_TOLERANCE_PP = {(0.0, 7.5): 5.0, (22.5, 30.0): 0.5}
#: Where a ground point's distance is measured from (see :func:`distance_bands`).
DISTANCE_ORIGINS = ("camera", "ego", "front_bumper")
#: How it is measured: along the ego x axis, or as the ground-plane (Euclidean) distance to the origin.
DISTANCE_METRICS = ("longitudinal", "radial")
#: Denominator of a band's share (see :func:`distance_bands`).
SHARE_OF = ("range", "ground", "image")
#: Which ego frame the camera extrinsic is taken in (see :func:`prepare_fig4`).
EGO_POSES = ("keyframe", "camera")
#: Ego x (m) of the front bumper. The nuScenes ego origin is the centre of the rear axle on the ground;
#: the Renault Zoe body spans x = -0.75 .. 3.35 m in bevlib's ego box (``bevlib.viewer.state.EGO_BOX_XY``,
#: the embedded world's ego); published estimates put it at 3.43 m (length 4.084 m, centre 1.385 m
#: ahead of the rear axle).
FRONT_BUMPER_X_M = 3.35
#: Image size of busch2026's training (Sec. IV), a variant of Fig. 4 beside the native resolution.
PAPER_IMAGE_WH = (512, 288)
#: Band colours (RGB 0-255), near to far, as the four colours of busch2026 Fig. 4.
BAND_COLORS = ((230, 25, 75), (245, 130, 48), (255, 225, 25), (60, 180, 75))
#: Colour of BEV cells no LiDAR ground point fell into (Fig. 2, lifted pseudo-label).
NO_POINT_RGB = (70, 70, 70)
#: nuScenes-lidarseg categories counted as ground when lidarseg is present.
GROUND_CATEGORY_PREFIX = "flat."


# ------------------------------------------------------------------------------------------------
# Shared: which dataset
# ------------------------------------------------------------------------------------------------

def _first_keyframe(nusc) -> str:
    return scene_sample_tokens(nusc, [nusc.scene[0]["name"]])[0]


def _check_camera(camera: str) -> None:
    if camera not in CAMERAS:
        raise ParameterError(f"parameter 'camera' must be one of {', '.join(CAMERAS)}, got {camera!r}")


# ------------------------------------------------------------------------------------------------
# Fig. 4: share of road pixels per distance band
# ------------------------------------------------------------------------------------------------

@dataclass
class DistanceBands:
    """Result of :func:`distance_bands` (busch2026 Fig. 4).

    Attributes:
        edges_m: (n_bands + 1,) float64 band edges in metres, 0 .. forward range.
        band: (h, w) int8 band index of every pixel, -1 where the pixel is not counted in a band.
        pixels: (n_bands,) int64 road pixels per band.
        share_percent: (n_bands,) float64, ``100 * pixels / denominator_pixels`` (sums to 100 for
            ``share_of="range"``).
        denominator_pixels: the pixel count the shares are taken of (see ``share_of``).
        nearest_m: the smallest distance of a counted pixel (where the camera's view of the road
            begins; it decides how much of the first band the image holds).
        road_half_width_m / distance_origin / distance_metric / share_of: the definition used
            (``road_half_width_m=None``: no lateral limit).
    """

    edges_m: np.ndarray
    band: np.ndarray
    pixels: np.ndarray
    share_percent: np.ndarray
    denominator_pixels: int
    nearest_m: float
    road_half_width_m: float | None
    distance_origin: str
    distance_metric: str = "longitudinal"
    share_of: str = "range"

    @property
    def definition(self) -> str:
        """One line stating what was counted."""
        origin = {"camera": "the camera (the ground point below it)", "ego": "the ego origin (rear axle)",
                  "front_bumper": f"the front bumper (ego x = {FRONT_BUMPER_X_M:g} m)"}[self.distance_origin]
        d = ("ego x of the ground point minus that of " if self.distance_metric == "longitudinal"
             else "ground-plane distance of the ground point (ahead of it) to ") + origin
        road = ("every ground pixel below the horizon" if self.road_half_width_m is None
                else f"ground pixels with |y_ego| <= {self.road_half_width_m:g} m")
        of = {"range": "of all counted pixels (the bands sum to 100 %)",
              "ground": "of all road pixels below the horizon, beyond the range too",
              "image": "of all pixels of the image"}[self.share_of]
        return (f"{road} (flat ground z = 0) at 0 <= d < {self.edges_m[-1]:g} m, d = {d}; share {of}")


def _origin_xy(ego_T_cam: np.ndarray, distance_origin: str) -> tuple[float, float]:
    if distance_origin == "camera":
        return float(ego_T_cam[0, 3]), float(ego_T_cam[1, 3])
    return (FRONT_BUMPER_X_M if distance_origin == "front_bumper" else 0.0), 0.0


def distance_bands(K: np.ndarray, ego_T_cam: np.ndarray, image_hw: tuple[int, int],
                   road_half_width_m: float | None = None, forward_range_m: float = 30.0, n_bands: int = 4,
                   distance_origin: str = "camera", distance_metric: str = "longitudinal",
                   share_of: str = "range") -> DistanceBands:
    """Share of a camera's road pixels per equal distance band (busch2026 Sec. IV-B, Fig. 4).

    Definition: the road is the flat ground plane z = 0 of the ego frame, limited to ``|y_ego| <=
    road_half_width_m`` (a straight road centred on the ego vehicle; ``15`` is the busch2026 BEV's
    lateral extent) or, with ``road_half_width_m=None``, not limited laterally (every pixel whose
    ray points below the horizon). A road pixel is counted in a band when its ground point lies
    ahead of the origin (``x >= x_origin``) at a distance ``0 <= d < forward_range_m``; bands split
    ``[0, forward_range_m)`` into ``n_bands`` equal parts.

    * ``distance_origin``: ``"camera"`` (the point on the ground below the camera), ``"ego"`` (the
      ego origin, the rear axle, as the BEV grid counts it) or ``"front_bumper"`` (ego x =
      :data:`FRONT_BUMPER_X_M`, y = 0).
    * ``distance_metric``: ``"longitudinal"``: ``d = x - x_origin`` (lines of equal d are
      image rows for a level camera); ``"radial"``: ``d = hypot(x - x_origin, y - y_origin)``.
    * ``share_of``: the denominator: ``"range"``: the counted pixels (the bands sum to 100);
      ``"ground"``: every road pixel below the horizon, the ones beyond the range (or behind the
      origin) too; ``"image"``: every pixel of the image.

    For a level pinhole camera at height h with no lateral limit and ``"camera"`` / ``"longitudinal"``,
    distance d falls on row ``cy + f h / d``, so band [a, b) holds ``f h (1/a - 1/b)`` rows, with a
    clipped to the nearest ground the image shows: for 4 x 7.5 m the shares are proportional to
    ``(1/d_min - 2/15, 1/15, 1/45, 1/90)``.

    Args:
        K: (3, 3) intrinsics in pixels for images of size ``image_hw`` = (h, w).
        ego_T_cam: (4, 4) camera -> ego transform (metres, float64).
    Returns: :class:`DistanceBands`.
    Raises: ValueError for a non-positive width / range / band count, an unknown origin, metric or
        denominator, or a camera that sees no road pixel.
    """
    if not ((road_half_width_m is None or road_half_width_m > 0) and forward_range_m > 0 and n_bands >= 1):
        raise ValueError(f"need road_half_width_m > 0 (or None), forward_range_m > 0, n_bands >= 1; got "
                         f"{road_half_width_m}, {forward_range_m}, {n_bands}")
    for name, value, allowed in (("distance_origin", distance_origin, DISTANCE_ORIGINS),
                                 ("distance_metric", distance_metric, DISTANCE_METRICS),
                                 ("share_of", share_of, SHARE_OF)):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    T = np.asarray(ego_T_cam, np.float64)
    xy, below = ground_hits(np.asarray(K, np.float64)[None], T[None], image_hw)
    xy, below = xy[0], below[0]
    ox, oy = _origin_xy(T, distance_origin)
    dx = xy[..., 0] - ox
    d = dx if distance_metric == "longitudinal" else np.hypot(dx, xy[..., 1] - oy)
    edges = np.linspace(0.0, forward_range_m, n_bands + 1)
    with np.errstate(invalid="ignore"):  # NaN hits above the horizon compare False
        road = below if road_half_width_m is None else below & (np.abs(xy[..., 1]) <= road_half_width_m)
        counted = road & (dx >= 0) & (d < forward_range_m)
    band = np.full(d.shape, -1, np.int8)
    # searchsorted(side='right') - 1 puts d == edge into the band that starts there.
    band[counted] = np.clip(np.searchsorted(edges, d[counted], side="right") - 1, 0, n_bands - 1)
    pixels = np.bincount(band[counted], minlength=n_bands).astype(np.int64)
    if pixels.sum() == 0:
        raise ValueError("the camera sees no road pixel within the forward range (is it facing backwards?)")
    denominator = {"range": int(pixels.sum()), "ground": int(road.sum()), "image": int(d.size)}[share_of]
    return DistanceBands(edges, band, pixels, 100.0 * pixels / denominator, denominator, float(d[counted].min()),
                         None if road_half_width_m is None else float(road_half_width_m), distance_origin,
                         distance_metric, share_of)


@dataclass
class Fig4Params(WorldParams):
    """Every knob of notebooks/fig4_distance_share.ipynb (busch2026 Fig. 4). ``dataroot=None``
    reads the real keyframe in ../shared when present, else the embedded world.

    The default definition (distance ahead of the camera along x, every ground pixel below the
    horizon, shares of the pixels within 30 m) is the reading of busch2026 Sec. IV-B closest to
    its text: "image portion" of the camera image per "road distance", in quarters of the 30 m
    forward half of the BEV; see :func:`fig4_markdown` for every other definition."""

    camera: str = "CAM_FRONT"
    sample_token: str | None = None      # None: the first keyframe of the first scene
    road_half_width_m: float | None = None  # None: no lateral limit; 7: two 3.5 m lanes each side; 15: the BEV
    distance_origin: str = "camera"      # "camera" | "ego" (rear axle) | "front_bumper"
    distance_metric: str = "longitudinal"  # "longitudinal" (ego x) | "radial" (ground-plane distance)
    share_of: str = "range"              # "range" | "ground" | "image": denominator, see distance_bands
    ego_pose: str = "keyframe"           # "keyframe" | "camera", see prepare_fig4
    image_wh: tuple | None = None        # None: the camera's native size; busch2026 trains at (512, 288)
    forward_range_m: float = 30.0        # busch2026: half of the 60 m BEV, in 4 quarters
    n_bands: int = 4
    output_dir: str | None = None        # None: <project>/outputs/fig4
    progress: bool = True

    def __post_init__(self):
        super().__post_init__()
        _check_camera(self.camera)
        for name, allowed in (("distance_origin", DISTANCE_ORIGINS), ("distance_metric", DISTANCE_METRICS),
                              ("share_of", SHARE_OF), ("ego_pose", EGO_POSES)):
            if getattr(self, name) not in allowed:
                raise ParameterError(f"parameter {name!r} must be one of {allowed}, got {getattr(self, name)!r}")
        for n in ("road_half_width_m", "forward_range_m"):
            v = getattr(self, n)
            if n == "road_half_width_m" and v is None:
                continue
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0):
                raise ParameterError(f"parameter {n!r} must be a positive number of metres, got {v!r}")
        if not (isinstance(self.n_bands, int) and self.n_bands >= 1):
            raise ParameterError(f"parameter 'n_bands' must be a positive integer, got {self.n_bands!r}")
        v = self.image_wh
        if v is not None:
            if not (isinstance(v, (list, tuple)) and len(v) == 2
                    and all(isinstance(x, int) and not isinstance(x, bool) and x >= 16 for x in v)):
                raise ParameterError(f"parameter 'image_wh' must be None or two integers (width, height) >= 16, "
                                     f"got {v!r}")
            self.image_wh = tuple(v)


@dataclass
class Fig4Data:
    """What :func:`prepare_fig4` read: one camera of one keyframe at ``params.image_wh`` (default native)."""

    params: Fig4Params
    dataroot: str
    source: str
    sample_token: str
    image: np.ndarray          # (h, w, 3) uint8
    K: np.ndarray              # (3, 3) float64, pixels of ``image``
    ego_T_cam: np.ndarray      # (4, 4) float64, in the ego frame ``params.ego_pose`` names
    bands: DistanceBands | None = None   # set by prepare_fig4
    native_K: np.ndarray | None = None   # (3, 3) float64 at the camera's native size
    native_wh: tuple[int, int] | None = None
    extrinsics: dict | None = None       # {ego_pose: (4, 4) ego_T_cam} for every one of EGO_POSES

    @property
    def image_hw(self) -> tuple[int, int]:
        """(h, w) of the camera image in pixels."""
        return self.image.shape[0], self.image.shape[1]


def prepare_fig4(p: Fig4Params) -> Fig4Data:
    """Read the camera's calibration and image, and measure its distance bands.

    ``p.ego_pose`` picks the ego frame of the extrinsic: ``"keyframe"``: the LiDAR keyframe's ego
    frame (the BEV frame, as :func:`camera_rig` and the renderer use it; the camera's own ego pose
    is chained in, so a moving ego has moved between the two timestamps); ``"camera"``: the
    camera's ``calibrated_sensor`` alone, i.e. the vehicle as it was when the image was exposed.
    Only the ego / front-bumper origins can tell the two apart.

    Raises: DataError / ParameterError naming the bad input.
    """
    dataroot, source = resolve_dataroot(p, p.progress, prefer_real_keyframe=True)
    nusc = open_nuscenes(dataroot, p.version)
    token = p.sample_token or _first_keyframe(nusc)
    rig = camera_rig(nusc, token, cameras=(p.camera,))
    native_wh = tuple(int(x) for x in rig["native_wh"][0])
    w, h = p.image_wh or native_wh
    image = load_image(nusc.get_sample_data_path(rig["sd_tokens"][0]), (w, h))
    sd = nusc.get("sample_data", rig["sd_tokens"][0])
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    extrinsics = {"keyframe": rig["ego_T_cam"][0], "camera": geo.transform_from(cs["translation"], cs["rotation"])}
    native_K = rig["K"][0]
    K = native_K if (w, h) == native_wh else geo.scale_intrinsics(native_K, native_wh, (w, h))
    data = Fig4Data(p, dataroot, source, token, image, K, extrinsics[p.ego_pose], native_K=native_K,
                    native_wh=native_wh, extrinsics=extrinsics)
    data.bands = _bands(data)
    return data


def _bands(data: Fig4Data, **override) -> DistanceBands:
    """``data``'s distance bands, with any of the definition fields of :class:`Fig4Params` overridden."""
    p = data.params
    q = {k: getattr(p, k) for k in ("road_half_width_m", "distance_origin", "distance_metric", "share_of",
                                    "ego_pose", "image_wh")}
    q.update(override)
    wh = q["image_wh"] or data.native_wh
    K = data.native_K if tuple(wh) == tuple(data.native_wh) else geo.scale_intrinsics(data.native_K, data.native_wh, wh)
    return distance_bands(K, data.extrinsics[q["ego_pose"]], (wh[1], wh[0]), q["road_half_width_m"],
                          p.forward_range_m, p.n_bands, q["distance_origin"], q["distance_metric"], q["share_of"])


def level_camera_shares(edges_m, nearest_m: float) -> np.ndarray:
    """Closed-form Fig. 4 shares (%) of a level pinhole camera over flat ground, for the default
    definition (no lateral limit, longitudinal distance from the camera, share of the range).

    Distance d lies on image row ``cy + f h / d``, so band [a, b) spans ``f h (1/a' - 1/b)`` full
    image rows, ``a' = max(a, nearest_m)``; ``nearest_m`` = ``f h / (H - cy)`` is where the image's
    bottom edge meets the ground. Neither f nor h enters the shares.

    Returns: (len(edges_m) - 1,) float64, summing to 100.
    """
    e = np.asarray(edges_m, np.float64)
    lo, hi = np.maximum(e[:-1], nearest_m), e[1:]
    rows = np.where(hi > lo, 1.0 / lo - 1.0 / np.maximum(hi, lo), 0.0)
    return 100.0 * rows / rows.sum()


def nearest_for_first_share(edges_m, first_share_percent: float) -> float:
    """The ``nearest_m`` at which :func:`level_camera_shares` gives the first band
    ``first_share_percent``: solves ``(1/d - 1/e1) = s (1/d - 1/R)`` for d."""
    e = np.asarray(edges_m, np.float64)
    s = first_share_percent / 100.0
    return float((1.0 - s) / (1.0 / e[1] - s / e[-1]))


#: The definition fields of a Fig. 4 variant row, in table order.
FIG4_DEFINITION_FIELDS = ("distance_origin", "road_half_width_m", "distance_metric", "share_of", "ego_pose",
                          "image_wh")


def fig4_variants(data: Fig4Data, half_widths=None, origins=DISTANCE_ORIGINS) -> list[dict]:
    """Fig. 4 shares under each definition.

    Rows: (1) every distance origin x road half-width (``half_widths``, default {7 m, 15 m BEV
    extent, no limit} and the chosen one) x distance metric, at the chosen share / ego pose / image
    size; (2) the chosen definition with each other denominator; (3) every origin with the other
    ego pose; (4) the chosen definition at the other image size (busch2026's 512 x 288, or native).

    Returns: rows ``{distance_origin, road_half_width_m (None: no limit), distance_metric, share_of,
    ego_pose, image_wh ("WxH"), band_<a>-<b>_m: %, ..., within_reported: bool, default: bool}``;
    ``within_reported``: every reported band within :data:`REPORTED_FIG4_TOLERANCE_PP`.
    """
    p = data.params
    if half_widths is None:
        half_widths = [7.0, 15.0, None]
        if p.road_half_width_m not in half_widths:
            half_widths.insert(0, float(p.road_half_width_m))
    chosen = {k: getattr(p, k) for k in FIG4_DEFINITION_FIELDS}
    chosen["image_wh"] = tuple(p.image_wh or data.native_wh)
    other_wh = tuple(data.native_wh) if tuple(chosen["image_wh"]) != tuple(data.native_wh) else PAPER_IMAGE_WH
    defs = [dict(chosen, distance_origin=o, road_half_width_m=hw, distance_metric=m)
            for o in origins for hw in half_widths for m in DISTANCE_METRICS]
    defs += [dict(chosen, share_of=s) for s in SHARE_OF if s != p.share_of]
    defs += [dict(chosen, distance_origin=o, ego_pose=e) for o in origins for e in EGO_POSES if e != p.ego_pose]
    if other_wh != chosen["image_wh"]:
        defs.append(dict(chosen, image_wh=other_wh))
    rows, seen = [], set()
    for q in defs:
        key = tuple(q[k] for k in FIG4_DEFINITION_FIELDS)
        if key in seen:
            continue
        seen.add(key)
        b = _bands(data, **q)
        row = {k: q[k] for k in FIG4_DEFINITION_FIELDS}
        row["image_wh"] = f"{q['image_wh'][0]}x{q['image_wh'][1]}"
        row.update({_band_name(b.edges_m, i): round(float(s), 2) for i, s in enumerate(b.share_percent)})
        row["within_reported"] = _within_reported(b)
        row["default"] = key == tuple(chosen[k] for k in FIG4_DEFINITION_FIELDS)
        rows.append(row)
    return rows


def _reported_gaps(b: DistanceBands) -> dict:
    """{band index: (reported %, measured - reported pp, tolerance pp)} for the bands busch2026 gives."""
    out = {}
    for i in range(len(b.pixels)):
        key = (float(b.edges_m[i]), float(b.edges_m[i + 1]))
        if key in REPORTED_FIG4:
            rep = REPORTED_FIG4[key]
            out[i] = (rep, float(b.share_percent[i]) - rep, REPORTED_FIG4_TOLERANCE_PP[key])
    return out


def _within_reported(b: DistanceBands) -> bool:
    gaps = _reported_gaps(b)
    return bool(gaps) and all(abs(g) <= tol for _, g, tol in gaps.values())


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


def _fmt_width(hw) -> str:
    return "none" if hw is None else f"{hw:g}"


def _level_camera_note(b: DistanceBands) -> list[str]:
    """For the default definition: what the closed form (:func:`level_camera_shares`) says about the
    reported pair, as Markdown lines (none for other definitions or bands)."""
    gaps = _reported_gaps(b)
    if not (b.road_half_width_m is None and b.distance_origin == "camera" and b.distance_metric == "longitudinal"
            and b.share_of == "range" and 0 in gaps and len(b.pixels) - 1 in gaps):
        return []
    pred = level_camera_shares(b.edges_m, b.nearest_m)
    d50 = nearest_for_first_share(b.edges_m, gaps[0][0])
    at50 = level_camera_shares(b.edges_m, d50)
    return ["", f"For a level camera this definition has a closed form (shares proportional to "
            f"1/max(a, d_min) - 1/b per band [a, b)): with this camera's d_min = {b.nearest_m:.2f} m it gives "
            f"{' / '.join(f'{s:.1f}' for s in pred)} %. The reported ~{gaps[0][0]:g} % for the first band needs "
            f"d_min = {d50:.2f} m, and then the last band is {at50[-1]:.1f} % (reported ~{gaps[len(pred) - 1][0]:g} "
            "%): under this definition the two reported values fit one camera within their rounding; how much "
            "of the first band a camera shows depends on where its view of the road begins."]


def fig4_markdown(data: Fig4Data, variants: list[dict]) -> str:
    """The comparison with busch2026's text: measured shares beside the reported ~50 % / ~6 %, and
    the same under every definition of ``variants`` (:func:`fig4_variants`)."""
    b = data.bands
    p = data.params
    gaps = _reported_gaps(b)
    lines = [f"**Fig. 4, measured** on {data.source}, {p.camera}, keyframe `{data.sample_token}`, "
             f"{data.image_hw[1]}x{data.image_hw[0]} px, extrinsic in the {p.ego_pose} ego frame. "
             f"Counted: {b.definition}. The camera's view of the road begins {b.nearest_m:.2f} m from the "
             f"{b.distance_origin.replace('_', ' ')}.", "",
             "| band [m] | measured share [%] | reported share [%] (busch2026 Sec. IV-B, nuScenes) "
             "| measured - reported [pp] | \"≈\" taken as [pp] |",
             "|---|---:|---:|---:|---:|"]
    for i, s in enumerate(b.share_percent):
        if i in gaps:
            rep, gap, tol = gaps[i]
            lines.append(f"| {b.edges_m[i]:g} - {b.edges_m[i + 1]:g} | {s:.1f} | ~{rep:g} | {gap:+.1f} | ±{tol:g} |")
        else:
            lines.append(f"| {b.edges_m[i]:g} - {b.edges_m[i + 1]:g} | {s:.1f} | not given | | |")
    if gaps:
        verdict = "within" if _within_reported(b) else "**not** within"
        lines += ["", f"This definition is {verdict} what \"≈\" is taken as here for the reported values "
                  f"({', '.join(f'{g:+.1f} pp against ~{r:g} % (±{t:g})' for r, g, t in gaps.values())})."]
    lines += _level_camera_note(b)
    names = [k for k in variants[0] if k.startswith("band_")]
    lines += ["", "The same under each definition (bold: the definition above; ✓: every reported band within "
              "its tolerance):", "",
              "| distance from | road half-width [m] | distance | share of | ego pose | image | "
              + " | ".join(n[5:].replace("_m", " m") for n in names) + " | ≈ paper |",
              "|---|---:|---|---|---|---|" + "---:|" * len(names) + "---|"]
    for r in variants:
        cells = [r["distance_origin"], _fmt_width(r["road_half_width_m"]), r["distance_metric"], r["share_of"],
                 r["ego_pose"], r["image_wh"]] + [f"{r[n]:.1f}" for n in names]
        cells = [f"**{c}**" for c in cells] if r.get("default") else cells
        lines.append("| " + " | ".join(cells) + f" | {'✓' if r['within_reported'] else ''} |")
    lines += ["", "Definitions: *distance from* the camera (its ground point), the ego origin (rear axle) or the "
              f"front bumper (ego x = {FRONT_BUMPER_X_M:g} m); *road half-width* `none` = every ground pixel below "
              "the horizon; *distance* `longitudinal` = along ego x, `radial` = ground-plane distance; *share of* "
              "`range` = the pixels within the range (bands sum to 100 %), `ground` = every road pixel below the "
              "horizon (beyond the range too), `image` = the whole image; *ego pose* `keyframe` = the camera in the "
              "LiDAR keyframe's ego frame (the BEV frame), `camera` = its calibrated_sensor alone (the vehicle at "
              "exposure time).", "",
              "The reported numbers are busch2026's text (\"approximately 50 %\", \"circa 6 %\"), not measured "
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
    road = "all ground" if b.road_half_width_m is None else f"|y| <= {b.road_half_width_m:g} m"
    origin = b.distance_origin.replace("_", " ")
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(13, 4.4), gridspec_kw={"width_ratios": [1.9, 1]})
    ax0.imshow(img.clip(0, 255).astype(np.uint8))
    ax0.set_axis_off()
    ax0.set_title(f"{data.params.camera}: flat road ({road}) by {b.distance_metric} distance from the {origin}",
                  fontsize=10)
    ax0.legend(handles=[Patch(color=colors[i] / 255, label=labels[i]) for i in range(n)], loc="upper right",
               fontsize=8, framealpha=0.8)
    x = np.arange(n)
    series = [(road, b.share_percent)]
    if variants:   # the other road widths under the same definition otherwise
        same = [k for k in FIG4_DEFINITION_FIELDS if k not in ("road_half_width_m", "image_wh")]
        for r in variants:
            if (all(r[k] == getattr(data.params, k) for k in same) and r["road_half_width_m"] != b.road_half_width_m
                    and r["image_wh"] == f"{data.image_hw[1]}x{data.image_hw[0]}"):
                hw = r["road_half_width_m"]
                series.append(("all ground" if hw is None else f"|y| <= {hw:g} m",
                               np.array([r[_band_name(b.edges_m, i)] for i in range(n)])))
    width = 0.8 / len(series)
    for k, (name, shares) in enumerate(series):
        pos = x - 0.4 + width * (k + 0.5)
        bars = ax1.bar(pos, shares, width, color=colors / 255, alpha=1.0 if k == 0 else 0.5,
                       edgecolor="black", label=f"measured, {name}")
        ax1.bar_label(bars, fmt="%.1f", fontsize=7)
    rep = _reported_gaps(b)
    if rep:
        ax1.errorbar(np.array(list(rep)) - 0.48, [r for r, _, _ in rep.values()],   # beside the group
                     yerr=[t for _, _, t in rep.values()], fmt="k*", ms=10, capsize=4,
                     label="reported (busch2026 text); whisker: what ≈ is taken as")
    ax1.set_xticks(x, labels)
    ax1.set_ylabel("share of road pixels [%]" if b.share_of == "range" else f"share of the {b.share_of} pixels [%]")
    ax1.set_xlabel(f"{b.distance_metric} distance from the {origin} [m]")
    ax1.set_title("image portion per road distance (busch2026 Fig. 4)", fontsize=10)
    ax1.legend(fontsize=7, loc="upper right")
    ax1.set_ylim(0, max(72.0, float(max(s.max() for _, s in series)) * 1.4))   # room for the legend
    fig.suptitle(f"Measured on {data.source}", fontsize=9)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------
# Fig. 2: pseudo-label vs BEV ground truth, front view and BEV
# ------------------------------------------------------------------------------------------------

def lidar_ground_points(nusc, sample_token: str, ground_z_max_m: float = 0.3) -> tuple[np.ndarray, np.ndarray, str]:
    """A keyframe's LiDAR points in its ego frame, and which of them are ground.

    Points come from :func:`bevlib.data.lidar.load_lidar_sweep` (the keyframe sweep, ego frame =
    the LIDAR_TOP ego pose, as in :func:`camera_rig`).

    Returns:
        points: (P, 3) float64 metres, ego frame.
        ground: (P,) bool: lidarseg ``flat.*`` categories when the keyframe has lidarseg, else
            ``z_ego < ground_z_max_m``.
        rule: a short description of the ground rule used.
    Raises: DataError if the keyframe has no LIDAR_TOP, or its point or lidarseg file is missing
        or truncated (naming the file).
    """
    from ..data.lidar import load_lidar_sweep
    from ..data.nuscenes_data import DataError

    sweep = load_lidar_sweep(nusc, sample_token)
    if sweep is None:
        raise DataError(f"sample {sample_token} has no LIDAR_TOP: Fig. 2 lifts pseudo-labels with the LiDAR")
    points = sweep.points_ego
    if sweep.lidarseg is not None:
        names = nusc.lidarseg_idx2name_mapping
        flat = np.array([names.get(i, "").startswith(GROUND_CATEGORY_PREFIX) for i in range(256)])
        return points, flat[sweep.lidarseg], "lidarseg flat.* categories"
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
class Fig2Params(WorldParams):
    """Every knob of notebooks/fig2_pseudo_vs_gt.ipynb (busch2026 Fig. 2). ``dataroot=None``
    reads the embedded world."""

    labeler: str = "synthetic"           # "synthetic" (embedded world) | "mask2former"
    pseudo_noise: float = 0.1
    mask2former_weights: str | None = None
    seed: int = 0
    sample_token: str | None = None      # None: the keyframe with most map markings ahead (see pick_keyframe)
    camera: str = "CAM_FRONT"
    bev_hw: tuple = (150, 150)           # busch2026: 150 x 150 over +-30 m x +-15 m
    bev_style: str = "hdmapnet"          # BEV ground truth as busch2026's evaluation draws it; "buffer": line_width_m
    line_width_m: float = 0.6            # bev_style="buffer" only
    ground_z_max_m: float = 0.3          # ground rule where there is no lidarseg
    output_dir: str | None = None        # None: <project>/outputs/fig2
    progress: bool = True

    def __post_init__(self):
        super().__post_init__()
        _check_camera(self.camera)
        if self.bev_style not in ("hdmapnet", "buffer"):
            raise ParameterError(f"parameter 'bev_style' must be 'hdmapnet' or 'buffer', got {self.bev_style!r}")
        if self.labeler not in ("synthetic", "mask2former"):
            raise ParameterError(f"parameter 'labeler' must be 'synthetic' or 'mask2former', got {self.labeler!r}")
        if self.labeler == "mask2former" and not self.mask2former_weights:
            raise ParameterError("parameter 'mask2former_weights' (a local path) is required with "
                                 "labeler='mask2former'")
        v = self.bev_hw
        if not (isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) and x > 0 for x in v)):
            raise ParameterError(f"parameter 'bev_hw' must be two positive integers, got {v!r}")
        self.bev_hw = tuple(v)

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

    dataroot, source = resolve_dataroot(p, p.progress)
    if p.labeler == "synthetic" and not (Path(dataroot) / "bevlib_world.json").exists():
        raise ParameterError(f"labeler='synthetic' needs the embedded world's camera semantics; {dataroot} is not "
                             "one: use labeler='mask2former' with mask2former_weights")
    nusc = open_nuscenes(dataroot, p.version)
    grid = p.grid
    tcfg = BEVTargetConfig(line_width_m=p.line_width_m, style=p.bev_style)
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
