"""Downstream BEV map segmentation of the combined-datasets paper (Appendix C.2; issue 13 item 6).

The pretrained camera and LiDAR branches are fused as in BEVFusion (Liu et al. 2023, Sec. 3.3 and
Sec. 5 "BEV map segmentation"): both BEV maps concatenated, a fusion convolution (BEVFusion's
``ConvFuser``), a small BEV backbone, the features bilinearly resampled to 200 x 200 and a
convolutional head with one logit per map class (``BEVSegmentationHead``). Classes overlap, so the
target is multi-label (:func:`bevlib.data.map_masks.map_masks`) and the loss is per-class sigmoid
BCE or focal loss; the metric is per-class IoU and its mean.

Fine-tuning uses a deterministic 20 % of the labelled samples (:func:`finetune_split`). The prompt
strategies of Table 5 ("none", the sample's own dataset "own", a fixed wrong dataset index) are a
parameter passed to :func:`bevlib.models.promptnorm.set_prompt_mode`.

The self-supervised baseline BEVDistill (Chen et al., "BEVDistill", ICLR 2023, Sec. 3.2 "dense
feature distillation") is adapted as the paper describes: dense feature alignment of the camera
BEV to the LiDAR BEV without labels (:func:`bevdistill_loss`).

BEV maps of both branches share one :class:`~bevlib.bev.BEVGrid` extent and its orientation
(row 0 = front edge, column 0 = left edge); the head's 200 x 200 output covers the same extent.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...data.map_masks import MAP_SEG_CLASSES
from ...models.promptnorm import PromptMode, dataset_prompt, set_prompt_mode
from ...train.task import Task

#: BEVFusion's evaluation thresholds on the sigmoid probability (per class the best is reported).
BEVFUSION_THRESHOLDS = (0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65)


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class BEVSegHead(nn.Module):
    """Fusion + BEV backbone + map-segmentation head (BEVFusion ``ConvFuser``, a SECOND-like BEV
    backbone reduced to ``n_blocks`` 3x3 conv blocks, ``BEVSegmentationHead``).

    Args:
        cam_channels, lidar_channels: channels of the two BEV inputs.
        fused_channels: channels after the fusion conv (BEVFusion: 256).
        n_blocks: 3x3 conv-BN-ReLU blocks of the BEV backbone after the fusion conv.
        n_classes: logits per cell (default: ``len(MAP_SEG_CLASSES)``).
        out_hw: output resolution (paper Appendix C.2: 200 x 200, by bilinear interpolation).
        crop: the share of the input grid's (centred) extent the output covers, e.g. 50 / 51.2 to
            resample BEVFusion's +-51.2 m input onto its +-50 m map grid (BEVFusion's
            ``BEVGridTransform``); 1 (default): the whole input.
    Forward: cam (B, Cc, h, w) and lidar (B, Cl, h, w) float on the same BEV grid ->
    (B, n_classes, *out_hw) logits, same dtype.
    Raises: ValueError for non-positive sizes, a crop outside (0, 1], or inputs whose batch / spatial
    shape differ.
    """

    def __init__(self, cam_channels: int, lidar_channels: int, fused_channels: int = 256, n_blocks: int = 2,
                 n_classes: int = len(MAP_SEG_CLASSES), out_hw: tuple[int, int] = (200, 200), crop: float = 1.0):
        super().__init__()
        if not 0 < crop <= 1:
            raise ValueError(f"BEVSegHead crop must be in (0, 1], got {crop}")
        self.crop = float(crop)
        for name, v in dict(cam_channels=cam_channels, lidar_channels=lidar_channels, fused_channels=fused_channels,
                            n_classes=n_classes, out_h=out_hw[0], out_w=out_hw[1]).items():
            if int(v) != v or v < 1:
                raise ValueError(f"BEVSegHead {name} must be a positive integer, got {v}")
        if n_blocks < 0:
            raise ValueError(f"BEVSegHead n_blocks must be >= 0, got {n_blocks}")
        self.cam_channels, self.lidar_channels, self.out_hw = cam_channels, lidar_channels, tuple(out_hw)
        self.fuser = _conv_bn_relu(cam_channels + lidar_channels, fused_channels)
        self.backbone = nn.Sequential(*[_conv_bn_relu(fused_channels, fused_channels) for _ in range(n_blocks)])
        self.classifier = nn.Sequential(_conv_bn_relu(fused_channels, fused_channels),
                                        nn.Conv2d(fused_channels, n_classes, 1))

    def forward(self, cam: torch.Tensor, lidar: torch.Tensor) -> torch.Tensor:
        if cam.dim() != 4 or lidar.dim() != 4:
            raise ValueError(f"BEVSegHead wants (B, C, H, W) maps, got cam {tuple(cam.shape)}, lidar {tuple(lidar.shape)}")
        if cam.shape[0] != lidar.shape[0] or cam.shape[2:] != lidar.shape[2:]:
            raise ValueError(f"camera BEV {tuple(cam.shape)} and LiDAR BEV {tuple(lidar.shape)} differ in batch or grid")
        if cam.shape[1] != self.cam_channels or lidar.shape[1] != self.lidar_channels:
            raise ValueError(f"BEVSegHead expects {self.cam_channels} camera and {self.lidar_channels} LiDAR channels, "
                             f"got {cam.shape[1]} and {lidar.shape[1]}")
        return self.classifier(self.resample(self.backbone(self.fuser(torch.cat([cam, lidar], 1)))))

    def resample(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) over the input extent -> (B, C, *out_hw) over ``crop`` x that extent, bilinear."""
        if self.crop == 1.0:
            return F.interpolate(x, size=self.out_hw, mode="bilinear", align_corners=False)
        # output cell centres at crop x the input's normalised coordinates (align_corners=False)
        theta = x.new_tensor([[self.crop, 0.0, 0.0], [0.0, self.crop, 0.0]]).expand(x.shape[0], 2, 3)
        grid = F.affine_grid(theta, [x.shape[0], x.shape[1], *self.out_hw], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class BEVSegModel(nn.Module):
    """Fused camera + LiDAR BEV map segmentation.

    Args:
        camera_encoder, lidar_encoder: callables (usually ``nn.Module``) mapping a batch dict to a
            BEV map (B, C, h, w); any pretrained branch plugs in here.
        head: a :class:`BEVSegHead` whose channel counts match the encoders.
        prompt_mode: ``"own"``, ``"none"`` or a dataset index, set on every PromptNorm in the
            encoders (:func:`~bevlib.models.promptnorm.set_prompt_mode`; a no-op without PromptNorms).
    Forward: batch dict (``batch["dataset_index"]`` (B,) int64, when present, selects each sample's
    prompt) -> (B, n_classes, H_out, W_out) logits.
    Raises: ValueError from set_prompt_mode for an invalid mode, or from the head for mismatched maps.
    """

    def __init__(self, camera_encoder: Callable, lidar_encoder: Callable, head: BEVSegHead,
                 prompt_mode: PromptMode = "own"):
        super().__init__()
        self.camera_encoder, self.lidar_encoder, self.head = camera_encoder, lidar_encoder, head
        set_prompt_mode(self, prompt_mode)

    def forward(self, batch: dict) -> torch.Tensor:
        idx = batch.get("dataset_index")
        if idx is None:
            return self.head(self.camera_encoder(batch), self.lidar_encoder(batch))
        with dataset_prompt(self, idx):
            return self.head(self.camera_encoder(batch), self.lidar_encoder(batch))


def sigmoid_focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, alpha: float = 0.25,
                       mask: torch.Tensor | None = None) -> torch.Tensor:
    """Binary focal loss per element, mean over (unmasked) elements (Lin et al., "Focal Loss for
    Dense Object Detection", ICCV 2017, Eq. 5 with the alpha-balancing of Sec. 3.1; the same
    formula as ``torchvision.ops.sigmoid_focal_loss``, which is not installed here).

    ``FL = -alpha_t (1 - p_t)^gamma log(p_t)``, p_t = sigmoid(logit) for positives, 1 - it for
    negatives; ``alpha < 0`` disables the balancing. logits, target (...) float (target in {0, 1});
    mask (...) bool or None. Returns a scalar. Raises ValueError on shape mismatch or gamma < 0.
    """
    if logits.shape != target.shape or (mask is not None and mask.shape != logits.shape):
        raise ValueError(f"focal loss: logits {tuple(logits.shape)}, target {tuple(target.shape)} and mask must match")
    if gamma < 0:
        raise ValueError(f"focal loss gamma must be >= 0, got {gamma}")
    target = target.to(logits.dtype)
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * target + (1 - alpha) * (1 - target))
    return _masked_mean(loss, mask)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return x.mean()
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp_min(1.0)


