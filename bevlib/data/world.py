"""A deterministic synthetic driving world written in nuScenes format (readable by nuscenes-devkit).

bevlib cannot ship nuScenes, so its tests and CPU-scale experiments run on a small world that this
module generates from a seed: a flat town (ground z = 0 in the global frame) with a road grid, curves,
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
    maps/expansion/<location>.json                      map expansion v1.3 (see _MapBuilder)
    bevlib_cache/camera_semantics/<cam_sd_token>.png    uint8 (H, W): CAMERA_SEMANTIC_CLASSES ids
    bevlib_cache/camera_depth/<cam_sd_token>.png        uint16 (H, W): depth along the optical axis in
                                                        CENTIMETRES, 0 = sky / nothing within range
    bevlib_split.json                                   {"train": [scene names], "val": [...]}
    bevlib_world.json                                   generator config + version (written last)

Conventions and simplifications (documented here once):

* Only keyframes (2 Hz) exist; there are no sweeps and no radars (``num_radar_pts`` = 0).
* All sensors of a keyframe are captured at the keyframe's timestamp and ego pose: every sample_data
  has its own ego_pose record (token = sample_data token, as in nuScenes) but they hold the same pose.
* Ego poses are planar: z = 0, rotation = yaw only. Objects are yaw-only boxes standing on z = 0.
* Singapore locations drive on the left, Boston on the right (lanes and stop lines are mirrored).
* The camera image is a ray-cast: ground texture from a 2-D material raster, boxes as shaded cuboids,
  sky above the horizon; ground further than ``_FAR_GROUND`` m is rendered as sky.
* ``ego_pose``/boxes/rig use the frames of :mod:`bevlib.geometry`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import shapely
from shapely.geometry import LineString, Polygon
from shapely.geometry import box as shapely_box
from shapely.ops import unary_union
from tqdm.auto import tqdm

from bevlib.classes import ALL_CLASSES, class_index
from bevlib.geometry import invert, scale_intrinsics, transform_from
from bevlib.paths import cache_dir as default_cache_dir

# ------------------------------------------------------------------------------------------------
# Public constants
# ------------------------------------------------------------------------------------------------

#: The six nuScenes cameras, in the surround order used throughout bevlib.
CAMERA_NAMES = ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT")
LIDAR_NAME = "LIDAR_TOP"

#: Image size (width, height) the rig intrinsics below refer to.
RIG_IMAGE_WH = (1600, 900)

#: Real nuScenes rig (v1.0-mini calibrated_sensor + sensor tables): ``ego_T_sensor`` as translation
#: (metres, ego frame) and rotation (unit quaternion w, x, y, z); camera intrinsics in pixels for
#: :data:`RIG_IMAGE_WH` images. Numbers are copied verbatim.
NUSCENES_RIG = {
    "CAM_FRONT_LEFT": dict(
        translation=(1.52387798135, 0.494631336551, 1.50932822144),
        rotation=(0.6757265034669446, -0.6736266522251881, 0.21214015046209478, -0.21122827103904068),
        camera_intrinsic=((1272.5979470598488, 0.0, 826.6154927353808),
                          (0.0, 1272.5979470598488, 479.75165386361925), (0.0, 0.0, 1.0))),
    "CAM_FRONT": dict(
        translation=(1.70079118954, 0.0159456324149, 1.51095763913),
        rotation=(0.4998015430569128, -0.5030316162024876, 0.4997798114386805, -0.49737083824542755),
        camera_intrinsic=((1266.417203046554, 0.0, 816.2670197447984),
                          (0.0, 1266.417203046554, 491.50706579294757), (0.0, 0.0, 1.0))),
    "CAM_FRONT_RIGHT": dict(
        translation=(1.5508477543, -0.493404796419, 1.49574800619),
        rotation=(0.2060347966337182, -0.2026940577919598, 0.6824507824531167, -0.6713610884174485),
        camera_intrinsic=((1260.8474446004698, 0.0, 807.968244525554),
                          (0.0, 1260.8474446004698, 495.3344268742088), (0.0, 0.0, 1.0))),
    "CAM_BACK_LEFT": dict(
        translation=(1.03569100218, 0.484795032713, 1.59097014818),
        rotation=(0.6924185592174665, -0.7031619420114925, -0.11648342771943819, 0.11203317912370753),
        camera_intrinsic=((1256.7414812095406, 0.0, 792.1125740759628),
                          (0.0, 1256.7414812095406, 492.7757465151356), (0.0, 0.0, 1.0))),
    "CAM_BACK": dict(
        translation=(0.0283260309358, 0.00345136761476, 1.57910346144),
        rotation=(0.5037872666382278, -0.49740249788611096, -0.4941850223835201, 0.5045496097725578),
        camera_intrinsic=((809.2209905677063, 0.0, 829.2196003259838),
                          (0.0, 809.2209905677063, 481.77842384512485), (0.0, 0.0, 1.0))),
    "CAM_BACK_RIGHT": dict(
        translation=(1.0148780988, -0.480568219723, 1.56239545128),
        rotation=(0.12280980120078765, -0.132400842670559, -0.7004305821388234, 0.690496031265798),
        camera_intrinsic=((1259.5137405846733, 0.0, 807.2529053838625),
                          (0.0, 1259.5137405846733, 501.19579884916527), (0.0, 0.0, 1.0))),
    "LIDAR_TOP": dict(
        translation=(0.943713, 0.0, 1.84023),
        rotation=(0.7077955119163518, -0.006492242056004365, 0.010646214713995808, -0.7063073142877817),
        camera_intrinsic=()),
}

#: Classes of the camera-view semantic masks. The first 14 are :data:`bevlib.classes.ALL_CLASSES` at
#: the same indices (lane = lane divider AND road divider paint, boundary = curb band, crosswalk =
#: zebra stripes, objects = their class); the rest are the other surfaces. Index 0 (background) is
#: never produced by the renderer: every pixel gets a specific class.
CAMERA_SEMANTIC_CLASSES = ALL_CLASSES + (
    "road_surface",    # asphalt
    "crosswalk_gap",   # asphalt between zebra stripes, inside a ped_crossing polygon
    "sidewalk",
    "stop_line",
    "arrow",           # painted lane arrows
    "terrain",         # grass / soil verges
    "building",
    "vegetation",
    "sky",             # also ground further than 300 m
)
_SEM = {name: i for i, name in enumerate(CAMERA_SEMANTIC_CLASSES)}

#: nuScenes-lidarseg general categories, position = the category's 'index' (0..31), with the
#: descriptions written for this world.
LIDARSEG_CATEGORIES = (
    ("noise", "Points without a valid return or label."),
    ("animal", "All animals."),
    ("human.pedestrian.adult", "Adult pedestrian."),
    ("human.pedestrian.child", "Child pedestrian."),
    ("human.pedestrian.construction_worker", "Construction worker."),
    ("human.pedestrian.personal_mobility", "Person on a personal mobility device."),
    ("human.pedestrian.police_officer", "Police officer."),
    ("human.pedestrian.stroller", "Stroller."),
    ("human.pedestrian.wheelchair", "Wheelchair."),
    ("movable_object.barrier", "Temporary road barrier."),
    ("movable_object.debris", "Debris on the road."),
    ("movable_object.pushable_pullable", "Pushable or pullable object."),
    ("movable_object.trafficcone", "Traffic cone."),
    ("static_object.bicycle_rack", "Bicycle rack."),
    ("vehicle.bicycle", "Bicycle."),
    ("vehicle.bus.bendy", "Articulated bus."),
    ("vehicle.bus.rigid", "Rigid bus."),
    ("vehicle.car", "Passenger car, van, SUV."),
    ("vehicle.construction", "Construction vehicle."),
    ("vehicle.emergency.ambulance", "Ambulance."),
    ("vehicle.emergency.police", "Police vehicle."),
    ("vehicle.motorcycle", "Motorcycle or scooter."),
    ("vehicle.trailer", "Trailer."),
    ("vehicle.truck", "Truck."),
    ("flat.driveable_surface", "Road surface including its paint."),
    ("flat.other", "Other horizontal ground-level structures."),
    ("flat.sidewalk", "Sidewalk, including the curb."),
    ("flat.terrain", "Grass and soil."),
    ("static.manmade", "Buildings, walls, poles."),
    ("static.other", "Other static background."),
    ("static.vegetation", "Trees and bushes."),
    ("vehicle.ego", "The ego vehicle itself."),
)
_LSEG = {name: i for i, (name, _) in enumerate(LIDARSEG_CATEGORIES)}

#: nuScenes attribute names (descriptions written for this world).
ATTRIBUTES = (
    ("vehicle.moving", "Vehicle is moving."),
    ("vehicle.stopped", "Vehicle is stationary with intent to move."),
    ("vehicle.parked", "Vehicle is parked."),
    ("cycle.with_rider", "A rider is on the cycle."),
    ("cycle.without_rider", "No rider is on the cycle."),
    ("pedestrian.sitting_lying_down", "Pedestrian is sitting or lying."),
    ("pedestrian.standing", "Pedestrian is standing."),
    ("pedestrian.moving", "Pedestrian is moving."),
)
#: nuScenes visibility levels: token -> (level, upper bound of the visible fraction).
VISIBILITY = (("1", "v0-40", 0.4), ("2", "v40-60", 0.6), ("3", "v60-80", 0.8), ("4", "v80-100", 1.01))

#: map_name values NuScenesMap accepts; each world location must be one of them.
MAP_LOCATIONS = ("singapore-onenorth", "singapore-hollandvillage", "singapore-queenstown", "boston-seaport")

_SEMANTICS_DIR = Path("bevlib_cache") / "camera_semantics"
_DEPTH_DIR = Path("bevlib_cache") / "camera_depth"
_SPLIT_FILE = "bevlib_split.json"
_MANIFEST_FILE = "bevlib_world.json"
#: Bumped whenever the generated content changes, so cached worlds of older code are not reused.
_GENERATOR_VERSION = 1


# ------------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WorldConfig:
    """Everything that determines a generated world; equal configs give byte-identical worlds.

    Attributes:
        seed: master seed; every random choice derives from it.
        n_scenes: number of scenes; scenes alternate between ``locations``.
        keyframes_per_scene: samples per scene, 0.5 s apart (2 Hz).
        image_wh: camera image (width, height) in pixels; intrinsics are the rig's scaled to it.
        render_scale: the ray-caster runs at ``image_wh * render_scale`` and upsamples (speed knob).
        lidar_beams / lidar_azimuth_steps: LiDAR rays per sweep (HDL-32E: 32 beams, -30.67..+10.67 deg).
        val_scenes: the last ``val_scenes`` scenes form the val split.
        version: nuScenes version folder name.
        locations: map names (from :data:`MAP_LOCATIONS`) used in turn by the scenes.
        speed_kmh: ego speed range (km/h); one constant speed per scene.
        object_density: multiplies the number of spawned traffic participants.
        ground_resolution: metres per cell of the ground material raster (paint sharpness).
        annotation_range: objects within this xy distance (m) of the ego get sample_annotations.
        jpeg_quality: JPEG quality of the camera images.
    """

    seed: int = 0
    n_scenes: int = 6
    keyframes_per_scene: int = 16
    image_wh: tuple = (800, 450)
    render_scale: float = 1.0
    lidar_beams: int = 32
    lidar_azimuth_steps: int = 1084
    val_scenes: int = 2
    version: str = "v1.0-mini"
    locations: tuple = ("singapore-onenorth", "boston-seaport")
    speed_kmh: tuple = (30.0, 50.0)
    object_density: float = 1.0
    ground_resolution: float = 0.05
    annotation_range: float = 60.0
    jpeg_quality: int = 90

    def __post_init__(self):
        problems = []
        if self.n_scenes < 1:
            problems.append(f"n_scenes={self.n_scenes} < 1")
        if not 0 <= self.val_scenes <= self.n_scenes:
            problems.append(f"val_scenes={self.val_scenes} not in [0, n_scenes={self.n_scenes}]")
        if self.keyframes_per_scene < 1:
            problems.append(f"keyframes_per_scene={self.keyframes_per_scene} < 1")
        if len(self.image_wh) != 2 or min(self.image_wh) < 16:
            problems.append(f"image_wh={self.image_wh} must be (width, height) >= 16")
        if not 0.1 <= self.render_scale <= 1.0:
            problems.append(f"render_scale={self.render_scale} not in [0.1, 1]")
        if not (1 <= self.lidar_beams <= 128 and self.lidar_azimuth_steps >= 8):
            problems.append(f"lidar_beams={self.lidar_beams} or lidar_azimuth_steps={self.lidar_azimuth_steps} "
                            "out of range")
        if not self.locations or any(loc not in MAP_LOCATIONS for loc in self.locations):
            problems.append(f"locations={self.locations}; each must be one of {MAP_LOCATIONS}")
        if not 5.0 <= self.speed_kmh[0] <= self.speed_kmh[1] <= 80.0:
            problems.append(f"speed_kmh={self.speed_kmh} must be an increasing range within [5, 80]")
        if not 0.02 <= self.ground_resolution <= 0.2:
            problems.append(f"ground_resolution={self.ground_resolution} not in [0.02, 0.2] m")
        if self.object_density < 0 or self.annotation_range <= 0:
            problems.append("object_density must be >= 0 and annotation_range > 0")
        if not self.version:
            problems.append("version must be a non-empty folder name")
        if problems:
            raise ValueError("invalid WorldConfig: " + "; ".join(problems))

    def as_dict(self) -> dict:
        """All fields as JSON-serialisable values (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def hash(self) -> str:
        """12-hex-digit digest of all fields and the generator version (names the cache directory)."""
        blob = json.dumps({"config": self.as_dict(), "generator": _GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


# ------------------------------------------------------------------------------------------------
# Deterministic tokens and random streams
# ------------------------------------------------------------------------------------------------

def _token(seed: int, *parts) -> str:
    """32-hex token derived only from the seed and a path of names (stable across runs/machines)."""
    return hashlib.md5("/".join(["bevlib-world", str(seed), *map(str, parts)]).encode()).hexdigest()


def _rng(seed: int, *parts) -> np.random.Generator:
    """Independent random stream per purpose, so adding draws in one place never shifts another."""
    return np.random.default_rng(int(_token(seed, "rng", *parts)[:16], 16))


def _yaw_quaternion(yaw: float) -> list:
    return [math.cos(yaw / 2.0), 0.0, 0.0, math.sin(yaw / 2.0)]


def _pose_matrix(x: float, y: float, yaw: float, z: float = 0.0) -> np.ndarray:
    return transform_from((x, y, z), _yaw_quaternion(yaw))


# ------------------------------------------------------------------------------------------------
# Planar paths
# ------------------------------------------------------------------------------------------------

class _Path:
    """Arc-length parametrised planar polyline; ``to_world(s, d)`` maps path coordinates (s along,
    d to the left, metres) to global (x, y). Closed paths wrap s, open ones clamp it."""

    def __init__(self, pts, closed: bool = False):
        p = np.asarray(pts, np.float64).reshape(-1, 2)
        if closed and np.hypot(*(p[0] - p[-1])) > 1e-9:
            p = np.vstack([p, p[:1]])
        keep = np.concatenate([[True], np.hypot(*np.diff(p, axis=0).T) > 1e-9])
        p = p[keep]
        if len(p) < 2:
            raise ValueError("a path needs at least two distinct points")
        seg = np.diff(p, axis=0)
        length = np.hypot(seg[:, 0], seg[:, 1])
        u = seg / length[:, None]
        tan = np.empty_like(p)
        tan[1:-1] = u[:-1] + u[1:]
        tan[0], tan[-1] = (u[-1] + u[0], u[-1] + u[0]) if closed else (u[0], u[-1])
        self.pts, self.closed = p, closed
        self.s = np.concatenate([[0.0], np.cumsum(length)])
        self.length = float(self.s[-1])
        self.tan = tan / np.linalg.norm(tan, axis=1, keepdims=True)

    def _param(self, s):
        s = np.asarray(s, np.float64)
        return np.mod(s, self.length) if self.closed else np.clip(s, 0.0, self.length)

    def point(self, s) -> np.ndarray:
        s = self._param(s)
        return np.stack([np.interp(s, self.s, self.pts[:, 0]), np.interp(s, self.s, self.pts[:, 1])], -1)

    def tangent(self, s) -> np.ndarray:
        s = self._param(s)
        t = np.stack([np.interp(s, self.s, self.tan[:, 0]), np.interp(s, self.s, self.tan[:, 1])], -1)
        return t / np.linalg.norm(t, axis=-1, keepdims=True)

    def heading(self, s) -> np.ndarray:
        t = self.tangent(s)
        return np.arctan2(t[..., 1], t[..., 0])

    def to_world(self, s, d=0.0) -> np.ndarray:
        s, d = np.broadcast_arrays(np.asarray(s, np.float64), np.asarray(d, np.float64))
        t = self.tangent(s)
        return self.point(s) + d[..., None] * np.stack([-t[..., 1], t[..., 0]], -1)

    def project(self, xy) -> float:
        """Arc length of the point of the path closest to ``xy``."""
        a, b = self.pts[:-1], self.pts[1:]
        ab = b - a
        w = np.clip(np.einsum("ij,ij->i", np.asarray(xy) - a, ab) / np.einsum("ij,ij->i", ab, ab), 0.0, 1.0)
        dist = np.hypot(*(a + w[:, None] * ab - xy).T)
        i = int(np.argmin(dist))
        return float(self.s[i] + w[i] * (self.s[i + 1] - self.s[i]))


def _distance_to(path: _Path, xy) -> float:
    return float(np.hypot(*(path.point(path.project(xy)) - np.asarray(xy))))


def _densify(a, b, step: float = 1.0) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    n = max(int(math.ceil(np.hypot(*(b - a)) / step)), 1)
    return a + (b - a) * np.linspace(0.0, 1.0, n + 1)[:, None]


def _arc(centre, radius: float, a0: float, a1: float, step: float = 1.0) -> np.ndarray:
    n = max(int(math.ceil(abs(a1 - a0) * radius / step)), 1)
    ang = np.linspace(a0, a1, n + 1)
    return np.asarray(centre) + radius * np.stack([np.cos(ang), np.sin(ang)], -1)


def _rounded_rect(x0, y0, x1, y1, r) -> _Path:
    """Counter-clockwise closed loop with quarter-circle corners of radius ``r``; every piece is
    sampled at 1 m so that interpolated tangents stay exact away from the vertices."""
    h = math.pi / 2
    pieces = [_densify((x0 + r, y0), (x1 - r, y0)), _arc((x1 - r, y0 + r), r, -h, 0),
              _densify((x1, y0 + r), (x1, y1 - r)), _arc((x1 - r, y1 - r), r, 0, h),
              _densify((x1 - r, y1), (x0 + r, y1)), _arc((x0 + r, y1 - r), r, h, 2 * h),
              _densify((x0, y1 - r), (x0, y0 + r)), _arc((x0 + r, y0 + r), r, 2 * h, 3 * h)]
    return _Path(np.concatenate([p[:-1] for p in pieces]), closed=True)


def _wrap_angle(a):
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


# ------------------------------------------------------------------------------------------------
# Road network: geometry constants (metres) and the graph
# ------------------------------------------------------------------------------------------------

_LANE_W = 3.5                 # 2 lanes per direction
_HALF_W = 2 * _LANE_W         # centreline to road edge (curb)
_CURB_W = 0.4                 # curb band beyond the road edge (camera class "boundary")
_SIDEWALK_W = 3.0
_FILLET_R = 7.0               # curb return radius at intersections
_TRIM = _HALF_W + _FILLET_R   # an edge starts this far from its node: the intersection box half size
_CW = (0.5, 4.5)              # crosswalk span from an edge end
_CW_HALF = 2.0                # mid-block crosswalk half width
_STOP = 5.5                   # stop line near side from an edge end
_STOP_W = 0.4
_STOP_GAP = 1.5               # mid-block: stop line to crosswalk
_END_CLEAR = 6.5              # no divider paint this close to an edge end
_MID_CLEAR = _CW_HALF + _STOP_GAP + _STOP_W + 0.6
_ARROW_S = 11.0               # arrow tip distance from the edge end
_DASH, _GAP, _PAINT_W = 3.0, 6.0, 0.15
_YELLOW = (0.05, 0.17)        # |d| span of each line of the double yellow road divider
_MARGIN = 60.0                # terrain/buildings around the road grid
_FAR_GROUND = 300.0           # horizontal range beyond which the ground is drawn as sky


@dataclass
class _Edge:
    """A road stretch between two intersections, centreline from start node to end node."""
    path: _Path
    start_node: int
    end_node: int
    crossings: tuple = ()     # s of mid-block crosswalk centres

    @property
    def length(self) -> float:
        return self.path.length


@dataclass
class _Node:
    xy: np.ndarray
    arms: list                # (edge index, the edge starts here)


@dataclass
class _Network:
    roads: list
    nodes: list
    edges: list
    extent: tuple             # (width, height) of the world, origin at (0, 0)
    side: int                 # +1: drive on the left (forward lanes at d > 0), -1: on the right


def _build_network(rng: np.random.Generator, drive_left: bool) -> _Network:
    """A rounded-rectangle ring road with straight cross streets: 4-way intersections inside,
    T-junctions on the ring, curves at the ring corners."""
    nx, ny = [(3, 2), (2, 3), (3, 3)][int(rng.integers(3))]
    bx, by = rng.uniform(74.0, 90.0, size=2)
    rc = float(rng.uniform(22.0, 30.0))
    x0 = y0 = _MARGIN
    x1, y1 = x0 + nx * bx, y0 + ny * by
    xs = [x0 + i * bx for i in range(1, nx)]
    ys = [y0 + j * by for j in range(1, ny)]
    roads = ([_rounded_rect(x0, y0, x1, y1, rc)] + [_Path(_densify((x, y0), (x, y1))) for x in xs]
             + [_Path(_densify((x0, y), (x1, y))) for y in ys])
    node_xy = ([(x, y) for x in xs for y in ys] + [(x, yy) for x in xs for yy in (y0, y1)]
               + [(xx, y) for y in ys for xx in (x0, x1)])
    nodes = [_Node(np.array(p, np.float64), []) for p in node_xy]
    edges: list[_Edge] = []
    for road in roads:
        on = []
        for k, node in enumerate(nodes):
            s = road.project(node.xy)
            if np.hypot(*(road.point(s) - node.xy)) < 0.5:
                on.append((s, k))
        on.sort()
        pairs = list(zip(on[:-1], on[1:]))
        if road.closed:
            pairs.append((on[-1], (on[0][0] + road.length, on[0][1])))
        for (sa, ka), (sb, kb) in pairs:
            s = np.append(np.arange(sa + _TRIM, sb - _TRIM, 1.0), sb - _TRIM)
            edges.append(_Edge(_Path(road.point(s)), ka, kb))
            nodes[ka].arms.append((len(edges) - 1, True))
            nodes[kb].arms.append((len(edges) - 1, False))
    for e in edges:
        e.crossings = _midblock_crossings(e)
    return _Network(roads, nodes, edges, (x1 + _MARGIN, y1 + _MARGIN), 1 if drive_left else -1)


def _midblock_crossings(edge: _Edge) -> tuple:
    """Mid-block zebra crossings on long edges, placed on straight parts only (a zebra across a
    bend would be unusual), so that most keyframes see a ped_crossing within 30 m."""
    L = edge.length
    wanted = [] if L < 55 else [L / 2] if L < 110 else [L / 3, 2 * L / 3]
    chosen = []
    for target in wanted:   # >= 24 m from the ends keeps clear of the approach arrows
        for s in sorted(np.arange(24.0, L - 24.0, 2.0), key=lambda v: abs(v - target)):
            turn = abs(_wrap_angle(edge.path.heading(s + 8.0) - edge.path.heading(s - 8.0)))
            if turn < math.radians(2.0) and all(abs(s - c) > 30.0 for c in chosen):
                chosen.append(float(s))
                break
    return tuple(sorted(chosen))


def _lane_d(side: int, lane: int) -> float:
    """Lateral offset of the centre of lane ``lane`` (0 = next to the road divider) of the lanes
    travelling along +s."""
    return side * (lane + 0.5) * _LANE_W


def _half_span(side: int, forward: bool) -> tuple:
    """(d_min, d_max) of the carriageway half used by traffic travelling along +s (forward) or -s."""
    sgn = side if forward else -side
    return (0.0, _HALF_W) if sgn > 0 else (-_HALF_W, 0.0)


# ------------------------------------------------------------------------------------------------
# Road features in path coordinates; shared by the map expansion and the painted ground raster
# ------------------------------------------------------------------------------------------------

def _strip(path: _Path, s0: float, s1: float, d0: float, d1: float, step: float = 1.0) -> np.ndarray:
    """Closed outline (n, 2) of the region s in [s0, s1], d in [d0, d1] of a path, in world xy."""
    s = np.linspace(s0, s1, max(int(math.ceil(abs(s1 - s0) / step)), 1) + 1)
    return np.vstack([path.to_world(s, d0), path.to_world(s[::-1], d1)])


def _crosswalk_spans(edge: _Edge) -> list:
    L = edge.length
    return ([(_CW[0], _CW[1]), (L - _CW[1], L - _CW[0])]
            + [(c - _CW_HALF, c + _CW_HALF) for c in edge.crossings])


def _stop_lines(edge: _Edge, side: int) -> list:
    """[(s0, s1, forward, crosswalk index)]: stop lines across the lanes heading into each crosswalk."""
    L = edge.length
    out = [(_STOP, _STOP + _STOP_W, False, 0), (L - _STOP - _STOP_W, L - _STOP, True, 1)]
    for i, c in enumerate(edge.crossings):
        near = c - _CW_HALF - _STOP_GAP
        far = c + _CW_HALF + _STOP_GAP
        out += [(near - _STOP_W, near, True, 2 + i), (far, far + _STOP_W, False, 2 + i)]
    return out


def _paint_intervals(edge: _Edge) -> list:
    """s intervals carrying divider paint: the edge minus its ends and the mid-block crossings."""
    L = edge.length
    cuts = ([(-1.0, _END_CLEAR)] + [(c - _MID_CLEAR, c + _MID_CLEAR) for c in edge.crossings]
            + [(L - _END_CLEAR, L + 1.0)])
    return [(a[1], b[0]) for a, b in zip(cuts[:-1], cuts[1:]) if b[0] - a[1] > 1.0]


_ARROW_OUTLINE = np.array([(0.0, -0.1), (3.2, -0.1), (3.2, -0.45), (5.0, 0.0),
                           (3.2, 0.45), (3.2, 0.1), (0.0, 0.1)])  # (along, across), tail at 0


def _arrow_polygons(edge: _Edge, side: int) -> list:
    """Straight-ahead arrows on every lane approaching the edge's two intersections (world xy)."""
    L = edge.length
    if L < 2 * (_ARROW_S + 6.0):
        return []
    out = []
    for forward in (True, False):
        for lane in (0, 1):
            d_c = _lane_d(side, lane) if forward else -_lane_d(side, lane)
            sgn = 1.0 if forward else -1.0
            tail = (L - _ARROW_S - 5.0) if forward else (_ARROW_S + 5.0)
            s = tail + sgn * _ARROW_OUTLINE[:, 0]
            d = d_c + sgn * _ARROW_OUTLINE[:, 1]   # mirrored with the direction: stays symmetric
            out.append(edge.path.to_world(s, d))
    return out


# ------------------------------------------------------------------------------------------------
# Ground materials and the ground raster
# ------------------------------------------------------------------------------------------------

(_M_TERRAIN, _M_SIDEWALK, _M_CURB, _M_ASPHALT, _M_CW_GAP, _M_LANE_WHITE, _M_LANE_YELLOW,
 _M_CROSSWALK, _M_STOP, _M_ARROW) = range(10)
#: per material: camera semantic class, lidarseg category, RGB, texture strength, LiDAR intensity
_MATERIALS = (
    ("terrain", "flat.terrain", (92, 116, 60), 0.22, 12.0),
    ("sidewalk", "flat.sidewalk", (160, 154, 146), 0.07, 20.0),
    ("boundary", "flat.sidewalk", (204, 202, 194), 0.05, 30.0),
    ("road_surface", "flat.driveable_surface", (82, 83, 87), 0.09, 8.0),
    ("crosswalk_gap", "flat.driveable_surface", (82, 83, 87), 0.09, 8.0),
    ("lane", "flat.driveable_surface", (226, 226, 220), 0.05, 90.0),
    ("lane", "flat.driveable_surface", (224, 180, 46), 0.05, 80.0),
    ("crosswalk", "flat.driveable_surface", (232, 232, 226), 0.05, 95.0),
    ("stop_line", "flat.driveable_surface", (230, 230, 224), 0.05, 90.0),
    ("arrow", "flat.driveable_surface", (228, 228, 222), 0.05, 90.0),
)
_MAT_SEM = np.array([_SEM[m[0]] for m in _MATERIALS], np.uint8)
_MAT_LSEG = np.array([_LSEG[m[1]] for m in _MATERIALS], np.uint8)
_MAT_RGB = np.array([m[2] for m in _MATERIALS], np.float32)
_MAT_TEX = np.array([m[3] for m in _MATERIALS], np.float32)
_MAT_INTENSITY = np.array([m[4] for m in _MATERIALS], np.float32)


class _Ground:
    """Material raster of the flat world: cell (i, j) covers x in [j, j+1) * res, y in [i, i+1) * res."""

    def __init__(self, extent, res: float):
        self.res = float(res)
        self.mat = np.full((int(math.ceil(extent[1] / res)), int(math.ceil(extent[0] / res))), _M_TERRAIN, np.uint8)

    def fill(self, xy, value: int, holes=()):
        # cv2 puts integer coordinates at cell centres, hence the half-cell shift; shift=4 keeps
        # 1/16-cell precision for thin paint.
        def px(a):
            return np.round((np.asarray(a, np.float64) / self.res - 0.5) * 16.0).astype(np.int32)
        cv2.fillPoly(self.mat, [px(xy)] + [px(h) for h in holes], int(value), lineType=cv2.LINE_8, shift=4)

    def fill_geom(self, geom, value: int):
        for poly in _polygons(geom):
            self.fill(np.asarray(poly.exterior.coords), value, [np.asarray(h.coords) for h in poly.interiors])

    def lookup(self, x, y) -> np.ndarray:
        """Material ids at world points (any shape, finite). The raster border is terrain, so
        clamping gives terrain beyond the world."""
        h, w = self.mat.shape
        j = np.clip(np.floor(x / self.res), 0, w - 1).astype(np.intp)
        i = np.clip(np.floor(y / self.res), 0, h - 1).astype(np.intp)
        return self.mat[i, j]


def _polygons(geom) -> list:
    if geom is None or geom.is_empty:
        return []
    if isinstance(geom, Polygon):
        return [geom]
    return [g for g in getattr(geom, "geoms", []) if isinstance(g, Polygon) and not g.is_empty]


def _annulus(path: _Path, half_width: float) -> Polygon:
    s = np.append(np.arange(0.0, path.length, 1.0), path.length)
    a, b = Polygon(path.to_world(s, half_width)), Polygon(path.to_world(s, -half_width))
    return a.symmetric_difference(b)


@dataclass
class _RoadGeometry:
    edge_polys: list          # road_segment polygon per edge
    node_polys: list          # intersection road_segment polygon per node
    drivable: object          # shapely (Multi)Polygon, union of all road segments
    sidewalk: object
    curb: object              # curb band (outside the drivable area)


def _road_geometry(net: _Network) -> _RoadGeometry:
    raw = unary_union([_annulus(r, _HALF_W) if r.closed else Polygon(_strip(r, 0, r.length, -_HALF_W, _HALF_W))
                       for r in net.roads])
    # Morphological closing rounds exactly the concave road corners: the curb returns at junctions.
    closed = raw.buffer(_FILLET_R, quad_segs=8).buffer(-_FILLET_R, quad_segs=8)
    node_polys = [_largest(closed.intersection(shapely_box(*(n.xy - _TRIM), *(n.xy + _TRIM)))) for n in net.nodes]
    edge_polys = [Polygon(_strip(e.path, 0.0, e.length, -_HALF_W, _HALF_W)) for e in net.edges]
    drivable = unary_union(edge_polys + node_polys).buffer(0)
    outer_curb = drivable.buffer(_CURB_W, quad_segs=8)
    sidewalk = drivable.buffer(_CURB_W + _SIDEWALK_W, quad_segs=8).difference(outer_curb)
    return _RoadGeometry(edge_polys, node_polys, drivable, sidewalk, outer_curb.difference(drivable))


def _largest(geom) -> Polygon:
    polys = _polygons(geom)
    if not polys:
        raise RuntimeError("empty intersection polygon: road network parameters are inconsistent")
    return max(polys, key=lambda p: p.area)


def _paint_items(net: _Network) -> list:
    """[(material, outline xy)] of all paint, in drawing order (later items cover earlier ones)."""
    items = []
    side = net.side
    for e in net.edges:
        for s0, s1 in _crosswalk_spans(e):
            items.append((_M_CW_GAP, _strip(e.path, s0, s1, -_HALF_W, _HALF_W, step=0.5)))
            for d0 in np.arange(-_HALF_W + 0.25, _HALF_W - 0.3, 1.0):   # 0.5 m stripes, 0.5 m gaps
                items.append((_M_CROSSWALK, _strip(e.path, s0, s1, d0, d0 + 0.5, step=0.5)))
        for s0, s1, forward, _ in _stop_lines(e, side):
            items.append((_M_STOP, _strip(e.path, s0, s1, *_half_span(side, forward), step=0.5)))
        items += [(_M_ARROW, xy) for xy in _arrow_polygons(e, side)]
        for a, b in _paint_intervals(e):
            for sgn in (1.0, -1.0):
                items.append((_M_LANE_YELLOW, _strip(e.path, a, b, sgn * _YELLOW[0], sgn * _YELLOW[1])))
                for s0 in np.arange(a, b - 0.5, _DASH + _GAP):
                    d = sgn * _LANE_W
                    items.append((_M_LANE_WHITE, _strip(e.path, s0, min(s0 + _DASH, b), d - _PAINT_W / 2,
                                                        d + _PAINT_W / 2, step=0.5)))
    return items


def _paint_ground(net: _Network, geo: _RoadGeometry, res: float) -> _Ground:
    ground = _Ground(net.extent, res)
    ground.fill_geom(geo.sidewalk, _M_SIDEWALK)
    ground.fill_geom(geo.curb, _M_CURB)
    ground.fill_geom(geo.drivable, _M_ASPHALT)
    for material, xy in _paint_items(net):
        ground.fill(xy, material)
    return ground


def _basemap_png(net: _Network, geo: _RoadGeometry) -> bytes:
    """nuScenes 'semantic_prior' basemap: 0.1 m/px, row 0 at the world's top (max y), 255 on
    road and sidewalk -- the layout nuscenes-devkit's MapMask expects."""
    prior = _Ground(net.extent, 0.1)
    prior.mat[:] = 0
    prior.fill_geom(unary_union([geo.drivable, geo.curb, geo.sidewalk]), 255)
    return cv2.imencode(".png", np.ascontiguousarray(prior.mat[::-1]))[1].tobytes()


# ------------------------------------------------------------------------------------------------
# Map expansion (nuScenes map expansion format v1.3)
# ------------------------------------------------------------------------------------------------

_POLYGON_LAYERS = ("drivable_area", "road_segment", "road_block", "lane", "ped_crossing", "walkway",
                   "stop_line", "carpark_area")
_LINE_LAYERS = ("road_divider", "lane_divider", "traffic_light")


class _MapBuilder:
    """Accumulates node/line/polygon tables and the layer records that reference them."""

    def __init__(self, seed: int, location: str, extent):
        self._seed, self._location, self._count = seed, location, 0
        self.json = {"version": "1.3", "canvas_edge": [float(extent[0]), float(extent[1])],
                     "node": [], "line": [], "polygon": [], "lane_connector": [],
                     "arcline_path_3": {}, "connectivity": {},
                     **{layer: [] for layer in _POLYGON_LAYERS + _LINE_LAYERS}}

    def _new(self, kind: str) -> str:
        self._count += 1
        return _token(self._seed, "map", self._location, kind, self._count)

    def nodes(self, xy) -> list:
        toks = []
        for x, y in np.asarray(xy, np.float64):
            toks.append(self._new("node"))
            self.json["node"].append({"token": toks[-1], "x": round(float(x), 3), "y": round(float(y), 3)})
        return toks

    def line(self, xy) -> tuple:
        """Register a polyline (simplified to 1 cm); returns (line token, its node tokens)."""
        xy = np.asarray(LineString(xy).simplify(0.01).coords)
        tok, nodes = self._new("line"), self.nodes(xy)
        self.json["line"].append({"token": tok, "node_tokens": nodes})
        return tok, nodes

    def polygon(self, geom) -> str:
        poly = geom if isinstance(geom, Polygon) else Polygon(geom)
        poly = poly.simplify(0.01, preserve_topology=True)
        tok = self._new("polygon")
        self.json["polygon"].append({
            "token": tok,
            "exterior_node_tokens": self.nodes(np.asarray(poly.exterior.coords)[:-1]),
            "holes": [{"node_tokens": self.nodes(np.asarray(h.coords)[:-1])} for h in poly.interiors]})
        return tok

    def add(self, layer: str, **fields) -> str:
        tok = self._new(layer)
        self.json[layer].append({"token": tok, **fields})
        return tok


def _map_expansion(net: _Network, geo: _RoadGeometry, seed: int, location: str) -> dict:
    mb = _MapBuilder(seed, location, net.extent)
    side = net.side
    da = mb.add("drivable_area", polygon_tokens=[mb.polygon(p) for p in _polygons(geo.drivable)])
    for poly in geo.node_polys:
        mb.add("road_segment", polygon_token=mb.polygon(poly), is_intersection=True, drivable_area_token=da)
    for poly in _polygons(geo.sidewalk):
        mb.add("walkway", polygon_token=mb.polygon(poly))
    for e, poly in zip(net.edges, geo.edge_polys):
        L = e.length
        seg = mb.add("road_segment", polygon_token=mb.polygon(poly), is_intersection=False, drivable_area_token=da)

        def across(s, d0, d1):
            return mb.line(e.path.to_world(np.array([s, s]), np.array([d0, d1])))[0]

        blocks = {}
        for forward in (True, False):
            d0, d1 = _half_span(side, forward)
            entry, exit_ = (0.0, L) if forward else (L, 0.0)
            blocks[forward] = mb.add("road_block", polygon_token=mb.polygon(_strip(e.path, 0, L, d0, d1)),
                                     from_edge_line_token=across(entry, d0, d1),
                                     to_edge_line_token=across(exit_, d0, d1), road_segment_token=seg)
        # Divider lines (one record per painted interval) and the node lists lanes refer to.
        boundary_nodes = {}
        for d in (-_HALF_W, _HALF_W):
            s = np.append(np.arange(0.0, L, 2.0), L)
            boundary_nodes[d] = [(n, "NIL") for n in mb.nodes(e.path.to_world(s, d))]
        boundary_nodes[0.0], boundary_nodes[-_LANE_W], boundary_nodes[_LANE_W] = [], [], []
        for a, b in _paint_intervals(e):
            s = np.append(np.arange(a, b, 1.0), b)
            tok, nodes = mb.line(e.path.to_world(s, 0.0))
            mb.add("road_divider", line_token=tok, road_segment_token=seg)
            boundary_nodes[0.0] += [(n, "SINGLE_SOLID_YELLOW") for n in nodes]
            for d in (-_LANE_W, _LANE_W):
                tok, nodes = mb.line(e.path.to_world(s, d))
                segs = [{"node_token": n, "segment_type": "DOUBLE_DASHED_WHITE"} for n in nodes]
                mb.add("lane_divider", line_token=tok, lane_divider_segments=segs)
                boundary_nodes[d] += [(n, "DOUBLE_DASHED_WHITE") for n in nodes]
        def segments(nodes):
            return [{"node_token": n, "segment_type": kind} for n, kind in nodes]

        for forward in (True, False):
            for lane in (0, 1):
                sgn = (side if forward else -side)
                inner, outer = sgn * lane * _LANE_W, sgn * (lane + 1) * _LANE_W
                # Left in the travel direction is +d when travelling along +s.
                lo, hi = min(inner, outer), max(inner, outer)
                left, right = (hi, lo) if forward else (lo, hi)
                entry, exit_ = (0.0, L) if forward else (L, 0.0)
                mb.add("lane", polygon_token=mb.polygon(_strip(e.path, 0, L, lo, hi)),
                       lane_type="CAR", from_edge_line_token=across(entry, inner, outer),
                       to_edge_line_token=across(exit_, inner, outer),
                       left_lane_divider_segments=segments(boundary_nodes[left]),
                       right_lane_divider_segments=segments(boundary_nodes[right]))
        crossings = [mb.add("ped_crossing", polygon_token=mb.polygon(_strip(e.path, s0, s1, -_HALF_W, _HALF_W)),
                            road_segment_token=seg) for s0, s1 in _crosswalk_spans(e)]
        for s0, s1, forward, k in _stop_lines(e, side):
            mb.add("stop_line", polygon_token=mb.polygon(_strip(e.path, s0, s1, *_half_span(side, forward))),
                   stop_line_type="PED_CROSSING", ped_crossing_tokens=[crossings[k]], traffic_light_tokens=[],
                   road_block_token=blocks[forward])
    return mb.json


# ------------------------------------------------------------------------------------------------
# Boxes: static scenery and traffic participants share one struct-of-arrays representation
# ------------------------------------------------------------------------------------------------

(_S_VEHICLE, _S_PEDESTRIAN, _S_CYCLE, _S_CONE, _S_BARRIER, _S_BUILDING, _S_TRUNK, _S_CANOPY, _S_EGO) = range(9)
#: LiDAR return intensity per box style (retro-reflective cones and barriers are bright)
_STYLE_INTENSITY = np.array([40, 20, 30, 80, 60, 25, 15, 15, 10], np.float32)
_GREENS = ((58, 96, 42), (72, 110, 50), (50, 84, 46))


@dataclass
class _Boxes:
    """N yaw-only boxes: centre (cx, cy), yaw (rad), half length/width (m), z0..z1 (m), appearance
    and labels; ``ref`` is the actor index for traffic participants, -1 for scenery."""
    cx: np.ndarray
    cy: np.ndarray
    yaw: np.ndarray
    hl: np.ndarray
    hw: np.ndarray
    z0: np.ndarray
    z1: np.ndarray
    style: np.ndarray
    sem: np.ndarray
    lseg: np.ndarray
    rgb: np.ndarray
    ref: np.ndarray

    @staticmethod
    def from_rows(rows: list) -> "_Boxes":
        """rows: (cx, cy, yaw, hl, hw, z0, z1, style, sem, lseg, (r, g, b), ref)."""
        cols = list(zip(*rows)) if rows else [()] * 12
        f = [np.asarray(c, np.float64) for c in cols[:7]]
        return _Boxes(*f, np.asarray(cols[7], np.int16), np.asarray(cols[8], np.uint8),
                      np.asarray(cols[9], np.uint8), np.asarray(cols[10], np.float32).reshape(-1, 3),
                      np.asarray(cols[11], np.int32))

    def __len__(self):
        return len(self.cx)

    def take(self, idx) -> "_Boxes":
        return _Boxes(*[getattr(self, f.name)[idx] for f in dataclasses.fields(self)])

    @staticmethod
    def concat(parts: list) -> "_Boxes":
        return _Boxes(*[np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(_Boxes)])

    def corners(self) -> np.ndarray:
        """(N, 8, 3) world corners; bit 0 of the corner index picks +x, bit 1 +y, bit 2 top."""
        bits = np.array([[(k >> b) & 1 for b in range(3)] for k in range(8)], np.float64) * 2 - 1
        lx = bits[None, :, 0] * self.hl[:, None]
        ly = bits[None, :, 1] * self.hw[:, None]
        c, s = np.cos(self.yaw)[:, None], np.sin(self.yaw)[:, None]
        z = np.where(bits[None, :, 2] > 0, self.z1[:, None], self.z0[:, None])
        return np.stack([self.cx[:, None] + c * lx - s * ly, self.cy[:, None] + s * lx + c * ly, z], -1)

    def radius(self) -> np.ndarray:
        return np.hypot(self.hl, self.hw)


_BOX_EDGES = np.array([(a, a | (1 << b)) for a in range(8) for b in range(3) if not a & (1 << b)])


def _static_scenery(net: _Network, geo: _RoadGeometry, rng: np.random.Generator) -> _Boxes:
    """Buildings and trees along both sides of every edge, never on the road or sidewalk."""
    keep_out = unary_union([geo.drivable, geo.curb, geo.sidewalk]).buffer(0.8)
    placed: list[Polygon] = []
    rows = []

    def free(poly: Polygon) -> bool:
        if poly.intersects(keep_out):
            return False
        return not (placed and shapely.intersects(np.array(placed, dtype=object), poly).any())

    def footprint(e, s, d, yaw_len, yaw_wid):
        c = e.path.to_world(s, d)
        h = float(e.path.heading(s))
        cs, sn = math.cos(h), math.sin(h)
        pts = [(c[0] + cs * a - sn * b, c[1] + sn * a + cs * b) for a, b in
               ((-yaw_len, -yaw_wid), (yaw_len, -yaw_wid), (yaw_len, yaw_wid), (-yaw_len, yaw_wid))]
        return Polygon(pts), c, h

    for e in net.edges:
        for sgn in (1.0, -1.0):
            s = float(rng.uniform(0.0, 8.0))
            while s < e.length:
                length, depth = rng.uniform(10.0, 28.0), rng.uniform(8.0, 18.0)
                d = sgn * (_HALF_W + _CURB_W + _SIDEWALK_W + rng.uniform(3.5, 6.5) + depth / 2)
                poly, c, h = footprint(e, s + length / 2, d, length / 2, depth / 2)
                if free(poly):
                    placed.append(poly)
                    tone = rng.uniform(0.75, 1.05)
                    base = np.array([(178, 160, 140), (150, 150, 155), (196, 186, 170), (120, 110, 100),
                                     (170, 120, 95)][int(rng.integers(5))]) * tone
                    rows.append((c[0], c[1], h, length / 2, depth / 2, 0.0, rng.uniform(6.0, 28.0),
                                 _S_BUILDING, _SEM["building"], _LSEG["static.manmade"], tuple(base), -1))
                s += length + rng.uniform(2.0, 14.0)
            s = float(rng.uniform(2.0, 10.0))
            while s < e.length:
                r = rng.uniform(1.3, 2.4)
                d = sgn * (_HALF_W + _CURB_W + _SIDEWALK_W + 0.8 + r)
                poly, c, h = footprint(e, s, d, r, r)
                if free(poly):
                    placed.append(poly)
                    trunk_h = rng.uniform(1.6, 2.6)
                    green = np.array(_GREENS[int(rng.integers(len(_GREENS)))]) * rng.uniform(0.8, 1.1)
                    rows.append((c[0], c[1], h, 0.18, 0.18, 0.0, trunk_h + 0.3, _S_TRUNK, _SEM["vegetation"],
                                 _LSEG["static.vegetation"], (92, 68, 45), -1))
                    rows.append((c[0], c[1], h, r, r, trunk_h, trunk_h + rng.uniform(2.5, 5.0), _S_CANOPY,
                                 _SEM["vegetation"], _LSEG["static.vegetation"], tuple(green), -1))
                s += rng.uniform(7.0, 18.0)
    return _Boxes.from_rows(rows)


# ------------------------------------------------------------------------------------------------
# Traffic participants and routes
# ------------------------------------------------------------------------------------------------

#: detection class -> ((category, weight), ...), mean size (w, l, h) in metres, style, colours
_OBJECTS = {
    "car": ((("vehicle.car", 1.0),), (1.9, 4.5, 1.6), _S_VEHICLE,
            ((205, 205, 210), (238, 238, 236), (32, 33, 36), (150, 24, 24), (34, 62, 140), (92, 94, 98),
             (180, 152, 96))),
    "truck": ((("vehicle.truck", 1.0),), (2.5, 7.0, 3.0), _S_VEHICLE, ((232, 232, 228), (196, 64, 40), (62, 92, 64))),
    "bus": ((("vehicle.bus.rigid", 0.8), ("vehicle.bus.bendy", 0.2)), (2.9, 11.5, 3.4), _S_VEHICLE,
            ((214, 60, 44), (42, 112, 190), (236, 236, 232))),
    "trailer": ((("vehicle.trailer", 1.0),), (2.6, 11.0, 3.6), _S_VEHICLE, ((196, 196, 196), (120, 130, 150))),
    "construction_vehicle": ((("vehicle.construction", 1.0),), (2.5, 6.5, 3.2), _S_VEHICLE, ((238, 178, 24),)),
    "pedestrian": ((("human.pedestrian.adult", 0.85), ("human.pedestrian.child", 0.1),
                    ("human.pedestrian.police_officer", 0.05)), (0.65, 0.7, 1.75), _S_PEDESTRIAN,
                   ((180, 40, 40), (40, 90, 160), (220, 220, 210), (60, 140, 80), (200, 170, 60), (120, 60, 140))),
    "motorcycle": ((("vehicle.motorcycle", 1.0),), (0.8, 2.1, 1.5), _S_CYCLE,
                   ((40, 40, 44), (180, 30, 30), (30, 60, 150))),
    "bicycle": ((("vehicle.bicycle", 1.0),), (0.6, 1.75, 1.3), _S_CYCLE, ((30, 80, 160), (40, 40, 44), (200, 200, 40))),
    "traffic_cone": ((("movable_object.trafficcone", 1.0),), (0.4, 0.4, 0.9), _S_CONE, ((240, 100, 20),)),
    "barrier": ((("movable_object.barrier", 1.0),), (0.5, 2.2, 1.0), _S_BARRIER, ((226, 226, 226),)),
}


@dataclass
class _Actor:
    """A traffic participant moving along ``path`` at ``speed`` m/s (signed, 0 = static), laterally
    offset by ``d``; its box heads along the path (plus ``yaw_offset``)."""
    cls: str
    category: str
    size: tuple               # (w, l, h), nuScenes order
    rgb: tuple
    attribute: str | None
    path: _Path
    s0: float
    speed: float = 0.0
    d: float = 0.0
    yaw_offset: float = 0.0

    def pose(self, t: float) -> tuple:
        s = self.s0 + self.speed * t
        x, y = self.path.to_world(s, self.d)
        yaw = float(self.path.heading(s)) + self.yaw_offset + (math.pi if self.speed < 0 else 0.0)
        return float(x), float(y), float(_wrap_angle(yaw))


def _make_actor(rng, cls: str, path: _Path, s0: float, speed: float = 0.0, d: float = 0.0,
                yaw_offset: float = 0.0, category: str | None = None) -> _Actor:
    cats, size, _, colours = _OBJECTS[cls]
    if category is None:
        names, weights = zip(*cats)
        category = names[int(rng.choice(len(names), p=np.array(weights) / sum(weights)))]
    scale = rng.uniform(0.9, 1.1, size=3)
    if category == "human.pedestrian.child":
        scale *= 0.7
    if category == "vehicle.bus.bendy":
        scale[1] *= 1.6
    moving = speed != 0.0
    attribute = {"pedestrian": "pedestrian.moving" if moving else "pedestrian.standing",
                 "motorcycle": "cycle.with_rider" if moving else "cycle.without_rider",
                 "bicycle": "cycle.with_rider" if moving else "cycle.without_rider",
                 "traffic_cone": None, "barrier": None}.get(cls, "vehicle.moving" if moving else "vehicle.parked")
    rgb = colours[int(rng.integers(len(colours)))]
    return _Actor(cls, category, tuple(float(v) for v in np.asarray(size) * scale), rgb, attribute, path,
                  float(s0), float(speed), float(d), float(yaw_offset))


def _fillet(p, h_in: float, q, h_out: float, radius: float) -> np.ndarray:
    """Points joining the end ``p`` (heading ``h_in``) of one lane to the start ``q`` (heading
    ``h_out``) of the next through a circular arc, like a vehicle turning at an intersection."""
    turn = float(_wrap_angle(h_out - h_in))
    if abs(turn) < 0.2:
        return np.empty((0, 2))
    u = np.array([math.cos(h_in), math.sin(h_in)])
    v = np.array([math.cos(h_out), math.sin(h_out)])
    # corner = p + a u = q - b v: a is the straight run left before the corner, b the one after it
    a, b = np.linalg.solve(np.stack([u, v], 1), np.asarray(q) - np.asarray(p))
    corner = np.asarray(p) + a * u
    r = min(radius, 0.95 * min(a, b) / math.tan(abs(turn) / 2)) if a > 0 and b > 0 else radius
    tlen = r * math.tan(abs(turn) / 2)
    start = corner - tlen * u
    normal = np.array([-u[1], u[0]]) * math.copysign(1.0, turn)
    centre = start + r * normal
    a0 = math.atan2(*(start - centre)[::-1])
    return _arc(centre, r, a0, a0 + turn)


def _travel_heading(e: _Edge, forward: bool, at_end: bool) -> float:
    """Heading (rad) of traffic on edge ``e`` travelling along +s (forward) or -s, where it enters
    (``at_end`` False) or leaves (True) the edge."""
    s = (e.length if forward else 0.0) if at_end else (0.0 if forward else e.length)
    return float(e.path.heading(s)) + (0.0 if forward else math.pi)


def _ways_on(net: _Network, edge: int, forward: bool) -> list:
    """[(|turn angle| rad, next edge, next forward)] at the intersection an edge leads into."""
    e = net.edges[edge]
    node = net.nodes[e.end_node if forward else e.start_node]
    h_exit = _travel_heading(e, forward, at_end=True)
    return [(abs(float(_wrap_angle(_travel_heading(net.edges[ei], at_start, at_end=False) - h_exit))), ei, at_start)
            for ei, at_start in node.arms if ei != edge]


def _plan_route(net: _Network, rng, edge: int, forward: bool, s_entry: float, lane: int, length: float,
                prefer_straight: bool, radius: float = 9.0) -> _Path:
    """Lane-centre path of at least ``length`` m from ``s_entry`` m into an edge (in the travel
    direction), choosing a way at every intersection; turns are circular fillets."""
    pieces, total = [], 0.0
    d = _lane_d(net.side, lane)
    while True:
        e = net.edges[edge]
        L = e.length
        s = np.append(np.arange(s_entry, L, 1.0), L)
        piece = e.path.to_world(s, d) if forward else e.path.to_world(L - s, -d)
        if pieces:
            prev = pieces[-1]
            h_in = math.atan2(*(prev[-1] - prev[-2])[::-1])
            h_out = math.atan2(*(piece[1] - piece[0])[::-1])
            pieces.append(_fillet(prev[-1], h_in, piece[0], h_out, radius))
        pieces.append(piece)
        total += L - s_entry
        if total >= length:
            break
        ways = _ways_on(net, edge, forward)
        straight = [w for w in ways if w[0] < 0.5]
        _, edge, forward = straight[0] if (prefer_straight and straight) else ways[int(rng.integers(len(ways)))]
        s_entry = 0.0
    return _Path(np.concatenate([p for p in pieces if len(p)]))


_SCENE_KINDS = ("intersection", "curve", "turn")


def _ego_route(net: _Network, kind: str, rng, distance: float) -> _Path:
    """Ego path for a scene of the given kind: passing straight through an intersection, driving
    through a ring-road curve, or turning at a T-junction. The ego keeps to lane 0 (next to the
    road divider), leaving the curb lane to parked vehicles; each start is chosen so that the
    feature lies a little before the middle of the ``distance`` m driven."""
    candidates = []
    for i, e in enumerate(net.edges):
        for forward in (True, False):
            straight_exit = any(w[0] < 0.5 for w in _ways_on(net, i, forward))
            if kind == "curve" and abs(float(_wrap_angle(e.path.heading(e.length) - e.path.heading(0.0)))) > 1.0:
                s_corner = _corner_position(e) if forward else e.length - _corner_position(e)
                candidates.append((i, forward, max(0.0, s_corner - 0.45 * distance)))
            elif (kind == "intersection" and straight_exit) or (kind == "turn" and not straight_exit):
                candidates.append((i, forward, max(0.0, e.length - 0.45 * distance)))
    if not candidates:
        raise RuntimeError(f"no start for a {kind!r} scene in this road network")
    edge, forward, s_entry = candidates[int(rng.integers(len(candidates)))]
    return _plan_route(net, rng, edge, forward, s_entry, 0, distance + 40.0, prefer_straight=kind != "turn",
                       radius=11.0)


def _corner_position(e: _Edge) -> float:
    """s where an edge has turned half of its total heading change (the apex of its curve)."""
    s = np.arange(0.0, e.length, 1.0)
    h = np.unwrap(e.path.heading(s))
    h = h if h[-1] >= h[0] else -h      # np.interp needs increasing sample points
    return float(np.interp(0.5 * (h[0] + h[-1]), h, s))


def _spawn_actors(net: _Network, ego: _Path, ego_s0: float, ego_speed: float, duration: float,
                  rng, density: float) -> list:
    """Traffic for one scene over the whole location. Order matters: when two boxes overlap at a
    keyframe the later one is hidden, so static participants come first."""
    side = net.side
    actors: list[_Actor] = []
    curb = _HALF_W + _CURB_W

    def count(mean: float) -> int:
        return int(rng.poisson(mean * density))

    def parked(cls: str, e: _Edge, s: float, sgn: float) -> _Actor:
        """A vehicle parked flush with the curb of side ``sgn``, facing that side's traffic."""
        a = _make_actor(rng, cls, e.path, s, yaw_offset=0.0 if sgn == side else math.pi)
        a.d = sgn * (_HALF_W - 0.25 - a.size[0] / 2)
        return a

    # Roadwork sites hold the rare classes (construction vehicle, workers, cones, barriers); the
    # first one is put beside the ego's drive so that every scene has a chance to annotate them.
    mid = ego.point(ego_s0 + 0.5 * ego_speed * duration)
    nearest = min(range(len(net.edges)), key=lambda i: _distance_to(net.edges[i].path, mid))
    roadwork = set()
    for site in range(int(density > 0) + count(1.5)):
        ei = nearest if site == 0 else int(rng.integers(len(net.edges)))
        e = net.edges[ei]
        sgn = float(rng.choice([-1.0, 1.0]))
        if e.length < 60:
            continue
        s_a = float(np.clip(e.path.project(mid) + rng.uniform(-20.0, 10.0), 20.0, e.length - 36.0) if site == 0
                    else rng.uniform(20.0, e.length - 36.0))
        roadwork.add((ei, sgn))
        # Cones on the lane divider close the curb lane; everything else stands inside it.
        for s in np.arange(s_a, s_a + 15.0, 2.5):
            actors.append(_make_actor(rng, "traffic_cone", e.path, s, d=sgn * _LANE_W))
        for s in (s_a - 1.5, s_a + 16.5):
            actors.append(_make_actor(rng, "barrier", e.path, s, d=sgn * (_LANE_W * 1.5), yaw_offset=math.pi / 2))
        if rng.random() < 0.7:
            actors.append(parked("construction_vehicle", e, s_a + 8.0, sgn))
        if rng.random() < 0.5:
            actors.append(parked("trailer", e, s_a + 26.0, sgn))
        actors.append(_make_actor(rng, "pedestrian", e.path, s_a + 1.2, d=sgn * (_LANE_W * 1.5),
                                  speed=float(rng.choice([0.0, 0.3])), category="human.pedestrian.construction_worker"))
    for ei, e in enumerate(net.edges):
        blocked = [(c - 10.0, c + 10.0) for c in e.crossings] + [(0.0, 20.0), (e.length - 20.0, e.length)]
        for sgn in (1.0, -1.0):
            if (ei, sgn) not in roadwork and rng.random() < 0.75 * min(density, 1.3):
                s = float(rng.uniform(20.0, 30.0))
                while s < e.length - 20.0:
                    cls = str(rng.choice(["car", "truck", "trailer", "bus"], p=[0.85, 0.07, 0.04, 0.04]))
                    a = parked(cls, e, s, sgn)
                    half = a.size[1] / 2
                    if not any(lo - half < s < hi + half for lo, hi in blocked):
                        actors.append(a)
                    s += a.size[1] + float(rng.uniform(1.5, 8.0) if rng.random() < 0.75 else rng.uniform(10.0, 30.0))
            for _ in range(count(e.length / 150.0)):
                cls = "bicycle" if rng.random() < 0.7 else "motorcycle"
                actors.append(_make_actor(rng, cls, e.path, float(rng.uniform(5, e.length - 5)),
                                          d=sgn * (curb + 1.1), yaw_offset=math.pi / 2))
            if rng.random() < 0.2 * density:
                s = float(rng.uniform(10, e.length - 20))
                for k in range(int(rng.integers(2, 4))):
                    actors.append(_make_actor(rng, "barrier", e.path, s + 2.4 * k, d=sgn * (curb + 0.35)))
            for _ in range(count(e.length / 45.0)):
                moving = rng.random() < 0.7
                speed = float(rng.uniform(0.9, 1.6) * rng.choice([-1.0, 1.0])) if moving else 0.0
                actors.append(_make_actor(rng, "pedestrian", e.path, float(rng.uniform(2, e.length - 2)), speed=speed,
                                          d=sgn * (curb + rng.uniform(0.6, _SIDEWALK_W - 0.5)),
                                          yaw_offset=0.0 if moving else float(rng.uniform(-math.pi, math.pi))))
            for _ in range(count(e.length / 250.0)):
                actors.append(_make_actor(rng, "bicycle", e.path, float(rng.uniform(2, e.length - 2)),
                                          speed=float(rng.uniform(3.0, 5.0) * rng.choice([-1.0, 1.0])),
                                          d=sgn * (curb + 1.2)))
        for s0, s1 in _crosswalk_spans(e):
            if rng.random() < 0.3 * density:
                sc = 0.5 * (s0 + s1)
                across = _Path(e.path.to_world(np.array([sc, sc]), np.array([-curb - 1.5, curb + 1.5])))
                actors.append(_make_actor(rng, "pedestrian", across, float(rng.uniform(0, across.length)),
                                          speed=float(rng.uniform(1.1, 1.5) * rng.choice([-1.0, 1.0]))))
    if density > 0:   # a vehicle ahead in the ego's lane, at the ego's speed
        lead_cls = str(rng.choice(["car", "truck", "bus"], p=[0.7, 0.2, 0.1]))
        actors.append(_make_actor(rng, lead_cls, ego, ego_s0 + float(rng.uniform(16.0, 30.0)), speed=ego_speed))
    total_length = sum(e.length for e in net.edges)
    for _ in range(count(total_length / 22.0)):
        cls = str(rng.choice(["car", "truck", "bus", "motorcycle"], p=[0.76, 0.08, 0.06, 0.10]))
        speed = float(rng.uniform(6.0, 12.0))
        ei = int(rng.integers(len(net.edges)))
        forward = bool(rng.random() < 0.5)
        route = _plan_route(net, rng, ei, forward, float(rng.uniform(0, net.edges[ei].length)), 0,
                            speed * duration + 5.0, prefer_straight=False)
        actors.append(_make_actor(rng, cls, route, 0.0, speed=speed))
    return actors


def _actor_boxes(actors: list, t: float, ego_xy, ego_yaw: float, radius: float) -> _Boxes:
    """Boxes of the actors within ``radius`` m of the ego at time ``t`` (s), dropping any that would
    overlap the ego vehicle or an earlier actor: moving traffic has no collision avoidance, and
    interpenetrating boxes would make inconsistent images."""
    poses = [a.pose(t) for a in actors]
    near = [i for i, (x, y, _) in enumerate(poses) if math.hypot(x - ego_xy[0], y - ego_xy[1]) < radius]

    def rect(x, y, yaw, half_l, half_w, dx=0.0):
        c, s = math.cos(yaw), math.sin(yaw)
        return Polygon([(x + c * (dx + a) - s * b, y + s * (dx + a) + c * b)
                        for a, b in ((-half_l, -half_w), (half_l, -half_w), (half_l, half_w), (-half_l, half_w))])

    # The ego's keep-out zone covers its lane some metres ahead and behind, so that no box is
    # rendered straddling or nearly touching a camera.
    polys = [rect(*ego_xy, ego_yaw, 9.0, 1.5, dx=1.0)]
    polys += [rect(*poses[i], actors[i].size[1] / 2, actors[i].size[0] / 2) for i in near]
    tree = shapely.STRtree(polys)
    a_idx, b_idx = tree.query(polys, predicate="intersects")
    clash = {}
    for a, b in zip(a_idx.tolist(), b_idx.tolist()):
        if a != b:
            clash.setdefault(max(a, b), []).append(min(a, b))
    kept = {0}
    for k in range(1, len(polys)):
        if not any(j in kept for j in clash.get(k, ())):
            kept.add(k)
    rows = []
    for k, i in enumerate(near, start=1):
        if k not in kept:
            continue
        a = actors[i]
        x, y, yaw = poses[i]
        rows.append((x, y, yaw, a.size[1] / 2, a.size[0] / 2, 0.0, a.size[2], _OBJECTS[a.cls][2],
                     class_index(a.cls), _LSEG[a.category], a.rgb, i))
    return _Boxes.from_rows(rows)


def _ego_box(global_T_ego: np.ndarray) -> _Boxes:
    """The ego vehicle (Renault Zoe-sized body plus a narrower cabin), hit only by the LiDAR
    (label vehicle.ego); the lower beams graze its roof as in real nuScenes sweeps."""
    x, y = global_T_ego[0, 3], global_T_ego[1, 3]
    yaw = math.atan2(global_T_ego[1, 0], global_T_ego[0, 0])
    c, s = math.cos(yaw), math.sin(yaw)
    rows = []
    for ex, hl, hw, top in ((1.3, 2.05, 0.87, 0.95), (1.0, 0.95, 0.62, 1.52)):   # (x centre, half l, half w, top)
        rows.append((x + ex * c, y + ex * s, yaw, hl, hw, 0.0, top, _S_EGO, 0, _LSEG["vehicle.ego"], (0, 0, 0), -1))
    return _Boxes.from_rows(rows)


# ------------------------------------------------------------------------------------------------
# Ray casting
# ------------------------------------------------------------------------------------------------

_SUN = np.array([0.35, 0.25, 0.9]) / np.linalg.norm([0.35, 0.25, 0.9])
_SKY_TOP = np.array([88, 138, 206], np.float32)
_SKY_HORIZON = np.array([178, 204, 232], np.float32)
_HAZE = np.array([186, 200, 216], np.float32)
_NEAR = 0.05


def _slab(ox, oy, oz, dx, dy, dz, b: _Boxes, k: int):
    """Ray/box intersection in the box frame for rays o + t d (d arrays of any shape, float32).
    Returns (t_near, hit, local hit point (3 arrays))."""
    c, s = math.cos(b.yaw[k]), math.sin(b.yaw[k])
    rx, ry = ox - b.cx[k], oy - b.cy[k]
    zc = 0.5 * (b.z0[k] + b.z1[k])
    lo = (float(c * rx + s * ry), float(-s * rx + c * ry), float(oz - zc))
    ld = (c * dx + s * dy, -s * dx + c * dy, dz)
    half = (float(b.hl[k]), float(b.hw[k]), float(0.5 * (b.z1[k] - b.z0[k])))
    t_near = t_far = None
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for o_, d_, h_ in zip(lo, ld, half):
            inv = 1.0 / d_
            ta, tb = (-h_ - o_) * inv, (h_ - o_) * inv
            lo_t, hi_t = np.minimum(ta, tb), np.maximum(ta, tb)
            t_near = lo_t if t_near is None else np.maximum(t_near, lo_t)
            t_far = hi_t if t_far is None else np.minimum(t_far, hi_t)
    hit = (t_near <= t_far) & (t_near > _NEAR)
    return t_near, hit, lo, ld, half


def _rotate(R: np.ndarray, x, y, z) -> tuple:
    """R @ (x, y, z) for float32 component arrays, written out elementwise: unlike a BLAS matmul its
    rounding cannot depend on threading, which keeps the output byte-identical."""
    return tuple((float(R[i, 0]) * x + float(R[i, 1]) * y + float(R[i, 2]) * z).astype(np.float32) for i in range(3))


def _noise_tile(rng, n: int = 256, sigma: float = 1.5) -> np.ndarray:
    """Periodic smooth noise (n, n) float32 with unit std (Fourier filtering keeps it tileable)."""
    f = np.fft.fftfreq(n)
    g = np.exp(-2 * (np.pi * sigma) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    tile = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((n, n))) * g))
    return ((tile - tile.mean()) / tile.std()).astype(np.float32)


def _box_colours(b: _Boxes, k: int, p, face) -> np.ndarray:
    """Shaded colours (3, n) float32 of hit points ``p`` (3 arrays, box-local coordinates from the
    box centre, metres) on the faces ``face`` (0: +-x, 1: +-y, 2: top/bottom) of box ``k``.

    Each style paints a few parts (windows, wheels, clothes, ...) picked by position on the box;
    ``part`` indexes a small per-box palette whose entry 0 is the box's own colour."""
    half_h = 0.5 * (b.z1[k] - b.z0[k])
    f = (p[2] + half_h) / (2 * half_h)            # height fraction 0 (bottom) .. 1 (top)
    part = np.zeros(len(f), np.int8)
    side = face != 2
    style = int(b.style[k])
    palette = [tuple(b.rgb[k])]
    if style == _S_VEHICLE:
        palette += [(46, 56, 68), (28, 28, 30)]
        part[side & (f > 0.58) & (f < 0.92)] = 1
        part[f < 0.17] = 2
    elif style == _S_PEDESTRIAN:
        palette += [(40, 42, 58), (196, 160, 130)]
        part[f < 0.47] = 1
        part[f > 0.86] = 2
    elif style == _S_CYCLE:
        palette += [(38, 38, 40)]
        part[f < 0.5] = 1
    elif style == _S_CONE:
        palette += [(236, 236, 236), (30, 30, 30)]
        part[(f > 0.5) & (f < 0.65)] = 1
        part[f < 0.08] = 2
    elif style == _S_BARRIER:
        palette += [(205, 40, 40), (120, 120, 120)]
        part[(np.floor(p[0] / 0.45) % 2 == 0)] = 1
        part[f < 0.2] = 2
    elif style == _S_BUILDING:
        palette += [(58, 72, 90), (104, 104, 108)]
        u = (np.where(face == 1, p[0], p[1]) / 3.2) % 1.0
        z = p[2] + half_h + b.z0[k]
        zf = (z / 3.3) % 1.0
        part[side & (u > 0.25) & (u < 0.75) & (zf > 0.3) & (zf < 0.8) & (z > 2.2)] = 1
        part[~side] = 2
    # Lambert shading with the face normal rotated into the world: n = sign * (box axis of the face).
    sgn = np.sign(np.choose(face, p))
    c, s = math.cos(b.yaw[k]), math.sin(b.yaw[k])
    axis_dot_sun = np.array([c * _SUN[0] + s * _SUN[1], -s * _SUN[0] + c * _SUN[1], _SUN[2]], np.float32)
    shade = (0.5 + 0.5 * np.clip(sgn * axis_dot_sun[face], 0.0, 1.0)).astype(np.float32)
    if style == _S_CANOPY:   # leafy clumps
        cell = np.floor(p[0] / 0.35) * 7.0 + np.floor(p[1] / 0.35) * 13.0 + np.floor(p[2] / 0.35) * 17.0
        shade *= (0.75 + 0.25 * (np.sin(cell) + 1.0)).astype(np.float32)
    return np.asarray(palette, np.float32).T[:, part] * shade


@dataclass
class _Camera:
    channel: str
    ego_T_cam: np.ndarray
    K_out: np.ndarray             # intrinsics at image_wh (written to calibrated_sensor)
    K: np.ndarray                 # intrinsics at the render resolution
    render_wh: tuple
    out_wh: tuple
    rx: np.ndarray                # (H, W) float32 ray x/z in the camera frame
    ry: np.ndarray


def _make_camera(channel: str, cfg: WorldConfig) -> _Camera:
    rig = NUSCENES_RIG[channel]
    K_full = np.array(rig["camera_intrinsic"], np.float64)
    render_wh = (max(16, round(cfg.image_wh[0] * cfg.render_scale)), max(16, round(cfg.image_wh[1] * cfg.render_scale)))
    K = scale_intrinsics(K_full, RIG_IMAGE_WH, render_wh)
    u, v = np.meshgrid(np.arange(render_wh[0], dtype=np.float64), np.arange(render_wh[1], dtype=np.float64))
    Kinv = np.linalg.inv(K)
    rx = (Kinv[0, 0] * u + Kinv[0, 1] * v + Kinv[0, 2]).astype(np.float32)
    ry = (Kinv[1, 1] * v + Kinv[1, 2]).astype(np.float32)
    out_wh = tuple(cfg.image_wh)
    return _Camera(channel, transform_from(rig["translation"], rig["rotation"]),
                   scale_intrinsics(K_full, RIG_IMAGE_WH, out_wh), K, render_wh, out_wh, rx, ry)


def _screen_boxes(cam: _Camera, cam_T_global: np.ndarray, b: _Boxes) -> np.ndarray:
    """(N, 4) int pixel windows [c0, c1, r0, r1) containing each box's image, exact for the part in
    front of the near plane (box edges are clipped against it); empty windows have c0 >= c1."""
    P = b.corners() @ cam_T_global[:3, :3].T + cam_T_global[:3, 3]
    A, B = P[:, _BOX_EDGES[:, 0]], P[:, _BOX_EDGES[:, 1]]
    za, zb = A[..., 2], B[..., 2]
    crosses = (za > _NEAR) != (zb > _NEAR)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(crosses, (_NEAR - za) / (zb - za), 0.0)
    X = A + t[..., None] * (B - A)
    pts = np.concatenate([P, X], 1)
    valid = np.concatenate([P[..., 2] > _NEAR, crosses], 1)
    z = np.where(valid, pts[..., 2], 1.0)
    u = cam.K[0, 0] * pts[..., 0] / z + cam.K[0, 1] * pts[..., 1] / z + cam.K[0, 2]
    v = cam.K[1, 1] * pts[..., 1] / z + cam.K[1, 2]
    W, H = cam.render_wh
    inf = np.inf
    c0 = np.floor(np.where(valid, u, inf).min(1)) - 1
    c1 = np.ceil(np.where(valid, u, -inf).max(1)) + 2
    r0 = np.floor(np.where(valid, v, inf).min(1)) - 1
    r1 = np.ceil(np.where(valid, v, -inf).max(1)) + 2
    win = np.stack([np.clip(c0, 0, W), np.clip(c1, 0, W), np.clip(r0, 0, H), np.clip(r1, 0, H)], 1)
    win[~valid.any(1)] = 0
    return win.astype(np.int64)


@dataclass
class _Scenery:
    """Everything about one location that rendering needs (read-only, shared between threads)."""
    ground: _Ground
    fine: np.ndarray
    coarse: np.ndarray


def _render_camera(cam: _Camera, global_T_ego: np.ndarray, scenery: _Scenery, boxes: _Boxes):
    """Ray-cast one image. Returns rgb (H, W, 3) uint8, semantics (H, W) uint8, depth (H, W) float32
    metres along the optical axis (0 = sky), and per box the pixels its surface covers before and
    after occlusion (two (N,) int arrays), all at the render resolution."""
    global_T_cam = global_T_ego @ cam.ego_T_cam
    R, o = global_T_cam[:3, :3], global_T_cam[:3, 3]
    ox, oy, oz = (float(v) for v in o)
    # Rays have camera-frame z = 1, so the ray parameter equals depth along the optical axis.
    dx, dy, dz = _rotate(R, cam.rx, cam.ry, 1.0)
    with np.errstate(divide="ignore"):
        t_ground = np.where(dz < -1e-6, -oz / dz, np.inf).astype(np.float32)
    t_ground[t_ground * np.hypot(dx, dy) > _FAR_GROUND] = np.inf
    gx, gy = ox + t_ground * dx, oy + t_ground * dy
    H, W = dx.shape
    depth = t_ground.copy()
    ids = np.full((H, W), -1, np.int32)
    rgb = np.zeros((3, H, W), np.float32)
    shadow = np.zeros((H, W), bool)

    cam_T_global = invert(global_T_cam)
    win = _screen_boxes(cam, cam_T_global, boxes)
    order = np.argsort(np.hypot(boxes.cx - ox, boxes.cy - oy), kind="stable")
    hits = np.zeros(len(boxes), np.int64)
    for k in order:
        c0, c1, r0, r1 = win[k]
        if c0 >= c1 or r0 >= r1:
            continue
        sl = (slice(r0, r1), slice(c0, c1))
        t_near, hit, lo, ld, half = _slab(ox, oy, oz, dx[sl], dy[sl], dz[sl], boxes, k)
        hits[k] = int(hit.sum())
        if boxes.style[k] <= _S_BARRIER:  # contact shadow of traffic participants on the ground
            c, s = math.cos(boxes.yaw[k]), math.sin(boxes.yaw[k])
            px, py = gx[sl] - boxes.cx[k], gy[sl] - boxes.cy[k]
            under = (np.abs(c * px + s * py) < half[0] + 0.25) & (np.abs(-s * px + c * py) < half[1] + 0.25)
            shadow[sl] |= under
        closer = hit & (t_near < depth[sl])
        if not closer.any():
            continue
        t = t_near[closer]
        p = [lo[a] + t * ld[a][closer] for a in range(3)]
        ax, ay, az = (np.abs(p[a]) / half[a] for a in range(3))
        face = np.where((ax >= ay) & (ax >= az), 0, np.where(ay >= az, 1, 2))
        depth[sl][closer] = t
        ids[sl][closer] = k
        rgb[:, sl[0], sl[1]][:, closer] = _box_colours(boxes, k, p, face)

    wins = np.bincount(ids[ids >= 0], minlength=len(boxes))
    # Composition runs densely over the whole image, channel by channel: cheaper than boolean
    # gathers/scatters and than (H, W, 3) arrays, whose innermost loops are only 3 long.
    box_hit = ids >= 0
    is_ground = ~box_hit & np.isfinite(t_ground)
    is_sky = ~box_hit & ~is_ground
    gx = np.where(is_ground, gx, 0.0)
    gy = np.where(is_ground, gy, 0.0)
    mat = scenery.ground.lookup(gx, gy)
    sem = np.where(box_hit, boxes.sem[np.maximum(ids, 0)], np.where(is_ground, _MAT_SEM[mat], _SEM["sky"]))
    sem = sem.astype(np.uint8)
    fine = scenery.fine[np.floor(gy * 20.0).astype(np.int32) & 255, np.floor(gx * 20.0).astype(np.int32) & 255]
    coarse = scenery.coarse[np.floor(gy * 1.25).astype(np.int32) & 255, np.floor(gx * 1.25).astype(np.int32) & 255]
    tex = (1.0 + _MAT_TEX[mat] * fine + 0.05 * coarse) * np.where(shadow, np.float32(0.55), np.float32(1.0))
    horizon = np.clip(dz / np.sqrt(dx * dx + dy * dy + dz * dz) * 3.0, 0.0, 1.0)
    fog = np.where(is_sky, np.float32(0.0), (1.0 - np.exp(-depth / np.float32(220.0))) * np.float32(0.7))
    for c in range(3):
        solid = np.where(box_hit, rgb[c], _MAT_RGB[:, c][mat] * tex)
        sky = _SKY_HORIZON[c] + (_SKY_TOP[c] - _SKY_HORIZON[c]) * horizon
        rgb[c] = np.where(is_sky, sky, solid * (1.0 - fog) + _HAZE[c] * fog)
    depth[is_sky] = 0.0
    # A light blur stands in for lens softness and hides some aliasing of the single-sample cast.
    rgb = cv2.GaussianBlur(cv2.merge([np.clip(rgb[c], 0, 255).round().astype(np.uint8) for c in range(3)]), (3, 3), 0.6)
    return rgb, sem, depth, hits, wins


def _camera_job(cam: _Camera, global_T_ego, scenery: _Scenery, boxes: _Boxes, files: dict, jpeg_quality: int):
    """Render one image and write JPEG + semantic PNG + depth PNG; returns (hits, wins) per box."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        rgb, sem, depth, hits, wins = _render_camera(cam, global_T_ego, scenery, boxes)
    if cam.render_wh != cam.out_wh:
        rgb = cv2.resize(rgb, cam.out_wh, interpolation=cv2.INTER_LINEAR)
        sem = cv2.resize(sem, cam.out_wh, interpolation=cv2.INTER_NEAREST)
        depth = cv2.resize(depth, cam.out_wh, interpolation=cv2.INTER_NEAREST)
    depth_cm = np.clip(np.round(depth * 100.0), 0, 65535).astype(np.uint16)
    _write(files["jpg"], cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])[1])
    _write(files["sem"], cv2.imencode(".png", sem)[1])
    _write(files["depth"], cv2.imencode(".png", depth_cm)[1])
    return hits, wins


@dataclass
class _Lidar:
    ego_T_lidar: np.ndarray
    dirs: np.ndarray              # (beams, A, 3) float32 unit rays in the LIDAR frame
    max_range: float = 80.0


def _make_lidar(cfg: WorldConfig) -> _Lidar:
    rig = NUSCENES_RIG[LIDAR_NAME]
    elev = np.radians(np.linspace(-30.67, 10.67, cfg.lidar_beams))
    A = cfg.lidar_azimuth_steps
    az = -np.pi + (np.arange(A) + 0.5) * (2 * np.pi / A)
    dirs = np.stack([np.cos(elev)[:, None] * np.cos(az)[None], np.cos(elev)[:, None] * np.sin(az)[None],
                     np.broadcast_to(np.sin(elev)[:, None], (len(elev), A))], -1).astype(np.float32)
    return _Lidar(transform_from(rig["translation"], rig["rotation"]), dirs)


def _cast_lidar(lidar: _Lidar, global_T_ego, scenery: _Scenery, boxes: _Boxes, rng):
    """One sweep. Returns points (N, 5) float32 [x, y, z (LIDAR frame, m), intensity, ring],
    lidarseg labels (N,) uint8, and the number of points on each box (len(boxes),)."""
    global_T_lidar = global_T_ego @ lidar.ego_T_lidar
    R, o = global_T_lidar[:3, :3], global_T_lidar[:3, 3]
    ox, oy, oz = (float(v) for v in o)
    dx, dy, dz = _rotate(R, lidar.dirs[..., 0], lidar.dirs[..., 1], lidar.dirs[..., 2])
    with np.errstate(divide="ignore"):
        best = np.where(dz < -1e-6, -oz / dz, np.inf).astype(np.float32)
    best[best > lidar.max_range] = np.inf
    ids = np.full(best.shape, -1, np.int32)
    A = best.shape[1]
    step = 2 * np.pi / A
    # Azimuth culling: a box only meets the rays of the columns between its corners' azimuths.
    lidar_T_global = invert(global_T_lidar)
    corners = boxes.corners() @ lidar_T_global[:3, :3].T + lidar_T_global[:3, 3]
    centre = corners.mean(1)
    az_c = np.arctan2(centre[:, 1], centre[:, 0])
    rel = _wrap_angle(np.arctan2(corners[..., 1], corners[..., 0]) - az_c[:, None])
    j0 = np.floor((az_c + rel.min(1) + np.pi) / step).astype(np.int64) - 2
    j1 = np.ceil((az_c + rel.max(1) + np.pi) / step).astype(np.int64) + 2
    c, s = np.cos(boxes.yaw), np.sin(boxes.yaw)
    rx, ry = ox - boxes.cx, oy - boxes.cy
    inside = (np.abs(c * rx + s * ry) <= boxes.hl) & (np.abs(-s * rx + c * ry) <= boxes.hw)
    dist = np.hypot(boxes.cx - ox, boxes.cy - oy) - boxes.radius()
    for k in np.flatnonzero(dist < lidar.max_range):
        cols = np.arange(A) if (inside[k] or j1[k] - j0[k] >= A) else np.arange(j0[k], j1[k] + 1) % A
        t_near, hit, *_ = _slab(ox, oy, oz, dx[:, cols], dy[:, cols], dz[:, cols], boxes, k)
        sub_best = best[:, cols]
        closer = hit & (t_near < sub_best)
        if closer.any():
            best[:, cols] = np.where(closer, t_near, sub_best)
            ids[:, cols] = np.where(closer, k, ids[:, cols])
    valid = np.isfinite(best)
    t = best[valid] + rng.normal(0.0, 0.01, size=int(valid.sum())).astype(np.float32)
    hit_ids = ids[valid]
    on_box = hit_ids >= 0
    gxy = (ox + t * dx[valid], oy + t * dy[valid])
    mat = scenery.ground.lookup(*gxy)
    labels = np.where(on_box, boxes.lseg[np.maximum(hit_ids, 0)], _MAT_LSEG[mat]).astype(np.uint8)
    intensity = np.where(on_box, _STYLE_INTENSITY[boxes.style[np.maximum(hit_ids, 0)]], _MAT_INTENSITY[mat])
    intensity = np.clip(intensity + rng.normal(0.0, 2.0, size=len(t)), 0.0, 255.0)
    ring = np.broadcast_to(np.arange(best.shape[0])[:, None], best.shape)[valid]
    xyz = t[:, None] * lidar.dirs[valid]
    points = np.column_stack([xyz, intensity, ring]).astype(np.float32)
    counts = np.bincount(hit_ids[on_box], minlength=len(boxes))
    return points, labels, counts


def _lidar_job(lidar: _Lidar, global_T_ego, scenery: _Scenery, boxes: _Boxes, seed_parts: tuple, files: dict):
    """Cast one sweep and write the .pcd.bin and lidarseg .bin; returns points per box."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        points, labels, counts = _cast_lidar(lidar, global_T_ego, scenery, boxes, _rng(*seed_parts))
    _write(files["pcd"], points.tobytes())
    _write(files["lidarseg"], labels.tobytes())
    return counts


def _write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))


