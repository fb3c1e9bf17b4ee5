"""A keyframe assembled from named fields, each read through nuscenes-devkit; costly fields cached.

A consumer names the fields it needs in :class:`bevlib.data.nuscenes_data.KeyframeConfig`::

    KeyframeConfig(fields=("cameras", "lidar", "boxes"), lidar=LidarConfig(nsweeps=10))

and :func:`load_fields` (= :func:`bevlib.data.nuscenes_data.load_keyframe`) returns one dict of
numpy arrays. The default, ``("cameras", "bev_gt", "pseudo")``, is busch2026's keyframe, unchanged.

Keys by field (N cameras in :data:`~bevlib.data.nuscenes_data.CAMERAS` order, P LiDAR points, M
boxes; "ego" is the keyframe's ego frame, the LIDAR_TOP ego pose, x forward, y left, z up):

* always: ``sample_token`` str, ``prev_token`` str ('' at a scene start), ``curr_T_prev`` (4, 4)
  float32, ``ego_motion`` (3,) float32 (dx m, dy m, dphi rad).
* ``cameras``: ``images`` (N, h, w, 3) uint8 RGB at ``image_wh``; ``K`` (N, 3, 3) float32 pixels
  at that size; ``ego_T_cam`` (N, 4, 4) float32.
* ``bev_gt``: ``bev_gt`` (H, W) uint8 classes of :mod:`bevlib.classes` (all IGNORE when the map
  expansion is absent); ``has_bev_gt`` bool.
* ``pseudo``: ``pseudo`` (N, h, w) uint8, the cached labels of ``cfg.labeler`` nearest-resized to
  ``image_wh`` (nothing when ``labeler`` is None).
* ``lidar`` (:func:`bevlib.data.lidar.load_lidar_sweep`, ``cfg.lidar``): ``lidar_points`` (P, 3)
  float32 m ego; ``lidar_points_sensor`` (P, 3) float32 m, keyframe LIDAR_TOP frame;
  ``lidar_intensity`` (P,) float32; ``lidar_ring`` (P,) uint8 laser index (:data:`RING_UNKNOWN`
  where the file has none); ``lidar_sweep`` (P,) uint8 (0 = keyframe sweep); ``lidar_time_lag``
  (P,) float32 s; ``lidar_seg`` (P,) uint8, the 16 nuScenes-lidarseg evaluation classes of the
  devkit's ``LidarsegClassMapper`` (0 = ignore: noise, unmapped classes, unlabelled points);
  ``lidar_seg_raw`` (P,) uint8 raw lidarseg indices (255 = unlabelled); ``ego_T_lidar`` (4, 4)
  float32; ``has_lidar`` / ``has_lidarseg`` bool (no LIDAR_TOP: P = 0 and ``ego_T_lidar`` NaN;
  no lidarseg: ``lidar_seg`` all 0). The ring, sweep index and lidarseg survive aggregation over
  ``nsweeps`` (the devkit's ``from_file_multisweep`` drops the ring; this reader keeps it).
* ``boxes`` (``nusc.get_boxes`` of the reference sample_data, moved into the ego frame as the
  devkit's ``get_sample_data`` does): ``box_center`` (M, 3) float32 m ego; ``box_wlh`` (M, 3)
  float32 m (width, length, height, the devkit's order); ``box_rotation`` (M, 4) float32
  quaternion w, x, y, z (ego_R_box); ``box_yaw`` (M,) float32 rad, heading of the box's length
  axis in the ego x-y plane; ``box_class`` (M,) int64 index into
  :data:`bevlib.classes.OBJECT_CLASSES` (``CATEGORY_TO_OBJECT``), -1 for other categories;
  ``box_num_lidar_pts`` (M,) int32; ``box_token`` / ``box_category`` lists of str.
* ``depth`` (``cfg.depth``): ``depth`` (N, h, w) float32 metres along each camera's optical axis
  at ``image_wh``, 0 = no depth; ``depth_source`` str ``"world"`` (the embedded world's dense
  maps, nearest-resized), ``"lidar"`` (LiDAR points projected, nearest return per pixel) or
  ``"lidar_completed"`` (the projected LiDAR completed with IP-Basic at the completion size of
  :class:`DepthConfig`, then nearest-resized).

Caches: ``bev_gt`` and ``depth`` are written once per keyframe to
``<cache_dir()>/fields/<field>-<key>/<sample_token>.npz`` (:class:`FieldCache`), ``key`` a hash of
the field's config, the dataset identity (resolved dataroot, version, size and mtime of the
version's tables) and :data:`CACHE_FORMAT`; ``bev_gt``'s config also holds the size and mtime of
the keyframe location's map expansion file, so there is one folder per location and a new map
release is never served old rasters. Pseudo-labels live in their own store
(:mod:`bevlib.data.pseudo`). Nothing is written inside the dataroot. The lidarseg mapping is a
256-entry table lookup (cheaper than reading a cache file), so it is not cached.
"""
from __future__ import annotations

