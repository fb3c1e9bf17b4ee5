"""Keyframe fields, the LiDAR reader and the field cache, checked against nuscenes-devkit.

References are the devkit's own code paths (``LidarPointCloud.from_file`` / ``from_file_multisweep``,
``LidarsegClassMapper.convert_label``, ``get_sample_data``, ``map_pointcloud_to_image``) or an
independent re-assembly, never the function under test.
"""
import dataclasses
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from nuscenes.utils.data_classes import LidarPointCloud
from pyquaternion import Quaternion

from bevlib import geometry as geo
from bevlib.bev import BEVGrid
from bevlib.classes import CATEGORY_TO_OBJECT, IGNORE, OBJECT_CLASSES
from bevlib.data import fields as F
from bevlib.data import nuscenes_data as nd
from bevlib.data.dataset import KeyframeDataset, KeyframeStore, collate_keyframes
from bevlib.data.lidar import (LIDARSEG_UNLABELLED, lidarseg_eval_classes, load_lidar_sweep, load_lidarseg,
                               map_lidarseg)
from bevlib.data.fields import BUSCH2026_FIELDS, FIELDS, DepthConfig, KeyframeConfig, load_keyframe
from bevlib.data.nuscenes_data import DataError, open_nuscenes
from conftest import TINY

GRID = BEVGrid(H=30, W=15)
WH = (64, 36)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """Every test gets its own cache dir: nothing lands in ~/.cache, no entry leaks between tests."""
    d = tmp_path / "cache"
    monkeypatch.setenv("BEVLIB_CACHE", str(d))
    return d


@pytest.fixture(scope="module")
def world(tiny_world):
    return open_nuscenes(tiny_world, TINY.version)


def _third_keyframe(nusc) -> dict:
    """A keyframe with two earlier keyframes in its scene (the world's sweeps are its keyframes)."""
    s = nusc.sample[0]
    while s["prev"]:
        s = nusc.get("sample", s["prev"])
    return nusc.get("sample", nusc.get("sample", s["next"])["next"])


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


# ------------------------------------------------------------------------------------------------
# The LiDAR reader
# ------------------------------------------------------------------------------------------------

def test_lidar_reader_matches_devkit_on_real_keyframe(keyframe_nusc):
    nusc = keyframe_nusc
    sample = nusc.sample[0]
    sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    sw = load_lidar_sweep(nusc, sample["token"])
    pc = LidarPointCloud.from_file(nusc.get_sample_data_path(sd["token"]))
    assert sw.sample_data_token == sd["token"] and len(sw) == pc.nbr_points() > 30000
    assert sw.points_sensor.dtype == np.float32 and sw.points_ego.dtype == np.float64
    np.testing.assert_array_equal(sw.points_sensor, pc.points[:3].T)
    np.testing.assert_array_equal(sw.intensity, pc.points[3])
    # Sensor -> ego with the devkit's own in-place calibration steps.
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    pc.points = pc.points.astype(np.float64)
    pc.rotate(Quaternion(cs["rotation"]).rotation_matrix)
    pc.translate(np.array(cs["translation"]))
    np.testing.assert_allclose(sw.points_ego, pc.points[:3].T, atol=1e-9)
    np.testing.assert_allclose(sw.ego_T_sensor, geo.transform_from(cs["translation"], cs["rotation"]))
    # The HDL-32E ring column, read beside the points (the devkit drops it).
    raw = np.fromfile(nusc.get_sample_data_path(sd["token"]), np.float32).reshape(-1, 5)
    np.testing.assert_array_equal(sw.ring, raw[:, 4].astype(np.uint8))
    assert set(np.unique(sw.ring)) == set(range(32))
    assert sw.lidarseg is None and (sw.sweep == 0).all() and (sw.time_lag == 0).all()


