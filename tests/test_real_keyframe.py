"""Real-input checks on the nuScenes keyframe in ../shared/nuscenes-keyframe (scene-0061).

The synthetic world cannot expose a convention that is wrong consistently; real calibration can:
projection must equal nuscenes-devkit's, and the map's drivable area rendered into the real cameras
must sit where the LiDAR sees the road.
"""
from pathlib import Path

import numpy as np
import pytest

from bevlib.bev import BEVGrid
from bevlib.geometry import apply, invert, project, transform_from

DATAROOT = Path(__file__).resolve().parents[1].parent / "shared" / "nuscenes-keyframe"
pytestmark = pytest.mark.skipif(not (DATAROOT / "v1.0-mini").is_dir(),
                                reason=f"real nuScenes keyframe not found at {DATAROOT}")

# Measured on this keyframe (800 x 450, busch2026 grid, |z| < 0.15 m): overall 0.990; per camera
# 0.960 .. 0.998 where >= 100 points (CAM_BACK_LEFT: 0.87 on only 31 points, the drivable area
# barely enters its view). The misses are returns within a cell of the polygon outline, where the
# 0.4 x 0.2 m rasterisation and the flat-ground assumption decide. Perturbing the BEV map shows
# what the thresholds catch: shifted 0.6 m sideways -> overall 0.951, CAM_FRONT_LEFT 0.67;
# mirrored left/right -> overall 0.79, CAM_BACK_RIGHT 0.12; mirrored front/back -> overall 0.90,
# CAM_FRONT_LEFT 0.36. The road is nearly symmetric about the ego, so the overall rate alone is
# weak evidence; the per-camera floor is what separates right from wrong.
MIN_OVERALL_AGREEMENT = 0.97
MIN_CAMERA_AGREEMENT = 0.9
MIN_POINTS_PER_CAMERA = 100      # fewer points: a handful of edge returns swing the rate


@pytest.fixture(scope="module")
def nusc():
    from nuscenes.nuscenes import NuScenes
    return NuScenes(version="v1.0-mini", dataroot=str(DATAROOT), verbose=False)


def _cam_records(nusc, sample, ch):
    sd = nusc.get("sample_data", sample["data"][ch])
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    ep = nusc.get("ego_pose", sd["ego_pose_token"])
    return sd, cs, ep


def test_project_box_corners_match_devkit(nusc):
    """Annotation box corners (global frame) projected with bevlib equal devkit's chain."""
    from nuscenes.utils.geometry_utils import view_points

    sample = nusc.sample[0]
    n_checked = 0
    for ch in ("CAM_FRONT", "CAM_FRONT_LEFT", "CAM_BACK_RIGHT"):
        sd, cs, ep = _cam_records(nusc, sample, ch)
        K = np.asarray(cs["camera_intrinsic"])
        cam_T_global = invert(transform_from(ep["translation"], ep["rotation"])
                              @ transform_from(cs["translation"], cs["rotation"]))
        # devkit moves the boxes global -> ego -> camera itself (get_sample_data).
        _, boxes_cam, _ = nusc.get_sample_data(sd["token"])
        boxes_cam = {b.token: b for b in boxes_cam}
        for tok, box_cam in boxes_cam.items():
            corners_g = nusc.get_box(tok).corners().T                      # (8, 3) global
            uv, depth, in_front = project(K, cam_T_global, corners_g)
            ref = view_points(box_cam.corners(), K, normalize=True)[:2].T
            np.testing.assert_allclose(depth, box_cam.corners()[2], atol=1e-6)
            np.testing.assert_allclose(uv[in_front], ref[in_front], atol=1e-5, rtol=1e-9)
            n_checked += int(in_front.sum())
    assert n_checked > 100


def test_project_lidar_matches_devkit(nusc):
    """LiDAR points projected with bevlib equal devkit's map_pointcloud_to_image chain."""
    from nuscenes.utils.data_classes import LidarPointCloud
    from nuscenes.utils.geometry_utils import view_points
    from pyquaternion import Quaternion

    sample = nusc.sample[0]
    lidar = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    cs_l = nusc.get("calibrated_sensor", lidar["calibrated_sensor_token"])
    ep_l = nusc.get("ego_pose", lidar["ego_pose_token"])
    path = nusc.get_sample_data_path(lidar["token"])
    pts_lidar = LidarPointCloud.from_file(path).points[:3].T.copy()
    global_T_lidar = (transform_from(ep_l["translation"], ep_l["rotation"])
                      @ transform_from(cs_l["translation"], cs_l["rotation"]))
    for ch in ("CAM_FRONT", "CAM_BACK"):
        sd, cs, ep = _cam_records(nusc, sample, ch)
        # The devkit's own sequence of in-place rotations/translations (map_pointcloud_to_image).
        pc = LidarPointCloud.from_file(path)
        # float64 like bevlib: in float32, global coordinates (~1 km) alone cost ~0.03 px here.
        pc.points = pc.points.astype(np.float64)
        pc.rotate(Quaternion(cs_l["rotation"]).rotation_matrix)
        pc.translate(np.array(cs_l["translation"]))
        pc.rotate(Quaternion(ep_l["rotation"]).rotation_matrix)
        pc.translate(np.array(ep_l["translation"]))
        pc.translate(-np.array(ep["translation"]))
        pc.rotate(Quaternion(ep["rotation"]).rotation_matrix.T)
        pc.translate(-np.array(cs["translation"]))
        pc.rotate(Quaternion(cs["rotation"]).rotation_matrix.T)
        K = np.asarray(cs["camera_intrinsic"])
        ref = view_points(pc.points[:3], K, normalize=True)[:2].T
        cam_T_global = invert(transform_from(ep["translation"], ep["rotation"])
                              @ transform_from(cs["translation"], cs["rotation"]))
        uv, depth, in_front = project(K, cam_T_global @ global_T_lidar, pts_lidar)
        # The devkit keeps points > 1 m in front and inside the image; compare those.
        keep = (depth > 1.0) & (ref[:, 0] >= 0) & (ref[:, 0] < sd["width"]) \
            & (ref[:, 1] >= 0) & (ref[:, 1] < sd["height"])
        assert keep.sum() > 1000
        np.testing.assert_allclose(depth, pc.points[2], atol=1e-9)
        np.testing.assert_allclose(uv[keep], ref[keep], atol=1e-6)


