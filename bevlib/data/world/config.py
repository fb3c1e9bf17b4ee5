"""What determines a generated world: :class:`WorldConfig`, the fixed vocabularies it is written in
(sensor rig, camera semantic classes, lidarseg categories, attributes, visibility levels, map
locations) and the seed-derived tokens and random streams that every other module draws from."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bevlib.classes import ALL_CLASSES
from bevlib.geometry import transform_from

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

#: Bumped whenever the generated content changes, so cached worlds of older code are not reused
#: (tests/golden/world_tiny_seed0.sha256 has to be regenerated in the same change).
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
    """[w, x, y, z] of a rotation by ``yaw`` rad about +z (the only rotation poses and boxes have)."""
    return [math.cos(yaw / 2.0), 0.0, 0.0, math.sin(yaw / 2.0)]


def _pose_matrix(x: float, y: float, yaw: float, z: float = 0.0) -> np.ndarray:
    """(4, 4) float64 ``global_T_ego`` of a planar pose (metres, rad)."""
    return transform_from((x, y, z), _yaw_quaternion(yaw))


def _write(path: Path, data) -> None:
    """Write bytes (or a buffer such as cv2.imencode's array), creating parent directories."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))
