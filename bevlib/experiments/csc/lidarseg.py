"""chen2024 CSC Table 2: LiDAR semantic segmentation of a pre-trained MinkUNet on nuScenes-lidarseg.

Protocol (chen2024 Sec. 4 "Semantic Segmentation", after SLidR): the pre-trained 3D backbone is
evaluated by **linear probing** (backbone frozen, only a linear head trained, 100 % of the labelled
sweeps) and by **fine-tuning** everything on 1 / 5 / 10 / 25 / 100 % of the labelled sweeps; the
metric is mIoU over the 16 lidarseg classes (:data:`bevlib.classes.NUSCENES_LIDARSEG_16`, 0 = ignore),
computed with the shared :class:`bevlib.metrics.ConfusionMatrix` (equal to nuscenes-devkit's lidarseg
``ConfusionMatrix(17, ignore_idx=0)`` on every prediction the devkit accepts, i.e. classes 1..16).

Pieces: :class:`LidarSegItems` (keyframe sweeps held in memory), :func:`label_subset` (nested,
deterministic label fractions), :class:`SegModel` (MinkUNet + 1x1 classifier, optional frozen
backbone, :meth:`SegModel.load_backbone` from a pre-training checkpoint), :class:`LidarSegTask`
(CE loss, evaluation) for :func:`bevlib.train.train`, and :func:`table2_tasks` (the six Table 2
settings).
"""
from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

from ...classes import NUSCENES_LIDARSEG_16
from ...models.minkunet import MinkUNet, MinkUNetConfig
from ...train import Task

#: Label percentages of Table 2's fine-tuning columns (nuScenes).
FINETUNE_PERCENTS = (1, 5, 10, 25, 100)
#: The six nuScenes columns of Table 2: (setting name, freeze_backbone, percent of labelled sweeps).
TABLE2_SETTINGS = (("lp", True, 100),) + tuple((f"ft{p}", False, p) for p in FINETUNE_PERCENTS)
#: Logits per point: the 16 evaluation classes plus the ignore class 0 (never trained, never predicted).
NUM_LOGITS = NUSCENES_LIDARSEG_16.num_classes
#: nuScenes LiDAR intensity is 0..255; scaled to [0, 1] so it sits on the scale of a few metres' xyz.
INTENSITY_SCALE = 255.0


class LidarSegItems(Dataset):
    """Keyframe LIDAR_TOP sweeps with lidarseg labels, each read once and then held in memory.

    Args:
        nusc: a NuScenes (devkit) of the embedded world or real nuScenes with lidarseg.
        sample_tokens: keyframe ``sample_token``s (item i = token i).
        min_distance_m: the devkit's ``remove_close`` square in the sensor frame (0 keeps every point,
            which is what the devkit's evaluation scores).
        cache: shared token -> item dict (:meth:`subset` passes its own, so label subsets of one
            split read each sweep once).

    Item ``i``: ``points`` (P, 4) float32 = ego-frame x, y, z (m, :func:`bevlib.data.fields.load_fields`
    ``lidar_points``) and intensity / 255 (CSC Sec. 3.1: each point in R^4, location and intensity);
    ``labels`` (P,) int64 in 0..16 (0 = ignore, ``lidar_seg``); ``token`` str.
    Raises (on first read of an item): ValueError naming the token when the keyframe has no LIDAR_TOP
    or no lidarseg ground truth; DataError from the loader for missing files.
    """

    def __init__(self, nusc, sample_tokens, min_distance_m: float = 0.0, cache: dict | None = None):
        from ...data.fields import KeyframeConfig, LidarConfig

        self.nusc, self.tokens = nusc, list(sample_tokens)
        self.min_distance_m = float(min_distance_m)
        self.kf_cfg = KeyframeConfig(fields=("lidar",), lidar=LidarConfig(nsweeps=1, min_distance_m=self.min_distance_m),
                                     cache=False)
        self._cache = {} if cache is None else cache

    def __len__(self) -> int:
        return len(self.tokens)

    def _read(self, tok: str) -> dict:
        from ...data.fields import load_keyframe

        kf = load_keyframe(self.nusc, tok, self.kf_cfg)
        if not kf["has_lidar"] or not kf["has_lidarseg"]:
            raise ValueError(f"sample_tokens: keyframe {tok} lacks a LIDAR_TOP sweep with lidarseg ground truth")
        pts = np.column_stack([kf["lidar_points"], kf["lidar_intensity"] / INTENSITY_SCALE]).astype(np.float32)
        return {"points": torch.from_numpy(np.ascontiguousarray(pts)),
                "labels": torch.from_numpy(kf["lidar_seg"].astype(np.int64)), "token": tok}

    def __getitem__(self, i: int) -> dict:
        tok = self.tokens[i]
        if tok not in self._cache:
            self._cache[tok] = self._read(tok)
        it = self._cache[tok]
        # shallow copy: a caller replacing a key must not change the cached item
        return dict(it)

    def subset(self, sample_tokens) -> "LidarSegItems":
        """Items of ``sample_tokens`` (e.g. :func:`label_subset`), sharing this dataset's in-memory cache."""
        return LidarSegItems(self.nusc, sample_tokens, self.min_distance_m, cache=self._cache)