# ------------------------------------------------------------------------------------------------
# Locations and the generator
# ------------------------------------------------------------------------------------------------

@dataclass
class _Location:
    name: str
    net: _Network
    geo: _RoadGeometry
    scenery: _Scenery
    static: _Boxes
    map_token: str
    log_token: str
    logfile: str


def _build_location(cfg: WorldConfig, index: int) -> _Location:
    name = cfg.locations[index]
    rng = _rng(cfg.seed, "location", index)
    net = _build_network(rng, drive_left=name.startswith("singapore"))
    geo = _road_geometry(net)
    scenery = _Scenery(_paint_ground(net, geo, cfg.ground_resolution), _noise_tile(rng, sigma=1.2),
                       _noise_tile(rng, sigma=4.0))
    static = _static_scenery(net, geo, rng)
    return _Location(name, net, geo, scenery, static, _token(cfg.seed, "map", index), _token(cfg.seed, "log", index),
                     f"bevlib-{cfg.seed}-{name}")


def _json_dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1))


def _static_tables(cfg: WorldConfig, locations: list, cameras: list) -> dict:
    s = cfg.seed
    tables = {
        "category": [{"token": _token(s, "category", n), "name": n, "description": d, "index": i}
                     for i, (n, d) in enumerate(LIDARSEG_CATEGORIES)],
        "attribute": [{"token": _token(s, "attribute", n), "name": n, "description": d} for n, d in ATTRIBUTES],
        "visibility": [{"token": tok, "level": level, "description": f"visibility of whole object is between "
                        f"{level[1:].split('-')[0]} and {level.split('-')[1]}%"} for tok, level, _ in VISIBILITY],
        "sensor": [], "calibrated_sensor": [],
        "log": [{"token": loc.log_token, "logfile": loc.logfile, "vehicle": "bevlib", "date_captured": "2018-08-01",
                 "location": loc.name} for loc in locations],
        "map": [{"category": "semantic_prior", "token": loc.map_token, "filename": f"maps/{loc.map_token}.png",
                 "log_tokens": [loc.log_token]} for loc in locations],
    }
    for channel in CAMERA_NAMES + (LIDAR_NAME,):
        rig = NUSCENES_RIG[channel]
        cam = next((c for c in cameras if c.channel == channel), None)
        tables["sensor"].append({"token": _token(s, "sensor", channel), "channel": channel,
                                 "modality": "camera" if cam else "lidar"})
        tables["calibrated_sensor"].append({
            "token": _token(s, "calibrated_sensor", channel), "sensor_token": _token(s, "sensor", channel),
            "translation": list(rig["translation"]), "rotation": list(rig["rotation"]),
            "camera_intrinsic": cam.K_out.tolist() if cam else []})
    return tables


