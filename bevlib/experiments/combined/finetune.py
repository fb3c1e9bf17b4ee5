"""Pretrained -> fine-tuned wiring of the combined-datasets paper (issue 13 item 6; paper Sec. 4.1,
Table 1, Appendix C.2 and D).

* :class:`SegKeyframeItems` / :func:`collate_seg_keyframes`: keyframe items with their multi-label
  BEV map masks (:func:`bevlib.data.map_masks.map_masks`), the fine-tuning data of :class:`BEVSegTask`.
* :func:`build_seg_model`: the fused BEV segmentation model on a :class:`CombinedModel` whose weights
  come from a pre-training run directory (ours, :class:`CombinedPretrainTask`, or the BEVDistill
  baseline, :class:`BEVDistillTask`), or random init (the "Scratch" baseline of Table 1).
  Appendix D: "we just load parameters of Swin-Transformer and DSVT backbones"; loading the whole
  CombinedModel state loads exactly those plus LSS and the (unused downstream) projection heads /
  MAE decoder.
* :class:`BEVDistillTask`: the self-supervised BEVDistill baseline as the paper adapts it (Sec. 4.1
  and Appendix D: BEVDistill's dense BEV feature alignment without its label-dependent object-level
  term), trained on the same :class:`CombinedModel` so its run directory loads like ours.

BEVDistill's LiDAR side is its teacher (:func:`bevdistill_loss` detaches it), so in a from-scratch
run the LiDAR branch never receives a gradient and keeps its random init; only Swin, LSS and the
student adapter learn. That follows from the loss as BEVDistill defines it; the paper does not say
more.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from bevlib.data.map_masks import BEVSEG_GRID, MAP_SEG_CLASSES, map_masks
from bevlib.train import load_checkpoint, unwrap

from .bevseg import BEVDistillAdapter, BEVSegConfig, BEVSegHead, BEVSegModel, BEVSegTask, bevdistill_loss
from .data import KeyframeItems, collate_keyframes
from .pretrain import BranchEncoder, CombinedConfig, CombinedModel, CombinedPretrainTask

__all__ = ["SegKeyframeItems", "collate_seg_keyframes", "build_seg_model", "last_checkpoint", "load_pretrained", "CombinedSegTask",
           "BEVDistillModel", "BEVDistillTask"]

#: State-dict prefix of the BEVDistill student adapter, discarded when a run is loaded for fine-tuning.
ADAPTER_PREFIX = "distill_adapter."


class SegKeyframeItems(KeyframeItems):
    """:class:`KeyframeItems` plus each keyframe's BEV map masks, all held in memory after the first read.

    Args:
        nusc, tokens, image_wh, dataset_index, point_feature, cache: as :class:`KeyframeItems`.
        grid: :class:`~bevlib.bev.BEVGrid` of the masks (default BEVFusion's 200 x 200 over +-50 m).
            It must cover the extent the model's head outputs (see :func:`build_seg_model`).
        classes: map classes, the masks' channel order (default :data:`MAP_SEG_CLASSES`).
    Item i: the :class:`KeyframeItems` item plus ``map_masks`` (C, grid.H, grid.W) bool, ego frame of
        the keyframe's LIDAR_TOP (row 0 = front edge, column 0 = left edge).
    Raises: ValueError as :class:`KeyframeItems` or naming ``classes``; DataError (on access) when the
        keyframe's location has no map expansion.
    Source: BEVFusion ``LoadBEVSegmentation`` via :func:`map_masks`; paper Appendix C.2.
    """

    def __init__(self, nusc, tokens, image_wh: tuple[int, int], dataset_index: int = 0, grid=BEVSEG_GRID,
                 classes=MAP_SEG_CLASSES, point_feature: str = "intensity", cache: bool = True):
        super().__init__(nusc, tokens, image_wh, dataset_index, point_feature, cache)
        self.grid, self.classes = grid, tuple(classes)
        if not self.classes:
            raise ValueError("classes must name at least one map class")

    def _read(self, i: int) -> dict:
        item = super()._read(i)
        item["map_masks"] = torch.from_numpy(map_masks(self.nusc, self.tokens[i], self.grid, self.classes).copy())
        return item


def collate_seg_keyframes(items: list[dict]) -> dict:
    """Batch :class:`SegKeyframeItems` items: :func:`collate_keyframes` plus ``map_masks``
    (B, C, H, W) bool. Raises: ValueError for an empty list, different image sizes or masks of
    different shapes."""
    out = collate_keyframes(items)
    shapes = {tuple(it["map_masks"].shape) for it in items}
    if len(shapes) != 1:
        raise ValueError(f"items have map_masks of different shapes {sorted(shapes)}: use one grid and class list")
    out["map_masks"] = torch.stack([it["map_masks"] for it in items])
    return out


def last_checkpoint(run_dir: str | Path) -> Path:
    """The newest epoch-end checkpoint (``checkpoints/epoch_XXX.pt``) of a :func:`bevlib.train.train` run.
    Raises: FileNotFoundError naming the run when the directory or its epoch checkpoints are missing."""
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"pretrained run {str(run)!r} does not exist")
    cks = sorted((run / "checkpoints").glob("epoch_*.pt"))
    if not cks:
        raise FileNotFoundError(f"pretrained run {str(run)!r} has no epoch checkpoint (checkpoints/epoch_*.pt)")
    return cks[-1]


def load_pretrained(cfg: CombinedConfig, run_dir: str | Path) -> CombinedModel:
    """A :class:`CombinedModel` of ``cfg`` with the weights of a pre-training run's newest epoch
    checkpoint (ours or BEVDistill, whose adapter is dropped), in eval mode.
    Raises: as :func:`build_seg_model` for a missing / corrupt / mismatched run."""
    model = CombinedModel(cfg)
    _load_combined(model, run_dir)
    return model.eval()


def _load_combined(model: CombinedModel, run_dir: str | Path, parts=None) -> None:
    path = last_checkpoint(run_dir)
    state = load_checkpoint(path)["model"]
    state = {k: v for k, v in state.items() if not k.startswith(ADAPTER_PREFIX)}
    if parts is not None:
        children = {name for name, _ in model.named_children()}
        unknown = sorted(set(parts) - children)
        if unknown:
            raise ValueError(f"pretrained_parts {unknown} are not modules of CombinedModel ({sorted(children)})")
        state = {k: v for k, v in state.items() if k.split(".", 1)[0] in parts}
        missing = sorted(k for k in model.state_dict() if k.split(".", 1)[0] in parts and k not in state)
        if missing:
            raise ValueError(f"pretrained run {str(run_dir)!r} ({path.name}) lacks {missing[:3]} ... of "
                             f"pretrained_parts {tuple(parts)}")
    try:
        model.load_state_dict(state, strict=parts is None)
    except RuntimeError as e:
        # e.g. another CombinedConfig (prompt on / off, widths): the run must match cfg's architecture
        raise ValueError(f"pretrained run {str(run_dir)!r} ({path.name}) does not fit this CombinedConfig: {e}") from e


def build_seg_model(cfg: CombinedConfig, pretrained_run: str | Path | None = None, prompt_mode="own",
                    n_classes: int = len(MAP_SEG_CLASSES), fused_channels: int = 256, n_blocks: int = 2,
                    out_hw: tuple[int, int] = (200, 200), target_range: float | None = None,
                    pretrained_parts=None) -> BEVSegModel:
    """The fused camera + LiDAR BEV map-segmentation model on a (pretrained) :class:`CombinedModel`.

    Args:
        cfg: the :class:`CombinedConfig` of the pre-training run (its architecture must match).
        pretrained_run: a run directory of :class:`~.pretrain.CombinedPretrainTask` or
            :class:`BEVDistillTask`; its newest epoch checkpoint is loaded (verified checksum), the
            BEVDistill adapter dropped. None: random init (the "Scratch" baseline; seed torch first).
        prompt_mode: ``"own"``, ``"none"`` or a dataset index (Table 5; :class:`BEVSegModel`).
        n_classes, fused_channels (BEVFusion 256), n_blocks, out_hw (paper 200 x 200): :class:`BEVSegHead`.
    Returns: :class:`BEVSegModel` with ``camera_encoder`` / ``lidar_encoder`` :class:`BranchEncoder`
        of the one CombinedModel (camera BEV (B, lss_channels, S, S), LiDAR BEV (B, voxel dim, S, S))
        and a fresh :class:`BEVSegHead`; ``model.combined`` is the CombinedModel (unregistered: the
        encoders register only their branches, so the projection heads and MAE decoder are neither
        trained nor saved).
    Raises: FileNotFoundError naming the run (missing directory or checkpoint); CheckpointError (corrupt
        checkpoint); ValueError (architecture mismatch, bad head sizes, bad prompt mode).
        target_range: half extent (metres) of the centred square grid the masks are drawn on (e.g.
            50 for :data:`~bevlib.data.map_masks.BEVSEG_GRID`); the head resamples the S x S map over
            +-``cfg.bev_range`` onto it (BEVFusion's ``BEVGridTransform``, +-51.2 m -> +-50 m). None:
            +-``cfg.bev_range`` itself.
        pretrained_parts: CombinedModel modules whose weights are loaded from the run (e.g.
            ``("swin", "lidar")``: Appendix D's "we just load parameters of Swin-Transformer and DSVT
            backbones"; the Swin neck is part of ``swin``, LSS keeps its fresh init), or None: all of them.
    Source: paper Appendix C.2 / D; BEVFusion map-segmentation head.
    """
    if target_range is not None and not 0 < target_range <= cfg.bev_range:
        raise ValueError(f"target_range must be in (0, cfg.bev_range={cfg.bev_range}], got {target_range}")
    crop = 1.0 if target_range is None else float(target_range) / cfg.bev_range
    combined = CombinedModel(cfg)
    if pretrained_run is not None:
        _load_combined(combined, pretrained_run, pretrained_parts)
    cam, lidar = BranchEncoder(combined, "camera"), BranchEncoder(combined, "lidar")
    head = BEVSegHead(cam.out_channels, lidar.out_channels, fused_channels=fused_channels, n_blocks=n_blocks,
                      n_classes=n_classes, out_hw=out_hw, crop=crop)
    model = BEVSegModel(cam, lidar, head, prompt_mode)
    model.__dict__["combined"] = combined   # plain attribute: not a second registration of the branches
    return model


class CombinedSegTask(BEVSegTask):
    """:class:`BEVSegTask` on :func:`build_seg_model` with :class:`SegKeyframeItems` batches: the
    fine-tuning run of Tables 1, 4 and 5.

    Args:
        cfg: the pre-training :class:`CombinedConfig`.
        train_set, val_set: :class:`SegKeyframeItems` (train: e.g. :func:`finetune_split`'s 20 %).
        pretrained_run: run directory loaded by :func:`build_seg_model`, or None (scratch).
        seg_cfg: :class:`BEVSegConfig` (loss, prompt mode, thresholds); its ``prompt_mode`` is used.
        head: keyword arguments of :func:`build_seg_model` for the head (fused_channels, n_blocks,
            out_hw, n_classes).
    The run hash covers the CombinedConfig, the head and the pretrained run's directory name (which
    holds that run's config hash), so scratch, ours and BEVDistill fine-tune into different runs.
    Raises: as :func:`build_seg_model` (when the trainer builds the model).
    """

    def __init__(self, cfg: CombinedConfig, train_set, val_set=None, pretrained_run: str | Path | None = None,
                 seg_cfg: BEVSegConfig = BEVSegConfig(), head: dict | None = None):
        self.combined_cfg, self.pretrained_run, self.head = cfg, pretrained_run, dict(head or {})
        super().__init__(lambda: build_seg_model(cfg, pretrained_run, seg_cfg.prompt_mode, **self.head),
                         train_set, val_set, seg_cfg)

    def config(self) -> dict:
        return {**super().config(), "combined": asdict(self.combined_cfg), "head": self.head,
                "pretrained_run": None if self.pretrained_run is None else Path(self.pretrained_run).name}

    def collate(self, items: list):
        return collate_seg_keyframes(items)


class BEVDistillModel(CombinedModel):
    """:class:`CombinedModel` plus BEVDistill's student adapter ``distill_adapter`` (1x1 conv, camera-BEV
    channels -> LiDAR-BEV channels). Its state dict is the CombinedModel's plus ``distill_adapter.*``,
    which :func:`build_seg_model` drops. Args: cfg: :class:`CombinedConfig`."""

    def __init__(self, cfg: CombinedConfig):
        super().__init__(cfg)
        # built after every CombinedModel module, so with one seed the shared modules start equal
        self.distill_adapter = BEVDistillAdapter(cfg.lss_channels, cfg.voxel_config().dim)


class BEVDistillTask(CombinedPretrainTask):
    """Self-supervised BEVDistill pre-training (baseline of Table 1, as the paper adapts it): the
    camera BEV (Swin -> LSS, clean images) through the student adapter is aligned with the LiDAR BEV
    (voxel set transformer, detached teacher) by :func:`bevdistill_loss`; no labels, no MAE, no InfoNCE.

    Args:
        cfg: :class:`CombinedConfig` (architecture; ``use_mae`` / ``use_cl`` / ``k`` / ``tau`` unused).
        train_data, val_data: keyframe items (:class:`KeyframeItems`, :func:`mixed_keyframes`).
        occupied_only: average over BEV cells holding LiDAR points (an empty cell's LiDAR feature is
            the zero vector, whose direction is meaningless) or over all cells.
        data_identity: JSON-able description of the data (part of the run hash).
    Loss terms: ``{"bevdistill": scalar}``; metrics ``val_bevdistill`` (sample-weighted mean) and
    ``val_loss`` (the same). Data, collate, parameter groups and evaluation are the pre-training task's.
    Raises: ValueError from the config; ValueError in :meth:`loss` for batches whose images are not
        ``cfg.image_wh``.
    """

    headline_metrics = ("val_bevdistill",)

    def __init__(self, cfg: CombinedConfig, train_data: Dataset, val_data: Dataset | None = None,
                 occupied_only: bool = True, data_identity: dict | None = None):
        super().__init__(cfg, train_data, val_data, data_identity)
        self.occupied_only = bool(occupied_only)

    def config(self) -> dict:
        return {"task": "combined_bevdistill", "combined": asdict(self.cfg), "occupied_only": self.occupied_only,
                "data": self.data_identity}

    def build_model(self) -> nn.Module:
        return BEVDistillModel(self.cfg)

    def terms(self, model: nn.Module, batch: dict, generator: torch.Generator | None = None) -> dict:
        """``{"bevdistill": loss}`` of a batch (deterministic: ``generator`` is unused).
        Raises: ValueError when the batch's image size differs from ``cfg.image_wh``."""
        m = unwrap(model)
        images, idx = self.checked_images(batch), batch.get("dataset_index")
        cam = m.camera_bev(images, batch["K"], batch["ego_T_cam"], idx)
        lidar = m.lidar_bev(batch["points"], idx)
        mask = m.occupancy(batch["points"]) if self.occupied_only else None
        return {"bevdistill": bevdistill_loss(m.distill_adapter(cam), lidar, mask)}