def multilabel_iou_counts(probs: torch.Tensor, target: torch.Tensor, thresholds: Sequence[float] = (0.5,),
                          mask: torch.Tensor | None = None) -> torch.Tensor:
    """Sufficient statistics of :func:`multilabel_iou`: (T, C, 2) int64 [intersection, union] per
    threshold and class, summed over the batch and the cells. A cell is predicted positive when
    ``prob >= threshold`` (BEVFusion's rule).

    Args:
        probs: (B, C, H, W) float probabilities (sigmoid of the logits).
        target: (B, C, H, W) bool / {0, 1}.
        thresholds: T thresholds in [0, 1].
        mask: (B, H, W) bool cells to count, or None (all).
    Raises: ValueError on shape mismatch or a threshold outside [0, 1].
    """
    if probs.dim() != 4 or probs.shape != target.shape:
        raise ValueError(f"probs {tuple(probs.shape)} and target {tuple(target.shape)} must both be (B, C, H, W)")
    if mask is not None and mask.shape != (probs.shape[0], *probs.shape[2:]):
        raise ValueError(f"mask must be (B, H, W) = {(probs.shape[0], *probs.shape[2:])}, got {tuple(mask.shape)}")
    th = torch.as_tensor(list(thresholds), dtype=probs.dtype, device=probs.device)
    if th.numel() == 0 or bool(((th < 0) | (th > 1)).any()):
        raise ValueError(f"thresholds must be a non-empty sequence in [0, 1], got {list(thresholds)}")
    pred = probs[None] >= th[:, None, None, None, None]               # (T, B, C, H, W)
    tgt = target.bool()[None]
    if mask is not None:
        keep = mask.bool()[None, :, None]
        pred, tgt = pred & keep, tgt & keep
    inter = (pred & tgt).sum((1, 3, 4))
    union = (pred | tgt).sum((1, 3, 4))
    return torch.stack([inter, union], -1).long()


