"""BEV segmentation metrics: per-class IoU and mIoU, accumulated over a whole split and ranged.

IoU_c = TP_c / (TP_c + FP_c + FN_c), with the counts summed over every cell of every sample of
the split before dividing (not a mean of per-sample IoUs, which would over-weight empty samples).
mIoU averages the IoUs of the three map classes (background excluded), busch2026 Sec. IV-B; the
ranged variants (mIoU20/40/60) count only cells within 20/40/60 m of longitudinal range.
"""
from __future__ import annotations

import numpy as np
import torch

from .bev import BEVGrid
from .classes import BEV_CLASSES, IGNORE, NUM_BEV


class ConfusionMatrix:
    """Accumulates a (K, K) confusion matrix (rows: ground truth, columns: prediction)."""

    def __init__(self, num_classes: int = NUM_BEV):
        self.K = num_classes
        self.counts = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Add a batch.

        Args:
            pred, gt: (B, H, W) integer class maps in [0, K) (gt may hold IGNORE).
            mask: optional (H, W) or (B, H, W) bool: cells to count.
        """
        if pred.shape != gt.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and gt {tuple(gt.shape)} differ")
        keep = gt != IGNORE
        if mask is not None:
            keep = keep & torch.as_tensor(mask, device=gt.device).expand_as(gt)
        idx = gt[keep].long() * self.K + pred[keep].long()
        self.counts += torch.bincount(idx.cpu(), minlength=self.K * self.K).view(self.K, self.K).numpy()

    def iou(self) -> np.ndarray:
        """(K,) float64 IoU per class; NaN for a class absent from both prediction and truth."""
        tp = np.diag(self.counts).astype(np.float64)
        denom = self.counts.sum(0) + self.counts.sum(1) - tp
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(denom > 0, tp / denom, np.nan)


class RangedBEVMetrics:
    """Per-class IoU and mIoU over several centred longitudinal ranges (busch2026 Table I)."""

    def __init__(self, grid: BEVGrid, ranges_m=(20.0, 40.0, 60.0)):
        self.grid = grid
        self.ranges = tuple(float(r) for r in ranges_m)
        self.masks = {r: torch.from_numpy(grid.range_mask(r)) for r in self.ranges}
        self.cms = {r: ConfusionMatrix(NUM_BEV) for r in self.ranges}

    def update(self, pred: torch.Tensor, gt: torch.Tensor) -> None:
        """pred, gt: (B, H, W) class maps on ``grid`` (H, W must match the grid)."""
        if pred.shape[-2:] != (self.grid.H, self.grid.W):
            raise ValueError(f"maps {tuple(pred.shape)} do not match the grid ({self.grid.H}, {self.grid.W})")
        for r in self.ranges:
            self.cms[r].update(pred, gt, self.masks[r])

    def compute(self) -> dict:
        """Dict of percentages: ``<class>_iou`` per map class on the full range, and ``miou<r>``.

        A class absent from both prediction and truth in a range counts as IoU 0 in the mean
        (it cannot be rewarded for never being present) and is reported as NaN per class.
        """
        out = {}
        full = max(self.ranges)
        for r in self.ranges:
            iou = self.cms[r].iou()[1:]
            out[f"miou{int(round(r))}"] = float(np.nan_to_num(iou, nan=0.0).mean() * 100)
            if r == full:
                for name, v in zip(BEV_CLASSES, iou):
                    out[f"{name}_iou"] = float(v * 100)
        return out
