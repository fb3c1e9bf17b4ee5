"""Losses of CSC, "Building a Strong Pre-Training Baseline for Universal 3D Large-Scale Perception"
(chen2024-csc.md, Secs. 3.2-3.4, Eqs. 1-6).

* :func:`superpixel_contrast` -- Eq. 5, SLidR's superpoint-to-superpixel InfoNCE L_sp;
* :func:`semantic_prototypes` -- Eq. 1, per-semantic-sign mean of superpixel / superpoint embeddings;
* :class:`MMPB` -- Eqs. 2-3, modality-specific prototype projection + multi-modality prototype fusion;
* :func:`prototype_contrast` -- Eq. 4, superpoint-vs-mixed-prototype InfoNCE L_pro;
* :func:`prototype_loss_active`, :func:`csc_loss` -- Eq. 6, L = L_sp + 1{n > lambda} L_pro.

Points where the paper's text and the authors' code (github.com/chenhaomingbob/CSC,
``pretrain/prototype/lightning_trainer_cluster_prototype_v1_1.py``) differ, and what we do:

* Eq. 1 as printed averages F_3D into P_2D and F_2D into P_3D; that is a typo (the text says each
  modality's prototypes come from its own embeddings, and so does the code). :func:`semantic_prototypes`
  is modality-agnostic: call it once with superpixel and once with superpoint embeddings.
* The code builds prototypes over the whole training set once per epoch (a buffer refreshed at
  validation time); the brief here asks for prototypes of the current batch. Both fit these functions.
* The code's fusion is a single 3-layer MLP (DINO head, BatchNorm + GELU) on the concatenated
  [P_3D, P_2D] with no separate per-modality projection; :class:`MMPB` follows Eqs. 2-3 instead.
* The code's L_pro takes all T prototypes as candidates, absent signs included; Eq. 4's sum runs over
  |C_sem| and the brief restricts it to the signs present, which :func:`prototype_contrast` does.
* The code trains on ``mean([L_sp, L_pro])``, i.e. half of Eq. 6; :func:`csc_loss` defaults to Eq. 6's
  sum (``reduce="mean"`` gives the code's form).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["superpixel_contrast", "semantic_prototypes", "MMPB", "prototype_contrast",
           "prototype_loss_active", "csc_loss"]


def _check_feats(name: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise ValueError(f"{name} must be a 2-D (M, D) tensor, got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be floating point, got {x.dtype}")


def _check_tau(tau: float) -> None:
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")


def superpixel_contrast(pixel_feats: torch.Tensor, point_feats: torch.Tensor, tau: float = 0.07,
                        normalize: bool = True, reduction: str = "mean") -> torch.Tensor:
    """Eq. 5 (L_sp, from SLidR, Sautier et al. CVPR 2022): superpoint-to-superpixel InfoNCE.

        L_sp = -sum_i log( exp(<F3D_i, F2D_i> / tau) / sum_j exp(<F3D_i, F2D_j> / tau) )

    Row i of ``point_feats`` (superpoint, 3D) and ``pixel_feats`` (superpixel, 2D) is matched pair i.
    Each superpoint is the anchor; its candidates are all M superpixels of the batch (softmax over
    superpixels, one direction only), as in SLidR's ``NCELoss(k=superpoints, q=superpixels)``.
    SLidR averages over anchors (``nn.CrossEntropyLoss``), CSC's code too, so ``reduction="mean"`` is
    the default; ``"sum"`` is Eq. 5 as printed. With ``normalize=True`` both embeddings are
    L2-normalised over D first, which makes tau a cosine temperature. (SLidR instead normalises the
    per-point / per-pixel features before average pooling, so its pooled vectors are slightly shorter
    than unit; pass ``normalize=False`` with pre-normalised-then-pooled inputs to reproduce that.)

    Args:
        pixel_feats: (M, D) float superpixel embeddings F_2D (any unit; only directions matter when
            normalize=True).
        point_feats: (M, D) float superpoint embeddings F_3D, row i paired with pixel_feats row i.
        tau: temperature tau_sp (> 0); paper default 0.07.
        normalize: L2-normalise both inputs along D.
        reduction: "mean" (over the M anchors) or "sum".
    Returns: scalar float tensor (differentiable w.r.t. both inputs).
    Raises: ValueError naming ``pixel_feats`` / ``point_feats`` for a non-2-D, non-float, empty
        (M == 0) or mismatched input; ``tau`` for tau <= 0; ``reduction`` for another value.
    """
    _check_feats("pixel_feats", pixel_feats)
    _check_feats("point_feats", point_feats)
    if pixel_feats.shape != point_feats.shape:
        raise ValueError(f"pixel_feats {tuple(pixel_feats.shape)} and point_feats "
                         f"{tuple(point_feats.shape)} must have the same (M, D) shape")
    if point_feats.shape[0] == 0:
        raise ValueError("point_feats / pixel_feats are empty (M == 0): no superpixel-superpoint pair")
    _check_tau(tau)
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    if normalize:
        pixel_feats = F.normalize(pixel_feats, dim=1)
        point_feats = F.normalize(point_feats, dim=1)
    logits = point_feats @ pixel_feats.T / tau                 # (M anchors, M superpixels)
    target = torch.arange(logits.shape[0], device=logits.device)
    return F.cross_entropy(logits, target, reduction=reduction)


def semantic_prototypes(feats: torch.Tensor, signs: torch.Tensor,
                        n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 1: semantic prototypes P^t = mean of the embeddings whose semantic sign is t.

        P^t = 1/|C_sem^t| sum_{q : sign_q = t} F^q,     t = 0 .. T-1

    Call once with superpixel embeddings (-> P_2D) and once with superpoint embeddings (-> P_3D); Eq. 1
    as printed swaps F_2D / F_3D, a typo (see the module docstring). Signs are the category-sensitive
    VFM's classes (ADE20K, T = 150 in the paper). The mean is differentiable w.r.t. ``feats``; detach
    the result if prototypes should act as fixed targets (the authors' code recomputes them without
    gradient once per epoch).

    Args:
        feats: (M, D) float superpixel or superpoint embeddings; M may be 0.
        signs: (M,) int64 semantic sign of each row, in [0, n_classes).
        n_classes: T, number of semantic signs (>= 1).
    Returns:
        prototypes: (T, D) tensor, feats' dtype/device; rows of absent signs are 0.
        present: (T,) bool, True where at least one row of ``feats`` carries that sign.
    Raises: ValueError naming ``feats`` (not 2-D float), ``signs`` (not (M,) integer, or a value
        outside [0, n_classes)) or ``n_classes`` (< 1).
    """
    _check_feats("feats", feats)
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    if (not isinstance(signs, torch.Tensor) or signs.dim() != 1 or signs.shape[0] != feats.shape[0]
            or signs.is_floating_point() or signs.dtype == torch.bool):
        raise ValueError(f"signs must be an integer (M,) = ({feats.shape[0]},) tensor, got "
                         f"{tuple(signs.shape) if isinstance(signs, torch.Tensor) else type(signs).__name__}")
    signs = signs.to(device=feats.device, dtype=torch.long)
    if signs.numel() and (int(signs.min()) < 0 or int(signs.max()) >= n_classes):
        raise ValueError(f"signs must lie in [0, {n_classes}), got range "
                         f"[{int(signs.min())}, {int(signs.max())}]")
    D = feats.shape[1]
    sums = feats.new_zeros(n_classes, D).index_add(0, signs, feats)
    counts = torch.bincount(signs, minlength=n_classes)
    present = counts > 0
    # clamp keeps absent rows at 0 / 1 = 0 instead of NaN, with no gradient leaking into them
    protos = sums / counts.clamp(min=1).to(feats.dtype)[:, None]
    return protos, present


