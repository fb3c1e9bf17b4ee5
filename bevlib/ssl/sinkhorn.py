"""Entropic optimal transport by Sinkhorn-Knopp iterations, in log space and batched.

Source: Cuturi, "Sinkhorn Distances", NeurIPS 2013 (Alg. 1), as used for CrIBo's joint-view spatial
clustering (Lebailly et al., ICLR 2024; lambda=20, 5 iterations) and S3PT's relaxed variant
(wozniak2025 Sec. 3.2: one iteration, so the cluster marginal is only approximately uniform).

Convention. For a cost C (..., N, M), a regulariser epsilon and marginals a (N,), b (M,), the plan is

    P_ij = exp(f_i + g_j - C_ij / epsilon),

and one *iteration* is two half-steps, each rescaling P so that one marginal holds exactly:

    row step:    f_i = log a_i - logsumexp_j(g_j - C_ij / epsilon)      -> sum_j P_ij = a_i
    column step: g_j = log b_j - logsumexp_i(f_i - C_ij / epsilon)      -> sum_i P_ij = b_j

``last="rows"`` runs column-then-row (POT's ``ot.sinkhorn`` order: ``v = b / K^T u`` then
``u = a / K v``, and SwAV's), so after any number of iterations the row marginal a is exact and the
column marginal b only approximate. ``last="cols"`` runs row-then-column (CrIBo's order: its loop
normalises rows to r then columns to c), so b is exact. The starting scalings (uniform in POT, the
plan normalised to unit mass in CrIBo) are constants that the first half-step absorbs, so every
variant equals the plain Gibbs kernel exp(-C/epsilon) rescaled in this order. CrIBo writes the
kernel as exp(-lambda * C): epsilon = 1 / lambda (lambda=20 -> epsilon=0.05). For scores S to be
maximised (SwAV, DINO-style logits) pass ``cost = -S``.
"""
from __future__ import annotations

import torch

__all__ = ["sinkhorn_knopp"]


def _log_marginal(m: torch.Tensor | None, n: int, name: str, like: torch.Tensor) -> torch.Tensor:
    if m is None:
        return torch.full((n,), -torch.log(torch.tensor(float(n), dtype=torch.float64)).item(),
                          dtype=like.dtype, device=like.device)
    m = torch.as_tensor(m, dtype=like.dtype, device=like.device)
    if m.shape[-1:] != (n,):
        raise ValueError(f"{name} must have last dimension {n} to match cost, got shape {tuple(m.shape)}")
    if not torch.isfinite(m).all() or (m <= 0).any():
        raise ValueError(f"{name} must be finite and strictly positive")
    return m.log()


def sinkhorn_knopp(cost: torch.Tensor, epsilon: float, n_iters: int, a: torch.Tensor | None = None,
                   b: torch.Tensor | None = None, last: str = "rows") -> torch.Tensor:
    """Entropic OT plan after ``n_iters`` Sinkhorn-Knopp iterations (Cuturi 2013, Alg. 1), log space.

    Args:
        cost: (..., N, M) float cost (unitless; lower is better), any leading batch dims.
        epsilon: entropic regulariser > 0 in cost units (CrIBo's lambda = 1 / epsilon).
        n_iters: number of iterations >= 0; one iteration = one column and one row half-step
            (order set by ``last``). 0 returns the Gibbs kernel normalised to total mass sum(a).
        a: (N,) or (..., N) positive row marginal; default uniform 1/N.
        b: (M,) or (..., M) positive column marginal; default uniform 1/M. a and b should carry the
            same total mass for the plan to converge (it is not enforced: with 1 iteration S3PT only
            needs the last marginal).
        last: "rows" (column then row step, POT/SwAV order; rows exact) or "cols" (row then column
            step, CrIBo order; columns exact).
    Returns:
        (..., N, M) transport plan, same dtype/device as ``cost``; differentiable in ``cost``.
    Raises:
        ValueError: on a cost of fewer than 2 dims or non-finite values, epsilon <= 0, n_iters < 0 or
            not an int, bad marginal shapes/values, or an unknown ``last``.
    """
    if cost.dim() < 2:
        raise ValueError(f"cost must have shape (..., N, M), got {tuple(cost.shape)}")
    if not torch.is_floating_point(cost) or not torch.isfinite(cost).all():
        raise ValueError("cost must be a finite floating-point tensor")
    if not (epsilon > 0):
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    if isinstance(n_iters, bool) or not isinstance(n_iters, int) or n_iters < 0:
        raise ValueError(f"n_iters must be an int >= 0, got {n_iters!r}")
    if last not in ("rows", "cols"):
        raise ValueError(f"last must be 'rows' or 'cols', got {last!r}")
    n, m = cost.shape[-2:]
    log_a = _log_marginal(a, n, "a", cost)
    log_b = _log_marginal(b, m, "b", cost)
    log_k = -cost / epsilon
    # f broadcasts over columns, g over rows; start from zero potentials (constant absorbed below).
    f = torch.zeros(cost.shape[:-1], dtype=cost.dtype, device=cost.device)
    g = torch.zeros(cost.shape[:-2] + (m,), dtype=cost.dtype, device=cost.device)

    def row_step(g_):
        return log_a - torch.logsumexp(log_k + g_.unsqueeze(-2), dim=-1)

    def col_step(f_):
        return log_b - torch.logsumexp(log_k + f_.unsqueeze(-1), dim=-2)

    for _ in range(n_iters):
        if last == "rows":
            g = col_step(f)
            f = row_step(g)
        else:
            f = row_step(g)
            g = col_step(f)
    log_p = log_k + f.unsqueeze(-1) + g.unsqueeze(-2)
    if n_iters == 0:
        total = torch.logsumexp(log_a, dim=-1)
        log_p = log_p - torch.logsumexp(log_p.flatten(-2), dim=-1)[..., None, None] + total[..., None, None]
    return log_p.exp()