import json
import logging
import weakref
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import geometry as geo
from ..bev import BEVGrid
from ..classes import CATEGORY_TO_OBJECT, IGNORE, OBJECT_CLASSES
from ..io import atomic_write, atomic_write_text, config_hash
from ..paths import cache_dir
from . import nuscenes_data as nd
from .nuscenes_data import BEVTargetConfig, DataError

log = logging.getLogger(__name__)

#: Bumped whenever a cached field's content or file layout changes, so old entries are not reused.
CACHE_FORMAT = 1
#: ``lidar_ring`` where the point file has no ring index.
RING_UNKNOWN = 255
#: Keys of the ``lidar`` field with one row per point (padded by ``dataset.collate_keyframes``).
POINT_KEYS = ("lidar_points", "lidar_points_sensor", "lidar_intensity", "lidar_ring", "lidar_sweep",
              "lidar_time_lag", "lidar_seg", "lidar_seg_raw")
#: Keys of the ``boxes`` field with one row per box (lists for the str ones).
BOX_KEYS = ("box_center", "box_wlh", "box_rotation", "box_yaw", "box_class", "box_num_lidar_pts",
            "box_token", "box_category")

_identity_by_nusc: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


# ------------------------------------------------------------------------------------------------
# The cache
# ------------------------------------------------------------------------------------------------

#: Every keyframe field :func:`load_keyframe` can assemble (see :mod:`bevlib.data.fields`).
FIELDS = ("cameras", "bev_gt", "pseudo", "lidar", "boxes", "depth")
#: busch2026's keyframe: images and rig, BEV ground truth, camera pseudo-labels (when a labeller is set).
BUSCH2026_FIELDS = ("cameras", "bev_gt", "pseudo")


@dataclass(frozen=True)
class LidarConfig:
    """The ``lidar`` field: ``nsweeps`` sweeps aggregated (1 = the keyframe sweep; see
    :func:`bevlib.data.lidar.load_lidar_sweep`) and the devkit's ``remove_close`` square
    ``min_distance_m`` (0 keeps every point)."""

    nsweeps: int = 1
    min_distance_m: float = 0.0

    def __post_init__(self):
        if not (isinstance(self.nsweeps, int) and 1 <= self.nsweeps <= 255):
            raise ValueError(f"LidarConfig.nsweeps must be an integer in 1..255, got {self.nsweeps!r}")
        if not self.min_distance_m >= 0:
            raise ValueError(f"LidarConfig.min_distance_m must be >= 0, got {self.min_distance_m!r}")