def test_ring_lidarseg_and_16_class_mapping_on_world(world):
    from nuscenes.eval.lidarseg.utils import LidarsegClassMapper

    tok = world.sample[1]["token"]
    sw = load_lidar_sweep(world, tok)
    assert len(np.unique(sw.ring)) == TINY.lidar_beams == 32
    sd = world.get("sample_data", sw.sample_data_token)
    ref = np.fromfile(Path(world.dataroot) / world.get("lidarseg", sd["token"])["filename"], np.uint8)
    np.testing.assert_array_equal(sw.lidarseg, ref)
    np.testing.assert_array_equal(load_lidarseg(world, sd["token"]), ref)
    mapped = map_lidarseg(world, sw.lidarseg)
    np.testing.assert_array_equal(mapped, LidarsegClassMapper(world).convert_label(ref))
    assert mapped.dtype == np.uint8 and len(np.unique(mapped)) >= 6            # a real mix of classes
    names = lidarseg_eval_classes()
    assert len(names) == 17 and names[0] == "ignore" and names[11] == "driveable_surface"
    idx = world.lidarseg_name2idx_mapping
    assert map_lidarseg(world, np.array([idx["noise"], idx["vehicle.ego"], idx["vehicle.car"], LIDARSEG_UNLABELLED],
                                        np.uint8)).tolist() == [0, 0, names.index("car"), 0]
    # The keyframe field carries the same mapping, and the raw labels beside it.
    item = load_keyframe(world, tok, KeyframeConfig(image_wh=WH, grid=GRID, fields=("lidar",)))
    np.testing.assert_array_equal(item["lidar_seg"], mapped)
    np.testing.assert_array_equal(item["lidar_seg_raw"], ref)
    np.testing.assert_array_equal(item["lidar_ring"], sw.ring)
    np.testing.assert_allclose(item["lidar_points"], sw.points_ego, atol=1e-4)
    assert item["has_lidar"] and item["has_lidarseg"] and "images" not in item and "bev_gt" not in item


def test_multisweep_matches_devkit(world):
    sample = _third_keyframe(world)
    sw = load_lidar_sweep(world, sample["token"], nsweeps=3, min_distance=1.0)
    pc, times = LidarPointCloud.from_file_multisweep(world, sample, "LIDAR_TOP", "LIDAR_TOP", nsweeps=3, min_distance=1.0)
    assert len(sw) == pc.nbr_points() and set(np.unique(sw.sweep)) == {0, 1, 2}
    np.testing.assert_allclose(sw.points_sensor, pc.points[:3].T, atol=2e-4)
    np.testing.assert_array_equal(sw.intensity, pc.points[3])
    np.testing.assert_allclose(sw.time_lag, times[0], atol=1e-6)
    assert sorted(np.unique(sw.time_lag).tolist()) == [0.0, 0.5, 1.0]
    # Earlier sweeps really moved: the ego drove between keyframes.
    first = np.fromfile(world.get_sample_data_path(sw.sweep_tokens[1]), np.float32).reshape(-1, 5)
    first = first[~((np.abs(first[:, 0]) < 1.0) & (np.abs(first[:, 1]) < 1.0))]
    assert np.abs(sw.points_sensor[sw.sweep == 1] - first[:, :3]).max() > 1.0
    np.testing.assert_array_equal(sw.ring[sw.sweep == 1], first[:, 4].astype(np.uint8))
    np.testing.assert_allclose(sw.points_ego, geo.apply(sw.ego_T_sensor, sw.points_sensor), atol=2e-4)
    # Each sweep keeps its own lidarseg (the world labels every keyframe sweep).
    for k, tok in enumerate(sw.sweep_tokens):
        lab = np.fromfile(Path(world.dataroot) / world.get("lidarseg", tok)["filename"], np.uint8)
        raw = np.fromfile(world.get_sample_data_path(tok), np.float32).reshape(-1, 5)
        keep = ~((np.abs(raw[:, 0]) < 1.0) & (np.abs(raw[:, 1]) < 1.0))
        np.testing.assert_array_equal(sw.lidarseg[sw.sweep == k], lab[keep])
    # More sweeps than the scene has: the chain stops at the scene's first keyframe, like the devkit.
    assert load_lidar_sweep(world, sample["token"], nsweeps=10).sweep_tokens == sw.sweep_tokens
    with pytest.raises(ValueError, match="nsweeps"):
        load_lidar_sweep(world, sample["token"], nsweeps=0)


