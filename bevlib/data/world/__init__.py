"""A deterministic synthetic driving world written in nuScenes format (readable by nuscenes-devkit).

bevlib cannot ship nuScenes, so its tests and CPU-scale experiments run on a small world that this
package generates from a seed: a flat town (ground z = 0 in the global frame) with a road grid, curves,
intersections, painted markings, buildings, trees and moving/parked traffic, observed by the real
nuScenes sensor rig (6 cameras + LIDAR_TOP, calibration numbers copied from v1.0-mini). Everything the
paper's pipeline needs is there: images, HD map (map expansion), 3D boxes, LiDAR with lidarseg labels,
and -- bevlib-specific -- a perfect camera-view semantic mask and depth map per image, from which
:mod:`bevlib.data.synthetic_labeler` derives Mask2Former-like pseudo-labels (busch2026 Sec. III-C).

Files written under ``root`` (``NuScenes(version, root)`` and ``NuScenesMap(root, location)`` load it
unchanged)::

    <version>/{scene,sample,sample_data,ego_pose,calibrated_sensor,sensor,log,map,category,attribute,
               visibility,instance,sample_annotation,lidarseg}.json
    samples/CAM_*/<log>__<CAM>__<timestamp>.jpg        RGB, image_wh, JPEG
    samples/LIDAR_TOP/<log>__LIDAR_TOP__<ts>.pcd.bin    float32 (N, 5): x, y, z [m, LIDAR frame], intensity, ring
    lidarseg/<version>/<lidar_sd_token>_lidarseg.bin    uint8 (N,): nuScenes-lidarseg category 'index'
    maps/<map_token>.png                                basemap (semantic prior), 0.1 m/px, 255 = road/sidewalk
    maps/expansion/<location>.json                      map expansion v1.3 (see map_expansion._MapBuilder)
    bevlib_cache/camera_semantics/<cam_sd_token>.png    uint8 (H, W): CAMERA_SEMANTIC_CLASSES ids
    bevlib_cache/camera_depth/<cam_sd_token>.png        uint16 (H, W): depth along the optical axis in
                                                        CENTIMETRES, 0 = sky / nothing within range
    bevlib_split.json                                   {"train": [scene names], "val": [...]}
    bevlib_world.json                                   generator config + version (written last)

Conventions and simplifications (documented here once):

* Only keyframes (2 Hz) exist; there are no sweeps and no radars (``num_radar_pts`` = 0).
* Every sample_data has its own ego_pose record (token = sample_data token, as in nuScenes). With
  ``WorldConfig.camera_timing="sweep"`` (default) each camera fires at its own time
  (:data:`config.CAMERA_TIME_OFFSETS_US`, 0.5-43 ms before the LiDAR, as the real rig) and holds
  the ego pose of that time; traffic is rendered where it is then, boxes are annotated at the
  LiDAR (keyframe) time. With ``"keyframe"`` all sensors share the keyframe's time and pose.
* Ego poses are planar: z = 0, rotation = yaw only. Objects are yaw-only boxes standing on z = 0.
* Singapore locations drive on the left, Boston on the right (lanes and stop lines are mirrored).
* The camera image is a ray-cast: ground texture from a 2-D material raster, boxes as shaded cuboids,
  sky above the horizon; ground further than ``camera._FAR_GROUND`` m is rendered as sky.
* ``ego_pose``/boxes/rig use the frames of :mod:`bevlib.geometry`.
* ``WorldConfig.look`` picks the appearance and camera rig (:data:`config.WORLD_LOOKS`): the default
  "nuscenes" look, or "city", a Cityscapes stand-in (lower, narrower, pitched cameras, grey palette,
  overcast fog) with the same geometry and labels -- a domain gap for transfer experiments.
* ``WorldConfig.rig`` picks the sensors (:data:`config.WORLD_RIGS`): "nuscenes" (default, 32-beam
  LiDAR), "lyft" (64 beams) or "once" (40 beams), each with its own camera mounting; the scenes,
  boxes and map of a seed are the same for every rig (combined-datasets paper, Sec. 4.1). The rig
  and the look combine freely.

Modules, in the order the generator uses them:

* :mod:`.config` -- :class:`WorldConfig`, the rig and label vocabularies, seeded tokens and random streams.
* :mod:`.roads` -- road network, paint and the ground material raster.
* :mod:`.map_expansion` -- map expansion JSON and basemap PNG of a location.
* :mod:`.scenery` -- boxes: buildings, trees, traffic participants and their routes, the ego route.
* :mod:`.raycast`, :mod:`.camera`, :mod:`.lidar` -- the sensors and their ray-casters.
* :mod:`.tables` -- the nuScenes JSON tables.
* this module -- :func:`generate_world` (ties them together), caching and readers.
"""
from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from ...progress import bar as progress_bar

