"""Frozen-backbone segmentation probes of wozniak2025 (S3PT) Sec. 4 and appendix A.2.

The pretrained ViT is frozen (no gradient, eval mode: no dropout) and only a Segmenter head
(:mod:`bevlib.models.segmenter`: the linear decoder, "linear probing", or the mask transformer) is
trained with cross-entropy on camera semantic labels; the score is the mIoU over the whole
validation set with per-class IoU (Tabs. 1-3, Figs. 5 / 8). The paper reports, per backbone and
dataset, the best result over the learning rates :data:`PAPER_LR_GRID` (:func:`probe_lr_grid`).

Here the embedded world's camera semantics stand in for nuImages (issue 12, deliverable 5):
images are resized bilinearly and labels nearest to the probe's input size, and world ids are
mapped to :data:`bevlib.classes.WORLD_CAMERA`.

Not reproduced: the 160k-iteration mmsegmentation schedule and its data augmentation (random
resize / crop / flip of the ade20k and cityscapes_768x768 configs) and sliding-window inference;
the schedule here is whatever :class:`bevlib.train.TrainConfig` the caller passes.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ...classes import WORLD_CAMERA, LabelSet
from ...models.segmenter import LinearHead, MaskTransformerHead, token_grid
from ...train import Task, TrainConfig, read_metrics, train, unwrap

#: S3PT appendix A.2: "the best results after considering the following set of learning rates
#: {8e-4, 3e-4, 8e-5}".
PAPER_LR_GRID = (8e-4, 3e-4, 8e-5)
HEADS = ("linear", "mask")
#: ImageNet normalisation (the ViT image processors' default and DINO's / CrIBo's).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --- data ------------------------------------------------------------------------------------

def world_label_lut(labels: LabelSet = WORLD_CAMERA) -> np.ndarray:
    """(256,) uint8 lookup table from ``CAMERA_SEMANTIC_CLASSES`` ids to ``labels`` indices, by class
    name; world classes not in ``labels`` (and unused ids) map to ``labels.ignore_index``.

    Raises: ValueError when ``labels.ignore_index`` does not fit in uint8.
    """
    from ...data.world import CAMERA_SEMANTIC_CLASSES

    if not 0 <= labels.ignore_index <= 255:
        raise ValueError(f"labels.ignore_index must be in 0..255 for uint8 label maps, got {labels.ignore_index}")
    lut = np.full(256, labels.ignore_index, np.uint8)
    for i, name in enumerate(CAMERA_SEMANTIC_CLASSES):
        if name in labels.names:
            lut[i] = labels.index(name)
    return lut


def world_camera_items(dataroot, split: str, version: str = "v1.0-mini", cameras=None) -> list[dict]:
    """Camera images of one split of an embedded world: ``[{"token": cam sample_data token,
    "image": absolute path}]``, in scene, keyframe, camera order.

    Raises: ValueError for a split other than "train" / "val"; DataError (open_nuscenes) for a
        bad dataroot / version.
    """
    from ...data.nuscenes_data import CAMERAS, open_nuscenes, scene_sample_tokens, split_scenes

    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    nusc = open_nuscenes(dataroot, version)
    items = []
    for st in scene_sample_tokens(nusc, split_scenes(nusc)[split]):
        sample = nusc.get("sample", st)
        for cam in (cameras or CAMERAS):
            sd = nusc.get("sample_data", sample["data"][cam])
            items.append({"token": sd["token"], "image": str(Path(nusc.dataroot) / sd["filename"])})
    return items


class ProbeImageDataset(Dataset):
    """World camera images and their semantic labels at the probe's input size.

    Item: ``{"image": (3, H, W) float32, ImageNet-normalised RGB, "labels": (H, W) int64 in
    ``labels`` indices or its ignore index}`` with (H, W) = ``input_hw`` (image bilinear / area,
    labels nearest). Each item is decoded and resized once and then kept in memory (uint8; a probe
    reads every image once per epoch).

    Raises: FileNotFoundError (on access) for an unreadable image or a token without a semantic mask.
    """

    def __init__(self, dataroot, items: list[dict], input_hw: tuple[int, int], labels: LabelSet = WORLD_CAMERA):
        self.dataroot, self.items = str(dataroot), list(items)
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.lut = world_label_lut(labels)
        self._memo: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self):
        return len(self.items)

    def _read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        from ...data.world import load_camera_semantics

        if i not in self._memo:
            it = self.items[i]
            h, w = self.input_hw
            bgr = cv2.imread(it["image"], cv2.IMREAD_COLOR)
            if bgr is None:
                raise FileNotFoundError(f"cannot read camera image {it['image']}")
            rgb = np.ascontiguousarray(cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)[..., ::-1])
            sem = load_camera_semantics(self.dataroot, it["token"])
            self._memo[i] = (rgb, self.lut[cv2.resize(sem, (w, h), interpolation=cv2.INTER_NEAREST)])
        return self._memo[i]

    def label(self, i: int) -> np.ndarray:
        """(H, W) uint8 labels of item ``i`` in the label set's indices (ignore index where unlabelled)."""
        return self._read(i)[1]

    def __getitem__(self, i: int) -> dict:
        rgb, lab = self._read(i)
        x = (rgb.astype(np.float32) / 255.0 - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
        return {"image": torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))),
                "labels": torch.from_numpy(lab.astype(np.int64))}


