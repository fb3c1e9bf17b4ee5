"""Camera branch of the combined-datasets BEV pretraining: a Swin Transformer from ``transformers``
and Lift-Splat-Shoot (LSS) into a 128 x 128 BEV grid.

combined-datasets-bev-pretraining Sec. 3 (Eq. 2, ``BEV_img = LSS(f_img(I), theta_ce)``) and Sec. 4.1
/ Appendix C.2: Swin-T image backbone trained from scratch, LSS "as in BEVFusion" (Liu et al. 2023),
BEV maps of 128 x 128 cells. LSS is Philion & Fidler, ECCV 2020, Sec. 3:

* **lift** (Sec. 3.1): per feature pixel a categorical depth distribution ``alpha`` over D bins and
  a context vector ``c``; the frustum feature at depth bin d is ``alpha_d * c`` (outer product);
* frustum points: each (d, pixel) unprojected with the camera's intrinsics ``K`` (scaled to the
  feature map) and ``ego_T_cam`` into the ego frame;
* **splat** (Sec. 3.2): every frustum feature is *sum*-pooled into the BEV cell holding its point
  (height collapsed; points outside the grid are dropped). Sum, not mean, as LSS and BEVFusion.

The splat is our own: a sparse (cells x points) 0/1 matrix in CSR form built once per camera rig
(the geometry is fixed within a scene, so the plan is cached like :mod:`bevlib.render`'s grids)
and one sparse-dense product; its backward is one gather of the BEV gradient. LSS instead sorts
the points by cell on every call and uses a cumulative sum ("cumsum trick", Sec. 3.2), which
``bevlib.bench_splat`` times as the reference.

Frames: ego (x forward, y left, z up, metres), cameras OpenCV (x right, y down, z forward);
``A_T_B`` maps points from B into A. BEV indexing is :class:`bevlib.voxel.VoxelGrid` /
:class:`bevlib.bev.BEVGrid` (row 0 = front edge ``x_max``, column 0 = left edge ``y_max``).
"""
from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import SwinConfig
from transformers import SwinBackbone as HFSwinBackbone

from .. import geometry
from ..voxel import VoxelGrid

# ------------------------------------------------------------------------------------ Swin
#: Named architectures: ``transformers.SwinConfig`` keyword arguments.
SWIN_PRESETS: dict[str, dict] = {
    # Liu et al. 2021 Swin-T (the paper's image backbone, as microsoft/swin-tiny-patch4-window7-224).
    "tiny": dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7),
    # A few thousand parameters, two stages (strides 4, 8): CPU tests and smoke presets only.
    "test": dict(embed_dim=24, depths=[1, 1], num_heads=[1, 2], window_size=7),
}

#: BEVFusion's image size (h, w) for the camera branch (paper Appendix C.2: [256, 704]).
LSS_IMAGE_HW = (256, 704)


def _swin_config(config) -> SwinConfig:
    if isinstance(config, SwinConfig):
        return config
    if isinstance(config, str):
        if config not in SWIN_PRESETS:
            raise KeyError(f"unknown Swin preset config={config!r}; known: {', '.join(SWIN_PRESETS)}")
        return SwinConfig(**SWIN_PRESETS[config])
    if isinstance(config, dict):
        return SwinConfig(**config)
    raise TypeError(f"config must be a preset name, a dict of SwinConfig fields or a SwinConfig, got {type(config)}")