def test_lidarseg_of_unlabelled_sweeps_is_marked(world, tiny_world, tmp_path):
    """A sweep without lidarseg (all of nuScenes' non-key sweeps) gets LIDARSEG_UNLABELLED, not 0."""
    import json

    root = tmp_path / "w"
    shutil.copytree(tiny_world, root)
    sample = _third_keyframe(world)
    prev_sd = world.get("sample_data", world.get("sample_data", sample["data"]["LIDAR_TOP"])["prev"])
    table = root / TINY.version / "lidarseg.json"
    recs = [r for r in json.loads(table.read_text()) if r["sample_data_token"] != prev_sd["token"]]
    table.write_text(json.dumps(recs))
    (root / f"lidarseg/{TINY.version}/{prev_sd['token']}_lidarseg.bin").unlink()
    nusc = open_nuscenes(root, TINY.version)
    sw = load_lidar_sweep(nusc, sample["token"], nsweeps=2)
    assert (sw.lidarseg[sw.sweep == 1] == LIDARSEG_UNLABELLED).all()
    assert (sw.lidarseg[sw.sweep == 0] < 32).all()


# ------------------------------------------------------------------------------------------------
# Boxes and depth
# ------------------------------------------------------------------------------------------------

def test_boxes_in_ego_frame_match_devkit(keyframe_nusc):
    nusc = keyframe_nusc
    sample = nusc.sample[0]
    b = F.boxes_ego(nusc, sample["token"])
    assert len(b["box_token"]) == len(sample["anns"]) == 68
    # Reference: the devkit's boxes in the LiDAR frame (get_sample_data), moved by the calibration.
    lidar = sample["data"]["LIDAR_TOP"]
    _, boxes_lidar, _ = nusc.get_sample_data(lidar)
    cs = nusc.get("calibrated_sensor", nusc.get("sample_data", lidar)["calibrated_sensor_token"])
    ego_T_lidar = geo.transform_from(cs["translation"], cs["rotation"])
    ref = {x.token: x for x in boxes_lidar}
    for i, tok in enumerate(b["box_token"]):
        r = ref[tok]
        np.testing.assert_allclose(b["box_center"][i], geo.apply(ego_T_lidar, r.center[None])[0], atol=1e-4)
        R = Quaternion(b["box_rotation"][i].astype(np.float64)).rotation_matrix
        np.testing.assert_allclose(R, ego_T_lidar[:3, :3] @ r.rotation_matrix, atol=1e-5)
        np.testing.assert_allclose(b["box_wlh"][i], r.wlh, atol=1e-5)
        np.testing.assert_allclose(b["box_yaw"][i], np.arctan2(R[1, 0], R[0, 0]), atol=1e-5)
        ann = nusc.get("sample_annotation", tok)
        assert b["box_num_lidar_pts"][i] == ann["num_lidar_pts"] and b["box_category"][i] == ann["category_name"]
        obj = CATEGORY_TO_OBJECT.get(ann["category_name"])
        assert b["box_class"][i] == (OBJECT_CLASSES.index(obj) if obj else -1)
    assert (b["box_class"] >= 0).sum() > 30 and b["box_class"].dtype == np.int64


