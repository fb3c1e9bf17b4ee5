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

# ------------------------------------------------------------------------------------------------
# Looks: how the same world is seen (rig, palette, weather); labels never depend on the look
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WorldLook:
    """Appearance and camera rig of a world; geometry, labels (camera semantics, lidarseg, boxes)
    and the LiDAR are the same for every look, so two looks of one seed form a pure domain gap.

    Attributes:
        description: one line for captions.
        camera_height: metres above the ground (ego z) of all six cameras; None keeps the rig's.
        camera_pitch_deg: extra downward pitch (degrees) of every camera about its own x axis.
        focal_scale: multiplies fx and fy of every camera (> 1: narrower field of view); the
            principal point stays.
        ground_rgb: RGB (0..255) per ground material group ("terrain", "sidewalk", "curb",
            "asphalt", "paint_white", "paint_yellow"); an empty mapping keeps the built-in colours.
        box_grade: per box group ("vehicle", "human", "building", "vegetation", "movable") a pair
            (saturation, (r, g, b) gain) applied to the shaded box colour; empty = unchanged.
        sky_top / sky_horizon: RGB of the sky gradient (zenith-ward / at the horizon).
        haze: RGB the ground and boxes fade to with distance.
        fog_distance / fog_max: fog weight ``fog_max * (1 - exp(-depth / fog_distance))`` with depth
            in metres along the optical axis (Koschmieder's law, a constant-density atmosphere).
        contrast / colour_gain: ``rgb' = (128 + contrast * (rgb - 128)) * colour_gain`` per channel,
            after fog (a flat, tinted camera response).
        noise_sigma: std (8-bit DN) of seeded Gaussian sensor noise added after the lens blur.
    """

    description: str
    camera_height: float | None = None
    camera_pitch_deg: float = 0.0
    focal_scale: float = 1.0
    ground_rgb: tuple = ()
    box_grade: tuple = ()
    sky_top: tuple = (88, 138, 206)
    sky_horizon: tuple = (178, 204, 232)
    haze: tuple = (186, 200, 216)
    fog_distance: float = 220.0
    fog_max: float = 0.7
    contrast: float = 1.0
    colour_gain: tuple = (1.0, 1.0, 1.0)
    noise_sigma: float = 0.0


#: The looks a :class:`WorldConfig` can take (``WorldConfig.look``).
#:
#: * ``"nuscenes"`` (default): the real nuScenes rig (:data:`NUSCENES_RIG`), a sunny tropical/US
#:   palette and light haze; this is the world every earlier version generated, byte for byte.
#: * ``"city"``: a Cityscapes stand-in (Cordts et al., CVPR 2016, Sec. 2: a single windscreen
#:   camera of a European car, overcast weather, 50 cities in Germany). The six nuScenes channels are
#:   kept (the devkit needs them) but mounted at Cityscapes' camera height of 1.22 m, pitched 2 deg
#:   down (Cityscapes' camera.json pitch 0.038 rad) and with 1.4 x the focal length (Cityscapes:
#:   fx 2262 px at 2048 px width = 1.10 fx/width vs nuScenes' CAM_FRONT 1266/1600 = 0.79, i.e.
#:   47 instead of 65 deg horizontal field of view). Greyer, cooler palette (dark grey asphalt, grey
#:   pavement, olive verges, grey-beige buildings, dark blue-green trees, desaturated cars, worn
#:   paint); overcast weather: a grey sky, dense fog towards a grey horizon (fog_distance 90 m),
#:   reduced contrast, a slight cyan cast and sensor noise.
WORLD_LOOKS = {
    "nuscenes": WorldLook("nuScenes rig, sunny palette, light haze"),
    "city": WorldLook(
        "Cityscapes-like: lower, narrower, pitched cameras; grey European palette; overcast fog",
        camera_height=1.22, camera_pitch_deg=2.0, focal_scale=1.4,
        ground_rgb=(("terrain", (96, 104, 72)), ("sidewalk", (128, 128, 130)), ("curb", (150, 150, 152)),
                    ("asphalt", (62, 64, 68)), ("paint_white", (176, 178, 178)), ("paint_yellow", (170, 150, 80))),
        box_grade=(("vehicle", (0.45, (0.92, 0.95, 1.0))), ("human", (0.7, (0.9, 0.92, 0.96))),
                   ("building", (0.35, (0.92, 0.94, 0.98))), ("vegetation", (0.8, (0.7, 0.85, 0.85))),
                   ("movable", (0.8, (0.95, 0.95, 0.95)))),
        sky_top=(150, 156, 164), sky_horizon=(192, 196, 200), haze=(176, 180, 186),
        fog_distance=90.0, fog_max=0.8, contrast=0.8, colour_gain=(0.96, 1.0, 1.03), noise_sigma=2.0),
}


