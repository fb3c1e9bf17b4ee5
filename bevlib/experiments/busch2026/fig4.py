"""busch2026 Fig. 4: road distance vs image portion.

Fig. 4 (Sec. IV-B) motivates the ranged metrics mIoU20/40/60: "the first 7.5 m of the road are
represented by approximately 50 % of the image, whereas the 7.5 m from 22.5 m to 30 m by circa
6 %". :func:`distance_bands` measures that split for one camera of a rig with the analytic
ray / ground-plane intersection (:func:`bevlib.render.ground_hits`), under every reading of
"road", "distance" and "portion" the text leaves open (:func:`fig4_variants`); the default,
:class:`Fig4Params`, is the one closest to the text.
"""
from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ... import geometry as geo
from ...data.nuscenes_data import camera_rig, load_image, open_nuscenes
from ...data.source import WorldParams, resolve_dataroot
from ...io import atomic_write_text
from ...params import ParameterError
from ...render import ground_hits
from .common import check_camera, first_keyframe, save_plot

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
        check_camera(self.camera)
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
    token = p.sample_token or first_keyframe(nusc)
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
    return save_plot(_plot_fig4, path, data, variants)


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