def test_boxes_on_world_are_planar_yaw(world):
    """Independent check on the world (planar poses, yaw-only boxes): yaw_ego = yaw_global - yaw_ego_pose."""
    tok = world.sample[2]["token"]
    b = F.boxes_ego(world, tok)
    G = nd.global_T_ego(world, tok)
    for i, t in enumerate(b["box_token"]):
        ann = world.get("sample_annotation", t)
        q = Quaternion(ann["rotation"])
        yaw = np.arctan2(q.rotation_matrix[1, 0], q.rotation_matrix[0, 0]) - np.arctan2(G[1, 0], G[0, 0])
        assert abs(np.angle(np.exp(1j * (b["box_yaw"][i] - yaw)))) < 1e-5
        np.testing.assert_allclose(b["box_center"][i], geo.apply(geo.invert(G), np.array([ann["translation"]]))[0],
                                   atol=1e-3)


def test_lidar_depth_matches_devkit_projection(keyframe_nusc):
    """Projected depth at native size equals devkit's map_pointcloud_to_image (nearest return per pixel)."""
    from nuscenes.nuscenes import NuScenesExplorer

    nusc = keyframe_nusc
    sample = nusc.sample[0]
    cfg = KeyframeConfig(image_wh=(1600, 900), fields=("depth",), cache=False)
    item = load_keyframe(nusc, sample["token"], cfg)
    assert item["depth_source"] == "lidar" and item["depth"].shape == (6, 900, 1600)
    explorer = NuScenesExplorer(nusc)
    for c, ch in enumerate(nd.CAMERAS):
        pts, depths, _ = explorer.map_pointcloud_to_image(sample["data"]["LIDAR_TOP"], sample["data"][ch])
        px = np.floor(pts[:2] + 0.5).astype(int)
        ref = np.full((900, 1600), np.inf)
        np.minimum.at(ref, (px[1], px[0]), depths)
        inner = np.zeros((900, 1600), bool)
        inner[2:-2, 2:-2] = True                                  # the devkit's 1-pixel margin
        got = np.where(inner, item["depth"][c], 0)
        ref = np.where(inner & np.isfinite(ref), ref, 0)
        assert (ref > 0).sum() > 1000 or ch.startswith("CAM_BACK_")
        same = (got > 0) == (ref > 0)
        assert same.mean() > 0.9999, ch                          # float32 devkit vs float64: edge pixels
        both = (got > 0) & (ref > 0)
        assert np.abs(got[both] - ref[both]).max() < 1e-3
    with pytest.raises(DataError, match="depth maps"):
        load_keyframe(nusc, sample["token"], KeyframeConfig(image_wh=WH, fields=("depth",),
                                                            depth=DepthConfig(source="world")))


def test_world_depth_and_lidar_depth_agree(world):
    tok = world.sample[1]["token"]
    wh = (160, 90)
    dw = load_keyframe(world, tok, KeyframeConfig(image_wh=wh, fields=("depth",)))
    dl = load_keyframe(world, tok, KeyframeConfig(image_wh=wh, fields=("depth",), depth=DepthConfig(source="lidar")))
    assert dw["depth_source"] == "world" and dl["depth_source"] == "lidar"
    from bevlib.data.world import load_camera_depth
    rig = nd.camera_rig(world, tok)
    full = load_camera_depth(world.dataroot, rig["sd_tokens"][1])
    assert dw["depth"].shape == (6, 90, 160) and (dw["depth"] > 0).mean() > 0.5        # dense
    np.testing.assert_array_equal(dw["depth"][1, 45, 80], full[90, 160])              # nearest, not blended
    both = (dw["depth"] > 0) & (dl["depth"] > 0)
    assert both.sum() > 3000 and (dl["depth"] > 0).mean() < 0.2                         # sparse
    # A pixel's LiDAR return and the ray-cast depth measure the same surface (object edges aside).
    assert np.median(np.abs(dw["depth"][both] - dl["depth"][both])) < 0.15


def _below_top_return(sparse: np.ndarray) -> np.ndarray:
    """(h, w) bool: pixels from the highest to the lowest row holding a projected return (below the
    horizon, and above the near ground the LiDAR cannot see: the region a completion without sky
    extrapolation can reach)."""
    rows = np.flatnonzero((sparse > 0).any(1))
    m = np.zeros(sparse.shape, bool)
    m[rows.min():rows.max() + 1] = True
    return m