class MMPB(nn.Module):
    """Multi-Modality Prototype Blending (Sec. 3.3, Eqs. 2-3).

    Eq. 2 (modality-specific prototype projection): two parallel stacks of linear layers map
    P_2D (T, dim_2d) and P_3D (T, dim_3d) into one space, giving P̄_2D, P̄_3D (T, dim_out).
    Eq. 3 (multi-modality prototype fusion): per sign t, linear layers map [P̄_2D^t, P̄_3D^t]
    (concatenated along channels, 2D first as the equation lists them) to P_mix^t (T, dim_out).
    Each prototype row is processed independently (no mixing across signs).

    Choices the text leaves open (ours): depth ``proj_layers`` / ``fusion_layers`` (default 2 each:
    "several linear layers"), hidden width ``dim_out``, GELU between layers and none after the last
    (GELU as in the authors' fusion head), no BatchNorm (the authors' head has BN; with per-batch
    prototypes and zero rows for absent signs BN statistics would be dominated by T - #present zero
    rows). With ``proj_layers = fusion_layers = 1`` and equal widths, :meth:`reset_to_average` makes the
    module compute P_mix = (P_2D + P_3D) / 2 exactly, the no-learning baseline of the blending.

    Args:
        dim_2d, dim_3d: channels D of the 2D / 3D prototypes (>= 1).
        dim_out: channels of projected and mixed prototypes (default dim_3d, so P_mix can be compared
            with superpoint embeddings in Eq. 4).
        proj_layers, fusion_layers: number of Linear layers in each projection / in the fusion (>= 1).
    forward(p2d (T, dim_2d), p3d (T, dim_3d)) -> P_mix (T, dim_out), same dtype as the parameters.
    Raises: ValueError naming the bad constructor argument; in forward, ``p2d`` / ``p3d`` for wrong
        shapes.
    """

    def __init__(self, dim_2d: int, dim_3d: int, dim_out: int | None = None, proj_layers: int = 2,
                 fusion_layers: int = 2):
        super().__init__()
        dim_out = dim_3d if dim_out is None else dim_out
        for name, v in (("dim_2d", dim_2d), ("dim_3d", dim_3d), ("dim_out", dim_out),
                        ("proj_layers", proj_layers), ("fusion_layers", fusion_layers)):
            if int(v) < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        self.dim_2d, self.dim_3d, self.dim_out = dim_2d, dim_3d, dim_out
        self.proj_2d = self._stack(dim_2d, dim_out, proj_layers)
        self.proj_3d = self._stack(dim_3d, dim_out, proj_layers)
        self.fusion = self._stack(2 * dim_out, dim_out, fusion_layers)

    @staticmethod
    def _stack(d_in: int, d_out: int, n: int) -> nn.Sequential:
        layers: list[nn.Module] = []
        for i in range(n):
            layers.append(nn.Linear(d_in if i == 0 else d_out, d_out))
            if i < n - 1:
                layers.append(nn.GELU())
        return nn.Sequential(*layers)

    def project(self, p2d: torch.Tensor, p3d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 2: (T, dim_2d), (T, dim_3d) -> P̄_2D, P̄_3D, both (T, dim_out). Raises ValueError
        naming ``p2d`` / ``p3d`` for a wrong shape or mismatched T."""
        if p2d.dim() != 2 or p2d.shape[1] != self.dim_2d:
            raise ValueError(f"p2d must be (T, {self.dim_2d}), got {tuple(p2d.shape)}")
        if p3d.dim() != 2 or p3d.shape[1] != self.dim_3d:
            raise ValueError(f"p3d must be (T, {self.dim_3d}), got {tuple(p3d.shape)}")
        if p2d.shape[0] != p3d.shape[0]:
            raise ValueError(f"p2d and p3d must hold the same T prototypes, got {p2d.shape[0]} and "
                             f"{p3d.shape[0]}")
        return self.proj_2d(p2d), self.proj_3d(p3d)

    def forward(self, p2d: torch.Tensor, p3d: torch.Tensor) -> torch.Tensor:
        """Eqs. 2-3: P_mix (T, dim_out) from P_2D (T, dim_2d) and P_3D (T, dim_3d)."""
        b2d, b3d = self.project(p2d, p3d)
        return self.fusion(torch.cat([b2d, b3d], dim=1))

    @torch.no_grad()
    def reset_to_average(self) -> "MMPB":
        """Set projections to identity and the fusion to [I/2, I/2], so forward = (P_2D + P_3D) / 2.

        Raises: ValueError unless proj_layers == fusion_layers == 1 and dim_2d == dim_3d == dim_out
        (only then is the map exactly representable).
        """
        if len(self.proj_2d) != 1 or len(self.fusion) != 1 or not (
                self.dim_2d == self.dim_3d == self.dim_out):
            raise ValueError("reset_to_average needs proj_layers == fusion_layers == 1 and "
                             "dim_2d == dim_3d == dim_out")
        eye = torch.eye(self.dim_out, dtype=self.fusion[0].weight.dtype,
                        device=self.fusion[0].weight.device)
        for lin in (self.proj_2d[0], self.proj_3d[0]):
            lin.weight.copy_(eye)
            lin.bias.zero_()
        self.fusion[0].weight.copy_(torch.cat([eye, eye], dim=1) * 0.5)
        self.fusion[0].bias.zero_()
        return self


def prototype_contrast(point_feats: torch.Tensor, signs: torch.Tensor, prototypes: torch.Tensor,
                       present: torch.Tensor, tau: float = 1.0, normalize: bool = False,
                       reduction: str = "mean") -> torch.Tensor:
    """Eq. 4 (L_pro): each superpoint against the mixed prototypes, positive = its own sign's.

        L_pro = -log( exp(<F3D, P_mix^+> / tau) / sum_{t present} exp(<F3D, P_mix^t> / tau) )

    Candidates are the prototypes of the signs present (``present[t]``); an absent sign is neither
    positive nor negative (its logit is -inf). <.,.> is the plain scalar product as the paper writes
    it (and the authors' code computes); ``normalize=True`` L2-normalises both sides first (cosine).
    Averaged over superpoints by default (the authors' ``nn.CrossEntropyLoss``).

    Args:
        point_feats: (M, D) float superpoint embeddings F_3D (M >= 1).
        signs: (M,) integer semantic sign of each superpoint, in [0, T); every sign used must be
            present.
        prototypes: (T, D) float mixed prototypes P_mix (e.g. :class:`MMPB` output).
        present: (T,) bool, which prototypes exist (from :func:`semantic_prototypes`).
        tau: temperature tau_pro (> 0); paper default 1.0.
        normalize: cosine instead of raw scalar product.
        reduction: "mean" (over superpoints) or "sum".
    Returns: scalar float tensor, differentiable w.r.t. point_feats and prototypes.
    Raises: ValueError naming ``point_feats`` (not 2-D float / empty), ``prototypes`` (not (T, D)),
        ``signs`` (wrong shape or dtype, out of range, or pointing at an absent prototype),
        ``present`` (not (T,) bool), ``tau`` (<= 0) or ``reduction``.
    """
    _check_feats("point_feats", point_feats)
    _check_feats("prototypes", prototypes)
    if point_feats.shape[0] == 0:
        raise ValueError("point_feats is empty (M == 0): no superpoint to contrast")
    if prototypes.shape[1] != point_feats.shape[1]:
        raise ValueError(f"prototypes must be (T, {point_feats.shape[1]}), got {tuple(prototypes.shape)}")
    T = prototypes.shape[0]
    if not isinstance(present, torch.Tensor) or present.dtype != torch.bool or tuple(present.shape) != (T,):
        raise ValueError(f"present must be a (T,) = ({T},) bool tensor, got "
                         f"{tuple(present.shape) if isinstance(present, torch.Tensor) else type(present).__name__}")
    if (not isinstance(signs, torch.Tensor) or tuple(signs.shape) != (point_feats.shape[0],)
            or signs.is_floating_point() or signs.dtype == torch.bool):
        raise ValueError(f"signs must be an integer (M,) = ({point_feats.shape[0]},) tensor")
    _check_tau(tau)
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    signs = signs.to(device=point_feats.device, dtype=torch.long)
    present = present.to(point_feats.device)
    if int(signs.min()) < 0 or int(signs.max()) >= T:
        raise ValueError(f"signs must lie in [0, {T}), got [{int(signs.min())}, {int(signs.max())}]")
    if not bool(present[signs].all()):
        bad = torch.unique(signs[~present[signs]]).tolist()
        raise ValueError(f"signs {bad} have no present prototype (no positive for those superpoints)")
    if normalize:
        point_feats = F.normalize(point_feats, dim=1)
        prototypes = F.normalize(prototypes, dim=1)
    logits = point_feats @ prototypes.T / tau                   # (M, T)
    logits = logits.masked_fill(~present[None, :], float("-inf"))
    return F.cross_entropy(logits, signs, reduction=reduction)


def prototype_loss_active(epoch: int, lam: int = 5) -> bool:
    """Eq. 6's indicator 1{n > lambda} for a 0-based ``epoch`` (PyTorch Lightning's current_epoch).

    The paper's n is the 1-based epoch count, so n > lambda  <=>  epoch = n - 1 >= lambda; the
    authors' code switches L_pro on with ``current_epoch >= cluster_interval``, the same thing. With the
    default lambda = 5, epochs 0-4 use L_sp only and L_pro joins from epoch 5 (the 6th).

    Args: epoch: 0-based epoch index (>= 0); lam: lambda (>= 0), paper default 5.
    Raises: ValueError naming ``epoch`` or ``lam`` when negative.
    """
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0 (0-based), got {epoch}")
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    return epoch >= lam


def csc_loss(l_sp: torch.Tensor, l_pro: torch.Tensor | None, epoch: int, lam: int = 5,
             reduce: str = "sum") -> torch.Tensor:
    """Eq. 6: L_total = L_sp + 1{n > lambda} L_pro (see :func:`prototype_loss_active` for the epoch
    convention; ``epoch`` is 0-based).

    Args:
        l_sp: scalar tensor, :func:`superpixel_contrast`.
        l_pro: scalar tensor, :func:`prototype_contrast`, or None while inactive (lets the caller skip
            building prototypes before epoch lambda).
        epoch: 0-based epoch; lam: lambda (default 5).
        reduce: "sum" (Eq. 6) or "mean" (the authors' code: mean of the active terms).
    Returns: scalar tensor.
    Raises: ValueError naming ``l_pro`` when it is None at an active epoch, ``l_sp`` / ``l_pro`` when
        not scalar, ``reduce`` for another value, or ``epoch`` / ``lam`` when negative.
    """
    if reduce not in ("sum", "mean"):
        raise ValueError(f"reduce must be 'sum' or 'mean', got {reduce!r}")
    if not isinstance(l_sp, torch.Tensor) or l_sp.dim() != 0:
        raise ValueError("l_sp must be a scalar tensor")
    if not prototype_loss_active(epoch, lam):
        return l_sp
    if l_pro is None:
        raise ValueError(f"l_pro is None but the prototype loss is active at epoch {epoch} (lam={lam})")
    if not isinstance(l_pro, torch.Tensor) or l_pro.dim() != 0:
        raise ValueError("l_pro must be a scalar tensor")
    total = l_sp + l_pro
    return total / 2 if reduce == "mean" else total
