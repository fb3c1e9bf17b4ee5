"""MinkUNet34C, the point backbone of chen2024 CSC (Sec. 4.1, "semantic segmentation implemented by
MinkUNet [7]"), on bevlib's pure-torch sparse convolution (:mod:`bevlib.models.sparse_conv`).

Architecture (Choy et al. 2019, MinkowskiEngine ``examples/minkunet.py`` ``MinkUNet34C``; SLidR's
``model/res16unet.py`` ``Res16UNet34C`` is the same network, which CSC inherits from SLidR):

* stem: k x k x k submanifold conv (k = 3 in SLidR's ``slidr_minkunet.yaml``, 5 in MinkowskiEngine's
  example) in_channels -> ``init_dim`` (32), BN, ReLU  -> skip p1 (stride 1).
* 4 encoder stages: k=2 stride-2 conv (width kept), BN, ReLU, then ``layers[i]`` residual
  :class:`BasicBlock` s (two k=3 submanifold convs) to ``planes[i]`` -> skips p2, p4, p8; stage 4 ends at
  stride 16.
* 4 decoder stages: k=2 stride-2 transposed conv to ``planes[4 + j]`` written onto the skip tensor's
  coordinates, BN, ReLU, concatenation with the skip's features, ``layers[4 + j]`` BasicBlocks.
* final k=1 conv (with bias) ``planes[7]`` -> out_channels (SLidR: 64), optionally L2-normalised
  (SLidR's pre-training sets ``normalize_features: True``).

Every tensor keeps MinkowskiEngine's coordinate bookkeeping: the output lives on exactly the input
voxels' coordinates (same tensor object, same row order).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn as nn

from bevlib.models.sparse_conv import (SparseBatchNorm, SparseConv3d, SparseConvTranspose3d, SparseReLU,
                                       SparseVoxels, voxelize_points)

#: Residual blocks per stage (4 encoder, 4 decoder) of MinkowskiEngine's MinkUNet14 / 18 / 34.
DEPTHS: dict[str, tuple[int, ...]] = {
    "34": (2, 3, 4, 6, 2, 2, 2, 2),
    "18": (2, 2, 2, 2, 2, 2, 2, 2),
    "14": (1, 1, 1, 1, 1, 1, 1, 1),
    "tiny": (1, 1, 1, 1, 1, 1, 1, 1),
}

#: The "C" channel plan of MinkUNet34C / Res16UNet34C: stem width (INIT_DIM) then PLANES of the 8 stages.
PAPER_INIT_DIM = 32
PAPER_PLANES = (32, 64, 128, 256, 256, 128, 96, 96)

#: The total stride of the network (4 stride-2 stages); translations by multiples of it commute with it.
TOTAL_STRIDE = 16


@dataclass(frozen=True)
class MinkUNetConfig:
    """Hyper-parameters of :class:`MinkUNet`.

    Attributes:
        in_channels: per-voxel input features. Default 4 = (x, y, z, intensity) as in CSC Sec. 3.1
            ("each point P_k in R^4 ... location (x, y, z) coupled with its intensity"); x, y, z in
            metres in the LiDAR frame, mean-pooled per voxel by :meth:`MinkUNet.forward_points`.
        out_channels: per-point feature dim D of the backbone output (SLidR / CSC: 64).
        init_dim: stem width before ``width`` scaling (MinkUNet34C: 32).
        planes: the 8 stage widths before scaling (MinkUNet34C: 32, 64, 128, 256, 256, 128, 96, 96).
        depth: a key of :data:`DEPTHS` ("34" = blocks (2, 3, 4, 6, 2, 2, 2, 2); "tiny" / "14" = one
            block per stage) or an explicit 8-tuple of block counts (>= 1 each).
        width: channel multiplier applied to init_dim and planes (rounded, >= 1 channel).
        stem_kernel: odd kernel size of the stem conv (SLidR: 3; MinkowskiEngine's example: 5).
        voxel_size: cubic voxel edge in metres for :meth:`MinkUNet.forward_points` (SLidR / CSC: 0.1).
        bn_momentum: torch BatchNorm momentum (SLidR: 0.05).
        normalize_features: L2-normalise the output features (SLidR pre-training: True).
    Raises: ValueError naming the bad field.
    """

    in_channels: int = 4
    out_channels: int = 64
    init_dim: int = PAPER_INIT_DIM
    planes: tuple[int, ...] = PAPER_PLANES
    depth: str | tuple[int, ...] = "34"
    width: float = 1.0
    stem_kernel: int = 3
    voxel_size: float = 0.1
    bn_momentum: float = 0.05
    normalize_features: bool = False

    def __post_init__(self):
        for name in ("in_channels", "out_channels", "init_dim"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if len(self.planes) != 8 or any(not isinstance(p, int) or p < 1 for p in self.planes):
            raise ValueError(f"planes must be 8 ints >= 1, got {self.planes!r}")
        if isinstance(self.depth, str):
            if self.depth not in DEPTHS:
                raise ValueError(f"depth must be one of {sorted(DEPTHS)} or an 8-tuple, got {self.depth!r}")
        elif len(self.depth) != 8 or any(not isinstance(n, int) or n < 1 for n in self.depth):
            raise ValueError(f"depth must be 8 ints >= 1, got {self.depth!r}")
        if not (isinstance(self.width, (int, float)) and self.width > 0):
            raise ValueError(f"width must be > 0, got {self.width!r}")
        if not isinstance(self.stem_kernel, int) or self.stem_kernel < 1 or self.stem_kernel % 2 == 0:
            raise ValueError(f"stem_kernel must be an odd int >= 1, got {self.stem_kernel!r}")
        if not (isinstance(self.voxel_size, (int, float)) and self.voxel_size > 0):
            raise ValueError(f"voxel_size must be > 0 metres, got {self.voxel_size!r}")
        if not 0 <= self.bn_momentum <= 1:
            raise ValueError(f"bn_momentum must be in [0, 1], got {self.bn_momentum!r}")

    @property
    def layers(self) -> tuple[int, ...]:
        """Blocks per stage (8 ints)."""
        return DEPTHS[self.depth] if isinstance(self.depth, str) else tuple(self.depth)

    def _scale(self, c: int) -> int:
        return max(1, int(round(c * self.width)))

    @property
    def stem_width(self) -> int:
        """Scaled stem width (init_dim * width)."""
        return self._scale(self.init_dim)

    @property
    def widths(self) -> tuple[int, ...]:
        """Scaled 8 stage widths (planes * width)."""
        return tuple(self._scale(p) for p in self.planes)


def paper_config(**overrides) -> MinkUNetConfig:
    """MinkUNet34C as pre-trained by SLidR / CSC: widths 32 | 32 64 128 256 | 256 128 96 96, blocks
    2 3 4 6 | 2 2 2 2, stem k=3, 64 output channels, 0.1 m voxels, BN momentum 0.05, L2-normalised
    output (SLidR ``config/slidr_minkunet.yaml``: ``kernel_size: 3``, ``model_n_out: 64``,
    ``normalize_features: True``). Keyword overrides replace fields (e.g. ``normalize_features=False``
    for fine-tuning)."""
    return replace(MinkUNetConfig(normalize_features=True), **overrides)


def tiny_config(**overrides) -> MinkUNetConfig:
    """A CPU-sized MinkUNet for tests: the 34C plan at width 1/4 (8 | 8 16 32 64 | 64 32 24 24), one block
    per stage, 64 output channels, not normalised."""
    return replace(MinkUNetConfig(width=0.25, depth="tiny"), **overrides)


def _init_conv(conv: SparseConv3d) -> None:
    # SLidR / MinkowskiEngine ResNetBase.weight_initialization: kaiming_normal_(mode="fan_out", relu) on
    # ME's (K^3, Cin, Cout) kernel, where torch's fan_out reads K^3 * Cout; bias (final conv only) left at its
    # nn.Conv3d-style default.
    K3, _, cout = conv.weight.shape
    with torch.no_grad():
        conv.weight.normal_(0.0, math.sqrt(2.0 / (K3 * cout)))


class BasicBlock(nn.Module):
    """Residual block of two k=3 submanifold convs (ResNet BasicBlock, MinkowskiEngine ``resnet_block``).

    ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``, shortcut = k=1 conv + BN when the width
    changes, identity otherwise. forward(x: SparseVoxels (N, cin)) -> SparseVoxels (N, cout) on x's coords.
    """

    def __init__(self, cin: int, cout: int, bn_momentum: float = 0.1):
        super().__init__()
        self.conv1 = SparseConv3d(cin, cout, 3)
        self.bn1 = SparseBatchNorm(cout, momentum=bn_momentum)
        self.conv2 = SparseConv3d(cout, cout, 3)
        self.bn2 = SparseBatchNorm(cout, momentum=bn_momentum)
        self.relu = SparseReLU()
        self.shortcut = (nn.Sequential(SparseConv3d(cin, cout, 1), SparseBatchNorm(cout, momentum=bn_momentum))
                         if cin != cout else None)

    def forward(self, x: SparseVoxels) -> SparseVoxels:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        res = x if self.shortcut is None else self.shortcut(x)
        return out.replace_feats(torch.relu(out.feats + res.feats))


def _stage(cin: int, cout: int, n: int, bn_momentum: float) -> nn.Sequential:
    return nn.Sequential(*[BasicBlock(cin if i == 0 else cout, cout, bn_momentum) for i in range(n)])


class MinkUNet(nn.Module):
    """MinkUNet (default MinkUNet34C) on :class:`SparseVoxels`; see the module doc for the layer plan.

    Args: config: :class:`MinkUNetConfig` (default: the paper's MinkUNet34C without output normalisation).
    Source: Choy et al., CVPR 2019 (MinkowskiEngine MinkUNet34C); SLidR (Sautier et al., CVPR 2022)
        Res16UNet34C; chen2024 CSC Sec. 4.1.
    """

    def __init__(self, config: MinkUNetConfig | None = None):
        super().__init__()
        cfg = MinkUNetConfig() if config is None else config
        if not isinstance(cfg, MinkUNetConfig):
            raise ValueError(f"config must be a MinkUNetConfig, got {type(cfg).__name__}")
        self.config = cfg
        m, c0, P, L = cfg.bn_momentum, cfg.stem_width, cfg.widths, cfg.layers
        self.stem = nn.Sequential(SparseConv3d(cfg.in_channels, c0, cfg.stem_kernel),
                                  SparseBatchNorm(c0, momentum=m), SparseReLU())
        self.down = nn.ModuleList()
        self.enc = nn.ModuleList()
        inplanes = c0
        for i in range(4):
            self.down.append(nn.Sequential(SparseConv3d(inplanes, inplanes, 2, 2),
                                           SparseBatchNorm(inplanes, momentum=m), SparseReLU()))
            self.enc.append(_stage(inplanes, P[i], L[i], m))
            inplanes = P[i]
        # Skip widths the decoder concatenates, deepest first: encoder stages 3, 2, 1, then the stem.
        skip_widths = (P[2], P[1], P[0], c0)
        self.up = nn.ModuleList()
        self.up_bn = nn.ModuleList()
        self.dec = nn.ModuleList()
        for j in range(4):
            self.up.append(SparseConvTranspose3d(inplanes, P[4 + j], 2, 2))
            self.up_bn.append(SparseBatchNorm(P[4 + j], momentum=m))
            self.dec.append(_stage(P[4 + j] + skip_widths[j], P[4 + j], L[4 + j], m))
            inplanes = P[4 + j]
        self.relu = SparseReLU()
        self.final = SparseConv3d(inplanes, cfg.out_channels, 1, bias=True)
        for mod in self.modules():
            if isinstance(mod, SparseConv3d):
                _init_conv(mod)
            elif isinstance(mod, SparseBatchNorm):
                nn.init.ones_(mod.weight)
                nn.init.zeros_(mod.bias)

    def forward(self, x: SparseVoxels) -> SparseVoxels:
        """Run the U-Net on stride-1 voxels.

        Args:
            x: :class:`SparseVoxels` at stride 1, coords (N, 4) int64 ``[b, x, y, z]`` voxel indices, feats
               (N, in_channels) floating (the parameters' dtype).
        Returns: SparseVoxels on ``x.coords`` (same tensor, same row order), stride 1, feats (N, out_channels).
        Raises: ValueError naming x when it is not a stride-1 SparseVoxels with in_channels features.
        """
        if not isinstance(x, SparseVoxels):
            raise ValueError(f"x must be a SparseVoxels, got {type(x).__name__}")
        if x.stride != 1:
            raise ValueError(f"x must be at stride 1 (the input voxels), got stride {x.stride}")
        if x.feats.shape[1] != self.config.in_channels:
            raise ValueError(f"x.feats must have in_channels={self.config.in_channels} columns, "
                             f"got {tuple(x.feats.shape)}")
        if x.coords.shape[0] == 0:
            raise ValueError("x has no voxels")
        out = self.stem(x)
        skips = [out]
        for i in range(4):
            out = self.enc[i](self.down[i](out))
            if i < 3:
                skips.append(out)
        for j in range(4):
            skip = skips[3 - j]
            up = self.relu(self.up_bn[j](self.up[j](out, skip)))
            # The transposed conv wrote onto skip.coords, so rows align and the cat is per voxel.
            out = self.dec[j](skip.replace_feats(torch.cat([up.feats, skip.feats], 1)))
        out = self.final(out)
        if self.config.normalize_features:
            out = out.replace_feats(nn.functional.normalize(out.feats, dim=1))
        return SparseVoxels._trusted(x.coords, out.feats, 1, x.kernel_maps)

    def forward_points(self, points: torch.Tensor | list[torch.Tensor], batch_index: torch.Tensor | None = None,
                       return_voxels: bool = False):
        """Per-point features: voxelise (``voxel_size`` cubes, mean-pooled features), run, lift back.

        Args:
            points: (P, in_channels) float tensor with ``batch_index``, or a list of (P_b, in_channels)
                float tensors, one per sample (batch index = list position). Columns 0..2 are x, y, z in
                metres (each sample in its own LiDAR frame) and decide the voxel; all columns (e.g. x, y, z,
                intensity) are the input features, mean-pooled per voxel.
            batch_index: (P,) integer >= 0 when points is a tensor; must be None for a list.
            return_voxels: also return the output voxels and the point -> voxel index.
        Returns: (P_total, out_channels) features in the order of the (concatenated) points; points in one
            voxel get identical rows. With return_voxels: (features, voxels_out: SparseVoxels, inverse (P,)
            int64 with ``features == voxels_out.feats[inverse]``).
        Raises: ValueError naming points or batch_index for bad shapes / types (and voxelize_points' errors).
        """
        C = self.config.in_channels
        if C < 3:
            raise ValueError(f"points need x, y, z columns, but in_channels={C} < 3; voxelise yourself and "
                             "call forward()")
        if isinstance(points, (list, tuple)):
            if batch_index is not None:
                raise ValueError("batch_index must be None when points is a list (the list position is the batch)")
            if len(points) == 0:
                raise ValueError("points is an empty list")
            for b, p in enumerate(points):
                if not isinstance(p, torch.Tensor) or p.dim() != 2 or p.shape[1] != C or not p.is_floating_point():
                    raise ValueError(f"points[{b}] must be a (P_b, in_channels={C}) float tensor, got "
                                     f"{getattr(p, 'dtype', type(p))} {tuple(getattr(p, 'shape', ()))}")
            batch_index = torch.cat([torch.full((p.shape[0],), b, dtype=torch.long, device=p.device)
                                     for b, p in enumerate(points)])
            points = torch.cat(list(points))
        else:
            if not isinstance(points, torch.Tensor) or points.dim() != 2 or points.shape[1] != C \
                    or not points.is_floating_point():
                raise ValueError(f"points must be a (P, in_channels={C}) float tensor or a list of them, got "
                                 f"{getattr(points, 'dtype', type(points))} {tuple(getattr(points, 'shape', ()))}")
            if batch_index is None:
                raise ValueError("batch_index is required when points is a tensor")
        if points.shape[0] == 0:
            raise ValueError("points has no rows")
        voxels, inverse = voxelize_points(points[:, :3], batch_index, self.config.voxel_size, points)
        out = self.forward(voxels)
        feats = out.feats[inverse]
        return (feats, out, inverse) if return_voxels else feats