def iou_from_counts(counts: torch.Tensor, classes: Sequence[str] = MAP_SEG_CLASSES) -> dict[str, float]:
    """Per-class IoU in percent at each class's best threshold (BEVFusion; with one threshold,
    that threshold) and their mean ``miou``. counts (T, C, 2) from :func:`multilabel_iou_counts`
    (summed over the set). A class with an empty union everywhere is NaN and left out of the mean.
    Raises ValueError when ``classes`` does not match C."""
    counts = torch.as_tensor(counts)
    if counts.dim() != 3 or counts.shape[-1] != 2 or counts.shape[1] != len(classes):
        raise ValueError(f"counts must be (T, {len(classes)}, 2), got {tuple(counts.shape)}")
    inter, union = counts[..., 0].double(), counts[..., 1].double()
    iou = torch.where(union > 0, inter / union.clamp_min(1), torch.full_like(inter, float("nan")))
    best = torch.where(torch.isnan(iou), torch.full_like(iou, -1.0), iou).max(0).values
    best = torch.where(best < 0, torch.full_like(best, float("nan")), best) * 100.0
    out = {f"{c}_iou": float(v) for c, v in zip(classes, best)}
    valid = best[~torch.isnan(best)]
    out["miou"] = float(valid.mean()) if valid.numel() else float("nan")
    return out


def multilabel_iou(logits: torch.Tensor, target: torch.Tensor, thresholds: Sequence[float] = (0.5,),
                   mask: torch.Tensor | None = None, classes: Sequence[str] = MAP_SEG_CLASSES) -> dict[str, float]:
    """Multi-label BEV map IoU of one batch (BEVFusion's map-segmentation metric).

    Each class is a binary mask: positive where ``sigmoid(logit) >= threshold``. Default: the
    single threshold 0.5; pass :data:`BEVFUSION_THRESHOLDS` for BEVFusion's best-of-thresholds
    per class. Over a whole set, sum :func:`multilabel_iou_counts` and call :func:`iou_from_counts`.

    Args: logits (B, C, H, W) float, target (B, C, H, W) bool, mask (B, H, W) bool or None.
    Returns: {"<class>_iou": percent, ..., "miou": mean over classes with a non-empty union}.
    Raises: ValueError on shape mismatch or bad thresholds.
    """
    return iou_from_counts(multilabel_iou_counts(torch.sigmoid(logits.float()), target, thresholds, mask), classes)


