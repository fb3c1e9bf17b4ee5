"""DINO's projection head, loss, schedules and EMA teacher (Caron et al., ICCV 2021, Sec. 3.1, Alg. 1,
App. A), with S3PT's vMF-normalised variant (wozniak2025 Sec. 3.1, Eq. 2; Govindarajan et al., ICLR 2023).

Hyper-parameters of wozniak2025 Tables 5-7: head 3 layers, hidden 2048, bottleneck 256, 65,536
prototypes; teacher temperature 0.04 -> 0.07 over 30 warm-up epochs, student 0.1; centre momentum 0.9;
teacher momentum 0.996 -> 1 and weight decay 0.04 -> 0.4 by cosine schedules; last layer frozen for
the first epoch.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import weight_norm

from .vmf import log_vmf_normalizer

__all__ = ["DINOHead", "DINOLoss", "cosine_schedule", "ema_update", "cancel_last_layer_grads"]


class DINOHead(nn.Module):
    """DINO projection head: MLP (GELU) -> L2-normalised bottleneck z -> K prototype scores <W_k, z>.

    ``vmf=False`` (DINO/CrIBo): the last layer is weight-normalised without bias, W_k = g_k v_k/||v_k||;
    with ``norm_last_layer`` g is fixed to 1 (unit prototypes). ``vmf=True`` (S3PT Eq. 2): a plain
    bias-free linear layer, so the prototype norms ||W_k|| are free and enter the loss through the vMF
    normaliser (see :class:`DINOLoss`, :meth:`prototype_norms`).

    Args:
        in_dim: backbone feature size; hidden, bottleneck: MLP widths; n_prototypes: K; nlayers >= 1.
    Forward: x (B, in_dim) float -> (B, K) raw scores <W_k, z> (temperatures are applied in the loss).
    Raises: ValueError for non-positive sizes.
    """

    def __init__(self, in_dim: int, hidden: int = 2048, bottleneck: int = 256, n_prototypes: int = 65536,
                 nlayers: int = 3, norm_last_layer: bool = True, vmf: bool = False):
        super().__init__()
        if min(in_dim, hidden, bottleneck, n_prototypes, nlayers) < 1:
            raise ValueError("in_dim, hidden, bottleneck, n_prototypes and nlayers must all be >= 1")
        dims = [in_dim] + [hidden] * (nlayers - 1) + [bottleneck]
        layers: list[nn.Module] = []
        for i in range(nlayers):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < nlayers - 1:
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        for mod in self.mlp:
            if isinstance(mod, nn.Linear):
                nn.init.trunc_normal_(mod.weight, std=0.02)
                nn.init.zeros_(mod.bias)
        self.vmf = vmf
        self.bottleneck = bottleneck
        last = nn.Linear(bottleneck, n_prototypes, bias=False)
        if vmf:
            nn.init.trunc_normal_(last.weight, std=0.02)
            self.last_layer = last
        else:
            self.last_layer = weight_norm(last, dim=0)
            with torch.no_grad():
                self.last_layer.parametrizations.weight.original0.fill_(1.0)
            if norm_last_layer:
                self.last_layer.parametrizations.weight.original0.requires_grad = False

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) -> (B, bottleneck) L2-normalised embedding z."""
        return F.normalize(self.mlp(x), dim=-1)

    def prototypes(self) -> torch.Tensor:
        """(K, bottleneck) prototype matrix W (unit rows when weight-normalised with g = 1)."""
        return self.last_layer.weight

    def prototype_norms(self) -> torch.Tensor:
        """(K,) ||W_k||, differentiable; the vMF concentration is ||W_k|| / tau."""
        return self.prototypes().norm(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(self.embed(x))


class DINOLoss(nn.Module):
    """DINO cross-view cross-entropy with teacher centring and sharpening (Caron et al. Eq. 1-4).

        L = mean over pairs (t in global views, s in all views, s != t) of
            mean_b  -sum_k P_t[b, k] log P_s[b, k]

    Logit centring (DINO): P_t = softmax((g_t - c) / tau_t), P_s = softmax(g_s / tau_s), and after the
    step c <- m c + (1 - m) mean_b g_t (raw teacher scores of all global views).
    vMF (S3PT Eq. 2, ``vmf=True``): logits l = g / tau + log C_D(||W_k|| / tau) per network, and centring
    in probability space: p_t = softmax(l_t), P_t proportional to p_t / c, i.e. softmax(l_t - log c), with
    c <- m c + (1 - m) mean_b p_t (c starts uniform 1/K). This is our reading of "centering in the
    probability space" (Govindarajan et al. 2023); the paper gives no formula.

    Args:
        out_dim: K. n_global, n_local: number of global / local crops (student sees all).
        warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs: linear warm-up of tau_t per
            epoch (np.linspace(warm, final, W)[epoch]), then constant.
        student_temp: tau_s. center_momentum: m. vmf: Eq. 2 logits; vmf_dim: D of the normaliser
            (the head's bottleneck), required with vmf.
    State: buffer ``center`` (1, K), saved in state_dict.
    Raises: ValueError on bad sizes/temperatures, wrong batch layout, or missing prototype norms in vMF mode.
    """

    def __init__(self, out_dim: int, n_global: int = 2, n_local: int = 10, warmup_teacher_temp: float = 0.04,
                 teacher_temp: float = 0.07, warmup_teacher_temp_epochs: int = 30, student_temp: float = 0.1,
                 center_momentum: float = 0.9, vmf: bool = False, vmf_dim: int | None = None):
        super().__init__()
        if out_dim < 1 or n_global < 1 or n_local < 0:
            raise ValueError("out_dim and n_global must be >= 1 and n_local >= 0")
        if min(warmup_teacher_temp, teacher_temp, student_temp) <= 0:
            raise ValueError("temperatures must be > 0")
        if not 0.0 <= center_momentum <= 1.0:
            raise ValueError(f"center_momentum must be in [0, 1], got {center_momentum}")
        if vmf and (vmf_dim is None or vmf_dim < 2):
            raise ValueError("vmf_dim (the bottleneck dimension, >= 2) is required with vmf=True")
        if warmup_teacher_temp_epochs < 0:
            raise ValueError("warmup_teacher_temp_epochs must be >= 0")
        self.n_global, self.n_local = n_global, n_local
        self.warmup_teacher_temp, self.final_teacher_temp = warmup_teacher_temp, teacher_temp
        self.warmup_epochs = warmup_teacher_temp_epochs
        self.student_temp, self.center_momentum = student_temp, center_momentum
        self.vmf, self.vmf_dim = vmf, vmf_dim
        init = torch.full((1, out_dim), 1.0 / out_dim) if vmf else torch.zeros(1, out_dim)
        self.register_buffer("center", init)

    def teacher_temp(self, epoch: int) -> float:
        """tau_t at ``epoch`` (0-based): DINO's linear warm-up, then ``teacher_temp``."""
        if epoch < self.warmup_epochs:
            return float(np.linspace(self.warmup_teacher_temp, self.final_teacher_temp, self.warmup_epochs)[epoch])
        return self.final_teacher_temp

    def _logits(self, scores, tau, norms):
        if not self.vmf:
            return scores / tau
        if norms is None:
            raise ValueError("vmf=True needs student_norms and teacher_norms (DINOHead.prototype_norms())")
        return scores / tau + log_vmf_normalizer(norms / tau, self.vmf_dim)[None, :]

    def teacher_probs(self, teacher_output: torch.Tensor, epoch: int,
                      teacher_norms: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Centred, sharpened teacher targets P_t (no grad) and the statistic the centre tracks."""
        with torch.no_grad():
            tau = self.teacher_temp(epoch)
            if self.vmf:
                logits = self._logits(teacher_output, tau, teacher_norms)
                return F.softmax(logits - self.center.log(), dim=-1), F.softmax(logits, dim=-1)
            return F.softmax((teacher_output - self.center) / tau, dim=-1), teacher_output

    def forward(self, student_output: torch.Tensor, teacher_output: torch.Tensor, epoch: int,
                student_norms: torch.Tensor | None = None, teacher_norms: torch.Tensor | None = None) -> torch.Tensor:
        """Loss and centre update.

        Args:
            student_output: ((n_global + n_local) * B, K) head scores, views stacked view-major
                (rows [v*B, (v+1)*B) are view v; the first n_global views are the global crops).
            teacher_output: (n_global * B, K) teacher head scores of the global views, same layout.
            epoch: 0-based epoch (teacher temperature schedule).
            student_norms, teacher_norms: (K,) prototype norms of each head, vMF mode only.
        Returns: scalar loss (grad flows to the student only).
        """
        n_views = self.n_global + self.n_local
        if student_output.dim() != 2 or student_output.shape[0] % n_views:
            raise ValueError(f"student_output must be ({n_views} * B, K), got {tuple(student_output.shape)}")
        b = student_output.shape[0] // n_views
        if teacher_output.shape != (self.n_global * b, student_output.shape[1]):
            raise ValueError(f"teacher_output must be ({self.n_global} * {b}, K), got {tuple(teacher_output.shape)}")
        targets, stat = self.teacher_probs(teacher_output, epoch, teacher_norms)
        log_p_s = F.log_softmax(self._logits(student_output, self.student_temp, student_norms), dim=-1)
        s_views, t_views = log_p_s.chunk(n_views), targets.chunk(self.n_global)
        total, n_terms = student_output.new_zeros(()), 0
        for it, q in enumerate(t_views):
            for iv, lp in enumerate(s_views):
                if iv == it:
                    continue
                total = total + (-(q * lp).sum(dim=-1)).mean()
                n_terms += 1
        self.update_center(stat)
        return total / max(n_terms, 1)

    @torch.no_grad()
    def update_center(self, stat: torch.Tensor) -> None:
        """c <- m c + (1 - m) mean over rows of ``stat`` (raw teacher scores, or vMF probabilities)."""
        # single-process mean; a distributed trainer should all-reduce stat's mean first
        batch = stat.mean(dim=0, keepdim=True)
        self.center.mul_(self.center_momentum).add_(batch * (1 - self.center_momentum))


def cosine_schedule(base: float, final: float, total_steps: int, warmup_steps: int = 0,
                    start_warmup: float = 0.0) -> np.ndarray:
    """Per-step values: linear warm-up start_warmup -> base over ``warmup_steps`` (np.linspace,
    endpoint included), then final + (base - final)(1 + cos(pi i / n)) / 2 for i = 0..n-1,
    n = total_steps - warmup_steps (DINO's ``cosine_scheduler``; the last value approaches ``final``).

    Used for lr (with warm-up), weight decay 0.04 -> 0.4 and teacher momentum 0.996 -> 1.
    Returns: (total_steps,) float64 ndarray.
    Raises: ValueError if total_steps < 1 or warmup_steps not in [0, total_steps].
    """
    if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"need total_steps >= 1 and 0 <= warmup_steps <= total_steps, got {total_steps}, {warmup_steps}")
    warm = np.linspace(start_warmup, base, warmup_steps) if warmup_steps else np.zeros(0)
    i = np.arange(total_steps - warmup_steps)
    cos = final + 0.5 * (base - final) * (1 + np.cos(math.pi * i / max(len(i), 1)))
    return np.concatenate([warm, cos])


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, m: float) -> None:
    """teacher_p <- m teacher_p + (1 - m) student_p for every parameter (DINO Sec. 3.1); buffers untouched.

    Raises: ValueError for m outside [0, 1] or parameters that differ in names or shapes.
    """
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"m must be in [0, 1], got {m}")
    t_params, s_params = dict(teacher.named_parameters()), dict(student.named_parameters())
    if t_params.keys() != s_params.keys():
        raise ValueError("teacher and student must have the same parameter names")
    for name, tp in t_params.items():
        sp = s_params[name]
        if tp.shape != sp.shape:
            raise ValueError(f"parameter {name}: teacher {tuple(tp.shape)} vs student {tuple(sp.shape)}")
        tp.mul_(m).add_(sp.detach(), alpha=1 - m)


def cancel_last_layer_grads(model: nn.Module, epoch: int, freeze_epochs: int) -> None:
    """Drop the gradients of every parameter under a ``last_layer`` module while epoch < freeze_epochs
    (DINO App.: the prototypes stay fixed for the first epoch(s) to stabilise training)."""
    if epoch >= freeze_epochs:
        return
    for name, p in model.named_parameters():
        if "last_layer" in name.split("."):
            p.grad = None
