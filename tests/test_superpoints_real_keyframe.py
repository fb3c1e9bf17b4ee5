"""Superpixels and superpoints on the real nuScenes keyframe (../shared/nuscenes-keyframe), checked
against nuscenes-devkit's own LiDAR-to-camera projection. Skipped when the keyframe is absent."""
import numpy as np
import pytest
from nuscenes.utils.data_classes import LidarPointCloud
from nuscenes.utils.geometry_utils import view_points
from pyquaternion import Quaternion

from bevlib.data import nuscenes_data as nd
from bevlib.data.fields import KeyframeConfig, load_keyframe
from bevlib.data.superpixels import slic_superpixels
from bevlib.data.superpoints import superpoint_figure, superpoints

WH = (800, 450)


@pytest.fixture(scope="module")
def real(keyframe_nusc):
    nusc = keyframe_nusc
    token = nusc.sample[0]["token"]
    item = load_keyframe(nusc, token, KeyframeConfig(fields=("cameras", "lidar"), image_wh=WH, cache=False))
    item["superpixels"] = [slic_superpixels(im) for im in item["images"]]
    return nusc, token, item


def _devkit_uv(nusc, sample, cam):
    """The devkit's chain of ``NuScenesExplorer.map_pointcloud_to_image`` (lidar -> ego at the sweep
    -> global -> ego at the image -> camera -> ``view_points``), on every point, at native size."""
    lidar_sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    cam_sd = nusc.get("sample_data", sample["data"][cam])
    pc = LidarPointCloud.from_file(nusc.get_sample_data_path(lidar_sd["token"]))
    # float64 through the chain: the devkit keeps float32 points, and the hop through the global
    # frame (~1 km from the origin) rounds them by ~1e-4 m, ~0.02 px at 1600 x 900
    pc.points = pc.points.astype(np.float64)
    cs = nusc.get("calibrated_sensor", lidar_sd["calibrated_sensor_token"])
    pc.rotate(Quaternion(cs["rotation"]).rotation_matrix)
    pc.translate(np.array(cs["translation"]))
    pose = nusc.get("ego_pose", lidar_sd["ego_pose_token"])
    pc.rotate(Quaternion(pose["rotation"]).rotation_matrix)
    pc.translate(np.array(pose["translation"]))
    pose = nusc.get("ego_pose", cam_sd["ego_pose_token"])
    pc.translate(-np.array(pose["translation"]))
    pc.rotate(Quaternion(pose["rotation"]).rotation_matrix.T)
    cs = nusc.get("calibrated_sensor", cam_sd["calibrated_sensor_token"])
    pc.translate(-np.array(cs["translation"]))
    pc.rotate(Quaternion(cs["rotation"]).rotation_matrix.T)
    uv = view_points(pc.points[:3], np.array(cs["camera_intrinsic"]), normalize=True)[:2].T
    return uv, pc.points[2], (cam_sd["width"], cam_sd["height"]), lidar_sd["token"], cam_sd["token"]


