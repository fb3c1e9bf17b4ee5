"""Combined-datasets multimodal BEV pre-training (combined-datasets-bev-pretraining.md; issue 13).

The pre-training task on the shared trainer -- keyframe items of one or several worlds (one per sensor
rig, mixed and re-indexed; :mod:`.data`) and the model with its two loss terms, camera-BEV vs LiDAR-BEV
InfoNCE (Eq. 3) and image MAE (Eq. 4), with optional PromptNorm per dataset (Eq. 5; :mod:`.pretrain`) --
and the downstream BEV map segmentation (Appendix C.2): the fused camera + LiDAR BEV head, its
fine-tuning task on multi-label map masks (:mod:`bevlib.data.map_masks`), the prompt strategies at
fine-tuning and the BEVDistill baseline loss (:mod:`.bevseg`), wired from a pre-training run (ours or
the BEVDistill baseline) to a fine-tuning run (:mod:`.finetune`), and the camera-branch BEV heatmaps
under each dataset's prompt of Figs. 3/4 (:mod:`.heatmaps`). The notebooks share :mod:`.study`
(parameters, the three rig worlds, one pre-training and one fine-tuning run, tables):
notebooks/combined_pretraining.ipynb (Tables 1-2, :mod:`.pretraining_study`) and
notebooks/combined_multidataset.ipynb (Tables 4-6, Figs. 3/4, :mod:`.multidataset`); importing
:mod:`.claims` registers their findings with the scoreboard. The pieces it wires together live in the
library: :mod:`bevlib.models.lss`, :mod:`bevlib.models.voxel_transformer`, :mod:`bevlib.models.promptnorm`,
:mod:`bevlib.ssl.bev_losses`, :mod:`bevlib.data.mixed`.
"""
from __future__ import annotations

import importlib

from . import claims  # noqa: F401  (registers the scoreboard claims; imports nothing heavy)

# Resolved on first use, so importing the package imports nothing heavy.
_EXPORTS = {**{n: ".data" for n in ("KeyframeItems", "collate_keyframes", "mixed_keyframes", "POINT_FEATURES")},
            **{n: ".pretrain" for n in ("CombinedConfig", "CombinedModel", "CombinedPretrainTask", "paper_config",
                                        "paper_train_config", "prompt_parameters", "BranchEncoder")},
            **{n: ".bevseg" for n in ("BEVSegHead", "BEVSegModel", "BEVSegConfig", "BEVSegTask", "BEVDistillAdapter",
                                      "bevdistill_loss", "finetune_split", "multilabel_iou", "sigmoid_focal_loss")},
            **{n: ".finetune" for n in ("SegKeyframeItems", "collate_seg_keyframes", "build_seg_model",
                                        "last_checkpoint", "load_pretrained", "CombinedSegTask", "BEVDistillModel", "BEVDistillTask")},
            **{n: ".heatmaps" for n in ("bev_heatmap", "display_heatmap", "display_extent", "heatmap_figure",
                                        "heatmap_widget")},
            **{n: ".study" for n in ("CombinedStudyParams", "StudyWorlds", "prepare_worlds", "pretrain_run",
                                     "finetune_run", "table8_counts", "RIGS", "TABLE8")}}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