class SwinBackbone(nn.Module):
    """Swin Transformer (``transformers``, random init) plus an FPN-lite neck: images -> one map.

    The encoder is ``transformers.SwinBackbone`` (the ``SwinModel`` encoder with a LayerNorm on
    each returned stage), returning the stages of stride >= ``out_stride`` (stage s has stride
    ``4 * 2 ** (s - 1)``: 4, 8, 16, 32; Swin-T channels 96, 192, 384, 768). The neck (BEVFusion
    uses an LSS-FPN to one stride-8 map; ours is lighter): a 1x1 lateral conv per stage to
    ``out_channels``, the coarser ones bilinearly upsampled to the finest and summed, then
    3x3 conv + BatchNorm + ReLU.

    Args:
        config: preset name (``"tiny"`` = Swin-T: embed 96, depths 2-2-6-2, heads 3-6-12-24,
            window 7; ``"test"``: embed 24, depths 1-1), a dict of ``SwinConfig`` fields, or a
            ``SwinConfig``.
        out_channels: channels of the output map (BEVFusion: 256).
        out_stride: 8 (BEVFusion: 32 x 88 maps for 256 x 704 images) or 16.
        weights_path: local directory of a ``transformers`` Swin checkpoint (``save_pretrained``),
            loaded with ``local_files_only=True``; ``None`` (default, the paper trains from
            scratch) is random initialisation. Nothing is downloaded.
    Forward: images (B, 3, H, W) float, ImageNet-normalised RGB
        (:func:`bevlib.models.backbone.normalize_images`) -> (B, out_channels, h, w) float with
        ``h = ceil(ceil(H / 4) / 2)`` etc. (Swin pads odd sizes), e.g. 32 x 88 for 256 x 704.
    Raises: KeyError for an unknown preset; ValueError for ``out_stride`` not 8 / 16 or one the
        config's stages do not reach; FileNotFoundError for a missing ``weights_path``.
    """

    def __init__(self, config="tiny", out_channels: int = 256, out_stride: int = 8,
                 weights_path: str | None = None):
        super().__init__()
        cfg = _swin_config(config)
        strides = [4 * 2 ** s for s in range(len(cfg.depths))]
        if out_stride not in (8, 16) or out_stride not in strides:
            raise ValueError(f"out_stride must be 8 or 16 and a stage stride of this config {strides}, "
                             f"got {out_stride}")
        stages = [f"stage{s + 1}" for s, st in enumerate(strides) if st >= out_stride]
        if weights_path is None:
            cfg.out_features = stages
            self.encoder = HFSwinBackbone(cfg)
        else:
            path = Path(weights_path).expanduser()
            if not path.exists():
                raise FileNotFoundError(f"Swin weights_path not found: {path} (a local save_pretrained "
                                        f"directory; nothing is downloaded)")
            self.encoder = HFSwinBackbone.from_pretrained(str(path), out_features=stages, local_files_only=True)
        self.config = self.encoder.config
        self.stride = out_stride
        self.out_channels = out_channels
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in self.encoder.channels)
        self.fuse = nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised float -> (B, out_channels, h, w) at stride ``self.stride``."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        maps = self.encoder(images).feature_maps
        size = maps[0].shape[-2:]
        x = self.lateral[0](maps[0])
        for lat, m in zip(self.lateral[1:], maps[1:]):
            x = x + F.interpolate(lat(m), size=size, mode="bilinear", align_corners=False)
        return self.fuse(x)


# ------------------------------------------------------------------------------- geometry
#: The paper's 128 x 128 BEV grid with BEVFusion's extent: +-51.2 m (0.8 m cells) and one height
#: level over z in [-10, 10) m (BEVFusion's zbound [-10, 10, 20]), so the height is collapsed.
LSS_GRID = VoxelGrid(-51.2, 51.2, -51.2, 51.2, -10.0, 10.0, Z=1, H=128, W=128)


def depth_values(dbound: tuple[float, float, float] = (1.0, 60.0, 1.0)) -> torch.Tensor:
    """The D depth values (metres, float64) of LSS's ``dbound = (start, stop, step)``:
    ``arange(start, stop, step)`` as LSS / BEVFusion; the default gives 1, 2, ..., 59 (D = 59).

    Raises: ValueError for ``step <= 0``, ``start <= 0`` or ``stop <= start``."""
    start, stop, step = (float(v) for v in dbound)
    if step <= 0 or start <= 0 or stop <= start:
        raise ValueError(f"dbound must be (start > 0, stop > start, step > 0), got {dbound}")
    return torch.arange(start, stop, step, dtype=torch.float64)


def feature_intrinsics(K: torch.Tensor, image_hw: tuple[int, int], feat_hw: tuple[int, int]) -> torch.Tensor:
    """Intrinsics of a feature map: ``K`` (..., 3, 3) pixels of (H, W) images -> (..., 3, 3) float64
    for the (h, w) feature map (pixel centres at integers, :func:`bevlib.geometry.scale_intrinsics`)."""
    Kn = K.detach().cpu().double().numpy()
    flat = Kn.reshape(-1, 3, 3)
    out = np.stack([geometry.scale_intrinsics(k, (image_hw[1], image_hw[0]), (feat_hw[1], feat_hw[0]))
                    for k in flat])
    return torch.from_numpy(out.reshape(Kn.shape)).to(K.device)