def finetune_split(tokens: Sequence[str], share: float = 0.2, seed: int = 0) -> list[str]:
    """The deterministic fine-tuning subset: ``ceil(share * n)`` of the labelled samples (at least
    one), drawn without replacement with ``numpy.random.default_rng(seed)`` from the tokens in
    sorted order, so the subset depends only on the set of tokens, ``share`` and ``seed``;
    returned in the input order. The paper fine-tunes on 20 % of the labels (Sec. 4.1).

    Raises: ValueError for an empty or duplicated token list or ``share`` outside (0, 1].
    """
    tokens = list(tokens)
    if not tokens:
        raise ValueError("finetune_split: tokens is empty")
    if len(set(tokens)) != len(tokens):
        raise ValueError("finetune_split: tokens contains duplicates")
    if not 0 < share <= 1:
        raise ValueError(f"finetune_split: share must be in (0, 1], got {share}")
    n = max(1, int(np.ceil(share * len(tokens) - 1e-9)))
    ordered = sorted(tokens)
    chosen = {ordered[i] for i in np.random.default_rng(seed).permutation(len(ordered))[:n]}
    return [t for t in tokens if t in chosen]


def bevdistill_loss(cam_bev: torch.Tensor, lidar_bev: torch.Tensor, mask: torch.Tensor | None = None,
                    eps: float = 1e-6) -> torch.Tensor:
    """Dense camera-BEV -> LiDAR-BEV feature alignment without labels (the paper's adaptation of
    BEVDistill, Chen et al. ICLR 2023, Sec. 3.2 "dense feature distillation").

    Variant: each cell's feature vector is L2-normalised over channels on both sides (the two
    branches have unrelated scales), the LiDAR side is detached (teacher), and the loss is the mean
    over (unmasked) cells of the squared distance ``||c/|c| - sg(l/|l|)||^2`` (= 2 - 2 cos). The
    original weights cells by a box-derived foreground mask; without labels ``mask`` is optional
    (e.g. cells with LiDAR points). Channels must already match: project the camera BEV with a
    1x1 conv (BEVDistill's student adapter, :class:`BEVDistillAdapter`).

    Args: cam_bev, lidar_bev (B, C, H, W) float on the same grid; mask (B, H, W) bool or None.
    Returns: scalar; gradients flow into ``cam_bev`` only.
    Raises: ValueError on shape mismatch.
    """
    if cam_bev.dim() != 4 or cam_bev.shape != lidar_bev.shape:
        raise ValueError(f"cam_bev {tuple(cam_bev.shape)} and lidar_bev {tuple(lidar_bev.shape)} must be equal (B, C, H, W)")
    if mask is not None and mask.shape != (cam_bev.shape[0], *cam_bev.shape[2:]):
        raise ValueError(f"mask must be (B, H, W) = {(cam_bev.shape[0], *cam_bev.shape[2:])}, got {tuple(mask.shape)}")
    c = F.normalize(cam_bev, dim=1, eps=eps)
    t = F.normalize(lidar_bev.detach(), dim=1, eps=eps)
    return _masked_mean(((c - t) ** 2).sum(1), mask)


class BEVDistillAdapter(nn.Module):
    """1x1 conv from camera-BEV channels to LiDAR-BEV channels (BEVDistill's student adapter);
    trained with :func:`bevdistill_loss` and discarded before fine-tuning."""

    def __init__(self, cam_channels: int, lidar_channels: int):
        super().__init__()
        self.proj = nn.Conv2d(cam_channels, lidar_channels, 1)

    def forward(self, cam_bev: torch.Tensor) -> torch.Tensor:
        return self.proj(cam_bev)


