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