def frustum_points(K_feat: torch.Tensor, ego_T_cam: torch.Tensor, depths: torch.Tensor,
                   feat_hw: tuple[int, int]) -> torch.Tensor:
    """LSS frustum points in the ego frame (Philion & Fidler Sec. 3.1).

    Point (b, n, d, r, c) is feature pixel (column c, row r) of camera n at depth ``depths[d]``
    metres along the optical axis: ``ego_T_cam @ (depth * K_feat^-1 (c, r, 1))``.

    Args:
        K_feat: (B, N, 3, 3) intrinsics in feature-map pixels (:func:`feature_intrinsics`).
        ego_T_cam: (B, N, 4, 4) camera (OpenCV) -> ego, metres.
        depths: (D,) metres.
        feat_hw: (h, w) of the feature map.
    Returns: (B, N, D, h, w, 3) ego metres, float64 (cell assignment near faces stays stable),
        on ``ego_T_cam``'s device; no gradient (the geometry is an input, as in LSS).
    Raises: ValueError on wrong shapes.
    """
    if K_feat.shape[-2:] != (3, 3) or ego_T_cam.shape[-2:] != (4, 4) or K_feat.shape[:-2] != ego_T_cam.shape[:-2] \
            or K_feat.dim() != 4:
        raise ValueError(f"K_feat must be (B, N, 3, 3) and ego_T_cam (B, N, 4, 4), got {tuple(K_feat.shape)} "
                         f"and {tuple(ego_T_cam.shape)}")
    h, w = feat_hw
    dev = ego_T_cam.device
    d = depths.to(dev, torch.float64)
    r, c = torch.meshgrid(torch.arange(h, device=dev, dtype=torch.float64),
                          torch.arange(w, device=dev, dtype=torch.float64), indexing="ij")
    D = d.numel()
    uv = torch.stack([c, r], -1).expand(D, h, w, 2).reshape(-1, 2)
    dd = d[:, None, None].expand(D, h, w).reshape(-1)
    pts = geometry.unproject_t(K_feat.detach().double()[:, :, None], ego_T_cam.detach().double()[:, :, None],
                               uv, dd)                                   # (B, N, 1, D*h*w, 3)
    B, N = ego_T_cam.shape[:2]
    return pts.reshape(B, N, D, h, w, 3)


def bev_cell_index(points_ego: torch.Tensor, grid: VoxelGrid = LSS_GRID) -> torch.Tensor:
    """Flat BEV cell of every point, batch-offset: ``b * H * W + i * W + j``, or -1 outside the grid.

    (i, j) are :meth:`VoxelGrid.points_to_voxels`' row and column (the height level is dropped:
    the splat collapses height; a point outside ``[z_min, z_max)`` is outside the grid).

    Args:
        points_ego: (B, ...) ego metres, ... ending in 3 (e.g. (B, N, D, h, w, 3)).
        grid: the voxel grid (default :data:`LSS_GRID`, 128 x 128).
    Returns: (B, ...) int64 on the points' device.
    """
    idx, valid = grid.points_to_voxels(points_ego)
    B = points_ego.shape[0]
    off = torch.arange(B, device=points_ego.device).view(B, *([1] * (idx.dim() - 2))) * (grid.H * grid.W)
    cell = off + idx[..., 1] * grid.W + idx[..., 2]
    return torch.where(valid, cell, torch.full_like(cell, -1))


# ---------------------------------------------------------------------------------- splat
@dataclass
class SplatPlan:
    """A rig's splat, built once from the cell indices (:func:`build_splat_plan`).

    Attributes:
        cell: (M,) int64 flat cell per frustum point, dropped points mapped to ``n_cells`` (a trash
            row, so the backward gather needs no mask).
        crow, col: CSR structure of the (n_cells x M) 0/1 matrix ``S`` with ``S[cell[m], m] = 1``
            for kept points (``col`` = kept points sorted by cell, stable).
        batch, H, W: the BEV batch and grid; ``n_cells = batch * H * W``.
        kept: number of points inside the grid.
    """

    cell: torch.Tensor
    crow: torch.Tensor
    col: torch.Tensor
    batch: int
    H: int
    W: int
    kept: int

    def __post_init__(self):
        self._matrices: dict = {}

    @property
    def n_cells(self) -> int:
        """B * H * W: rows of the splat output (before the BEV reshape)."""
        return self.batch * self.H * self.W

    def matrix(self, dtype: torch.dtype) -> torch.Tensor:
        """The sparse CSR (n_cells, M) matrix in ``dtype`` (cached per dtype)."""
        S = self._matrices.get(dtype)
        if S is None:
            vals = torch.ones(self.col.numel(), dtype=dtype, device=self.col.device)
            with warnings.catch_warnings():  # "sparse CSR support is in beta": the product used here is stable
                warnings.simplefilter("ignore", UserWarning)
                S = torch.sparse_csr_tensor(self.crow, self.col, vals, size=(self.n_cells, self.cell.numel()),
                                            check_invariants=False)
            self._matrices[dtype] = S
        return S