@dataclass(frozen=True)
class BEVSegConfig:
    """Fine-tuning settings of :class:`BEVSegTask`.

    Attributes:
        loss: ``"bce"`` (per-class sigmoid BCE) or ``"focal"`` (:func:`sigmoid_focal_loss`; BEVFusion's
            map head uses focal loss).
        focal_gamma, focal_alpha: focal-loss parameters (Lin et al.: 2.0, 0.25).
        prompt_mode: ``"none"``, ``"own"`` or a fixed dataset index (Table 5).
        thresholds: evaluation thresholds (default 0.5 only; :data:`BEVFUSION_THRESHOLDS` for BEVFusion's).
        classes: map classes, the target's channel order.
        model: JSON-able description of the model (part of the run hash).
    """

    loss: str = "focal"
    focal_gamma: float = 2.0
    focal_alpha: float = 0.25
    prompt_mode: PromptMode = "own"
    thresholds: tuple = (0.5,)
    classes: tuple = MAP_SEG_CLASSES
    model: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.loss not in ("bce", "focal"):
            raise ValueError(f"BEVSegConfig.loss must be 'bce' or 'focal', got {self.loss!r}")
        if isinstance(self.prompt_mode, bool) or not (self.prompt_mode in ("own", "none") or isinstance(self.prompt_mode, int)):
            raise ValueError(f"BEVSegConfig.prompt_mode must be 'own', 'none' or a dataset index, got {self.prompt_mode!r}")
        if not self.thresholds or any(not 0 <= t <= 1 for t in self.thresholds):
            raise ValueError(f"BEVSegConfig.thresholds must be a non-empty tuple in [0, 1], got {self.thresholds}")


class BEVSegTask(Task):
    """Fine-tune a :class:`BEVSegModel` on multi-label BEV map masks (paper Appendix C.2).

    Batches are dicts with the encoders' inputs, ``map_masks`` (B, C, H_out, W_out) bool and
    optionally ``map_valid`` (B, H_out, W_out) bool (cells to train / evaluate on) and
    ``dataset_index`` (B,) int64. Losses: ``{"bce": ...}`` or ``{"focal": ...}``; metrics:
    ``<class>_iou`` and ``miou`` in percent.

    Args:
        build_model: returns a fresh :class:`BEVSegModel` (e.g. pretrained branches loaded, or
            random init for the scratch baseline); the task sets ``cfg.prompt_mode`` on it.
        train_set, val_set: datasets (use :func:`finetune_split` for the 20 % training subset).
        cfg: :class:`BEVSegConfig`.
    """

    headline_metrics = ("miou",)

    def __init__(self, build_model: Callable[[], nn.Module], train_set, val_set=None, cfg: BEVSegConfig = BEVSegConfig()):
        self._build, self._train, self._val, self.cfg = build_model, train_set, val_set, cfg

    def config(self) -> dict:
        return {"task": "combined_bevseg", **asdict(self.cfg)}

    def build_model(self) -> nn.Module:
        model = self._build()
        set_prompt_mode(model, self.cfg.prompt_mode)
        return model

    def train_dataset(self):
        return self._train

    def val_dataset(self):
        return self._val

    def _target(self, batch: dict, logits: torch.Tensor) -> torch.Tensor:
        target = batch["map_masks"]
        if target.shape != logits.shape:
            raise ValueError(f"batch['map_masks'] {tuple(target.shape)} does not match the logits {tuple(logits.shape)}")
        return target

    def loss(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        logits = model(batch)
        target = self._target(batch, logits).to(logits.dtype)
        valid = batch.get("map_valid")
        mask = None if valid is None else valid[:, None].expand_as(logits)
        if self.cfg.loss == "bce":
            bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
            return {"bce": _masked_mean(bce, mask)}
        return {"focal": sigmoid_focal_loss(logits, target, self.cfg.focal_gamma, self.cfg.focal_alpha, mask)}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches, reduce: Callable) -> dict[str, float]:
        counts = None
        for batch in batches:
            logits = model(batch)
            c = multilabel_iou_counts(torch.sigmoid(logits.float()), self._target(batch, logits), self.cfg.thresholds,
                                      batch.get("map_valid"))
            counts = c if counts is None else counts + c
        if counts is None:
            counts = torch.zeros(len(self.cfg.thresholds), len(self.cfg.classes), 2, dtype=torch.long)
        return iou_from_counts(reduce(counts), self.cfg.classes)


__all__ = ["BEVFUSION_THRESHOLDS", "BEVSegHead", "BEVSegModel", "BEVSegConfig", "BEVSegTask", "BEVDistillAdapter",
           "bevdistill_loss", "finetune_split", "iou_from_counts", "multilabel_iou", "multilabel_iou_counts",
           "sigmoid_focal_loss"]