@dataclass(frozen=True)
class DepthConfig:
    """The ``depth`` field: where camera depth comes from and how LiDAR depth is projected.

    Attributes:
        source: ``"world"`` (the embedded world's dense depth maps), ``"lidar"`` (LiDAR points
            projected into each camera, sparse), ``"lidar_completed"`` (that projection made dense
            with IP-Basic, :func:`bevlib.depth_completion.complete_depth`; wozniak2025 Sec. 3.3 /
            4.1, "the completed LiDAR depth") or ``"auto"`` (world depth where the dataset has it
            for every camera of the keyframe, else LiDAR).
        nsweeps / min_distance_m: the LiDAR points projected (as :class:`LidarConfig`).
        min_depth_m: projected points nearer than this along the optical axis are dropped
            (nuscenes-devkit's ``map_pointcloud_to_image`` uses 1 m: closer returns are the car).
        complete_min_width: ``lidar_completed`` only: pixels across at which the completion runs.
            IP-Basic's fixed kernels (5x5 diamond ... 31x31) assume a KITTI-like density of returns
            per pixel (1242 x 375 px), so it runs at each camera's native size (nuScenes 1600 x 900),
            or, for smaller native images, with the intrinsics scaled up to this width (same aspect);
            the result is then nearest-resized to ``image_wh`` (no blending across depth edges).
        complete_max_depth_m / complete_extrapolate / complete_blur: ``lidar_completed`` only: the
            ``max_depth``, ``extrapolate`` and ``blur`` of :func:`~bevlib.depth_completion.complete_depth`.
            ``extrapolate`` is on by default (IP-Basic's extension to the top plus its 31x31 large-hole
            fill): nuScenes' 32 beams are ~29 px apart vertically at 1600 x 900, beyond the reach of the
            small kernels (measured on the real keyframe's CAM_FRONT: 29 % of the pixels below the
            highest return filled without it, 99 % with it). The price: each column's top return is
            copied up into the sky, so every pixel, sky included, gets a depth (S3PT's "completed
            depth at each token").
    Raises: ValueError naming the offending attribute.
    """

    source: str = "auto"
    nsweeps: int = 1
    min_distance_m: float = 0.0
    min_depth_m: float = 1.0
    complete_min_width: int = 800
    complete_max_depth_m: float = 100.0
    complete_extrapolate: bool = True
    complete_blur: str = "bilateral"

    def __post_init__(self):
        if self.source not in DEPTH_SOURCES:
            raise ValueError(f"DepthConfig.source must be one of {DEPTH_SOURCES}, got {self.source!r}")
        LidarConfig(self.nsweeps, self.min_distance_m)
        if not self.min_depth_m >= 0:
            raise ValueError(f"DepthConfig.min_depth_m must be >= 0, got {self.min_depth_m!r}")
        if not (isinstance(self.complete_min_width, int) and self.complete_min_width >= 1):
            raise ValueError(f"DepthConfig.complete_min_width must be an int >= 1, got {self.complete_min_width!r}")
        if not (isinstance(self.complete_max_depth_m, (int, float)) and 0.2 < self.complete_max_depth_m < np.inf):
            raise ValueError(f"DepthConfig.complete_max_depth_m must be a finite number of metres > 0.2, "
                             f"got {self.complete_max_depth_m!r}")
        if self.complete_blur not in ("bilateral", "gaussian"):
            raise ValueError(f"DepthConfig.complete_blur must be 'bilateral' or 'gaussian', got {self.complete_blur!r}")

    def cache_config(self) -> dict:
        """What enters the depth cache key: the completion options only for ``lidar_completed`` (so
        the caches of the other sources keep the keys they had before those options existed)."""
        d = asdict(self)
        if self.source != "lidar_completed":
            d = {k: v for k, v in d.items() if not k.startswith("complete_")}
        return d


#: Values of :attr:`DepthConfig.source`.
DEPTH_SOURCES = ("auto", "world", "lidar", "lidar_completed")