def collate_points(items: list[dict]) -> dict:
    """Batch :class:`LidarSegItems` items: ``points`` a list of B (P_b, 4) float32 tensors (the form
    :meth:`MinkUNet.forward_points` takes), ``labels`` (sum P_b,) int64 concatenated in the same order,
    ``tokens`` list of B str."""
    return {"points": [it["points"] for it in items], "labels": torch.cat([it["labels"] for it in items]),
            "tokens": [it["token"] for it in items]}


def label_subset(tokens, percent: float, seed: int = 0) -> list[str]:
    """The labelled sweeps used at ``percent`` % of the labels (Table 2's 1 / 5 / 10 / 25 / 100 %).

    A seeded permutation of the *sorted* tokens (so the subset does not depend on the input order, as
    :func:`bevlib.data.nuscenes_data.half_subset`); its first ``max(1, ceil(percent / 100 * n))``
    tokens are kept. Subsets are nested (a smaller percentage's subset is a prefix of the same
    permutation, hence inside a larger one's) and returned in the input order.

    SLidR's downstream loader thins by scenes (every k-th scene); per-sweep sampling as here spreads a
    small budget over more scenes. Both give ``percent`` % of the sweeps; the paper does not say which.

    Args: tokens: sequence of str (unique); percent: in (0, 100]; seed: the permutation's seed.
    Returns: list of str, at least one.
    Raises: ValueError naming ``percent`` outside (0, 100], ``tokens`` when empty or with repeats.
    """
    toks = list(tokens)
    if not toks:
        raise ValueError("tokens is empty")
    if len(set(toks)) != len(toks):
        raise ValueError("tokens holds repeated entries")
    if not (isinstance(percent, (int, float)) and 0 < percent <= 100):
        raise ValueError(f"percent must be in (0, 100], got {percent!r}")
    n_keep = max(1, math.ceil(percent / 100.0 * len(toks) - 1e-9))
    order = np.random.default_rng(seed).permutation(len(toks))
    keep = set(np.array(sorted(toks))[order[:n_keep]].tolist())
    return [t for t in toks if t in keep]


def _strip_to_backbone(state: dict, expected: list[str], prefix: str | None) -> tuple[dict, str]:
    if prefix is None:
        # the prefix under which a reference backbone key sits, e.g. "backbone." or "module.point_net."
        ref = expected[0]
        cands = [k[: len(k) - len(ref)] for k in state if k == ref or k.endswith("." + ref)]
        if not cands:
            return {}, ""
        exp = set(expected)
        prefix = max(cands, key=lambda p: sum(k[len(p):] in exp for k in state if k.startswith(p)))
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, prefix


