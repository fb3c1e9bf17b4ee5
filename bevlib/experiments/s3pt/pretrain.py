"""DINO, CrIBo and S3PT self-supervised pre-training of a ViT as a :class:`bevlib.train.Task`
(wozniak2025 Sec. 3, Eq. 1-2, appendix Tables 5-7; Caron et al. 2021; Lebailly et al. 2024).

One image per item: a camera image of a keyframe with its depth map, cut into the multi-crop views of
:mod:`.multicrop`. The model holds the student and the EMA teacher (``S3PTModel``); the teacher is a
submodule with ``requires_grad=False`` (so checkpoints hold it and a resume restores it exactly) and is
left out of :meth:`S3PTTask.param_groups`. DINO's centres, the object queue and the step counter are task
state (:meth:`S3PTTask.state_dict`).

Loss terms (each a DINO cross-entropy H(P_t, P_s) = -sum_k P_t,k log P_s,k averaged over its pairs; P_t
the centred, sharpened teacher distribution and P_s the student's, both from :class:`bevlib.ssl.DINOLoss`,
in vMF form (Eq. 2, probability-space centring) when ``vmf``):

* ``global`` (L^g_cv): [CLS] of every crop; teacher targets from the 2 global crops, student predictions
  of every other crop (DINO's multi-crop loss; its own centre).
* ``object_cross_view`` (L^o_cv, cribo/s3pt): per image, :func:`bevlib.ssl.joint_view_clustering` of the
  teacher's last-layer patch tokens of the 2 global views (positions in original pixels, S3PT's depth
  term with ``depth_beta``); clusters present in both views are kept; object features o_k^v = mean of
  the tokens of cluster k in view v, pooled for the teacher and the student with the teacher's
  assignment; teacher o_k^1 supervises student o_k^2 and teacher o_k^2 supervises student o_k^1,
  averaged over all kept objects of the batch (its own centre).
* ``object_cross_image`` (L^o_ci, cribo/s3pt): for each teacher object o_k^v, its bottleneck embedding
  z = head.embed(o_k^v) is looked up in the :class:`bevlib.ssl.ObjectQueue` (cosine nearest neighbour
  nn(z) among the teacher embeddings of earlier batches); the teacher's prototype scores of nn(z)
  supervise the student's object of the other view o_k^{v'}; then the batch's teacher embeddings of both
  views are pushed. Zero (with a graph) while the queue is empty. Its own centre.

The total is their sum (Eq. 1: L = L^g_cv + L^o_cv + L^o_ci). One DINO head is shared by [CLS] and object
features (our choice; CrIBo's public code applies one projection head to both, to our reading).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

from bevlib.ssl import DINOHead, DINOLoss, ObjectQueue, cosine_schedule, ema_update, joint_view_clustering, \
    object_features
from bevlib.train import Task, TrainConfig, decay_groups, unwrap

from .multicrop import MultiCropConfig, multicrop

__all__ = ["S3PTConfig", "S3PTNet", "S3PTModel", "S3PTTask", "CropDataset", "KeyframeCameraImages", "METHODS",
           "paper_config", "paper_train_config"]

METHODS = ("dino", "cribo", "s3pt")
#: ImageNet statistics (DINO's Normalize)
_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)


@dataclass(frozen=True)
class S3PTConfig:
    """Everything the pre-training task contributes to a run (paper values in comments; the defaults are a
    small CPU setting).

    method: "dino" | "cribo" | "s3pt" (object terms for cribo/s3pt).
    vit: ``transformers.ViTConfig`` kwargs (paper ViT-S/16: hidden 384, 12 layers, 6 heads, mlp 1536,
        patch 16, image 224). vit_weights: local directory for ``ViTModel.from_pretrained`` or None
        (random init). Nothing is downloaded.
    crops: :class:`MultiCropConfig` fields (2 global [0.25, 1]; DINO 10 local [0.05, 0.25], CrIBo/S3PT 0).
    head_hidden (2048), head_bottleneck (256), head_layers (3), n_prototypes (65,536),
    norm_last_layer (DINO ViT-S False "X", CrIBo ViT-S False; ignored with vmf).
    vmf: Eq. 2 logits + probability-space centring (S3PT True).
    teacher_temp (0.07), warmup_teacher_temp (0.04), warmup_teacher_temp_epochs (30), student_temp (0.1),
    center_momentum (0.9), momentum_teacher (0.996 -> 1 by cosine over all steps).
    freeze_last_layer_epochs (1; ViT-B 3). epochs: the run's epochs (= TrainConfig.epochs; the epoch of a
        step is derived from it for the temperature warm-up and the freeze).
    n_clusters (CrIBo 32, S3PT 128), sk_iters (CrIBo 5, S3PT 1), sinkhorn_lambda (20), n_outer (5),
    pos_alpha (1.0), depth_beta (S3PT Table 7 "depth alpha" 4.0; Table 1 also 0.5, 1; 0 = off),
    queue_size (CrIBo 25,000, S3PT 2,500).
    lr (5e-4 per 256 images), min_lr (1e-5), warmup_epochs (10), weight_decay (0.04) -> weight_decay_end
        (0.4) by cosine over all steps (None: constant ``weight_decay``, the setting of runs made before
        the schedule existed; left out of the task config while None, so those runs are reused): read by
        :func:`paper_train_config` only.
    Raises: ValueError for an unknown method or bad sizes.
    """
    method: str = "s3pt"
    vit: dict = field(default_factory=lambda: dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                   intermediate_size=128, patch_size=16, image_size=64))
    vit_weights: str | None = None
    crops: dict = field(default_factory=lambda: dict(global_size=64, local_size=32, n_local=2))
    head_hidden: int = 256           # paper 2048
    head_bottleneck: int = 64        # paper 256
    head_layers: int = 3
    n_prototypes: int = 1024         # paper 65536
    norm_last_layer: bool = False
    vmf: bool = True
    teacher_temp: float = 0.07
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: int = 2   # paper 30
    student_temp: float = 0.1
    center_momentum: float = 0.9
    momentum_teacher: float = 0.996
    freeze_last_layer_epochs: int = 1
    epochs: int = 10                 # paper 500 (ViT-S), 100 (ViT-B, Table 1 ablations)
    n_clusters: int = 16             # CrIBo 32, S3PT 128
    sk_iters: int = 1                # CrIBo 5, S3PT 1
    sinkhorn_lambda: float = 20.0
    n_outer: int = 5
    pos_alpha: float = 1.0
    depth_beta: float = 4.0          # S3PT 4.0; CrIBo 0
    queue_size: int = 2500           # CrIBo 25000, S3PT 2500
    lr: float = 5e-4                 # per 256 images (DINO's linear scaling)
    min_lr: float = 1e-5
    warmup_epochs: int = 1           # paper 10
    weight_decay: float = 0.04       # paper 0.04 -> 0.4 (cosine)
    weight_decay_end: float | None = 0.4

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"S3PTConfig.method must be one of {METHODS}, got {self.method!r}")
        if min(self.head_hidden, self.head_bottleneck, self.head_layers, self.n_prototypes, self.epochs,
               self.n_clusters, self.queue_size, self.sk_iters, self.n_outer) < 1:
            raise ValueError("S3PTConfig: head sizes, n_prototypes, epochs, n_clusters, queue_size, sk_iters and "
                             "n_outer must be >= 1")
        if not 0 <= self.momentum_teacher <= 1 or self.depth_beta < 0 or self.freeze_last_layer_epochs < 0:
            raise ValueError("S3PTConfig: momentum_teacher must be in [0, 1], depth_beta and "
                             "freeze_last_layer_epochs >= 0")
        if self.weight_decay_end is not None and not (isinstance(self.weight_decay_end, (int, float))
                                                      and 0 <= self.weight_decay_end < math.inf):
            raise ValueError(f"S3PTConfig.weight_decay_end must be None or a finite number >= 0, "
                             f"got {self.weight_decay_end!r}")
        MultiCropConfig(**self.crops)  # validates the crop settings

    @property
    def object_terms(self) -> bool:
        return self.method != "dino"

    def crop_config(self) -> MultiCropConfig:
        return MultiCropConfig(**self.crops)


def paper_config(method: str, vit: str = "small", **overrides) -> S3PTConfig:
    """The paper preset of ``method`` (Tables 5-7) for ViT-S/16 (``vit="small"``) or ViT-B/16 ("base")."""
    if vit not in ("small", "base"):
        raise ValueError(f"vit must be 'small' or 'base', got {vit!r}")
    small = vit == "small"
    vit_kw = dict(hidden_size=384 if small else 768, num_hidden_layers=12, num_attention_heads=6 if small else 12,
                  intermediate_size=1536 if small else 3072, patch_size=16, image_size=224)
    s3pt = method == "s3pt"
    crops = dict(global_size=224, local_size=96, n_local=10 if method == "dino" else 0,
                 global_scale=(0.25, 1.0) if small or method == "dino" else (0.32, 1.0))
    kw = dict(method=method, vit=vit_kw, crops=crops, head_hidden=2048, head_bottleneck=256, n_prototypes=65536,
              norm_last_layer=not small, vmf=s3pt, warmup_teacher_temp_epochs=30 if small else 50,
              freeze_last_layer_epochs=1 if small else 3, epochs=500 if small else 100,
              n_clusters=128 if s3pt else 32, sk_iters=1 if s3pt else 5, depth_beta=4.0 if s3pt else 0.0,
              queue_size=2500 if s3pt else 25000, lr=5e-4 if small else 7.5e-4, min_lr=1e-5 if small else 2e-6,
              warmup_epochs=10)
    kw.update(overrides)
    return S3PTConfig(**kw)


def paper_train_config(cfg: S3PTConfig, n_train: int, batch_size: int = 256, **overrides) -> TrainConfig:
    """The trainer settings of Tables 5-7: AdamW, lr = cfg.lr x batch/256, linear warm-up over
    ``warmup_epochs`` then cosine to ``min_lr``, weight decay by cosine from ``cfg.weight_decay`` to
    ``cfg.weight_decay_end`` over all steps (DINO's wd schedule, 0.04 -> 0.4; ``TrainConfig.weight_decay_end``;
    constant when None), no gradient clipping (ViT-S; ViT-B 0.3: pass ``grad_clip``).

    Raises: ValueError for n_train or batch_size < 1.
    """
    if n_train < 1 or batch_size < 1:
        raise ValueError(f"n_train and batch_size must be >= 1, got {n_train}, {batch_size}")
    n_batches = math.ceil(n_train / batch_size)
    lr = cfg.lr * batch_size / 256
    kw = dict(epochs=cfg.epochs, batch_size=batch_size, lr=lr, weight_decay=cfg.weight_decay,
              weight_decay_end=cfg.weight_decay_end, optimizer="adamw",
              schedule="warmup_cosine", warmup_steps=min(cfg.warmup_epochs * n_batches, cfg.epochs * n_batches),
              warmup_ratio=1e-3, min_lr_ratio=min(1.0, cfg.min_lr / lr), grad_clip=0.0)
    kw.update(overrides)
    return TrainConfig(**kw)


class S3PTNet(nn.Module):
    """ViT backbone (``transformers.ViTModel``, no pooler) + :class:`DINOHead`.

    forward(pixels (B, 3, h, w) float normalised) -> (cls (B, D), tokens (B, P, D)): last-layer (post-norm)
    [CLS] and patch tokens, P = (h/p)(w/p) row-major; other sizes than ``image_size`` by interpolating the
    position embeddings.
    """

    def __init__(self, cfg: S3PTConfig):
        super().__init__()
        from transformers import ViTConfig, ViTModel
        if cfg.vit_weights:
            self.backbone = ViTModel.from_pretrained(cfg.vit_weights, add_pooling_layer=False, local_files_only=True)
        else:
            self.backbone = ViTModel(ViTConfig(**cfg.vit), add_pooling_layer=False)
        self.patch = int(self.backbone.config.patch_size)
        self.head = DINOHead(self.backbone.config.hidden_size, cfg.head_hidden, cfg.head_bottleneck,
                             cfg.n_prototypes, cfg.head_layers, norm_last_layer=cfg.norm_last_layer, vmf=cfg.vmf)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.backbone(pixel_values=pixels, interpolate_pos_encoding=True).last_hidden_state
        return h[:, 0], h[:, 1:]


class S3PTModel(nn.Module):
    """Student and EMA teacher (same architecture; the teacher starts as a copy and never gets gradients).

    forward(global_crops (B, n_global, 3, G, G), local_crops (B, n_local, 3, L, L)) -> student outputs
    ``(cls (n_views * B, D) view-major: all global views then all local views, tokens (n_global * B, P, D))``.
    """

    def __init__(self, cfg: S3PTConfig):
        super().__init__()
        self.student = S3PTNet(cfg)
        self.teacher = S3PTNet(cfg)
        self.teacher.load_state_dict(self.student.state_dict())
        self.teacher.requires_grad_(False)

    def forward(self, global_crops: torch.Tensor, local_crops: torch.Tensor | None = None):
        g = global_crops.transpose(0, 1).flatten(0, 1)  # view-major
        cls, tokens = self.student(g)
        if local_crops is not None and local_crops.shape[1]:
            cls_l, _ = self.student(local_crops.transpose(0, 1).flatten(0, 1))
            cls = torch.cat([cls, cls_l])
        return cls, tokens


def _to_pixels(crops: np.ndarray) -> torch.Tensor:
    x = (crops.astype(np.float32) / 255.0 - _MEAN) / _STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


class CropDataset(Dataset):
    """Multi-crop items of a source of (image (H, W, 3) uint8, depth (H, W) float32 metres or None) pairs.

    Item i (augmented from NumPy's global RNG, which the trainer seeds per item): ``global`` (n_global, 3, G,
    G) float32 normalised, ``local`` (n_local, 3, L, L), ``positions`` (n_global, P, 2) float32 original
    pixels, ``depth`` (n_global, P) float32 metres (NaN = none; all NaN without depth), ``index``.
    """

    def __init__(self, source, crops: MultiCropConfig, patch: int):
        self.source, self.crops, self.patch = source, crops, patch

    def __len__(self):
        return len(self.source)

    def __getitem__(self, i):
        image, depth = self.source[i]
        c = multicrop(image, depth, self.crops, self.patch)
        d = c["token_depth"] if depth is not None else np.full(c["positions"].shape[:2], np.nan, np.float32)
        return {"global": _to_pixels(c["global"]), "local": _to_pixels(c["local"]),
                "positions": torch.from_numpy(c["positions"]), "depth": torch.from_numpy(d),
                "index": torch.tensor(i)}


class KeyframeCameraImages:
    """The camera images of keyframes with their depth maps: item i = camera i % 6 of keyframe i // 6,
    ``(image (h, w, 3) uint8 RGB, depth (h, w) float32 metres along the optical axis, 0 = none)`` at
    ``image_wh`` (:func:`bevlib.data.fields.load_keyframe`, fields ``cameras`` and ``depth``).

    Args:
        nusc: the devkit database. sample_tokens: keyframes, in item order.
        image_wh: (w, h) pixels. cache: keep the depth field in the on-disk field cache.
        depth_source: :attr:`bevlib.data.fields.DepthConfig.source`: ``"world"`` (the embedded world's
            exact depth; default), ``"lidar_completed"`` (IP-Basic-completed LiDAR, the paper's depth,
            wozniak2025 Sec. 3.3), ``"lidar"`` (sparse) or ``"auto"``.
    Every keyframe is read once, on first access, and then held in memory (about 7 bytes per pixel
    and camera: 64 keyframes at 112 x 64 take 19 MB), so later epochs read no file; with DataLoader
    workers each worker fills its own copy.
    Raises: ValueError for an unknown ``depth_source``; DataError (on access) as ``load_keyframe``.
    """

    def __init__(self, nusc, sample_tokens, image_wh: tuple[int, int], cache: bool = True,
                 depth_source: str = "world"):
        from bevlib.data.fields import DepthConfig, KeyframeConfig
        from bevlib.data.nuscenes_data import CAMERAS
        self.nusc, self.tokens = nusc, list(sample_tokens)
        self.n_cams = len(CAMERAS)
        self.kcfg = KeyframeConfig(fields=("cameras", "depth"), image_wh=tuple(image_wh), cache=cache,
                                   depth=DepthConfig(source=depth_source))
        self._items: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self):
        return self.n_cams * len(self.tokens)

    def __getitem__(self, i):
        from bevlib.data.fields import load_keyframe
        tok = self.tokens[i // self.n_cams]
        if tok not in self._items:
            kf = load_keyframe(self.nusc, tok, self.kcfg)
            self._items[tok] = (kf["images"], kf["depth"].astype(np.float32))
        images, depth = self._items[tok]
        return images[i % self.n_cams], depth[i % self.n_cams]


def _ce(targets: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
    return (-(targets * log_p).sum(-1)).mean()


class S3PTTask(Task):
    """DINO / CrIBo / S3PT pre-training (module docstring for the loss terms).

    Args:
        cfg: :class:`S3PTConfig`. train_source / val_source: sequences of (image, depth) pairs (e.g.
            :class:`KeyframeCameraImages`); val may be None. data_identity: JSON-able description of the
            data (part of the run's hash).
    State (:meth:`state_dict`): the three DINO centres, the object queue, the optimiser-step counter and
    the steps per epoch; the teacher lives in the model.
    Raises: ValueError (from the config) for bad settings; in :meth:`after_step` when total_steps is not a
        multiple of ``cfg.epochs`` (TrainConfig.epochs must equal S3PTConfig.epochs).
    """

    headline_metrics = ("val_global_ce", "teacher_cls_std", "teacher_entropy")

    def __init__(self, cfg: S3PTConfig, train_source, val_source=None, data_identity: dict | None = None):
        self.cfg = cfg
        self.train_source, self.val_source = train_source, val_source
        self.data_identity = data_identity or {}
        self.crops = cfg.crop_config()
        self.step, self.steps_per_epoch = 0, 0
        self._momentum: tuple[int, np.ndarray] | None = None
        kw = dict(warmup_teacher_temp=cfg.warmup_teacher_temp, teacher_temp=cfg.teacher_temp,
                  warmup_teacher_temp_epochs=cfg.warmup_teacher_temp_epochs, student_temp=cfg.student_temp,
                  center_momentum=cfg.center_momentum, vmf=cfg.vmf, vmf_dim=cfg.head_bottleneck if cfg.vmf else None)
        self.global_loss = DINOLoss(cfg.n_prototypes, n_global=self.crops.n_global, n_local=self.crops.n_local, **kw)
        # object terms: two "views" (teacher view v supervises student view 1 - v)
        self.object_loss = DINOLoss(cfg.n_prototypes, n_global=2, n_local=0, **kw)
        self.cross_image_loss = DINOLoss(cfg.n_prototypes, n_global=2, n_local=0, **kw)
        self.queue = ObjectQueue(cfg.queue_size, cfg.head_bottleneck)
        self._patch = None

    # ---- Task API -------------------------------------------------------------------------------------
    def config(self) -> dict:
        s3pt = asdict(self.cfg)
        if s3pt["weight_decay_end"] is None:   # as before the field existed: those runs keep their hash
            del s3pt["weight_decay_end"]
        return {"s3pt": s3pt, "data": self.data_identity}

    def build_model(self) -> nn.Module:
        model = S3PTModel(self.cfg)
        self._patch = model.student.patch
        return model

    def _dataset(self, source):
        if self._patch is None:
            from transformers import ViTConfig
            self._patch = int(ViTConfig(**self.cfg.vit).patch_size) if not self.cfg.vit_weights else \
                int(ViTConfig.from_pretrained(self.cfg.vit_weights, local_files_only=True).patch_size)
        return CropDataset(source, self.crops, self._patch)

    def train_dataset(self) -> Dataset:
        return self._dataset(self.train_source)

    def val_dataset(self) -> Dataset | None:
        return None if self.val_source is None else self._dataset(self.val_source)

    def param_groups(self, model: nn.Module):
        """Student parameters only (the teacher follows by EMA); DINO's groups: no weight decay on biases
        and 1-D (norm) parameters."""
        return decay_groups(unwrap(model).student.named_parameters())

    @property
    def epoch(self) -> int:
        """0-based epoch of the next optimiser step."""
        return self.step // self.steps_per_epoch if self.steps_per_epoch else 0

    def _scores(self, net: S3PTNet, x: torch.Tensor, frozen_last: bool = False):
        """Prototype scores (n, K) and the prototype norms (vMF) of ``net``'s head; with ``frozen_last``
        the prototypes are detached, so the last layer gets no gradient (DINO's freeze: grad None, the
        optimiser skips it)."""
        z = net.head.embed(x)
        w = net.head.prototypes()
        if frozen_last:
            w = w.detach()
        return z @ w.T, (w.norm(dim=1) if self.cfg.vmf else None)

    def _objects(self, t_tokens, positions, depth, seed: int | None = None):
        """Teacher clustering of each image's two global views: per image the (2P, M_kept) assignment of the
        clusters present in both views. Initial centroids from torch's global RNG (seeded and checkpointed
        by the trainer), or from ``seed`` (evaluation: leaves the global RNG alone)."""
        n_global, b = 2, positions.shape[0]
        p = t_tokens.shape[1]
        t = t_tokens.view(n_global, b, p, -1)
        out = []
        for i in range(b):
            d = depth[i] if self.cfg.depth_beta > 0 else None
            if d is not None:
                # tokens without depth (sky, no LiDAR return) are put at the farthest depth of the pair
                # (our choice; the paper completes depth densely with IP-Basic)
                far = torch.nan_to_num(d, nan=-1.0).max().clamp_min(0.0)
                d = torch.where(torch.isnan(d), far, d)
            g = torch.Generator().manual_seed(int(torch.randint(0, 2 ** 31 - 1, ())) if seed is None else seed + i)
            cl = joint_view_clustering(t[:, i].float().cpu(), positions[i].float().cpu(), self.cfg.n_clusters,
                                       sinkhorn_lambda=self.cfg.sinkhorn_lambda, sk_iters=self.cfg.sk_iters,
                                       n_outer=self.cfg.n_outer, pos_alpha=self.cfg.pos_alpha,
                                       depth=None if d is None else d.float().cpu(), depth_beta=self.cfg.depth_beta,
                                       generator=g)
            out.append(cl.assignment[:, cl.valid].to(t_tokens.device))
        return out

    def loss(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        cfg, bare = self.cfg, unwrap(model)
        frozen = self.epoch < cfg.freeze_last_layer_epochs
        for mod in (self.global_loss, self.object_loss, self.cross_image_loss, self.queue):
            mod.to(batch["global"].device)
        s_cls, s_tok = model(batch["global"], batch["local"])
        with torch.no_grad():
            t_cls, t_tok = bare.teacher(batch["global"].transpose(0, 1).flatten(0, 1))
            t_scores, t_norms = self._scores(bare.teacher, t_cls)
        s_scores, s_norms = self._scores(bare.student, s_cls, frozen)
        terms = {"global": self.global_loss(s_scores, t_scores, self.epoch, s_norms, t_norms)}
        if not cfg.object_terms:
            return terms
        b, p = batch["global"].shape[0], t_tok.shape[1]
        assigns = self._objects(t_tok, batch["positions"], batch["depth"])
        tv, sv = t_tok.view(2, b, p, -1), s_tok.view(2, b, p, -1)
        t_obj, s_obj = [[], []], [[], []]
        for i, a in enumerate(assigns):
            for v in range(2):
                t_obj[v].append(object_features(tv[v, i], a[v * p:(v + 1) * p]))
                s_obj[v].append(object_features(sv[v, i], a[v * p:(v + 1) * p]))
        t_obj = torch.cat([torch.cat(t_obj[0]), torch.cat(t_obj[1])])   # (2 N, D) view-major
        s_obj = torch.cat([torch.cat(s_obj[0]), torch.cat(s_obj[1])])
        if t_obj.shape[0] == 0:
            # no cluster spans both views in any image: nothing to match (zero terms, centres untouched)
            zero = s_tok.sum() * 0.0
            terms.update(object_cross_view=zero, object_cross_image=zero)
            return terms
        with torch.no_grad():
            to_scores, _ = self._scores(bare.teacher, t_obj)
            t_emb = bare.teacher.head.embed(t_obj)
        so_scores, _ = self._scores(bare.student, s_obj, frozen)
        terms["object_cross_view"] = self.object_loss(so_scores, to_scores, self.epoch, s_norms, t_norms)
        if len(self.queue):
            with torch.no_grad():
                nn_emb, _, _ = self.queue.nearest(t_emb)
                nn_scores = nn_emb @ bare.teacher.head.prototypes().T
            terms["object_cross_image"] = self.cross_image_loss(so_scores, nn_scores, self.epoch, s_norms, t_norms)
        else:
            terms["object_cross_image"] = so_scores.sum() * 0.0
        self.queue.push(t_emb)
        return terms

    def after_step(self, model: nn.Module, step: int, total_steps: int) -> None:
        """EMA teacher update with m(step) = cosine 0.996 -> 1 over all steps (DINO's per-iteration
        schedule: value index step - 1), and the step counter behind the temperature warm-up and the
        last-layer freeze."""
        if total_steps % self.cfg.epochs:
            raise ValueError(f"total_steps={total_steps} is not a multiple of S3PTConfig.epochs={self.cfg.epochs}: "
                             "TrainConfig.epochs must equal S3PTConfig.epochs")
        self.steps_per_epoch = total_steps // self.cfg.epochs
        if self._momentum is None or self._momentum[0] != total_steps:
            self._momentum = (total_steps, cosine_schedule(self.cfg.momentum_teacher, 1.0, total_steps))
        self.step = step
        bare = unwrap(model)
        ema_update(bare.teacher, bare.student, float(self._momentum[1][step - 1]))

    def momentum(self, step: int, total_steps: int) -> float:
        """Teacher momentum used after optimiser step ``step`` (1-based) of ``total_steps``."""
        return float(cosine_schedule(self.cfg.momentum_teacher, 1.0, total_steps)[step - 1])

    def state_dict(self) -> dict:
        return {"step": self.step, "steps_per_epoch": self.steps_per_epoch,
                "global_center": self.global_loss.center.detach().cpu().clone(),
                "object_center": self.object_loss.center.detach().cpu().clone(),
                "cross_image_center": self.cross_image_loss.center.detach().cpu().clone(),
                "queue": {k: v.detach().cpu().clone() for k, v in self.queue.state_dict().items()}}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.steps_per_epoch = int(state["step"]), int(state["steps_per_epoch"])
        for name, mod in (("global_center", self.global_loss), ("object_center", self.object_loss),
                          ("cross_image_center", self.cross_image_loss)):
            mod.center.copy_(state[name].to(mod.center.device))
        self.queue.load_state_dict({k: v.to(self.queue.features.device) for k, v in state["queue"].items()})

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches, reduce) -> dict[str, float]:
        """Cheap proxies (no state changes): ``val_global_ce``, the cross-view cross-entropy between the
        teacher's centred targets of one global view and the student's prediction of the other (current
        temperature, centre not updated); ``teacher_cls_std``, the mean per-dimension std of the
        L2-normalised teacher bottleneck embeddings of [CLS] (DINO's collapse monitor; 0 = collapse,
        1/sqrt(bottleneck) for uniform spread); ``teacher_entropy``, entropy (nats) of the teacher's mean
        distribution over the K prototypes (prototype usage); ``objects_per_image`` (cribo/s3pt)."""
        ce_sum, n, s1, s2, p_sum, n_obj = 0.0, 0, None, None, None, 0
        for k, batch in enumerate(batches):
            g = batch["global"].transpose(0, 1).flatten(0, 1)
            t_cls, t_tok = model.teacher(g)
            s_cls, _ = model.student(g)
            t_scores, t_norms = self._scores(model.teacher, t_cls)
            s_scores, s_norms = self._scores(model.student, s_cls)
            q, _ = self.global_loss.teacher_probs(t_scores, self.epoch, t_norms)
            lp = F.log_softmax(self.global_loss._logits(s_scores, self.global_loss.student_temp, s_norms), dim=-1)
            b = batch["global"].shape[0]
            q1, q2 = q.chunk(2)
            l1, l2 = lp.chunk(2)
            ce_sum += float(((-(q1 * l2).sum(-1)) + (-(q2 * l1).sum(-1))).sum() / 2)
            n += b
            z = model.teacher.head.embed(t_cls).double()
            s1 = z.sum(0) if s1 is None else s1 + z.sum(0)
            s2 = (z ** 2).sum(0) if s2 is None else s2 + (z ** 2).sum(0)
            probs = q.double().sum(0)
            p_sum = probs if p_sum is None else p_sum + probs
            if self.cfg.object_terms:
                n_obj += sum(a.shape[1] for a in self._objects(t_tok, batch["positions"], batch["depth"],
                                                                   seed=1000 * k))
        n = reduce(n)
        if not n:
            return {}
        s1, s2, p_sum = reduce(s1), reduce(s2), reduce(p_sum)
        mean = s1 / (2 * n)
        std = (s2 / (2 * n) - mean ** 2).clamp_min(0).sqrt().mean()
        pm = p_sum / p_sum.sum()
        out = {"val_global_ce": float(reduce(ce_sum)) / n, "teacher_cls_std": float(std),
               "teacher_entropy": float(-(pm * pm.clamp_min(1e-30).log()).sum())}
        if self.cfg.object_terms:
            out["objects_per_image"] = float(reduce(n_obj)) / n
        return out