@dataclass(frozen=True)
class KeyframeConfig:
    """What one training/evaluation item holds (busch2026 Sec. IV: 512x288 images, 150x150 BEV).

    Attributes:
        image_wh: (w, h) pixels of images, pseudo-labels and depth maps.
        grid / target: the BEV ground truth's grid and drawing.
        labeler: cached pseudo-label set to read (None: the ``pseudo`` field adds nothing).
        fields: names from :data:`FIELDS` to assemble, in any order; the default is busch2026's
            set, :data:`BUSCH2026_FIELDS`. A list is accepted and stored as a tuple.
        lidar / depth: options of the ``lidar`` and ``depth`` fields.
        cache: keep costly fields (``bev_gt``, ``depth``) under ``bevlib.paths.cache_dir()``;
            False recomputes them on every load and writes nothing.
    Raises: ValueError naming an unknown or repeated field.
    """

    image_wh: tuple[int, int] = (512, 288)
    grid: BEVGrid = field(default_factory=BEVGrid)
    target: BEVTargetConfig = field(default_factory=BEVTargetConfig)
    labeler: str | None = None
    fields: tuple = BUSCH2026_FIELDS
    lidar: LidarConfig = field(default_factory=LidarConfig)
    depth: DepthConfig = field(default_factory=DepthConfig)
    cache: bool = True

    def __post_init__(self):
        names = tuple(self.fields) if not isinstance(self.fields, str) else (self.fields,)
        unknown = [f for f in names if f not in FIELDS]
        if unknown:
            raise ValueError(f"unknown keyframe field(s) {unknown}; known: {', '.join(FIELDS)}")
        if len(set(names)) != len(names):
            raise ValueError(f"keyframe fields repeated: {list(names)}")
        object.__setattr__(self, "fields", names)


def load_keyframe(nusc, sample_token: str, cfg: KeyframeConfig) -> dict:
    """Everything the configured fields of a keyframe contribute, as numpy arrays.

    Always: ``sample_token``; ``prev_token`` str ('' at scene start); ``curr_T_prev`` (4, 4)
    float32; ``ego_motion`` (3,) float32 (dx m, dy m, dphi rad) (see :func:`ego_motion`).
    Per field (:data:`FIELDS`; keys and shapes in :mod:`bevlib.data.fields`):

    * ``cameras``: ``images`` (N, h, w, 3) uint8; ``K`` (N, 3, 3) float32 at image size;
      ``ego_T_cam`` (N, 4, 4) float32.
    * ``bev_gt``: ``bev_gt`` (H, W) uint8, all IGNORE when the map is absent (and ``has_bev_gt``
      False).
    * ``pseudo``: ``pseudo`` (N, h, w) uint8 (nearest-resized) when ``cfg.labeler`` is set.
    * ``lidar``, ``boxes``, ``depth``: see :func:`bevlib.data.fields.load_fields`.

    Raises: DataError naming the missing or corrupt file / record.
    """
    return load_fields(nusc, sample_token, cfg)


def dataset_identity(nusc) -> dict:
    """What identifies a dataset for cache keys: resolved ``dataroot``, ``version``, and the size
    and mtime of each table of the version folder (so a world regenerated in place, or edited
    tables, never reuse entries of the old one). Computed once per ``NuScenes`` object, which holds
    the tables it loaded at that time anyway."""
    try:
        return _identity_by_nusc[nusc]
    except (KeyError, TypeError):
        pass
    root = Path(nusc.dataroot).resolve()
    tables = sorted((root / nusc.version).glob("*.json"))
    ident = {"dataroot": str(root), "version": nusc.version,
             "tables": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in tables]}
    try:
        _identity_by_nusc[nusc] = ident
    except TypeError:       # an object without weak references: recompute next time
        pass
    return ident


class FieldCache:
    """Per-keyframe cache of one field under ``<root>/fields/<field>-<key>/``.

    Args:
        nusc: the database (its :func:`dataset_identity` enters the key).
        field: field name.
        config: the field's JSON-serialisable config; any change gives another key.
        root: cache root, default :func:`bevlib.paths.cache_dir` (``$BEVLIB_CACHE``).
    Entries are ``<sample_token>.npz`` written atomically (a reader sees a whole file or none), plus
    ``meta.json`` stating the field, config and dataset, for whoever inspects the folder.
    """

    def __init__(self, nusc, field: str, config: dict, root: str | Path | None = None):
        self.field = field
        self.meta = {"field": field, "config": config, "dataset": dataset_identity(nusc), "format": CACHE_FORMAT}
        self.key = config_hash(self.meta, 16)
        self.dir = Path(root if root is not None else cache_dir()) / "fields" / f"{field}-{self.key}"

    def path(self, sample_token: str) -> Path:
        """The entry of a keyframe (it may not exist)."""
        return self.dir / f"{sample_token}.npz"

    def load(self, sample_token: str) -> dict | None:
        """The cached arrays of a keyframe, or None on a miss. An unreadable entry (a disk error, a
        file from a crashed writer of an older version) is a miss and is logged: caches are
        disposable, the field is recomputed."""
        path = self.path(sample_token)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except Exception as e:   # zipfile / OSError / ValueError: recompute rather than fail a run
            log.warning("unreadable cache entry %s (%s: %s): recomputing", path, type(e).__name__, e)
            return None

    def save(self, sample_token: str, arrays: dict) -> None:
        """Write a keyframe's arrays (compressed npz, atomic). A cache that cannot be written
        (read-only or full disk) is logged and skipped: the caller already has the values."""
        try:
            if not (self.dir / "meta.json").exists():
                atomic_write_text(self.dir / "meta.json", json.dumps(self.meta, indent=1, default=str))
            atomic_write(self.path(sample_token), lambda tmp: _savez(tmp, arrays))
        except OSError as e:
            log.warning("cannot write the %s cache at %s (%s): continuing without it", self.field, self.dir, e)


