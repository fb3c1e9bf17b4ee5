"""World looks (bevlib.data.world WorldConfig.look): the "city" Cityscapes stand-in has the same
geometry and labels as the default world of its seed, another camera rig and another appearance,
and the default world keeps its bytes and cache hash."""
import dataclasses
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from pyquaternion import Quaternion

from bevlib.data.source import WorldParams
from bevlib.data.world import (CAMERA_NAMES, NUSCENES_RIG, WORLD_LOOKS, WorldConfig, camera_rig,
                               generate_world, load_camera_depth, load_camera_semantics)
from bevlib.params import ParameterError

from conftest import TINY
from world_checks import SEM, lidar_camera_consistency

CITY = dataclasses.replace(TINY, look="city")
LOOK = WORLD_LOOKS["city"]
#: WorldConfig().hash() before looks existed: default caches in ~/.cache/bevlib must keep their names.
DEFAULT_HASH = "f1a4b45aeb90"


@pytest.fixture(scope="module")
def city_world(tmp_path_factory) -> Path:
    return generate_world(tmp_path_factory.mktemp("world") / "city", CITY, progress=False)


def _nusc(root):
    from nuscenes.nuscenes import NuScenes
    return NuScenes(TINY.version, str(root), verbose=False)


@pytest.fixture(scope="module")
def city_nusc(city_world):
    return _nusc(city_world)


@pytest.fixture(scope="module")
def default_nusc(tiny_world):
    return _nusc(tiny_world)


def test_default_hash_and_manifest_unchanged(tiny_world, city_world):
    assert WorldConfig(camera_timing="keyframe").hash() == DEFAULT_HASH      # the single-pose world
    assert WorldConfig().hash() == WorldParams().world_config().hash() != DEFAULT_HASH
    assert WorldConfig(look="nuscenes") == WorldConfig() and "look" not in WorldConfig().as_dict()
    assert WorldConfig(look="city").hash() not in (DEFAULT_HASH, WorldConfig(look="city", seed=1).hash())
    assert WorldParams(world_look="city").world_config() == WorldConfig(look="city")
    assert "look" not in json.loads((tiny_world / "bevlib_world.json").read_text())["config"]
    manifest = json.loads((city_world / "bevlib_world.json").read_text())
    assert manifest["config"]["look"] == "city" and manifest["hash"] == CITY.hash() != TINY.hash()
    assert WorldConfig(**manifest["config"]).hash() == CITY.hash()          # the manifest round-trips


def test_unknown_look_raises():
    with pytest.raises(ValueError, match="look='mars'"):
        WorldConfig(look="mars")
    with pytest.raises(ParameterError, match="world_look"):
        WorldParams(world_look="mars")
    with pytest.raises(ParameterError, match="world_look"):
        WorldParams(world_look=None)
    with pytest.raises(KeyError, match="look"):
        camera_rig("CAM_FRONT", "mars")
    with pytest.raises(KeyError, match="channel"):
        camera_rig("LIDAR_TOP", "city")
    assert camera_rig("CAM_BACK") is NUSCENES_RIG["CAM_BACK"]


def test_city_calibration_read_back_through_devkit(city_nusc, default_nusc):
    a = math.radians(LOOK.camera_pitch_deg)
    Rx = np.array([[1, 0, 0], [0, math.cos(a), math.sin(a)], [0, -math.sin(a), math.cos(a)]])   # R_x(-a)
    sample = city_nusc.sample[0]
    for ch in CAMERA_NAMES:
        cs = city_nusc.get("calibrated_sensor", city_nusc.get("sample_data", sample["data"][ch])["calibrated_sensor_token"])
        rig = NUSCENES_RIG[ch]
        assert cs["translation"][:2] == pytest.approx(rig["translation"][:2], abs=1e-12)
        assert cs["translation"][2] == pytest.approx(1.22)
        K_rig, K = np.array(rig["camera_intrinsic"]), np.array(cs["camera_intrinsic"])
        assert K[0, 0] == pytest.approx(1.4 * K_rig[0, 0] * 320 / 1600)
        assert K[1, 1] == pytest.approx(1.4 * K_rig[1, 1] * 180 / 900)
        # principal point scaled with pixel centres at integers, as for the default rig
        assert K[0, 2] == pytest.approx((K_rig[0, 2] + 0.5) * 320 / 1600 - 0.5)
        assert K[1, 2] == pytest.approx((K_rig[1, 2] + 0.5) * 180 / 900 - 0.5)
        R_rig = Quaternion(rig["rotation"]).rotation_matrix
        R = Quaternion(cs["rotation"]).rotation_matrix
        np.testing.assert_allclose(R, R_rig @ Rx, atol=1e-9)
        # The optical axis turned 2 deg towards the ground.
        z_rig, z = R_rig[:, 2], R[:, 2]
        assert math.degrees(math.acos(np.clip(z_rig @ z, -1, 1))) == pytest.approx(2.0, abs=1e-6)
        assert z[2] < z_rig[2]
    lidar = [next(c for c in n.calibrated_sensor if n.get("sensor", c["sensor_token"])["channel"] == "LIDAR_TOP")
             for n in (city_nusc, default_nusc)]
    assert lidar[0]["translation"] == lidar[1]["translation"] and lidar[0]["rotation"] == lidar[1]["rotation"]