def test_completion_size_and_options():
    assert F.completion_size((1600, 900), 800) == (1600, 900)           # native when wide enough
    assert F.completion_size((320, 180), 800) == (800, 450)             # scaled up, aspect kept
    assert F.completion_size((333, 100), 800) == (800, 240)             # 100 * 800 / 333 = 240.2
    # the other sources' cache keys do not see the completion options (their caches stay valid)
    assert DepthConfig(source="lidar").cache_config() == {"source": "lidar", "nsweeps": 1, "min_distance_m": 0.0,
                                                          "min_depth_m": 1.0}
    assert "complete_min_width" in DepthConfig(source="lidar_completed").cache_config()
    for kw, name in ((dict(source="ipbasic"), "source"), (dict(complete_min_width=0), "complete_min_width"),
                     (dict(complete_max_depth_m=0.1), "complete_max_depth_m"),
                     (dict(complete_blur="box"), "complete_blur")):
        with pytest.raises(ValueError, match=name):
            DepthConfig(**kw)


def test_completed_lidar_depth_keeps_returns_and_is_dense(world):
    """At the completion size (the tiny world's 320 x 180 cameras scaled up to 800 x 450): the measured
    pixels keep their depth up to IP-Basic's smoothing (its dilation lets a nearer neighbour win and
    its median / bilateral filters move values slightly), and the image is dense below the top return
    with extrapolation, much denser than the projection without it."""
    tok = world.sample[1]["token"]
    rig = nd.camera_rig(world, tok)
    sw = load_lidar_sweep(world, tok, 1, 0.0)
    cwh = F.completion_size(rig["native_wh"][0], 800)
    assert cwh == (800, 450)
    checked = 0
    for c in range(6):
        K = geo.scale_intrinsics(rig["K"][c], rig["native_wh"][c], cwh)
        sparse = F.project_depth(sw.points_ego, K, rig["ego_T_cam"][c], cwh)
        if (sparse > 0).sum() < 500:
            continue
        checked += 1
        dense = F.completed_lidar_depth(sw.points_ego, rig["K"][c], rig["ego_T_cam"][c], rig["native_wh"][c], cwh,
                                        DepthConfig(source="lidar_completed"))
        m = sparse > 0
        rel = np.abs(dense[m] - sparse[m]) / sparse[m]
        assert np.median(rel) < 1e-3 and np.mean(rel < 0.10) > 0.95, c
        below = _below_top_return(sparse)
        assert (dense[below] > 0).mean() > 0.9, c
        no_ext = F.completed_lidar_depth(sw.points_ego, rig["K"][c], rig["ego_T_cam"][c], rig["native_wh"][c], cwh,
                                         DepthConfig(source="lidar_completed", complete_extrapolate=False))
        assert (no_ext[~below] > 0).mean() < 0.05                        # no sky depth without extrapolation
        assert (no_ext[below] > 0).mean() > 0.4 > 10 * (sparse[below] > 0).mean()
    assert checked >= 4


