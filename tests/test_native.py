"""The native CPU render kernels (bevlib.native) against torch's grid_sample, an independent
implementation of the same bilinear gather (forward and input gradient)."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bevlib import native

needs_kernels = pytest.mark.skipif(native.render_kernels() is None,
                                   reason=f"native render kernels unavailable: {native.status()}")


# torch's vectorised grid_sample fuses its multiply-adds where the CPU has FMA (AVX2 / AVX-512
# dispatch); the kernels make the same fused operations, so there the forward is bit-identical.
FUSED = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


def reference(bev, coords, n_maps):
    """grid_sample of each camera's map (cameras of map m at m*N .. m*N + N - 1)."""
    BN = coords.shape[0]
    src = bev.repeat_interleave(BN // n_maps, dim=0)
    return F.grid_sample(src, coords, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_rig(BN, h, w, seed, holes=True):
    """Coordinates that reach past the grid's border (partial taps) with valid masks that have
    several runs per row, as no pinhole camera would give (the kernels must not assume one run)."""
    g = torch.Generator().manual_seed(seed)
    coords = torch.rand(BN, h, w, 2, generator=g) * 2.3 - 1.15
    valid = torch.rand(BN, h, w, generator=g) < 0.8
    if holes:
        valid[:, :, w // 3: w // 2] = False
    valid[0, 0] = False                        # an empty row
    valid[-1, -1] = True                       # a full row
    coords[~valid] = -4.0                      # invalid pixels: far outside, as sampling_grid does
    return coords, valid


def check(B, N, C, H, W, h, w, seed, threads):
    coords, valid = random_rig(B * N, h, w, seed)
    plan = native.build_plan(coords, valid, B, (H, W))
    g = torch.Generator().manual_seed(seed + 1)
    bev = torch.randn(B, C, H, W, generator=g)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = native.gather_forward(plan, bev)
        grad_out = torch.randn(B * N, C, h, w, generator=g)
        grad = native.gather_backward(plan, grad_out)
    finally:
        torch.set_num_threads(old)
    ref_bev = bev.clone().requires_grad_(True)
    ref = reference(ref_bev, coords, B)
    ref.backward(grad_out)
    return out, ref, grad, ref_bev.grad


@needs_kernels
@pytest.mark.parametrize("B,N,C,H,W,threads", [
    (1, 6, 13, 30, 20, 2),     # the busch2026 setting in small: one map, six cameras
    (2, 3, 4, 17, 23, 1),      # two maps, non-square grid, one thread
    (2, 2, 20, 12, 12, 3),     # more channels than one 16-lane block, three threads
    (1, 1, 1, 5, 7, 2),
])
def test_kernels_match_grid_sample(B, N, C, H, W, threads):
    out, ref, grad, ref_grad = check(B, N, C, H, W, h=24, w=40, seed=C + H, threads=threads)
    assert out.shape == ref.shape and out.is_contiguous()
    if FUSED:
        assert torch.equal(out, ref), float((out - ref).abs().max())    # bit-identical forward
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert grad.shape == ref_grad.shape
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-4)


@needs_kernels
def test_thread_count_does_not_change_results():
    a = check(1, 6, 13, 30, 20, 24, 40, seed=3, threads=1)
    b = check(1, 6, 13, 30, 20, 24, 40, seed=3, threads=2)
    assert torch.equal(a[0], b[0])
    torch.testing.assert_close(a[2], b[2], rtol=1e-6, atol=1e-5)


@needs_kernels
def test_nan_in_the_map_stays_where_grid_sample_puts_it():
    """Taps outside the grid read a zero row, never cell 0: a NaN there must not leak."""
    coords, valid = random_rig(2, 16, 24, seed=7)
    plan = native.build_plan(coords, valid, 1, (10, 10))
    bev = torch.randn(1, 3, 10, 10)
    bev[0, :, 0, 0] = float("nan")
    out, ref = native.gather_forward(plan, bev), reference(bev, coords, 1)
    assert torch.isnan(ref).any() and torch.equal(torch.isnan(out), torch.isnan(ref))
    torch.testing.assert_close(torch.nan_to_num(out), torch.nan_to_num(ref), rtol=1e-5, atol=1e-5)


@needs_kernels
def test_bad_inputs_raise():
    coords, valid = random_rig(2, 8, 8, seed=1)
    with pytest.raises(ValueError, match="do not fit"):
        native.build_plan(coords, valid[:1], 1, (4, 4))
    with pytest.raises(ValueError, match="do not fit"):
        native.build_plan(coords, valid, 3, (4, 4))
    plan = native.build_plan(coords, valid, 1, (4, 4))
    with pytest.raises(ValueError, match="float32"):
        native.gather_forward(plan, torch.zeros(1, 2, 5, 4))
    with pytest.raises(ValueError, match="float32"):
        native.gather_forward(plan, torch.zeros(1, 2, 4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="grad_out"):
        native.gather_backward(plan, torch.zeros(2, 2, 8, 9))


def test_kernels_build_where_a_compiler_exists():
    if os.environ.get("BEVLIB_NATIVE", "1") in ("0", "false", "no", "off"):
        pytest.skip("BEVLIB_NATIVE=0 switches the kernels off")
    cc = native._compiler()[0]
    if shutil.which(cc) is None:
        pytest.skip(f"no C compiler {cc!r} on PATH: the renderer falls back to grid_sample")
    assert native.render_kernels() is not None, native.status()
    assert native.status().startswith("loaded ")


@needs_kernels
@pytest.mark.slow   # two fresh interpreters importing torch (~6 s)
def test_switched_off_falls_back_to_grid_sample(tmp_path):
    """BEVLIB_NATIVE=0: no kernels, and render_bev gives the same images through grid_sample."""
    code = (
        "import sys, numpy as np, torch\n"
        "from bevlib import native, render\n"
        "from bevlib.bev import BEVGrid\n"
        "from bevlib.bench import nuscenes_rig\n"
        "K, T = nuscenes_rig((36, 64)); grid = BEVGrid(H=20, W=20)\n"
        "bev = torch.randn(1, 4, 20, 20, generator=torch.Generator().manual_seed(0), requires_grad=True)\n"
        "out = render.render_bev(bev, K[None], T[None], (36, 64), grid)[0]\n"
        "names = [f[0].name() for f in out.grad_fn.next_functions if f[0] is not None]\n"
        "assert any('NativeGather' in n for n in names) == (sys.argv[2] == '1'), (native.status(), names)\n"
        "out.sum().backward()\n"
        "np.save(sys.argv[1], np.concatenate([out.detach().numpy().ravel(), bev.grad.numpy().ravel()]))\n"
    )
    results = {}
    for flag in ("0", "1"):
        path = tmp_path / f"native_{flag}.npy"
        subprocess.run([sys.executable, "-c", code, str(path), flag], check=True,
                       env=dict(os.environ, BEVLIB_NATIVE=flag))
        results[flag] = np.load(path)
    n = 6 * 4 * 36 * 64
    np.testing.assert_allclose(results["0"][:n], results["1"][:n], rtol=1e-6, atol=1e-6)
    if FUSED:
        assert np.array_equal(results["0"][:n], results["1"][:n])
    np.testing.assert_allclose(results["0"][n:], results["1"][n:], rtol=1e-5, atol=1e-4)


def test_broken_compiler_is_reported_not_raised(tmp_path, monkeypatch):
    monkeypatch.setenv("BEVLIB_NATIVE", "1")
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("BEVLIB_CACHE", str(tmp_path / "cache"))
    native.render_kernels.cache_clear()
    try:
        assert native.render_kernels() is None
        assert "unavailable" in native.status() and "no-such-cc" in native.status()
    finally:
        native.render_kernels.cache_clear()
        monkeypatch.undo()
        native.render_kernels()


def _rigs(seed: int, B: int, hw):
    """B copies of the real nuScenes rig, each camera moved and turned a little (a new rig per
    keyframe, as per-camera ego poses give); the last camera pitched up so the horizon crosses its
    rows at a slant (rows with partial validity on both sides)."""
    from bevlib import geometry as geo
    from bevlib.bench import nuscenes_rig

    rng = np.random.default_rng(seed)
    K, T = nuscenes_rig(hw)
    Ks, Ts = [], []
    for _ in range(B):
        Tb = T.copy()
        Tb[:, :3, 3] += rng.normal(0.0, 0.4, (len(T), 3))
        for k in range(len(T)):
            yaw, roll = rng.normal(0.0, 0.05), (0.3 if k == len(T) - 1 else 0.0)
            Tb[k] = geo.transform_from([0, 0, 0], [np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)]) @ Tb[k]
            Tb[k, :3, :3] = Tb[k, :3, :3] @ geo.transform_from([0, 0, 0], [np.cos(roll / 2), 0, 0, np.sin(roll / 2)])[:3, :3]
        Ks.append(K)
        Ts.append(Tb)
    return np.stack(Ks), np.stack(Ts)


@needs_kernels
@pytest.mark.parametrize("hw,bev_hw,B,threads", [((72, 128), (150, 150), 2, 2), ((45, 80), (100, 60), 3, 1),
                                                 ((288, 512), (200, 200), 1, 2)])
def test_plan_from_rig_equals_plan_from_numpy_grid(hw, bev_hw, B, threads):
    """The cold path (issue 15): one native pass from the calibration gives the same plan, array for
    array, and the same valid mask as build_plan on the numpy sampling grid (the reference path)."""
    from bevlib.bev import BEVGrid
    from bevlib.render import rig_rays, sampling_grid

    grid = BEVGrid(H=bev_hw[0], W=bev_hw[1])
    Ks, Ts = _rigs(B + threads, B, hw)
    ref_c, ref_v = zip(*(sampling_grid(Ks[b], Ts[b], hw, grid) for b in range(B)))
    ref = native.build_plan(torch.cat(ref_c), torch.cat(ref_v), B, bev_hw)
    M, O = rig_rays(Ks.reshape(-1, 3, 3), Ts.reshape(-1, 4, 4))
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        plan, valid = native.build_plan_from_rig(M, O, (grid.x_min, grid.x_max, grid.y_min, grid.y_max), hw, B, bev_hw)
    finally:
        torch.set_num_threads(old)
    assert torch.equal(valid, torch.cat(ref_v)) and 0.1 < valid.float().mean() < 0.9
    for f in ("row_ptr", "segs", "idx", "wt", "map_of_cam", "row_cost"):
        a, b = getattr(plan, f), getattr(ref, f)
        assert a.dtype == b.dtype and np.array_equal(a, b), f
    assert plan.shape == ref.shape
    with pytest.raises(ValueError, match="do not fit"):
        native.build_plan_from_rig(M, O, (grid.x_min, grid.x_max, grid.y_min, grid.y_max), hw, len(M) + 1, bev_hw)
