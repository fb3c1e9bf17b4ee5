"""Rigid KPConv (Thomas et al., "KPConv: Flexible and Deformable Convolution for Point Clouds",
ICCV 2019), written from the paper for RangeViT's 3D refiner (used by lukkassen2024 MultiViT):
2D features gathered at each LiDAR point -> one KPConv -> BN -> ReLU -> point-wise linear.

The convolution of features ``f`` at a point ``x`` is the paper's Eq. (1) with the linear
correlation of Eq. (3)::

    g(x) = sum_{y in N(x)} sum_k h(y - x, x~_k) W_k f(y),   h(z, x~_k) = max(0, 1 - |z - x~_k| / sigma)

where ``N(x)`` are the support points within ``radius`` of ``x`` (at most ``max_neighbors``,
nearest first) and ``x~_k`` are ``kernel_size`` fixed kernel points. Only the rigid variant is
implemented (no deformable offsets, no "closest" aggregation, no Gaussian influence).

Everything here is plain torch (no compiled neighbour search), so it runs on CPU and GPU alike.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Neighbors", "KPConv", "kernel_points", "radius_neighbors"]

#: neighbour-count normalisations accepted by :class:`KPConv`.
NORMALIZATIONS = ("none", "count")


def kernel_points(kernel_size: int, radius: float, ratio: float = 0.66,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Deterministic rigid kernel disposition: one point at the centre, the rest on a sphere.

    Point 0 is the origin; points ``1..K-1`` lie on a Fibonacci (golden-angle) sphere of radius
    ``ratio * radius``. The paper (Sec. 3.2) and KPConv-PyTorch (``kernels/kernel_points.py``)
    obtain their dispositions by minimising a repulsion potential between kernel points plus an
    attraction to the centre, with the centre point fixed, then rescale so that the mean distance
    of the non-centre points to the centre is ``0.66 * radius``, then apply a random rotation.
    We keep the fixed centre and the 0.66 ratio but replace the seeded optimisation by the
    closed-form Fibonacci lattice, which is near-uniform on the sphere for any count, needs no
    cached ``.ply`` files and is identical on every machine. For K = 15 the 14 outer points of the
    optimised disposition sit on (almost) one shell too, so the two differ by a rotation and a
    small jitter of the shell points.

    Args:
        kernel_size: K >= 1, the number of kernel points (K = 1: the centre only).
        radius: neighbourhood radius in metres (> 0); the shell has radius ``ratio * radius``.
        ratio: shell radius as a fraction of ``radius``.
        dtype: floating dtype of the result.

    Returns:
        (K, 3) tensor of kernel point offsets in metres, relative to the query point.

    Raises:
        ValueError: ``kernel_size < 1`` or ``radius <= 0`` or ``ratio <= 0``.
    """
    if kernel_size < 1:
        raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
    if not radius > 0 or not ratio > 0:
        raise ValueError(f"radius and ratio must be > 0, got radius={radius}, ratio={ratio}")
    n = kernel_size - 1
    pts = torch.zeros(kernel_size, 3, dtype=torch.float64)
    if n > 0:
        i = torch.arange(n, dtype=torch.float64)
        z = 1.0 - (2.0 * i + 1.0) / n          # mid-point rule: no point sits exactly on a pole
        r = torch.sqrt((1.0 - z * z).clamp_min(0.0))
        phi = i * math.pi * (3.0 - math.sqrt(5.0))   # golden angle
        pts[1:] = torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], dim=1)
    return (pts * (ratio * radius)).to(dtype)


@dataclass
class Neighbors:
    """Padded radius neighbourhoods.

    Attributes:
        index: (M, H) int64, support index of each neighbour, nearest first; padding entries
            hold the shadow index ``N`` (one past the last support point).
        mask: (M, H) bool, True for real neighbours (``index < N``).
        num_support: N, the number of support points (the shadow index).
    """

    index: torch.Tensor
    mask: torch.Tensor
    num_support: int

    @property
    def counts(self) -> torch.Tensor:
        """(M,) int64 number of real neighbours of each query."""
        return self.mask.sum(dim=1)


def _check_points(name: str, p: torch.Tensor) -> None:
    if p.dim() != 2 or p.shape[1] != 3 or not p.is_floating_point():
        raise ValueError(f"{name} must be a floating (n, 3) tensor, got {tuple(p.shape)} {p.dtype}")


