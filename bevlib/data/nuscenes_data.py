"""nuScenes access through nuscenes-devkit: keyframes, rigs, ego motion, BEV ground truth.

Everything is read through ``NuScenes`` / ``NuScenesMap`` (no hand-parsing of the tables), so the
same code serves real nuScenes, the real keyframe in ``../shared`` and the embedded world.

BEV ground truth follows BEVFormer_segmentation_detection / HDMapNet (busch2026 Sec. IV):
divider = lane_divider + road_divider lines, crosswalk = ped_crossing polygon outlines (HDMapNet
turns ped_crossing polygons into their edge lines; ``crosswalk_style='filled'`` fills them instead),
boundary = the contour of the union of road_segment and lane polygons. Lines are drawn with a
configurable width in metres; where classes overlap the later one wins (crosswalk < lane < boundary).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import shapely
from shapely import affinity
from shapely.ops import unary_union

from .. import geometry as geo
from ..bev import BEVGrid

log = logging.getLogger(__name__)

#: The 6 nuScenes cameras in the rig's display order (front row left to right, back row).
CAMERAS = ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT")
MAP_LOCATIONS = ("singapore-onenorth", "singapore-hollandvillage", "singapore-queenstown", "boston-seaport")


class DataError(RuntimeError):
    """Bad or missing input data; the message names the file, token or parameter."""


def open_nuscenes(dataroot: str | os.PathLike, version: str, verbose: bool = False):
    """Open a nuScenes database with errors that name what is wrong.

    Raises:
        DataError: ``dataroot`` does not exist, or has no ``version`` folder (the message lists
            the versions that are there), or the devkit fails to load a table.
    """
    from nuscenes.nuscenes import NuScenes

    root = Path(dataroot)
    if not root.is_dir():
        raise DataError(f"dataroot {str(root)!r} does not exist or is not a directory")
    if not (root / version).is_dir():
        found = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("v1.0"))
        raise DataError(f"version {version!r} not found under dataroot {str(root)!r}; found: {found or 'none'}")
    try:
        return NuScenes(version=version, dataroot=str(root), verbose=verbose)
    except KeyError as e:  # a record points at a token no table holds (e.g. a deleted calibration)
        raise DataError(f"{version!r} at {str(root)!r} is inconsistent: a record references token {e.args[0]!r}, "
                        "which is missing from its table (calibrated_sensor, ego_pose, sample, ...)") from e
    except Exception as e:  # the devkit raises bare AssertionError / JSONDecodeError
        raise DataError(f"nuscenes-devkit could not load {version!r} from {str(root)!r}: {type(e).__name__}: {e}") from e


def split_scenes(nusc) -> dict[str, list[str]]:
    """Scene names of the train and val splits.

    The embedded world ships ``bevlib_split.json``; otherwise the devkit's official splits
    (``mini_train``/``mini_val`` for v1.0-mini, ``train``/``val`` otherwise), restricted to the
    scenes present.
    """
    import json

    split_file = Path(nusc.dataroot) / "bevlib_split.json"
    if split_file.exists():
        with open(split_file) as f:
            s = json.load(f)
        return {"train": list(s["train"]), "val": list(s["val"])}
    from nuscenes.utils.splits import create_splits_scenes

    splits = create_splits_scenes(verbose=False)
    present = {s["name"] for s in nusc.scene}
    tr, va = ("mini_train", "mini_val") if nusc.version.endswith("mini") else ("train", "val")
    return {"train": [n for n in splits[tr] if n in present], "val": [n for n in splits[va] if n in present]}


def scene_sample_tokens(nusc, scene_names) -> list[str]:
    """Keyframe ``sample_token``s of the named scenes, in scene order then time order.

    Raises: DataError for a scene name that is not in the database.
    """
    by_name = {s["name"]: s for s in nusc.scene}
    tokens = []
    for name in scene_names:
        if name not in by_name:
            raise DataError(f"scene {name!r} is not in {nusc.version} at {nusc.dataroot}")
        tok = by_name[name]["first_sample_token"]
        while tok:
            tokens.append(tok)
            tok = nusc.get("sample", tok)["next"]
    return tokens


def half_subset(sample_tokens, seed: int = 0, fraction: float = 0.5) -> list[str]:
    """The deterministic fine-tuning subset (busch2026 Sec. IV: 50 % of the training samples).

    A seeded permutation of the sorted tokens, first ``fraction`` kept, returned in the input order.
    """
    toks = list(sample_tokens)
    order = np.random.default_rng(seed).permutation(len(toks))
    keep = set(np.array(sorted(toks))[order[: int(round(fraction * len(toks)))]].tolist())
    return [t for t in toks if t in keep]


def _reference_sd(nusc, sample: dict) -> dict:
    """The sample_data whose ego pose defines the keyframe's ego frame (LIDAR_TOP, else CAM_FRONT)."""
    for ch in ("LIDAR_TOP", "CAM_FRONT"):
        if ch in sample["data"]:
            return nusc.get("sample_data", sample["data"][ch])
    raise DataError(f"sample {sample['token']} has neither LIDAR_TOP nor CAM_FRONT data")