def _savez(tmp: str, arrays: dict) -> None:
    with open(tmp, "wb") as f:   # a file object: np.savez would append '.npz' to a path
        np.savez_compressed(f, **arrays)


# ------------------------------------------------------------------------------------------------
# Fields
# ------------------------------------------------------------------------------------------------

class _Keyframe:
    """What several fields of one keyframe share, computed on first use."""

    def __init__(self, nusc, sample_token: str, cfg: KeyframeConfig):
        self.nusc, self.token, self.cfg = nusc, sample_token, cfg
        self._rig = None
        self._native_rig = None
        self._sweeps: dict = {}

    @property
    def rig(self) -> dict:
        if self._rig is None:
            self._rig = nd.camera_rig(self.nusc, self.token, self.cfg.image_wh)
        return self._rig

    @property
    def native_rig(self) -> dict:
        """The rig with intrinsics at each camera's native image size."""
        if self._native_rig is None:
            self._native_rig = nd.camera_rig(self.nusc, self.token, None)
        return self._native_rig

    def sweep(self, nsweeps: int, min_distance: float):
        from .lidar import load_lidar_sweep

        key = (nsweeps, float(min_distance))
        if key not in self._sweeps:
            self._sweeps[key] = load_lidar_sweep(self.nusc, self.token, nsweeps, min_distance)
        return self._sweeps[key]


def _cameras(kf: _Keyframe) -> dict:
    rig = kf.rig
    images = np.stack([nd.load_image(kf.nusc.get_sample_data_path(t), kf.cfg.image_wh) for t in rig["sd_tokens"]])
    return {"images": images, "K": rig["K"].astype(np.float32), "ego_T_cam": rig["ego_T_cam"].astype(np.float32)}


def _map_stamp(path: Path) -> list:
    st = path.stat()
    return [path.name, st.st_size, st.st_mtime_ns]


def _bev_gt(kf: _Keyframe) -> dict:
    cfg = kf.cfg
    absent = {"bev_gt": np.full((cfg.grid.H, cfg.grid.W), IGNORE, np.uint8), "has_bev_gt": False}
    location, map_path = nd.map_expansion_path(kf.nusc, kf.token)
    if location not in nd.MAP_LOCATIONS or not map_path.exists():
        nd.map_for_sample(kf.nusc, kf.token)          # logs the absence, as every access did
        return absent
    cache = None
    if cfg.cache:
        # The map file's stamp is in the key: a new map expansion release must not reuse old rasters.
        cache = FieldCache(kf.nusc, "bev_gt", {"grid": cfg.grid.as_dict(), "target": asdict(cfg.target),
                                               "map": _map_stamp(map_path)})
        hit = cache.load(kf.token)
        if hit is not None and "bev_gt" in hit:
            return {"bev_gt": hit["bev_gt"], "has_bev_gt": True}
    gt = nd.bev_ground_truth(kf.nusc, kf.token, cfg.grid, cfg.target)
    if gt is None:
        return absent
    if cache is not None:
        cache.save(kf.token, {"bev_gt": gt})
    return {"bev_gt": gt, "has_bev_gt": True}