def test_city_keeps_geometry_and_labels(city_world, tiny_world):
    """Only images, camera semantics/depth (another rig), calibrated_sensor and the annotations'
    visibility (counted in camera pixels) may differ."""
    for name in ("ego_pose", "sample", "sample_data", "instance", "lidarseg", "scene", "category"):
        assert (city_world / TINY.version / f"{name}.json").read_bytes() == \
            (tiny_world / TINY.version / f"{name}.json").read_bytes(), name
    anns = [json.loads((w / TINY.version / "sample_annotation.json").read_text()) for w in (city_world, tiny_world)]
    assert len(anns[0]) == len(anns[1]) > 20
    for a, b in zip(*anns):
        assert {**a, "visibility_token": ""} == {**b, "visibility_token": ""}
    bins = sorted(p.relative_to(tiny_world) for p in tiny_world.rglob("*.bin"))
    assert len(bins) == 2 * TINY.n_scenes * TINY.keyframes_per_scene
    for rel in bins:                                   # LiDAR sweeps and lidarseg labels
        assert (city_world / rel).read_bytes() == (tiny_world / rel).read_bytes(), rel
    assert (city_world / TINY.version / "calibrated_sensor.json").read_bytes() != \
        (tiny_world / TINY.version / "calibrated_sensor.json").read_bytes()


def test_city_images_look_different(city_nusc, default_nusc):
    sat, std, sky_blue = {}, {}, {}
    for look, n in (("nuscenes", default_nusc), ("city", city_nusc)):
        root = Path(n.dataroot)
        toks = [s["data"][ch] for s in n.sample for ch in CAMERA_NAMES]
        imgs = [cv2.imread(n.get_sample_data_path(t)).astype(np.float64) for t in toks]
        sat[look] = np.mean([cv2.cvtColor(im.astype(np.uint8), cv2.COLOR_BGR2HSV)[..., 1].mean() for im in imgs])
        std[look] = np.mean([im.std() for im in imgs])
        sky = [im[load_camera_semantics(root, t) == SEM["sky"]] for im, t in zip(imgs, toks)]
        sky_blue[look] = np.mean(np.concatenate([p[:, 0] - p[:, 2] for p in sky]))   # BGR: blue - red
    # Same seed, same scenes: the look alone moves the colour statistics.
    assert sat["city"] < 0.6 * sat["nuscenes"], sat            # greyer
    assert std["city"] < 0.9 * std["nuscenes"], std            # flatter (fog, contrast)
    assert sky_blue["nuscenes"] > 60 > 25 > sky_blue["city"], sky_blue   # blue sky vs overcast


def test_city_semantics_and_depth_agree_with_geometry(city_nusc, city_world):
    """LiDAR ground points, moved into each camera with the devkit's calibration, land on road
    semantics at the depth the camera's depth map holds; box centres land on their class."""
    r = lidar_camera_consistency(city_nusc, city_world)
    on_road, rel_err, hits, checked = r["on_road"], r["rel_err"], r["hits"], r["checked"]
    assert len(on_road) > 2000 and on_road.mean() > 0.9, (len(on_road), on_road.mean())
    # A 2-cm LiDAR range noise plus a pixel of rounding on a sloping ground: a few percent at most.
    assert len(rel_err) > 0.8 * len(on_road) and np.median(rel_err) < 0.03, np.median(rel_err)
    assert checked >= 5 and hits >= 0.9 * checked, (hits, checked)


def test_fog_follows_koschmieder_and_fades_far_road_to_horizon(city_nusc, city_world):
    """Median road colour per depth bin against the closed form of WorldLook: asphalt mixed with the
    haze by fog_max * (1 - exp(-d / fog_distance)), then the tone curve (texture has mean 1)."""
    asphalt = np.array(dict(LOOK.ground_rgb)["asphalt"], np.float64)
    haze = np.array(LOOK.haze, np.float64)
    bins = ((4.0, 8.0), (15.0, 25.0), (50.0, 150.0))
    colours = {b: [] for b in bins}
    depths = {b: [] for b in bins}
    for sample in city_nusc.sample:
        for ch in CAMERA_NAMES:
            tok = sample["data"][ch]
            rgb = cv2.imread(city_nusc.get_sample_data_path(tok))[..., ::-1].astype(np.float64)
            sem, depth = load_camera_semantics(city_world, tok), load_camera_depth(city_world, tok)
            road = cv2.erode((sem == SEM["road_surface"]).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
            for lo, hi in bins:
                m = road & (depth >= lo) & (depth < hi)
                colours[(lo, hi)].append(rgb[m])
                depths[(lo, hi)].append(depth[m])
    dist = {}
    for b in bins:
        c, d = np.concatenate(colours[b]), np.concatenate(depths[b])
        assert len(c) > 100, (b, len(c))
        f = LOOK.fog_max * (1.0 - np.exp(-np.median(d) / LOOK.fog_distance))
        expected = (128.0 + LOOK.contrast * (asphalt * (1 - f) + haze * f - 128.0)) * np.array(LOOK.colour_gain)
        np.testing.assert_allclose(np.median(c, 0), expected, atol=8.0, err_msg=str(b))
        dist[b] = np.linalg.norm(np.median(c, 0) - (128.0 + LOOK.contrast * (haze - 128.0)) * LOOK.colour_gain)
    assert dist[bins[2]] < dist[bins[1]] < dist[bins[0]] and dist[bins[2]] < 0.75 * dist[bins[0]], dist
