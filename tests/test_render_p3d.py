"""PyTorch3D backend of the renderer (busch2026 Sec. III-B / IV-A) against the analytic backend.

The two backends compute the same thing by different means (mesh rasterisation + TexturesUV vs.
ray / ground-plane intersection + grid_sample), so agreement on the real nuScenes rig checks the
conventions of both: BEV rows/columns, UVs, extrinsics, half-pixel offsets.
"""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bevlib.bev import BEVGrid
from bevlib.geometry import scale_intrinsics, transform_from
from bevlib.render import render_bev

DATAROOT = Path(__file__).resolve().parents[1].parent / "shared" / "nuscenes-keyframe"
CAMERAS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_FRONT_LEFT")
HW = (64, 112)
GRID = BEVGrid()                  # busch2026 Sec. IV-A: 60 m x 30 m, 150 x 150
# Tolerances from the measurement on the real rig at 64 x 112: max abs difference 8e-4 (smooth)
# and 1.7e-3 (one-hot) on values in [0, 1], mean 1e-5; masks identical. The residual is float32
# perspective-correct UV interpolation in PyTorch3D near the horizon: 1.7e-3 of a one-hot class
# step is 1/600 of a BEV cell (0.3 mm). A half-pixel convention slip gives max 0.49, mean 0.04.
VALUE_ATOL = 5e-3
MEAN_ATOL = 1e-4
MAX_MASK_MISMATCH = 0.002


def _p3d():
    return pytest.importorskip("pytorch3d", reason="pytorch3d is not installed (built from source, see README)")


def _hand_rig():
    """Six cameras like nuScenes' (1600 x 900, f = 1266 px) at 1.5 m, yawed around the ego."""
    Ks, Ts = [], []
    for yaw_deg, x, y in ((0, 1.7, 0.0), (-55, 1.55, -0.5), (-110, 1.0, -0.5),
                          (180, 0.0, 0.0), (110, 1.0, 0.5), (55, 1.55, 0.5)):
        th = np.deg2rad(yaw_deg)
        fwd, right, down = [np.cos(th), np.sin(th), 0], [np.sin(th), -np.cos(th), 0], [0, 0, -1]
        T = np.eye(4)
        T[:3, :3] = np.stack([right, down, fwd], 1)
        T[:3, 3] = [x, y, 1.5]
        Ks.append(np.array([[1266.0, 0, 816.3], [0, 1266.0, 491.5], [0, 0, 1]]))
        Ts.append(T)
    return np.stack(Ks), np.stack(Ts)


def rig(hw=HW):
    """(N, 3, 3) intrinsics at ``hw`` and (N, 4, 4) ego_T_cam of the real nuScenes rig (keyframe
    calibration via nuscenes-devkit) or, when the keyframe is absent, of a hand-written rig."""
    if (DATAROOT / "v1.0-mini" / "calibrated_sensor.json").exists():
        from nuscenes.nuscenes import NuScenes
        nusc = NuScenes(version="v1.0-mini", dataroot=str(DATAROOT), verbose=False)
        sample = nusc.sample[0]
        Ks, Ts = [], []
        for ch in CAMERAS:
            sd = nusc.get("sample_data", sample["data"][ch])
            cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
            Ks.append(np.asarray(cs["camera_intrinsic"], np.float64))
            Ts.append(transform_from(cs["translation"], cs["rotation"]))
        Ks, Ts = np.stack(Ks), np.stack(Ts)
    else:
        Ks, Ts = _hand_rig()
    Ks = np.stack([scale_intrinsics(k, (1600, 900), (hw[1], hw[0])) for k in Ks])
    return Ks, Ts


