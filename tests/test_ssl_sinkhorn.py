"""bevlib.ssl.sinkhorn against POT (ot.sinkhorn / ot.bregman.sinkhorn_log) on random costs."""
import warnings

import numpy as np
import pytest
import torch

from bevlib.ssl.sinkhorn import sinkhorn_knopp

ot = pytest.importorskip("ot")


def _pot(a, b, cost, reg, n_iters):
    # stopThr=0: POT's error check (every 10th iteration) never stops early, so exactly n_iters run.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ot.sinkhorn(a, b, cost, reg, method="sinkhorn", numItermax=n_iters, stopThr=0.0)


@pytest.mark.parametrize("n_iters", [1, 2, 5, 37])
def test_matches_pot_iteration_by_iteration(n_iters):
    rng = np.random.default_rng(n_iters)
    n, m, reg = 13, 7, 0.1
    cost = rng.random((n, m))
    a = rng.random(n) + 0.1
    a /= a.sum()
    b = rng.random(m) + 0.1
    b /= b.sum()
    ref = _pot(a, b, cost, reg, n_iters)
    got = sinkhorn_knopp(torch.from_numpy(cost), reg, n_iters, torch.from_numpy(a), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-14)
    # POT's order ends on the row step: rows exact, columns not (yet).
    np.testing.assert_allclose(got.sum(1), a, rtol=1e-12)
    if n_iters == 1:
        assert np.abs(got.sum(0) - b).max() > 1e-4


@pytest.mark.parametrize("n_iters", [1, 5])
def test_cribo_order_is_pot_on_the_transpose(n_iters):
    rng = np.random.default_rng(7)
    cost = rng.random((10, 4))
    ref = _pot(np.full(4, 0.25), np.full(10, 0.1), cost.T.copy(), 0.05, n_iters).T
    got = sinkhorn_knopp(torch.from_numpy(cost), 0.05, n_iters, last="cols").numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(got.sum(0), np.full(4, 0.25), rtol=1e-12)


def test_batched_equals_loop_and_float32():
    rng = np.random.default_rng(3)
    cost = torch.from_numpy(rng.random((3, 2, 9, 5)))
    plan = sinkhorn_knopp(cost, 0.2, 4)
    for i in range(3):
        for j in range(2):
            ref = _pot(np.full(9, 1 / 9), np.full(5, 0.2), cost[i, j].numpy(), 0.2, 4)
            np.testing.assert_allclose(plan[i, j].numpy(), ref, rtol=1e-10, atol=1e-14)
    p32 = sinkhorn_knopp(cost.float(), 0.2, 4)
    assert p32.dtype == torch.float32
    np.testing.assert_allclose(p32.numpy(), plan.numpy(), rtol=1e-4, atol=1e-7)


def test_converged_plan_and_marginals():
    rng = np.random.default_rng(11)
    cost = rng.random((20, 6))
    a = np.full(20, 1 / 20)
    b = rng.random(6) + 0.5
    b /= b.sum()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ot.sinkhorn(a, b, cost, 0.05, numItermax=100000, stopThr=1e-14)
    got = sinkhorn_knopp(torch.from_numpy(cost), 0.05, 3000, torch.from_numpy(a), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(got.sum(1), a, rtol=1e-12)
    np.testing.assert_allclose(got.sum(0), b, rtol=1e-9)


def test_log_space_survives_small_epsilon():
    # CrIBo's lambda=20 on costs up to ~40 would underflow exp(-lambda C) in linear space; log space
    # must still agree with POT's log-domain solver.
    rng = np.random.default_rng(5)
    cost = rng.random((12, 5)) * 40.0
    eps = 1 / 20.0
    got = sinkhorn_knopp(torch.from_numpy(cost), eps, 500).numpy()
    assert np.isfinite(got).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ot.bregman.sinkhorn_log(np.full(12, 1 / 12), np.full(5, 0.2), cost, eps, numItermax=500, stopThr=0.0)
    np.testing.assert_allclose(got, ref, rtol=1e-8, atol=1e-14)


def test_zero_iterations_is_normalised_kernel_and_gradient_flows():
    cost = torch.rand(4, 3, dtype=torch.float64, requires_grad=True)
    p0 = sinkhorn_knopp(cost, 0.5, 0)
    k = torch.exp(-cost / 0.5)
    torch.testing.assert_close(p0, k / k.sum())
    sinkhorn_knopp(cost, 0.5, 2).pow(2).sum().backward()
    assert cost.grad is not None and torch.isfinite(cost.grad).all()


@pytest.mark.parametrize("kwargs, match", [
    (dict(cost=torch.rand(3)), "cost"),
    (dict(cost=torch.tensor([[0.0, float("nan")]])), "cost"),
    (dict(cost=torch.rand(2, 2), epsilon=0.0), "epsilon"),
    (dict(cost=torch.rand(2, 2), n_iters=-1), "n_iters"),
    (dict(cost=torch.rand(2, 2), a=torch.ones(3)), "a must"),
    (dict(cost=torch.rand(2, 2), b=torch.tensor([1.0, 0.0])), "b must"),
    (dict(cost=torch.rand(2, 2), last="both"), "last"),
])
def test_bad_input_raises(kwargs, match):
    args = dict(epsilon=0.1, n_iters=1) | kwargs
    with pytest.raises(ValueError, match=match):
        sinkhorn_knopp(**args)
