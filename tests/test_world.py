"""The synthetic nuScenes-format world and its pseudo-labeller (bevlib.data.world, .synthetic_labeler)."""
import dataclasses
import hashlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from pyquaternion import Quaternion

from bevlib.classes import NUM_ALL, class_index
from bevlib.data.synthetic_labeler import SyntheticPseudoLabeler, pseudo_label_style
from bevlib.data.world import (CAMERA_NAMES, CAMERA_SEMANTIC_CLASSES, LIDARSEG_CATEGORIES, NUSCENES_RIG, WorldConfig,
                               ensure_world, generate_world, load_camera_depth, load_camera_semantics, world_split)

from conftest import TINY
BEV_LAYERS = ("lane_divider", "road_divider", "ped_crossing", "road_segment", "lane")


@pytest.fixture(scope="module")
def world(tiny_world) -> Path:
    return tiny_world


@pytest.fixture(scope="module")
def nusc(world):
    from nuscenes.nuscenes import NuScenes
    return NuScenes(TINY.version, str(world), verbose=False)


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(root)).encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def _camera_tokens(nusc):
    return [s["data"][ch] for s in nusc.sample for ch in CAMERA_NAMES]


def test_devkit_loads_with_configured_counts(nusc, world):
    n_samples = TINY.n_scenes * TINY.keyframes_per_scene
    assert len(nusc.scene) == TINY.n_scenes and len(nusc.sample) == n_samples
    assert len(nusc.sample_data) == n_samples * 7 and len(nusc.lidarseg) == n_samples
    assert [c["index"] for c in sorted(nusc.category, key=lambda c: c["index"])] == list(range(32))
    assert nusc.lidarseg_name2idx_mapping["vehicle.car"] == 17
    assert nusc.lidarseg_name2idx_mapping["flat.driveable_surface"] == 24
    for scene in nusc.scene:                      # prev/next chains cover each scene exactly
        tok, seen = scene["first_sample_token"], 0
        while tok:
            sample = nusc.get("sample", tok)
            assert set(sample["data"]) == set(CAMERA_NAMES) | {"LIDAR_TOP"}
            tok, seen = sample["next"], seen + 1
        assert seen == scene["nbr_samples"] == TINY.keyframes_per_scene
    sample = nusc.sample[1]
    path, boxes, K = nusc.get_sample_data(sample["data"]["CAM_FRONT"])
    assert Path(path).exists() and K.shape == (3, 3)
    assert len(nusc.get_boxes(sample["data"]["LIDAR_TOP"])) == len(sample["anns"])
    cs = nusc.get("calibrated_sensor", nusc.get("sample_data", sample["data"]["CAM_FRONT"])["calibrated_sensor_token"])
    assert cs["translation"] == list(NUSCENES_RIG["CAM_FRONT"]["translation"])
    fx = NUSCENES_RIG["CAM_FRONT"]["camera_intrinsic"][0][0]
    assert cs["camera_intrinsic"][0][0] == pytest.approx(fx * 320 / 1600)
    for ann in nusc.sample_annotation:
        assert nusc.get("instance", ann["instance_token"])["nbr_annotations"] >= 1
        if ann["next"]:
            assert nusc.get("sample_annotation", ann["next"])["prev"] == ann["token"]


def test_lidarseg_labels_match_points(nusc, world):
    for rec in nusc.lidarseg:
        sd = nusc.get("sample_data", rec["sample_data_token"])
        points = np.fromfile(world / sd["filename"], np.float32).reshape(-1, 5)
        labels = np.fromfile(world / rec["filename"], np.uint8)
        assert len(points) == len(labels) > 1000
        assert labels.max() < len(LIDARSEG_CATEGORIES) and set(np.unique(points[:, 4])) <= set(range(TINY.lidar_beams))


def test_driveable_lidar_points_lie_on_the_ground(nusc, world):
    from nuscenes.utils.data_classes import LidarPointCloud
    for sample in nusc.sample:
        sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        pc = LidarPointCloud.from_file(str(world / sd["filename"]))
        labels = np.fromfile(world / nusc.get("lidarseg", sd["token"])["filename"], np.uint8)
        for rec in (nusc.get("calibrated_sensor", sd["calibrated_sensor_token"]),
                    nusc.get("ego_pose", sd["ego_pose_token"])):
            pc.rotate(Quaternion(rec["rotation"]).rotation_matrix)
            pc.translate(np.array(rec["translation"]))
        z = pc.points[2, labels == nusc.lidarseg_name2idx_mapping["flat.driveable_surface"]]
        assert len(z) > 100 and np.abs(z).max() < 0.06


def test_split_file(nusc, world):
    split = world_split(world)
    assert split["val"] == ["scene-0002"] and split["train"] == ["scene-0001"]
    assert sorted(split["train"] + split["val"]) == sorted(s["name"] for s in nusc.scene)
    with pytest.raises(FileNotFoundError):
        world_split(world / "maps")


