"""Combined-datasets multimodal BEV pre-training as a :class:`bevlib.train.Task`
(combined-datasets-bev-pretraining.md, Secs. 3.1-3.3, Eqs. 1-5; Appendix A Table 7).

Model (:class:`CombinedModel`)::

    images (B, 6, 3, H, W) --[MAE: random patches set to 0]--> Swin + neck (f_img) --> (B*6, C, h, w)
        |-- LSS (K, ego_T_cam) --> camera BEV (B, C_lss, S, S) --1x1--> x (B, P, S, S)      Eq. 2
        '-- MAE decoder: 3x3 conv, GELU, 1x1 conv to stride^2 * 3 values, pixel shuffle
             --> reconstructed image --> patches                                             Eq. 4
    points [(N_b, 4)] --> voxel set transformer (f_pcd) --> LiDAR BEV (B, C_vt, S, S) --1x1--> y

Loss terms (the trainer minimises their sum, Eq. 1 ``L_All = L_MAE + L_CL``):

* ``mae`` -- :func:`bevlib.ssl.bev_losses.mae_loss` on the masked patches (targets: the
  ImageNet-normalised input images; the paper reconstructs "the original images");
* ``cl`` -- :func:`bevlib.ssl.bev_losses.bev_infonce` (Eq. 3) over K cells drawn per sample among the
  cells that hold LiDAR points (an empty cell's LiDAR feature is the zero vector: a degenerate
  positive; restricting the draw is our choice, the paper only says "randomly sampled some locations").

``use_mae`` / ``use_cl`` drop a term (Table 2's ablations; a dropped term is absent from the dict).
Both branches and the MAE decoder see the same masked images (one Swin pass, ``cl_on_masked=True``,
our choice: the paper does not say whether LSS sees the masked or the clean images;
``cl_on_masked=False`` runs a second, clean pass for LSS).

:class:`BranchEncoder` hands one pretrained branch (before its projection head) to the downstream
fused BEV segmentation model (:mod:`.bevseg`).

PromptNorm (Sec. 3.2, Eq. 5, ``prompt=True``): every LayerNorm of the Swin encoder and of the voxel set
transformer becomes a :class:`bevlib.models.promptnorm.PromptNorm` (one prompt table per backbone,
each with its own adapters), and each sample uses its own dataset's prompt (the batch's
``dataset_index``). The swap happens after every other module is built, so with the same seed a
prompted model starts with exactly the weights -- and, the adapters being zero-initialised, the
outputs -- of the prompt-less one.

The BEV grid: S x S cells over +-``bev_range`` m (paper 128 x 128; BEVFusion's +-51.2 m, 0.8 m cells);
LSS collapses z in [-10, 10) m, the LiDAR branch uses one pillar over z in ``lidar_z`` (DSVT's 8 m
pillar height). Both grids share the x / y cells, so cell m of one map corresponds to cell m of the
other (Sec. 3.1's positive pairs). Frames: ego (x forward, y left, z up, metres).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from bevlib.models.lss import LSSTransform, SwinBackbone
from bevlib.models.promptnorm import dataset_prompt, prompt_norms, replace_layernorms
from bevlib.models.voxel_transformer import VoxelSetTransformer, VoxelSetTransformerConfig
from bevlib.ssl.bev_losses import bev_infonce, mae_loss, mask_patches, patchify, random_patch_mask
from bevlib.train import Task, TrainConfig, decay_groups, unwrap
from bevlib.voxel import VoxelGrid

from .data import POINT_FEATURES, collate_keyframes

__all__ = ["CombinedConfig", "CombinedModel", "CombinedPretrainTask", "paper_config", "paper_train_config",
           "prompt_parameters", "BranchEncoder"]

_CAMERAS = 6


@dataclass(frozen=True)
class CombinedConfig:
    """Everything the pre-training task contributes to a run. Defaults are a small CPU setting; the
    paper's values (or ours where the paper states none) are in the comments and :func:`paper_config`.

    swin: Swin preset name of :data:`bevlib.models.lss.SWIN_PRESETS` or SwinConfig fields (paper
        "tiny" = Swin-T, random init). neck_channels: Swin neck output (BEVFusion 256).
    lss_channels: camera BEV channels (BEVFusion / paper 80). dbound: LSS depth bins (start, stop,
        step) metres (BEVFusion-style (1, 60, 1): D = 59).
    bev_size: S, BEV cells per side (paper 128). bev_range: half extent, metres (51.2).
    lidar_z: (z_min, z_max) metres of the LiDAR pillar (DSVT's 8 m voxel height: (-5, 3)).
    voxel: :class:`VoxelSetTransformerConfig` fields (``point_features`` is forced to 1).
    proj_dim: common width of the two 1x1 projection heads (not stated; ours 128).
    k: cells per sample of Eq. 3 (not stated; ours 1024). tau: Eq. 3 temperature (not stated; 0.07).
    mask_ratio: masked share of the image patches (not stated; ours 0.6, SimMIM's for Swin).
    mae_patch: masking patch, pixels (not stated; ours 32, SimMIM's for Swin); must divide H and W.
    mae_hidden: width of the MAE decoder's hidden conv (ours).
    use_mae / use_cl: keep the term (Table 2: full, -MAE, -CL).
    cl_on_masked: LSS sees the masked images (one Swin pass) or a second, clean pass.
    prompt: PromptNorm in both backbones (Eq. 5). n_datasets: prompts (paper 3). prompt_dim,
        adapter_hidden: as :func:`replace_layernorms` (not stated; 16, 64).
    image_wh: (w, h) input images (paper 704 x 256); each must be a multiple of 8 (the Swin
        neck's stride) and of ``mae_patch``.
    point_feature: :data:`bevlib.experiments.combined.data.POINT_FEATURES` (ours "intensity").
    lr (Table 7: 4e-4; Tables 4-6: 2e-4), weight_decay (0.01), epochs (50), warmup_epochs (5),
        min_lr_ratio (0.01): read by :func:`paper_train_config` only.
    Raises: ValueError naming the field for bad values.
    """
    swin: str | dict = "test"            # paper "tiny" (Swin-T)
    neck_channels: int = 32              # paper (BEVFusion) 256
    lss_channels: int = 16               # paper 80
    dbound: tuple = (1.0, 60.0, 2.0)     # paper (1, 60, 1): D = 59
    bev_size: int = 128                  # paper 128
    bev_range: float = 51.2              # BEVFusion +-51.2 m
    lidar_z: tuple = (-5.0, 3.0)         # DSVT pillar height 8 m
    voxel: dict = field(default_factory=lambda: dict(dim=32, depth=2, heads=2, window=(8, 8), set_size=36))
    proj_dim: int = 32                   # ours 128
    k: int = 256                         # ours 1024
    tau: float = 0.07
    mask_ratio: float = 0.6
    mae_patch: int = 16                  # ours 32
    mae_hidden: int = 32                 # ours 256
    use_mae: bool = True
    use_cl: bool = True
    cl_on_masked: bool = True
    prompt: bool = False
    n_datasets: int = 3                  # nuScenes, Lyft, ONCE
    prompt_dim: int = 16
    adapter_hidden: int = 64
    image_wh: tuple = (176, 64)          # paper (704, 256)
    point_feature: str = "intensity"
    lr: float = 4e-4                     # Table 7; 2e-4 for Tables 4-6
    weight_decay: float = 0.01
    epochs: int = 50
    warmup_epochs: int = 5
    min_lr_ratio: float = 0.01

    def __post_init__(self):
        def bad(name, msg):
            raise ValueError(f"CombinedConfig.{name} {msg}, got {getattr(self, name)!r}")
        for name in ("neck_channels", "lss_channels", "bev_size", "proj_dim", "k", "mae_patch", "mae_hidden",
                     "n_datasets", "prompt_dim", "adapter_hidden", "epochs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                bad(name, "must be an int >= 1")
        if not self.tau > 0:
            bad("tau", "must be > 0")
        if not 0.0 <= self.mask_ratio <= 1.0:
            bad("mask_ratio", "must lie in [0, 1]")
        if not self.bev_range > 0:
            bad("bev_range", "must be > 0")
        if len(self.lidar_z) != 2 or not self.lidar_z[1] > self.lidar_z[0]:
            bad("lidar_z", "must be (z_min, z_max) with z_max > z_min")
        if len(self.image_wh) != 2 or any(int(v) < 1 or int(v) % 8 or int(v) % self.mae_patch
                                          for v in self.image_wh):
            bad("image_wh", f"must be (w, h), each a positive multiple of 8 and of mae_patch={self.mae_patch}")
        if self.point_feature not in POINT_FEATURES:
            bad("point_feature", f"must be one of {POINT_FEATURES}")
        if not (self.use_mae or self.use_cl):
            bad("use_mae", "and use_cl cannot both be False (no loss left)")
        if self.warmup_epochs < 0 or not 0 < self.min_lr_ratio <= 1 or not self.lr > 0 or self.weight_decay < 0:
            bad("lr", "/ weight_decay / warmup_epochs / min_lr_ratio out of range")
        self.voxel_config()   # validates the voxel transformer fields
        object.__setattr__(self, "dbound", tuple(float(v) for v in self.dbound))
        object.__setattr__(self, "lidar_z", tuple(float(v) for v in self.lidar_z))
        object.__setattr__(self, "image_wh", tuple(int(v) for v in self.image_wh))

    def voxel_config(self) -> VoxelSetTransformerConfig:
        kw = dict(self.voxel)
        kw["point_features"] = 1
        if "window" in kw:
            kw["window"] = tuple(kw["window"])
        return VoxelSetTransformerConfig(**kw)

    def lss_grid(self) -> VoxelGrid:
        """Camera BEV grid: S x S cells over +-bev_range, one level over z in [-10, 10) (BEVFusion)."""
        r = self.bev_range
        return VoxelGrid(-r, r, -r, r, -10.0, 10.0, Z=1, H=self.bev_size, W=self.bev_size)

    def lidar_grid(self) -> VoxelGrid:
        """LiDAR pillar grid: the camera grid's x / y cells, one pillar over ``lidar_z``."""
        r = self.bev_range
        return VoxelGrid(-r, r, -r, r, self.lidar_z[0], self.lidar_z[1], Z=1, H=self.bev_size, W=self.bev_size)


def paper_config(multi_dataset: bool = False, **overrides) -> CombinedConfig:
    """The paper's setting (Sec. 4.1, Appendix A/C.2): Swin-T + LSS (80 channels, D = 59) at 704 x 256,
    a DSVT-sized voxel set transformer (dim 128, 4 blocks, 8 heads, window 12 x 12 pillars, set 36),
    128 x 128 BEV maps; lr 4e-4 (Table 7), or 2e-4 with ``multi_dataset`` (Tables 4-6). Values the paper
    does not state are ours (see :class:`CombinedConfig`)."""
    kw = dict(swin="tiny", neck_channels=256, lss_channels=80, dbound=(1.0, 60.0, 1.0), bev_size=128,
              voxel=dict(dim=128, depth=4, heads=8, window=(12, 12), set_size=36), proj_dim=128, k=1024,
              tau=0.07, mask_ratio=0.6, mae_patch=32, mae_hidden=256, image_wh=(704, 256),
              lr=2e-4 if multi_dataset else 4e-4, weight_decay=0.01, epochs=50, warmup_epochs=5, min_lr_ratio=0.01)
    kw.update(overrides)
    return CombinedConfig(**kw)


def paper_train_config(cfg: CombinedConfig, n_train: int, batch_size: int = 32, **overrides) -> TrainConfig:
    """Appendix A, Table 7: AdamW, batch 32, ``cfg.epochs`` epochs, linear warm-up over
    ``cfg.warmup_epochs`` then cosine to ``cfg.min_lr_ratio`` x lr, weight decay ``cfg.weight_decay``.
    Raises: ValueError for n_train or batch_size < 1."""
    if n_train < 1 or batch_size < 1:
        raise ValueError(f"n_train and batch_size must be >= 1, got {n_train}, {batch_size}")
    n_batches = math.ceil(n_train / batch_size)
    kw = dict(epochs=cfg.epochs, batch_size=batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
              optimizer="adamw", schedule="warmup_cosine",
              warmup_steps=min(cfg.warmup_epochs, cfg.epochs) * n_batches, min_lr_ratio=cfg.min_lr_ratio)
    kw.update(overrides)
    return TrainConfig(**kw)


class CombinedModel(nn.Module):
    """Camera branch (Swin -> LSS), LiDAR branch (voxel set transformer), projection heads and MAE
    decoder (module docstring).

    Args: cfg: :class:`CombinedConfig`.
    Attributes: ``swin``, ``lss``, ``lidar``, ``cam_proj``, ``lidar_proj``, ``decoder``; ``stride``
        (8, the Swin map's); ``n_prompt_norms`` (norms swapped; 0 without ``prompt``).
    """

    def __init__(self, cfg: CombinedConfig):
        super().__init__()
        self.cfg = cfg
        self.swin = SwinBackbone(cfg.swin, out_channels=cfg.neck_channels, out_stride=8)
        self.stride = self.swin.stride
        self.lss = LSSTransform(cfg.neck_channels, cfg.lss_channels, dbound=cfg.dbound, grid=cfg.lss_grid())
        vcfg = cfg.voxel_config()
        self.lidar = VoxelSetTransformer(cfg.lidar_grid(), vcfg)
        self.cam_proj = nn.Conv2d(cfg.lss_channels, cfg.proj_dim, 1)
        self.lidar_proj = nn.Conv2d(vcfg.dim, cfg.proj_dim, 1)
        s = self.stride
        self.decoder = nn.Sequential(nn.Conv2d(cfg.neck_channels, cfg.mae_hidden, 3, padding=1), nn.GELU(),
                                     nn.Conv2d(cfg.mae_hidden, 3 * s * s, 1), nn.PixelShuffle(s))
        self.n_prompt_norms = 0
        if cfg.prompt:
            # last, so the RNG draws of every other module match the prompt-less model's (same seed)
            self.n_prompt_norms = (replace_layernorms(self.swin.encoder, cfg.n_datasets, cfg.prompt_dim,
                                                      cfg.adapter_hidden)
                                   + replace_layernorms(self.lidar, cfg.n_datasets, cfg.prompt_dim,
                                                        cfg.adapter_hidden))

    def image_features(self, images: torch.Tensor, dataset_index: torch.Tensor | None) -> torch.Tensor:
        """(B*6, 3, H, W) normalised images -> (B*6, neck_channels, H/8, W/8). With ``prompt``,
        ``dataset_index`` (B,) selects each sample's prompt for its 6 images; None leaves the norms'
        own setting (prompt mode "none" / a fixed index; mode "own" then raises PromptNorm's ValueError)."""
        if not self.cfg.prompt or dataset_index is None:
            return self.swin(images)
        per_image = dataset_index.to(images.device).long().repeat_interleave(images.shape[0] // dataset_index.numel())
        with dataset_prompt(self.swin, per_image):
            return self.swin(images)

    def camera_bev(self, images: torch.Tensor, K: torch.Tensor, ego_T_cam: torch.Tensor,
                   dataset_index: torch.Tensor | None = None) -> torch.Tensor:
        """Eq. 2 ``BEV_img = LSS(f_img(I), theta_ce)`` before the projection head: images (B, 6, 3, H, W),
        K (B, 6, 3, 3), ego_T_cam (B, 6, 4, 4) -> (B, lss_channels, S, S) (the downstream camera BEV)."""
        H, W = images.shape[-2:]
        return self.lss(self.image_features(images.flatten(0, 1), dataset_index), K, ego_T_cam, (H, W))

    def lidar_bev(self, points: list[torch.Tensor], dataset_index: torch.Tensor | None = None) -> torch.Tensor:
        """Eq. 2 ``BEV_pcd = f_pcd(P)`` before the projection head: B sweeps (N_b, 4) ->
        (B, voxel dim, S, S) (the downstream LiDAR BEV)."""
        return self.lidar(points, dataset_index if self.cfg.prompt else None)

    def occupancy(self, points: list[torch.Tensor]) -> torch.Tensor:
        """(B, S, S) bool: BEV cells holding at least one LiDAR point of the pillar grid."""
        g = self.lidar.grid
        occ = torch.zeros(len(points), g.H * g.W, dtype=torch.bool, device=points[0].device)
        for b, p in enumerate(points):
            idx, valid = g.points_to_voxels(p[:, :3])
            idx = idx[valid & torch.isfinite(p).all(-1)]
            occ[b, idx[:, 1] * g.W + idx[:, 2]] = True
        return occ.view(len(points), g.H, g.W)

    def forward(self, images: torch.Tensor, K: torch.Tensor, ego_T_cam: torch.Tensor, points: list[torch.Tensor],
                dataset_index: torch.Tensor | None = None, patch_mask: torch.Tensor | None = None) -> dict:
        """One pre-training forward.

        Args:
            images: (B, 6, 3, H, W) float ImageNet-normalised; K: (B, 6, 3, 3) pixels at (H, W);
            ego_T_cam: (B, 6, 4, 4) camera -> ego, metres; points: B tensors (N_b, 4) ego metres + feature;
            dataset_index: (B,) int64 (with ``prompt``: each sample's prompt; None: see :meth:`image_features`);
            patch_mask: (B*6, n_patches) bool of :func:`random_patch_mask` at ``mae_patch`` (True =
                masked, set to zero), or None (no masking, no MAE outputs).
        Returns: dict with, as configured: ``cam_bev``, ``lidar_bev`` (B, proj_dim, S, S), ``occupancy``
            (B, S, S) bool (``use_cl``); ``mae_pred``, ``mae_target`` (B*6, n_patches, mae_patch^2 * 3)
            (when ``patch_mask`` is given).
        Raises: ValueError for mismatched shapes, or from PromptNorm (prompt mode "own" without
            ``dataset_index``, an index out of range).
        """
        cfg = self.cfg
        if images.dim() != 5 or images.shape[1:3] != (_CAMERAS, 3):
            raise ValueError(f"images must be (B, 6, 3, H, W), got {tuple(images.shape)}")
        B, N, _, H, W = images.shape
        if len(points) != B:
            raise ValueError(f"points must hold one sweep per sample ({B}), got {len(points)}")
        flat = images.flatten(0, 1)
        out = {}
        feats = None
        if patch_mask is not None:
            masked = mask_patches(flat, patch_mask, cfg.mae_patch)
            feats = self.image_features(masked, dataset_index)
            rec = self.decoder(feats)[..., :H, :W]          # Swin pads odd sizes: crop back
            out["mae_pred"] = patchify(rec, cfg.mae_patch)
            out["mae_target"] = patchify(flat, cfg.mae_patch)
        if cfg.use_cl:
            if feats is None or not cfg.cl_on_masked:
                feats = self.image_features(flat, dataset_index)
            cam = self.lss(feats, K, ego_T_cam, (H, W))
            lid = self.lidar_bev(points, dataset_index)
            out["cam_bev"], out["lidar_bev"] = self.cam_proj(cam), self.lidar_proj(lid)
            out["occupancy"] = self.occupancy(points)
        return out


class CombinedPretrainTask(Task):
    """Combined-datasets pre-training (module docstring): loss terms ``mae`` and ``cl``.

    Args:
        cfg: :class:`CombinedConfig`.
        train_data / val_data: datasets of keyframe items (:class:`.data.KeyframeItems` or
            :func:`.data.mixed_keyframes`); val may be None.
        data_identity: JSON-able description of the data (part of the run's hash).
    Randomness: the patch masks and the InfoNCE cells come from torch's global RNG in :meth:`loss`
    (seeded and checkpointed by the trainer); :meth:`evaluate` uses its own generator per batch.
    Raises: ValueError from the config.
    """

    headline_metrics = ("val_mae", "val_cl", "val_loss")

    def __init__(self, cfg: CombinedConfig, train_data: Dataset, val_data: Dataset | None = None,
                 data_identity: dict | None = None):
        self.cfg = cfg
        self.train_data, self.val_data = train_data, val_data
        self.data_identity = data_identity or {}

    def config(self) -> dict:
        return {"combined": asdict(self.cfg), "data": self.data_identity}

    def build_model(self) -> nn.Module:
        return CombinedModel(self.cfg)

    def train_dataset(self) -> Dataset:
        return self.train_data

    def val_dataset(self) -> Dataset | None:
        return self.val_data

    def collate(self, items: list):
        return collate_keyframes(items)

    def param_groups(self, model: nn.Module):
        """No weight decay on biases, 1-D (norm) parameters and the dataset prompts."""
        return decay_groups(unwrap(model).named_parameters(), exclude=("prompts.",))

    def n_patches(self) -> int:
        w, h = self.cfg.image_wh
        return (w // self.cfg.mae_patch) * (h // self.cfg.mae_patch)

    def checked_images(self, batch: dict) -> torch.Tensor:
        """The batch's (B, 6, 3, h, w) images. Raises: ValueError when (h, w) is not ``cfg.image_wh``."""
        images = batch["images"]
        if tuple(images.shape[-2:]) != (self.cfg.image_wh[1], self.cfg.image_wh[0]):
            raise ValueError(f"batch images are {tuple(images.shape[-2:])} (h, w), CombinedConfig.image_wh is "
                             f"{self.cfg.image_wh} (w, h)")
        return images

    def terms(self, model: nn.Module, batch: dict, generator: torch.Generator | None = None) -> dict:
        """The loss terms of a batch, with masks and cells drawn from ``generator`` (None: global RNG).
        Raises: ValueError when the batch's image size differs from ``cfg.image_wh``."""
        cfg = self.cfg
        images = self.checked_images(batch)
        B, N = images.shape[:2]
        mask = (random_patch_mask(B * N, self.n_patches(), cfg.mask_ratio, generator, device=images.device)
                if cfg.use_mae else None)
        out = model(images, batch["K"], batch["ego_T_cam"], batch["points"], batch.get("dataset_index"), mask)
        terms = {}
        if cfg.use_mae:
            terms["mae"] = mae_loss(out["mae_pred"], out["mae_target"], mask)
        if cfg.use_cl:
            terms["cl"] = bev_infonce(out["cam_bev"], out["lidar_bev"], k=cfg.k, tau=cfg.tau, generator=generator,
                                      mask=out["occupancy"])
        return terms

    def loss(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        return self.terms(model, batch)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches, reduce) -> dict[str, float]:
        """Sample-weighted mean of each term over the validation set (``val_mae``, ``val_cl``) and their
        sum ``val_loss``; masks and cells from a generator seeded by the batch number, so equal models
        give equal numbers."""
        sums, n = {}, 0
        for k, batch in enumerate(batches):
            g = torch.Generator().manual_seed(10_000 + k)
            b = batch["images"].shape[0]
            for name, v in self.terms(model, batch, g).items():
                sums[name] = sums.get(name, 0.0) + float(v) * b
            n += b
        n = reduce(n)
        if not n:
            return {}
        out = {f"val_{name}": float(reduce(v)) / n for name, v in sums.items()}
        out["val_loss"] = sum(out.values())
        return out


def prompt_parameters(model: nn.Module) -> list[torch.Tensor]:
    """The distinct prompt tables (``DatasetPrompts.weight``, (n_datasets, prompt_dim)) of a model."""
    seen, out = set(), []
    for m in prompt_norms(unwrap(model)):
        w = m.prompts.weight
        if id(w) not in seen:
            seen.add(id(w))
            out.append(w)
    return out


class BranchEncoder(nn.Module):
    """One pretrained branch of a :class:`CombinedModel` as a batch-dict encoder for the downstream
    fused model (:class:`bevlib.experiments.combined.bevseg.BEVSegModel`'s ``camera_encoder`` /
    ``lidar_encoder``), with each sample's prompt applied per image / per window set.

    Args: model: a (pretrained) :class:`CombinedModel`, shared, not copied; branch: "camera" or "lidar".
    Forward: batch with ``images``, ``K``, ``ego_T_cam`` (camera) or ``points`` (lidar), optional
        ``dataset_index`` (B,) -> :meth:`CombinedModel.camera_bev` / :meth:`CombinedModel.lidar_bev`.
    Raises: ValueError naming ``branch`` when it is neither.
    """

    def __init__(self, model: CombinedModel, branch: str):
        super().__init__()
        if branch not in ("camera", "lidar"):
            raise ValueError(f"branch must be 'camera' or 'lidar', got {branch!r}")
        self.branch = branch
        # only this branch's modules are registered (what the downstream optimiser and prompt modes see)
        self.parts = nn.ModuleDict({"swin": model.swin, "lss": model.lss} if branch == "camera"
                                   else {"lidar": model.lidar})
        self._model = [model]   # a plain list, so the whole pretraining model is not registered

    @property
    def out_channels(self) -> int:
        m = self._model[0]
        return m.cfg.lss_channels if self.branch == "camera" else m.lidar.config.dim

    def forward(self, batch: dict) -> torch.Tensor:
        m, idx = self._model[0], batch.get("dataset_index")
        if self.branch == "camera":
            return m.camera_bev(batch["images"], batch["K"], batch["ego_T_cam"], idx)
        return m.lidar_bev(batch["points"], idx)