from bevlib.paths import cache_dir as default_cache_dir

from .camera import _camera_job, _make_camera, _noise_tile
from .config import (ATTRIBUTES, CAMERA_NAMES, CAMERA_TIME_JITTER_US, CAMERA_TIME_OFFSETS_US, CAMERA_SEMANTIC_CLASSES, LIDAR_NAME, LIDARSEG_CATEGORIES, MAP_LOCATIONS,
                     NUSCENES_RIG, RIG_IMAGE_WH, VISIBILITY, WORLD_LOOKS, WORLD_RIGS, WorldConfig, WorldLook, WorldRig,
                     _GENERATOR_VERSION,
                     _pose_matrix, _rng, _token, _write, camera_rig)
from .lidar import _Lidar, _lidar_job, _make_lidar
from .map_expansion import _basemap_png, _map_expansion
from .raycast import _Scenery
from .roads import _build_network, _Network, _paint_ground, _road_geometry, _RoadGeometry
from .scenery import _actor_boxes, _Boxes, _boxes_at, _ego_box, _ego_route, _SCENE_KINDS, _spawn_actors, _static_scenery
from .tables import _json_dump, _scene_name, _scene_tables, _static_tables

__all__ = ["ATTRIBUTES", "CAMERA_NAMES", "CAMERA_TIME_JITTER_US", "CAMERA_TIME_OFFSETS_US", "CAMERA_SEMANTIC_CLASSES", "LIDAR_NAME", "LIDARSEG_CATEGORIES",
           "MAP_LOCATIONS", "NUSCENES_RIG", "RIG_IMAGE_WH", "VISIBILITY", "WORLD_LOOKS", "WORLD_RIGS", "WorldConfig",
           "WorldLook", "WorldRig",
           "camera_depth_path", "camera_rig",
           "camera_semantics_path", "ensure_world", "generate_world", "load_camera_depth", "load_camera_semantics",
           "world_split"]

# bevlib's own outputs live beside, not inside, the nuScenes folders so the devkit never sees them.
_SEMANTICS_DIR = Path("bevlib_cache") / "camera_semantics"
_DEPTH_DIR = Path("bevlib_cache") / "camera_depth"
_SPLIT_FILE = "bevlib_split.json"
_MANIFEST_FILE = "bevlib_world.json"


# ------------------------------------------------------------------------------------------------
# The generator
# ------------------------------------------------------------------------------------------------

@dataclass
class _Location:
    """One map location, built once and shared by all scenes that use it (read-only)."""
    name: str
    net: _Network
    geo: _RoadGeometry
    scenery: _Scenery
    static: _Boxes
    map_token: str
    log_token: str
    logfile: str


def _build_location(cfg: WorldConfig, index: int) -> _Location:
    # One random stream feeds the network, both noise tiles and the scenery, in this order: changing
    # the order of these calls changes every generated file.
    name = cfg.locations[index]
    rng = _rng(cfg.seed, "location", index)
    net = _build_network(rng, drive_left=name.startswith("singapore"))
    geo = _road_geometry(net)
    scenery = _Scenery(_paint_ground(net, geo, cfg.ground_resolution), _noise_tile(rng, sigma=1.2),
                       _noise_tile(rng, sigma=4.0))
    static = _static_scenery(net, geo, rng)
    return _Location(name, net, geo, scenery, static, _token(cfg.seed, "map", index), _token(cfg.seed, "log", index),
                     f"bevlib-{cfg.seed}-{name}")


