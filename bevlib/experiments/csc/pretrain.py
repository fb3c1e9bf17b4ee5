"""CSC / SLidR pre-training of a MinkUNet as a :class:`bevlib.train.Task` (chen2024-csc.md, Secs. 3-4).

Per batch (B keyframes, 6 cameras, frames: ego x forward / y left / z up, metres; cameras OpenCV)::

    points [(P_b, 4) ego xyz + intensity/255] --MinkUNet.forward_points--> (P, C) --3D head (Linear)--> (P, D)
        --(L2-normalise, SLidR)--> mean per superpoint                                     -> F_3D (S, D)
    images (B, 6, 3, H, W) --frozen ViT--> patch tokens (B*6, hidden, H/p, W/p) --2D head (1x1 conv)-->
        (B*6, D, H/p, W/p) --bilinear upsample to (H, W)--> (L2-normalise) --> mean per superpixel -> F_2D (S, D)
    matched pairs: the superpixels holding at least one LiDAR point (M <= S); row i of F_2D / F_3D is pair i.

Loss terms (the trainer minimises their sum, Eq. 6 ``L = L_sp + 1{n > lambda} L_pro``):

* ``sp`` -- :func:`bevlib.ssl.csc.superpixel_contrast` (Eq. 5, tau_sp = 0.07);
* ``pro`` -- :func:`bevlib.ssl.csc.prototype_contrast` (Eq. 4, tau_pro = 1.0) against per-sign prototypes of
  the batch (Eq. 1): the raw 3D prototypes P_3D (Table 5 row 3) or MMPB's P_mix from P_2D and P_3D (Eqs. 2-3,
  row 4); present only from 0-based epoch ``lam`` on (:func:`bevlib.ssl.csc.prototype_loss_active`).

Choices (ours, or where the text is silent):

* Prototypes of the current batch (the authors' code keeps a per-epoch buffer over the whole training set);
  P_2D / P_3D are detached (``detach_prototypes``) as the code computes them without gradient; MMPB is
  trained through L_pro. A pair's semantic sign is its superpixel's.
* Per-pixel / per-point features are L2-normalised before pooling (SLidR's ``normalize_features``), so the
  pooled embeddings enter Eq. 5 as they are (``normalize=False``) and Eq. 4's scalar product is bounded.
* The 2D network is a ``transformers`` ViT, frozen (no gradient, always eval mode), random init unless local
  weights (``vit_weights``) or a state dict (e.g. the S3PT notebook's student) are given: with a random
  encoder the "distilled" 2D features are a fixed random projection (stated in :meth:`CSCPretrainTask.config`).
* The trainer has no epoch hook: the task counts optimiser steps in :meth:`CSCPretrainTask.after_step` and
  takes ``epoch = step // (total_steps / CSCConfig.epochs)`` (as :mod:`bevlib.experiments.s3pt.pretrain`);
  ``CSCConfig.epochs`` must equal ``TrainConfig.epochs``. A batch skipped after a loss spike shifts the
  switch-on of L_pro by that many steps.
* Points are in the ego frame (the ``lidar`` field's ``lidar_points``), not the LiDAR frame.
* The VFM is :func:`bevlib.data.superpixels.semantic_superpixels` on the embedded world's exact camera
  semantics (:func:`bevlib.data.world.load_camera_semantics`) with sign noise; T = its class count.

Not reproduced: SLidR's data augmentation (random rotation / flip / crop of points and images) and its
superpixel dropout; the paper's 50-epoch SGD schedule is the caller's :class:`bevlib.train.TrainConfig`.
"""
from __future__ import annotations

import hashlib
import zlib
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

from bevlib.data.superpoints import pool, superpoints
from bevlib.models.minkunet import MinkUNet, MinkUNetConfig, paper_config as mink_paper_config, tiny_config
from bevlib.ssl.csc import MMPB, prototype_contrast, prototype_loss_active, semantic_prototypes, superpixel_contrast
from bevlib.train import Task, decay_groups, unwrap

__all__ = ["CSCItems", "collate_csc", "CSCConfig", "CSCModel", "CSCPretrainTask", "table5_config", "TABLE5_ROWS",
           "state_dict_digest"]

