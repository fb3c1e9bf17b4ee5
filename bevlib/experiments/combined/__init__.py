"""Combined-datasets multimodal BEV pre-training (combined-datasets-bev-pretraining.md; issue 13).

So far: the pre-training task on the shared trainer -- keyframe items of one or several worlds
(one per sensor rig, mixed and re-indexed; :mod:`.data`) and the model with its two loss terms,
camera-BEV vs LiDAR-BEV InfoNCE (Eq. 3) and image MAE (Eq. 4), with optional PromptNorm per dataset
(Eq. 5; :mod:`.pretrain`), and the downstream BEV map segmentation (Appendix C.2): the fused
camera + LiDAR BEV head, its fine-tuning task on multi-label map masks (:mod:`bevlib.data.map_masks`),
the prompt strategies at fine-tuning and the BEVDistill baseline loss (:mod:`.bevseg`), wired from a
pretraining run (ours or the BEVDistill baseline) to a fine-tuning run (:mod:`.finetune`), and the
camera-branch BEV heatmaps under each dataset's prompt of Figs. 3/4 (:mod:`.heatmaps`). The pieces it wires together live in the library:
:mod:`bevlib.models.lss`, :mod:`bevlib.models.voxel_transformer`, :mod:`bevlib.models.promptnorm`,
:mod:`bevlib.ssl.bev_losses`, :mod:`bevlib.data.mixed`. No findings are registered yet.
"""
from __future__ import annotations

import importlib

# Resolved on first use, so importing the package imports nothing heavy.
_EXPORTS = {**{n: ".data" for n in ("KeyframeItems", "collate_keyframes", "mixed_keyframes", "POINT_FEATURES")},
            **{n: ".pretrain" for n in ("CombinedConfig", "CombinedModel", "CombinedPretrainTask", "paper_config",
                                        "paper_train_config", "prompt_parameters", "BranchEncoder")},
            **{n: ".bevseg" for n in ("BEVSegHead", "BEVSegModel", "BEVSegConfig", "BEVSegTask", "BEVDistillAdapter",
                                      "bevdistill_loss", "finetune_split", "multilabel_iou", "sigmoid_focal_loss")},
            **{n: ".finetune" for n in ("SegKeyframeItems", "collate_seg_keyframes", "build_seg_model",
                                        "last_checkpoint", "CombinedSegTask", "BEVDistillModel", "BEVDistillTask")},
            **{n: ".heatmaps" for n in ("bev_heatmap", "display_heatmap", "display_extent", "heatmap_figure",
                                        "heatmap_widget")}}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