def generate_world(root, cfg: WorldConfig = WorldConfig(), progress: bool = True) -> Path:
    """Generate the synthetic world described by ``cfg`` into the directory ``root``.

    Everything is written into a temporary sibling directory that is renamed to ``root`` at the
    end, so ``root`` either does not exist or is complete. Rendering runs in a few threads; every
    file depends only on ``cfg``, never on scheduling, so equal configs give byte-identical trees.

    Args:
        root: target directory (str or PathLike); must not exist yet.
        cfg: world configuration.
        progress: show a tqdm progress bar over keyframes.
    Returns: ``Path(root)``.
    Raises:
        FileExistsError: if ``root`` already exists (use :func:`ensure_world` for caching).
    """
    root = Path(root)
    if root.exists():
        raise FileExistsError(f"{root} already exists; delete it or use ensure_world()")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _generate_into(tmp, cfg, progress)
        try:
            os.rename(tmp, root)
        except OSError:
            if not (root / _MANIFEST_FILE).exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)   # a concurrent generator won; its copy is identical
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def _generate_into(out: Path, cfg: WorldConfig, progress: bool) -> None:
    """Write the whole world into ``out``; the manifest comes last, so its presence marks a complete tree."""
    s = cfg.seed
    cameras = [_make_camera(ch, cfg) for ch in CAMERA_NAMES]
    lidar = _make_lidar(cfg)
    locations = [_build_location(cfg, i) for i in range(min(len(cfg.locations), cfg.n_scenes))]
    tables = _static_tables(cfg, locations, cameras)
    for loc in locations:
        _json_dump(out / "maps" / "expansion" / f"{loc.name}.json", _map_expansion(loc.net, loc.geo, s, loc.name))
        _write(out / "maps" / f"{loc.map_token}.png", _basemap_png(loc.net, loc.geo))
    for name in ("scene", "sample", "sample_data", "ego_pose", "instance", "sample_annotation", "lidarseg"):
        tables[name] = []
    (out / "lidarseg" / cfg.version).mkdir(parents=True, exist_ok=True)
    bar = progress_bar(total=cfg.n_scenes * cfg.keyframes_per_scene, desc="world", disable=not progress, leave=False)
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        for si in range(cfg.n_scenes):
            loc = locations[si % len(locations)]
            kind = _SCENE_KINDS[si % len(_SCENE_KINDS)]
            rng = _rng(s, "scene", si)
            lo, hi = cfg.speed_kmh
            kmh = float(rng.uniform(lo, lo + 0.25 * (hi - lo)) if kind == "turn" else rng.uniform(lo, hi))
            speed = kmh / 3.6
            duration = 0.5 * (cfg.keyframes_per_scene - 1)
            ego = _ego_route(loc.net, kind, rng, speed * duration)
            actors = _spawn_actors(loc.net, ego, 0.0, speed, duration, rng, cfg.object_density)
            frames = [_submit_keyframe(pool, out, cfg, loc, cameras, lidar, actors, si, k, ego, speed)
                      for k in range(cfg.keyframes_per_scene)]
            scene_tok = _token(s, "scene", si)
            _scene_tables(tables, cfg, frames, actors, cameras, scene_tok, bar)
            tables["scene"].append({
                "token": scene_tok, "log_token": loc.log_token, "nbr_samples": len(frames), "name": _scene_name(si),
                "description": f"synthetic {loc.name}, {kind}, {kmh:.0f} km/h",
                "first_sample_token": frames[0]["sample"], "last_sample_token": frames[-1]["sample"]})
    bar.close()
    for name, rows in tables.items():
        _json_dump(out / cfg.version / f"{name}.json", rows)
    names = [_scene_name(i) for i in range(cfg.n_scenes)]
    n_train = cfg.n_scenes - cfg.val_scenes
    _json_dump(out / _SPLIT_FILE, {"train": names[:n_train], "val": names[n_train:]})
    _json_dump(out / _MANIFEST_FILE, {"config": cfg.as_dict(), "hash": cfg.hash(), "generator": _GENERATOR_VERSION})