def build_splat_plan(cell_index: torch.Tensor, grid_hw: tuple[int, int]) -> SplatPlan:
    """Precompute the splat of a rig from :func:`bev_cell_index`'s output.

    Args:
        cell_index: (B, ...) int64, ``b * H * W + i * W + j`` or -1 (dropped).
        grid_hw: (H, W) of the BEV grid.
    Returns: :class:`SplatPlan` (one stable argsort of the M points, made once per rig).
    Raises: ValueError for indices outside [-1, B * H * W).
    """
    H, W = grid_hw
    B = cell_index.shape[0]
    n = B * H * W
    cell = cell_index.reshape(-1).long()
    if cell.numel() and (int(cell.min()) < -1 or int(cell.max()) >= n):
        raise ValueError(f"cell_index must lie in [-1, {n}) for batch {B} and grid {H}x{W}")
    cell = torch.where(cell < 0, torch.full_like(cell, n), cell)
    order = torch.argsort(cell, stable=True)
    counts = torch.bincount(cell, minlength=n + 1)
    kept = int(cell.numel() - counts[n])
    crow = torch.zeros(n + 1, dtype=torch.int64, device=cell.device)
    crow[1:] = counts[:n].cumsum(0)
    return SplatPlan(cell=cell, crow=crow, col=order[:kept].contiguous(), batch=B, H=H, W=W, kept=kept)