def _record(nusc, table: str, token: str, what: str) -> dict:
    try:
        return nusc.get(table, token)
    except KeyError:
        raise DataError(f"{table} record {token!r} ({what}) is missing from {nusc.version} at {nusc.dataroot}") from None


def global_T_ego(nusc, sample_token: str) -> np.ndarray:
    """(4, 4) float64 ego -> global pose of a keyframe (its reference sensor's ego pose)."""
    sample = _record(nusc, "sample", sample_token, "keyframe")
    sd = _reference_sd(nusc, sample)
    pose = _record(nusc, "ego_pose", sd["ego_pose_token"], f"ego pose of {sd['token']}")
    return geo.transform_from(pose["translation"], pose["rotation"])


def camera_rig(nusc, sample_token: str, image_wh: tuple[int, int] | None = None, cameras=CAMERAS):
    """Camera calibration of a keyframe in its ego frame.

    Each camera is mapped into the keyframe's reference ego frame through its own ego pose
    (``ego_T_cam = inv(global_T_ego_ref) @ global_T_ego_cam @ egocam_T_cam``), which is exact
    for cameras triggered at slightly different times than the reference sensor.

    Args:
        image_wh: (w, h) to scale the intrinsics to, or None for the native image size.
    Returns:
        dict with ``K`` (N, 3, 3) float64 pixels, ``ego_T_cam`` (N, 4, 4) float64,
        ``sd_tokens`` list of camera sample_data tokens, ``native_wh`` list of (w, h).
    Raises:
        DataError: a camera channel, calibration or ego-pose record is missing.
    """
    sample = _record(nusc, "sample", sample_token, "keyframe")
    ego_T_global = geo.invert(global_T_ego(nusc, sample_token))
    Ks, Ts, toks, sizes = [], [], [], []
    for cam in cameras:
        if cam not in sample["data"]:
            raise DataError(f"sample {sample_token} has no {cam} image")
        sd = nusc.get("sample_data", sample["data"][cam])
        cs = _record(nusc, "calibrated_sensor", sd["calibrated_sensor_token"], f"calibration of {cam} ({sd['token']})")
        pose = _record(nusc, "ego_pose", sd["ego_pose_token"], f"ego pose of {cam} ({sd['token']})")
        K = np.asarray(cs["camera_intrinsic"], dtype=np.float64)
        if K.shape != (3, 3):
            raise DataError(f"calibrated_sensor {cs['token']} ({cam}) has no 3x3 camera_intrinsic")
        native = (int(sd["width"]), int(sd["height"]))
        if image_wh is not None:
            K = geo.scale_intrinsics(K, native, image_wh)
        Ks.append(K)
        Ts.append(ego_T_global @ geo.transform_from(pose["translation"], pose["rotation"])
                  @ geo.transform_from(cs["translation"], cs["rotation"]))
        toks.append(sd["token"])
        sizes.append(native)
    return {"K": np.stack(Ks), "ego_T_cam": np.stack(Ts), "sd_tokens": toks, "native_wh": sizes}


