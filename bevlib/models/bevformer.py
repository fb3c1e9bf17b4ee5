"""A BEVFormer-style multi-camera BEV segmentation network (busch2026 Sec. III-A).

Design after BEVFormer (Li et al., "BEVFormer: Learning Bird's-Eye-View Representation from
Multi-Camera Images via Spatiotemporal Transformers", ECCV 2022), written from the paper for
plain PyTorch (no custom CUDA kernels, so it runs anywhere):

* image backbone (``transformers`` ResNet, one feature level as BEVFormer tiny / small) and a 1x1
  projection to ``embed_dim``, plus a learned per-camera embedding;
* learned BEV queries (one per BEV cell) with a learned row / column positional embedding;
* ``num_layers`` encoder layers, each: temporal self-attention -> LayerNorm -> spatial
  cross-attention -> LayerNorm -> FFN -> LayerNorm (BEVFormer's post-norm order);
* a segmentation head shared between time steps (busch2026 Alg. 1 reuses it on the warped BEV).

Both attentions are deformable attention (Zhu et al., Deformable DETR, ICLR 2021): each query
predicts, per head, a few sampling offsets around its reference points and softmax weights, and
reads the value map bilinearly (``grid_sample``) at those locations.

Frames and grids: BEV tensors follow :mod:`bevlib.bev` (row = longitudinal x from the front,
column = lateral y from the left; cell centres). The query grid is ``grid`` at ``query_hw`` and
the output logits cover the same metric extent at ``out_hw``. Cameras follow
:mod:`bevlib.geometry` (OpenCV pixels with centres at integers, ``ego_T_cam`` maps camera points
into the ego frame, ego z = 0 is the ground).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..bev import BEVGrid, warp_bev
from ..classes import NUM_ALL
from .backbone import build_resnet_backbone

#: grid_sample coordinate far outside [-1, 1]: reference points behind a camera are parked here so
#: that they (and small offsets around them) read zeros instead of a mirrored image location.
_OUTSIDE = -4.0


@dataclass
class BEVFormerConfig:
    """Hyper-parameters of :class:`BEVFormer`.

    Attributes:
        backbone: ``"tiny"``, ``"resnet-18"`` or ``"resnet-50"`` (busch2026 Sec. IV-A: ResNet-50).
        backbone_weights: local directory of pretrained backbone weights, or None (random init).
        out_stage: backbone stage whose map is used (1-based); None = the last stage (C5 for the
            ResNets, stride 32, as BEVFormer tiny / small; stage 3 for ``"tiny"``, stride 16).
        embed_dim: width D of queries and attention (BEVFormer: 256).
        query_hw: (Hq, Wq) BEV query cells (busch2026: 150 x 150).
        grid: metric extent of the BEV (its own H, W are ignored; query_hw / out_hw set them).
            A dict is accepted (``BEVGrid.as_dict()`` form, e.g. from YAML).
        out_hw: (H, W) of the output logits, the BEV ground-truth grid (busch2026: 150 x 150).
        num_classes: output channels (default: all 14 bevlib classes, background first).
        num_layers: encoder layers (BEVFormer base: 6; tiny / small: 3).
        num_heads: attention heads; ``embed_dim`` must be divisible by it.
        pillar_heights: ego-frame heights (metres) of the reference points lifted from each BEV
            cell for spatial cross-attention (BEVFormer: 4 points per pillar).
        num_points: temporal self-attention sampling offsets per query and head (BEVFormer: 4).
        sca_points: spatial cross-attention offsets per pillar reference point and head; None =
            ``num_points``. BEVFormer spreads 8 offsets over its 4 pillar heights, i.e. 2.
        ffn_dim: hidden width of the FFN (BEVFormer: 2 * embed_dim).
        dropout: dropout after each attention / FFN (BEVFormer: 0.1).
        num_cams: cameras with a learned camera embedding (nuScenes: 6); more raise an error.
        min_depth: reference points closer than this to a camera plane (metres) count as behind it.
    """

    backbone: str = "tiny"
    backbone_weights: str | None = None
    out_stage: int | None = None
    embed_dim: int = 64
    query_hw: tuple[int, int] = (50, 50)
    grid: BEVGrid = field(default_factory=BEVGrid)
    out_hw: tuple[int, int] = (150, 150)
    num_classes: int = NUM_ALL
    num_layers: int = 2
    num_heads: int = 4
    pillar_heights: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)
    num_points: int = 4
    sca_points: int | None = None
    ffn_dim: int = 128
    dropout: float = 0.0
    num_cams: int = 6
    min_depth: float = 1e-3

    def __post_init__(self):
        # YAML presets deliver lists and plain dicts.
        if isinstance(self.grid, dict):
            self.grid = BEVGrid(**self.grid)
        self.query_hw = tuple(int(v) for v in self.query_hw)
        self.out_hw = tuple(int(v) for v in self.out_hw)
        self.pillar_heights = tuple(float(v) for v in self.pillar_heights)
        if len(self.query_hw) != 2 or len(self.out_hw) != 2 or min(self.query_hw + self.out_hw) < 1:
            raise ValueError(f"query_hw and out_hw must be two positive ints, got {self.query_hw}, {self.out_hw}")
        if self.embed_dim % self.num_heads or self.embed_dim % 2:
            raise ValueError(f"embed_dim ({self.embed_dim}) must be even and divisible by num_heads ({self.num_heads})")
        if not self.pillar_heights:
            raise ValueError("pillar_heights must name at least one height")
        if self.num_points < 1 or (self.sca_points is not None and self.sca_points < 1):
            raise ValueError(f"num_points / sca_points must be >= 1, got {self.num_points}, {self.sca_points}")
        if self.num_layers < 1 or self.num_classes < 1 or self.num_cams < 1:
            raise ValueError("num_layers, num_classes and num_cams must be >= 1")

    def as_dict(self) -> dict:
        """Plain-python form (grid as a dict), e.g. for run-directory hashing or YAML."""
        d = asdict(self)
        d["grid"] = self.grid.as_dict()
        return d


# ---------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------

def pillar_points(grid: BEVGrid, heights) -> torch.Tensor:
    """3D reference points of BEVFormer's spatial cross-attention: each cell lifted to a pillar.

    Args:
        grid: BEV grid (H, W cells) in the ego frame.
        heights: (Z,) ego-frame z in metres (z = 0 is the ground).
    Returns: (H * W, Z, 3) float32 ego (x, y, z) metres, queries in row-major (row, column) order.
    """
    xy = torch.as_tensor(grid.cell_centers(), dtype=torch.float32).reshape(-1, 1, 2)
    z = torch.as_tensor(heights, dtype=torch.float32).view(1, -1, 1)
    return torch.cat([xy.expand(-1, z.shape[1], 2), z.expand(xy.shape[0], -1, 1)], dim=-1)


def reference_points_cam(points_ego: torch.Tensor, K: torch.Tensor, ego_T_cam: torch.Tensor,
                         image_hw: tuple[int, int], min_depth: float = 1e-3):
    """Project ego-frame reference points into every camera (BEVFormer's ``point_sampling``).

    Pixel (u, v) (OpenCV, centres at integers) becomes the ``grid_sample`` coordinate
    ``g = 2 (u + 0.5) / w - 1`` for ``align_corners=False``, so -1 / +1 are the image's outer
    edges and the same coordinates address any feature map covering the image.

    Args:
        points_ego: (Q, Z, 3) metres, ego frame (e.g. :func:`pillar_points`).
        K: (B, N, 3, 3) intrinsics in pixels at image size ``image_hw``.
        ego_T_cam: (B, N, 4, 4) camera -> ego transforms (metres); ``cam_T_ego`` is its inverse.
        image_hw: (h, w) pixels the coordinates are normalised by.
        min_depth: points with camera depth (metres) at or below this are "behind" the camera.
    Returns:
        coords: (B, N, Q, Z, 2) float32 (gx, gy); behind-camera points are set to -4 (outside).
        in_front: (B, N, Q, Z) bool, camera depth > ``min_depth``.
        visible: (B, N, Q, Z) bool, in front and projecting strictly inside the image.
    """
    K = K.float()
    T = ego_T_cam.float()
    R, t = T[..., :3, :3], T[..., :3, 3]
    p = points_ego.to(K.device).float()
    # cam_T_ego p = R^T (p - t): avoids a general 4x4 inverse.
    p_cam = torch.einsum("bnji,bnqzj->bnqzi", R, p[None, None] - t[:, :, None, None, :])
    depth = p_cam[..., 2]
    in_front = depth > min_depth
    uvw = torch.einsum("bnij,bnqzj->bnqzi", K, p_cam)
    uv = uvw[..., :2] / depth.clamp(min=min_depth).unsqueeze(-1)
    h, w = image_hw
    scale = uv.new_tensor([2.0 / w, 2.0 / h])
    coords = (uv + 0.5) * scale - 1.0
    inside = (coords.abs() < 1.0).all(-1)
    coords = torch.where(in_front.unsqueeze(-1), coords, coords.new_full((), _OUTSIDE))
    return coords, in_front, in_front & inside


def align_history(prev_bev: torch.Tensor, curr_T_prev: torch.Tensor, grid: BEVGrid) -> torch.Tensor:
    """Ego-motion compensation of the history BEV into the current ego frame (BEVFormer Sec. 3.4).

    Each current cell centre is mapped into the previous ego frame with ``prev_T_curr =
    curr_T_prev^-1`` and the previous BEV is sampled there (bilinear); cells that were outside the
    previous extent become 0.

    Args:
        prev_bev: (B, D, Hq, Wq) latent BEV of the previous keyframe, over ``grid``'s extent.
        curr_T_prev: (B, 4, 4) or (4, 4) previous ego frame -> current ego frame.
    Returns: (B, D, Hq, Wq) in the current ego frame, same dtype.
    """
    prev_T_curr = torch.linalg.inv(curr_T_prev.to(torch.float64))
    return warp_bev(prev_bev, prev_T_curr, grid)


# ---------------------------------------------------------------------------------------------
# Deformable attention
# ---------------------------------------------------------------------------------------------

def deformable_sample(value: torch.Tensor, locations: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted bilinear reads of per-head value maps: the core of deformable attention
    (Deformable DETR, Zhu et al. 2021, Eq. 2; BEVFormer's spatial and temporal attention).

    Under autograd the (M * heads, dh, L, P) bilinear reads are recomputed in backward
    (``torch.utils.checkpoint``) instead of kept for it: kept, they were the largest activations of a
    busch2026 training step (``python -m bevlib.bench memory``: 0.77 GiB per spatial cross-attention
    layer at the paper preset and batch 1, about half of all bytes saved for backward). The extra
    ``grid_sample`` forward costs little next to its backward; values and gradients are unchanged
    (tested bitwise).

    Args:
        value: (M, heads, dh, Hv, Wv) value maps.
        locations: (M, heads, L, P, 2) ``grid_sample`` coordinates (gx, gy), ``align_corners=False``;
            outside [-1, 1] reads zeros.
        weights: (M, heads, L, P) attention weights of the P samples of each of the L queries.
    Returns: (M, L, heads * dh), heads concatenated along the channels.
    """
    if torch.is_grad_enabled() and (value.requires_grad or locations.requires_grad or weights.requires_grad):
        return checkpoint(_deformable_sample, value, locations, weights, use_reentrant=False)
    return _deformable_sample(value, locations, weights)


def _deformable_sample(value: torch.Tensor, locations: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    M, nh, dh, Hv, Wv = value.shape
    L, P = locations.shape[2:4]
    sampled = F.grid_sample(value.reshape(M * nh, dh, Hv, Wv), locations.reshape(M * nh, L, P, 2),
                            mode="bilinear", padding_mode="zeros", align_corners=False)  # (M*nh, dh, L, P)
    out = (sampled * weights.reshape(M * nh, 1, L, P)).sum(-1)
    return out.view(M, nh * dh, L).transpose(1, 2)


def _init_deformable(offsets: nn.Linear, weights: nn.Linear, heads: int, groups: int, points: int) -> None:
    """Deformable DETR initialisation: offsets start on rays in ``heads`` directions, at distances
    1..points (in value-map cells), and weights start uniform; the network then learns where to look.
    The offset layer's output is laid out as (heads, groups, points, 2)."""
    nn.init.zeros_(offsets.weight)
    theta = torch.arange(heads, dtype=torch.float32) * (2.0 * math.pi / heads)
    d = torch.stack([theta.cos(), theta.sin()], -1)
    d = d / d.abs().max(-1, keepdim=True).values
    bias = d.view(heads, 1, 1, 2) * torch.arange(1, points + 1, dtype=torch.float32).view(1, 1, points, 1)
    with torch.no_grad():
        offsets.bias.copy_(bias.expand(heads, groups, points, 2).reshape(-1))
    nn.init.zeros_(weights.weight)
    nn.init.zeros_(weights.bias)


def _xavier(*layers: nn.Linear) -> None:
    for lin in layers:
        nn.init.xavier_uniform_(lin.weight)
        nn.init.zeros_(lin.bias)


class TemporalSelfAttention(nn.Module):
    """BEVFormer's temporal self-attention (Li et al. 2022, Sec. 3.4).

    Every BEV query attends, with deformable attention around its own cell, to two BEV maps: the
    ego-motion-aligned history BEV and the current queries. Offsets and weights are predicted from
    the concatenation [history, query + pos]; the two reads are averaged. Without history the
    current queries are used twice, so the layer degenerates to deformable self-attention.

    Args:
        dim: D; heads: attention heads; points: sampling offsets per query, head and map;
        dropout: applied to the output before the residual.
    """

    def __init__(self, dim: int, heads: int, points: int, dropout: float = 0.0):
        super().__init__()
        self.heads, self.points = heads, points
        self.sampling_offsets = nn.Linear(2 * dim, heads * 2 * points * 2)
        self.attention_weights = nn.Linear(2 * dim, heads * 2 * points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        _init_deformable(self.sampling_offsets, self.attention_weights, heads, 2, points)
        _xavier(self.value_proj, self.output_proj)

    def forward(self, query: torch.Tensor, query_pos: torch.Tensor, history: torch.Tensor | None,
                has_history: torch.Tensor | None, ref: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """
        Args:
            query: (B, Q, D) current BEV queries (Q = Hq * Wq, row-major); query_pos: (1 or B, Q, D).
            history: (B, Q, D) aligned history BEV, or None (no history for any sample).
            has_history: (B,) bool, samples whose history is used (others use ``query``), or None = all.
            ref: (Q, 2) grid_sample coordinates of the query cell centres; hw: (Hq, Wq).
        Returns: (B, Q, D) query + attention output (residual included).
        """
        B, Q, D = query.shape
        Hq, Wq = hw
        nh, P = self.heads, self.points
        if history is None:
            history = query
        elif has_history is not None:
            history = torch.where(has_history.view(B, 1, 1), history, query)
        value = self.value_proj(torch.stack([history, query], 1))            # (B, 2, Q, D)
        value = value.view(B * 2, Hq, Wq, nh, D // nh).permute(0, 3, 4, 1, 2)
        q = torch.cat([history, query + query_pos], -1)
        # Offsets are in BEV cells; grid_sample spans 2 per Wq columns / Hq rows.
        off = self.sampling_offsets(q).view(B, Q, nh, 2, P, 2) * query.new_tensor([2.0 / Wq, 2.0 / Hq])
        w = self.attention_weights(q).view(B, Q, nh, 2, P).softmax(-1)
        loc = ref.view(1, Q, 1, 1, 1, 2) + off
        loc = loc.permute(0, 3, 2, 1, 4, 5).reshape(B * 2, nh, Q, P, 2)
        w = w.permute(0, 3, 2, 1, 4).reshape(B * 2, nh, Q, P)
        out = deformable_sample(value, loc, w).view(B, 2, Q, D).mean(1)
        return query + self.dropout(self.output_proj(out))


class SpatialCrossAttention(nn.Module):
    """BEVFormer's spatial cross-attention (Li et al. 2022, Sec. 3.3).

    Each query's pillar reference points (Z heights) are projected into every camera; in each
    camera that sees at least one of them ("hit" views), the query reads the image features with
    deformable attention at ``points`` learned offsets around every projected reference point
    (softmax weights over all Z * points samples of a head). The per-camera results are summed and
    divided by the number of hit views |V_hit|; queries no camera sees get a zero update.

    As in BEVFormer, only the (camera, query) pairs that hit are evaluated: per camera, the hit
    queries are gathered into a padded list (length = the largest hit count), which saves most of
    the memory of evaluating every query in every camera. Reference points behind a camera get
    zero weight; points in front but outside the image read zeros (zero padding).

    Args:
        dim: D; heads: attention heads; num_z: pillar heights Z; points: offsets per reference
        point and head; dropout: applied to the output before the residual.
    """

    def __init__(self, dim: int, heads: int, num_z: int, points: int, dropout: float = 0.0):
        super().__init__()
        self.heads, self.num_z, self.points = heads, num_z, points
        self.sampling_offsets = nn.Linear(dim, heads * num_z * points * 2)
        self.attention_weights = nn.Linear(dim, heads * num_z * points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        _init_deformable(self.sampling_offsets, self.attention_weights, heads, num_z, points)
        _xavier(self.value_proj, self.output_proj)

    def forward(self, query: torch.Tensor, query_pos: torch.Tensor, feats: torch.Tensor,
                coords: torch.Tensor, in_front: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """
        Args:
            query: (B, Q, D); query_pos: (1 or B, Q, D).
            feats: (B, N, D, Hf, Wf) image features of the N cameras.
            coords, in_front, visible: from :func:`reference_points_cam`, (B, N, Q, Z, 2) / (B, N, Q, Z).
        Returns: (B, Q, D) query + attention output (residual included).
        """
        B, Q, D = query.shape
        N, _, Hf, Wf = feats.shape[1:]
        nh, Z, P = self.heads, self.num_z, self.points
        hit = visible.any(-1)                                                    # (B, N, Q)
        n_hit = hit.sum(-1)                                                      # (B, N)
        L = int(n_hit.max())
        out = query.new_zeros(B, Q, D)
        if L > 0:
            # Hit queries first (stable: ascending query order), then padding up to L.
            idx = torch.argsort((~hit).to(torch.uint8), dim=-1, stable=True)[..., :L]      # (B, N, L)
            keep = torch.arange(L, device=query.device) < n_hit.unsqueeze(-1)              # (B, N, L)
            bi = torch.arange(B, device=query.device).view(B, 1, 1)
            q = query + query_pos
            off = self.sampling_offsets(q).view(B, Q, nh, Z, P, 2) * query.new_tensor([2.0 / Wf, 2.0 / Hf])
            w = self.attention_weights(q).view(B, Q, nh, Z * P).softmax(-1).view(B, Q, nh, Z, P)
            ref = coords.gather(2, idx.view(B, N, L, 1, 1).expand(B, N, L, Z, 2))      # (B, N, L, Z, 2)
            front = in_front.gather(2, idx.view(B, N, L, 1).expand(B, N, L, Z)) & keep.unsqueeze(-1)
            loc = ref.view(B, N, L, 1, Z, 1, 2).to(off.dtype) + off[bi, idx]           # (B, N, L, nh, Z, P, 2)
            wg = w[bi, idx] * front.view(B, N, L, 1, Z, 1).to(w.dtype)                 # (B, N, L, nh, Z, P)
            value = self.value_proj(feats.permute(0, 1, 3, 4, 2))                      # (B, N, Hf, Wf, D)
            value = value.view(B * N, Hf, Wf, nh, D // nh).permute(0, 3, 4, 1, 2)
            loc = loc.permute(0, 1, 3, 2, 4, 5, 6).reshape(B * N, nh, L, Z * P, 2)
            wg = wg.permute(0, 1, 3, 2, 4, 5).reshape(B * N, nh, L, Z * P)
            sampled = deformable_sample(value, loc, wg).reshape(B, N * L, D)
            # Padding slots carry zero weight, so scattering them adds nothing.
            out = out.scatter_add(1, idx.reshape(B, N * L, 1).expand(B, N * L, D), sampled)
            out = out / hit.sum(1).clamp(min=1).unsqueeze(-1).to(out.dtype)
        return query + self.dropout(self.output_proj(out))


class BEVFormerLayer(nn.Module):
    """One encoder layer: TSA -> LayerNorm -> SCA -> LayerNorm -> FFN -> LayerNorm (Li et al. 2022)."""

    def __init__(self, cfg: BEVFormerConfig):
        super().__init__()
        D = cfg.embed_dim
        self.tsa = TemporalSelfAttention(D, cfg.num_heads, cfg.num_points, cfg.dropout)
        self.sca = SpatialCrossAttention(D, cfg.num_heads, len(cfg.pillar_heights),
                                         cfg.sca_points or cfg.num_points, cfg.dropout)
        self.ffn = nn.Sequential(nn.Linear(D, cfg.ffn_dim), nn.ReLU(inplace=True), nn.Dropout(cfg.dropout),
                                 nn.Linear(cfg.ffn_dim, D), nn.Dropout(cfg.dropout))
        self.norms = nn.ModuleList([nn.LayerNorm(D) for _ in range(3)])

    def forward(self, query, query_pos, history, has_history, ref_bev, hw, feats, coords, in_front, visible):
        """Shapes as in :meth:`TemporalSelfAttention.forward` and :meth:`SpatialCrossAttention.forward`;
        returns (B, Q, D)."""
        query = self.norms[0](self.tsa(query, query_pos, history, has_history, ref_bev, hw))
        query = self.norms[1](self.sca(query, query_pos, feats, coords, in_front, visible))
        return self.norms[2](query + self.ffn(query))


class SegHead(nn.Module):
    """BEV segmentation head: latent BEV X (B, D, Hq, Wq) -> logits (B, C, H, W).

    conv3x3 + ReLU at query resolution, bilinear upsampling (cell centres of both grids cover the
    same extent, ``align_corners=False``) to ``out_hw`` when it differs, conv3x3 + ReLU, conv1x1.
    No BatchNorm: busch2026 Alg. 1 applies the same head to an ego-motion-warped X whose
    out-of-view cells are zero, and batch statistics would couple the two passes.
    """

    def __init__(self, dim: int, num_classes: int, out_hw: tuple[int, int]):
        super().__init__()
        self.out_hw = tuple(out_hw)
        self.pre = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.ReLU(inplace=True))
        self.post = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(dim, num_classes, 1))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Latent BEV X (B, D, Hq, Wq) -> logits (B, num_classes, out_h, out_w)."""
        x = self.pre(X)
        if tuple(x.shape[-2:]) != self.out_hw:
            x = F.interpolate(x, size=self.out_hw, mode="bilinear", align_corners=False)
        return self.post(x)


class BEVFormer(nn.Module):
    """Multi-camera images -> latent BEV X and BEV segmentation logits (BEVFormer, segmentation only,
    as busch2026 Sec. III-A).

    Attributes: ``cfg``; ``query_grid`` (the BEV grid of X); ``backbone`` (``out_channels``,
    ``stride``); ``head`` (the shared :class:`SegHead`).
    """

    def __init__(self, cfg: BEVFormerConfig):
        super().__init__()
        self.cfg = cfg
        D = cfg.embed_dim
        Hq, Wq = cfg.query_hw
        self.query_grid = cfg.grid.with_shape(Hq, Wq)
        self.backbone = build_resnet_backbone(cfg.backbone, cfg.backbone_weights, cfg.out_stage)
        self.neck = nn.Conv2d(self.backbone.out_channels, D, 1)
        self.cam_embeds = nn.Parameter(torch.randn(cfg.num_cams, D) * 0.02)
        self.bev_queries = nn.Parameter(torch.randn(Hq * Wq, D) * 0.02)
        self.row_embed = nn.Parameter(torch.randn(Hq, D // 2))
        self.col_embed = nn.Parameter(torch.randn(Wq, D // 2))
        self.layers = nn.ModuleList([BEVFormerLayer(cfg) for _ in range(cfg.num_layers)])
        self.head = SegHead(D, cfg.num_classes, cfg.out_hw)
        self.register_buffer("pillars", pillar_points(self.query_grid, cfg.pillar_heights), persistent=False)
        xy = torch.as_tensor(self.query_grid.cell_centers(), dtype=torch.float32).reshape(-1, 2)
        self.register_buffer("ref_bev", self.query_grid.xy_to_normalized(xy), persistent=False)

    def positional_embedding(self) -> torch.Tensor:
        """(1, Hq * Wq, D) learned position of each query: [row embedding, column embedding]."""
        Hq, Wq = self.cfg.query_hw
        pos = torch.cat([self.row_embed[:, None].expand(Hq, Wq, -1), self.col_embed[None].expand(Hq, Wq, -1)], -1)
        return pos.reshape(1, Hq * Wq, -1)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, N, 3, h, w) ImageNet-normalised -> (B, N, D, h / stride, w / stride) projected features
        plus the camera embedding."""
        B, N = images.shape[:2]
        f = self.neck(self.backbone(images.flatten(0, 1)))
        f = f.view(B, N, *f.shape[1:])
        return f + self.cam_embeds[:N].view(1, N, -1, 1, 1).to(f.dtype)

    def forward(self, images: torch.Tensor, K: torch.Tensor, ego_T_cam: torch.Tensor,
                prev_bev: torch.Tensor | None = None, curr_T_prev: torch.Tensor | None = None,
                has_prev: torch.Tensor | None = None) -> dict:
        """Encode one keyframe.

        Args:
            images: (B, N, 3, h, w) float, ImageNet-normalised RGB. h and w should be multiples of
                the backbone stride (busch2026: 512 x 288 with stride 32).
            K: (B, N, 3, 3) intrinsics in pixels at (h, w) (OpenCV, pixel centres at integers).
            ego_T_cam: (B, N, 4, 4) camera -> ego, metres.
            prev_bev: (B, D, Hq, Wq) latent BEV ``X`` of the previous keyframe or None. Treated as a
                constant (detached, as BEVFormer computes it without gradient).
            curr_T_prev: (B, 4, 4) previous ego frame -> current ego frame; required with prev_bev.
            has_prev: (B,) bool, required with prev_bev: False for a sample without history (a
                scene start), whose current queries are then used twice, as BEVFormer does.
        Returns:
            dict with ``"bev"``: X (B, D, Hq, Wq), the latent BEV in the current ego frame over
            ``query_grid``, and ``"logits"``: (B, num_classes, out_h, out_w) = ``head(X)``.
        Raises:
            ValueError: inconsistent shapes, more cameras than ``num_cams``, or prev_bev without
                curr_T_prev / has_prev.
        """
        if images.dim() != 5 or images.shape[2] != 3:
            raise ValueError(f"images must be (B, N, 3, h, w), got {tuple(images.shape)}")
        B, N = images.shape[:2]
        if tuple(K.shape) != (B, N, 3, 3) or tuple(ego_T_cam.shape) != (B, N, 4, 4):
            raise ValueError(f"K {tuple(K.shape)} / ego_T_cam {tuple(ego_T_cam.shape)} do not match "
                             f"images (B={B}, N={N})")
        if N > self.cfg.num_cams:
            raise ValueError(f"{N} cameras given, the model has camera embeddings for {self.cfg.num_cams}")
        D = self.cfg.embed_dim
        Hq, Wq = self.cfg.query_hw
        feats = self.image_features(images)
        Hf, Wf = feats.shape[-2:]
        s = self.backbone.stride
        # The feature map covers (Hf * s, Wf * s) input pixels (= (h, w) when divisible).
        coords, in_front, visible = reference_points_cam(self.pillars, K.to(images.device),
                                                         ego_T_cam.to(images.device), (Hf * s, Wf * s),
                                                         self.cfg.min_depth)
        history, has_history = self._history(prev_bev, curr_T_prev, has_prev, B)
        query = self.bev_queries.unsqueeze(0).expand(B, -1, -1)
        pos = self.positional_embedding()
        for layer in self.layers:
            query = layer(query, pos, history, has_history, self.ref_bev, (Hq, Wq),
                          feats, coords, in_front, visible)
        X = query.transpose(1, 2).reshape(B, D, Hq, Wq)
        return {"bev": X, "logits": self.head(X)}

    def _history(self, prev_bev, curr_T_prev, has_prev, B):
        """Aligned history as (B, Q, D) queries and the (B,) mask of samples that have one."""
        if prev_bev is None:
            return None, None
        expected = (B, self.cfg.embed_dim, *self.cfg.query_hw)
        if tuple(prev_bev.shape) != expected:
            raise ValueError(f"prev_bev must be {expected}, got {tuple(prev_bev.shape)}")
        if curr_T_prev is None or has_prev is None:
            raise ValueError("prev_bev needs curr_T_prev and has_prev (which samples have a history)")
        if tuple(has_prev.shape) != (B,):
            raise ValueError(f"has_prev must be ({B},), got {tuple(has_prev.shape)}")
        prev_bev = prev_bev.detach()
        has = has_prev.to(device=prev_bev.device, dtype=torch.bool)
        aligned = align_history(prev_bev, curr_T_prev.to(prev_bev.device), self.query_grid)
        return aligned.flatten(2).transpose(1, 2), has


def build_bevformer(cfg: BEVFormerConfig | dict | None = None) -> BEVFormer:
    """Build a :class:`BEVFormer` from a config, a dict of its fields (e.g. a YAML preset), or the
    defaults. Raises: TypeError on unknown fields, ValueError on invalid values."""
    if cfg is None:
        cfg = BEVFormerConfig()
    elif isinstance(cfg, dict):
        cfg = BEVFormerConfig(**cfg)
    return BEVFormer(cfg)


def build_bevformer_from_dict(cfg: dict) -> BEVFormer:
    """Registry entry ``"bevformer"``: a :class:`BEVFormer` from a JSON-style dict (lists become
    tuples), e.g. the ``model`` entry of a run's ``config.json``."""
    return build_bevformer(BEVFormerConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}))


def forward_keyframes(model: BEVFormer, batch: dict, use_history: bool) -> dict:
    """The model on a collated keyframe batch (:class:`bevlib.data.dataset.KeyframeDataset`),
    with the previous keyframe encoded first (no gradient, as BEVFormer) as history when
    ``use_history``.

    Args:
        batch: ``images`` (B, N, 3, h, w) uint8, ``K`` (B, N, 3, 3), ``ego_T_cam`` (B, N, 4, 4);
            with history also ``prev_images`` / ``prev_K`` / ``prev_ego_T_cam``, ``curr_T_prev``
            (B, 4, 4) and ``has_prev`` (B,) bool.
    Returns: the model's dict (``"bev"``, ``"logits"``).
    """
    from .backbone import normalize_images

    dev = next(model.parameters()).device
    prev_bev = curr_T_prev = has_prev = None
    if use_history:
        has_prev = batch["has_prev"].to(dev)
        with torch.no_grad():
            prev_bev = model(normalize_images(batch["prev_images"].to(dev)), batch["prev_K"].to(dev),
                             batch["prev_ego_T_cam"].to(dev))["bev"]
        # a scene start has no history: zero it so nothing of the copied current frame leaks in
        prev_bev = prev_bev * has_prev.view(-1, 1, 1, 1).to(prev_bev.dtype)
        curr_T_prev = batch["curr_T_prev"].to(dev)
    return model(normalize_images(batch["images"].to(dev)), batch["K"].to(dev), batch["ego_T_cam"].to(dev),
                 prev_bev=prev_bev, curr_T_prev=curr_T_prev, has_prev=has_prev)