class SegModel(nn.Module):
    """MinkUNet backbone + a linear (1x1) per-point classifier to 17 logits.

    Args:
        config: the backbone's :class:`MinkUNetConfig` (in_channels 4 = x, y, z, intensity).
        freeze_backbone: linear probing (chen2024 Sec. 4: "trains only a linear head and freezes other
            layers"): backbone parameters get ``requires_grad=False``, the backbone runs without autograd
            and stays in eval mode (BatchNorm uses and keeps its pre-trained running statistics) even
            when the model is put in train mode. False: fine-tune everything.

    The classifier reads the backbone output (``out_channels``, after MinkUNet's final 1x1 conv). SLidR's
    code instead replaces that final conv by the classifier (probe on the 96-d decoder features); both are
    linear heads on frozen features, but not identical probes.
    Source: chen2024 CSC Sec. 4 / Table 2; SLidR (Sautier et al. 2022) downstream protocol.
    Raises: ValueError naming ``config`` when it is no MinkUNetConfig.
    """

    def __init__(self, config: MinkUNetConfig, freeze_backbone: bool = False):
        super().__init__()
        if not isinstance(config, MinkUNetConfig):
            raise ValueError(f"config must be a MinkUNetConfig, got {type(config).__name__}")
        self.backbone = MinkUNet(config)
        self.classifier = nn.Linear(config.out_channels, NUM_LOGITS)
        self.freeze_backbone = bool(freeze_backbone)
        if self.freeze_backbone:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    def train(self, mode: bool = True) -> "SegModel":
        """As :meth:`nn.Module.train`, but a frozen backbone stays in eval mode."""
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self

    def forward(self, points: list[torch.Tensor]) -> torch.Tensor:
        """points: list of B (P_b, in_channels) float tensors (x, y, z m, intensity / 255) -> (sum P_b, 17)
        logits, rows in the order of the concatenated points. Errors: those of :meth:`MinkUNet.forward_points`."""
        if self.freeze_backbone:
            with torch.no_grad():
                feats = self.backbone.forward_points(points)
        else:
            feats = self.backbone.forward_points(points)
        return self.classifier(feats)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The classifier's parameters when frozen (linear probing), else every parameter."""
        return list(self.classifier.parameters()) if self.freeze_backbone else list(self.parameters())

    def load_backbone(self, state: dict, prefix: str | None = None) -> str:
        """Load the backbone's weights from a pre-training state dict (strict).

        Args:
            state: a state dict, or a trainer checkpoint dict with the state dict under ``"model"``
                (:func:`bevlib.train.load_checkpoint`). Keys may carry a prefix (``"backbone."``,
                ``"module.backbone."``, ...).
            prefix: the prefix to strip; None finds it from where the backbone's first key sits (the
                candidate matching most backbone keys wins).
        Returns: the prefix that was stripped.
        Raises: ValueError naming the missing backbone keys (first few and count), the unexpected keys
            under the prefix, or a shape mismatch; ValueError naming ``state`` when it is no dict.
        """
        if not isinstance(state, dict):
            raise ValueError(f"state must be a state dict or checkpoint dict, got {type(state).__name__}")
        if "model" in state and isinstance(state["model"], dict):
            state = state["model"]
        own = self.backbone.state_dict()
        expected = list(own)
        sub, used = _strip_to_backbone(state, expected, prefix)
        missing = [k for k in expected if k not in sub]
        unexpected = [k for k in sub if k not in own]
        if missing or unexpected:
            msg = []
            if missing:
                msg.append(f"{len(missing)} backbone key(s) missing from state (prefix {used!r}), e.g. {missing[:5]}")
            if unexpected:
                msg.append(f"{len(unexpected)} unexpected key(s) under prefix {used!r}, e.g. {unexpected[:5]}")
            raise ValueError("; ".join(msg))
        bad = [f"{k}: {tuple(sub[k].shape)} vs {tuple(own[k].shape)}" for k in expected if sub[k].shape != own[k].shape]
        if bad:
            raise ValueError(f"state has backbone weights of other shapes (another config?): {bad[:5]}")
        self.backbone.load_state_dict(sub, strict=True)
        return used


def predict_classes(logits: torch.Tensor) -> torch.Tensor:
    """(N, 17) logits -> (N,) int64 classes 1..16 (0 = ignore is never predicted: the devkit rejects it)."""
    return logits[:, 1:].argmax(1) + 1