# ------------------------------------------------------------------------------------------------
# Rigs: which sensors observe the world (combined-datasets paper, Sec. 4.1 and Appendix A)
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WorldRig:
    """A sensor rig: six cameras (always the six nuScenes channel names, so the devkit reads every
    rig) and one spinning roof LiDAR. Geometry, boxes and labels of a seed do not depend on the rig;
    images, camera semantics/depth, LiDAR sweeps and their lidarseg labels are measured by it.

    Attributes:
        description: one line for captions.
        lidar_beams: beams of the LiDAR (default of :attr:`WorldConfig.lidar_beams`).
        lidar_elevation_deg: (lowest, highest) beam elevation in degrees, LIDAR frame; the beams
            are spaced evenly between them (real sensors space them unevenly; we do not).
        lidar: ``ego_T_lidar`` as dict(translation (m, ego frame), rotation (w, x, y, z)).
        cameras: channel -> dict(translation, rotation, camera_intrinsic) in the format of
            :data:`NUSCENES_RIG` (intrinsics in pixels at :data:`RIG_IMAGE_WH`).
    """

    description: str
    lidar_beams: int
    lidar_elevation_deg: tuple
    lidar: dict
    cameras: dict


def _mount(yaw_deg: float, x: float, y: float, z: float, hfov_deg: float, pitch_deg: float = 0.0) -> dict:
    """Calibration of a camera at ego (x, y, z) m looking along ``yaw_deg`` (0 = forward, + = left),
    pitched ``pitch_deg`` down, with a horizontal field of view ``hfov_deg`` at :data:`RIG_IMAGE_WH`
    (square pixels, principal point at the image centre). Camera frame: x right, y down, z forward."""
    from pyquaternion import Quaternion
    a, p = math.radians(yaw_deg), math.radians(pitch_deg)
    z_ax = np.array([math.cos(a) * math.cos(p), math.sin(a) * math.cos(p), -math.sin(p)])
    x_ax = np.array([math.sin(a), -math.cos(a), 0.0])
    ego_R_cam = np.column_stack([x_ax, np.cross(z_ax, x_ax), z_ax])
    w, h = RIG_IMAGE_WH
    f = 0.5 * w / math.tan(math.radians(hfov_deg) / 2.0)
    q = Quaternion(matrix=ego_R_cam).normalised
    return dict(translation=(float(x), float(y), float(z)), rotation=tuple(float(v) for v in q.elements),
                camera_intrinsic=((f, 0.0, 0.5 * w), (0.0, f, 0.5 * h), (0.0, 0.0, 1.0)))


def _lidar_mount(x: float, z: float, yaw_deg: float) -> dict:
    c, s = math.cos(math.radians(yaw_deg) / 2.0), math.sin(math.radians(yaw_deg) / 2.0)
    return dict(translation=(float(x), 0.0, float(z)), rotation=(c, 0.0, 0.0, s), camera_intrinsic=())


def _ring_cameras(yaws, hfovs, radius, x0, z, pitch=0.0) -> dict:
    """Six cameras (CAMERA_NAMES order) on a horizontal ring of ``radius`` m around ego x = ``x0``."""
    return {ch: _mount(yaw, x0 + radius * math.cos(math.radians(yaw)), radius * math.sin(math.radians(yaw)), z, fov, pitch)
            for ch, yaw, fov in zip(CAMERA_NAMES, yaws, hfovs)}


