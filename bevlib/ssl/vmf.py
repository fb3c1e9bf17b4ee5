"""von Mises-Fisher normaliser and the vMF-normalised prototype logits of S3PT (wozniak2025 Eq. 2).

The vMF density on the unit sphere S^{d-1} in R^d is f(z; mu, kappa) = C_d(kappa) exp(kappa <mu, z>) with

    C_d(kappa) = kappa^{d/2-1} / ((2 pi)^{d/2} I_{d/2-1}(kappa))            (Mardia & Jupp 2000, Eq. 9.3.4)

and I_nu the modified Bessel function of the first kind. torch has no general-order Bessel function,
so log I_nu is evaluated in float64 by SciPy's exponentially scaled ``ive`` (log I = log ive + kappa,
no overflow for large kappa), and, where ``ive`` underflows (large nu, small kappa, e.g. d=256 and
kappa < ~0.3), by its power series summed in log space:

    I_nu(k) = (k/2)^nu / Gamma(nu+1) * sum_m (k^2/4)^m / (m! (nu+1)_m).

The gradient is closed form: d/dkappa log C_d(kappa) = -I_{d/2}(kappa) / I_{d/2-1}(kappa) = -A_d(kappa),
so autograd works on any device (values round-trip through the CPU; there is one per prototype).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import gammaln, ive

__all__ = ["log_bessel_iv", "log_vmf_normalizer", "vmf_logits"]

_TINY = 1e-280  # below this ive's relative accuracy degrades towards its underflow


def _log_iv_series(nu: float, k: np.ndarray) -> np.ndarray:
    x = (k * k) / 4.0
    # the terms peak near m* with m*(nu+m*) = x; sum well past the peak
    m_peak = 0.5 * (-(nu + 1) + np.sqrt((nu + 1) ** 2 + 4 * x.max(initial=0.0)))
    n_terms = int(m_peak + 12 * np.sqrt(m_peak + 1) + 30)
    m = np.arange(n_terms, dtype=np.float64)[:, None]
    with np.errstate(divide="ignore"):
        log_x = np.log(x)[None, :]
    terms = m * log_x - gammaln(m + 1) - gammaln(nu + m + 1) + gammaln(nu + 1)
    terms[0] = 0.0  # m=0 term is 1 even at k=0
    top = terms.max(axis=0)
    log_sum = top + np.log(np.exp(terms - top).sum(axis=0))
    with np.errstate(divide="ignore"):
        return nu * np.log(k / 2.0) - gammaln(nu + 1) + log_sum


def log_bessel_iv(nu: float, kappa: np.ndarray) -> np.ndarray:
    """log I_nu(kappa) in float64 for nu >= 0 and kappa >= 0, without overflow or underflow.

    Args:
        nu: order >= 0.
        kappa: array-like of arguments >= 0 (kappa = 0 gives log 0 = -inf for nu > 0, 0 for nu = 0).
    Returns: float64 ndarray of the same shape.
    Raises: ValueError for nu < 0 or any kappa < 0 / non-finite.
    Source: SciPy ``ive`` (Amos' algorithm) plus the ascending series (DLMF 10.25.2) where ive underflows.
    """
    if not (nu >= 0):
        raise ValueError(f"nu must be >= 0, got {nu}")
    k = np.asarray(kappa, dtype=np.float64)
    if not np.isfinite(k).all() or (k < 0).any():
        raise ValueError("kappa must be finite and >= 0")
    flat = k.reshape(-1)
    out = np.empty_like(flat)
    scaled = ive(nu, flat)
    ok = scaled > _TINY
    with np.errstate(divide="ignore"):
        out[ok] = np.log(scaled[ok]) + flat[ok]
    if (~ok).any():
        out[~ok] = _log_iv_series(nu, flat[~ok])
    return out.reshape(k.shape)


def _log_c_np(kappa: np.ndarray, d: int) -> np.ndarray:
    nu = d / 2.0 - 1.0
    out = np.empty_like(kappa)
    zero = kappa == 0
    # kappa -> 0: C_d -> 1 / |S^{d-1}| = Gamma(d/2) / (2 pi^{d/2})
    out[zero] = gammaln(d / 2.0) - math.log(2.0) - (d / 2.0) * math.log(math.pi)
    kz = kappa[~zero]
    out[~zero] = nu * np.log(kz) - (d / 2.0) * math.log(2 * math.pi) - log_bessel_iv(nu, kz)
    return out


def _bessel_ratio_np(kappa: np.ndarray, d: int) -> np.ndarray:
    """A_d(kappa) = I_{d/2}(kappa) / I_{d/2-1}(kappa), with A_d(0) = 0."""
    out = np.zeros_like(kappa)
    nz = kappa > 0
    out[nz] = np.exp(log_bessel_iv(d / 2.0, kappa[nz]) - log_bessel_iv(d / 2.0 - 1.0, kappa[nz]))
    return out


class _LogVMFNormalizer(torch.autograd.Function):
    @staticmethod
    def forward(ctx, kappa, d):
        k = kappa.detach().to("cpu", torch.float64).numpy()
        ctx.d = d
        ctx.save_for_backward(kappa)
        return torch.from_numpy(_log_c_np(k, d)).to(device=kappa.device, dtype=kappa.dtype)

    @staticmethod
    def backward(ctx, grad):
        (kappa,) = ctx.saved_tensors
        ratio = _bessel_ratio_np(kappa.detach().to("cpu", torch.float64).numpy(), ctx.d)
        ratio = torch.from_numpy(ratio).to(device=kappa.device, dtype=kappa.dtype)
        return -grad * ratio, None


def log_vmf_normalizer(kappa: torch.Tensor, dim: int) -> torch.Tensor:
    """log C_d(kappa), the log normalising constant of the vMF density on S^{d-1} (Mardia & Jupp Eq. 9.3.4).

    Args:
        kappa: (...) float concentration >= 0 (unitless). Accurate (float64 ~1e-12 relative) for any
            kappa in [0, 1e6] and any d >= 2 that the float64 exponent allows (tested d <= 1024).
        dim: d, the ambient dimension (the sphere is S^{d-1}), int >= 2.
    Returns: (...) tensor, same dtype/device as ``kappa``; differentiable in kappa with
        d/dkappa log C_d = -I_{d/2}(kappa)/I_{d/2-1}(kappa).
    Raises: ValueError for dim < 2 / not int, non-float kappa, negative or non-finite kappa.
    """
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2:
        raise ValueError(f"dim must be an int >= 2, got {dim!r}")
    if not torch.is_floating_point(kappa):
        raise ValueError("kappa must be a floating-point tensor")
    if not torch.isfinite(kappa).all() or (kappa < 0).any():
        raise ValueError("kappa must be finite and >= 0")
    return _LogVMFNormalizer.apply(kappa, dim)


def vmf_logits(features: torch.Tensor, prototypes: torch.Tensor, tau: float) -> torch.Tensor:
    """S3PT Eq. 2 logits: the log of C(||W_k||/tau) exp(<W_k, z>/tau), whose softmax over k is P_k(z).

        logit_k(z) = <W_k, z> / tau + log C_D(||W_k|| / tau)

    i.e. prototype k is a vMF with mean direction W_k/||W_k|| and concentration kappa_k = ||W_k||/tau,
    and P_k(z) is its posterior under a uniform prior (Govindarajan et al., ICLR 2023; wozniak2025 Eq. 2).
    With all ||W_k|| equal the normaliser is a constant and the softmax is DINO's.

    Args:
        features: (B, D) float, L2-normalised embeddings z (the DINO head's bottleneck output).
        prototypes: (K, D) float, unnormalised prototype vectors W_k (the last layer's weight).
        tau: temperature > 0.
    Returns: (B, K) logits, differentiable in features and prototypes.
    Raises: ValueError on shape mismatch or tau <= 0.
    """
    if features.dim() != 2 or prototypes.dim() != 2 or features.shape[1] != prototypes.shape[1]:
        raise ValueError(f"features (B, D) and prototypes (K, D) must share D, got {tuple(features.shape)} "
                         f"and {tuple(prototypes.shape)}")
    if not (tau > 0):
        raise ValueError(f"tau must be > 0, got {tau}")
    kappa = prototypes.norm(dim=1) / tau
    return features @ prototypes.T / tau + log_vmf_normalizer(kappa, prototypes.shape[1])[None, :]