def load_image(path: str | os.PathLike, image_wh: tuple[int, int]) -> np.ndarray:
    """Read a camera JPEG and resize it (bilinear) to ``image_wh`` = (w, h).

    Returns: (h, w, 3) uint8 RGB.
    Raises: DataError naming the file when it is missing, truncated or not a decodable image.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise DataError(f"image file {str(path)!r} is missing")
    try:
        with Image.open(path) as im:
            im.load()  # decode now: a truncated file fails here, not later in a worker
            return np.asarray(im.convert("RGB").resize(tuple(image_wh), Image.BILINEAR))
    except (OSError, UnidentifiedImageError, SyntaxError) as e:
        raise DataError(f"image file {str(path)!r} is truncated or corrupt: {e}") from e


def ego_motion(nusc, sample_token: str):
    """Ego motion from the previous keyframe of the scene to this one (busch2026 Alg. 1).

    Returns: (prev_token or None, curr_T_prev (4, 4) float64, (dx, dy, dphi)) where (dx, dy) m and
    dphi rad describe the current ego pose in the previous ego frame; identity and zeros when the
    keyframe is the first of its scene.
    """
    prev = nusc.get("sample", sample_token)["prev"]
    if not prev:
        return None, np.eye(4), np.zeros(3)
    prev_T_curr, dxdyphi = geo.ego_motion(global_T_ego(nusc, prev), global_T_ego(nusc, sample_token))
    return prev, geo.invert(prev_T_curr), dxdyphi


@lru_cache(maxsize=8)
def _nusc_map(dataroot: str, location: str):
    from nuscenes.map_expansion.map_api import NuScenesMap

    path = Path(dataroot) / "maps" / "expansion" / f"{location}.json"
    if location not in MAP_LOCATIONS or not path.exists():
        return None
    return NuScenesMap(dataroot=dataroot, map_name=location)


def map_expansion_path(nusc, sample_token: str) -> tuple[str, Path]:
    """(location, ``<dataroot>/maps/expansion/<location>.json``) of a keyframe; the file may be
    absent (it is a separate nuScenes download)."""
    sample = nusc.get("sample", sample_token)
    location = nusc.get("log", nusc.get("scene", sample["scene_token"])["log_token"])["location"]
    return location, Path(nusc.dataroot) / "maps" / "expansion" / f"{location}.json"


def map_for_sample(nusc, sample_token: str):
    """The ``NuScenesMap`` of a keyframe's location, or None when the map expansion is absent."""
    location, path = map_expansion_path(nusc, sample_token)
    m = _nusc_map(str(nusc.dataroot), location)
    if m is None:
        log.warning("no map expansion at %s: BEV ground truth is absent for location %r", path, location)
    return m


@dataclass(frozen=True)
class BEVTargetConfig:
    """How BEV ground truth is drawn.

    ``style="hdmapnet"``: as busch2026's evaluation code (BEVFormer_segmentation_detection, which
    rasterises the HDMapNet way: :func:`bevlib.data.map_raster.rasterize_hdmapnet` -- 5-px lines on a
    0.15 m canvas, crosswalks as their polygons' two longest edges, boundary > crosswalk > lane
    with gaps). ``style="buffer"``: cells within ``line_width_m / 2`` of a class's lines, crosswalk
    outlines (``crosswalk_style='contour'``) or areas (``'filled'``), later class wins (crosswalk <
    lane < boundary); ``line_width_m`` and ``crosswalk_style`` apply to this style only.
    """

    line_width_m: float = 0.6
    crosswalk_style: str = "contour"
    style: str = "buffer"

    def __post_init__(self):
        if self.style not in ("hdmapnet", "buffer"):
            raise ValueError(f"BEVTargetConfig.style must be 'hdmapnet' or 'buffer', got {self.style!r}")
        if self.crosswalk_style not in ("contour", "filled"):
            raise ValueError(f"crosswalk_style must be 'contour' or 'filled', got {self.crosswalk_style!r}")
        if not self.line_width_m > 0:
            raise ValueError(f"line_width_m must be > 0, got {self.line_width_m}")