def test_map_expansion_layers_near_keyframes(nusc, world):
    from nuscenes.map_expansion.map_api import NuScenesMap
    for log in nusc.log:
        nmap = NuScenesMap(dataroot=str(world), map_name=log["location"])
        poses = [nusc.get("ego_pose", nusc.get("sample_data", s["data"]["LIDAR_TOP"])["ego_pose_token"])["translation"]
                 for s in nusc.sample if nusc.get("scene", s["scene_token"])["log_token"] == log["token"]]
        assert poses
        found = {layer: 0 for layer in BEV_LAYERS}
        for x, y, _ in poses:
            records = nmap.get_records_in_patch((x - 30, y - 30, x + 30, y + 30), list(BEV_LAYERS), mode="intersect")
            for layer in BEV_LAYERS:
                found[layer] += bool(records[layer])
        assert all(n >= 0.5 * len(poses) for n in found.values()), found
        assert nmap.extract_line(nmap.lane_divider[0]["line_token"]).length > 1.0
        assert nmap.extract_polygon(nmap.ped_crossing[0]["polygon_token"]).is_valid
        x, y, _ = poses[0]
        mask = nmap.get_map_mask((x, y, 60, 30), 30.0, ["drivable_area", *BEV_LAYERS], (120, 60))
        assert mask.shape == (6, 120, 60) and mask[0].mean() > 0.1 and mask[1].any() and mask[4].mean() > 0.1


def test_same_seed_same_bytes_and_ensure_world_caches(world, tmp_path):
    again = ensure_world(cache_dir=tmp_path / "cache", cfg=TINY, progress=False)
    assert again == tmp_path / "cache" / f"world-{TINY.hash()}"
    assert _tree_digest(again) == _tree_digest(world)
    stamp = (again / "bevlib_world.json").stat().st_mtime_ns
    assert ensure_world(cache_dir=tmp_path / "cache", cfg=TINY, progress=False) == again
    assert (again / "bevlib_world.json").stat().st_mtime_ns == stamp          # not regenerated
    other = generate_world(tmp_path / "seed1", dataclasses.replace(TINY, seed=1), progress=False)
    assert _tree_digest(other) != _tree_digest(world)
    with pytest.raises(FileExistsError):
        generate_world(other, TINY, progress=False)


def test_config_hash_and_validation():
    assert WorldConfig().hash() == WorldConfig().hash() != WorldConfig(seed=1).hash()
    with pytest.raises(ValueError, match="locations"):
        WorldConfig(locations=("atlantis",))
    with pytest.raises(ValueError, match="val_scenes"):
        WorldConfig(n_scenes=2, val_scenes=3)


def test_box_centres_project_onto_their_class(nusc, world):
    """Catches inconsistent calibration, frames or rendering: the devkit's projection of a
    well-visible box centre must land on pixels the renderer labelled with the box's class."""
    from world_checks import box_centre_hits
    checked = hits = 0
    for tok in _camera_tokens(nusc):
        h, c = box_centre_hits(nusc, tok, load_camera_semantics(world, tok))
        hits, checked = hits + h, checked + c
    assert checked >= 10 and hits >= 0.9 * checked, (hits, checked)


def test_camera_semantics_and_depth(nusc, world):
    tok = nusc.sample[0]["data"]["CAM_FRONT"]
    sem, depth = load_camera_semantics(world, tok), load_camera_depth(world, tok)
    assert sem.shape == depth.shape == (180, 320) and sem.dtype == np.uint8 and depth.dtype == np.float32
    sky, road = CAMERA_SEMANTIC_CLASSES.index("sky"), CAMERA_SEMANTIC_CLASSES.index("road_surface")
    assert sem.max() < len(CAMERA_SEMANTIC_CLASSES) and (sem == sky).any() and (sem == road).any()
    assert (depth[sem == sky] == 0).all() and (depth[sem != sky] > 0).all()
    # The bottom row of the front camera sees the road a few metres ahead: depth = h / tan(angle).
    assert 2.0 < np.median(depth[-1][sem[-1] == road]) < 8.0
    with pytest.raises(FileNotFoundError):
        load_camera_semantics(world, "0" * 32)