def _pseudo(kf: _Keyframe) -> dict:
    from PIL import Image

    from .pseudo import load_pseudo_label

    if not kf.cfg.labeler:
        return {}
    wh = tuple(kf.cfg.image_wh)
    return {"pseudo": np.stack([np.asarray(Image.fromarray(load_pseudo_label(kf.nusc.dataroot, kf.cfg.labeler, t))
                                           .resize(wh, Image.NEAREST)) for t in kf.rig["sd_tokens"]])}


def _lidar(kf: _Keyframe) -> dict:
    from .lidar import LIDARSEG_UNLABELLED, map_lidarseg

    lc = kf.cfg.lidar
    sw = kf.sweep(lc.nsweeps, lc.min_distance_m)
    if sw is None:
        e3, e1 = np.zeros((0, 3), np.float32), np.zeros(0, np.float32)
        u1 = np.zeros(0, np.uint8)
        return {"lidar_points": e3, "lidar_points_sensor": e3.copy(), "lidar_intensity": e1, "lidar_ring": u1,
                "lidar_sweep": u1.copy(), "lidar_time_lag": e1.copy(), "lidar_seg": u1.copy(),
                "lidar_seg_raw": u1.copy(), "ego_T_lidar": np.full((4, 4), np.nan, np.float32),
                "has_lidar": False, "has_lidarseg": False}
    n = len(sw)
    raw = sw.lidarseg if sw.lidarseg is not None else np.full(n, LIDARSEG_UNLABELLED, np.uint8)
    return {
        "lidar_points": sw.points_ego.astype(np.float32),
        "lidar_points_sensor": sw.points_sensor,
        "lidar_intensity": sw.intensity,
        "lidar_ring": sw.ring if sw.ring is not None else np.full(n, RING_UNKNOWN, np.uint8),
        "lidar_sweep": sw.sweep,
        "lidar_time_lag": sw.time_lag,
        "lidar_seg": map_lidarseg(kf.nusc, raw) if sw.lidarseg is not None else np.zeros(n, np.uint8),
        "lidar_seg_raw": raw,
        "ego_T_lidar": sw.ego_T_sensor.astype(np.float32),
        "has_lidar": True,
        "has_lidarseg": sw.lidarseg is not None,
    }


def boxes_ego(nusc, sample_token: str) -> dict:
    """A keyframe's annotated 3D boxes in its ego frame (the ``boxes`` field).

    The devkit's ``nusc.get_boxes`` of the keyframe's reference sample_data (LIDAR_TOP, else
    CAM_FRONT) gives global boxes, moved into the ego frame with that sample_data's ego pose by
    ``Box.translate`` / ``Box.rotate``, the first step of ``nusc.get_sample_data``.

    Returns: dict of :data:`BOX_KEYS` (shapes in the module docstring), M = number of annotations.
    Raises: DataError naming a missing sample / sample_data / ego_pose / annotation record.
    """
    from pyquaternion import Quaternion

    sample = nd._record(nusc, "sample", sample_token, "keyframe")
    ref = nd._reference_sd(nusc, sample)
    pose = nd._record(nusc, "ego_pose", ref["ego_pose_token"], f"ego pose of {ref['token']}")
    q_inv = Quaternion(pose["rotation"]).inverse
    try:
        boxes = nusc.get_boxes(ref["token"])
    except KeyError as e:
        raise DataError(f"sample_annotation record {e.args[0]!r} of sample {sample_token} is missing from "
                        f"{nusc.version} at {nusc.dataroot}") from None
    center, wlh, rot, yaw, cls, npts, toks, cats = [], [], [], [], [], [], [], []
    for b in boxes:
        b.translate(-np.asarray(pose["translation"], np.float64))
        b.rotate(q_inv)
        R = b.rotation_matrix
        center.append(b.center)
        wlh.append(b.wlh)
        rot.append(b.orientation.elements)
        yaw.append(np.arctan2(R[1, 0], R[0, 0]))
        obj = CATEGORY_TO_OBJECT.get(b.name)
        cls.append(OBJECT_CLASSES.index(obj) if obj is not None else -1)
        npts.append(nusc.get("sample_annotation", b.token)["num_lidar_pts"])
        toks.append(b.token)
        cats.append(b.name)
    m = len(boxes)
    return {
        "box_center": np.asarray(center, np.float32).reshape(m, 3),
        "box_wlh": np.asarray(wlh, np.float32).reshape(m, 3),
        "box_rotation": np.asarray(rot, np.float32).reshape(m, 4),
        "box_yaw": np.asarray(yaw, np.float32).reshape(m),
        "box_class": np.asarray(cls, np.int64).reshape(m),
        "box_num_lidar_pts": np.asarray(npts, np.int32).reshape(m),
        "box_token": toks,
        "box_category": cats,
    }


