"""Losses, one function per paper equation.

busch2026: Eq. 1 (pixel cross-entropy of the rendered prediction against camera-view
pseudo-labels) and Alg. 1 (temporal loss); the supervised BEV cross-entropy of BEVFormer's
segmentation head is used for the baseline and for fine-tuning.

lukkassen2024 (MultiViT, after RangeViT): L = L_Lovasz + lambda * L_focal, from the multi-class
focal loss (Lin et al., ICCV 2017) and the Lovasz-softmax loss (Berman et al., CVPR 2018); Sec. 4.5's
camera-LiDAR contrastive loss on per-class mean features (after Khosla et al., NeurIPS 2020).
"""
from __future__ import annotations

from collections.abc import Sequence

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


def _check_seg_shapes(logits: torch.Tensor, target: torch.Tensor, name: str) -> None:
    if logits.dim() < 2 or target.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(f"{name}: logits (B, C, ...) {tuple(logits.shape)} and target (B, ...) "
                         f"{tuple(target.shape)} do not match")


def multiclass_focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
                          alpha: float | Sequence[float] | torch.Tensor | None = None,
                          ignore_index: int = IGNORE) -> torch.Tensor:
    """Multi-class focal loss (Lin et al., ICCV 2017, Eq. 5 in its softmax form), as lukkassen2024 uses it.

        FL(p_t) = - alpha_t (1 - p_t)^gamma log(p_t),   p_t = softmax(logits)[target]

    Reduction: the plain mean over the non-ignored elements (the alpha weights do not enter the
    denominator, unlike ``F.cross_entropy(weight=...)``); 0 (with a graph) when every element is
    ignored. With ``gamma=0`` and ``alpha=None`` it equals ``F.cross_entropy``.

    Args:
        logits: (B, C, ...) float, unnormalised class scores.
        target: (B, ...) integer class indices in [0, C) or ``ignore_index``.
        gamma: focusing parameter (>= 0; 2 in Lin et al.).
        alpha: None (alpha_t = 1), a scalar applied to every class, or (C,) per-class weights.
        ignore_index: label value left out of the loss and the count (default 255).
    Returns: scalar tensor in the logits' dtype.
    Raises: ValueError on mismatched shapes or an alpha of the wrong length.
    """
    _check_seg_shapes(logits, target, "multiclass_focal_loss")
    C = logits.shape[1]
    target = target.long()
    valid = target != ignore_index
    # gather needs a valid index everywhere; ignored elements are masked out afterwards
    safe = torch.where(valid, target, torch.zeros_like(target))
    logp_t = F.log_softmax(logits, dim=1).gather(1, safe.unsqueeze(1)).squeeze(1)
    # (1 - p_t) from log-probs: exp of a log-softmax stays in [0, 1] without a separate softmax
    loss = -(1.0 - logp_t.exp()).clamp_min(0).pow(gamma) * logp_t if gamma != 0 else -logp_t
    if alpha is not None:
        a = torch.as_tensor(alpha, dtype=logits.dtype, device=logits.device)
        if a.dim() == 0:
            loss = loss * a
        elif a.shape != (C,):
            raise ValueError(f"alpha must be a scalar or ({C},), got {tuple(a.shape)}")
        else:
            loss = loss * a[safe]
    n = valid.sum()
    return torch.where(valid, loss, loss.new_zeros(())).sum() / n.clamp_min(1)