class LidarSegTask(Task):
    """One Table 2 run on the shared trainer: a :class:`SegModel` trained with cross-entropy.

    Loss: CE over the 17 logits with ``ignore_index`` 0 (points without a lidarseg class give no
    gradient), as SLidR's downstream ``CrossEntropyLoss(ignore_index=0)``. Evaluation: one
    :class:`bevlib.metrics.ConfusionMatrix` (:data:`NUSCENES_LIDARSEG_16`) over every point of the val
    sweeps, predictions restricted to 1..16; metrics ``<class>_iou`` and ``miou`` in percent, absent
    classes NaN and skipped (as the devkit and :class:`bevlib.experiments.multivit.task.RangeViTTask`).

    Args:
        model_cfg: the backbone's :class:`MinkUNetConfig`.
        train_items / val_items: :class:`LidarSegItems` (train_items already the label subset).
        freeze_backbone: linear probing (True) or fine-tuning (False).
        backbone_state: pre-training state dict / checkpoint dict for :meth:`SegModel.load_backbone`
            (None: random initialisation, Table 2's "Random" row).
        backbone_id: identity of ``backbone_state`` for the run hash (e.g. the pre-training run's
            directory name); required with ``backbone_state`` so different pre-trainings get different runs.
        percent: the label percentage, recorded in :meth:`config`.
    Raises: ValueError naming ``backbone_id`` when ``backbone_state`` is given without it.
    """

    headline_metrics = ("miou",)

    def __init__(self, model_cfg: MinkUNetConfig, train_items: LidarSegItems, val_items: LidarSegItems | None,
                 freeze_backbone: bool = False, backbone_state: dict | None = None, backbone_id: str | None = None,
                 percent: float = 100.0):
        if backbone_state is not None and not backbone_id:
            raise ValueError("backbone_id must name the pre-trained weights when backbone_state is given")
        self.model_cfg, self.train_items, self.val_items = model_cfg, train_items, val_items
        self.freeze_backbone, self.backbone_state = bool(freeze_backbone), backbone_state
        self.backbone_id, self.percent = backbone_id, float(percent)

    def config(self) -> dict:
        from ...io import config_hash
        return {"model_name": "csc_minkunet_seg", "model": asdict(self.model_cfg),
                "freeze_backbone": self.freeze_backbone, "percent": self.percent,
                "backbone_init": self.backbone_id or "random", "loss": "ce_ignore0",
                "min_distance_m": self.train_items.min_distance_m,
                "n_train": len(self.train_items), "n_val": len(self.val_items or []),
                "train_tokens_hash": config_hash(self.train_items.tokens),
                "val_tokens_hash": config_hash(self.val_items.tokens if self.val_items is not None else [])}

    def build_model(self) -> SegModel:
        model = SegModel(self.model_cfg, freeze_backbone=self.freeze_backbone)
        if self.backbone_state is not None:
            model.load_backbone(self.backbone_state)
        return model

    def train_dataset(self):
        return self.train_items

    def val_dataset(self):
        return self.val_items

    def collate(self, items):
        return collate_points(items)

    def param_groups(self, model):
        return model.trainable_parameters()

    def loss(self, model, batch: dict) -> dict:
        """``{"ce": CE(logits (N, 17), labels (N,), ignore_index=0)}``."""
        return {"ce": seg_ce(model(batch["points"]), batch["labels"])}

    @torch.no_grad()
    def evaluate(self, model, batches, reduce) -> dict:
        """Per-class IoU (``<class>_iou``) and ``miou`` in percent over every point of the val sweeps."""
        return seg_metrics(((model(b["points"]), b["labels"]) for b in batches), reduce)


def seg_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """CE of (N, 17) logits against (N,) int64 labels with ``ignore_index`` 0 (SLidR's downstream loss); a zero
    that still reaches the logits' graph when no point is labelled (CE would be 0 / 0)."""
    ignore = NUSCENES_LIDARSEG_16.ignore_index
    if not bool((labels != ignore).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels, ignore_index=ignore)


def seg_metrics(pairs, reduce) -> dict:
    """``<class>_iou`` and ``miou`` (percent) of one :class:`bevlib.metrics.ConfusionMatrix`
    (:data:`NUSCENES_LIDARSEG_16`) over ``pairs`` of ((N, 17) logits, (N,) labels), predictions restricted to
    1..16; ``reduce`` sums the counts over processes."""
    from ...metrics import ConfusionMatrix

    cm = ConfusionMatrix(NUSCENES_LIDARSEG_16)
    for logits, labels in pairs:
        cm.update(predict_classes(logits), labels)
    cm.load_state(reduce(cm.counts))
    return cm.compute()


class FrozenFeatureItems(Dataset):
    """Per-point features of a frozen backbone, computed once per sweep and held in memory (linear probing
    without a backbone pass per epoch: the backbone is frozen and the points are not augmented, so every
    epoch would compute the same features).

    Args: items: :class:`LidarSegItems`; backbone: a :class:`MinkUNet` (put in eval mode, run without autograd).
    Item i: ``features`` (P, C) float32 = ``backbone.forward_points([points])``, ``labels`` (P,) int64, ``token``.
    """

    def __init__(self, items: LidarSegItems, backbone: MinkUNet, cache: dict | None = None):
        self.items, self.backbone = items, backbone.eval()
        self._cache = {} if cache is None else cache

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        it = self.items[i]
        if it["token"] not in self._cache:
            with torch.no_grad():
                self._cache[it["token"]] = self.backbone.forward_points([it["points"]]).contiguous()
        return {"features": self._cache[it["token"]], "labels": it["labels"], "token": it["token"]}


