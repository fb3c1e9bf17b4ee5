"""Losses, one function per paper equation.

busch2026: Eq. 1 (pixel cross-entropy of the rendered prediction against camera-view
pseudo-labels) and Alg. 1 (temporal loss); the supervised BEV cross-entropy of BEVFormer's
segmentation head is used for the baseline and for fine-tuning.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .bev import BEVGrid, warp_bev
from .classes import BEV_MAP, IGNORE, LabelSet
from .render import render_bev


def busch2026_eq1_reprojection_ce(pred_cp: torch.Tensor, gt_cp: torch.Tensor, ignore_index: int = IGNORE) -> torch.Tensor:
    """busch2026 Eq. 1: pixel cross-entropy of rendered predictions against pseudo-labels.

        L_CE = - sum_pixels GT_cp . LogSoftmax(Pred_cp) / n_pixels

    with GT_cp one-hot and n_pixels "the total number of pixels across all channels and views",
    i.e. (labelled pixels over all views and the batch) x C. Every pixel counts, as in the paper:
    pixels the ground plane does not reach render as all-zero logits and so add a constant
    (no gradient). Pixels labelled ``ignore_index`` are left out of sum and count.

    Args:
        pred_cp: (B, N, C, h, w) float logits rendered into N views.
        gt_cp: (B, N, h, w) integer class indices in [0, C) or ``ignore_index``.
        ignore_index: the label set's ignore value (default :data:`~bevlib.classes.IGNORE`, 255).
    Returns: scalar tensor.
    Raises: ValueError on mismatched shapes.
    """
    if pred_cp.dim() != 5 or gt_cp.shape != pred_cp.shape[:2] + pred_cp.shape[3:]:
        raise ValueError(f"pred_cp (B, N, C, h, w) {tuple(pred_cp.shape)} and gt_cp (B, N, h, w) "
                         f"{tuple(gt_cp.shape)} do not match")
    B, N, C, h, w = pred_cp.shape
    logits = pred_cp.reshape(B * N, C, h, w)
    target = gt_cp.reshape(B * N, h, w).long()
    total = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="sum")
    n_pixels = (target != ignore_index).sum().clamp_min(1) * C
    return total / n_pixels


def bev_ce(logits: torch.Tensor, gt_bev: torch.Tensor, class_weights: torch.Tensor | None = None,
           labels: LabelSet = BEV_MAP) -> torch.Tensor:
    """Supervised BEV cross-entropy (BEVFormer segmentation head; baseline and fine-tuning).

    Only the first K = ``labels.num_classes`` channels take part (default :data:`~bevlib.classes.BEV_MAP`:
    background + 3 map classes): the BEV ground truth has no object classes, so the softmax runs
    over the map classes alone.

    Args:
        logits: (B, C >= K, H, W) float.
        gt_bev: (B, H, W) integer in [0, K) or ``labels.ignore_index``.
        class_weights: optional (K,) float weights (thin markings are rare).
        labels: the BEV label set (channels and ignore index).
    Returns: scalar, mean over labelled cells (weighted mean when weights are given).
    Raises: ValueError if H, W differ or the logits have fewer than K channels.
    """
    if logits.shape[-2:] != gt_bev.shape[-2:]:
        raise ValueError(f"logits {tuple(logits.shape)} and gt_bev {tuple(gt_bev.shape)} differ in H, W")
    K = labels.num_classes
    if logits.shape[1] < K:
        raise ValueError(f"logits {tuple(logits.shape)} have fewer than the {K} channels of label set {labels.name!r}")
    w = None if class_weights is None else class_weights.to(logits)
    return F.cross_entropy(logits[:, :K], gt_bev.long(), weight=w, ignore_index=labels.ignore_index)


def busch2026_alg1_temporal_loss(head, X: torch.Tensor, curr_T_prev: torch.Tensor, K, ego_T_cam,
                                 image_hw: tuple[int, int], grid: BEVGrid, gt_cp_t: torch.Tensor,
                                 gt_cp_prev: torch.Tensor, has_prev: torch.Tensor | None = None,
                                 backend: str = "analytic", logits_t: torch.Tensor | None = None,
                                 ignore_index: int = IGNORE):
    """busch2026 Alg. 1: reconstruction loss at t and, from the same latent BEV, at t - 1.

    X(t-1) is X rotated by the ego yaw change and translated by the ego displacement, i.e. the
    current latent BEV resampled into the previous ego frame; the *shared* segmentation head then
    predicts both BEV maps, each is rendered with that time's camera rig and compared with that
    time's pseudo-labels (Eq. 1).

    Args:
        head: callable X (B, D, Hq, Wq) -> logits (B, C, H, W) (the shared SegHead).
        X: (B, D, Hq, Wq) latent BEV of the current keyframe (over ``grid``'s extent).
        curr_T_prev: (B, 4, 4) previous ego frame -> current ego frame.
        K, ego_T_cam: (B, N, 3, 3), (B, N, 4, 4) the rig at image size ``image_hw``.
        gt_cp_t, gt_cp_prev: (B, N, h, w) pseudo-labels at t and t - 1.
        has_prev: (B,) bool; samples without a previous keyframe (scene start) skip the t-1 term.
        logits_t: ``head(X)`` when the caller already has it (the model's forward computes it).
        ignore_index: label value of unlabelled pseudo-label pixels (default 255).
    Returns: (L_CE(t), L_CE(t-1)) scalars; L_CE(t-1) is 0 when no sample has a previous frame.
    """
    if logits_t is None:
        logits_t = head(X)
    loss_t = busch2026_eq1_reprojection_ce(render_bev(logits_t, K, ego_T_cam, image_hw, grid, backend)[0], gt_cp_t,
                                           ignore_index)
    if has_prev is None:
        has_prev = torch.ones(X.shape[0], dtype=torch.bool)
    if not bool(has_prev.any()):
        return loss_t, X.new_zeros(())
    sel = has_prev.nonzero().flatten()
    # The previous frame's map, seen from the previous ego frame: sample X at curr_T_prev @ p_prev.
    X_prev = warp_bev(X[sel], torch.as_tensor(curr_T_prev)[sel], grid)
    # The rig is fixed within a scene, so the current calibration renders the t-1 frame too.
    K_prev, T_prev = torch.as_tensor(K)[sel], torch.as_tensor(ego_T_cam)[sel]
    pred_prev = render_bev(head(X_prev), K_prev, T_prev, image_hw, grid, backend)[0]
    return loss_t, busch2026_eq1_reprojection_ce(pred_prev, gt_cp_prev[sel], ignore_index)