# --- backbone and model ----------------------------------------------------------------------

class ViTPatchTokens(nn.Module):
    """A ``transformers`` ViTModel as a patch-token backbone: images (B, 3, H, W) -> (B, N, D) last
    hidden states without [CLS] (position embeddings interpolated to the input grid, as the DINO
    family evaluates at other sizes than 224)."""

    def __init__(self, vit):
        super().__init__()
        self.vit = vit
        self.embed_dim, self.patch = int(vit.config.hidden_size), int(vit.config.patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.vit(pixel_values=images, interpolate_pos_encoding=True).last_hidden_state
        return out[:, 1:]


def build_backbone(spec, state_dict: dict | None = None) -> nn.Module:
    """A patch-token backbone from a ``ViTConfig`` (random init), a local weights directory
    (``ViTModel.from_pretrained(dir, local_files_only=True)``: nothing is downloaded), a ViTModel, or
    any module / callable mapping (B, 3, H, W) images to (B, N, D) patch tokens (e.g. a pretraining
    checkpoint's student wrapped by its paper code). ``state_dict`` (e.g. from a pretraining
    checkpoint) is loaded into a ViTModel built from a config.

    Raises: ValueError for a ``state_dict`` with a spec that is not a ViTConfig, or keys that do not
        match; FileNotFoundError for a missing weights directory; TypeError for anything else.
    """
    from transformers import ViTConfig, ViTModel

    if isinstance(spec, ViTConfig):
        vit = ViTModel(spec, add_pooling_layer=False)
        if state_dict is not None:
            missing, unexpected = vit.load_state_dict(state_dict, strict=False)
            if missing or unexpected:
                raise ValueError(f"state_dict does not fit the ViTConfig: missing {missing[:5]}, unexpected {unexpected[:5]}")
        return ViTPatchTokens(vit)
    if state_dict is not None:
        raise ValueError("state_dict is only accepted with a ViTConfig spec")
    if isinstance(spec, (str, Path)):
        if not Path(spec).is_dir():
            raise FileNotFoundError(f"backbone weights directory {spec} does not exist")
        return ViTPatchTokens(ViTModel.from_pretrained(str(spec), local_files_only=True, add_pooling_layer=False))
    if isinstance(spec, ViTModel):
        return ViTPatchTokens(spec)
    if isinstance(spec, nn.Module):
        return spec
    if callable(spec):
        return _CallableBackbone(spec)
    raise TypeError(f"backbone must be a ViTConfig, a weights directory, a module or a callable, got {type(spec).__name__}")


class _CallableBackbone(nn.Module):
    def __init__(self, fn: Callable):
        super().__init__()
        self.fn = fn

    def forward(self, images):
        return self.fn(images)


class FrozenProbeModel(nn.Module):
    """Frozen backbone + trainable Segmenter head: images (B, 3, H, W) -> (B, K, H, W) logits.

    The backbone's parameters have ``requires_grad=False``, it runs under ``torch.no_grad()`` and
    stays in eval mode even in ``model.train()`` (a frozen backbone's dropout / stochastic depth
    would otherwise perturb the features the head learns from)."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head
        for p in self.backbone.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            tokens = self.backbone(images)
        return self.head(tokens.detach(), tuple(images.shape[-2:]))


def build_head(kind: str, embed_dim: int, n_classes: int, patch: int, **kw) -> nn.Module:
    """``"linear"`` -> :class:`LinearHead`, ``"mask"`` -> :class:`MaskTransformerHead` (Segmenter's
    defaults: 2 layers, d_model = embed_dim, heads = d_model // 64, at least 1; ``kw`` override).

    Raises: ValueError for another ``kind``.
    """
    if kind == "linear":
        return LinearHead(embed_dim, n_classes, patch)
    if kind == "mask":
        kw = {"n_layers": 2, "n_heads": max(1, embed_dim // 64), **kw}
        return MaskTransformerHead(embed_dim, n_classes, patch=patch, **kw)
    raise ValueError(f"head must be one of {HEADS}, got {kind!r}")


def _module_checksum(m: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(m.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# --- task ------------------------------------------------------------------------------------

class FrozenProbeTask(Task):
    """wozniak2025 (S3PT) Sec. 4 / appendix A.2: a Segmenter head on a frozen backbone, trained with
    cross-entropy (ignore index skipped) on the world's camera semantics.

    Args:
        backbone: see :func:`build_backbone` (ViTConfig, weights dir, ViTModel, module or callable).
            Built once here (random init under ``backbone_seed``), so every run of a learning-rate
            grid probes the same features.
        head: "linear" or "mask".
        dataroot: the embedded world.
        train_items, val_items: :func:`world_camera_items` lists.
        input_hw: (H, W) probe input size in pixels, multiples of the patch size.
        labels: the evaluation label set (default :data:`WORLD_CAMERA`).
        embed_dim, patch: required for a backbone without ``embed_dim`` / ``patch`` attributes.
        state_dict: pretraining weights for a ViTConfig backbone.
        backbone_id: JSON-able identity of the backbone for the run hash (default: its config for a
            ViT, else a checksum of its weights; required for a parameter-free callable).
        head_cfg: extra :func:`build_head` arguments.
    Metrics: ``miou`` and ``<class>_iou`` (percent) over the val images.
    Raises: ValueError for a bad head, input size, or a backbone without ``embed_dim`` / ``patch``.
    """

    headline_metrics = ("miou",)

    def __init__(self, backbone, head: str, dataroot, train_items, val_items, input_hw=(224, 400),
                 labels: LabelSet = WORLD_CAMERA, embed_dim: int | None = None, patch: int | None = None,
                 state_dict: dict | None = None, backbone_id=None, head_cfg: dict | None = None,
                 backbone_seed: int = 0, data_id: dict | None = None):
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(backbone_seed))
            self.backbone = build_backbone(backbone, state_dict)
        self.embed_dim = int(embed_dim or getattr(self.backbone, "embed_dim", 0))
        self.patch = int(patch or getattr(self.backbone, "patch", 0))
        if self.embed_dim < 1 or self.patch < 1:
            raise ValueError("embed_dim and patch must be given for a backbone without embed_dim / patch attributes")
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        token_grid(self.input_hw, self.patch)   # raises on a size the patches do not tile
        self.head, self.labels, self.head_cfg = head, labels, dict(head_cfg or {})
        self.dataroot, self.train_items, self.val_items = str(dataroot), list(train_items), list(val_items)
        self.data_id = dict(data_id or {})
        if backbone_id is None:
            if isinstance(self.backbone, ViTPatchTokens):
                backbone_id = {"vit": self.backbone.vit.config.to_diff_dict(), "weights": _module_checksum(self.backbone)}
            elif any(True for _ in self.backbone.parameters()) or any(True for _ in self.backbone.buffers()):
                backbone_id = {"weights": _module_checksum(self.backbone)}
            else:
                raise ValueError("backbone_id is required for a backbone without parameters (a plain callable)")
        self.backbone_id = backbone_id

    def config(self) -> dict:
        from ...io import config_hash
        return {"model_name": "s3pt_frozen_probe", "head": self.head, "head_cfg": self.head_cfg,
                "backbone": self.backbone_id, "embed_dim": self.embed_dim, "patch": self.patch,
                "input_hw": list(self.input_hw), "labels": self.labels.name, "data": self.data_id,
                "n_train": len(self.train_items), "n_val": len(self.val_items),
                "train_tokens_hash": config_hash([it["token"] for it in self.train_items]),
                "val_tokens_hash": config_hash([it["token"] for it in self.val_items])}

    def build_model(self) -> FrozenProbeModel:
        head = build_head(self.head, self.embed_dim, self.labels.num_classes, self.patch, **self.head_cfg)
        return FrozenProbeModel(self.backbone, head)

    def train_dataset(self):
        return ProbeImageDataset(self.dataroot, self.train_items, self.input_hw, self.labels)

    def val_dataset(self):
        return ProbeImageDataset(self.dataroot, self.val_items, self.input_hw, self.labels) if self.val_items else None

    def param_groups(self, model):
        # Only the head: the optimiser state stays head-sized, and a frozen weight cannot move even
        # if a caller re-enables its gradient.
        return unwrap(model).head.parameters()

    def loss(self, model, batch: dict) -> dict:
        logits = model(batch["image"])
        labels = batch["labels"]
        if not bool((labels != self.labels.ignore_index).any()):
            return {"ce": logits.sum() * 0.0}
        return {"ce": F.cross_entropy(logits, labels, ignore_index=self.labels.ignore_index)}

    @torch.no_grad()
    def evaluate(self, model, batches, reduce) -> dict:
        from ...metrics import ConfusionMatrix

        cm = ConfusionMatrix(self.labels)
        for b in batches:
            cm.update(model(b["image"]).argmax(1), b["labels"])
        cm.load_state(reduce(cm.counts))
        return cm.compute()


def probe_lr_grid(task: FrozenProbeTask, cfg: TrainConfig, runs_root, name: str, lrs=PAPER_LR_GRID,
                  metric: str = "miou", progress: bool = False) -> dict:
    """Train ``task`` once per learning rate and pick the best, as S3PT appendix A.2 ("the best
    results after considering the following set of learning rates", :data:`PAPER_LR_GRID`).

    Each run's score is ``metric`` of its last evaluated epoch (the paper evaluates after the
    schedule, not the best epoch); NaN scores never win.

    Returns: ``{"best_lr": float, "best": metrics dict of the winner, "runs": [{"lr", "run_dir",
        "metrics"}] in grid order}``.
    Raises: ValueError for an empty grid, or when no run reports a finite ``metric``.
    """
    from dataclasses import replace

    lrs = [float(lr) for lr in lrs]
    if not lrs:
        raise ValueError("lrs must hold at least one learning rate")
    runs = []
    for lr in lrs:
        run_dir = train(task, replace(cfg, lr=lr), runs_root, name, progress=progress)
        rows = [r for r in read_metrics(run_dir) if isinstance(r.get(metric), (int, float))]
        runs.append({"lr": lr, "run_dir": str(run_dir), "metrics": rows[-1] if rows else {}})
    scored = [r for r in runs if isinstance(r["metrics"].get(metric), (int, float)) and np.isfinite(r["metrics"][metric])]
    if not scored:
        raise ValueError(f"no run of the grid reports a finite {metric!r}")
    best = max(scored, key=lambda r: r["metrics"][metric])
    return {"best_lr": best["lr"], "best": best["metrics"], "runs": runs}