def _boxes(kf: _Keyframe) -> dict:
    return boxes_ego(kf.nusc, kf.token)


def _world_depth_paths(kf: _Keyframe) -> list | None:
    from .world import camera_depth_path

    paths = [camera_depth_path(kf.nusc.dataroot, t) for t in kf.rig["sd_tokens"]]
    return paths if all(p.exists() for p in paths) else None


def project_depth(points_ego: np.ndarray, K: np.ndarray, ego_T_cam: np.ndarray, image_wh: tuple[int, int],
                  min_depth: float = 1.0) -> np.ndarray:
    """Sparse depth of points seen by one camera.

    Args:
        points_ego: (P, 3) metres, ego frame.
        K: (3, 3) pixels at ``image_wh``; ego_T_cam: (4, 4).
        min_depth: points with optical-axis depth <= this (metres) are dropped.
    Returns: (h, w) float32 metres along the optical axis (camera z); each point lands on its
        nearest pixel (OpenCV centres at integers), the nearest point wins; 0 where no point.
    """
    w, h = image_wh
    uv, z, front = geo.project(K, geo.invert(np.asarray(ego_T_cam, np.float64)), points_ego)
    front &= z > min_depth
    px = np.floor(np.nan_to_num(uv[front], nan=-1.0) + 0.5).astype(np.int64)
    z = z[front]
    inside = (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
    flat = np.full(h * w, np.inf)
    np.minimum.at(flat, px[inside, 1] * w + px[inside, 0], z[inside])
    flat[np.isinf(flat)] = 0.0
    return flat.reshape(h, w).astype(np.float32)


def completion_size(native_wh: tuple[int, int], min_width: int) -> tuple[int, int]:
    """(w, h) pixels at which a camera's LiDAR depth is completed: ``native_wh``, or, when it is
    narrower than ``min_width``, scaled up to that width with the aspect kept (h rounded)."""
    w, h = int(native_wh[0]), int(native_wh[1])
    if w >= min_width:
        return w, h
    return int(min_width), max(1, int(round(h * min_width / w)))


def completed_lidar_depth(points_ego: np.ndarray, K_native: np.ndarray, ego_T_cam: np.ndarray,
                          native_wh: tuple[int, int], image_wh: tuple[int, int], dc: DepthConfig) -> np.ndarray:
    """Dense depth of one camera from LiDAR points: :func:`project_depth` at
    :func:`completion_size` (``native_wh``, ``dc.complete_min_width``), completed with IP-Basic
    (:func:`bevlib.depth_completion.complete_depth`, Ku et al. 2018 Sec. III; wozniak2025 Sec. 3.3),
    nearest-resized to ``image_wh``.

    Args:
        points_ego: (P, 3) metres, ego frame. K_native: (3, 3) pixels at ``native_wh``.
        ego_T_cam: (4, 4) maps camera-frame points into the ego frame.
        native_wh / image_wh: (w, h) pixels. dc: the completion options (``complete_*``, ``min_depth_m``).
    Returns: (h, w) float32 metres along the optical axis at ``image_wh``; 0 where IP-Basic leaves
        no depth (with ``complete_extrapolate`` off: above a column's highest return and in holes
        wider than its small kernels reach).
    Raises: ValueError from :func:`~bevlib.depth_completion.complete_depth` for bad options.
    """
    from PIL import Image

    from ..depth_completion import complete_depth

    cwh = completion_size(native_wh, dc.complete_min_width)
    K = geo.scale_intrinsics(np.asarray(K_native, np.float64), tuple(native_wh), cwh)
    sparse = project_depth(points_ego, K, ego_T_cam, cwh, dc.min_depth_m)
    dense = complete_depth(sparse, max_depth=float(dc.complete_max_depth_m), extrapolate=dc.complete_extrapolate,
                           blur=dc.complete_blur)
    if cwh == tuple(image_wh):
        return dense
    # nearest: a depth edge must not blend a near and a far surface into a depth that is neither; PIL's
    # nearest samples each target pixel's centre (as the world depth does), cv2's INTER_NEAREST its corner
    return np.asarray(Image.fromarray(dense).resize(tuple(int(v) for v in image_wh), Image.NEAREST), np.float32)


def _depth(kf: _Keyframe) -> dict:
    from PIL import Image

    cfg, dc = kf.cfg, kf.cfg.depth
    cache = None
    if cfg.cache:
        cache = FieldCache(kf.nusc, "depth", {"image_wh": list(cfg.image_wh), **dc.cache_config()})
        hit = cache.load(kf.token)
        if hit is not None and {"depth", "depth_source"} <= hit.keys():
            return {"depth": hit["depth"], "depth_source": str(hit["depth_source"])}
    world = _world_depth_paths(kf) if dc.source in ("auto", "world") else None
    if dc.source == "world" and world is None:
        raise DataError(f"depth source 'world' needs the embedded world's depth maps; {kf.nusc.dataroot} has none for "
                        f"sample {kf.token} (use DepthConfig(source='lidar') or 'auto')")
    wh = tuple(cfg.image_wh)
    if world is not None:
        from .world import load_camera_depth

        depth = np.stack([np.asarray(Image.fromarray(load_camera_depth(kf.nusc.dataroot, t)).resize(wh, Image.NEAREST))
                          for t in kf.rig["sd_tokens"]]).astype(np.float32)
        source = "world"
    else:
        sw = kf.sweep(dc.nsweeps, dc.min_distance_m)
        rig = kf.rig
        if sw is None:
            depth = np.zeros((len(rig["sd_tokens"]), wh[1], wh[0]), np.float32)
        elif dc.source == "lidar_completed":
            depth = np.stack([completed_lidar_depth(sw.points_ego, K, T, native, wh, dc)
                              for K, T, native in zip(kf.native_rig["K"], rig["ego_T_cam"], kf.native_rig["native_wh"])])
        else:
            depth = np.stack([project_depth(sw.points_ego, K, T, wh, dc.min_depth_m)
                              for K, T in zip(rig["K"], rig["ego_T_cam"])])
        source = "lidar_completed" if dc.source == "lidar_completed" else "lidar"
    if cache is not None:
        cache.save(kf.token, {"depth": depth, "depth_source": np.array(source)})
    return {"depth": depth, "depth_source": source}


_LOADERS = {"cameras": _cameras, "bev_gt": _bev_gt, "pseudo": _pseudo, "lidar": _lidar, "boxes": _boxes,
            "depth": _depth}
assert tuple(_LOADERS) == FIELDS


def load_fields(nusc, sample_token: str, cfg: KeyframeConfig) -> dict:
    """Assemble a keyframe from ``cfg.fields`` (keys and shapes in the module docstring).

    Fields are loaded in :data:`~bevlib.data.nuscenes_data.FIELDS` order whatever the order
    requested, so a config's items always have the same key order.
    Raises: DataError naming the missing or corrupt file / record (e.g. a truncated ``.pcd.bin``
        or lidarseg file with the ``lidar`` or ``depth`` field).
    """
    kf = _Keyframe(nusc, sample_token, cfg)
    item: dict = {"sample_token": sample_token}
    for name in FIELDS:
        if name in cfg.fields:
            item.update(_LOADERS[name](kf))
    prev, curr_T_prev, motion = nd.ego_motion(nusc, sample_token)
    item.update(prev_token=prev or "", curr_T_prev=curr_T_prev.astype(np.float32), ego_motion=motion.astype(np.float32))
    return item