def lovasz_softmax(logits: torch.Tensor, target: torch.Tensor, classes: str | Sequence[int] = "present",
                   ignore_index: int = IGNORE, from_logits: bool = True) -> torch.Tensor:
    """Lovasz-softmax loss (Berman, Rannen Triki & Blaschko, CVPR 2018, Eq. 8-9 and Alg. 1).

    For each class c, with m_i(c) = |[y_i = c] - p_i(c)| over the P labelled pixels of the whole
    batch (the reference's ``per_image=False``) and pi the order of decreasing m(c):

        loss_c = sum_k m_pi_k(c) * g_k(c),  g_k = Delta_Jc({pi_1..pi_k}) - Delta_Jc({pi_1..pi_k-1})
        Delta_Jc(S) = |S| / |{y = c} u S|   (the Jaccard loss when S are the errors)

    i.e. the Lovasz extension of the Jaccard loss evaluated at the error vector, and the loss is
    the mean of loss_c over the selected classes. All classes are sorted at once, and the
    Jaccard terms come from per-class cumulative sums (no loop over classes).

    Args:
        logits: (B, C, ...) float; class scores (softmax taken here) or, with
            ``from_logits=False``, class probabilities (the reference implementation's input).
        target: (B, ...) integer class indices in [0, C) or ``ignore_index``.
        classes: "present" (classes occurring in the labelled target of the batch; the
            reference's default), "all" (an absent class contributes its largest probability),
            or a sequence of class indices.
        ignore_index: label value left out (default 255).
        from_logits: apply the softmax over dim 1 first.
    Returns: scalar tensor; 0 (with a graph) when no pixel is labelled or no class is selected.
    Raises: ValueError on mismatched shapes or an unknown ``classes``.
    """
    _check_seg_shapes(logits, target, "lovasz_softmax")
    C = logits.shape[1]
    probas = logits.softmax(dim=1) if from_logits else logits
    probas = probas.movedim(1, -1).reshape(-1, C)
    labels = target.reshape(-1).long()
    valid = labels != ignore_index
    probas, labels = probas[valid], labels[valid]
    if labels.numel() == 0:
        return probas.sum() * 0.0
    # class-major and contiguous, so that the sort and the cumulative sums run along memory
    fg = (labels.unsqueeze(0) == torch.arange(C, device=labels.device).unsqueeze(1)).to(probas.dtype)  # (C, P)
    errors = (fg - probas.t().contiguous()).abs()
    errors_sorted, perm = errors.sort(dim=1, descending=True)
    fg_sorted = fg.gather(1, perm)
    gts = fg_sorted.sum(dim=1, keepdim=True)
    # |{y=c} n not(S_k)| and |{y=c} u S_k| for every prefix S_k; union >= 1 for k >= 1
    intersection = gts - fg_sorted.cumsum(dim=1)
    union = gts + (1.0 - fg_sorted).cumsum(dim=1)
    jaccard = 1.0 - intersection / union
    grad = torch.cat([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], dim=1)
    per_class = (errors_sorted * grad).sum(dim=1)               # (C,)
    if isinstance(classes, str):
        if classes == "present":
            sel = gts.squeeze(1) > 0
        elif classes == "all":
            sel = torch.ones(C, dtype=torch.bool, device=per_class.device)
        else:
            raise ValueError(f"classes must be 'present', 'all' or a sequence of indices, got {classes!r}")
        if not bool(sel.any()):
            return per_class.sum() * 0.0
        return per_class[sel].mean()
    idx = torch.as_tensor(list(classes), dtype=torch.long, device=per_class.device)
    if idx.numel() == 0:
        return per_class.sum() * 0.0
    return per_class[idx].mean()


def multivit_segmentation_loss(logits: torch.Tensor, target: torch.Tensor, lambda_focal: float = 1.0,
                               gamma: float = 2.0, alpha: float | Sequence[float] | torch.Tensor | None = None,
                               classes: str | Sequence[int] = "present",
                               ignore_index: int = IGNORE) -> torch.Tensor:
    """lukkassen2024 Sec. 3.2 "Training loss": L = L_Lovasz + lambda * L_focal.

    lambda_l = 1 for the LiDAR branch (RangeViT, MultiViT.L) and lambda_c = 3 for the camera
    branch (CameraViT, MultiViT.C); joint training sums the two branch losses
    (L_total = L_LiDAR + L_camera), which is left to the caller.

    Args:
        logits: (B, C, ...) float class scores (range image (B, C, H, W) or camera image).
        target: (B, ...) integer class indices in [0, C) or ``ignore_index``.
        lambda_focal: lambda (1 LiDAR, 3 camera).
        gamma, alpha: of :func:`multiclass_focal_loss`.
        classes: of :func:`lovasz_softmax`.
        ignore_index: label value left out of both terms (default 255).
    Returns: scalar tensor.
    """
    return (lovasz_softmax(logits, target, classes=classes, ignore_index=ignore_index)
            + lambda_focal * multiclass_focal_loss(logits, target, gamma=gamma, alpha=alpha,
                                                   ignore_index=ignore_index))


def _class_means(feats: torch.Tensor, labels: torch.Tensor, cls: torch.Tensor, ignore_index: int | None):
    """(K, C) per-class mean of ``feats`` over the rows labelled ``cls[k]`` (float32, float64 for
    float64 features) and (K,) counts."""
    y = labels.long()
    keep = torch.isin(y, cls)
    if ignore_index is not None:
        keep &= y != ignore_index
    pos = torch.searchsorted(cls, y[keep])
    # at least float32 sums: a class mean over ~10^6 half-precision pixel features would lose digits
    dtype = torch.promote_types(feats.dtype, torch.float32)
    sums = feats.new_zeros((cls.numel(), feats.shape[1]), dtype=dtype).index_add(0, pos, feats[keep].to(dtype))
    counts = torch.bincount(pos, minlength=cls.numel())
    return sums / counts.clamp_min(1).unsqueeze(1).to(sums.dtype), counts