SUPERPIXELS = ("slic", "semantic")
_CAMERAS = 6
# ImageNet statistics (ViT image processors' default), float32 (3, 1, 1)
_MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(3, 1, 1)
_STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(3, 1, 1)


def _n_world_classes() -> int:
    from bevlib.data.world.config import CAMERA_SEMANTIC_CLASSES
    return len(CAMERA_SEMANTIC_CLASSES)


# --- data ------------------------------------------------------------------------------------------------

class CSCItems(Dataset):
    """Keyframes with superpixels and superpoints, each computed once and then held in memory.

    Args:
        nusc: devkit database (``bevlib.data.nuscenes_data.open_nuscenes``).
        tokens: sample tokens in item order (non-empty).
        image_wh: (w, h) pixels images and superpixels are resized to / computed at (K follows).
        superpixels: ``"slic"`` (:func:`bevlib.data.superpixels.slic_superpixels`, SLidR; no semantic signs) or
            ``"semantic"`` (:func:`bevlib.data.superpixels.semantic_superpixels` of the embedded world's camera
            semantics, nearest-resized; needs a bevlib world).
        noise: semantic only: probability a superpixel's sign is wrong (the VFM's errors).
        n_split: semantic only: grid cells per image side of the over-segmentation.
        seed: semantic only: the noise of camera c of a keyframe is drawn from ``seed`` mixed with the
            sample token and c (independent of item order).
        n_classes: semantic only: T (default: :data:`bevlib.data.world.CAMERA_SEMANTIC_CLASSES` count).
        n_segments: slic only: SLIC segments per image (SLidR 150 at 1600 x 900).
        cache: keep costly keyframe fields in the on-disk field cache.
        segmenter: semantic only: a VFM (:class:`bevlib.data.vfm.VFMSegmenter`, or any callable (6, h, w, 3)
            uint8 -> (6, h, w) int classes with ``n_classes`` and ``identity``) labelling the resized images, for
            datasets without the world's camera semantics (real nuScenes); None: the world's semantics. Its
            ``n_classes`` is T unless ``n_classes`` is given.
    Item i: dict with ``images`` (6, 3, h, w) float32 ImageNet-normalised RGB; ``points`` (P, 4) float32 ego
        x, y, z metres and intensity / 255; ``superpixels`` (6, h, w) int64 sample-global superpixel ids
        0..S-1 (camera c's ids are offset by the superpixel count of cameras < c); ``superpoint`` (P,) int64
        the superpixel id a point projects into (:func:`bevlib.data.superpoints.superpoints`, first camera
        wins), -1 where no camera sees it; ``n_superpixels`` int S; ``signs`` (S,) int64 semantic sign of each
        superpixel (``"semantic"`` only); ``K`` (6, 3, 3), ``ego_T_cam`` (6, 4, 4) float32 (camera -> ego).
    Raises: ValueError naming ``tokens``, ``image_wh``, ``superpixels``, ``noise``, ``n_split`` or ``n_segments``;
        FileNotFoundError (on access, semantic) for a dataset without camera semantics.
    """

    def __init__(self, nusc, tokens, image_wh: tuple[int, int], superpixels: str = "slic", noise: float = 0.0,
                 n_split: int = 4, seed: int = 0, n_classes: int | None = None, n_segments: int = 150,
                 cache: bool = True, segmenter=None):
        from bevlib.data.fields import KeyframeConfig
        self.tokens = list(tokens)
        if not self.tokens:
            raise ValueError("tokens must hold at least one sample token")
        if len(image_wh) != 2 or min(int(v) for v in image_wh) < 2:
            raise ValueError(f"image_wh must be (w, h) pixels >= 2, got {image_wh!r}")
        if superpixels not in SUPERPIXELS:
            raise ValueError(f"superpixels must be one of {SUPERPIXELS}, got {superpixels!r}")
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"noise must be in [0, 1], got {noise!r}")
        if not (isinstance(n_split, int) and n_split >= 1):
            raise ValueError(f"n_split must be an int >= 1, got {n_split!r}")
        if not (isinstance(n_segments, int) and n_segments >= 1):
            raise ValueError(f"n_segments must be an int >= 1, got {n_segments!r}")
        self.nusc, self.superpixels = nusc, superpixels
        self.image_wh = (int(image_wh[0]), int(image_wh[1]))
        self.noise, self.n_split, self.seed, self.n_segments = float(noise), n_split, int(seed), n_segments
        if segmenter is not None and superpixels != "semantic":
            raise ValueError("a segmenter needs superpixels='semantic'")
        self.segmenter = segmenter
        self.n_classes = (int(n_classes) if n_classes is not None else
                          int(segmenter.n_classes) if segmenter is not None else _n_world_classes())
        self.kcfg = KeyframeConfig(fields=("cameras", "lidar"), image_wh=self.image_wh, cache=cache)
        self._items: dict[int, dict] = {}

    def identity(self) -> dict:
        """JSON-able description of the items' settings (for a run's hash; the dataset itself is the caller's)."""
        return {"image_wh": list(self.image_wh), "superpixels": self.superpixels, "noise": self.noise,
                "n_split": self.n_split, "seed": self.seed, "n_classes": self.n_classes,
                "n_segments": self.n_segments, "n_items": len(self.tokens),
                **({"vfm": self.segmenter.identity} if self.segmenter is not None else {})}

    def __len__(self) -> int:
        return len(self.tokens)

    def _maps(self, token: str, images: np.ndarray):
        from bevlib.data.superpixels import semantic_superpixels, slic_superpixels
        if self.superpixels == "slic":
            return [slic_superpixels(im, n_segments=self.n_segments) for im in images], None
        import cv2

        from bevlib.data.nuscenes_data import CAMERAS
        from bevlib.data.world import load_camera_semantics
        sample = self.nusc.get("sample", token)
        vfm = self.segmenter(images) if self.segmenter is not None else None
        maps, signs = [], []
        for c, cam in enumerate(CAMERAS):
            if vfm is not None:
                sem = vfm[c]
            else:
                sem = load_camera_semantics(self.nusc.dataroot, sample["data"][cam])
                sem = cv2.resize(sem, self.image_wh, interpolation=cv2.INTER_NEAREST)
            # the noise of one camera depends on (seed, token, camera) only, not on the item order
            s = zlib.crc32(f"{self.seed}/{token}/{c}".encode())
            ids, sign = semantic_superpixels(sem, None, n_split=self.n_split, noise=self.noise,
                                             n_classes=self.n_classes, seed=s)
            maps.append(ids)
            signs.append(sign)
        return maps, np.concatenate(signs)

    def _read(self, i: int) -> dict:
        from bevlib.data.fields import load_keyframe
        token = self.tokens[i]
        kf = load_keyframe(self.nusc, token, self.kcfg)
        w, h = self.image_wh
        maps, signs = self._maps(token, kf["images"])
        sp = superpoints(kf["lidar_points"], maps, kf["K"], kf["ego_T_cam"], (h, w))
        ids = np.stack([m.astype(np.int64) + sp.offsets[c] for c, m in enumerate(maps)])
        images = (kf["images"].astype(np.float32).transpose(0, 3, 1, 2) / 255.0 - _MEAN) / _STD
        points = np.concatenate([kf["lidar_points"].astype(np.float32),
                                 (kf["lidar_intensity"].astype(np.float32) / 255.0)[:, None]], 1)
        item = {"images": torch.from_numpy(np.ascontiguousarray(images, np.float32)),
                "points": torch.from_numpy(np.ascontiguousarray(points)),
                "superpixels": torch.from_numpy(ids),
                "superpoint": torch.from_numpy(sp.superpoint.astype(np.int64)),
                "n_superpixels": int(sp.n_superpoints),
                "K": torch.from_numpy(kf["K"].astype(np.float32)),
                "ego_T_cam": torch.from_numpy(kf["ego_T_cam"].astype(np.float32))}
        if signs is not None:
            item["signs"] = torch.from_numpy(signs.astype(np.int64))
        return item

    def __getitem__(self, i: int) -> dict:
        i = int(i)
        if not 0 <= i < len(self.tokens):
            raise IndexError(f"item {i} out of range for {len(self.tokens)} keyframes")
        if i not in self._items:
            self._items[i] = self._read(i)
        return dict(self._items[i])   # a fresh dict; the tensors are shared and never written