#: The rigs a :class:`WorldConfig` can take (``WorldConfig.rig``). The paper (Sec. 4.1) only says the
#: three datasets' LiDARs have 32, 64 and 40 beams and that "the mounting angles of the cameras also
#: differ"; Appendix A/D: all three are standardised to six surround cameras. Everything else below
#: is public knowledge of the real rigs where marked (pub), or our assumption (ours) where the
#: public record gives no number. hfov = horizontal field of view at 1600x900.
#:
#: ======== ============================= ========================= ==========================================
#: rig      LiDAR                         LiDAR mount               cameras (yaw deg, height m, hfov deg)
#: ======== ============================= ========================= ==========================================
#: nuscenes 32 beams, -30.67..+10.67 deg  x 0.94, z 1.84 m, yaw -90 the real v1.0-mini calibration (pub):
#:          (Velodyne HDL-32E, pub)       (pub)                     F 0 / 1.51 / 64; FL +55, FR -55 / 1.50 /
#:                                                                  64; BL +110, BR -110 / 1.59 / 65; B 180
#:                                                                  / 1.58 / 89
#: lyft     64 beams, -24.9..+2.0 deg     x 1.10, z 1.95 m, yaw 0   Lyft Level 5 (Kaggle 2019, pub): 6 wide +
#:          (HDL-64E-like vertical FOV;   (ours)                    1 zoomed camera on a roof ring; we keep
#:          64 beams pub, FOV ours)                                 the six wide ones (ours): F 0, FL +45,
#:                                                                  FR -45, BL +135, BR -135, B 180, all at
#:                                                                  1.75 m (above nuScenes, ours), all
#:                                                                  hfov 80 (ours)
#: once     40 beams, -25..+15 deg        x 0.90, z 2.05 m, yaw 0   ONCE (Mao et al. 2021, Sec. 3, pub): 7
#:          (ONCE paper's LiDAR spec,     (ours)                    cameras, 1920x1020; we keep six (ours):
#:          pub)                                                    F 0 hfov 60, FL +70, FR -70 hfov 70,
#:                                                                  BL +130, BR -130 hfov 70, B 180 hfov 100,
#:                                                                  at 1.65 m, pitched 3 deg down (ours)
#: ======== ============================= ========================= ==========================================
#:
#: Horizontal positions of the Lyft/ONCE cameras (ours): a ring of 0.5 m (Lyft) / 0.4 m (ONCE)
#: radius around x = 1.2 m, each camera on the ring at its own yaw. All rigs fire
#: ``WorldConfig.lidar_azimuth_steps`` azimuths per beam and range to 80 m (ours).
WORLD_RIGS = {
    "nuscenes": WorldRig("nuScenes: 32-beam LiDAR, six cameras (real calibration)", 32, (-30.67, 10.67),
                         NUSCENES_RIG[LIDAR_NAME], {ch: NUSCENES_RIG[ch] for ch in CAMERA_NAMES}),
    "lyft": WorldRig("Lyft-like: 64-beam LiDAR, six wide roof cameras at +-45/+-135 deg", 64, (-24.9, 2.0),
                     _lidar_mount(1.10, 1.95, 0.0),
                     _ring_cameras((45, 0, -45, 135, 180, -135), (80, 80, 80, 80, 80, 80), 0.5, 1.2, 1.75)),
    "once": WorldRig("ONCE-like: 40-beam LiDAR, six cameras at +-70/+-130 deg, pitched down", 40, (-25.0, 15.0),
                     _lidar_mount(0.90, 2.05, 0.0),
                     _ring_cameras((70, 0, -70, 130, 180, -130), (70, 60, 70, 70, 100, 70), 0.4, 1.2, 1.65, 3.0)),
}


