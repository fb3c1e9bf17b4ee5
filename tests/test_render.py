import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bevlib import geometry as geo
from bevlib.bev import BEVGrid
from bevlib.render import ground_hits, render_bev, sampling_grid

FRONT = geo.transform_from([1.70, 0.016, 1.51], [0.4998, -0.5030, 0.4998, -0.4974])  # nuScenes CAM_FRONT
BACK = geo.transform_from([0.028, 0.003, 1.579], [0.5038, -0.4974, -0.4942, 0.5045])  # nuScenes CAM_BACK
K = np.array([[160.0, 0, 127.5], [0, 160.0, 71.5], [0, 0, 1]])
HW = (144, 256)


def rig():
    return np.stack([K, K])[None], np.stack([FRONT, BACK])[None]


def test_single_lit_cell_lands_where_projection_says():
    grid = BEVGrid(H=60, W=30)  # 1 m cells
    Ks, Ts = rig()
    for (i, j) in [(15, 15), (20, 10), (45, 18)]:     # ahead, ahead-left, behind
        bev = torch.zeros(1, 1, 60, 30)
        bev[0, 0, i, j] = 1.0
        out, valid = render_bev(bev, Ks, Ts, HW, grid)
        x, y = grid.cell_centers()[i, j]
        cam = 0 if x > 0 else 1
        uv, _, front = geo.project(K, geo.invert(Ts[0, cam]), np.array([[x, y, 0.0]]))
        assert front[0]
        img = out[0, cam, 0]
        v, u = np.unravel_index(int(img.argmax()), img.shape)
        # the brightest pixel is the one whose ray passes nearest the cell centre: within ~1 pixel
        assert abs(u - uv[0, 0]) <= 1.5 and abs(v - uv[0, 1]) <= 1.5, (u, v, uv)
        assert out[0, 1 - cam].abs().max() == 0  # the other camera does not see it
        assert valid[0, cam, v, u]


def test_ground_hits_agree_with_projection():
    hits, below = ground_hits(K[None], FRONT[None], HW)
    v, u = 120, 40
    x, y = hits[0, v, u]
    uv, _, _ = geo.project(K, geo.invert(FRONT), np.array([[x, y, 0.0]]))
    np.testing.assert_allclose(uv[0], [u, v], atol=1e-6)
    assert below[0, v, u] and not below[0, 10, u]  # sky above the horizon is invalid


def test_constant_map_renders_constant_on_valid_pixels_and_is_differentiable():
    grid = BEVGrid(H=60, W=30)
    Ks, Ts = rig()
    bev = torch.full((1, 3, 60, 30), 2.0, requires_grad=True)
    out, valid = render_bev(bev, Ks, Ts, HW, grid)
    assert out.shape == (1, 2, 3, *HW) and valid.shape == (1, 2, *HW)
    assert 0.2 < valid.float().mean() < 0.6
    inner = valid & (torch.nn.functional.max_pool2d((~valid).float(), 3, 1, 1) == 0)  # away from mask edges
    assert torch.allclose(out[:, :, 0][inner], torch.tensor(2.0))
    assert (out[:, :, 0][~valid] == 0).all()
    out.sum().backward()
    assert bev.grad.abs().sum() > 0


def test_sampling_grid_is_cached_per_calibration():
    grid = BEVGrid(H=60, W=30)
    a = sampling_grid(K[None], FRONT[None], HW, grid)
    b = sampling_grid(K[None], FRONT[None], HW, grid)
    assert a[0] is b[0]
    c = sampling_grid(K[None], BACK[None], HW, grid)
    assert c[0] is not a[0]


def test_bad_backend_and_shapes():
    grid = BEVGrid(H=60, W=30)
    Ks, Ts = rig()
    with pytest.raises(ValueError, match="backend"):
        render_bev(torch.zeros(1, 1, 60, 30), Ks, Ts, HW, grid, backend="opengl")
    with pytest.raises(ValueError, match="B, C, H, W"):
        render_bev(torch.zeros(1, 60, 30), Ks, Ts, HW, grid)