def collate_csc(items: list[dict]) -> dict:
    """Batch :class:`CSCItems` items; superpixel / superpoint ids become batch-global (sample b's ids are
    offset by the superpixel count of samples < b).

    Returns: ``images`` (B, 6, 3, h, w) float32; ``points`` list of B (P_b, 4); ``superpixels`` (B, 6, h, w)
        int64 in 0..S-1; ``superpoint`` (sum P_b,) int64 in the order of the concatenated points, -1 = unseen;
        ``n_superpixels`` int S; ``superpixel_offsets`` (B + 1,) int64; ``signs`` (S,) int64 when every item
        has signs; ``K`` (B, 6, 3, 3), ``ego_T_cam`` (B, 6, 4, 4).
    Raises: ValueError for an empty list, different image sizes, or items with and without signs.
    """
    if not items:
        raise ValueError("items must hold at least one item")
    if len({tuple(it["images"].shape) for it in items}) != 1:
        raise ValueError("items have different image shapes: use one image_wh")
    has_signs = {"signs" in it for it in items}
    if len(has_signs) != 1:
        raise ValueError("items mix superpixels with and without semantic signs")
    offsets = np.concatenate([[0], np.cumsum([int(it["n_superpixels"]) for it in items])]).astype(np.int64)
    sp = [it["superpixels"] + int(offsets[b]) for b, it in enumerate(items)]
    spt = [torch.where(it["superpoint"] >= 0, it["superpoint"] + int(offsets[b]), it["superpoint"])
           for b, it in enumerate(items)]
    out = {"images": torch.stack([it["images"] for it in items]), "points": [it["points"] for it in items],
           "superpixels": torch.stack(sp), "superpoint": torch.cat(spt), "n_superpixels": int(offsets[-1]),
           "superpixel_offsets": torch.from_numpy(offsets),
           "K": torch.stack([it["K"] for it in items]), "ego_T_cam": torch.stack([it["ego_T_cam"] for it in items])}
    if has_signs == {True}:
        out["signs"] = torch.cat([it["signs"] for it in items])
    return out


