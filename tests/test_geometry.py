import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from nuscenes.utils.geometry_utils import view_points

from bevlib import geometry as geo
from bevlib.bev import BEVGrid, warp_bev

angles = st.floats(-np.pi, np.pi, allow_nan=False)
coords = st.floats(-50, 50, allow_nan=False)


def random_quat(rng):
    q = rng.normal(size=4)
    return q / np.linalg.norm(q)


def test_invert_and_apply_roundtrip():
    rng = np.random.default_rng(0)
    T = geo.transform_from(rng.normal(size=3), random_quat(rng))
    p = rng.normal(size=(20, 3))
    np.testing.assert_allclose(geo.apply(geo.invert(T), geo.apply(T, p)), p, atol=1e-12)
    np.testing.assert_allclose(geo.invert(T) @ T, np.eye(4), atol=1e-12)


def test_transform_from_rejects_bad_quaternion():
    with pytest.raises(ValueError, match="quaternion"):
        geo.transform_from([0, 0, 0], [0, 0, 0, 0])


def test_project_matches_devkit_view_points():
    rng = np.random.default_rng(1)
    K = np.array([[1266.4, 0, 816.3], [0, 1266.4, 491.5], [0, 0, 1]])
    cam_T_ego = geo.transform_from([0.1, -1.5, 0.2], random_quat(rng))
    pts = rng.uniform(-20, 20, size=(50, 3))
    uv, depth, front = geo.project(K, cam_T_ego, pts)
    p_cam = geo.apply(cam_T_ego, pts)
    ref = view_points(p_cam.T, K, normalize=True)[:2].T
    np.testing.assert_allclose(uv[front], ref[front], rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(depth, p_cam[:, 2])


@settings(max_examples=40, deadline=None)
@given(st.floats(2.0, 80.0), st.floats(0, 1599), st.floats(0, 899), coords, coords, angles)
def test_project_unproject_roundtrip(depth, u, v, tx, ty, yaw):
    K = np.array([[1000.0, 0, 800], [0, 1000.0, 450], [0, 0, 1]])
    X_T_cam = geo.se2(tx, ty, yaw) @ geo.transform_from([0, 0, 1.5], [0.5, -0.5, 0.5, -0.5])
    pts = geo.unproject(K, X_T_cam, np.array([[u, v]]), np.array([depth]))
    uv, d, front = geo.project(K, geo.invert(X_T_cam), pts)
    assert front[0]
    np.testing.assert_allclose(uv[0], [u, v], atol=1e-6)
    np.testing.assert_allclose(d[0], depth, rtol=1e-9)


@settings(max_examples=40, deadline=None)
@given(coords, coords, angles, coords, coords, angles)
def test_ego_motion_compose_and_invert(x0, y0, a0, dx, dy, da):
    g_prev = geo.se2(x0, y0, a0)
    step = geo.se2(dx, dy, da)
    g_curr = g_prev @ step
    prev_T_curr, (mx, my, mphi) = geo.ego_motion(g_prev, g_curr)
    np.testing.assert_allclose(prev_T_curr, step, atol=1e-9)
    np.testing.assert_allclose(geo.se2(mx, my, mphi), step, atol=1e-9)
    # composing with the inverse motion returns to the previous pose
    np.testing.assert_allclose(g_curr @ geo.invert(prev_T_curr), g_prev, atol=1e-9)


def test_scale_intrinsics_maps_pixel_edges():
    K = np.array([[1000.0, 0, 799.5], [0, 1000.0, 449.5], [0, 0, 1]])  # principal point at the centre
    K2 = geo.scale_intrinsics(K, (1600, 900), (400, 225))
    np.testing.assert_allclose(K2[:2, 2], [199.5, 112.0])
    np.testing.assert_allclose(K2[0, 0], 250.0)


def test_bev_grid_convention():
    g = BEVGrid(H=150, W=150)
    c = g.cell_centers()
    np.testing.assert_allclose(c[0, 0], [30 - 0.2, 15 - 0.1])          # front-left corner cell
    np.testing.assert_allclose(c[-1, -1], [-30 + 0.2, -15 + 0.1])
    np.testing.assert_allclose(g.xy_to_rowcol(c), np.stack(np.meshgrid(np.arange(150), np.arange(150), indexing="ij"), -1), atol=1e-9)
    n = g.xy_to_normalized(c)
    assert n[..., 0].min() > -1 and n[..., 0].max() < 1
    # ranged masks: 20 m of 60 m is a third of the rows
    assert g.range_mask(20).sum() == 50 * 150 and g.range_mask(60).all()


def test_warp_bev_shifts_by_one_cell():
    g = BEVGrid(H=20, W=10)  # 3 m rows, 3 m columns
    dx, dy = g.cell_size
    f = torch.zeros(1, 1, 20, 10)
    f[0, 0, 10, 5] = 1.0
    # the destination ego frame is the source frame moved forward by one row: src_T_dst = translation
    out = warp_bev(f, torch.from_numpy(geo.se2(dx, 0, 0)), g)
    assert out[0, 0, 11, 5] == pytest.approx(1.0) and out.sum() == pytest.approx(1.0)
    out = warp_bev(f, torch.from_numpy(geo.se2(0, dy, 0)), g)   # one column to the left in the source
    assert out[0, 0, 10, 6] == pytest.approx(1.0)
    # identity
    torch.testing.assert_close(warp_bev(f, torch.eye(4, dtype=torch.float64), g), f)


# --- torch versions --------------------------------------------------------------------------------

def random_rig(rng, n):
    """n random camera rigs: K (n, 3, 3), ego_T_cam (n, 4, 4) with the camera looking along +x."""
    K = np.stack([np.array([[rng.uniform(300, 1500), 0, rng.uniform(300, 900)],
                            [0, rng.uniform(300, 1500), rng.uniform(200, 500)], [0, 0, 1]]) for _ in range(n)])
    T = np.stack([geo.se2(*rng.uniform(-2, 2, 2), rng.uniform(-np.pi, np.pi))
                  @ geo.transform_from([0, 0, 1.5], random_quat(rng) * 0.05 + np.array([0.5, -0.5, 0.5, -0.5]))
                  for _ in range(n)])
    return K, T


def test_torch_transforms_agree_with_numpy_batched():
    rng = np.random.default_rng(5)
    B, N, P = 2, 3, 40
    Ts = np.stack([np.stack([geo.transform_from(rng.normal(size=3) * 5, random_quat(rng)) for _ in range(N)])
                   for _ in range(B)])                                     # (B, N, 4, 4)
    pts = rng.uniform(-30, 30, size=(B, N, P, 3))
    Tt, pt = torch.from_numpy(Ts), torch.from_numpy(pts)
    inv = geo.invert_t(Tt)
    out = geo.apply_t(Tt, pt)
    for b in range(B):
        for n in range(N):
            np.testing.assert_allclose(inv[b, n].numpy(), geo.invert(Ts[b, n]), atol=1e-12)
            np.testing.assert_allclose(out[b, n].numpy(), geo.apply(Ts[b, n], pts[b, n]), atol=1e-12)
    torch.testing.assert_close(Tt @ inv, torch.eye(4, dtype=torch.float64).expand(B, N, 4, 4))
    # broadcasting: one transform per batch element for all N point sets, one point set for all N
    np.testing.assert_allclose(geo.apply_t(Tt[:, :1], pt)[1, 2].numpy(), geo.apply(Ts[1, 0], pts[1, 2]), atol=1e-12)
    np.testing.assert_allclose(geo.apply_t(Tt, pt[:, :1])[1, 2].numpy(), geo.apply(Ts[1, 2], pts[1, 0]), atol=1e-12)
    # float32 in, float32 out; mixed dtypes promote
    assert geo.apply_t(Tt.float(), pt.float()).dtype == torch.float32
    assert geo.apply_t(Tt.float(), pt).dtype == torch.float64
    np.testing.assert_allclose(geo.apply_t(Tt.float(), pt.float()).numpy(), out.numpy(), atol=1e-4)
    with pytest.raises(ValueError):
        geo.apply_t(Tt[..., :3, :], pt)


def test_project_t_agrees_with_numpy_on_random_rigs():
    rng = np.random.default_rng(6)
    n = 6
    K, ego_T_cam = random_rig(rng, n)
    pts = rng.uniform(-40, 40, size=(n, 200, 3))
    pts[..., 2] = rng.uniform(-1, 3, size=(n, 200))
    cam_T_ego = geo.invert(ego_T_cam)
    uv, depth, front = geo.project_t(torch.from_numpy(K), geo.invert_t(torch.from_numpy(ego_T_cam)), torch.from_numpy(pts))
    assert uv.shape == (n, 200, 2) and depth.shape == front.shape == (n, 200) and front.dtype == torch.bool
    for c in range(n):
        uv_n, d_n, f_n = geo.project(K[c], cam_T_ego[c], pts[c])
        np.testing.assert_array_equal(front[c].numpy(), f_n)
        np.testing.assert_allclose(depth[c].numpy(), d_n, atol=1e-10)
        # behind the camera too: both mirror the point through the optical centre
        np.testing.assert_allclose(uv[c].numpy(), uv_n, rtol=1e-9, atol=1e-7)
    assert front.any() and (~front).any()
    # one shared point set for all six cameras
    uv_b, _, _ = geo.project_t(torch.from_numpy(K), torch.from_numpy(cam_T_ego), torch.from_numpy(pts[0]))
    np.testing.assert_allclose(uv_b[3].numpy(), geo.project(K[3], cam_T_ego[3], pts[0])[0], rtol=1e-9, atol=1e-7)
    # unproject_t inverts project_t for points in front
    back = geo.unproject_t(torch.from_numpy(K), torch.from_numpy(ego_T_cam), uv, depth)
    np.testing.assert_allclose(back.numpy()[front.numpy()], pts[front.numpy()], atol=1e-8)


def test_torch_geometry_is_differentiable():
    rng = np.random.default_rng(8)
    K, ego_T_cam = random_rig(rng, 1)
    Kt = torch.from_numpy(K[0]).requires_grad_()
    T = torch.from_numpy(geo.invert(ego_T_cam[0])).requires_grad_()
    p = torch.from_numpy(np.c_[rng.uniform(5, 20, 5), rng.uniform(-3, 3, 5), rng.uniform(0, 2, 5)])
    p = geo.apply_t(torch.from_numpy(ego_T_cam[0]), geo.apply_t(T.detach(), p)).requires_grad_()  # in front
    assert torch.autograd.gradcheck(lambda K_, T_, p_: geo.project_t(K_, T_, p_)[0], (Kt, T, p))
    assert torch.autograd.gradcheck(lambda T_, p_: geo.apply_t(geo.invert_t(T_), p_), (T, p))
    # a point in the camera plane (depth 0): finite uv and gradients, flagged not in front
    p0 = torch.tensor([[1.0, 2.0, 0.0]], dtype=torch.float64, requires_grad=True)
    uv, d, front = geo.project_t(torch.eye(3, dtype=torch.float64), torch.eye(4, dtype=torch.float64), p0)
    uv.sum().backward()
    assert torch.isfinite(uv).all() and torch.isfinite(p0.grad).all() and not front.any()


def test_project_t_matches_devkit_on_real_keyframe(keyframe_nusc):
    """LiDAR points (devkit's map_pointcloud_to_image chain: pyquaternion rotations, view_points)
    and annotation box corners (devkit's get_sample_data boxes in the camera frame) against
    project_t with transforms composed in torch."""
    from nuscenes.utils.data_classes import LidarPointCloud
    from pyquaternion import Quaternion

    nusc = keyframe_nusc
    sample = nusc.sample[0]
    lidar_sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    pc = LidarPointCloud.from_file(nusc.get_sample_data_path(lidar_sd["token"]))
    pts_lidar = pc.points[:3].T.copy()

    def rec_T(rec):
        return torch.from_numpy(geo.transform_from(rec["translation"], rec["rotation"]))

    for cam in ("CAM_FRONT", "CAM_BACK_LEFT"):
        cam_sd = nusc.get("sample_data", sample["data"][cam])
        cs_cam = nusc.get("calibrated_sensor", cam_sd["calibrated_sensor_token"])
        cs_lid = nusc.get("calibrated_sensor", lidar_sd["calibrated_sensor_token"])
        pose_cam = nusc.get("ego_pose", cam_sd["ego_pose_token"])
        pose_lid = nusc.get("ego_pose", lidar_sd["ego_pose_token"])
        K = np.array(cs_cam["camera_intrinsic"])
        # devkit chain (nuscenes.py map_pointcloud_to_image)
        p = LidarPointCloud(pc.points.astype(np.float64))   # float64: float32 global coords are ~0.1 mm coarse
        p.rotate(Quaternion(cs_lid["rotation"]).rotation_matrix)
        p.translate(np.array(cs_lid["translation"]))
        p.rotate(Quaternion(pose_lid["rotation"]).rotation_matrix)
        p.translate(np.array(pose_lid["translation"]))
        p.translate(-np.array(pose_cam["translation"]))
        p.rotate(Quaternion(pose_cam["rotation"]).rotation_matrix.T)
        p.translate(-np.array(cs_cam["translation"]))
        p.rotate(Quaternion(cs_cam["rotation"]).rotation_matrix.T)
        ref_depth = p.points[2]
        ref_uv = view_points(p.points[:3], K, normalize=True)[:2].T
        # ours: cam_T_lidar = inv(ego_T_cam) inv(global_T_ego_cam) global_T_ego_lid ego_T_lidar
        cam_T_lidar = (geo.invert_t(rec_T(cs_cam)) @ geo.invert_t(rec_T(pose_cam))
                       @ rec_T(pose_lid) @ rec_T(cs_lid))
        uv, depth, front = geo.project_t(torch.from_numpy(K), cam_T_lidar, torch.from_numpy(pts_lidar))
        f = front.numpy()
        assert f.sum() > 1000
        np.testing.assert_array_equal(f, ref_depth > 1e-3)
        np.testing.assert_allclose(depth.numpy(), ref_depth, atol=1e-6)
        np.testing.assert_allclose(uv.numpy()[f], ref_uv[f], rtol=1e-7, atol=1e-5)

        # box corners: devkit boxes already in the camera frame vs global corners through cam_T_global
        _, boxes, _ = nusc.get_sample_data(cam_sd["token"])
        assert boxes
        corners_g = np.stack([nusc.get_box(b.token).corners().T for b in boxes])          # (M, 8, 3)
        ref = np.stack([view_points(b.corners(), K, normalize=True)[:2].T for b in boxes])
        cam_T_global = geo.invert_t(rec_T(cs_cam)) @ geo.invert_t(rec_T(pose_cam))
        uvb, db, fb = geo.project_t(torch.from_numpy(K), cam_T_global, torch.from_numpy(corners_g))
        np.testing.assert_allclose(db.numpy(), np.stack([b.corners()[2] for b in boxes]), atol=1e-6)
        np.testing.assert_allclose(uvb.numpy()[fb.numpy()], ref[fb.numpy()], rtol=1e-7, atol=1e-5)