def map_geometries_ego(nusc_map, global_T_ego_: np.ndarray, grid: BEVGrid, merged: bool = True) -> dict:
    """Map elements around a pose as shapely geometries in the ego frame (metres).

    Returns dict with ``divider`` (lane_divider and road_divider lines), ``crosswalk``
    (ped_crossing polygons), ``road`` (road_segment and lane polygons) of the records that meet a
    square covering the grid. ``merged``: each a single geometry (union, repaired with
    ``buffer(0)``, clipped to the square; possibly empty); else a list of per-record geometries,
    unmerged and unrepaired (HDMapNet's input: which edges of a crosswalk are longest depends on
    the record, and invalid polygons are skipped there, not repaired).
    """
    T = global_T_ego_
    r = float(np.hypot(max(abs(grid.x_min), abs(grid.x_max)), max(abs(grid.y_min), abs(grid.y_max)))) + 2.0
    cx, cy = T[0, 3], T[1, 3]
    box = (cx - r, cy - r, cx + r, cy + r)
    recs = nusc_map.get_records_in_patch(box, ["lane_divider", "road_divider", "ped_crossing", "road_segment", "lane"],
                                         mode="intersect")
    lines = [nusc_map.extract_line(nusc_map.get(layer, t)["line_token"])
             for layer in ("lane_divider", "road_divider") for t in recs[layer]]
    xwalks = [nusc_map.extract_polygon(nusc_map.get("ped_crossing", t)["polygon_token"]) for t in recs["ped_crossing"]]
    roads = [nusc_map.extract_polygon(nusc_map.get(layer, t)["polygon_token"])
             for layer in ("road_segment", "lane") for t in recs[layer]]
    E = geo.invert(T)
    mat = [E[0, 0], E[0, 1], E[1, 0], E[1, 1], E[0, 3], E[1, 3]]
    clip = shapely.box(*box)

    def to_ego(geoms):
        g = unary_union([x for x in geoms if x is not None and not x.is_empty])
        return affinity.affine_transform(g.intersection(clip), mat)

    if not merged:
        each = lambda geoms: [affinity.affine_transform(g, mat) for g in geoms if g is not None and not g.is_empty]  # noqa: E731
        return {"divider": each(lines), "crosswalk": each(xwalks), "road": each(roads)}
    return {"divider": to_ego(lines), "crosswalk": to_ego([p.buffer(0) for p in xwalks]),
            "road": to_ego([p.buffer(0) for p in roads])}


def rasterize_bev_gt(geoms: dict, grid: BEVGrid, cfg: BEVTargetConfig = BEVTargetConfig()) -> np.ndarray:
    """Rasterise ego-frame map geometries into a BEV class map on ``grid``.

    A cell takes a class when its centre lies within ``line_width_m / 2`` of the class's lines
    (or inside a filled crosswalk). Returns (H, W) uint8 in {0 background, 1 boundary, 2 lane,
    3 crosswalk}.
    """
    half = cfg.line_width_m / 2.0
    xy = grid.cell_centers().reshape(-1, 2)
    out = np.zeros(grid.H * grid.W, dtype=np.uint8)
    xwalk = geoms["crosswalk"]
    shapes = [
        (3, xwalk if cfg.crosswalk_style == "filled" else xwalk.boundary.buffer(half)),
        (2, geoms["divider"].buffer(half)),
        (1, geoms["road"].boundary.buffer(half)),
    ]
    for cls, shp in shapes:
        if shp.is_empty:
            continue
        shapely.prepare(shp)
        out[shapely.contains_xy(shp, xy[:, 0], xy[:, 1])] = cls
    return out.reshape(grid.H, grid.W)


def bev_ground_truth(nusc, sample_token: str, grid: BEVGrid, cfg: BEVTargetConfig = BEVTargetConfig()):
    """BEV ground truth of a keyframe, (H, W) uint8 in {0 background, 1 boundary, 2 lane,
    3 crosswalk}, drawn as ``cfg.style`` says, or None when its map expansion is absent."""
    m = map_for_sample(nusc, sample_token)
    if m is None:
        return None
    if cfg.style == "hdmapnet":
        from .map_raster import rasterize_hdmapnet
        return rasterize_hdmapnet(map_geometries_ego(m, global_T_ego(nusc, sample_token), grid, merged=False), grid)
    return rasterize_bev_gt(map_geometries_ego(m, global_T_ego(nusc, sample_token), grid), grid, cfg)
