"""bevlib.ssl.vmf against SciPy's Bessel functions, mpmath (arbitrary precision) and finite differences."""
import math

import mpmath
import numpy as np
import pytest
import torch
from scipy.special import iv, ive

from bevlib.ssl.vmf import log_bessel_iv, log_vmf_normalizer, vmf_logits

KAPPAS = np.logspace(-3, 4, 29)


def _ref_log_c_mpmath(kappa: float, d: int) -> float:
    mpmath.mp.dps = 40
    k = mpmath.mpf(kappa)
    nu = mpmath.mpf(d) / 2 - 1
    return float(nu * mpmath.log(k) - mpmath.mpf(d) / 2 * mpmath.log(2 * mpmath.pi) - mpmath.log(mpmath.besseli(nu, k)))


@pytest.mark.parametrize("d", [3, 16, 256])
def test_log_normalizer_against_scipy_where_scipy_is_finite(d):
    nu = d / 2 - 1
    k = KAPPAS
    with np.errstate(all="ignore"):
        direct = iv(nu, k)
        scaled = ive(nu, k)
    ref = np.where((direct > 1e-300) & np.isfinite(direct),
                   nu * np.log(k) - d / 2 * np.log(2 * np.pi) - np.log(np.where(direct > 0, direct, 1.0)),
                   nu * np.log(k) - d / 2 * np.log(2 * np.pi) - (np.log(np.where(scaled > 0, scaled, 1.0)) + k))
    usable = (direct > 1e-300) | (scaled > 1e-300)
    got = log_vmf_normalizer(torch.from_numpy(k), d).numpy()
    assert usable.sum() >= 15  # d=256: scipy underflows for kappa < ~0.3
    np.testing.assert_allclose(got[usable], ref[usable], rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("d", [2, 3, 64, 256, 1024])
def test_log_normalizer_against_mpmath_full_range(d):
    # mpmath is independent of SciPy and also covers the underflow region (large d, small kappa)
    ks = [1e-3, 0.05, 0.3, 1.0, 7.0, 60.0, 500.0, 1e4]
    got = log_vmf_normalizer(torch.tensor(ks, dtype=torch.float64), d).numpy()
    ref = np.array([_ref_log_c_mpmath(k, d) for k in ks])
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, ref, rtol=1e-11, atol=1e-9)


def test_kappa_zero_is_inverse_sphere_area_and_continuous():
    for d in (2, 3, 256):
        area = 2 * math.pi ** (d / 2) / math.gamma(d / 2) if d < 300 else None
        got = log_vmf_normalizer(torch.tensor([0.0, 1e-9], dtype=torch.float64), d)
        assert got[0].item() == pytest.approx(-math.log(area), rel=1e-12)
        assert got[1].item() == pytest.approx(got[0].item(), rel=1e-12)


def test_series_branch_agrees_with_scipy_where_both_work():
    from bevlib.ssl.vmf import _log_iv_series
    k = np.array([0.01, 0.5, 3.0, 40.0])
    for nu in (0.5, 10.0, 127.0):
        ok = ive(nu, k) > 1e-300  # nu=127, k=0.01 underflows in SciPy
        np.testing.assert_allclose(_log_iv_series(nu, k[ok]), np.log(ive(nu, k[ok])) + k[ok], rtol=1e-12)
    assert np.isfinite(log_bessel_iv(127.0, np.array([1e-3]))).all()


@pytest.mark.parametrize("d", [3, 256])
def test_gradcheck_float64(d):
    kappa = torch.tensor([1e-3, 0.2, 1.5, 30.0, 900.0, 1e4], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda k: log_vmf_normalizer(k, d), (kappa,), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_float32_and_shape_preserved():
    k = torch.rand(4, 5) * 100 + 0.01
    out = log_vmf_normalizer(k, 256)
    assert out.shape == (4, 5) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), log_vmf_normalizer(k.double(), 256).numpy(), rtol=1e-6)


def test_vmf_logits_against_direct_eq2():
    torch.manual_seed(0)
    b, k, d, tau = 5, 7, 16, 0.1
    z = torch.nn.functional.normalize(torch.randn(b, d, dtype=torch.float64), dim=1)
    w = torch.randn(k, d, dtype=torch.float64) * torch.linspace(0.1, 2.0, k, dtype=torch.float64)[:, None]
    logits = vmf_logits(z, w, tau)
    # P_k(z) of Eq. 2 directly with the normaliser from mpmath
    num = np.zeros((b, k))
    for j in range(k):
        c = _ref_log_c_mpmath(float(w[j].norm()) / tau, d)
        num[:, j] = c + (z @ w[j]).numpy() / tau
    ref_p = np.exp(num - num.max(1, keepdims=True))
    ref_p /= ref_p.sum(1, keepdims=True)
    np.testing.assert_allclose(torch.softmax(logits, 1).numpy(), ref_p, rtol=1e-9, atol=1e-12)
    # equal prototype norms: the normaliser cancels and Eq. 2 is DINO's softmax
    w_eq = torch.nn.functional.normalize(w, dim=1) * 0.7
    torch.testing.assert_close(torch.softmax(vmf_logits(z, w_eq, tau), 1), torch.softmax(z @ w_eq.T / tau, 1))


def test_bad_input_raises():
    with pytest.raises(ValueError, match="dim"):
        log_vmf_normalizer(torch.ones(2), 1)
    with pytest.raises(ValueError, match="kappa"):
        log_vmf_normalizer(torch.tensor([-1.0]), 4)
    with pytest.raises(ValueError, match="kappa"):
        log_vmf_normalizer(torch.tensor([1]), 4)
    with pytest.raises(ValueError, match="share D"):
        vmf_logits(torch.ones(2, 3), torch.ones(4, 5), 0.1)
    with pytest.raises(ValueError, match="tau"):
        vmf_logits(torch.ones(2, 3), torch.ones(4, 3), 0.0)
    with pytest.raises(ValueError, match="nu"):
        log_bessel_iv(-1.0, np.ones(2))