def test_completed_lidar_depth_agrees_with_world_depth(world, cache):
    """The tiny world's ray-cast depth is exact: the completed LiDAR depth of the same camera matches it
    (median error of a few centimetres over 10+ m scenes); the same maps paired with the neighbouring
    camera do not (the check would catch a projection into the wrong camera)."""
    tok = world.sample[1]["token"]
    wh = (160, 90)
    dw = load_keyframe(world, tok, KeyframeConfig(image_wh=wh, fields=("depth",), depth=DepthConfig(source="world")))
    cfg = KeyframeConfig(image_wh=wh, fields=("depth",), depth=DepthConfig(source="lidar_completed"))
    dc = load_keyframe(world, tok, cfg)
    assert dc["depth_source"] == "lidar_completed" and dc["depth"].shape == (6, 90, 160)
    assert dc["depth"].dtype == np.float32 and (dc["depth"] > 0).mean() > 0.95
    w, d = dw["depth"], dc["depth"]

    def median_err(a, b):
        both = (a > 0) & (b > 0)
        assert both.mean() > 0.5
        return float(np.median(np.abs(a[both] - b[both])))

    assert median_err(w, d) < 0.3
    assert median_err(w, np.roll(d, 1, axis=0)) > 2.0                    # wrong camera
    assert median_err(w, d[:, ::-1]) > 1.0                               # mirrored image
    # the field is the function at the completion size, nearest-resized
    rig, rig_n = nd.camera_rig(world, tok, wh), nd.camera_rig(world, tok)
    sw = load_lidar_sweep(world, tok, 1, 0.0)
    big = F.completed_lidar_depth(sw.points_ego, rig_n["K"][2], rig["ego_T_cam"][2], rig_n["native_wh"][2], (800, 450),
                                  cfg.depth)
    np.testing.assert_array_equal(d[2], big[2::5, 2::5])                 # 800 / 160 = 5: centre of each 5 x 5 block
    # cached like the other depth sources, under its own key
    assert len(list((cache / "fields").glob("depth-*/*.npz"))) == 2
    again = load_keyframe(world, tok, cfg)
    np.testing.assert_array_equal(again["depth"], d)
    assert again["depth_source"] == "lidar_completed"


# ------------------------------------------------------------------------------------------------
# Field selection, busch2026's default, the cache
# ------------------------------------------------------------------------------------------------

def _busch2026_reference(nusc, tok, cfg) -> dict:
    """The keyframe dict as load_keyframe built it before fields existed (its code, inlined)."""
    from PIL import Image

    from bevlib.data.pseudo import load_pseudo_label

    rig = nd.camera_rig(nusc, tok, cfg.image_wh)
    gt = nd.bev_ground_truth(nusc, tok, cfg.grid, cfg.target)
    prev, curr_T_prev, motion = nd.ego_motion(nusc, tok)
    item = {
        "sample_token": tok,
        "images": np.stack([nd.load_image(nusc.get_sample_data_path(t), cfg.image_wh) for t in rig["sd_tokens"]]),
        "K": rig["K"].astype(np.float32), "ego_T_cam": rig["ego_T_cam"].astype(np.float32),
        "bev_gt": gt if gt is not None else np.full((cfg.grid.H, cfg.grid.W), IGNORE, np.uint8),
        "has_bev_gt": gt is not None, "prev_token": prev or "",
        "curr_T_prev": curr_T_prev.astype(np.float32), "ego_motion": motion.astype(np.float32),
    }
    if cfg.labeler:
        item["pseudo"] = np.stack([np.asarray(Image.fromarray(load_pseudo_label(nusc.dataroot, cfg.labeler, t))
                                              .resize(tuple(cfg.image_wh), Image.NEAREST)) for t in rig["sd_tokens"]])
    return item


def _assert_same_item(a: dict, b: dict):
    assert set(a) == set(b)
    for k in a:
        if isinstance(a[k], np.ndarray):
            assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        else:
            assert type(a[k]) is type(b[k]) and a[k] == b[k], k


def test_default_fields_are_busch2026_unchanged(world, cache):
    from bevlib.data.pseudo import cache_pseudo_labels
    from bevlib.data.synthetic_labeler import SyntheticPseudoLabeler

    assert KeyframeConfig().fields == BUSCH2026_FIELDS == ("cameras", "bev_gt", "pseudo")
    lab = SyntheticPseudoLabeler(noise=0.1)
    for with_labels in (False, True):
        cfg = KeyframeConfig(image_wh=WH, grid=GRID, labeler=lab.name if with_labels else None)
        for s in world.sample[:4]:
            if with_labels:
                cache_pseudo_labels(world, lab, [s["data"][c] for c in nd.CAMERAS], progress=False)
            ref = _busch2026_reference(world, s["token"], cfg)
            _assert_same_item(load_keyframe(world, s["token"], cfg), ref)      # computed
            _assert_same_item(load_keyframe(world, s["token"], cfg), ref)      # from the cache
            assert ref["has_bev_gt"] and ("pseudo" in ref) == with_labels
    assert list((cache / "fields").glob("bev_gt-*/*.npz"))