def camera_rig(channel: str, look: str = "nuscenes", rig: str = "nuscenes") -> dict:
    """Calibration of one camera of a rig seen with a look: ``ego_T_cam`` as translation (metres,
    ego frame) and rotation (unit quaternion w, x, y, z), intrinsics in pixels at :data:`RIG_IMAGE_WH`.

    The rig (:data:`WORLD_RIGS`) gives the mounting; the ``"nuscenes"`` look returns the rig's entry
    unchanged (for the ``"nuscenes"`` rig the very :data:`NUSCENES_RIG` float objects, so tables
    written from it are byte-identical). Other looks replace the height, pitch the camera down
    about its own x axis (camera frame: x right, y down, z forward, so a downward pitch by ``a`` is
    ``ego_R_cam @ R_x(-a)``) and scale the focal lengths (see :class:`WorldLook`).

    Raises: KeyError naming the channel, look or rig when one is unknown.
    """
    if channel not in CAMERA_NAMES:
        raise KeyError(f"channel={channel!r} is not a camera; expected one of {CAMERA_NAMES}")
    if look not in WORLD_LOOKS:
        raise KeyError(f"look={look!r} is unknown; expected one of {tuple(WORLD_LOOKS)}")
    if rig not in WORLD_RIGS:
        raise KeyError(f"rig={rig!r} is unknown; expected one of {tuple(WORLD_RIGS)}")
    base = WORLD_RIGS[rig].cameras[channel]
    if look == "nuscenes":
        return base
    from pyquaternion import Quaternion
    lk = WORLD_LOOKS[look]
    x, y, z = base["translation"]
    q = Quaternion(base["rotation"]) * Quaternion(axis=[1.0, 0.0, 0.0], angle=-math.radians(lk.camera_pitch_deg))
    K = np.array(base["camera_intrinsic"], np.float64)
    K[0, 0] *= lk.focal_scale
    K[1, 1] *= lk.focal_scale
    return dict(translation=(x, y, z if lk.camera_height is None else lk.camera_height),
                rotation=tuple(float(v) for v in q.normalised.elements),
                camera_intrinsic=tuple(tuple(float(v) for v in row) for row in K))


#: When each camera of a keyframe fires, relative to the keyframe's (LIDAR_TOP) timestamp, in
#: microseconds: on the real rig the cameras are triggered as the spinning LiDAR sweeps across them,
#: front-left first, so each has its own capture time and ego pose. The offsets are those of the
#: real nuScenes keyframe in ../shared (scene n015-2018-07-24), rounded to 0.1 ms; each keyframe
#: adds its own seeded trigger jitter of up to :data:`CAMERA_TIME_JITTER_US` per camera, so no two
#: keyframes share a rig, even at constant speed on a straight road.
CAMERA_TIME_OFFSETS_US = {"CAM_FRONT_LEFT": -43100, "CAM_FRONT": -35500, "CAM_FRONT_RIGHT": -27600,
                          "CAM_BACK_RIGHT": -20100, "CAM_BACK": -10400, "CAM_BACK_LEFT": -500}