# --- config ----------------------------------------------------------------------------------------------

def _tiny_vit() -> dict:
    return dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, patch_size=8,
                image_size=64)


@dataclass(frozen=True)
class CSCConfig:
    """Everything the pre-training task contributes to a run (defaults: a CPU-sized setting).

    backbone: "tiny" (:func:`bevlib.models.minkunet.tiny_config`), "paper" (MinkUNet34C,
        :func:`bevlib.models.minkunet.paper_config`) or a dict of :class:`MinkUNetConfig` fields.
    vit: ``transformers.ViTConfig`` fields of the frozen 2D encoder (ignored when ``vit_weights`` is set).
    vit_weights: local ``ViTModel.from_pretrained`` directory (nothing is downloaded) or None.
    dim: D of the 2D / 3D heads (SLidR / CSC: 64).
    tau_sp, tau_pro: Eq. 5 / Eq. 4 temperatures (paper 0.07, 1.0). lam: lambda of Eq. 6, the 0-based epoch
        from which L_pro is on (paper 5).
    use_prototypes: add L_pro (needs ``superpixels="semantic"``). use_mmpb: P_mix by MMPB (Table 5 row 4)
        instead of the raw 3D prototypes (row 3); needs use_prototypes. mmpb_layers: (proj, fusion) Linear
        layers of :class:`bevlib.ssl.csc.MMPB` (ours: 2, 2).
    n_classes: T, number of semantic signs (None: the embedded world's camera classes).
    superpixels: "slic" | "semantic" (must match the items').
    image_wh: (w, h) of the items; each a multiple of the ViT patch.
    normalize_features: L2-normalise per-pixel / per-point features before pooling (SLidR).
    detach_prototypes: P_2D / P_3D without gradient (the authors' code).
    epochs: must equal ``TrainConfig.epochs`` (the epoch is counted from the steps).
    Raises: ValueError naming the field.
    """
    backbone: str | dict = "tiny"
    vit: dict = field(default_factory=_tiny_vit)
    vit_weights: str | None = None
    dim: int = 64
    tau_sp: float = 0.07
    tau_pro: float = 1.0
    lam: int = 5
    use_prototypes: bool = False
    use_mmpb: bool = False
    mmpb_layers: tuple = (2, 2)
    n_classes: int | None = None
    superpixels: str = "slic"
    image_wh: tuple = (96, 64)
    normalize_features: bool = True
    detach_prototypes: bool = True
    epochs: int = 50

    def __post_init__(self):
        def bad(name, msg):
            raise ValueError(f"CSCConfig.{name} {msg}, got {getattr(self, name)!r}")
        if isinstance(self.backbone, str) and self.backbone not in ("tiny", "paper"):
            bad("backbone", "must be 'tiny', 'paper' or a dict of MinkUNetConfig fields")
        if not isinstance(self.backbone, (str, dict)):
            bad("backbone", "must be 'tiny', 'paper' or a dict")
        for name in ("dim", "epochs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                bad(name, "must be an int >= 1")
        if isinstance(self.lam, bool) or not isinstance(self.lam, int) or self.lam < 0:
            bad("lam", "must be an int >= 0")
        if not self.tau_sp > 0:
            bad("tau_sp", "must be > 0")
        if not self.tau_pro > 0:
            bad("tau_pro", "must be > 0")
        if self.superpixels not in SUPERPIXELS:
            bad("superpixels", f"must be one of {SUPERPIXELS}")
        if self.use_prototypes and self.superpixels != "semantic":
            bad("use_prototypes", "needs superpixels='semantic' (SLIC superpixels carry no semantic signs, so "
                                  "there is no L_pro)")
        if self.use_mmpb and not self.use_prototypes:
            bad("use_mmpb", "needs use_prototypes=True")
        if len(self.mmpb_layers) != 2 or any(int(v) < 1 for v in self.mmpb_layers):
            bad("mmpb_layers", "must be (proj_layers, fusion_layers) >= 1")
        if self.n_classes is None:
            object.__setattr__(self, "n_classes", _n_world_classes())
        if isinstance(self.n_classes, bool) or not isinstance(self.n_classes, int) or self.n_classes < 1:
            bad("n_classes", "must be an int >= 1")
        if len(self.image_wh) != 2 or any(int(v) < 1 for v in self.image_wh):
            bad("image_wh", "must be (w, h) positive pixels")
        object.__setattr__(self, "image_wh", tuple(int(v) for v in self.image_wh))
        object.__setattr__(self, "mmpb_layers", tuple(int(v) for v in self.mmpb_layers))
        self.minkunet_config()
        if self.vit_weights is None:
            patch = int(self.vit_config().patch_size)
            if any(v % patch for v in self.image_wh):
                bad("image_wh", f"must be multiples of the ViT patch {patch}")

    def minkunet_config(self) -> MinkUNetConfig:
        """The backbone's :class:`MinkUNetConfig` (4 input channels: x, y, z, intensity)."""
        if self.backbone == "tiny":
            return tiny_config()
        if self.backbone == "paper":
            return mink_paper_config()
        kw = dict(self.backbone)
        for k in ("planes", "depth"):
            if isinstance(kw.get(k), list):
                kw[k] = tuple(kw[k])
        try:
            return MinkUNetConfig(**kw)
        except TypeError as e:
            raise ValueError(f"CSCConfig.backbone has an unknown MinkUNetConfig field: {e}") from None

    def vit_config(self):
        """The frozen encoder's ``transformers.ViTConfig``. Raises ValueError naming ``vit``."""
        from transformers import ViTConfig
        try:
            vc = ViTConfig(**self.vit)
        except TypeError as e:
            raise ValueError(f"CSCConfig.vit is not a ViTConfig: {e}") from None
        # transformers builds a ViT whose heads do not tile hidden_size without complaint; its attention
        # then drops channels
        if vc.hidden_size % vc.num_attention_heads or vc.patch_size < 1:
            raise ValueError(f"CSCConfig.vit: hidden_size {vc.hidden_size} must be a multiple of "
                             f"num_attention_heads {vc.num_attention_heads} and patch_size >= 1")
        return vc


#: Table 5 of chen2024: (use superpixels, use_prototypes, use_mmpb) per row.
TABLE5_ROWS = {1: ("slic", False, False), 2: ("semantic", False, False), 3: ("semantic", True, False),
               4: ("semantic", True, True)}


def table5_config(row: int, **overrides) -> CSCConfig:
    """The :class:`CSCConfig` of a Table 5 row: (1) SP = L_sp with SLIC (SLidR); (2) + VFM superpixels (L_sp
    with semantic superpixels); (3) + L_pro against the raw 3D prototypes; (4) + MMPB (full CSC).
    ``overrides`` replace other fields. Raises: ValueError naming ``row`` outside 1..4."""
    if row not in TABLE5_ROWS:
        raise ValueError(f"row must be one of {sorted(TABLE5_ROWS)}, got {row!r}")
    sp, pro, mmpb = TABLE5_ROWS[row]
    return CSCConfig(**{"superpixels": sp, "use_prototypes": pro, "use_mmpb": mmpb, **overrides})


def state_dict_digest(state: dict | None) -> str | None:
    """sha256 (hex, 16 chars) over a state dict's names, shapes, dtypes and bytes: its identity in a run's hash."""
    if state is None:
        return None
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(f"{k}|{tuple(t.shape)}|{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


# --- model -----------------------------------------------------------------------------------------------

class CSCModel(nn.Module):
    """MinkUNet + 3D head, frozen ViT + 2D head, optional MMPB (module docstring).

    Args: cfg: :class:`CSCConfig`; encoder_state: optional ``ViTModel`` state dict for the frozen encoder
        (only with ``cfg.vit`` built from a config, not with ``vit_weights``).
    Attributes: ``backbone`` (MinkUNet), ``head3d`` (Linear C -> D), ``encoder`` (ViTModel, frozen), ``head2d``
        (Conv2d hidden -> D, 1x1), ``mmpb`` (MMPB or None), ``patch`` (ViT patch, pixels).
    Raises: ValueError for a state dict that does not fit or comes with ``vit_weights``; FileNotFoundError for a
        missing weights directory.
    """

    def __init__(self, cfg: CSCConfig, encoder_state: dict | None = None):
        super().__init__()
        from pathlib import Path

        from transformers import ViTModel
        self.cfg = cfg
        mcfg = cfg.minkunet_config()
        if mcfg.in_channels != 4:
            raise ValueError(f"CSCConfig.backbone needs in_channels=4 (x, y, z, intensity), got {mcfg.in_channels}")
        self.backbone = MinkUNet(mcfg)
        self.head3d = nn.Linear(mcfg.out_channels, cfg.dim)
        if cfg.vit_weights is not None:
            if encoder_state is not None:
                raise ValueError("encoder_state cannot be combined with CSCConfig.vit_weights")
            if not Path(cfg.vit_weights).is_dir():
                raise FileNotFoundError(f"ViT weights directory {cfg.vit_weights} does not exist")
            self.encoder = ViTModel.from_pretrained(cfg.vit_weights, local_files_only=True, add_pooling_layer=False)
        else:
            self.encoder = ViTModel(cfg.vit_config(), add_pooling_layer=False)
            if encoder_state is not None:
                missing, unexpected = self.encoder.load_state_dict(encoder_state, strict=False)
                if missing or unexpected:
                    raise ValueError(f"encoder_state does not fit CSCConfig.vit: missing {missing[:5]}, "
                                     f"unexpected {unexpected[:5]}")
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.encoder.eval()
        self.patch = int(self.encoder.config.patch_size)
        self.head2d = nn.Conv2d(int(self.encoder.config.hidden_size), cfg.dim, 1)
        self.mmpb = (MMPB(cfg.dim, cfg.dim, cfg.dim, proj_layers=cfg.mmpb_layers[0], fusion_layers=cfg.mmpb_layers[1])
                     if cfg.use_mmpb else None)

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()     # frozen: no dropout, whatever the trainer asks
        return self

    def point_features(self, points: list[torch.Tensor]) -> torch.Tensor:
        """B sweeps (P_b, 4) -> (sum P_b, D) per-point features (L2-normalised with ``normalize_features``)."""
        f = self.head3d(self.backbone.forward_points(list(points)))
        return F.normalize(f, dim=1) if self.cfg.normalize_features else f

    def pixel_features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 6, 3, H, W) normalised images -> (B*6, D, H, W) per-pixel features (frozen encoder, 2D head,
        bilinear upsampling, L2-normalised with ``normalize_features``). Raises ValueError when H or W is not
        a multiple of the patch."""
        x = images.flatten(0, 1)
        H, W = x.shape[-2:]
        if H % self.patch or W % self.patch:
            raise ValueError(f"images are {H} x {W}; both must be multiples of the ViT patch {self.patch}")
        with torch.no_grad():
            tok = self.encoder(pixel_values=x, interpolate_pos_encoding=True).last_hidden_state[:, 1:]
        grid = tok.transpose(1, 2).reshape(x.shape[0], -1, H // self.patch, W // self.patch)
        f = F.interpolate(self.head2d(grid), size=(H, W), mode="bilinear", align_corners=False)
        return F.normalize(f, dim=1) if self.cfg.normalize_features else f

    def forward(self, batch: dict) -> dict:
        """Matched superpixel / superpoint embeddings of a :func:`collate_csc` batch.

        Returns: ``pixel`` (M, D) F_2D and ``point`` (M, D) F_3D, row i = pair i; ``ids`` (M,) int64 batch-global
            superpixel id of each pair (those with >= 1 point); ``n_points`` (M,), ``n_pixels`` (M,) int64.
        Raises: ValueError when no superpixel holds a point (no pair).
        """
        S = int(batch["n_superpixels"])
        pts = self.point_features(batch["points"])
        pix = self.pixel_features(batch["images"])
        pix = pix.view(*batch["images"].shape[:2], *pix.shape[1:]).permute(0, 1, 3, 4, 2).reshape(-1, pix.shape[1])
        f3d, n3d = pool(pts, batch["superpoint"], S)
        f2d, n2d = pool(pix, batch["superpixels"].reshape(-1), S)
        ids = torch.nonzero((n3d > 0) & (n2d > 0)).squeeze(1)
        if ids.numel() == 0:
            raise ValueError("no superpixel holds a LiDAR point: no superpixel-superpoint pair in the batch")
        return {"pixel": f2d[ids], "point": f3d[ids], "ids": ids, "n_points": n3d[ids], "n_pixels": n2d[ids]}


# --- task ------------------------------------------------------------------------------------------------

class CSCPretrainTask(Task):
    """CSC / SLidR pre-training (module docstring): loss terms ``sp`` and, from epoch ``lam`` with
    ``use_prototypes``, ``pro``.

    Args:
        cfg: :class:`CSCConfig`.
        train_data / val_data: :class:`CSCItems` (or datasets of the same items); val may be None.
        encoder_state: optional ViT state dict for the frozen encoder (e.g. a pre-training student's).
        data_identity: JSON-able description of the data (part of the run's hash).
    State (:meth:`state_dict`): the optimiser-step counter and the steps per epoch.
    Raises: ValueError when a dataset's ``superpixels`` differs from ``cfg.superpixels``; in :meth:`loss`,
        when the prototype loss is due and the batch has no ``signs``; in :meth:`after_step`, when total_steps
        is not a multiple of ``cfg.epochs``.
    """

    headline_metrics = ("val_sp", "val_pro", "val_loss")

    def __init__(self, cfg: CSCConfig, train_data: Dataset, val_data: Dataset | None = None,
                 encoder_state: dict | None = None, data_identity: dict | None = None):
        for name, ds in (("train_data", train_data), ("val_data", val_data)):
            kind = getattr(ds, "superpixels", None)
            if ds is not None and kind is not None and kind != cfg.superpixels:
                raise ValueError(f"{name} has superpixels={kind!r} but CSCConfig.superpixels={cfg.superpixels!r}")
        self.cfg = cfg
        self.train_data, self.val_data = train_data, val_data
        self.encoder_state = encoder_state
        self.data_identity = data_identity or {}
        self.step, self.steps_per_epoch = 0, 0

    def config(self) -> dict:
        enc = ("weights:" + str(self.cfg.vit_weights) if self.cfg.vit_weights is not None
               else "state_dict:" + state_dict_digest(self.encoder_state) if self.encoder_state is not None
               else "random-init (fixed, from TrainConfig.seed)")
        return {"csc": asdict(self.cfg), "encoder": enc, "data": self.data_identity}

    def build_model(self) -> nn.Module:
        return CSCModel(self.cfg, self.encoder_state)

    def train_dataset(self) -> Dataset:
        return self.train_data

    def val_dataset(self) -> Dataset | None:
        return self.val_data

    def collate(self, items: list):
        return collate_csc(items)

    def param_groups(self, model: nn.Module):
        """Trainable parameters only (the frozen encoder is left out); no weight decay on biases and 1-D
        (norm) parameters."""
        return decay_groups(unwrap(model).named_parameters())

    @property
    def epoch(self) -> int:
        """0-based epoch of the next optimiser step (from the step count; module docstring)."""
        return self.step // self.steps_per_epoch if self.steps_per_epoch else 0

    @property
    def finished_epoch(self) -> int:
        """0-based epoch of the last optimiser step (the epoch an end-of-epoch evaluation reports on)."""
        return (self.step - 1) // self.steps_per_epoch if self.steps_per_epoch and self.step else 0

    def prototypes_active(self, epoch: int | None = None) -> bool:
        """Whether L_pro is part of the loss at 0-based ``epoch`` (default: the current one; Eq. 6)."""
        return self.cfg.use_prototypes and prototype_loss_active(self.epoch if epoch is None else epoch,
                                                                  self.cfg.lam)

    def terms(self, model: nn.Module, batch: dict, return_pairs: bool = False, epoch: int | None = None):
        """Loss terms of a batch: ``sp`` always, ``pro`` while :meth:`prototypes_active` at ``epoch`` (0-based;
        default the current one); with ``return_pairs`` also the model's output (:meth:`CSCModel.forward`).
        Raises: ValueError when ``pro`` is due and the batch has no ``signs``, or there is no pair."""
        cfg, bare = self.cfg, unwrap(model)
        out = model(batch)
        terms = {"sp": superpixel_contrast(out["pixel"], out["point"], cfg.tau_sp,
                                           normalize=not cfg.normalize_features)}
        if not self.prototypes_active(epoch):
            if bare.mmpb is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
                # DistributedDataParallel needs a gradient for every parameter; MMPB's is exactly 0 before lambda
                terms["sp"] = terms["sp"] + 0.0 * sum(p.sum() for p in bare.mmpb.parameters())
            return (terms, out) if return_pairs else terms
        if "signs" not in batch:
            raise ValueError("the prototype loss needs semantic signs, but the batch has none "
                             "(superpixels='slic'): use superpixels='semantic'")
        signs = batch["signs"][out["ids"]]
        f3d = out["point"].detach() if cfg.detach_prototypes else out["point"]
        p3d, present = semantic_prototypes(f3d, signs, cfg.n_classes)
        if bare.mmpb is not None:
            f2d = out["pixel"].detach() if cfg.detach_prototypes else out["pixel"]
            p2d, _ = semantic_prototypes(f2d, signs, cfg.n_classes)
            protos = bare.mmpb(p2d, p3d)
        else:
            protos = p3d
        terms["pro"] = prototype_contrast(out["point"], signs, protos, present, cfg.tau_pro)
        return (terms, out) if return_pairs else terms

    def loss(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        return self.terms(model, batch)

    def after_step(self, model: nn.Module, step: int, total_steps: int) -> None:
        """Count optimiser steps (the epoch behind Eq. 6's indicator)."""
        if total_steps % self.cfg.epochs:
            raise ValueError(f"total_steps={total_steps} is not a multiple of CSCConfig.epochs={self.cfg.epochs}: "
                             "TrainConfig.epochs must equal CSCConfig.epochs")
        self.steps_per_epoch = total_steps // self.cfg.epochs
        self.step = step

    def state_dict(self) -> dict:
        return {"step": self.step, "steps_per_epoch": self.steps_per_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.steps_per_epoch = int(state.get("step", 0)), int(state.get("steps_per_epoch", 0))

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches, reduce) -> dict[str, float]:
        """Sample-weighted mean of each loss term over the validation set with the terms of the epoch just
        trained (:attr:`finished_epoch`: ``val_sp``, ``val_pro`` once active), their sum ``val_loss`` and
        ``val_pairs``, matched pairs per sample."""
        sums, n, pairs = {}, 0, 0
        for batch in batches:
            b = batch["images"].shape[0]
            terms, out = self.terms(model, batch, return_pairs=True, epoch=self.finished_epoch)
            for name, v in terms.items():
                sums[name] = sums.get(name, 0.0) + float(v) * b
            pairs += int(out["ids"].numel())
            n += b
        n = reduce(n)
        if not n:
            return {}
        out = {f"val_{name}": float(reduce(v)) / n for name, v in sums.items()}
        out["val_loss"] = sum(out.values())
        out["val_pairs"] = float(reduce(pairs)) / n
        return out