def _visibility_token(hit_px: int, visible_px: int) -> str:
    frac = visible_px / hit_px if hit_px > 0 else 0.0
    return next(tok for tok, _, upper in VISIBILITY if frac < upper)


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
    bar = tqdm(total=cfg.n_scenes * cfg.keyframes_per_scene, desc="world", disable=not progress, leave=False)
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
            frames = [_submit_keyframe(pool, out, cfg, loc, cameras, lidar, actors, si, k, ego.point(speed * 0.5 * k),
                                       float(ego.heading(speed * 0.5 * k))) for k in range(cfg.keyframes_per_scene)]
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


def _scene_name(index: int) -> str:
    return f"scene-{index + 1:04d}"


def _submit_keyframe(pool, out: Path, cfg: WorldConfig, loc: _Location, cameras: list, lidar: _Lidar, actors: list,
                     si: int, k: int, ego_xy, ego_yaw: float) -> dict:
    """Queue the 6 camera renders and the LiDAR sweep of keyframe ``k`` of scene ``si``; returns
    what the tables need (tokens, relative file names, boxes, and the pending jobs)."""
    s = cfg.seed
    x, y = float(ego_xy[0]), float(ego_xy[1])
    g_T_e = _pose_matrix(x, y, ego_yaw)
    near = np.hypot(loc.static.cx - x, loc.static.cy - y) - loc.static.radius() < 200.0
    static = loc.static.take(np.flatnonzero(near))
    boxes = _Boxes.concat([static, _actor_boxes(actors, 0.5 * k, (x, y), ego_yaw, radius=100.0)])
    ts = 1_533_000_000_000_000 + si * 3_600_000_000 + k * 500_000    # fixed epoch, 1 h per scene, 2 Hz
    sd = {ch: _token(s, "sample_data", si, k, ch) for ch in CAMERA_NAMES + (LIDAR_NAME,)}
    files = {ch: f"samples/{ch}/{loc.logfile}__{ch}__{ts}" + (".pcd.bin" if ch == LIDAR_NAME else ".jpg") for ch in sd}
    jobs = {}
    for cam in cameras:
        tok = sd[cam.channel]
        paths = {"jpg": out / files[cam.channel], "sem": out / _SEMANTICS_DIR / f"{tok}.png",
                 "depth": out / _DEPTH_DIR / f"{tok}.png"}
        jobs[cam.channel] = pool.submit(_camera_job, cam, g_T_e, loc.scenery, boxes, paths, cfg.jpeg_quality)
    paths = {"pcd": out / files[LIDAR_NAME],
             "lidarseg": out / "lidarseg" / cfg.version / f"{sd[LIDAR_NAME]}_lidarseg.bin"}
    jobs[LIDAR_NAME] = pool.submit(_lidar_job, lidar, g_T_e, loc.scenery, _Boxes.concat([boxes, _ego_box(g_T_e)]),
                                   (s, "lidar", si, k), paths)
    return dict(k=k, ts=ts, sample=_token(s, "sample", si, k), sd=sd, pose=(x, y, ego_yaw), boxes=boxes, jobs=jobs,
                files=files)