def _check_batch(name: str, b: torch.Tensor | None, n: int, device) -> torch.Tensor:
    if b is None:
        return torch.zeros(n, dtype=torch.int64, device=device)
    if b.shape != (n,) or b.dtype not in (torch.int32, torch.int64, torch.int16, torch.uint8):
        raise ValueError(f"{name} must be an integer ({n},) tensor, got {tuple(b.shape)} {b.dtype}")
    b = b.to(torch.int64)
    if n and int(b.min()) < 0:
        raise ValueError(f"{name} must be >= 0")
    return b


@torch.no_grad()
def radius_neighbors(support: torch.Tensor, queries: torch.Tensor, radius: float,
                     max_neighbors: int | None = None, support_batch: torch.Tensor | None = None,
                     query_batch: torch.Tensor | None = None) -> Neighbors:
    """Support points within ``radius`` of each query (``|y - x| <= radius``), nearest first.

    Voxel-hash search: support points are bucketed in cubic cells of side ``radius`` (sorted by
    a linear cell key), each query looks up its 27 surrounding cells with ``searchsorted`` and
    keeps the candidates inside the ball. Ties in distance are broken by the smaller support
    index, so truncation to ``max_neighbors`` is deterministic. Points of different clouds (batch
    indices) never neighbour each other.

    Complexity: O((N + M) log N) for bucketing and look-up plus O(E log E) to filter and sort the
    E candidate pairs (E ~ 27 * M * mean cell occupancy, about 6.5x the number of true neighbours
    for uniform density); memory O(E + M * H). No N x M distance matrix is formed.

    Args:
        support: (N, 3) float support coordinates, metres.
        queries: (M, 3) float query coordinates, metres, same dtype/device as ``support``.
        radius: neighbourhood radius, metres (> 0).
        max_neighbors: keep at most this many (the nearest) per query; None keeps all.
        support_batch: (N,) integer cloud index of each support point (None: one cloud).
        query_batch: (M,) integer cloud index of each query (None: one cloud).

    Returns:
        :class:`Neighbors` with H = the largest kept neighbour count (>= 1 so shapes never
        collapse; all-padding rows for queries without neighbours).

    Raises:
        ValueError: bad shapes/dtypes, ``radius <= 0``, ``max_neighbors < 1``, non-finite
            coordinates, or a cell grid too large for an int64 key.
    """
    _check_points("support", support)
    _check_points("queries", queries)
    if not radius > 0:
        raise ValueError(f"radius must be > 0, got {radius}")
    if max_neighbors is not None and max_neighbors < 1:
        raise ValueError(f"max_neighbors must be >= 1 or None, got {max_neighbors}")
    dev = support.device
    n, m = support.shape[0], queries.shape[0]
    sb = _check_batch("support_batch", support_batch, n, dev)
    qb = _check_batch("query_batch", query_batch, m, dev)
    if n == 0 or m == 0:
        return Neighbors(torch.full((m, 1), n, dtype=torch.int64, device=dev),
                         torch.zeros(m, 1, dtype=torch.bool, device=dev), n)
    if not (torch.isfinite(support).all() and torch.isfinite(queries).all()):
        raise ValueError("support and queries must be finite")

    # Cells in float64 so that a point on a cell border lands on the same side for support and
    # query; +1 pads the grid so the 27-cell stencil never leaves it.
    both = torch.cat([support, queries]).double()
    lo = both.min(dim=0).values
    cs = ((support.double() - lo) / radius).floor().long() + 1
    cq = ((queries.double() - lo) / radius).floor().long() + 1
    dims = torch.maximum(cs.max(0).values, cq.max(0).values) + 2
    nb = int(max(int(sb.max()), int(qb.max()))) + 1
    dx, dy, dz = (int(v) for v in dims)
    if float(nb) * dx * dy * dz >= 2 ** 62:
        raise ValueError("cell grid too large for an int64 key: radius too small for the extent")

    def key(b, c):
        return ((b * dx + c[:, 0]) * dy + c[:, 1]) * dz + c[:, 2]

    ks = key(sb, cs)
    order = torch.argsort(ks, stable=True)
    ks_sorted = ks[order]
    cell_keys, cell_counts = torch.unique_consecutive(ks_sorted, return_counts=True)
    cell_start = torch.cumsum(cell_counts, 0) - cell_counts

    r = torch.arange(-1, 2, device=dev)
    stencil = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), dim=-1).reshape(27, 3)
    qk = key(qb[:, None].expand(m, 27).reshape(-1), (cq[:, None, :] + stencil[None]).reshape(-1, 3))  # (M * 27,)
    pos = torch.searchsorted(cell_keys, qk).clamp_max(cell_keys.numel() - 1)
    hit = cell_keys[pos] == qk
    cnt = torch.where(hit, cell_counts[pos], torch.zeros_like(pos))
    start = cell_start[pos]

    # Expand every (query, cell) look-up into its candidate support points.
    total = int(cnt.sum())
    pair = torch.repeat_interleave(torch.arange(qk.numel(), device=dev), cnt, output_size=total)
    first = torch.cumsum(cnt, 0) - cnt
    within = torch.arange(total, device=dev) - first[pair]
    cand = order[start[pair] + within]
    qi = torch.div(pair, 27, rounding_mode="floor")
    d2 = ((support[cand].double() - queries[qi].double()) ** 2).sum(1)
    keep = d2 <= radius * radius
    cand, qi, d2 = cand[keep], qi[keep], d2[keep]

    # Lexicographic sort by (query, distance, support index) through stable passes.
    o = torch.argsort(cand, stable=True)
    o = o[torch.argsort(d2[o], stable=True)]
    o = o[torch.argsort(qi[o], stable=True)]
    cand, qi = cand[o], qi[o]
    per_q = torch.bincount(qi, minlength=m)
    rank = torch.arange(qi.numel(), device=dev) - (torch.cumsum(per_q, 0) - per_q)[qi]
    if max_neighbors is not None:
        sel = rank < max_neighbors
        cand, qi, rank = cand[sel], qi[sel], rank[sel]
        per_q = per_q.clamp_max(max_neighbors)
    h = max(int(per_q.max()), 1)
    index = torch.full((m, h), n, dtype=torch.int64, device=dev)
    index[qi, rank] = cand
    return Neighbors(index, index < n, n)