def _ego_pose_at(ego, s: float) -> tuple[float, float, float]:
    """(x, y, yaw) of the ego ``s`` m along its route; before the start (a camera firing a few ms
    before the scene's first keyframe) the route is extended straight back instead of clamped,
    so every camera of the first keyframe still has its own pose."""
    if s >= 0.0:
        x, y = ego.point(s)
        return float(x), float(y), float(ego.heading(s))
    (x, y), (tx, ty) = ego.point(0.0), ego.tangent(0.0)
    return float(x + s * tx), float(y + s * ty), float(ego.heading(0.0))


def _submit_keyframe(pool, out: Path, cfg: WorldConfig, loc: _Location, cameras: list, lidar: _Lidar, actors: list,
                     si: int, k: int, ego, speed: float) -> dict:
    """Queue the 6 camera renders and the LiDAR sweep of keyframe ``k`` of scene ``si`` (ego route
    ``ego`` driven at ``speed`` m/s); returns what the tables need (tokens, relative file names,
    per-sensor timestamps and ego poses, boxes, and the pending jobs)."""
    s = cfg.seed
    t = 0.5 * k
    x, y, ego_yaw = _ego_pose_at(ego, speed * t)
    g_T_e = _pose_matrix(x, y, ego_yaw)
    near = np.hypot(loc.static.cx - x, loc.static.cy - y) - loc.static.radius() < 200.0
    static = loc.static.take(np.flatnonzero(near))
    boxes = _Boxes.concat([static, _actor_boxes(actors, t, (x, y), ego_yaw, radius=100.0)])
    ts = 1_533_000_000_000_000 + si * 3_600_000_000 + k * 500_000    # fixed epoch, 1 h per scene, 2 Hz
    sd = {ch: _token(s, "sample_data", si, k, ch) for ch in CAMERA_NAMES + (LIDAR_NAME,)}
    sd_ts = {ch: ts for ch in sd}
    if cfg.camera_timing == "sweep":
        jitter = _rng(s, "camera-timing", si, k).integers(-CAMERA_TIME_JITTER_US, CAMERA_TIME_JITTER_US + 1,
                                                          len(CAMERA_NAMES))
        sd_ts.update({ch: ts + CAMERA_TIME_OFFSETS_US[ch] + int(j) for ch, j in zip(CAMERA_NAMES, jitter)})
    sd_pose = {ch: _ego_pose_at(ego, speed * (t + (sd_ts[ch] - ts) * 1e-6)) if sd_ts[ch] != ts else (x, y, ego_yaw)
               for ch in sd}
    files = {ch: f"samples/{ch}/{loc.logfile}__{ch}__{sd_ts[ch]}" + (".pcd.bin" if ch == LIDAR_NAME else ".jpg")
             for ch in sd}
    jobs = {}
    for cam in cameras:
        tok = sd[cam.channel]
        paths = {"jpg": out / files[cam.channel], "sem": out / _SEMANTICS_DIR / f"{tok}.png",
                 "depth": out / _DEPTH_DIR / f"{tok}.png"}
        dt = (sd_ts[cam.channel] - ts) * 1e-6
        cam_boxes = _boxes_at(boxes, actors, t + dt) if dt else boxes
        jobs[cam.channel] = pool.submit(_camera_job, cam, _pose_matrix(*sd_pose[cam.channel]), loc.scenery, cam_boxes,
                                        paths, cfg.jpeg_quality, (s, "camera-noise", si, k, cam.channel))
    paths = {"pcd": out / files[LIDAR_NAME],
             "lidarseg": out / "lidarseg" / cfg.version / f"{sd[LIDAR_NAME]}_lidarseg.bin"}
    jobs[LIDAR_NAME] = pool.submit(_lidar_job, lidar, g_T_e, loc.scenery, _Boxes.concat([boxes, _ego_box(g_T_e)]),
                                   (s, "lidar", si, k), paths)
    return dict(k=k, ts=ts, sample=_token(s, "sample", si, k), sd=sd, sd_ts=sd_ts, sd_pose=sd_pose,
                pose=(x, y, ego_yaw), boxes=boxes, jobs=jobs, files=files)


