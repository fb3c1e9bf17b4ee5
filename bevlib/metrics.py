"""Segmentation and feature metrics for any label set: confusion-matrix IoU / mIoU, ranged BEV
mIoU (busch2026 Table I) and per-class cosine similarity of mean features (MultiViT Table 5).

IoU_c = TP_c / (TP_c + FP_c + FN_c), with the counts summed over every element (pixel, point or
BEV cell) of every sample of the split before dividing (not a mean of per-sample IoUs, which would
over-weight empty samples). Which classes the mean averages and which label value is skipped come
from the task's :class:`~bevlib.classes.LabelSet`.

Every accumulator here is mergeable: ``a += b`` / ``a.merge(b)`` adds another one's counts, and
its state is a plain array that a distributed evaluation sums across processes, e.g. with
``torch.distributed`` (gloo, CPU)::

    t = torch.from_numpy(cm.counts)      # shares memory with cm.counts
    dist.all_reduce(t)                   # cm.counts now holds the sum over ranks

(NCCL: ``t = torch.as_tensor(cm.state(), device="cuda"); dist.all_reduce(t);
cm.load_state(t.cpu().numpy())``). :class:`RangedBEVMetrics` exposes ``counts()`` /
``add_counts()`` / ``load_counts()`` for the same purpose.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .bev import BEVGrid
from .classes import BEV_MAP, LabelSet, as_label_set

_ABSENT = ("zero", "skip")


def _as_tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def _kept(labels: torch.Tensor, ignore_index: int, mask, what: str) -> torch.Tensor:
    """Bool tensor of the samples to count: not ``ignore_index`` and, when given, inside ``mask``
    (broadcast to ``labels``). Raises ValueError when the mask does not broadcast."""
    keep = labels != ignore_index
    if mask is None:
        return keep
    mask = _as_tensor(mask).to(device=labels.device, dtype=torch.bool)
    try:
        return keep & mask.expand_as(labels)
    except RuntimeError:
        raise ValueError(f"mask {tuple(mask.shape)} does not broadcast to {what} {tuple(labels.shape)}") from None


class ConfusionMatrix:
    """Accumulated (K, K) confusion matrix of a label set (rows: ground truth, columns: prediction)
    with per-class IoU and mIoU; works on pixels, points or BEV cells alike.

    Elements whose ground truth is the label set's ``ignore_index`` are skipped. When the ignore
    index is itself a class (nuScenes-lidarseg's 0), a *prediction* of it on a labelled element
    counts as a miss of the true class; nuscenes-devkit's ``ConfusionMatrix`` instead zeroes that
    column, but its evaluation rejects such predictions (it requires 1..16), so both agree on
    every input the devkit accepts.

    Args:
        labels: the task's :class:`~bevlib.classes.LabelSet` (default :data:`~bevlib.classes.BEV_MAP`),
            or a class count K (ignore index 255, mean over all K classes) for backward compatibility.

    Attributes:
        counts: (K, K) numpy int64, ``counts[g, p]`` = elements with truth g predicted as p. A plain
            array: sum it across processes (see the module docstring) or assign to it.
        labels: the label set; ``K`` its number of classes.
    """

    def __init__(self, labels: LabelSet | int = BEV_MAP):
        self.labels = as_label_set(labels)
        self.K = self.labels.num_classes
        self.counts = np.zeros((self.K, self.K), dtype=np.int64)

    def update(self, pred, gt, mask=None) -> None:
        """Add predictions and ground truth of any shape (…): (B, H, W) pixels or BEV cells,
        (N,) points, (B, N, h, w) views, ...

        Args:
            pred: (…) integer class indices in [0, K), torch tensor or numpy array.
            gt: (…) same shape, integers in [0, K) or the label set's ignore index.
            mask: optional bool (…) or any shape broadcastable to ``gt`` (e.g. (H, W) for
                (B, H, W)): only True elements count.
        Raises:
            ValueError: shapes differ, the mask does not broadcast, or a value of ``pred`` (any
                labelled element) or ``gt`` (other than the ignore index) lies outside [0, K).
        """
        pred, gt = _as_tensor(pred), _as_tensor(gt)
        if pred.shape != gt.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and gt {tuple(gt.shape)} differ")
        keep = _kept(gt, self.labels.ignore_index, mask, "gt")
        g, p = gt[keep].long(), pred[keep].long()
        if g.numel():
            for what, v in (("gt", g), ("pred", p)):
                lo, hi = int(v.min()), int(v.max())
                if lo < 0 or hi >= self.K:
                    raise ValueError(f"{what} holds class {lo if lo < 0 else hi} outside [0, {self.K}) of label set "
                                     f"{self.labels.name!r} (ignore index {self.labels.ignore_index})")
        idx = g * self.K + p
        self.counts += torch.bincount(idx.cpu(), minlength=self.K * self.K).view(self.K, self.K).numpy()

    # -- merging and state ----------------------------------------------------------------
    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        """Add another matrix's counts (same label set) in place; returns self.

        Raises: ValueError if the label sets differ.
        """
        if other.labels != self.labels:
            raise ValueError(f"cannot merge confusion matrices of label sets {self.labels.name!r} and {other.labels.name!r}")
        self.counts += other.counts
        return self

    def __iadd__(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        return self.merge(other)

    def __add__(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        out = ConfusionMatrix(self.labels)
        out.counts = self.counts.copy()
        return out.merge(other)

    def state(self) -> np.ndarray:
        """A copy of :attr:`counts`, (K, K) int64: what a distributed evaluation sums."""
        return self.counts.copy()

    def load_state(self, counts) -> None:
        """Replace the counts by ``counts`` ((K, K) integer array or tensor, e.g. summed over ranks).

        Raises: ValueError on a wrong shape or negative counts.
        """
        c = np.asarray(counts.cpu() if isinstance(counts, torch.Tensor) else counts)
        if c.shape != (self.K, self.K) or (c < 0).any():
            raise ValueError(f"counts must be a ({self.K}, {self.K}) non-negative array, got shape {c.shape}")
        self.counts = c.astype(np.int64, copy=True)

    def reset(self) -> None:
        """Zero the counts."""
        self.counts[...] = 0

    # -- results ----------------------------------------------------------------------------
    def iou(self) -> np.ndarray:
        """(K,) float64 IoU per class (fraction); NaN for a class absent from both prediction and truth."""
        tp = np.diag(self.counts).astype(np.float64)
        denom = self.counts.sum(0) + self.counts.sum(1) - tp
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(denom > 0, tp / denom, np.nan)

    def miou(self, absent: str = "skip") -> float:
        """Mean IoU (fraction) over the label set's ``mean_classes``.

        Args:
            absent: a mean class absent from both prediction and truth (IoU NaN) is
                ``"skip"``-ped (nanmean, as nuscenes-devkit's lidarseg evaluation) or counted as
                ``"zero"`` (busch2026 Table I: a class cannot be rewarded for never being present).
        Returns: float; NaN when every mean class is absent and ``absent="skip"``.
        Raises: ValueError for another ``absent``.
        """
        if absent not in _ABSENT:
            raise ValueError(f"absent must be one of {_ABSENT}, got {absent!r}")
        iou = self.iou()[list(self.labels.mean_classes)]
        if absent == "zero":
            return float(np.nan_to_num(iou, nan=0.0).mean())
        present = iou[~np.isnan(iou)]
        return float(present.mean()) if present.size else float("nan")

    def compute(self, absent: str = "skip", percent: bool = True) -> dict:
        """``{"<class>_iou": ..., "miou": ...}`` for the mean classes, in percent (or fractions).
        Per-class values are NaN for absent classes; ``absent`` as in :meth:`miou`."""
        s = 100.0 if percent else 1.0
        iou = self.iou()
        out = {f"{self.labels.names[c]}_iou": float(iou[c] * s) for c in self.labels.mean_classes}
        out["miou"] = float(self.miou(absent) * s)
        return out


class RangedBEVMetrics:
    """Per-class IoU and mIoU over several centred longitudinal ranges (busch2026 Table I).

    One :class:`ConfusionMatrix` per range, each counting only the cells within ``|x - centre| <=
    range / 2`` (:meth:`BEVGrid.range_mask`); the mean is over the label set's mean classes with
    absent classes counted as 0 (busch2026 Sec. IV-B).

    Distributed evaluation: :meth:`counts` is a (R, K, K) int64 array (ranges in ``self.ranges``
    order); sum it across processes (e.g. ``dist.all_reduce`` of ``torch.from_numpy(m.counts())``)
    and :meth:`load_counts` the sum, or :meth:`add_counts` / :meth:`merge` another process's.
    """

    def __init__(self, grid: BEVGrid, ranges_m=(20.0, 40.0, 60.0), labels: LabelSet = BEV_MAP):
        self.grid = grid
        self.labels = labels
        self.ranges = tuple(float(r) for r in ranges_m)
        self.masks = {r: torch.from_numpy(grid.range_mask(r)) for r in self.ranges}
        self.cms = {r: ConfusionMatrix(labels) for r in self.ranges}

    def update(self, pred: torch.Tensor, gt: torch.Tensor) -> None:
        """pred, gt: (B, H, W) integer class maps on ``grid`` (H, W must match the grid); gt may
        hold the ignore index.

        Raises: ValueError on a grid mismatch or classes outside the label set.
        """
        if pred.shape[-2:] != (self.grid.H, self.grid.W):
            raise ValueError(f"maps {tuple(pred.shape)} do not match the grid ({self.grid.H}, {self.grid.W})")
        for r in self.ranges:
            self.cms[r].update(pred, gt, self.masks[r])

    def counts(self) -> np.ndarray:
        """(R, K, K) int64 copy of the confusion counts, one matrix per range in ``self.ranges`` order."""
        return np.stack([self.cms[r].counts for r in self.ranges]).copy()

    def add_counts(self, counts) -> None:
        """Add (R, K, K) counts from :meth:`counts` of another process (same grid, ranges, labels)."""
        c = np.asarray(counts.cpu() if isinstance(counts, torch.Tensor) else counts)
        self._check_counts(c)
        for r, cr in zip(self.ranges, c):
            self.cms[r].counts += cr.astype(np.int64)

    def load_counts(self, counts) -> None:
        """Replace the counts by (R, K, K) ``counts`` (e.g. summed over processes)."""
        c = np.asarray(counts.cpu() if isinstance(counts, torch.Tensor) else counts)
        self._check_counts(c)
        for r, cr in zip(self.ranges, c):
            self.cms[r].load_state(cr)

    def _check_counts(self, c: np.ndarray) -> None:
        K = self.labels.num_classes
        if c.shape != (len(self.ranges), K, K) or (c < 0).any():
            raise ValueError(f"counts must be ({len(self.ranges)}, {K}, {K}) non-negative, got shape {c.shape}")

    def merge(self, other: "RangedBEVMetrics") -> "RangedBEVMetrics":
        """Add another accumulator's counts in place; returns self.

        Raises: ValueError if grid, ranges or label set differ.
        """
        if (other.grid, other.ranges, other.labels) != (self.grid, self.ranges, self.labels):
            raise ValueError("cannot merge RangedBEVMetrics over different grids, ranges or label sets")
        self.add_counts(other.counts())
        return self

    def __iadd__(self, other: "RangedBEVMetrics") -> "RangedBEVMetrics":
        return self.merge(other)

    def compute(self) -> dict:
        """Dict of percentages: ``<class>_iou`` per mean class on the full range, and ``miou<r>``.

        A class absent from both prediction and truth in a range counts as IoU 0 in the mean
        (it cannot be rewarded for never being present) and is reported as NaN per class.
        """
        out = {}
        full = max(self.ranges)
        mean = list(self.labels.mean_classes)
        for r in self.ranges:
            out[f"miou{int(round(r))}"] = float(self.cms[r].miou(absent="zero") * 100)
            if r == full:
                iou = self.cms[r].iou()[mean]
                for name, v in zip(self.labels.mean_names, iou):
                    out[f"{name}_iou"] = float(v * 100)
        return out


class ClassFeatureMeans:
    """Running per-class sums and counts of D-dimensional features (one modality).

    Attributes:
        sums: (K, D) float64 CPU tensor, sum of the features of each class.
        counts: (K,) int64 CPU tensor, number of features added per class.
    Both are plain tensors: sum them across processes (``dist.all_reduce``) to merge.
    """

    def __init__(self, labels: LabelSet | int, dim: int):
        self.labels = as_label_set(labels)
        self.K = self.labels.num_classes
        self.dim = int(dim)
        self.sums = torch.zeros(self.K, self.dim, dtype=torch.float64)
        self.counts = torch.zeros(self.K, dtype=torch.int64)

    def update(self, features, labels, mask=None, channel_dim: int = -1) -> None:
        """Add features with their class labels.

        Args:
            features: float (…, D) (or D at ``channel_dim``, e.g. ``channel_dim=1`` for
                (B, D, H, W) pixel features), torch or numpy, any device.
            labels: integer (…) class indices in [0, K) or the ignore index (skipped).
            mask: optional bool (…) (broadcastable): only True elements count, e.g. correctly
                predicted ones, ``pred == labels``, as MultiViT Table 5 does.
            channel_dim: the feature axis of ``features``.
        Raises: ValueError on shape mismatch or labels outside [0, K).
        """
        f = _as_tensor(features).detach()   # a metric: never keep the model's graph alive
        y = _as_tensor(labels).to(f.device)
        if f.dim() != y.dim() + 1:
            raise ValueError(f"features {tuple(f.shape)} need one more axis than labels {tuple(y.shape)}")
        f = f.movedim(channel_dim, -1)
        if f.shape[:-1] != y.shape or f.shape[-1] != self.dim:
            raise ValueError(f"features {tuple(f.shape)} (channels last) do not match labels {tuple(y.shape)} "
                             f"and dim {self.dim}")
        keep = _kept(y, self.labels.ignore_index, mask, "labels")
        y, f = y[keep].long(), f[keep]
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.K):
            raise ValueError(f"labels outside [0, {self.K}) of label set {self.labels.name!r}")
        # float64 on the features' device: sums of many float32 features lose digits otherwise.
        sums = torch.zeros(self.K, self.dim, dtype=torch.float64, device=f.device).index_add_(0, y, f.double())
        self.sums += sums.cpu()
        self.counts += torch.bincount(y, minlength=self.K).cpu()

    def means(self) -> torch.Tensor:
        """(K, D) float64 mean feature per class; NaN rows for classes never seen."""
        c = self.counts.to(torch.float64)[:, None]
        return torch.where(c > 0, self.sums / c.clamp_min(1), torch.full_like(self.sums, float("nan")))

    def merge(self, other: "ClassFeatureMeans") -> "ClassFeatureMeans":
        """Add another accumulator's sums and counts in place; returns self.

        Raises: ValueError if label set or dim differ."""
        if other.labels != self.labels or other.dim != self.dim:
            raise ValueError("cannot merge ClassFeatureMeans of different label sets or feature dims")
        self.sums += other.sums
        self.counts += other.counts
        return self

    def __iadd__(self, other):
        return self.merge(other)

    def state(self) -> dict:
        """``{"sums": (K, D) float64, "counts": (K,) int64}`` copies (sum both across processes)."""
        return {"sums": self.sums.clone(), "counts": self.counts.clone()}

    def load_state(self, state: dict) -> None:
        """Replace sums and counts by a :meth:`state` (e.g. summed over processes).

        Raises: ValueError on wrong shapes."""
        s = torch.as_tensor(state["sums"], dtype=torch.float64).cpu()
        c = torch.as_tensor(state["counts"], dtype=torch.int64).cpu()
        if s.shape != (self.K, self.dim) or c.shape != (self.K,):
            raise ValueError(f"state needs sums ({self.K}, {self.dim}) and counts ({self.K},), "
                             f"got {tuple(s.shape)} and {tuple(c.shape)}")
        self.sums, self.counts = s.clone(), c.clone()


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of rows, (..., D) x (..., D) -> (...); NaN where either is NaN or zero."""
    na, nb = a.norm(dim=-1), b.norm(dim=-1)
    den = na * nb
    return torch.where(den > 0, (a * b).sum(-1) / den.clamp_min(torch.finfo(den.dtype).tiny),
                       torch.full_like(den, float("nan")))


class ClassMeanCosine:
    """Per-class cosine similarity between the mean features of two modalities (MultiViT Table 5).

    lukkassen2024 (MultiViT) Sec. 4.5 / Table 5: "the average feature for each class is calculated
    using features from correctly predicted points and pixels" at the shared ViT encoder output;
    the table reports, per class, cos(mean camera feature, mean LiDAR feature), "-" for classes
    without features, and their mean over the classes present. Accumulate each modality with
    :meth:`update` (pass ``mask=pred == labels`` for "correctly predicted"); both modalities' labels
    must be indices of the same label set (map the camera's box-derived classes into it first).

    Args:
        labels: the shared :class:`~bevlib.classes.LabelSet` (or class count).
        dim: feature dimension D.
        modalities: names of the two modalities (default ``("camera", "lidar")``).
    Attributes:
        feats: ``{modality: ClassFeatureMeans}``, mergeable / all-reducible per modality.
    """

    def __init__(self, labels: LabelSet | int, dim: int, modalities: Sequence[str] = ("camera", "lidar")):
        if len(modalities) != 2 or modalities[0] == modalities[1]:
            raise ValueError(f"need two distinct modality names, got {modalities!r}")
        self.labels = as_label_set(labels)
        self.modalities = tuple(modalities)
        self.feats = {m: ClassFeatureMeans(self.labels, dim) for m in self.modalities}

    def update(self, modality: str, features, labels, mask=None, channel_dim: int = -1) -> None:
        """Add one modality's features: see :meth:`ClassFeatureMeans.update`.

        Raises: KeyError for an unknown modality; ValueError as ClassFeatureMeans.update."""
        if modality not in self.feats:
            raise KeyError(f"unknown modality {modality!r}; known: {', '.join(self.modalities)}")
        self.feats[modality].update(features, labels, mask, channel_dim)

    def per_class(self) -> np.ndarray:
        """(K,) float64 cos(mean_a[c], mean_b[c]); NaN where a modality has no feature of class c."""
        a, b = (self.feats[m].means() for m in self.modalities)
        return _cosine(a, b).numpy()

    def matrix(self) -> np.ndarray:
        """(K, K) float64, entry [i, j] = cos(mean of modality a for class i, mean of modality b for
        class j); NaN rows / columns for classes a modality never saw."""
        a, b = (self.feats[m].means() for m in self.modalities)
        return _cosine(a[:, None, :], b[None, :, :]).numpy()

    def mean(self) -> float:
        """Mean of :meth:`per_class` over the label set's mean classes that both modalities saw
        (Table 5's "Mean" row skips the "-" classes); NaN if none."""
        v = self.per_class()[list(self.labels.mean_classes)]
        v = v[~np.isnan(v)]
        return float(v.mean()) if v.size else float("nan")

    def compute(self) -> dict:
        """``{"<class>_cos": ..., "mean_cos": ...}`` over the mean classes (NaN for absent classes)."""
        v = self.per_class()
        out = {f"{self.labels.names[c]}_cos": float(v[c]) for c in self.labels.mean_classes}
        out["mean_cos"] = self.mean()
        return out

    def merge(self, other: "ClassMeanCosine") -> "ClassMeanCosine":
        """Add another accumulator's per-modality sums and counts in place; returns self.

        Raises: ValueError if modalities, label set or dim differ."""
        if other.modalities != self.modalities:
            raise ValueError(f"cannot merge modalities {other.modalities} into {self.modalities}")
        for m in self.modalities:
            self.feats[m].merge(other.feats[m])
        return self

    def __iadd__(self, other):
        return self.merge(other)

    def state(self) -> dict:
        """``{modality: {"sums", "counts"}}`` copies, to sum across processes."""
        return {m: f.state() for m, f in self.feats.items()}

    def load_state(self, state: dict) -> None:
        """Replace every modality's sums and counts by a :meth:`state`."""
        for m in self.modalities:
            self.feats[m].load_state(state[m])
