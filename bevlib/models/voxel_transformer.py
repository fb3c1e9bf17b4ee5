"""LiDAR branch of the combined-datasets BEV pre-training: a voxel set transformer in DSVT's spirit.

Paper: combined-datasets-bev-pretraining.md, Sec. 4.1 ("we adopt ... DSVT [57] for the point cloud
backbone") and Appendix C.2 (voxel size [0.3, 0.3, 8] m, BEV map); DSVT: Wang et al., "DSVT: Dynamic
Sparse Voxel Transformer with Rotated Sets", CVPR 2023, Sec. 3.

Pipeline (all torch, no torch-scatter / spconv)::

    points (N, 3+F) ego metres --voxelize--> non-empty voxels (M,) with mean point features
      --> per-voxel MLP embedding (mean features + mean offset from the voxel centre)
      --> L set-attention blocks over the non-empty voxels of BEV windows
      --> scatter to a dense BEV map (B, C, H, W) on the grid's (H, W) plane (max or sum over height)

Window sets. The (H, W) plane of the :class:`~bevlib.voxel.VoxelGrid` is cut into windows of
``window`` = (wh, ww) cells (every height level of a column belongs to the same window). A window's
voxels are sorted along one BEV axis first (block l even: rows first, "x-set"; l odd: columns first,
"y-set" -- DSVT's two rotated partitions) and cut into consecutive sets of at most ``set_size``
voxels; each set is padded to ``set_size`` with a key-padding mask. Blocks come in pairs (x-set, y-set)
and every second pair shifts the windows by half a window (DSVT's / Swin's shifted windows), so
information crosses window borders. Each block is post-norm as DSVT's set attention layer:
``x = LN(x + MHA(x + pos, x + pos, x))``, ``x = LN(x + FFN(x))``, with a learned positional
embedding of the voxel's window-local (row, col, level).

What differs from DSVT (stated as the issue asks):

* Set partition: DSVT's dynamic set partition spreads a window's n sorted voxels evenly over
  ``ceil(n / set_size)`` sets filled to exactly ``set_size`` by index sampling (voxels repeat when n
  is not a multiple; the repeats are masked as keys); here sets are consecutive chunks of the sorted
  order and the last one is padded with empty, masked slots (the issue's "pad to a fixed size with a
  mask"). Both keep every voxel and bound a set to ``set_size``.
* DSVT wraps each set attention layer in one more residual + LayerNorm and each two-layer block in
  another; here a block is the set attention layer alone (two LayerNorms per block).
* DSVT's rotated sets are reproduced as the x-first / y-first sort orders; the shift alternates
  every pair of blocks.
* No 3D windows along z and no hybrid window sizes per stage; one window size for all blocks.
* No attention-style 3D pooling / downsampling stages (DSVT-P variant) -- one resolution.
* The voxel feature encoder is an MLP on mean point features (DSVT uses the dynamic PointNet VFE of
  point-to-voxel-centre and point-to-cluster offsets with max pooling); no BatchNorm anywhere, so
  every norm is a LayerNorm that :func:`~bevlib.models.promptnorm.replace_layernorms` can prompt.
* The BEV map is formed by max (default) or sum over the height levels of a column; DSVT uses pillars
  (one z level, voxel size 8 m in z) scattered to BEV by PointPillars' scatter.

Voxel order is canonical (sorted by batch, then flat voxel index), so the output does not depend on
the order of the input points.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..voxel import VoxelGrid
from .promptnorm import dataset_prompt


def _check_points(points: torch.Tensor, name: str = "points") -> None:
    if not isinstance(points, torch.Tensor) or points.dim() != 2 or points.shape[1] < 3:
        raise ValueError(f"{name} must be a (N, 3+F) tensor of ego points, got "
                         f"{getattr(points, 'shape', type(points))}")
    if not points.is_floating_point():
        raise ValueError(f"{name} must be floating point, got {points.dtype}")


def voxelize(points: torch.Tensor, grid: VoxelGrid) -> tuple[torch.Tensor, torch.Tensor]:
    """Average the points that fall into each non-empty voxel.

    Args:
        points: (N, 3+F) float, columns x, y, z in metres in the ego frame, then F features
            (e.g. intensity). Points outside the grid or non-finite are dropped.
        grid: the voxel grid; voxel membership follows :meth:`VoxelGrid.points_to_voxels`.
    Returns:
        coords: (M, 3) int64 voxel indices (k, i, j) = (level, row, column) of the non-empty voxels,
            sorted by :meth:`VoxelGrid.flat_index` (unique).
        feats: (M, 3+F) float (points' dtype): the mean of all point columns (xyz included) per voxel.
    Raises: ValueError for a malformed or non-float ``points``.
    """
    _check_points(points)
    coords, feats, _ = voxelize_batch([points], grid)
    return coords, feats


def voxelize_batch(points: list[torch.Tensor], grid: VoxelGrid) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`voxelize` for a batch of sweeps.

    Args:
        points: B tensors (N_b, 3+F) float, same F, ego metres.
        grid: the voxel grid.
    Returns:
        coords: (M, 3) int64 (k, i, j); feats: (M, 3+F) mean point columns; batch: (M,) int64 sample
            index. Sorted by (batch, flat voxel index), unique.
    Raises: ValueError for an empty list, malformed tensors or differing feature counts.
    """
    if len(points) == 0:
        raise ValueError("points must hold at least one sweep")
    for b, p in enumerate(points):
        _check_points(p, f"points[{b}]")
    if len({p.shape[1] for p in points}) != 1:
        raise ValueError(f"all sweeps need the same 3+F columns, got {[p.shape[1] for p in points]}")
    dev, dtype, C = points[0].device, points[0].dtype, points[0].shape[1]
    allp = torch.cat([p.to(dev, dtype) for p in points])
    bidx = torch.cat([torch.full((p.shape[0],), b, dtype=torch.long, device=dev) for b, p in enumerate(points)])
    vi, valid = grid.points_to_voxels(allp[:, :3])
    valid &= torch.isfinite(allp).all(-1)
    allp, bidx, vi = allp[valid], bidx[valid], vi[valid]
    n_vox = grid.Z * grid.H * grid.W
    key = bidx * n_vox + grid.flat_index(vi)
    ukey, inv = torch.unique(key, return_inverse=True)   # sorted: canonical, point-order free
    M = ukey.shape[0]
    sums = torch.zeros(M, C, dtype=dtype, device=dev).index_add_(0, inv, allp)
    cnt = torch.zeros(M, dtype=dtype, device=dev).index_add_(0, inv, torch.ones_like(allp[:, 0]))
    flat = ukey % n_vox
    coords = torch.stack([flat // (grid.H * grid.W), (flat // grid.W) % grid.H, flat % grid.W], -1)
    return coords, sums / cnt[:, None], ukey // n_vox


@dataclass(frozen=True)
class VoxelSetTransformerConfig:
    """Hyper-parameters of :class:`VoxelSetTransformer`.

    point_features: F, extra point columns after xyz. dim: token width C. depth: number of set
    attention blocks L (even: x-set / y-set pairs). heads: attention heads (divides dim).
    window: (wh, ww) BEV cells per window. set_size: voxels per padded set. ffn_ratio: FFN width / dim.
    bev_reduce: "max" or "sum" over the height levels of a BEV column. dropout: attention / FFN dropout.
    """

    point_features: int = 1
    dim: int = 64
    depth: int = 4
    heads: int = 4
    window: tuple[int, int] = (8, 8)
    set_size: int = 36
    ffn_ratio: float = 2.0
    bev_reduce: str = "max"
    dropout: float = 0.0

    def __post_init__(self):
        if self.point_features < 0 or self.dim < 1 or self.depth < 1 or self.heads < 1 or self.set_size < 1:
            raise ValueError(f"VoxelSetTransformerConfig sizes must be positive: {self}")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")
        if len(self.window) != 2 or min(self.window) < 1:
            raise ValueError(f"window must be two positive cell counts, got {self.window}")
        if self.bev_reduce not in ("max", "sum"):
            raise ValueError(f"bev_reduce must be 'max' or 'sum', got {self.bev_reduce!r}")


@dataclass
class _Sets:
    """Padded window sets of one block: voxel -> (set, slot) and the per-set sample index."""

    set_id: torch.Tensor     # (M,) int64
    slot: torch.Tensor       # (M,) int64
    pad: torch.Tensor        # (S, T) bool, True = padding
    local: torch.Tensor      # (M, 3) float window-local (row, col, level) in [0, 1)
    set_batch: torch.Tensor  # (S,) int64


def window_sets(coords: torch.Tensor, batch: torch.Tensor, grid: VoxelGrid, window: tuple[int, int],
                set_size: int, axis: int, shift: bool) -> _Sets:
    """Partition non-empty voxels into padded window sets (see module docstring).

    Args:
        coords: (M, 3) int64 (k, i, j); batch: (M,) int64; grid: the voxel grid.
        window: (wh, ww) cells; set_size: T; axis: 0 sorts rows first, 1 columns first;
        shift: shift windows by half a window.
    Returns: a ``_Sets`` (no voxel dropped; every set holds 1..T voxels).
    """
    wh, ww = window
    sh, sw = (wh // 2, ww // 2) if shift else (0, 0)
    k, i, j = coords[:, 0], coords[:, 1] + sh, coords[:, 2] + sw
    nwh, nww = (grid.H + sh) // wh + 1, (grid.W + sw) // ww + 1
    win = (batch * nwh + i // wh) * nww + j // ww
    li, lj = i % wh, j % ww
    inner = (li * ww + lj) if axis == 0 else (lj * wh + li)
    key = (win * (wh * ww) + inner) * grid.Z + k    # unique per voxel
    order = torch.argsort(key)
    win_s = win[order]
    _, counts = torch.unique_consecutive(win_s, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    rank_s = torch.arange(win_s.shape[0], device=coords.device) - torch.repeat_interleave(starts, counts)
    chunk_s = win_s * (win_s.shape[0] + 1) + rank_s // set_size
    _, set_s = torch.unique_consecutive(chunk_s, return_inverse=True)
    S = int(set_s.max()) + 1 if set_s.numel() else 0
    set_id = torch.empty_like(set_s)
    slot = torch.empty_like(set_s)
    set_id[order] = set_s
    slot[order] = rank_s % set_size
    pad = torch.ones(S, set_size, dtype=torch.bool, device=coords.device)
    pad[set_id, slot] = False
    set_batch = torch.zeros(S, dtype=torch.long, device=coords.device)
    set_batch[set_id] = batch
    local = torch.stack([li.float() / wh, lj.float() / ww, k.float() / grid.Z], -1)
    return _Sets(set_id, slot, pad, local, set_batch)


class SetAttentionBlock(nn.Module):
    """DSVT set attention layer (post-norm): ``x = LN(x + MHA(x+p, x+p, x)); x = LN(x + FFN(x))``.

    Forward: x (S, T, C) set tokens, pos (S, T, C) positional embedding, pad (S, T) bool (True =
    padding, ignored as keys); returns (S, T, C). Padding rows come out as garbage and are dropped
    by the caller.
    """

    def __init__(self, dim: int, heads: int, ffn_ratio: float, dropout: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        hidden = max(1, int(round(dim * ffn_ratio)))
        self.ffn = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.norm2 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        q = x + pos
        a, _ = self.attn(q, q, x, key_padding_mask=pad, need_weights=False)
        x = self.norm1(x + self.drop(a))
        return self.norm2(x + self.drop(self.ffn(x)))


class VoxelSetTransformer(nn.Module):
    """Voxel set transformer LiDAR backbone -> dense BEV features (see module docstring).

    Args:
        grid: the voxel grid; the output BEV map is its (H, W) plane (e.g. 128 x 128,
            :meth:`VoxelGrid.bev_grid` indexing: row i along -x from x_max, column j along -y).
        config: :class:`VoxelSetTransformerConfig`.
    Forward:
        points: list of B tensors (N_b, 3 + F) float, ego metres (x, y, z) then F features.
        dataset_index: optional (B,) int64 per-sample dataset index for PromptNorm-swapped norms
            (Eq. 5); mapped to the window sets of each sample internally.
        Returns: (B, C=dim, H, W) float; cells without voxels are 0.
    Raises: ValueError for malformed points or a feature count other than ``config.point_features``.
    """

    def __init__(self, grid: VoxelGrid, config: VoxelSetTransformerConfig = VoxelSetTransformerConfig()):
        super().__init__()
        self.grid, self.config = grid, config
        c = config
        in_ch = 3 + c.point_features + 3    # mean point columns + offset of mean xyz from voxel centre
        self.embed = nn.Sequential(nn.Linear(in_ch, c.dim), nn.ReLU(), nn.Linear(c.dim, c.dim))
        self.pos = nn.ModuleList(nn.Sequential(nn.Linear(3, c.dim), nn.ReLU(), nn.Linear(c.dim, c.dim))
                                 for _ in range(c.depth))
        self.blocks = nn.ModuleList(SetAttentionBlock(c.dim, c.heads, c.ffn_ratio, c.dropout)
                                    for _ in range(c.depth))
        self.pad_value = 0.0   # what padding slots hold; masked out, so any finite value gives equal outputs

    def voxel_features(self, coords: torch.Tensor, feats: torch.Tensor, batch: torch.Tensor,
                       dataset_index: torch.Tensor | None = None) -> torch.Tensor:
        """Per-voxel tokens after all blocks: coords (M, 3) int64, feats (M, 3+F), batch (M,) ->
        (M, dim). ``dataset_index`` (B,) as in ``forward``."""
        c, g = self.config, self.grid
        centre = g.mem_to_ego(coords.to(feats.dtype))
        dx, dy, dz = g.voxel_size
        offset = (feats[:, :3] - centre) / torch.as_tensor([dx, dy, dz], dtype=feats.dtype, device=feats.device)
        x = self.embed(torch.cat([feats, offset], -1))
        if x.shape[0] == 0:
            return x
        for l, (block, pos_mlp) in enumerate(zip(self.blocks, self.pos)):
            sets = window_sets(coords, batch, g, c.window, c.set_size, axis=l % 2, shift=(l // 2) % 2 == 1)
            S, T = sets.pad.shape
            xs = torch.full((S, T, c.dim), self.pad_value, dtype=x.dtype, device=x.device)
            xs[sets.set_id, sets.slot] = x
            ps = torch.zeros_like(xs)
            ps[sets.set_id, sets.slot] = pos_mlp(sets.local.to(x.dtype))
            if dataset_index is None:   # norms keep whatever prompt mode / index was set on them
                xs = block(xs, ps, sets.pad)
            else:                       # per-sample index -> per-set index (a set never mixes samples)
                with dataset_prompt(block, dataset_index.to(x.device).long()[sets.set_batch]):
                    xs = block(xs, ps, sets.pad)
            x = xs[sets.set_id, sets.slot]
        return x

    def scatter_bev(self, x: torch.Tensor, coords: torch.Tensor, batch: torch.Tensor, batch_size: int) -> torch.Tensor:
        """Voxel tokens (M, C) -> dense BEV (B, C, H, W): ``config.bev_reduce`` over the levels of a
        column; empty cells 0."""
        H, W = self.grid.H, self.grid.W
        cell = (batch * H + coords[:, 1]) * W + coords[:, 2]
        out = torch.zeros(batch_size * H * W, x.shape[1], dtype=x.dtype, device=x.device)
        if self.config.bev_reduce == "sum":
            out = out.index_add(0, cell, x)
        else:
            out = out.scatter_reduce(0, cell[:, None].expand_as(x), x, reduce="amax", include_self=False)
        return out.reshape(batch_size, H, W, -1).permute(0, 3, 1, 2).contiguous()

    def forward(self, points: list[torch.Tensor], dataset_index: torch.Tensor | None = None) -> torch.Tensor:
        if isinstance(points, torch.Tensor):
            points = [points] if points.dim() == 2 else list(points)
        F_ = self.config.point_features
        for b, p in enumerate(points):
            _check_points(p, f"points[{b}]")
            if p.shape[1] != 3 + F_:
                raise ValueError(f"points[{b}] has {p.shape[1]} columns, the config expects 3 + {F_}")
        if dataset_index is not None and torch.as_tensor(dataset_index).reshape(-1).shape[0] != len(points):
            raise ValueError(f"dataset_index needs one entry per sweep ({len(points)})")
        coords, feats, batch = voxelize_batch(points, self.grid)
        feats = feats.to(self.embed[0].weight.dtype)
        if dataset_index is not None:
            dataset_index = torch.as_tensor(dataset_index, device=feats.device).reshape(-1)
        x = self.voxel_features(coords, feats, batch, dataset_index)
        return self.scatter_bev(x, coords, batch, len(points))