CAMERA_TIME_JITTER_US = 400
#: ``WorldConfig.camera_timing`` values: "sweep" (each camera at its own capture time and ego
#: pose, as real nuScenes) or "keyframe" (every sensor at the keyframe's time and pose).
CAMERA_TIMINGS = ("sweep", "keyframe")

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
        lidar_beams / lidar_azimuth_steps: LiDAR rays per sweep; ``lidar_beams=None`` (the default)
            takes the rig's beam count (nuScenes HDL-32E: 32) and is resolved in ``__post_init__``,
            so ``cfg.lidar_beams`` is always an int. Note: ``dataclasses.replace(cfg, rig=...)``
            keeps the old resolved count; pass ``lidar_beams=None`` too, or use :meth:`with_rig`.
        val_scenes: the last ``val_scenes`` scenes form the val split.
        version: nuScenes version folder name.
        locations: map names (from :data:`MAP_LOCATIONS`) used in turn by the scenes.
        speed_kmh: ego speed range (km/h); one constant speed per scene.
        object_density: multiplies the number of spawned traffic participants.
        ground_resolution: metres per cell of the ground material raster (paint sharpness).
        annotation_range: objects within this xy distance (m) of the ego get sample_annotations.
        jpeg_quality: JPEG quality of the camera images.
        look: appearance and camera rig, a key of :data:`WORLD_LOOKS` ("nuscenes" or "city"); only
            images and camera calibration change, never geometry or labels. The default is left
            out of :meth:`as_dict` / :meth:`hash`, so default worlds keep their cache names and bytes.
        rig: sensor rig, a key of :data:`WORLD_RIGS` ("nuscenes", "lyft", "once"): camera mounting
            and intrinsics, LiDAR beams, vertical field of view and mounting. Independent of
            ``look`` (a look's height/pitch/focal changes apply on top of the rig's cameras). The
            default is left out of :meth:`as_dict` / :meth:`hash` like ``look``'s.
        camera_timing: "sweep" (default): each camera is captured at its own time
            (:data:`CAMERA_TIME_OFFSETS_US` from the keyframe's LiDAR timestamp, plus a seeded jitter
            within :data:`CAMERA_TIME_JITTER_US`), so its
            ``sample_data`` points to its own ``ego_pose`` and moving traffic is where it is at that
            time, as on the real rig; boxes are annotated at the LiDAR time. "keyframe": every
            sensor at the keyframe's time and pose (the generator before this option; its worlds
            keep their hash and bytes, because "keyframe" is left out of :meth:`as_dict`).
    """

    seed: int = 0
    n_scenes: int = 6
    keyframes_per_scene: int = 16
    image_wh: tuple = (800, 450)
    render_scale: float = 1.0
    lidar_beams: int | None = None
    lidar_azimuth_steps: int = 1084
    val_scenes: int = 2
    version: str = "v1.0-mini"
    locations: tuple = ("singapore-onenorth", "boston-seaport")
    speed_kmh: tuple = (30.0, 50.0)
    object_density: float = 1.0
    ground_resolution: float = 0.05
    annotation_range: float = 60.0
    jpeg_quality: int = 90
    look: str = "nuscenes"
    rig: str = "nuscenes"
    camera_timing: str = "sweep"

    def __post_init__(self):
        problems = []
        if not isinstance(self.rig, str) or self.rig not in WORLD_RIGS:
            raise ValueError(f"invalid WorldConfig: rig={self.rig!r} is unknown; expected one of {tuple(WORLD_RIGS)}")
        if self.lidar_beams is None:     # frozen: the resolved count is stored once, so it hashes like an explicit one
            object.__setattr__(self, "lidar_beams", WORLD_RIGS[self.rig].lidar_beams)
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
        if not (isinstance(self.lidar_beams, int) and 1 <= self.lidar_beams <= 128 and self.lidar_azimuth_steps >= 8):
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
        if self.look not in WORLD_LOOKS:
            problems.append(f"look={self.look!r} is unknown; expected one of {tuple(WORLD_LOOKS)}")
        if not self.version:
            problems.append("version must be a non-empty folder name")
        if self.camera_timing not in CAMERA_TIMINGS:
            problems.append(f"camera_timing={self.camera_timing!r} is unknown; expected one of {CAMERA_TIMINGS}")
        if problems:
            raise ValueError("invalid WorldConfig: " + "; ".join(problems))

    def as_dict(self) -> dict:
        """All fields as JSON-serialisable values (tuples become lists); ``look`` and ``rig`` only
        when they are not the default, so the manifest and hash of default worlds predate and
        outlive the fields (``lidar_beams`` is the resolved count, 32 for the default rig);
        ``camera_timing`` only when it is not "keyframe", so single-pose worlds keep the hash and
        bytes they had before the option."""
        d = json.loads(json.dumps(dataclasses.asdict(self)))
        for name in ("look", "rig"):
            if d[name] == "nuscenes":
                del d[name]
        if d["camera_timing"] == "keyframe":
            del d["camera_timing"]
        return d

    def with_rig(self, rig: str) -> "WorldConfig":
        """This config with another rig and that rig's own beam count.

        Raises: ValueError naming ``rig`` when it is not a key of :data:`WORLD_RIGS`."""
        return dataclasses.replace(self, rig=rig, lidar_beams=None)

    def hash(self) -> str:
        """12-hex-digit digest of :meth:`as_dict` and the generator version (names the cache
        directory); the default ``look`` is not part of it (see :meth:`as_dict`)."""
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
