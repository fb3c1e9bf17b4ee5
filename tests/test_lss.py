"""Camera branch (issue 13 deliverable 2): Swin backbone, LSS frustum geometry and splat, and the
splat benchmark's quick mode (deliverable 8)."""
import math

import numpy as np
import pytest
import torch

from bevlib import geometry
from bevlib.bench import nuscenes_rig
from bevlib.models.lss import (LSS_GRID, SWIN_PRESETS, LSSTransform, SwinBackbone, bev_cell_index,
                               build_splat_plan, depth_values, feature_hw, feature_intrinsics, frustum_points, splat)
from bevlib.voxel import VoxelGrid

SMALL_GRID = VoxelGrid(-12.0, 12.0, -9.0, 9.0, -1.0, 3.0, Z=1, H=6, W=5)


def _rig(image_hw=(64, 176)):
    K, T = nuscenes_rig(image_hw)
    return torch.as_tensor(K), torch.as_tensor(T)


# ------------------------------------------------------------------------------------ Swin
def test_swin_small_config_shapes_and_strides():
    torch.manual_seed(0)
    m = SwinBackbone("test", out_channels=12, out_stride=8).eval()
    with torch.no_grad():
        y = m(torch.randn(2, 3, 64, 176))
    assert y.shape == (2, 12, 8, 22) and (8, 22) == feature_hw((64, 176), 8)
    # An odd size: Swin pads, the neck follows the stride-8 stage.
    m2 = SwinBackbone(dict(embed_dim=24, depths=[1, 1, 1], num_heads=[1, 2, 2], window_size=7), 8, out_stride=16)
    with torch.no_grad():
        assert m2.eval()(torch.randn(1, 3, 70, 90)).shape == (1, 8, *feature_hw((70, 90), 16)) == (1, 8, 5, 6)


def test_swin_tiny_is_swin_t_shape_random_init():
    m = SwinBackbone("tiny")
    c = m.config
    assert (c.embed_dim, list(c.depths), list(c.num_heads), c.window_size) == (96, [2, 2, 6, 2], [3, 6, 12, 24], 7)
    assert m.encoder.channels == [192, 384, 768] and m.stride == 8
    n = sum(p.numel() for n_, p in m.encoder.named_parameters())
    assert 27e6 < n < 29e6       # Swin-T's ~28 M encoder parameters
    # Random init: two builds differ.
    a = next(m.encoder.parameters()).flatten()[:50]
    b = next(SwinBackbone(dict(SWIN_PRESETS["test"])).encoder.parameters()).flatten()[:50]
    assert a.shape == b.shape and not torch.equal(a, b)


def test_swin_bad_arguments():
    with pytest.raises(KeyError, match="config"):
        SwinBackbone("huge")
    with pytest.raises(ValueError, match="out_stride"):
        SwinBackbone("test", out_stride=16)        # the test config stops at stride 8
    with pytest.raises(FileNotFoundError, match="weights_path"):
        SwinBackbone("test", weights_path="/nonexistent/swin")
    with pytest.raises(ValueError, match="images"):
        SwinBackbone("test")(torch.randn(1, 4, 32, 32))


# -------------------------------------------------------------------------------- geometry
def test_depth_values_default_is_59_bins():
    d = depth_values()
    assert d.numel() == 59 and d[0] == 1.0 and d[-1] == 59.0
    with pytest.raises(ValueError, match="dbound"):
        depth_values((0.0, 10.0, 1.0))


def test_frustum_point_projects_back_to_its_pixel_and_depth():
    K, T = _rig((64, 176))
    fhw = (8, 22)
    Kf = feature_intrinsics(K[None], (64, 176), fhw)
    d = depth_values((1.0, 60.0, 7.0))
    pts = frustum_points(Kf, T[None], d, fhw)                      # (1, 6, D, 8, 22, 3)
    assert pts.shape == (1, 6, d.numel(), 8, 22, 3)
    rr, cc = np.meshgrid(np.arange(8), np.arange(22), indexing="ij")
    for n in range(6):
        P = pts[0, n].numpy().reshape(-1, 3)
        uv, depth, front = geometry.project(Kf[0, n].numpy(), geometry.invert(T[n].numpy()), P)
        assert front.all()
        np.testing.assert_allclose(uv[:, 0], np.broadcast_to(cc, (d.numel(), 8, 22)).ravel(), atol=1e-9)
        np.testing.assert_allclose(uv[:, 1], np.broadcast_to(rr, (d.numel(), 8, 22)).ravel(), atol=1e-9)
        np.testing.assert_allclose(depth, np.repeat(d.numpy(), 8 * 22), atol=1e-9)
    # The feature map's pixel (c, r) is the image area around ((c + 0.5) s - 0.5, (r + 0.5) s - 0.5).
    uv_img, _, _ = geometry.project(K[0].numpy(), geometry.invert(T[0].numpy()), pts[0, 0, 3, 2, 5].numpy()[None])
    np.testing.assert_allclose(uv_img[0], [(5 + 0.5) * 8 - 0.5, (2 + 0.5) * 8 - 0.5], atol=1e-9)