def test_pseudo_labeller_style_noise_and_determinism(nusc, world):
    cls = {n: CAMERA_SEMANTIC_CLASSES.index(n) for n in ("crosswalk", "crosswalk_gap", "stop_line", "arrow", "sky")}
    tokens = _camera_tokens(nusc)
    sems = {t: load_camera_semantics(world, t) for t in tokens}
    tok = max(tokens, key=lambda t: (sems[t] == cls["crosswalk_gap"]).sum())
    sem = sems[tok]
    assert (sem == cls["crosswalk_gap"]).any(), "no zebra crossing in view; the fixture world changed"
    clean = SyntheticPseudoLabeler(noise=0.0).label(SimpleNamespace(dataroot=str(world)), tok)
    assert clean.dtype == np.uint8 and clean.shape == sem.shape and clean.max() < NUM_ALL
    assert (clean[(sem == cls["crosswalk"]) | (sem == cls["crosswalk_gap"])] == class_index("crosswalk")).all()
    assert (clean[(sem == cls["stop_line"]) | (sem == cls["arrow"])] == class_index("lane")).all()
    assert (clean[sem == cls["sky"]] == 0).all() and (clean[sem < NUM_ALL] == sem[sem < NUM_ALL]).all()
    assert np.array_equal(clean, pseudo_label_style(sem))

    noisy = SyntheticPseudoLabeler(noise=0.6, seed=3)
    assert noisy.name == "synthetic-n0.60-s3"
    a = noisy.label(nusc, tok)
    assert np.array_equal(a, SyntheticPseudoLabeler(noise=0.6, seed=3).label(nusc, tok))
    assert not np.array_equal(a, clean)
    assert not np.array_equal(a, SyntheticPseudoLabeler(noise=0.6, seed=4).label(nusc, tok))
    assert a.max() < NUM_ALL
    markings = (clean >= 1) & (clean <= 3)
    assert (a[markings] != clean[markings]).mean() < 0.8          # degraded, not destroyed
    with pytest.raises(ValueError):
        SyntheticPseudoLabeler(noise=1.5)


def test_cameras_fire_at_their_own_time_and_ego_pose(nusc, world):
    """As on the real rig (WorldConfig.camera_timing="sweep"): each camera's sample_data has its own
    timestamp (the LiDAR's plus CAMERA_TIME_OFFSETS_US, with a little jitter) and ego pose, the ego driven back along its
    heading by speed * |dt|; so every keyframe's rig (ego_T_cam in the LiDAR's ego frame) is new."""
    from bevlib.data.nuscenes_data import camera_rig
    from bevlib.data.world import CAMERA_TIME_JITTER_US, CAMERA_TIME_OFFSETS_US

    rigs = []
    for sample in nusc.sample:
        lsd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        assert lsd["timestamp"] == sample["timestamp"]
        lp = nusc.get("ego_pose", lsd["ego_pose_token"])
        nxt = nusc.get("sample", sample["next"] or sample["prev"])
        np_ = nusc.get("ego_pose", nusc.get("sample_data", nxt["data"]["LIDAR_TOP"])["ego_pose_token"])
        speed = np.hypot(*np.subtract(np_["translation"][:2], lp["translation"][:2])) / 0.5   # m/s, 2 Hz
        assert speed > 5.0
        for ch in CAMERA_NAMES:
            sd = nusc.get("sample_data", sample["data"][ch])
            dt = (sd["timestamp"] - sample["timestamp"]) * 1e-6
            assert abs(sd["timestamp"] - sample["timestamp"] - CAMERA_TIME_OFFSETS_US[ch]) <= CAMERA_TIME_JITTER_US
            assert dt < 0
            assert sd["ego_pose_token"] != lsd["ego_pose_token"]
            cp = nusc.get("ego_pose", sd["ego_pose_token"])
            assert cp["timestamp"] == sd["timestamp"] and str(sd["timestamp"]) in sd["filename"]
            moved = np.hypot(*np.subtract(cp["translation"][:2], lp["translation"][:2]))
            assert moved == pytest.approx(speed * abs(dt), rel=0.05, abs=0.01), (ch, moved, speed * dt)
        rigs.append(camera_rig(nusc, sample["token"])["ego_T_cam"])
    assert all(not np.allclose(a, b, atol=1e-3) for i, a in enumerate(rigs) for b in rigs[:i])


def test_semantics_and_depth_agree_with_lidar_through_camera_poses(nusc, world):
    """LiDAR road points moved into each camera through the global frame with the camera's own ego
    pose land on road semantics at the camera's depth (median error < 3 %); dropping the camera
    poses (the LiDAR's for every sensor) makes the front cameras' depth error on buildings clearly
    larger, so the check sees them."""
    from world_checks import lidar_camera_consistency
    r = lidar_camera_consistency(nusc, world)
    assert len(r["on_road"]) > 2000 and r["on_road"].mean() > 0.9, (len(r["on_road"]), r["on_road"].mean())
    assert len(r["rel_err"]) > 0.8 * len(r["on_road"]) and np.median(r["rel_err"]) < 0.03, np.median(r["rel_err"])
    assert r["checked"] >= 5 and r["hits"] >= 0.9 * r["checked"], (r["hits"], r["checked"])
    # A shift within the ground plane leaves the ground's depth unchanged: buildings see it. The front
    # cameras fire 28-43 ms before the LiDAR, 0.3-0.6 m of driving.
    right = lidar_camera_consistency(nusc, world, category="static.manmade")
    wrong = lidar_camera_consistency(nusc, world, camera_poses=False, category="static.manmade")
    for ch in ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"):
        assert right["cam_rel_err"][ch] < 0.005 and wrong["cam_rel_err"][ch] > 5 * right["cam_rel_err"][ch], \
            (ch, wrong["cam_rel_err"], right["cam_rel_err"])
