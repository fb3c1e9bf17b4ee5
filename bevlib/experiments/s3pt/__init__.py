"""wozniak2025 S3PT: self-supervised pretraining on driving scenes with depth-guided clustering.

So far: the pretraining task for DINO / CrIBo / S3PT on the shared trainer (:mod:`.pretrain`, with
DINO multi-crop in :mod:`.multicrop`; the method pieces are :mod:`bevlib.ssl`), the frozen-backbone
segmentation probe with Segmenter's heads (:mod:`.probe`, :mod:`bevlib.models.segmenter`), and the
real-keyframe check of the IP-Basic depth completion that feeds the depth term of the clustering
cost (Sec. 3.3; :mod:`.depth_check`; the completion itself is :mod:`bevlib.depth_completion`).
The notebooks share :mod:`.study` (parameters, prepared worlds, one pretraining run, one probe): the
ablation of Table 1 / Fig. 5 (:mod:`.ablation`, notebooks/s3pt_ablation.ipynb) and the comparison of
Tables 2-3 / Fig. 7 (:mod:`.comparison`, notebooks/s3pt_comparison.ipynb, with a second world of
another look standing in for Cityscapes); importing :mod:`.claims` registers their findings with the
scoreboard.
"""
from __future__ import annotations

import importlib

from . import claims  # noqa: F401  (registers the scoreboard claims; imports nothing heavy)

# Resolved on first use, so that ``python -m bevlib.experiments.s3pt.depth_check`` does not find its
# own module already imported by the package (runpy warns about that).
_EXPORTS = {"camera_T_lidar": ".depth_check", "holdout_split": ".depth_check", "lidar_in_camera": ".depth_check",
            "real_keyframe_depth_check": ".depth_check",
            **{n: ".multicrop" for n in ("MultiCropConfig", "multicrop", "random_resized_crop_box", "crop_image",
                                         "token_positions", "token_depth")},
            **{n: ".pretrain" for n in ("S3PTConfig", "S3PTTask", "S3PTModel", "S3PTNet", "CropDataset",
                                        "KeyframeCameraImages", "paper_config", "paper_train_config", "METHODS")},
            **{n: ".probe" for n in ("FrozenProbeTask", "FrozenProbeModel", "probe_lr_grid", "PAPER_LR_GRID",
                                     "build_backbone", "build_head", "world_camera_items")},
            **{n: ".study" for n in ("S3PTStudyParams", "StudyData", "prepare_world", "pretrain_run",
                                     "student_backbone", "class_pixel_share")},
            **{n: ".ablation" for n in ("AblationParams", "ROWS", "CLAIM_ROWS", "REPORTED_TABLE1", "prepare_ablation",
                                        "run_ablation", "write_ablation_tables", "ablation_caption", "direction_check")},
            **{n: ".comparison" for n in ("ComparisonParams", "METHODS", "REPORTED_TABLE2", "REPORTED_TABLE3",
                                          "prepare_comparison", "run_comparison", "run_fig7", "write_comparison_tables",
                                          "comparison_caption", "transfer_miou", "share_tokens")}}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