def test_bev_cell_index_matches_grid_and_drops_outside():
    g = SMALL_GRID
    pts = torch.tensor([[[11.9, 8.9, 0.0], [-11.9, -8.9, 2.9], [0.1, 0.1, -0.5], [12.5, 0.0, 0.0],
                         [0.0, 0.0, 3.5], [0.0, -9.5, 0.0]]], dtype=torch.float64).repeat(2, 1, 1)
    cell = bev_cell_index(pts, g)
    dx, dy = 4.0, 3.6
    exp = [0 * g.W + 0, 5 * g.W + 4, int((12 - 0.1) // dx) * g.W + int((9 - 0.1) // dy), -1, -1, -1]
    assert cell[0].tolist() == exp
    assert cell[1].tolist() == [c + g.H * g.W if c >= 0 else -1 for c in exp]


# ---------------------------------------------------------------------------------- splat
def _brute_force(x, K_img, ego_T_cam, image_hw, fhw, depths, grid):
    """Per-point Python loop: numpy unprojection, own cell arithmetic, accumulation (no torch splat)."""
    B, N, D, h, w, C = x.shape
    out = np.zeros((B, C, grid.H, grid.W))
    dropped = 0
    dx, dy = (grid.x_max - grid.x_min) / grid.H, (grid.y_max - grid.y_min) / grid.W
    for b in range(B):
        for n in range(N):
            Kf = geometry.scale_intrinsics(K_img[b, n], (image_hw[1], image_hw[0]), (fhw[1], fhw[0]))
            for k in range(D):
                for r in range(h):
                    for c in range(w):
                        p = geometry.unproject(Kf, ego_T_cam[b, n], np.array([[c, r]], float),
                                               np.array([depths[k]]))[0]
                        i = math.floor((grid.x_max - p[0]) / dx)
                        j = math.floor((grid.y_max - p[1]) / dy)
                        if not (0 <= i < grid.H and 0 <= j < grid.W and grid.z_min <= p[2] < grid.z_max):
                            dropped += 1
                            continue
                        out[b, :, i, j] += x[b, n, k, r, c]
    return out, dropped


def _tiny_case(seed=0):
    K, T = _rig((32, 48))
    K = K[[0, 3]][None].repeat(2, 1, 1, 1)
    T = T[[0, 3]][None].repeat(2, 1, 1, 1).clone()
    T[1, :, 0, 3] += 1.7          # the second sample's rig is shifted forward
    fhw = (4, 6)
    d = depth_values((2.0, 30.0, 6.0))                             # 2, 8, 14, 20, 26: some beyond the grid
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 2, d.numel(), *fhw, 3, generator=gen, dtype=torch.float64)
    return K, T, fhw, d, x


def test_splat_equals_brute_force_loop():
    K, T, fhw, d, x = _tiny_case()
    cells = bev_cell_index(frustum_points(feature_intrinsics(K, (32, 48), fhw), T, d, fhw), SMALL_GRID)
    plan = build_splat_plan(cells, (SMALL_GRID.H, SMALL_GRID.W))
    ours = splat(x, plan)
    ref, dropped = _brute_force(x.numpy(), K.numpy(), T.numpy(), (32, 48), fhw, d.numpy(), SMALL_GRID)
    assert ours.shape == (2, 3, SMALL_GRID.H, SMALL_GRID.W)
    assert 0 < dropped < x[..., 0].numel() and plan.kept == x[..., 0].numel() - dropped
    assert (np.abs(ref) > 0).sum() > 10                           # the check is not trivially about zeros
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-12, atol=1e-12)


def test_splat_gradient_and_index_add_fallback():
    K, T, fhw, d, x = _tiny_case(1)
    cells = bev_cell_index(frustum_points(feature_intrinsics(K, (32, 48), fhw), T, d, fhw), SMALL_GRID)
    plan = build_splat_plan(cells, (SMALL_GRID.H, SMALL_GRID.W))
    x = x.requires_grad_(True)
    wgt = torch.randn(2, 3, SMALL_GRID.H, SMALL_GRID.W, dtype=torch.float64)
    (splat(x, plan) * wgt).sum().backward()
    # d/dx of sum(w * bev) is the weight of the point's cell, 0 for dropped points.
    wflat = wgt.permute(0, 2, 3, 1).reshape(-1, 3)
    c = cells.reshape(-1)
    exp = torch.where((c >= 0)[:, None], wflat[c.clamp_min(0)], torch.zeros(()))
    torch.testing.assert_close(x.grad.reshape(-1, 3), exp, rtol=0, atol=0)
    small = build_splat_plan(cells[:, :1, :2], (SMALL_GRID.H, SMALL_GRID.W))
    assert torch.autograd.gradcheck(lambda t: splat(t, small), (x.detach()[:, :1, :2].clone().requires_grad_(),))
    # The index_add_ path (dtypes without a sparse kernel) gives the same sum.
    xi = x.detach().reshape(-1, 3)
    alt = torch.zeros(plan.n_cells + 1, 3, dtype=torch.float64).index_add_(0, plan.cell, xi)[:-1]
    torch.testing.assert_close(splat(x.detach(), plan), alt.view(2, 6, 5, 3).permute(0, 3, 1, 2))