def multivit_contrastive_loss(cam_feats: torch.Tensor, cam_labels: torch.Tensor, lidar_feats: torch.Tensor,
                              lidar_labels: torch.Tensor, mode: str = "pull_push", temperature: float = 0.1,
                              classes: Sequence[int] = range(1, 11), ignore_index: int | None = IGNORE) -> torch.Tensor:
    """lukkassen2024 Sec. 4.5: contrastive loss between the camera and LiDAR per-class mean features.

    "We first calculate the average feature for each camera and LiDAR class within each mini-batch.
    LiDAR and camera features from matching classes are treated as positive pairs, while features
    from different classes serve as negative pairs" (supervised contrastive loss, Khosla et al. 2020,
    Eq. 2 "L^sup_out"), on the decoder features (Fig. 6). With c_k, l_k the L2-normalised batch means
    of class k of the camera and LiDAR features, over the P classes of ``classes`` present in *both*
    modalities, and the 2P anchors a in {c_1..c_P, l_1..l_P}:

    * ``"pull_push"``: each anchor's one positive is the other modality's mean of its class and
      the denominator runs over every other anchor (both modalities, all classes, not itself):

          L = 1 / 2P  sum_i  -log( exp(a_i . a_p(i) / tau) / sum_{j != i} exp(a_i . a_j / tau) )

      (SupCon with one positive per anchor, i.e. NT-Xent over class means; P = 1 gives 0).
    * ``"pull"``: positives only. Without negatives SupCon's ratio is undefined (its denominator
      would hold only the positive, so the loss would be identically 0); our choice is the mean
      cosine distance of the positive pairs, L = 1 / P sum_k (1 - c_k . l_k) (the paper does not
      give its form).

    Args:
        cam_feats: (Nc, C) float camera features (e.g. decoder pixel features, flattened).
        cam_labels: (Nc,) int64 class of each camera feature (indices of
            :data:`~bevlib.classes.MULTIVIT_CAMERA`: 0 background, 1..10 objects, 255 ignore).
        lidar_feats: (Nl, C) float LiDAR features (e.g. the decoder features of each point's pixel).
        lidar_labels: (Nl,) int64 class of each LiDAR feature (indices of
            :data:`~bevlib.classes.NUSCENES_LIDARSEG_16`; objects 1..10 match the camera's).
        mode: ``"pull"`` or ``"pull_push"``.
        temperature: tau > 0 (SupCon's; 0.1 in Khosla et al.; the paper does not give its value).
        classes: class indices that take part (default 1..10, the 10 object classes that both
            label sets share; background classes have no counterpart in the camera labels).
        ignore_index: label value skipped in both modalities (None: none); must not be in ``classes``.
    Returns: scalar tensor, float32 (float64 for float64 features); a zero that keeps the graph
        (``sum * 0``) when no class of ``classes`` is present in both modalities.
    Raises: ValueError naming the bad argument (shapes, feature widths, mode, temperature, empty
        ``classes`` or ``ignore_index`` among them).
    """
    if cam_feats.dim() != 2 or lidar_feats.dim() != 2 or cam_feats.shape[1] != lidar_feats.shape[1]:
        raise ValueError(f"cam_feats {tuple(cam_feats.shape)} and lidar_feats {tuple(lidar_feats.shape)} must be "
                         "(N, C) with the same C")
    if cam_labels.shape != cam_feats.shape[:1]:
        raise ValueError(f"cam_labels {tuple(cam_labels.shape)} must be ({cam_feats.shape[0]},)")
    if lidar_labels.shape != lidar_feats.shape[:1]:
        raise ValueError(f"lidar_labels {tuple(lidar_labels.shape)} must be ({lidar_feats.shape[0]},)")
    if mode not in ("pull", "pull_push"):
        raise ValueError(f"mode must be 'pull' or 'pull_push', got {mode!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    cls = torch.as_tensor(sorted({int(c) for c in classes}), dtype=torch.long, device=cam_feats.device)
    if cls.numel() == 0:
        raise ValueError("classes is empty")
    if ignore_index is not None and bool((cls == ignore_index).any()):
        raise ValueError(f"ignore_index {ignore_index} is one of the classes {cls.tolist()}")
    mc, nc = _class_means(cam_feats, cam_labels.to(cls.device), cls, ignore_index)
    ml, nl = _class_means(lidar_feats, lidar_labels.to(cls.device), cls, ignore_index)
    shared = (nc > 0) & (nl > 0)
    P = int(shared.sum())
    if P == 0:
        return (cam_feats.sum() + lidar_feats.sum()).to(mc.dtype) * 0.0
    c, l = F.normalize(mc[shared], dim=1), F.normalize(ml[shared], dim=1)
    if mode == "pull":
        return (1.0 - (c * l).sum(1)).mean()
    z = torch.cat([c, l])                                           # (2P, C) anchors
    sim = z @ z.t() / temperature
    eye = torch.eye(2 * P, dtype=torch.bool, device=z.device)
    denom = torch.logsumexp(sim.masked_fill(eye, float("-inf")), dim=1)
    positive = torch.arange(2 * P, device=z.device).roll(P)         # anchor i <-> other modality, same class
    return (denom - sim[torch.arange(2 * P, device=z.device), positive]).mean()
