"""Pre-training losses of combined-datasets BEV pre-training (combined-datasets-bev-pretraining.md, Sec. 3.1).

* :func:`bev_infonce` -- Eq. 3, the camera-BEV vs LiDAR-BEV contrastive loss L_CL over K randomly
  sampled corresponding BEV cells;
* :func:`mae_loss` -- Eq. 4, the image reconstruction loss L_MAE on masked patches (He et al.,
  "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022, ref. [17]);
* :func:`random_patch_mask`, :func:`patchify`, :func:`mask_patches` -- the masking of Sec. 3.1
  ("we randomly sample a portion of the patches to be masked (i.e. set to zero)").

``L_All = L_MAE + L_CL`` (Eq. 1) is the caller's sum.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _generator(generator: torch.Generator | int | None, device) -> torch.Generator | None:
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    g = torch.Generator(device=device)
    g.manual_seed(int(generator))
    return g


def sample_bev_cells(B: int, H: int, W: int, k: int, generator: torch.Generator | int | None = None,
                     mask: torch.Tensor | None = None, device=None) -> list[torch.Tensor]:
    """Draw K BEV cells per sample, uniformly without replacement (Sec. 3.1: "we randomly sampled some
    locations from the BEV map").

    Args:
        B, H, W: batch size and BEV map size.
        k: cells per sample (K of Eq. 3, >= 1).
        generator: a torch.Generator (on CPU), a seed, or None (global RNG).
        mask: optional (B, H, W) bool; only True cells are drawn (e.g. occupied LiDAR cells). A sample
            with fewer than K True cells uses all of them.
        device: device of the returned indices (default: the mask's, else CPU).
    Returns: B tensors (K_b,) int64 of flat cell indices ``row * W + col``, K_b = min(K, #allowed).
    Raises: ValueError for k < 1 or a mask of another shape.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if mask is not None and tuple(mask.shape) != (B, H, W):
        raise ValueError(f"mask must be (B, H, W) = {(B, H, W)}, got {tuple(mask.shape)}")
    device = device if device is not None else (mask.device if mask is not None else "cpu")
    g = _generator(generator, "cpu")
    cells = []
    for b in range(B):
        allowed = (torch.arange(H * W) if mask is None
                   else torch.nonzero(mask[b].reshape(-1).cpu(), as_tuple=False).reshape(-1))
        perm = torch.randperm(allowed.shape[0], generator=g)[:k]
        cells.append(allowed[perm].to(device))
    return cells


def bev_infonce(cam_bev: torch.Tensor, lidar_bev: torch.Tensor, k: int = 1024, tau: float = 0.07,
                generator: torch.Generator | int | None = None, mask: torch.Tensor | None = None,
                cells: list[torch.Tensor] | None = None, symmetric: bool = False) -> torch.Tensor:
    """Eq. 3: InfoNCE between camera and LiDAR BEV features at K sampled corresponding cells.

        L_CL = -1/|D| sum_i 1/K sum_j log( exp(x_i^j . y_i^j / tau) / sum_k exp(x_i^j . y_i^k / tau) )

    x_i^j / y_i^j are the camera / LiDAR features of sample i at its j-th sampled cell, L2-normalised
    over channels (the paper's x . y; normalising makes tau the usual cosine temperature). Positives
    are the same cell in both maps, negatives the other K-1 sampled cells of the same sample (no
    negatives across samples, as Eq. 3's inner sum runs over one sample's grids). As written, Eq. 3
    is one-directional (softmax over LiDAR cells for each camera cell; default ``symmetric=False``);
    ``symmetric=True`` averages it with the LiDAR -> camera direction (CLIP-style), an option the
    paper does not use. The paper does not state tau or K; 0.07 and 1024 are our defaults.

    Args:
        cam_bev: (B, C, H, W) float camera BEV features (LSS output); lidar_bev: same shape (LiDAR BEV).
        k: K cells per sample (>= 1).
        tau: temperature (> 0).
        generator: torch.Generator, seed or None for the cell draw (see :func:`sample_bev_cells`).
        mask: optional (B, H, W) bool, cells allowed to be drawn (e.g. LiDAR-occupied cells).
        cells: optional precomputed B tensors of flat cell indices (overrides k / generator / mask).
        symmetric: also the LiDAR -> camera direction, averaged.
    Returns: scalar tensor; samples with no drawable cell are left out of the mean (0, with
        gradient graph, when no sample has one).
    Raises: ValueError for mismatched shapes, tau <= 0, k < 1 or a wrong mask / cells.
    """
    if cam_bev.dim() != 4 or cam_bev.shape != lidar_bev.shape:
        raise ValueError(f"cam_bev and lidar_bev must both be (B, C, H, W), got {tuple(cam_bev.shape)} "
                         f"and {tuple(lidar_bev.shape)}")
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    B, C, H, W = cam_bev.shape
    if cells is None:
        cells = sample_bev_cells(B, H, W, k, generator, mask, device=cam_bev.device)
    elif len(cells) != B:
        raise ValueError(f"cells must hold one index tensor per sample ({B}), got {len(cells)}")
    cam = cam_bev.flatten(2)      # (B, C, HW)
    lid = lidar_bev.flatten(2)
    losses = []
    for b in range(B):
        idx = cells[b].to(cam.device).long()
        if idx.numel() == 0:
            continue
        if int(idx.min()) < 0 or int(idx.max()) >= H * W:
            raise ValueError(f"cells[{b}] holds indices outside [0, {H * W})")
        x = F.normalize(cam[b][:, idx].T, dim=-1)    # (K, C)
        y = F.normalize(lid[b][:, idx].T, dim=-1)
        logits = x @ y.T / tau
        target = torch.arange(idx.shape[0], device=logits.device)
        loss = F.cross_entropy(logits, target)
        if symmetric:
            loss = 0.5 * (loss + F.cross_entropy(logits.T, target))
        losses.append(loss)
    if not losses:
        return (cam_bev.sum() + lidar_bev.sum()) * 0.0
    return torch.stack(losses).mean()


def random_patch_mask(B: int, n_patches: int, ratio: float, generator: torch.Generator | int | None = None,
                      device=None) -> torch.Tensor:
    """MAE's per-sample random masking: exactly ``round(ratio * n_patches)`` patches masked per sample,
    chosen uniformly (He et al. 2022, Sec. 3: argsort of uniform noise).

    Args:
        B: batch size; n_patches: patches per image (>= 1); ratio: masked fraction in [0, 1].
        generator: torch.Generator (CPU), seed, or None.
        device: device of the result (default CPU).
    Returns: (B, n_patches) bool, True = masked.
    Raises: ValueError for ratio outside [0, 1] or n_patches < 1.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must lie in [0, 1], got {ratio}")
    if n_patches < 1 or B < 0:
        raise ValueError(f"n_patches must be >= 1 and B >= 0, got {n_patches}, {B}")
    g = _generator(generator, "cpu")
    n_mask = int(round(ratio * n_patches))
    noise = torch.rand(B, n_patches, generator=g)
    rank = torch.argsort(torch.argsort(noise, dim=1), dim=1)
    return (rank < n_mask).to(device if device is not None else "cpu")


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, patch * patch * C) patches in row-major patch order (N = H/p * W/p), each
    patch flattened as (py, px, c) like MAE's ``patchify``.
    Raises: ValueError when H or W is not a multiple of ``patch``."""
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got {tuple(images.shape)}")
    B, C, H, W = images.shape
    if patch < 1 or H % patch or W % patch:
        raise ValueError(f"image size {(H, W)} is not a multiple of patch {patch}")
    x = images.reshape(B, C, H // patch, patch, W // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(B, (H // patch) * (W // patch), patch * patch * C)


def mask_patches(images: torch.Tensor, mask: torch.Tensor, patch: int) -> torch.Tensor:
    """Set the masked patches of images to zero (Sec. 3.1); every patch still goes through the encoder.

    Args: images (B, C, H, W); mask (B, N) bool from :func:`random_patch_mask`, N = H/p * W/p,
        row-major; patch: p.
    Returns: (B, C, H, W) same dtype. Raises: ValueError for mismatched sizes."""
    B, C, H, W = images.shape
    if patch < 1 or H % patch or W % patch or tuple(mask.shape) != (B, (H // patch) * (W // patch)):
        raise ValueError(f"mask {tuple(mask.shape)} does not match images {tuple(images.shape)} with patch {patch}")
    keep = (~mask.bool()).to(images.dtype).reshape(B, 1, H // patch, 1, W // patch, 1)
    x = images.reshape(B, C, H // patch, patch, W // patch, patch) * keep
    return x.reshape(B, C, H, W)


def mae_loss(pred_patches: torch.Tensor, target_patches: torch.Tensor, mask: torch.Tensor | None,
             norm_pix: bool = False, eps: float = 1e-6) -> torch.Tensor:
    """Eq. 4: mean squared reconstruction error of image patches, over the masked patches.

    Eq. 4 writes ||c_hat_i - c_i||^2 averaged over samples; as in MAE (ref. [17]) the error is the mean
    over a patch's values, averaged over the masked patches of the batch (``mask=None``: over all
    patches, the literal Eq. 4 up to a constant factor). Default targets are the raw patches
    (``norm_pix=False``: the paper reconstructs "the original images"); ``norm_pix=True`` normalises
    each target patch by its own mean and variance (MAE's ``norm_pix_loss``).

    Args:
        pred_patches: (B, N, P) float decoder output; target_patches: (B, N, P) patches
            (:func:`patchify` of the unmasked images).
        mask: (B, N) bool, True = masked (counted), or None for all patches.
        norm_pix: per-patch normalised targets. eps: variance floor for ``norm_pix``.
    Returns: scalar; 0 (with graph) when no patch is masked.
    Raises: ValueError for mismatched shapes.
    """
    if pred_patches.dim() != 3 or pred_patches.shape != target_patches.shape:
        raise ValueError(f"pred_patches and target_patches must both be (B, N, P), got "
                         f"{tuple(pred_patches.shape)} and {tuple(target_patches.shape)}")
    if mask is not None and tuple(mask.shape) != tuple(pred_patches.shape[:2]):
        raise ValueError(f"mask must be (B, N) = {tuple(pred_patches.shape[:2])}, got {tuple(mask.shape)}")
    target = target_patches.to(pred_patches.dtype)
    if norm_pix:
        mean = target.mean(-1, keepdim=True)
        var = target.var(-1, keepdim=True, unbiased=True)
        target = (target - mean) / (var + eps).sqrt()
    per_patch = ((pred_patches - target) ** 2).mean(-1)     # (B, N)
    if mask is None:
        return per_patch.mean()
    m = mask.to(per_patch.device).to(per_patch.dtype)
    return (per_patch * m).sum() / m.sum().clamp_min(1.0)
