"""CrIBo's joint-view spatial clustering, object pooling and object queue (Lebailly et al., ICLR 2024,
Sec. 3.2-3.3), with S3PT's many-cluster / one-iteration relaxation and depth term (wozniak2025 Sec. 3.2-3.3).

What we do (after CrIBo's public ``Clustering.compute_assignments``; the paper does not spell it out):

1. The 2P teacher tokens of the two views of one image are L2-normalised and clustered jointly.
2. Initial centroids are M tokens drawn uniformly without replacement from the 2P (per image, per
   step; not learnable); each starts as a cluster of one token.
3. ``n_outer`` (CrIBo: 5) rounds of: cost T = -cos(token, centroid) + alpha * T_pos (+ beta * T_depth),
   min-max scaled to [0, 1]; Sinkhorn-Knopp plan with epsilon = 1/lambda (lambda=20) for ``sk_iters``
   iterations in CrIBo's order (rows then columns, :func:`~bevlib.ssl.sinkhorn.sinkhorn_knopp` with
   ``last="cols"``; CrIBo 5, S3PT 1) against uniform token mass and a cluster marginal that starts
   uniform and, with ``update_marginal`` (CrIBo's default), becomes the previous round's cluster sizes
   (+0.01, normalised); hard assignment = row argmax; centroids = normalised mean of their tokens.
   T_pos[i, k] = distance from token i's position to the nearest *other* token of cluster k (the
   token's own position excluded; a cluster with no other token gets the mean cost), divided by its max.
4. S3PT depth term (Sec. 3.3): T_depth[i, k] = |d_i - d_k| with d_i the completed depth at token i and
   d_k the mean depth of cluster k's tokens (at initialisation the drawn token's depth); divided by its
   max so that beta weighs it against the [-1, 1] feature cost the way alpha weighs T_pos (our choice:
   the paper gives T = T_CrIBo + beta |d_i - d_j| without a scale, and CrIBo rescales T to [0, 1]).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .sinkhorn import sinkhorn_knopp

__all__ = ["Clustering", "joint_view_clustering", "positional_cost", "object_features", "ObjectQueue"]


def positional_cost(positions: torch.Tensor, assignment: torch.Tensor) -> torch.Tensor:
    """CrIBo's positional cost: distance from each token to the nearest other member of each cluster.

    Args:
        positions: (N, 2) float token centres in a common image frame (e.g. original-image pixels).
        assignment: (N, M) hard 0/1 cluster membership (a token may belong to no cluster).
    Returns: (N, M) cost in [0, 1] (divided by its max; all-zero input stays 0). Entries with no other
        member at a positive distance get the mean of the valid entries.
    Raises: ValueError on shape mismatch.
    """
    if positions.dim() != 2 or positions.shape[1] != 2 or assignment.dim() != 2 or assignment.shape[0] != positions.shape[0]:
        raise ValueError(f"positions must be (N, 2) and assignment (N, M), got {tuple(positions.shape)}, "
                         f"{tuple(assignment.shape)}")
    dist = torch.cdist(positions, positions)  # (N, N)
    member = assignment > 0.5
    # a token at distance 0 (itself, or the same spot in the other view) does not count
    valid = member[None, :, :] & (dist[:, :, None] > 0)  # (N, n, M)
    big = torch.finfo(dist.dtype).max
    cand = torch.where(valid, dist[:, :, None], torch.full_like(dist[:, :, None], big))
    cost = cand.min(dim=1).values  # (N, M)
    has = valid.any(dim=1)
    fill = cost[has].mean() if has.any() else dist.new_zeros(())
    cost = torch.where(has, cost, fill)
    top = cost.max()
    return cost / top if top > 0 else cost


@dataclass
class Clustering:
    """Result of :func:`joint_view_clustering` for one image.

    labels: (2P,) long cluster index per token (view 1 tokens first).
    assignment: (2P, M) float one-hot of ``labels``.
    valid: (M,) bool, clusters with tokens in both views (CrIBo drops the others).
    init_indices: (M,) long, the tokens drawn as initial centroids.
    """
    labels: torch.Tensor
    assignment: torch.Tensor
    valid: torch.Tensor
    init_indices: torch.Tensor


@torch.no_grad()
def joint_view_clustering(tokens: torch.Tensor, positions: torch.Tensor, n_clusters: int, *,
                          sinkhorn_lambda: float = 20.0, sk_iters: int = 5, n_outer: int = 5,
                          pos_alpha: float = 1.0, depth: torch.Tensor | None = None, depth_beta: float = 0.0,
                          update_marginal: bool = True, generator: torch.Generator | None = None,
                          init_indices: torch.Tensor | None = None) -> Clustering:
    """CrIBo joint-view clustering of the 2P tokens of two views into M clusters (module docstring).

    Args:
        tokens: (2, P, D) float dense teacher features of view 1 and view 2.
        positions: (2, P, 2) float token centres in the original image (pixels or normalised units).
        n_clusters: M (CrIBo 32, S3PT 128), 1 <= M <= 2P.
        sinkhorn_lambda: lambda > 0 of exp(-lambda T) (epsilon = 1/lambda). sk_iters: SK iterations
            (CrIBo 5, S3PT 1). n_outer: centroid refinement rounds >= 1 (CrIBo's n_iter, 5).
        pos_alpha: weight alpha of the positional cost (CrIBo 1.0).
        depth: (2, P) float completed depth in metres at each token (S3PT), or None.
        depth_beta: beta of the depth cost (S3PT Table 1: 0.5, 1, 4; 0 disables it).
        update_marginal: CrIBo's update_c (cluster marginal := previous round's sizes).
        generator: for the initial draw. init_indices: (M,) distinct token indices to use instead.
    Returns: :class:`Clustering`.
    Raises: ValueError on bad shapes, M out of range, depth_beta > 0 without depth, bad init_indices.
    """
    if tokens.dim() != 3 or tokens.shape[0] != 2:
        raise ValueError(f"tokens must be (2, P, D), got {tuple(tokens.shape)}")
    _, p, _ = tokens.shape
    if positions.shape != (2, p, 2):
        raise ValueError(f"positions must be (2, {p}, 2), got {tuple(positions.shape)}")
    n = 2 * p
    if not 1 <= n_clusters <= n:
        raise ValueError(f"n_clusters must be in [1, {n}], got {n_clusters}")
    if depth_beta > 0 and depth is None:
        raise ValueError("depth_beta > 0 needs depth (2, P)")
    if depth is not None and depth.shape != (2, p):
        raise ValueError(f"depth must be (2, {p}), got {tuple(depth.shape)}")
    if n_outer < 1 or sinkhorn_lambda <= 0:
        raise ValueError("n_outer must be >= 1 and sinkhorn_lambda > 0")
    x = F.normalize(tokens.reshape(n, -1).float(), dim=-1)
    pos = positions.reshape(n, 2).float()
    d = depth.reshape(n).float() if depth is not None else None
    if init_indices is None:
        init_indices = torch.randperm(n, generator=generator)[:n_clusters]
    init_indices = torch.as_tensor(init_indices, dtype=torch.long)
    if init_indices.shape != (n_clusters,) or init_indices.unique().numel() != n_clusters \
            or init_indices.min() < 0 or init_indices.max() >= n:
        raise ValueError(f"init_indices must be {n_clusters} distinct token indices in [0, {n})")
    assign = torch.zeros(n, n_clusters)
    assign[init_indices, torch.arange(n_clusters)] = 1.0
    centroids = x[init_indices]
    centroid_depth = d[init_indices] if d is not None else None
    marginal = torch.full((n_clusters,), 1.0 / n_clusters)
    for _ in range(n_outer):
        cost = -(x @ centroids.T) + pos_alpha * positional_cost(pos, assign)
        if d is not None and depth_beta > 0:
            dc = (d[:, None] - centroid_depth[None, :]).abs()
            top = dc.max()
            cost = cost + depth_beta * (dc / top if top > 0 else dc)
        span = cost.max() - cost.min()
        cost = (cost - cost.min()) / span if span > 0 else torch.zeros_like(cost)
        plan = sinkhorn_knopp(cost, 1.0 / sinkhorn_lambda, sk_iters, b=marginal, last="cols")
        labels = plan.argmax(dim=1)
        assign = F.one_hot(labels, n_clusters).float()
        sizes = assign.sum(0)
        if update_marginal:
            marginal = (sizes + 1e-2) / (sizes + 1e-2).sum()
        centroids = F.normalize(assign.T @ x, dim=-1)
        if centroid_depth is not None:
            centroid_depth = torch.where(sizes > 0, (assign.T @ d) / sizes.clamp_min(1), centroid_depth)
    valid = (assign[:p].sum(0) > 0) & (assign[p:].sum(0) > 0)
    return Clustering(labels=labels, assignment=assign, valid=valid, init_indices=init_indices)


def object_features(tokens: torch.Tensor, assignment: torch.Tensor) -> torch.Tensor:
    """Object features o_k: the (weighted) mean of the tokens of each cluster (CrIBo Sec. 3.2).

    Args:
        tokens: (P, D) float features of one view (student or teacher, last layer).
        assignment: (P, M) non-negative weights (hard one-hot or soft).
    Returns: (M, D); a cluster with zero total weight gives a zero row. Differentiable in tokens.
    Raises: ValueError on shape mismatch or negative weights.
    """
    if tokens.dim() != 2 or assignment.dim() != 2 or tokens.shape[0] != assignment.shape[0]:
        raise ValueError(f"tokens (P, D) and assignment (P, M) must share P, got {tuple(tokens.shape)}, "
                         f"{tuple(assignment.shape)}")
    if (assignment < 0).any():
        raise ValueError("assignment weights must be >= 0")
    w = assignment.to(tokens.dtype)
    mass = w.sum(0)
    return (w.T @ tokens) / torch.where(mass > 0, mass, torch.ones_like(mass))[:, None]


class ObjectQueue(nn.Module):
    """FIFO memory of object features for CrIBo's cross-image nearest-neighbour loss (Sec. 3.3; queue
    25,000 in CrIBo, 2,500 in S3PT). A ring buffer: pushing past ``size`` overwrites the oldest rows.

    State (buffers, saved with state_dict): ``features`` (size, dim), ``ptr`` (next write slot), ``count``.
    Raises: ValueError for size/dim < 1.
    """

    def __init__(self, size: int, dim: int):
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError(f"size and dim must be >= 1, got {size}, {dim}")
        self.size, self.dim = size, dim
        self.register_buffer("features", torch.zeros(size, dim))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def __len__(self) -> int:
        return int(self.count)

    @torch.no_grad()
    def push(self, x: torch.Tensor) -> None:
        """Append (n, dim) rows in order (older first); only the last ``size`` survive if n > size."""
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must be (n, {self.dim}), got {tuple(x.shape)}")
        x = x.detach()[-self.size:].to(self.features)
        idx = (self.ptr + torch.arange(x.shape[0], device=self.features.device)) % self.size
        self.features[idx] = x
        self.ptr.copy_((self.ptr + x.shape[0]) % self.size)
        self.count.copy_(torch.clamp(self.count + x.shape[0], max=self.size))

    def items(self) -> torch.Tensor:
        """(count, dim) stored features, oldest first."""
        if int(self.count) < self.size:
            return self.features[: int(self.count)]
        return torch.roll(self.features, -int(self.ptr), dims=0)

    @torch.no_grad()
    def nearest(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cosine nearest neighbour of each query among the stored features.

        Args: q: (B, dim) float queries.
        Returns: (neighbours (B, dim) as stored, cosine similarity (B,), index (B,) into :meth:`items`).
        Raises: ValueError on an empty queue or wrong query shape.
        """
        if q.dim() != 2 or q.shape[1] != self.dim:
            raise ValueError(f"q must be (B, {self.dim}), got {tuple(q.shape)}")
        if int(self.count) == 0:
            raise ValueError("the queue is empty")
        bank = self.items()
        sim = F.normalize(q.to(bank), dim=-1) @ F.normalize(bank, dim=-1).T
        best, idx = sim.max(dim=1)
        return bank[idx], best, idx