def test_field_selection_and_validation(world):
    tok = world.sample[0]["token"]
    item = load_keyframe(world, tok, KeyframeConfig(image_wh=WH, grid=GRID, fields=["boxes"]))
    assert set(item) == {"sample_token", "prev_token", "curr_T_prev", "ego_motion", *F.BOX_KEYS}
    with pytest.raises(ValueError, match="unknown keyframe field.*'lidarseg'.*known: cameras"):
        KeyframeConfig(fields=("cameras", "lidarseg"))
    with pytest.raises(ValueError, match="repeated"):
        KeyframeConfig(fields=("lidar", "lidar"))
    with pytest.raises(ValueError, match="source"):
        DepthConfig(source="stereo")
    full = load_keyframe(world, tok, KeyframeConfig(image_wh=WH, grid=GRID, fields=FIELDS[::-1]))
    assert list(full) == list(load_keyframe(world, tok, KeyframeConfig(image_wh=WH, grid=GRID, fields=FIELDS)))


def test_field_cache_hits_keys_and_leaves_dataroot_alone(world, tiny_world, cache, monkeypatch):
    from bevlib.data.pseudo import cache_pseudo_labels, pseudo_label_path
    from bevlib.data.synthetic_labeler import SyntheticPseudoLabeler

    before = _snapshot(tiny_world)
    tok = world.sample[1]["token"]
    cfg = KeyframeConfig(image_wh=WH, grid=GRID, fields=FIELDS, depth=DepthConfig(source="lidar"))
    lab = SyntheticPseudoLabeler()
    cache_pseudo_labels(world, lab, nd.camera_rig(world, tok)["sd_tokens"], progress=False)
    first = load_keyframe(world, tok, dataclasses.replace(cfg, labeler=lab.name))
    assert first["pseudo"].shape == (6, WH[1], WH[0])
    entries = {p.parent.name.split("-")[0] for p in (cache / "fields").glob("*/*.npz")}
    assert entries == {"bev_gt", "depth"}
    assert pseudo_label_path(world.dataroot, lab.name, nd.camera_rig(world, tok)["sd_tokens"][0]).is_relative_to(cache)

    # Second access reads the cache: the computations are not reached.
    def boom(*a, **k):
        raise AssertionError("recomputed")
    monkeypatch.setattr(nd, "rasterize_bev_gt", boom)
    monkeypatch.setattr(F, "project_depth", boom)
    second = load_keyframe(world, tok, cfg)
    for k in ("bev_gt", "depth"):
        np.testing.assert_array_equal(second[k], first[k])
    with pytest.raises(AssertionError, match="recomputed"):       # the patches sit on the compute path
        load_keyframe(world, tok, dataclasses.replace(cfg, cache=False))
    # A different config is a different key (and is computed).
    with pytest.raises(AssertionError, match="recomputed"):
        load_keyframe(world, tok, KeyframeConfig(image_wh=WH, grid=GRID, fields=("bev_gt",),
                                                 target=nd.BEVTargetConfig(line_width_m=1.2)))
    monkeypatch.undo()
    monkeypatch.setenv("BEVLIB_CACHE", str(cache))
    wide = load_keyframe(world, tok, KeyframeConfig(image_wh=WH, grid=GRID, fields=("bev_gt",),
                                                    target=nd.BEVTargetConfig(line_width_m=1.2)))
    assert (wide["bev_gt"] > 0).sum() > (first["bev_gt"] > 0).sum()
    assert len(list((cache / "fields").glob("bev_gt-*"))) == 2
    assert _snapshot(tiny_world) == before                         # nothing written inside the dataroot


