"""Differentiable BEV -> camera rendering (busch2026 Sec. III-B, Fig. 1 "Rendering Module").

The predicted BEV map ``Pred_bev`` lies on the ground plane (z = 0 in the ego frame) over the
extent of the BEV grid. Rendering it into a camera gives ``Pred_cp``: for every pixel the BEV value
at the point where the pixel's viewing ray meets the ground. Two backends share one interface:

* ``"analytic"`` (default): ray / ground-plane intersection in closed form, then one bilinear
  gather. On CPU the gather and its backward are the native kernels of :mod:`bevlib.native`
  (valid pixels only; forward bit-identical to ``grid_sample``), elsewhere (GPU, other dtypes, no
  C compiler) ``torch.nn.functional.grid_sample``. What a rig needs (valid pixels, the native
  plan or the ``grid_sample`` coordinates) is built in one batched pass over all the batch's
  cameras on the map's device (native C on CPU, torch elsewhere) and cached per rig: on real
  nuScenes each camera has its own ego pose, so every keyframe brings a new rig, and building it
  costs a fraction of the render (``python -m bevlib.bench render``, cold rows).
* ``"pytorch3d"``: the paper's construction, a 2-triangle mesh textured with Pred_bev through
  ``TexturesUV`` and rasterised by PyTorch3D (``bevlib.render_p3d``); used where pytorch3d imports.

Pixel convention: OpenCV, pixel (u, v) has its centre at integer coordinates (u = column).
A pixel is *valid* when its ray points below the horizon and hits the ground inside the grid.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from . import native
from .bev import BEVGrid

_GRID_CACHE: "OrderedDict[str, tuple[torch.Tensor, torch.Tensor]]" = OrderedDict()
_GRID_CACHE_SIZE = 32
# render_bev's rigs (_Rig), already on the map's device: a hot render is one dict lookup plus one
# gather. Few entries, because each holds B rigs (a native plan is ~15 MB at B = 6 and 288 x 512,
# grid_sample coordinates 42 MB), and on real data a rig is rarely seen twice.
_BATCH_CACHE: "OrderedDict[tuple, _Rig]" = OrderedDict()
_BATCH_CACHE_SIZE = 8
_K_INV_CACHE: dict[bytes, np.ndarray] = {}
_OUTSIDE = -4.0  # grid_sample coordinate far outside [-1, 1]: zero padding for invalid pixels


def _as_np(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def rig_rays(K, ego_T_cam) -> tuple[np.ndarray, np.ndarray]:
    """Each camera's pixel rays and centre in the ego frame (the one place both are computed, so
    every backend of :func:`render_bev` starts from the same float64 numbers; busch2026 Sec. III-B,
    rays of the rendering module).

    Args:
        K: (N, 3, 3) intrinsics (pixels); ego_T_cam: (N, 4, 4) camera -> ego (metres); numpy or torch.
    Returns:
        M: (N, 3, 3) float64, the ego-frame ray of pixel (u, v) is ``M @ (u, v, 1)``;
        O: (N, 3) float64 camera centres (metres, ego frame).
    """
    K = _as_np(K)
    T = _as_np(ego_T_cam)
    # Intrinsics stay fixed while ego poses change every keyframe, so their inverses are cached: a
    # LAPACK call right after torch's OpenMP work took up to ms here (OpenBLAS's threads contend with
    # torch's spinning ones), more than the rest of a new rig's plan.
    key = K.tobytes() + repr(K.shape).encode()
    K_inv = _K_INV_CACHE.get(key)
    if K_inv is None:
        K_inv = _K_INV_CACHE[key] = np.linalg.inv(K)
        if len(_K_INV_CACHE) > _GRID_CACHE_SIZE:
            _K_INV_CACHE.pop(next(iter(_K_INV_CACHE)))
    return T[:, :3, :3] @ K_inv, T[:, :3, 3]


def ground_hits(K: np.ndarray, ego_T_cam: np.ndarray, image_hw: tuple[int, int]):
    """Where each pixel's ray meets the ground plane z = 0 of the ego frame.

    Args:
        K: (N, 3, 3) intrinsics (pixels) for images of size ``image_hw`` = (h, w).
        ego_T_cam: (N, 4, 4) camera -> ego transforms (metres).
    Returns:
        xy: (N, h, w, 2) float64 ego (x, y) metres of the hit (undefined where not ``below``),
        below: (N, h, w) bool, the ray points downwards (pixel below the horizon).
    """
    M, O = rig_rays(K, ego_T_cam)                                    # (N, 3, 3): pixel (u, v, 1) -> ego ray
    h, w = image_hw
    u = np.arange(w, dtype=np.float64)[None, None, :, None]
    v = np.arange(h, dtype=np.float64)[None, :, None, None]
    # The ray is affine in (u, v): broadcast multiply-adds instead of per-pixel 3x3 products
    # (np.einsum took ~3/4 of a cold sampling_grid at 6 x 288 x 512).
    rays_ego = M[:, None, None, :, 0] * u + M[:, None, None, :, 1] * v + M[:, None, None, :, 2]  # (N, h, w, 3)
    origin = O[:, None, None, :]                                     # (N, 1, 1, 3)
    dz = rays_ego[..., 2]
    below = dz < -1e-9
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(below, -origin[..., 2] / np.where(below, dz, -1.0), np.nan)
    xy = origin[..., :2] + s[..., None] * rays_ego[..., :2]
    below &= origin[..., 2] > 0
    return xy, below


def sampling_grid(K, ego_T_cam, image_hw: tuple[int, int], grid: BEVGrid):
    """The ``grid_sample`` coordinates that render a BEV map of ``grid`` into each camera
    (busch2026 Sec. III-B, the rendering module's ray / ground-plane hits), in numpy float64.

    The reference the batched builders are tested against (:func:`sampling_grids`,
    :func:`bevlib.native.build_plan_from_rig`), and the grid of the benchmark's ``grid_sample``
    floors; :func:`render_bev` does not call it. Cached per calibration (bytes of K and
    ego_T_cam, image size, grid).

    Args:
        K: (N, 3, 3), ego_T_cam: (N, 4, 4) numpy or torch; image_hw = (h, w) pixels.
    Returns:
        coords: (N, h, w, 2) float32 normalised (gx, gy) (``align_corners=False``), invalid pixels
        far outside [-1, 1]; valid: (N, h, w) bool.
    """
    K = _as_np(K)
    T = _as_np(ego_T_cam)
    key = hashlib.sha1(K.tobytes() + T.tobytes() + repr((tuple(image_hw), grid)).encode()).hexdigest()
    hit = _GRID_CACHE.get(key)
    if hit is not None:
        _GRID_CACHE.move_to_end(key)
        return hit
    xy, below = ground_hits(K, T, image_hw)
    valid = below & grid.contains(np.nan_to_num(xy, nan=np.inf))
    coords = grid.xy_to_normalized(xy)
    coords[~valid] = _OUTSIDE
    out = torch.from_numpy(coords.astype(np.float32)), torch.from_numpy(valid)
    _GRID_CACHE[key] = out
    if len(_GRID_CACHE) > _GRID_CACHE_SIZE:
        _GRID_CACHE.popitem(last=False)
    return out


def sampling_grids(K, ego_T_cam, image_hw: tuple[int, int], grid: BEVGrid, device="cpu"):
    """:func:`sampling_grid` (busch2026 Sec. III-B) for many cameras at once, in torch on ``device``
    (one pass, no cache):
    what :func:`render_bev` builds for a new rig where the native kernels do not run (GPU, other
    dtypes, no C compiler). Bit-identical to :func:`sampling_grid` camera by camera: the same
    float64 operations in the same order (divisions by tensors, not scalars, because torch turns
    a scalar division into a multiplication by the reciprocal, which rounds differently).

    Args:
        K: (N, 3, 3), ego_T_cam: (N, 4, 4) numpy or torch (pixels, metres); image_hw = (h, w).
    Returns:
        coords: (N, h, w, 2) float32 on ``device``, normalised (gx, gy) (``align_corners=False``),
        invalid pixels far outside [-1, 1]; valid: (N, h, w) bool on ``device``.
    """
    return _grids_from_rays(*rig_rays(K, ego_T_cam), image_hw, grid, device)


def _grids_from_rays(M: np.ndarray, O: np.ndarray, image_hw: tuple[int, int], grid: BEVGrid, device):
    M, O = torch.as_tensor(M, device=device), torch.as_tensor(O, device=device)
    h, w = image_hw
    u = torch.arange(w, dtype=torch.float64, device=device)
    v = torch.arange(h, dtype=torch.float64, device=device)[:, None]

    def ray(c):                                        # component c of every pixel's ray, (N, h, w)
        return M[:, c, 0, None, None] * u + M[:, c, 1, None, None] * v + M[:, c, 2, None, None]

    oz = O[:, 2, None, None]
    dz = ray(2)
    below = (dz < -1e-9) & (oz > 0)
    s = -oz / torch.where(below, dz, -1.0)
    x = O[:, 0, None, None] + s * ray(0)
    y = O[:, 1, None, None] + s * ray(1)
    valid = below & (x >= grid.x_min) & (x <= grid.x_max) & (y >= grid.y_min) & (y <= grid.y_max)
    gx = 2.0 * (grid.y_max - y) / torch.full_like(y, grid.y_max - grid.y_min) - 1.0
    gy = 2.0 * (grid.x_max - x) / torch.full_like(x, grid.x_max - grid.x_min) - 1.0
    coords = torch.stack([gx, gy], -1).float()
    coords[~valid] = _OUTSIDE
    return coords, valid


class _Rig:
    """What :func:`render_bev` keeps of one batch's rig: ``valid`` (B, N, h, w) bool, the
    ``grid_sample`` coordinates (B*N, h, w, 2) (built on first need) and native plans per BEV map
    size; ``M`` / ``O`` are :func:`rig_rays` of its B*N cameras."""

    __slots__ = ("M", "O", "valid", "coords", "plans")

    def __init__(self, K: np.ndarray, T: np.ndarray):
        self.M, self.O = rig_rays(K.reshape(-1, 3, 3), T.reshape(-1, 4, 4))
        self.valid = self.coords = None
        self.plans = {}


def _gather(pred_bev: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """One ``grid_sample`` with the B*N cameras as the batch: (B, C, H, W) maps, (B*N, h, w, 2)
    coordinates -> (B*N, C, h, w). The output is contiguous in (B, N, C, h, w) order, so the loss's
    reshape costs nothing; each map is shared by its N cameras (a stride-0 view for B = 1, a copy of
    the small map otherwise, instead of a transposing copy of the large rendered images)."""
    B, C, H, W = pred_bev.shape
    BN = coords.shape[0]
    src = pred_bev[:, None].expand(B, BN // B, C, H, W).reshape(BN, C, H, W)
    return F.grid_sample(src, coords, mode="bilinear", padding_mode="zeros", align_corners=False)


class _NativeGather(torch.autograd.Function):
    """The render as the native kernels of :mod:`bevlib.native`: forward bit-identical to
    :func:`_gather`, backward equal to grid_sample's input gradient up to summation order, both
    over the rig's valid pixels only (measured with ``python -m bevlib.bench render`` at
    6 x 288 x 512 on 2 cores: forward 2-3x, backward 4-6x faster than grid_sample's)."""

    @staticmethod
    def forward(ctx, bev, plan):
        ctx.plan = plan
        return native.gather_forward(plan, bev)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        return native.gather_backward(ctx.plan, grad_out), None


def render_bev(pred_bev: torch.Tensor, K, ego_T_cam, image_hw: tuple[int, int], grid: BEVGrid,
               backend: str = "analytic"):
    """Render BEV maps into the cameras of a rig (busch2026 Sec. III-B: Pred_bev -> Pred_cp).

    Args:
        pred_bev: (B, C, H, W) float BEV map (logits or probabilities) in the ego frame, rows and
            columns as documented in :mod:`bevlib.bev`.
        K: (B, N, 3, 3) intrinsics for images of size ``image_hw`` (pixels), numpy or torch.
        ego_T_cam: (B, N, 4, 4) camera -> ego transforms (metres).
        image_hw: (h, w) of the rendered images.
        grid: the metric extent of ``pred_bev``.
        backend: ``"analytic"`` or ``"pytorch3d"``.
    Returns:
        pred_cp: (B, N, C, h, w), same dtype/device as ``pred_bev``, bilinear samples of the BEV
            map; 0 at invalid pixels. Differentiable w.r.t. ``pred_bev``. Contiguous with the
            analytic backend.
        valid: (B, N, h, w) bool, pixels whose ray hits the ground inside the grid. With the
            analytic backend this tensor is cached and shared between calls with the same rig:
            read it, do not modify it in place.
    Raises:
        ValueError: unknown backend or mismatched shapes.
    """
    if backend == "pytorch3d":
        from .render_p3d import render_bev_pytorch3d
        return render_bev_pytorch3d(pred_bev, K, ego_T_cam, image_hw, grid)
    if backend != "analytic":
        raise ValueError(f"render backend must be 'analytic' or 'pytorch3d', got {backend!r}")
    if pred_bev.dim() != 4:
        raise ValueError(f"pred_bev must be (B, C, H, W), got shape {tuple(pred_bev.shape)}")
    B, C = pred_bev.shape[:2]
    K = _as_np(K)
    T = _as_np(ego_T_cam)
    if K.shape[0] != B or T.shape[0] != B or K.shape[1] != T.shape[1]:
        raise ValueError(f"K {K.shape} and ego_T_cam {T.shape} must be (B={B}, N, ...)")
    N = K.shape[1]
    h, w = image_hw
    # The raw calibration bytes are the key (a few hundred bytes: hashing them is cheaper than the
    # sha1 of sampling_grid, and exact equality is what makes a cached rig reusable).
    key = (K.tobytes(), T.tobytes(), K.shape, (int(h), int(w)), grid, pred_bev.device, pred_bev.dtype)
    rig = _BATCH_CACHE.get(key)
    if rig is None:
        rig = _BATCH_CACHE[key] = _Rig(K, T)
        if len(_BATCH_CACHE) > _BATCH_CACHE_SIZE:
            _BATCH_CACHE.popitem(last=False)
    else:
        _BATCH_CACHE.move_to_end(key)
    if pred_bev.device.type == "cpu" and pred_bev.dtype == torch.float32 and native.render_kernels() is not None:
        bev_hw = tuple(pred_bev.shape[2:])
        plan = rig.plans.get(bev_hw)
        if plan is None:
            plan, valid = native.build_plan_from_rig(rig.M, rig.O, (grid.x_min, grid.x_max, grid.y_min, grid.y_max),
                                                     (h, w), B, bev_hw)
            rig.plans[bev_hw] = plan
            if rig.valid is None:
                rig.valid = valid.view(B, N, h, w)
        return _NativeGather.apply(pred_bev, plan).view(B, N, C, h, w), rig.valid
    if rig.coords is None:
        coords, valid = _grids_from_rays(rig.M, rig.O, (h, w), grid, pred_bev.device)
        rig.coords = coords.to(pred_bev.dtype)
        if rig.valid is None:
            rig.valid = valid.view(B, N, h, w)
    return _gather(pred_bev, rig.coords).view(B, N, C, h, w), rig.valid
