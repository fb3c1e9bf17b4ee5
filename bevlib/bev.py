"""The BEV grid: the one place where BEV rows/columns map to metric ego coordinates.

A BEV tensor is (B, C, H, W) in the ego frame of its keyframe. Row ``i`` runs along the
longitudinal axis x (row 0 is the front edge, ``x_max``), column ``j`` along the lateral axis y
(column 0 is the left edge, ``y_max``), so a BEV image shows the road as a driver-up map:

    x(i) = x_max - (i + 0.5) * (x_max - x_min) / H
    y(j) = y_max - (j + 0.5) * (y_max - y_min) / W

busch2026 Sec. IV-A: 150 x 150 queries over [-15, 15] m lateral and [-30, 30] m longitudinal.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import geometry
from .classes import IGNORE


@dataclass(frozen=True)
class BEVGrid:
    """Metric extent (metres, ego frame) and resolution (cells) of a BEV map."""

    x_min: float = -30.0
    x_max: float = 30.0
    y_min: float = -15.0
    y_max: float = 15.0
    H: int = 150
    W: int = 150

    def __post_init__(self):
        if not (self.x_max > self.x_min and self.y_max > self.y_min):
            raise ValueError(f"BEVGrid extent is empty: x [{self.x_min}, {self.x_max}], y [{self.y_min}, {self.y_max}]")
        if self.H < 1 or self.W < 1:
            raise ValueError(f"BEVGrid needs H, W >= 1, got H={self.H}, W={self.W}")

    @property
    def cell_size(self) -> tuple[float, float]:
        """(dx, dy): metres per row and per column."""
        return (self.x_max - self.x_min) / self.H, (self.y_max - self.y_min) / self.W

    def with_shape(self, H: int, W: int) -> "BEVGrid":
        """The same extent at another resolution."""
        return BEVGrid(self.x_min, self.x_max, self.y_min, self.y_max, H, W)

    def cell_centers(self) -> np.ndarray:
        """(H, W, 2) float64 ego (x, y) metres of every cell centre."""
        dx, dy = self.cell_size
        x = self.x_max - (np.arange(self.H) + 0.5) * dx
        y = self.y_max - (np.arange(self.W) + 0.5) * dy
        return np.stack(np.meshgrid(x, y, indexing="ij"), axis=-1)

    def xy_to_rowcol(self, xy):
        """Ego (x, y) metres (..., 2) -> fractional (row, col) (..., 2); integer values are cell centres."""
        dx, dy = self.cell_size
        row = (self.x_max - xy[..., 0]) / dx - 0.5
        col = (self.y_max - xy[..., 1]) / dy - 0.5
        return np.stack([row, col], -1) if isinstance(xy, np.ndarray) else torch.stack([row, col], -1)

    def xy_to_normalized(self, xy):
        """Ego (x, y) (..., 2) -> ``grid_sample`` coordinates (..., 2) as (gx, gy) with
        ``align_corners=False``: gx runs along columns (lateral), gy along rows (longitudinal);
        -1 / +1 are the outer edges of the grid."""
        gx = 2.0 * (self.y_max - xy[..., 1]) / (self.y_max - self.y_min) - 1.0
        gy = 2.0 * (self.x_max - xy[..., 0]) / (self.x_max - self.x_min) - 1.0
        return np.stack([gx, gy], -1) if isinstance(xy, np.ndarray) else torch.stack([gx, gy], -1)

    def contains(self, xy):
        """Bool mask (...) of ego (x, y) (..., 2) inside the grid's extent."""
        return ((xy[..., 0] >= self.x_min) & (xy[..., 0] <= self.x_max)
                & (xy[..., 1] >= self.y_min) & (xy[..., 1] <= self.y_max))

    def range_mask(self, longitudinal_range_m: float) -> np.ndarray:
        """(H, W) bool: cells whose centre lies within a centred longitudinal range.

        busch2026 Sec. IV-B evaluates mIoU20 / mIoU40 / mIoU60: the 20 m, 40 m and 60 m of the
        60 m longitudinal extent centred on the ego vehicle, i.e. ``|x| <= range / 2``.
        """
        x = self.cell_centers()[..., 0]
        centre = 0.5 * (self.x_max + self.x_min)
        return np.abs(x - centre) <= longitudinal_range_m / 2.0 + 1e-9

    def as_dict(self) -> dict:
        """The grid as a plain dict (for configs and hashing); ``BEVGrid(**d)`` rebuilds it."""
        return dict(x_min=self.x_min, x_max=self.x_max, y_min=self.y_min, y_max=self.y_max, H=self.H, W=self.W)


def warp_bev(features: torch.Tensor, src_T_dst: torch.Tensor, grid: BEVGrid, mode: str = "bilinear") -> torch.Tensor:
    """Resample a BEV tensor from one ego frame into another (ego-motion compensation).

    Each output cell centre ``p_dst`` is mapped into the source frame, ``p_src = src_T_dst p_dst``,
    and the source map is sampled there; cells that fall outside the source extent become 0.
    Used both by BEVFormer's temporal self-attention (history BEV into the current frame) and by
    busch2026 Alg. 1 (current latent BEV rotated and translated into the previous frame).

    Args:
        features: (B, C, H, W) BEV in the source ego frame, any float dtype.
        src_T_dst: (B, 4, 4) or (4, 4) rigid transform, destination ego frame -> source ego frame.
        grid: the BEV grid of both maps (H, W may differ from the tensor's: only the extent matters).
    Returns: (B, C, H, W) in the destination ego frame, same dtype; differentiable in ``features``.
    """
    B, _, H, W = features.shape
    g = grid.with_shape(H, W)
    xy = torch.as_tensor(g.cell_centers(), dtype=features.dtype, device=features.device)  # (H, W, 2)
    T = src_T_dst.to(features.dtype).to(features.device)
    if T.dim() == 2:
        T = T.expand(B, 4, 4)
    # Ground-plane points (z = 0): only the planar part of the motion matters for a BEV map.
    src_xy = torch.einsum("bij,hwj->bhwi", T[:, :2, :2], xy) + T[:, None, None, :2, 3]
    norm = g.xy_to_normalized(src_xy)
    return F.grid_sample(features, norm, mode=mode, padding_mode="zeros", align_corners=False)


def lift_to_bev(labels_cp: np.ndarray, K: np.ndarray, ego_T_cam: np.ndarray, grid: BEVGrid) -> np.ndarray:
    """Camera labels -> BEV on the flat-ground assumption (for display, busch2026 Fig. 5g).

    Each BEV cell centre on z = 0 is projected into every camera; it takes the label of the
    first camera (in rig order) whose image contains it. labels_cp (N, h, w) -> (H, W) uint8,
    IGNORE where no camera sees the cell.
    """
    xy = grid.cell_centers().reshape(-1, 2)
    pts = np.concatenate([xy, np.zeros((len(xy), 1))], 1)
    out = np.full(len(xy), IGNORE, np.uint8)
    h, w = labels_cp.shape[-2:]
    for n in range(labels_cp.shape[0]):
        uv, _, front = geometry.project(K[n], geometry.invert(ego_T_cam[n]), pts)
        u, v = np.round(uv[:, 0]).astype(np.int64), np.round(uv[:, 1]).astype(np.int64)
        ok = front & (u >= 0) & (u < w) & (v >= 0) & (v < h) & (out == IGNORE)
        out[ok] = labels_cp[n, v[ok], u[ok]]
    return out.reshape(grid.H, grid.W)