def test_cache_key_is_the_dataset_identity(world, tiny_world, tmp_path):
    a = F.FieldCache(world, "bev_gt", {"x": 1})
    assert a.key == F.FieldCache(world, "bev_gt", {"x": 1}).key
    assert a.key != F.FieldCache(world, "bev_gt", {"x": 2}).key
    assert a.key != F.FieldCache(world, "depth", {"x": 1}).key
    copy = tmp_path / "copy"
    shutil.copytree(tiny_world, copy)
    other = open_nuscenes(copy, TINY.version)
    b = F.FieldCache(other, "bev_gt", {"x": 1})
    assert b.key != a.key and b.dir.parent == a.dir.parent
    t = copy / TINY.version / "sample.json"
    os.utime(t, ns=(t.stat().st_atime_ns, t.stat().st_mtime_ns + 10**9))     # tables regenerated in place
    assert F.FieldCache(open_nuscenes(copy, TINY.version), "bev_gt", {"x": 1}).key != b.key
    # A damaged entry is a miss (recomputed), not a crash.
    a.save("tok", {"v": np.arange(3)})
    np.testing.assert_array_equal(a.load("tok")["v"], np.arange(3))
    a.path("tok").write_bytes(b"PK\x03\x04 broken")
    assert a.load("tok") is None


# ------------------------------------------------------------------------------------------------
# Batching
# ------------------------------------------------------------------------------------------------

def test_collate_pads_points_and_boxes(world):
    from torch.utils.data import DataLoader, default_collate

    toks = [s["token"] for s in world.sample[:4]]
    store = KeyframeStore(world, KeyframeConfig(image_wh=WH, grid=GRID, fields=("cameras", "lidar", "boxes", "depth")))
    ds = KeyframeDataset(store, toks)
    batches = list(DataLoader(ds, batch_size=3, collate_fn=collate_keyframes))
    b = batches[0]
    n_pts = [len(store.get(t)["lidar_points"]) for t in toks[:3]]
    n_box = [len(store.get(t)["box_token"]) for t in toks[:3]]
    assert len(set(n_pts)) > 1 and len(set(n_box)) > 1                     # really variable
    assert b["lidar_points"].shape == (3, max(n_pts), 3) and b["lidar_points"].dtype == torch.float32
    assert b["lidar_mask"].sum(1).tolist() == n_pts and b["box_mask"].sum(1).tolist() == n_box
    assert b["lidar_seg"].dtype == torch.int64 and b["box_class"].dtype == torch.int64
    for i, t in enumerate(toks[:3]):
        it = store.get(t)
        np.testing.assert_array_equal(b["lidar_points"][i, :n_pts[i]].numpy(), it["lidar_points"])
        np.testing.assert_array_equal(b["lidar_ring"][i, :n_pts[i]].numpy(), it["lidar_ring"])
        assert (b["lidar_points"][i, n_pts[i]:] == 0).all() and (b["lidar_seg"][i, n_pts[i]:] == 0).all()
        np.testing.assert_array_equal(b["box_center"][i, :n_box[i]].numpy(), it["box_center"])
        assert (b["box_class"][i, n_box[i]:] == -1).all()
        assert b["box_token"][i] == it["box_token"]
    assert b["images"].shape == (3, 6, 3, WH[1], WH[0]) and b["depth"].shape == (3, 6, WH[1], WH[0])
    assert b["depth_source"] == ["world"] * 3 and b["has_lidar"].all()
    assert batches[1]["lidar_points"].shape[0] == 1
    # Without variable-length fields it is default_collate.
    plain = KeyframeDataset(KeyframeStore(world, KeyframeConfig(image_wh=WH, grid=GRID)), toks[:2], with_prev=True)
    items = [plain[0], plain[1]]
    ref, got = default_collate(items), collate_keyframes(items)
    assert list(ref) == list(got) and all(torch.equal(ref[k], got[k]) for k in ref)