# ------------------------------------------------------------------------------------------------
# Cache and readers
# ------------------------------------------------------------------------------------------------

def ensure_world(cache_dir=None, cfg: WorldConfig = WorldConfig(), progress: bool = True) -> Path:
    """Return the world for ``cfg``, generating it on first use.

    The world lives at ``<cache_dir>/world-<cfg.hash()>``; ``cache_dir`` defaults to
    ``$BEVLIB_CACHE`` or ``~/.cache/bevlib``. An exclusive file lock serialises concurrent callers,
    and the atomic rename in :func:`generate_world` means a visible world is always complete.

    Returns: the dataroot (Path), usable as ``NuScenes(cfg.version, dataroot)``.
    Raises: OSError if the cache directory cannot be created or locked.
    """
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    root = cache / f"world-{cfg.hash()}"
    if (root / _MANIFEST_FILE).exists():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f"world-{cfg.hash()}.lock", "w") as lock:
        try:
            import fcntl
            fcntl.flock(lock, fcntl.LOCK_EX)
        except ImportError:   # no POSIX locks: the atomic rename still keeps the world consistent
            pass
        if not root.exists():
            generate_world(root, cfg, progress)
    return root


def world_split(dataroot) -> dict:
    """Train/val scene names of a generated world: ``{"train": [...], "val": [...]}``.

    Raises: FileNotFoundError if ``dataroot`` has no ``bevlib_split.json`` (not a bevlib world).
    """
    path = Path(dataroot) / _SPLIT_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: {dataroot} is not a world made by bevlib.data.world")
    return json.loads(path.read_text())


def camera_semantics_path(dataroot, sample_data_token: str) -> Path:
    """Where the camera-view semantic mask of a camera sample_data token is stored (a PNG; the path is
    not checked -- :func:`load_camera_semantics` reads and validates it)."""
    return Path(dataroot) / _SEMANTICS_DIR / f"{sample_data_token}.png"


def camera_depth_path(dataroot, sample_data_token: str) -> Path:
    """Where the depth map of a camera sample_data token is stored (a uint16 PNG in centimetres; the
    path is not checked -- :func:`load_camera_depth` reads and converts it to metres)."""
    return Path(dataroot) / _DEPTH_DIR / f"{sample_data_token}.png"


def _read_png(path: Path, dtype) -> np.ndarray:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: not a camera sample_data token of a bevlib world")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.dtype != dtype or img.ndim != 2:
        raise ValueError(f"{path} is not a single-channel {np.dtype(dtype).name} PNG")
    return img


def load_camera_semantics(dataroot, sample_data_token: str) -> np.ndarray:
    """Camera-view semantic mask of one image.

    Returns: (H, W) uint8 at the image resolution, values index :data:`CAMERA_SEMANTIC_CLASSES`
    (values < 14 are directly :data:`bevlib.classes.ALL_CLASSES` indices).
    Raises: FileNotFoundError if the token has no mask (not a camera of a bevlib world).
    """
    return _read_png(camera_semantics_path(dataroot, sample_data_token), np.uint8)


def load_camera_depth(dataroot, sample_data_token: str) -> np.ndarray:
    """Depth map of one image.

    Returns: (H, W) float32 metres along the camera's optical axis (camera-frame z, not ray
    length), 1 cm resolution; 0.0 where the ray hits nothing (sky, or ground beyond 300 m).
    Raises: FileNotFoundError if the token has no depth map.
    """
    return _read_png(camera_depth_path(dataroot, sample_data_token), np.uint16).astype(np.float32) / 100.0