def test_splat_bad_input():
    with pytest.raises(ValueError, match="cell_index"):
        build_splat_plan(torch.tensor([[0, 99]]), (2, 2))
    plan = build_splat_plan(torch.tensor([[0, -1, 3]]), (2, 2))
    with pytest.raises(ValueError, match="frustum_features"):
        splat(torch.zeros(1, 4, 2), plan)
    assert splat(torch.ones(1, 3, 2), plan)[0, :, 0, 0].tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="K_feat"):
        frustum_points(torch.eye(3).expand(2, 3, 3), torch.eye(4).expand(2, 4, 4), depth_values(), (2, 2))


# ------------------------------------------------------------------------------------ LSS
def test_lss_transform_end_to_end_and_plan_cache():
    torch.manual_seed(0)
    K, T = _rig((64, 176))
    K, T = K[None].float().repeat(2, 1, 1, 1), T[None].float().repeat(2, 1, 1, 1)
    lss = LSSTransform(in_channels=8, out_channels=4, dbound=(1.0, 60.0, 8.0))
    f = torch.randn(12, 8, 8, 22, requires_grad=True)
    bev, depth = lss(f, K, T, (64, 176), return_depth=True)
    assert bev.shape == (2, 4, LSS_GRID.H, LSS_GRID.W) and depth.shape == (12, lss.D, 8, 22)
    torch.testing.assert_close(depth.sum(1), torch.ones(12, 8, 22))
    # Same rig per sample -> identical BEV for identical features.
    f2 = f.detach().clone()
    f2[6:] = f2[:6]
    b2 = lss(f2, K, T, (64, 176))
    torch.testing.assert_close(b2[0], b2[1])
    assert len(lss._plans) == 1 and lss.plan(K, T, (64, 176), (8, 22)) is next(iter(lss._plans.values()))
    # Sum-pooling: total BEV mass = the kept points' frustum features (outer product recomputed here).
    out = lss.depthnet(f)
    x = out[:, :lss.D].softmax(1)[:, :, None] * out[:, None, lss.D:]        # (BN, D, C, h, w)
    cells = lss.plan(K, T, (64, 176), (8, 22)).cell.view(12, lss.D, 8, 22)
    kept = (cells < 2 * LSS_GRID.H * LSS_GRID.W)[:, :, None]
    torch.testing.assert_close(bev.sum((0, 2, 3)), (x * kept).sum((0, 1, 3, 4)), rtol=1e-4, atol=1e-3)
    bev.square().mean().backward()
    assert f.grad.abs().sum() > 0 and lss.depthnet.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="features"):
        lss(torch.randn(5, 8, 8, 22), K, T, (64, 176))


def test_swin_lss_pipeline_shapes():
    torch.manual_seed(0)
    K, T = _rig((64, 176))
    bb = SwinBackbone("test", out_channels=16)
    lss = LSSTransform(16, 8, dbound=(1.0, 60.0, 10.0))
    feats = bb(torch.randn(6, 3, 64, 176))
    bev = lss(feats, K[None].float(), T[None].float(), (64, 176))
    assert bev.shape == (1, 8, 128, 128) and torch.isfinite(bev).all() and bev.abs().sum() > 0


# ------------------------------------------------------------------------------ benchmark
def test_bench_splat_quick():
    from bevlib.bench_splat import bench_splat, format_splat_table

    r = bench_splat(repeats=2, warmup=0, quick=True)
    assert r["benchmark"] == "splat" and r["summary"]["all_equal"]
    assert [row["pass"] for row in r["results"]] == ["forward", "forward+backward"]
    assert r["config"]["kept_points"] > 0 and "grad_max_abs_diff" in r["results"][1]
    assert "splat benchmark" in format_splat_table(r)
    with pytest.raises(ValueError, match="repeats"):
        bench_splat(repeats=0)


def test_bench_splat_cli_helpers(tmp_path):
    import argparse

    from bevlib.bench_splat import add_splat_parser, run_splat

    ap = argparse.ArgumentParser()
    add_splat_parser(ap.add_subparsers(dest="what"))
    a = ap.parse_args(["splat", "--quick", "--repeats", "1", "--warmup", "0", "--out", str(tmp_path / "s.json")])
    seen = {}
    assert run_splat(a, lambda r, out, name, fmt: seen.update(r=r, out=out, name=name) or 0) == 0
    assert seen["name"] == "splat" and seen["out"] == str(tmp_path / "s.json") and seen["r"]["config"]["repeats"] == 1
