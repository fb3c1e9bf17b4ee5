"""The 3-D voxel grid: metric ego extent, voxel size, and the affine map ``mem_T_ego`` between ego
metres and continuous voxel indices (LSS splatting, voxel / pillar backbones).

Index convention — it **follows** :class:`~bevlib.bev.BEVGrid`, so that a voxel tensor collapsed
over height is a BEV map on the matching BEV grid with no flip or transpose. A voxel tensor is
(B, C, Z, H, W) (torch's (N, C, D, H, W)) and a voxel's continuous index ("memory" coordinates) is
``m = (k, i, j)`` in that axis order:

* ``k`` (level, axis Z): along +z from the bottom edge ``z_min``,  ``z(k) = z_min + (k + 0.5) dz``
* ``i`` (row,   axis H): along -x from the front edge ``x_max``,   ``x(i) = x_max - (i + 0.5) dx``
* ``j`` (col,   axis W): along -y from the left edge ``y_max``,    ``y(j) = y_max - (j + 0.5) dy``

Integer indices are voxel centres; voxel (k, i, j) covers ``k - 0.5 <= m_0 < k + 0.5`` etc., i.e.
``z_min + k dz <= z < z_min + (k+1) dz``, ``x_max - (i+1) dx < x <= x_max - i dx`` and likewise
for y. (i, j) are exactly :meth:`BEVGrid.xy_to_rowcol` of :meth:`VoxelGrid.bev_grid`.

``mem_T_ego`` (4x4, float64, affine, not rigid: it scales and flips x and y) maps homogeneous ego
points (x, y, z, 1) to (k, i, j, 1); ``ego_T_mem`` is its inverse.

Conversion to the "x-forward index" convention of LSS / Simple-BEV-style code (index ``ix`` along
+x from ``x_min``, ``iy`` along +y from ``y_min``, ``iz`` along +z) is ``ix = H - 1 - i``,
``iy = W - 1 - j``, ``iz = k``; for a tensor ``vox`` (B, C, Z, H, W) that is
``vox.flip(-2, -1)`` indexed [iz, ix, iy], and ``T_flip @ mem_T_ego`` with
``T_flip = [[1,0,0,0],[0,-1,0,H-1],[0,0,-1,W-1],[0,0,0,1]]`` gives its (iz, ix, iy) coordinates.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .bev import BEVGrid


def _affine(T: np.ndarray, p):
    """p (..., 3) -> T[:3, :3] p + T[:3, 3]; numpy float64, or torch in p's float dtype / device."""
    if isinstance(p, torch.Tensor):
        dtype = p.dtype if p.is_floating_point() else torch.get_default_dtype()
        Tt = torch.as_tensor(T, dtype=dtype, device=p.device)
        return p.to(dtype) @ Tt[:3, :3].T + Tt[:3, 3]
    return np.asarray(p, dtype=np.float64) @ T[:3, :3].T + T[:3, 3]