def _scene_tables(tables: dict, cfg: WorldConfig, frames: list, actors: list, cameras: list, scene_tok: str,
                  bar) -> None:
    """Append the sample/sample_data/ego_pose/annotation rows of one scene (waits for its renders)."""
    s = cfg.seed
    cat_token = {c["name"]: c["token"] for c in tables["category"]}
    attr_token = {a["name"]: a["token"] for a in tables["attribute"]}
    channels = CAMERA_NAMES + (LIDAR_NAME,)
    anns_by_actor: dict[int, list] = {}
    for i, fr in enumerate(frames):
        prev_fr = frames[i - 1] if i > 0 else None
        next_fr = frames[i + 1] if i + 1 < len(frames) else None
        tables["sample"].append({"token": fr["sample"], "timestamp": fr["ts"], "scene_token": scene_tok,
                                 "prev": prev_fr["sample"] if prev_fr else "",
                                 "next": next_fr["sample"] if next_fr else ""})
        x, y, yaw = fr["pose"]
        for ch in channels:
            tok = fr["sd"][ch]
            tables["ego_pose"].append({"token": tok, "timestamp": fr["ts"], "rotation": _yaw_quaternion(yaw),
                                       "translation": [x, y, 0.0]})
            is_cam = ch != LIDAR_NAME
            tables["sample_data"].append({
                "token": tok, "sample_token": fr["sample"], "ego_pose_token": tok,
                "calibrated_sensor_token": _token(s, "calibrated_sensor", ch), "timestamp": fr["ts"],
                "fileformat": "jpg" if is_cam else "pcd", "is_key_frame": True,
                "height": cfg.image_wh[1] if is_cam else 0, "width": cfg.image_wh[0] if is_cam else 0,
                "filename": fr["files"][ch], "prev": prev_fr["sd"][ch] if prev_fr else "",
                "next": next_fr["sd"][ch] if next_fr else ""})
        lidar_tok = fr["sd"][LIDAR_NAME]
        tables["lidarseg"].append({"token": lidar_tok, "sample_data_token": lidar_tok,
                                   "filename": f"lidarseg/{cfg.version}/{lidar_tok}_lidarseg.bin"})
        boxes: _Boxes = fr["boxes"]
        hit_px = np.zeros(len(boxes), np.int64)
        vis_px = np.zeros(len(boxes), np.int64)
        for cam in cameras:
            h, w = fr["jobs"][cam.channel].result()
            hit_px += h
            vis_px += w
        lidar_pts = fr["jobs"][LIDAR_NAME].result()[:len(boxes)]
        for k in np.flatnonzero(boxes.ref >= 0):
            if math.hypot(boxes.cx[k] - x, boxes.cy[k] - y) > cfg.annotation_range:
                continue
            ai = int(boxes.ref[k])
            a = actors[ai]
            anns_by_actor.setdefault(ai, []).append({
                "token": _token(s, "sample_annotation", scene_tok, ai, fr["k"]), "sample_token": fr["sample"],
                "visibility_token": _visibility_token(int(hit_px[k]), int(vis_px[k])),
                "attribute_tokens": [attr_token[a.attribute]] if a.attribute else [],
                "translation": [float(boxes.cx[k]), float(boxes.cy[k]), float(0.5 * (boxes.z0[k] + boxes.z1[k]))],
                "size": list(a.size), "rotation": _yaw_quaternion(float(boxes.yaw[k])),
                "num_lidar_pts": int(lidar_pts[k]), "num_radar_pts": 0})
        bar.update(1)
    for ai in sorted(anns_by_actor):
        anns = anns_by_actor[ai]
        inst_tok = _token(s, "instance", scene_tok, ai)
        for j, ann in enumerate(anns):
            ann["instance_token"] = inst_tok
            ann["prev"] = anns[j - 1]["token"] if j > 0 else ""
            ann["next"] = anns[j + 1]["token"] if j + 1 < len(anns) else ""
            tables["sample_annotation"].append(ann)
        tables["instance"].append({"token": inst_tok, "category_token": cat_token[actors[ai].category],
                                   "nbr_annotations": len(anns), "first_annotation_token": anns[0]["token"],
                                   "last_annotation_token": anns[-1]["token"]})


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
    """Where the camera-view semantic mask of a camera sample_data token is stored."""
    return Path(dataroot) / _SEMANTICS_DIR / f"{sample_data_token}.png"


def camera_depth_path(dataroot, sample_data_token: str) -> Path:
    """Where the depth map of a camera sample_data token is stored."""
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