class _SplatFn(torch.autograd.Function):
    """out = S @ x (sum-pool of kept rows into cells); d x = (d out)[cell] (0 for dropped rows)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, plan: SplatPlan) -> torch.Tensor:
        ctx.plan = plan
        if plan.kept == 0:
            return x.new_zeros(plan.n_cells, x.shape[1])
        try:
            return plan.matrix(x.dtype) @ x
        except RuntimeError:  # a dtype / device without a sparse CSR kernel: same sum, one index_add
            out = x.new_zeros(plan.n_cells + 1, x.shape[1]).index_add_(0, plan.cell, x)
            return out[:-1]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        g = torch.cat([grad, grad.new_zeros(1, grad.shape[1])])
        return g.index_select(0, ctx.plan.cell), None


def splat(frustum_features: torch.Tensor, plan: SplatPlan) -> torch.Tensor:
    """Sum-pool frustum features into BEV cells (LSS splat, Philion & Fidler Sec. 3.2).

    ``bev[b, :, i, j] = sum of frustum_features[p] over points p with cell b*H*W + i*W + j``;
    points outside the grid are dropped. Differentiable in ``frustum_features``.

    Args:
        frustum_features: (B, N, D, h, w, C) float (any leading shape whose element count over
            the last axis matches the plan's M points), channels last.
        plan: :func:`build_splat_plan` of the same points.
    Returns: (B, C, H, W) contiguous, same dtype / device.
    Raises: ValueError when the number of points differs from the plan's.
    """
    C = frustum_features.shape[-1]
    x = frustum_features.reshape(-1, C)
    if x.shape[0] != plan.cell.numel():
        raise ValueError(f"frustum_features has {x.shape[0]} points, the plan {plan.cell.numel()}")
    out = _SplatFn.apply(x.contiguous(), plan)
    return out.view(plan.batch, plan.H, plan.W, C).permute(0, 3, 1, 2).contiguous()


# ------------------------------------------------------------------------------------ LSS
class LSSTransform(nn.Module):
    """LSS view transform (BEVFusion's ``LSSTransform`` shape): image features -> BEV features.

    A 1x1 conv predicts D depth logits and ``out_channels`` context channels per feature pixel;
    the depth softmax times the context (outer product) is splatted (sum) into the BEV grid at the
    frustum points. Camera geometry gets no gradient.

    Args:
        in_channels: channels of the image features (the neck's ``out_channels``).
        out_channels: BEV channels (BEVFusion / the paper: 80).
        dbound: (start, stop, step) metres of the depth bins (:func:`depth_values`; default D = 59).
        grid: the BEV voxel grid (default :data:`LSS_GRID`, 128 x 128, height collapsed).
        cache_size: splat plans kept per rig (key: K, ego_T_cam, image and feature sizes).
    Forward:
        features (B * N, in_channels, h, w) float, cameras of a sample consecutive;
        K (B, N, 3, 3) pixels of the (H, W) images; ego_T_cam (B, N, 4, 4) camera -> ego, metres;
        image_hw (H, W). Returns (B, out_channels, grid.H, grid.W); with ``return_depth`` also the
        depth distribution (B * N, D, h, w).
    Raises: ValueError when features and the rig's shapes disagree.
    """

    def __init__(self, in_channels: int, out_channels: int = 80, dbound=(1.0, 60.0, 1.0),
                 grid: VoxelGrid = LSS_GRID, cache_size: int = 8):
        super().__init__()
        self.register_buffer("depths", depth_values(dbound), persistent=False)
        self.D = int(self.depths.numel())
        self.out_channels = out_channels
        self.grid = grid
        self.depthnet = nn.Conv2d(in_channels, self.D + out_channels, 1)
        self.cache_size = cache_size
        self._plans: OrderedDict = OrderedDict()

    def plan(self, K: torch.Tensor, ego_T_cam: torch.Tensor, image_hw, feat_hw) -> SplatPlan:
        """The (cached) :class:`SplatPlan` of a rig at a feature size."""
        key = (K.detach().cpu().double().numpy().tobytes(), ego_T_cam.detach().cpu().double().numpy().tobytes(),
               tuple(K.shape), tuple(image_hw), tuple(feat_hw), str(ego_T_cam.device))
        hit = self._plans.get(key)
        if hit is not None:
            self._plans.move_to_end(key)
            return hit
        pts = frustum_points(feature_intrinsics(K, image_hw, feat_hw), ego_T_cam, self.depths, feat_hw)
        p = build_splat_plan(bev_cell_index(pts, self.grid), (self.grid.H, self.grid.W))
        if self.cache_size > 0:
            self._plans[key] = p
            while len(self._plans) > self.cache_size:
                self._plans.popitem(last=False)
        return p

    def forward(self, features: torch.Tensor, K: torch.Tensor, ego_T_cam: torch.Tensor, image_hw,
                return_depth: bool = False):
        """Image features -> BEV; shapes, frames and errors in the class docstring."""
        if K.dim() != 4 or ego_T_cam.dim() != 4:
            raise ValueError(f"K must be (B, N, 3, 3) and ego_T_cam (B, N, 4, 4), got {tuple(K.shape)}, "
                             f"{tuple(ego_T_cam.shape)}")
        B, N = K.shape[:2]
        if features.dim() != 4 or features.shape[0] != B * N:
            raise ValueError(f"features must be (B*N={B * N}, C, h, w), got {tuple(features.shape)}")
        h, w = features.shape[-2:]
        out = self.depthnet(features)
        depth = out[:, :self.D].softmax(1)                                  # (BN, D, h, w)
        ctx = out[:, self.D:]                                               # (BN, C, h, w)
        # Channels-last frustum features so each point's C values are one contiguous row (a
        # contiguous channels-last context makes the product's layout contiguous, no extra copy).
        x = depth[..., None] * ctx.permute(0, 2, 3, 1).contiguous()[:, None]    # (BN, D, h, w, C)
        bev = splat(x, self.plan(K, ego_T_cam, image_hw, (h, w)))
        return (bev, depth) if return_depth else bev


def feature_hw(image_hw: tuple[int, int], stride: int) -> tuple[int, int]:
    """(h, w) of a Swin stride-``stride`` map for (H, W) images (patch 4, then halvings with padding)."""
    h, w = math.ceil(image_hw[0] / 4), math.ceil(image_hw[1] / 4)
    s = 4
    while s < stride:
        h, w, s = math.ceil(h / 2), math.ceil(w / 2), s * 2
    return h, w