def test_native_render_matches_grid_sample_forward_and_backward():
    """On CPU the render runs the native kernels (bevlib.native): the forward equals grid_sample's
    bit for bit, the input gradient grid_sample's own backward up to summation order."""
    import torch.nn.functional as F
    from bevlib import native
    if native.render_kernels() is None:
        pytest.skip(f"native render kernels unavailable: {native.status()}")
    grid = BEVGrid(H=40, W=20)
    Ks = np.stack([np.stack([K, K]), np.stack([K * [[1.1], [1.1], [1]], K])])       # two different rigs
    Ts = np.stack([np.stack([FRONT, BACK]), np.stack([BACK, FRONT])])
    torch.manual_seed(0)
    bev = torch.randn(2, 3, 40, 20, requires_grad=True)
    out, valid = render_bev(bev, Ks, Ts, HW, grid)
    assert out.grad_fn.next_functions[0][0].name() == "_NativeGatherBackward"
    g = torch.randn_like(out)
    (out * g).sum().backward()
    # reference: the plain grid_sample path, autograd through its native backward
    coords = torch.stack([sampling_grid(Ks[b], Ts[b], HW, grid)[0] for b in range(2)]).view(4, *HW, 2)
    ref_bev = bev.detach().clone().requires_grad_(True)
    src = ref_bev[:, None].expand(2, 2, 3, 40, 20).reshape(4, 3, 40, 20)
    ref = F.grid_sample(src, coords, mode="bilinear", padding_mode="zeros", align_corners=False).view(2, 2, 3, *HW)
    (ref * g).sum().backward()
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):  # grid_sample fuses, as the kernels do
        assert torch.equal(out, ref)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bev.grad, ref_bev.grad, rtol=1e-4, atol=1e-4)


def test_batched_torch_grids_equal_the_numpy_grid_bit_for_bit():
    """sampling_grids (one torch pass over many cameras, the GPU / no-compiler path of a new rig)
    against sampling_grid (numpy, per calibration): identical coordinates and masks."""
    from test_native import _rigs
    from bevlib.render import sampling_grids

    for hw, grid in (((72, 128), BEVGrid()), ((45, 80), BEVGrid(H=100, W=60, x_min=-20.0, y_max=25.0))):
        Ks, Ts = _rigs(7, 2, hw)
        coords, valid = sampling_grids(Ks.reshape(-1, 3, 3), Ts.reshape(-1, 4, 4), hw, grid)
        ref = [sampling_grid(Ks[b], Ts[b], hw, grid) for b in range(2)]
        assert torch.equal(coords, torch.cat([c for c, _ in ref])) and torch.equal(valid, torch.cat([v for _, v in ref]))


def test_new_rig_every_call_renders_as_grid_sample_on_its_numpy_grid():
    """Every call with a rig not seen before (per-camera ego poses on real data) gives the output
    of grid_sample on that rig's numpy grid, bitwise where grid_sample fuses as the kernels do, on
    both render paths: the native one (float32) and the torch one (float64, as on a GPU)."""
    from test_native import _rigs

    grid = BEVGrid(H=40, W=20)
    torch.manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        bev = torch.randn(2, 3, 40, 20, dtype=dtype, requires_grad=True)
        for seed in range(3):
            Ks, Ts = _rigs(seed, 2, HW)
            out, valid = render_bev(bev, Ks, Ts, HW, grid)
            coords = torch.stack([sampling_grid(Ks[b], Ts[b], HW, grid)[0] for b in range(2)]).view(-1, *HW, 2)
            src = bev.detach()[:, None].expand(2, 6, 3, 40, 20).reshape(12, 3, 40, 20)
            ref = F.grid_sample(src, coords.to(dtype), mode="bilinear", padding_mode="zeros", align_corners=False)
            if dtype == torch.float64 or torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
                assert torch.equal(out.detach(), ref.view(2, 6, 3, *HW)), (dtype, seed)
            torch.testing.assert_close(out.detach(), ref.view(2, 6, 3, *HW), rtol=1e-5, atol=1e-5)
            assert torch.equal(valid, torch.stack([sampling_grid(Ks[b], Ts[b], HW, grid)[1] for b in range(2)]))