def smooth_bev(B=2, C=5, seed=0):
    """(B, C, 150, 150) float32 smooth random maps in [0, 1] (bicubic upsampling of 8 x 8 noise)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(B, C, 8, 8, generator=g)
    return F.interpolate(low, size=(GRID.H, GRID.W), mode="bicubic", align_corners=False).clamp(0, 1)


def onehot_bev():
    """(1, 4, 150, 150) one-hot class map: background, two lane stripes, a crosswalk, a boundary."""
    c = GRID.cell_centers()
    x, y = c[..., 0], c[..., 1]
    cls = np.zeros((GRID.H, GRID.W), np.int64)
    cls[np.abs(np.abs(y) - 1.8) < 0.15] = 2                                      # lane dividers
    cls[(np.abs(x - 12) < 2) & (np.abs(y) < 6) & (np.floor(y / 0.6) % 2 == 0)] = 3  # crosswalk
    cls[np.abs(y + 7.0 + 0.05 * x) < 0.3] = 1                                    # road boundary
    return F.one_hot(torch.from_numpy(cls), 4).permute(2, 0, 1)[None].float()


def _edge_band(mask: torch.Tensor) -> torch.Tensor:
    """Pixels within one pixel (8-neighbourhood) of a mask edge. mask: (..., h, w) bool."""
    m = mask.float().reshape(-1, 1, *mask.shape[-2:])
    dil = F.max_pool2d(m, 3, 1, 1) > 0
    ero = -F.max_pool2d(-m, 3, 1, 1) > 0
    return (dil & ~ero).reshape(mask.shape)


def _compare(bev, K, T):
    B = bev.shape[0]
    Kb, Tb = np.repeat(K[None], B, 0), np.repeat(T[None], B, 0)
    a, va = render_bev(bev, Kb, Tb, HW, GRID)
    p, vp = render_bev(bev, Kb, Tb, HW, GRID, backend="pytorch3d")
    both = va & vp
    diff = (a - p).abs().amax(2)[both]
    mismatch = va ^ vp
    return dict(a=a, p=p, va=va, vp=vp, max_abs=float(diff.max()), mean_abs=float(diff.mean()),
                mismatch_frac=float(mismatch.float().mean()),
                mismatch_off_edge=int((mismatch & ~_edge_band(va)).sum()), n_valid=int(both.sum()))


@pytest.mark.parametrize("kind", ["smooth", "onehot"])
def test_backends_agree(kind):
    _p3d()
    K, T = rig()
    bev = smooth_bev() if kind == "smooth" else onehot_bev()
    r = _compare(bev, K, T)
    print(f"{kind}: max|diff| {r['max_abs']:.2e} mean {r['mean_abs']:.2e} mask mismatch "
          f"{r['mismatch_frac']:.2e} ({r['mismatch_off_edge']} off-edge) valid {r['n_valid']}")
    assert r["p"].shape == (bev.shape[0], 6, bev.shape[1]) + HW and r["vp"].shape == (bev.shape[0], 6) + HW
    assert r["vp"].dtype == torch.bool
    assert r["n_valid"] > 0.2 * r["va"].numel()           # the ground fills the lower image half
    assert r["max_abs"] < VALUE_ATOL and r["mean_abs"] < MEAN_ATOL
    assert r["mismatch_frac"] < MAX_MASK_MISMATCH
    assert r["mismatch_off_edge"] == 0
    assert (r["p"][~r["vp"].unsqueeze(2).expand_as(r["p"])] == 0).all()   # invalid pixels are 0


def test_batch_and_dtype():
    """Each sample of a batch is rendered with its own texture; float64 in -> float64 out."""
    _p3d()
    K, T = rig()
    bev = smooth_bev(B=2, C=3, seed=1).double()
    p, v = render_bev(bev, np.stack([K, K]), np.stack([T, T]), HW, GRID, backend="pytorch3d")
    p1, _ = render_bev(bev[1:], K[None], T[None], HW, GRID, backend="pytorch3d")
    assert p.dtype == torch.float64
    torch.testing.assert_close(p[1:], p1)
    assert not torch.allclose(p[0], p[1])


def test_gradients_reach_pred_bev_and_match_analytic():
    _p3d()
    K, T = rig()
    base = smooth_bev(B=1, C=4, seed=2)
    w = torch.randn(1, 6, 4, *HW, generator=torch.Generator().manual_seed(3))
    grads, masks = {}, {}
    for backend in ("analytic", "pytorch3d"):
        _, masks[backend] = render_bev(base, K[None], T[None], HW, GRID, backend=backend)
    both = (masks["analytic"] & masks["pytorch3d"]).unsqueeze(2)
    for backend in ("analytic", "pytorch3d"):
        bev = base.clone().requires_grad_(True)
        out, _ = render_bev(bev, K[None], T[None], HW, GRID, backend=backend)
        (out * w * both).sum().backward()
        grads[backend] = bev.grad
    g = grads["pytorch3d"]
    assert torch.isfinite(g).all() and (g != 0).sum() > 1000
    torch.testing.assert_close(g, grads["analytic"], atol=1e-3 * float(g.abs().max()), rtol=0)


def test_missing_pytorch3d_raises_clear_import_error(monkeypatch):
    """Runs without pytorch3d too: the backend must say how to get it, not crash obscurely."""
    from bevlib.render_p3d import render_bev_pytorch3d

    for name in [m for m in sys.modules if m == "pytorch3d" or m.startswith("pytorch3d.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pytorch3d", None)       # makes `import pytorch3d...` fail
    K, T = _hand_rig()
    with pytest.raises(ImportError, match="pytorch3d is not installed; see README 'PyTorch3D backend'"):
        render_bev_pytorch3d(torch.zeros(1, 1, 4, 4), K[None], T[None], HW, GRID)