def test_superpoints_visible_sets_match_the_devkit(real):
    nusc, token, item = real
    sample = nusc.get("sample", token)
    rig = nd.camera_rig(nusc, token, None)                     # native intrinsics: the devkit's size
    w, h = rig["native_wh"][0]
    blank = [np.zeros((h, w), np.int32)] * len(nd.CAMERAS)
    sp = superpoints(item["lidar_points"], blank, rig["K"], rig["ego_T_cam"], (h, w))
    for c, cam in enumerate(nd.CAMERAS):
        uv, depth, (wc, hc), lidar_tok, cam_tok = _devkit_uv(nusc, sample, cam)
        assert (wc, hc) == (w, h) and len(uv) == sp.visible.shape[1]
        px = np.floor(uv + 0.5)
        vis_dev = (depth > 1.0) & (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
        diff = np.nonzero(vis_dev != sp.visible[c])[0]
        # only points a hair from a pixel-grid border may flip (float32 file coordinates)
        border = np.minimum(np.abs(uv[diff] + 0.5).min(1), np.abs(uv[diff] - [w - 0.5, h - 0.5]).min(1))
        assert len(diff) <= 2 and np.all(border < 1e-3), (cam, len(diff))
        both = vis_dev & sp.visible[c]
        np.testing.assert_allclose(sp.uv_cams[c, both], uv[both], atol=1e-4)
        # the devkit's own function (1 px margin, depth > 1 m; float32, see above) keeps the same points
        pts, _, _ = nusc.explorer.map_pointcloud_to_image(lidar_tok, cam_tok)
        ours = sp.uv_cams[c]
        margin = sp.visible[c] & (ours[:, 0] > 1) & (ours[:, 0] < w - 1) & (ours[:, 1] > 1) & (ours[:, 1] < h - 1)
        assert abs(int(margin.sum()) - pts.shape[1]) <= 2
        if margin.sum() == pts.shape[1]:
            np.testing.assert_allclose(ours[margin], pts[:2].T, atol=0.05)


def test_real_superpixels_and_superpoint_statistics(real, tmp_path):
    nusc, token, item = real
    maps = item["superpixels"]
    for m in maps:
        S = int(m.max()) + 1
        assert m.shape == (WH[1], WH[0]) and np.array_equal(np.unique(m), np.arange(S))
        assert 60 <= S <= 200, S
    sp = superpoints(item["lidar_points"], maps, item["K"], item["ego_T_cam"], (WH[1], WH[0]))
    seen = sp.superpoint >= 0
    counts = np.bincount(sp.superpoint[seen], minlength=sp.n_superpoints)
    nonempty = counts[counts > 0]
    share, med, p90 = seen.mean(), np.median(nonempty), np.percentile(nonempty, 90)
    multi = (sp.visible.sum(0) > 1).mean()
    print(f"\nreal keyframe: P={len(seen)} points, seen by a camera {share:.3f}, by >1 camera {multi:.4f}; "
          f"superpixels {sp.n_superpoints}, non-empty superpoints {len(nonempty)}; "
          f"points per superpoint median {med:.0f}, p90 {p90:.0f}, max {nonempty.max()}")
    # ranges around the values measured with the numpy SLIC (P=34688: seen 0.582, by >1 camera 0.056,
    # 766 superpixels, 559 non-empty, median 34, p90 62, max 183); LiDAR is 360 deg, the cameras
    # miss the returns close to and above the car
    assert 0.5 < share < 0.65
    assert 0.02 < multi < 0.1
    assert 0.6 < len(nonempty) / sp.n_superpoints < 0.9
    assert 20 <= med <= 50 and 40 <= p90 <= 100
    c = 1                                                      # CAM_FRONT
    on = sp.camera == c
    path = superpoint_figure(item["images"][c], maps[c], sp.uv[on], sp.superpoint[on], tmp_path / "superpoints.png")
    assert path.exists() and path.stat().st_size > 10_000


def test_real_keyframe_superpoint_artefact(real, tmp_path):
    """The outputs/ artefact's statistics equal a direct count on the same superpoints."""
    from bevlib.experiments.csc.real_keyframe import real_keyframe_superpoints

    nusc, token, item = real
    stats = real_keyframe_superpoints(tmp_path)
    h, w = item["images"].shape[1:3]
    sp = superpoints(item["lidar_points"], item["superpixels"], item["K"], item["ego_T_cam"], (h, w))
    seen = sp.superpoint >= 0
    counts = np.bincount(sp.superpoint[seen])
    assert stats["points"] == len(item["lidar_points"]) and stats["share_seen"] == seen.mean()
    assert stats["points_per_superpoint_median"] == np.median(counts[counts > 0])
    assert sum(stats["per_camera"].values()) == seen.sum()
    assert len(stats["figures"]) == 6 and all((tmp_path / f"superpoints_{c}.png").stat().st_size > 0
                                              for c in nd.CAMERAS)
    assert (tmp_path / "stats.json").exists() and (tmp_path / "stats.md").exists()