class KPConv(nn.Module):
    """Rigid kernel point convolution (Thomas et al., ICCV 2019, Eq. 1 with the linear
    correlation of Eq. 3).

    ``out(x) = sum_{y in N(x)} sum_k max(0, 1 - |y - x - x~_k| / sigma) W_k f(y)  [+ bias]``,
    optionally divided by ``|N(x)|`` (``normalize="count"``).

    Normalisation: the paper's Eq. (1) is a plain sum, and so is ``KPConv.forward`` in
    HuguesTHOMAS/KPConv-PyTorch (``models/blocks.py``), which RangeViT's 3D refiner uses; this is
    the default (``normalize="none"``). Some derived code (e.g. GeoTransformer's KPConv) divides
    by the number of neighbours whose features sum to a positive value; ``normalize="count"``
    divides by the number of real neighbours instead (never below 1), which does not depend on
    the sign of the features.

    Gradients flow to ``features``, ``weight`` and ``bias``; the geometry (points, kernel points)
    is treated as constant, as in the rigid KPConv (the influence has a kink at distance 0 where
    a coordinate gradient would be undefined).

    Args:
        in_channels: C_in.
        out_channels: C_out.
        kernel_size: K, the number of kernel points (15 in the paper and in RangeViT).
        radius: neighbourhood radius in metres, keyword-only and required (paper: 2.5 x the
            subsampling cell).
        sigma: kernel point influence extent in metres. None -> ``0.4 * radius`` (the paper's
            rigid setting, sigma = 1.0 x the subsampling cell with radius = 2.5 x the cell;
            KPConv-PyTorch's configs use KP_extent = 1.2 cells, i.e. 0.48 x radius).
        max_neighbors: at most this many neighbours per point, nearest first (None: all).
        normalize: "none" (sum, default) or "count" (mean over the neighbours).
        bias: add a learnable (C_out,) bias (off by default: a BatchNorm follows in RangeViT).
        kp_ratio: kernel shell radius as a fraction of ``radius`` (0.66 as in KPConv-PyTorch).

    Raises:
        ValueError: non-positive sizes, ``radius``/``sigma`` <= 0, unknown ``normalize``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 15, *, radius: float,
                 sigma: float | None = None, max_neighbors: int | None = 64, normalize: str = "none",
                 bias: bool = False, kp_ratio: float = 0.66):
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"channels must be >= 1, got {in_channels}, {out_channels}")
        sigma = 0.4 * radius if sigma is None else sigma
        if not radius > 0 or not sigma > 0:
            raise ValueError(f"radius and sigma must be > 0, got {radius}, {sigma}")
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
        if max_neighbors is not None and max_neighbors < 1:
            raise ValueError(f"max_neighbors must be >= 1 or None, got {max_neighbors}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.radius, self.sigma = float(radius), float(sigma)
        self.max_neighbors, self.normalize = max_neighbors, normalize
        self.register_buffer("kernel_points", kernel_points(kernel_size, radius, kp_ratio), persistent=False)
        self.weight = nn.Parameter(torch.empty(kernel_size, in_channels, out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Each output sums K * C_in weighted terms per neighbour: use that as the fan-in (torch's
        # kaiming on a (K, C_in, C_out) tensor would take C_in * C_out instead).
        bound = 1.0 / math.sqrt(self.kernel_size * self.in_channels)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def neighbors(self, points: torch.Tensor, query_points: torch.Tensor | None = None,
                  batch: torch.Tensor | None = None, query_batch: torch.Tensor | None = None) -> Neighbors:
        """This layer's neighbourhoods (see :func:`radius_neighbors`), reusable across calls."""
        q = points if query_points is None else query_points
        qb = batch if query_points is None else query_batch
        return radius_neighbors(points, q, self.radius, self.max_neighbors, batch, qb)

    def forward(self, points: torch.Tensor, features: torch.Tensor, query_points: torch.Tensor | None = None,
                batch: torch.Tensor | None = None, query_batch: torch.Tensor | None = None,
                neighbors: Neighbors | None = None) -> torch.Tensor:
        """Convolve support features onto query points.

        Batched clouds are concatenated along the point axis with an integer cloud index per
        point (``batch`` for the support, ``query_batch`` for the queries; both default to one
        cloud, and ``query_batch`` defaults to ``batch`` when the queries are the points).

        Args:
            points: (N, 3) float support coordinates, metres.
            features: (N, C_in) float support features (same dtype as ``points``).
            query_points: (M, 3) float; None -> ``points`` (M = N).
            batch: (N,) integer cloud index of the support points, or None.
            query_batch: (M,) integer cloud index of the queries, or None.
            neighbors: precomputed :meth:`neighbors` for these points/queries (skips the search).

        Returns:
            (M, C_out) tensor, dtype of ``features``. Queries without neighbours get 0 (+ bias).

        Raises:
            ValueError: shape/dtype mismatches (see :func:`radius_neighbors`).
        """
        _check_points("points", points)
        if features.dim() != 2 or features.shape != (points.shape[0], self.in_channels):
            raise ValueError(f"features must be ({points.shape[0]}, {self.in_channels}), got {tuple(features.shape)}")
        q = points if query_points is None else query_points
        _check_points("query_points", q)
        if neighbors is None:
            neighbors = self.neighbors(points, query_points, batch, query_batch)
        elif neighbors.index.shape[0] != q.shape[0] or neighbors.num_support != points.shape[0]:
            raise ValueError("neighbors were computed for other points/queries")
        idx, mask = neighbors.index, neighbors.mask
        dt = features.dtype
        if points.shape[0] == 0:
            out = features.new_zeros(q.shape[0], self.out_channels) + 0.0 * self.weight.sum()
            return out if self.bias is None else out + self.bias
        safe = idx.clamp_max(points.shape[0] - 1)    # shadow -> any real row; masked out below

        with torch.no_grad():
            infl = self._influence(points.detach().to(dt), q.detach().to(dt), safe, mask)  # (M, H, K)

        nf = features[safe]                                                   # (M, H, C_in)
        per_kernel = infl.transpose(1, 2) @ nf                                 # (M, K, C_in)
        out = per_kernel.reshape(q.shape[0], -1) @ self.weight.reshape(-1, self.out_channels)
        if self.bias is not None:
            out = out + self.bias
        return out

    def _influence(self, points: torch.Tensor, q: torch.Tensor, safe: torch.Tensor,
                   mask: torch.Tensor) -> torch.Tensor:
        """(M, H, K) masked linear correlations h (Eq. 3), already divided for "count"."""
        kp = self.kernel_points.to(device=points.device, dtype=points.dtype)
        m, h = safe.shape
        infl = points.new_empty(m, h, self.kernel_size)
        # Direct differences, not |a|^2 + |b|^2 - 2ab: the expansion loses ~sqrt(eps) * radius
        # near a kernel point. Chunked so the (chunk, H, K, 3) temporary stays ~2^22 elements.
        step = max(1, (1 << 22) // max(1, h * self.kernel_size * 3))
        for a in range(0, m, step):
            rel = points[safe[a:a + step]] - q[a:a + step, None, :]                   # (m', H, 3)
            d = (rel[:, :, None, :] - kp).norm(dim=-1)                               # (m', H, K)
            infl[a:a + step] = (1.0 - d / self.sigma).clamp_min(0.0)
        infl *= mask[..., None].to(infl.dtype)    # padding contributes nothing
        if self.normalize == "count":
            infl /= mask.sum(1).clamp_min(1).to(infl.dtype)[:, None, None]
        return infl

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"radius={self.radius:g}, sigma={self.sigma:g}, max_neighbors={self.max_neighbors}, "
                f"normalize={self.normalize!r}")