@dataclass(frozen=True)
class VoxelGrid:
    """Metric extent (metres, ego frame: x forward, y left, z up) and resolution (voxels).

    Attributes:
        x_min, x_max, y_min, y_max, z_min, z_max: the box covered, metres.
        Z, H, W: voxels along z (levels), x (rows, front first) and y (columns, left first).
    Raises: ValueError for an empty extent or a non-positive count.
    """

    x_min: float = -30.0
    x_max: float = 30.0
    y_min: float = -15.0
    y_max: float = 15.0
    z_min: float = -2.0
    z_max: float = 4.0
    Z: int = 12
    H: int = 150
    W: int = 150

    def __post_init__(self):
        if not (self.x_max > self.x_min and self.y_max > self.y_min and self.z_max > self.z_min):
            raise ValueError(f"VoxelGrid extent is empty: x [{self.x_min}, {self.x_max}], y [{self.y_min}, "
                             f"{self.y_max}], z [{self.z_min}, {self.z_max}]")
        if min(self.Z, self.H, self.W) < 1:
            raise ValueError(f"VoxelGrid needs Z, H, W >= 1, got Z={self.Z}, H={self.H}, W={self.W}")

    @classmethod
    def from_voxel_size(cls, x_range, y_range, z_range, voxel_size) -> "VoxelGrid":
        """A grid from (min, max) ranges in metres and a voxel size (dx, dy, dz) in metres.

        Raises: ValueError when a range is not a whole number of voxels (within 1e-6 voxel)."""
        counts = []
        for (lo, hi), d, ax in zip((x_range, y_range, z_range), voxel_size, "xyz"):
            n = (hi - lo) / d
            if d <= 0 or abs(n - round(n)) > 1e-6 or round(n) < 1:
                raise ValueError(f"{ax} range [{lo}, {hi}] is not a positive whole number of {d} m voxels")
            counts.append(int(round(n)))
        nx, ny, nz = counts
        return cls(x_range[0], x_range[1], y_range[0], y_range[1], z_range[0], z_range[1], Z=nz, H=nx, W=ny)

    @classmethod
    def from_bev(cls, grid: BEVGrid, z_min: float, z_max: float, Z: int) -> "VoxelGrid":
        """The voxel grid over a BEV grid's extent and resolution, with Z levels in [z_min, z_max]."""
        return cls(grid.x_min, grid.x_max, grid.y_min, grid.y_max, z_min, z_max, Z, grid.H, grid.W)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(Z, H, W): the trailing shape of a voxel tensor."""
        return self.Z, self.H, self.W

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        """(dx, dy, dz): metres per voxel along the ego axes x, y, z (rows, columns, levels)."""
        return ((self.x_max - self.x_min) / self.H, (self.y_max - self.y_min) / self.W,
                (self.z_max - self.z_min) / self.Z)

    def bev_grid(self) -> BEVGrid:
        """The :class:`BEVGrid` of the (H, W) plane: same extent, rows and columns."""
        return BEVGrid(self.x_min, self.x_max, self.y_min, self.y_max, self.H, self.W)

    @property
    def mem_T_ego(self) -> np.ndarray:
        """(4, 4) float64 affine map from ego metres (x, y, z, 1) to continuous voxel indices
        (k, i, j, 1); integer values are voxel centres."""
        dx, dy, dz = self.voxel_size
        return np.array([
            [0.0, 0.0, 1.0 / dz, -self.z_min / dz - 0.5],
            [-1.0 / dx, 0.0, 0.0, self.x_max / dx - 0.5],
            [0.0, -1.0 / dy, 0.0, self.y_max / dy - 0.5],
            [0.0, 0.0, 0.0, 1.0],
        ])

    @property
    def ego_T_mem(self) -> np.ndarray:
        """(4, 4) float64 inverse of :attr:`mem_T_ego`: voxel indices (k, i, j, 1) -> ego metres."""
        dx, dy, dz = self.voxel_size
        return np.array([
            [0.0, -dx, 0.0, self.x_max - 0.5 * dx],
            [0.0, 0.0, -dy, self.y_max - 0.5 * dy],
            [dz, 0.0, 0.0, self.z_min + 0.5 * dz],
            [0.0, 0.0, 0.0, 1.0],
        ])

    def voxel_centers(self) -> np.ndarray:
        """(Z, H, W, 3) float64 ego (x, y, z) metres of every voxel centre."""
        dx, dy, dz = self.voxel_size
        z = self.z_min + (np.arange(self.Z) + 0.5) * dz
        x = self.x_max - (np.arange(self.H) + 0.5) * dx
        y = self.y_max - (np.arange(self.W) + 0.5) * dy
        zz, xx, yy = np.meshgrid(z, x, y, indexing="ij")
        return np.stack([xx, yy, zz], axis=-1)

    def ego_to_mem(self, points):
        """Ego points (..., 3) metres -> continuous voxel indices (..., 3) as (k, i, j).
        numpy in, float64 numpy out; torch in, torch out (promoted dtype, differentiable)."""
        return _affine(self.mem_T_ego, points)

    def mem_to_ego(self, mem):
        """Continuous voxel indices (..., 3) as (k, i, j) -> ego points (..., 3) metres (numpy or torch)."""
        return _affine(self.ego_T_mem, mem)

    def points_to_voxels(self, points):
        """The voxel holding each ego point.

        Args:
            points: (..., 3) ego metres, numpy or torch (e.g. (N, 3) LiDAR points in the ego frame).
        Returns:
            idx: (..., 3) int64 (k, i, j), clipped into the grid for invalid points (so it can
                always index a tensor; mask with ``valid``).
            valid: (...) bool, True for finite points inside the grid (bounds as in the module
                docstring, ``z_min <= z < z_max``, ``x_min < x <= x_max``, ``y_min < y <= y_max``,
                up to float rounding on the faces).
            Both numpy for numpy input, torch (on the points' device) for torch input.
        """
        torch_in = isinstance(points, torch.Tensor)
        with np.errstate(invalid="ignore"):   # inf * 0 in the matmul: such points are invalid anyway
            m = self.ego_to_mem(points.detach() if torch_in else points)
        hi = (self.Z, self.H, self.W)
        if torch_in:
            f = torch.floor(m + 0.5)
            valid = torch.isfinite(f).all(-1)
            for a in range(3):
                valid &= (f[..., a] >= 0) & (f[..., a] < hi[a])
            f = torch.nan_to_num(f, nan=0.0, posinf=0.0, neginf=0.0)
            lim = torch.as_tensor([h - 1 for h in hi], dtype=f.dtype, device=f.device)
            idx = torch.minimum(f.clamp_min(0), lim).long()
            return idx, valid
        f = np.floor(m + 0.5)
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(f).all(-1)
            for a in range(3):
                valid &= (f[..., a] >= 0) & (f[..., a] < hi[a])
        f = np.nan_to_num(f, nan=0.0, posinf=0.0, neginf=0.0)
        idx = np.clip(f, 0, np.array(hi) - 1).astype(np.int64)
        return idx, valid

    def flat_index(self, idx):
        """(..., 3) integer (k, i, j) -> (...) index into a flattened (Z * H * W) voxel axis."""
        return (idx[..., 0] * self.H + idx[..., 1]) * self.W + idx[..., 2]

    def as_dict(self) -> dict:
        """The grid as a plain dict (configs, hashing); ``VoxelGrid(**d)`` rebuilds it."""
        return dict(x_min=self.x_min, x_max=self.x_max, y_min=self.y_min, y_max=self.y_max,
                    z_min=self.z_min, z_max=self.z_max, Z=self.Z, H=self.H, W=self.W)