class FeatureProbeTask(LidarSegTask):
    """Linear probing (Table 2's LP column) on cached frozen-backbone features: the same probe as
    ``LidarSegTask(freeze_backbone=True)`` (a Linear C -> 17 on the frozen MinkUNet's output, CE with ignore 0,
    the same metric), but the backbone runs once per sweep instead of once per sweep and epoch. Only the
    classifier is the trained model (its initial weights come from another draw of the trainer's seed).

    Args: as :class:`LidarSegTask` without ``freeze_backbone``; backbone_seed: torch seed of the backbone's
        random initialisation when ``backbone_state`` is None (Table 2's "Random" row).
    Memory: 4 x C bytes per point of the train and val sweeps (64 channels: ~8 MB per 32k-point sweep).
    """

    def __init__(self, model_cfg: MinkUNetConfig, train_items: LidarSegItems, val_items: LidarSegItems | None,
                 backbone_state: dict | None = None, backbone_id: str | None = None, percent: float = 100.0,
                 backbone_seed: int = 0):
        super().__init__(model_cfg, train_items, val_items, True, backbone_state, backbone_id, percent)
        self.backbone_seed = int(backbone_seed)
        self._features = None

    def config(self) -> dict:
        return {**super().config(), "probe": "cached_features",
                "backbone_seed": self.backbone_seed if self.backbone_state is None else None}

    def _feature_sets(self):
        if self._features is None:
            state = torch.get_rng_state()
            torch.manual_seed(self.backbone_seed)
            seg = SegModel(self.model_cfg, freeze_backbone=True)
            torch.set_rng_state(state)
            if self.backbone_state is not None:
                seg.load_backbone(self.backbone_state)
            cache: dict = {}
            self._features = (FrozenFeatureItems(self.train_items, seg.backbone, cache),
                              FrozenFeatureItems(self.val_items, seg.backbone, cache) if self.val_items else None)
        return self._features

    def build_model(self) -> nn.Module:
        return nn.Linear(self.model_cfg.out_channels, NUM_LOGITS)

    def train_dataset(self):
        return self._feature_sets()[0]

    def val_dataset(self):
        return self._feature_sets()[1]

    def collate(self, items):
        return {"features": torch.cat([it["features"] for it in items]),
                "labels": torch.cat([it["labels"] for it in items]), "tokens": [it["token"] for it in items]}

    def param_groups(self, model):
        return list(model.parameters())

    def loss(self, model, batch: dict) -> dict:
        return {"ce": seg_ce(model(batch["features"]), batch["labels"])}

    @torch.no_grad()
    def evaluate(self, model, batches, reduce) -> dict:
        return seg_metrics(((model(b["features"]), b["labels"]) for b in batches), reduce)


def table2_tasks(nusc, train_tokens, val_tokens, model_cfg: MinkUNetConfig, backbone_state: dict | None = None,
                 backbone_id: str | None = None, seed: int = 0, settings=TABLE2_SETTINGS,
                 min_distance_m: float = 0.0) -> dict[str, LidarSegTask]:
    """The Table 2 (nuScenes) runs for one backbone initialisation: setting name (``"lp"``, ``"ft1"``,
    ``"ft5"``, ``"ft10"``, ``"ft25"``, ``"ft100"``) -> :class:`LidarSegTask`. Every task shares one in-memory
    :class:`LidarSegItems` cache; label subsets come from :func:`label_subset` (``seed``).
    Raises: ValueError from :func:`label_subset` / :class:`LidarSegTask`."""
    train_all = LidarSegItems(nusc, train_tokens, min_distance_m)
    val = train_all.subset(val_tokens)
    return {name: LidarSegTask(model_cfg, train_all.subset(label_subset(train_all.tokens, pct, seed)), val,
                               freeze_backbone=freeze, backbone_state=backbone_state, backbone_id=backbone_id,
                               percent=pct)
            for name, freeze, pct in settings}