def test_rasterize_drivable_area_convention(nusc):
    """Rasterised cells agree with point-in-polygon at the ego-frame cell centres, and the BEV
    row/column convention of bevlib.bev (row 0 = front) holds for a hand-made polygon."""
    import shapely

    from bevlib.real_keyframe import load_drivable_area, rasterize_drivable_area

    # A square in front-left of an ego at the global origin, yawed by 90 degrees (x_ego = north).
    global_T_ego = transform_from([100.0, 200.0, 0.0], [np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)])
    sq_ego = np.array([[10, 2], [20, 2], [20, 8], [10, 8]], float)                 # x 10..20, y 2..8
    sq_g = apply(global_T_ego, np.c_[sq_ego, np.zeros(4)])[:, :2]
    grid = BEVGrid(-30, 30, -15, 15, 60, 30)                                        # 1 m cells
    m = rasterize_drivable_area(shapely.Polygon(sq_g), global_T_ego, grid)
    assert m.dtype == np.float32 and m.shape == (60, 30)
    rows, cols = np.nonzero(m)
    assert (rows.min(), rows.max()) == (10, 19)          # x = 29.5 - row in 10.5 .. 19.5
    assert (cols.min(), cols.max()) == (7, 12)           # y = 14.5 - col in 2.5 .. 7.5
    assert m.sum() == 10 * 6

    polys = load_drivable_area(DATAROOT / "maps" / "onenorth_drivable_area.json")
    shapely.prepare(polys)      # the whole map: unprepared point-in-polygon takes a minute
    lidar = nusc.get("sample_data", nusc.sample[0]["data"]["LIDAR_TOP"])
    ep = nusc.get("ego_pose", lidar["ego_pose_token"])
    T = transform_from(ep["translation"], ep["rotation"])
    g = BEVGrid()
    bev = rasterize_drivable_area(polys, T, g)
    c_global = apply(T, np.c_[g.cell_centers().reshape(-1, 2), np.zeros(g.H * g.W)])
    ref = shapely.contains_xy(polys, c_global[:, 0], c_global[:, 1]).reshape(g.H, g.W)
    assert (bev.astype(bool) == ref).mean() > 0.999
    assert 0.2 < bev.mean() < 0.9            # the ego drives on a road: some, not all, drivable


def _passes(r) -> bool:
    cams = [m["rate"] for m in r["per_camera"].values() if m["n_points"] >= MIN_POINTS_PER_CAMERA]
    return r["overall"]["rate"] > MIN_OVERALL_AGREEMENT and min(cams) > MIN_CAMERA_AGREEMENT


def test_real_keyframe_agreement(tmp_path):
    from bevlib.real_keyframe import CAMERAS, real_keyframe_check

    r = real_keyframe_check(DATAROOT, tmp_path)
    assert r["overall"]["n_points"] > 2000
    assert sum(m["n_points"] >= MIN_POINTS_PER_CAMERA for m in r["per_camera"].values()) >= 4
    assert _passes(r), {k: (m["rate"], m["n_points"]) for k, m in r["per_camera"].items()}
    for ch in CAMERAS + ("mosaic",):
        p = tmp_path / f"{ch}.png"
        assert p.stat().st_size > 10_000, p
    assert (tmp_path / "agreement.json").exists() and (tmp_path / "bev_drivable.png").exists()
    assert not list(tmp_path.glob(".*tmp"))              # atomic writes left no temporaries
    from PIL import Image
    assert Image.open(tmp_path / "mosaic.png").size == (3 * 800, 2 * 450)


def test_real_keyframe_check_detects_a_shifted_map(tmp_path, monkeypatch):
    """Power of the check: the drivable map moved 0.6 m (3 columns) sideways must fail it."""
    import bevlib.real_keyframe as rk

    orig = rk.rasterize_drivable_area
    monkeypatch.setattr(rk, "rasterize_drivable_area", lambda *a: np.roll(orig(*a), 3, axis=1))
    assert not _passes(rk.real_keyframe_check(DATAROOT, tmp_path))


def test_real_keyframe_check_names_a_truncated_lidar_file(tmp_path):
    """The check reads LiDAR through bevlib.data.lidar: a damaged file is named, not reshaped."""
    import re
    import shutil

    from bevlib.data.nuscenes_data import DataError
    from bevlib.real_keyframe import real_keyframe_check

    root = tmp_path / "keyframe"
    shutil.copytree(DATAROOT, root)
    pcd = next((root / "samples" / "LIDAR_TOP").glob("*.pcd.bin"))
    pcd.chmod(0o644)                                    # the shared copy is read-only
    pcd.write_bytes(pcd.read_bytes()[:-3])
    with pytest.raises(DataError, match=f"{re.escape(pcd.name)}.*truncated"):
        real_keyframe_check(root, tmp_path / "out")
