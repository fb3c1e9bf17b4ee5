"""lukkassen2024 MultiViT.

Part 1: RangeViT (Sec. 3.2.1) trained and evaluated on nuScenes-lidarseg (Table 1 rows 1 / 3) as a
task of the shared trainer (:mod:`bevlib.train`).

Part 2: camera pseudo-labels from 3D boxes (Sec. 3.1, Table 2; :mod:`.pseudo_labels`), CameraViT,
MultiViT joint training with the contrastive alignment of Sec. 4.5, pretrain -> fine-tune transfer
(Tables 1, 3, 4, 6; :mod:`.study`, :mod:`.study_tables`) and the feature-space analysis (Table 5,
Figs. 7, 8; :mod:`.analysis`, :mod:`.study_analysis`). Importing the package registers the paper's
findings with the reproduction scoreboard (:mod:`.claims`).
"""
from __future__ import annotations

from . import claims  # noqa: F401  (registers the scoreboard claims)
from .figures import dip_events, plot_miou_curve, plot_val_sweep
from .params import REPORTED_TABLE1_RANGEVIT, RangeViTParams
from .runs import Experiment, make_task, prepare, run_rangevit, train_config
from .study import (ROW_NAMES, StudyData, final_metrics, load_trained, make_box_labeler, make_row_task, prepare_study,
                    row_name, run_study, study_caption)
from .study_analysis import add_decoder_cosines, figure7, figure8, figure8_widget, val_pairs, write_table5
from .study_figures import pick_query, plot_deciding_rows
from .study_params import FeatureSpaceParams, MultiViTStudyParams
from .study_tables import direction_check, write_study_tables
from .study_tasks import CameraPretrainedRangeViTTask, CameraViTTask, MultiViTTask
from .tables import COLUMNS, TITLES, table1_rows, write_table1
from .task import (CHANNEL_MEAN, CHANNEL_STD, Augmentation, RangeSweepDataset, RangeViTTask, apply_augmentation,
                   collate_sweeps, draw_augmentation, load_sweeps, normalise_range_image, predict_classes,
                   rotation_matrix, sliding_window_forward, window_starts)

__all__ = ["add_decoder_cosines", "Augmentation", "CHANNEL_MEAN", "CHANNEL_STD", "COLUMNS", "CameraPretrainedRangeViTTask", "CameraViTTask",
           "Experiment", "FeatureSpaceParams", "MultiViTStudyParams", "MultiViTTask", "REPORTED_TABLE1_RANGEVIT",
           "ROW_NAMES", "RangeSweepDataset", "RangeViTParams", "RangeViTTask", "StudyData", "TITLES",
           "apply_augmentation", "collate_sweeps", "dip_events", "direction_check", "draw_augmentation", "figure7",
           "figure8", "figure8_widget", "final_metrics", "load_sweeps", "load_trained", "make_box_labeler",
           "make_row_task", "make_task", "normalise_range_image", "pick_query", "plot_deciding_rows",
           "plot_miou_curve", "plot_val_sweep", "predict_classes", "prepare", "prepare_study", "rotation_matrix",
           "row_name", "run_rangevit", "run_study", "sliding_window_forward", "study_caption", "table1_rows",
           "train_config", "val_pairs", "window_starts", "write_study_tables", "write_table1", "write_table5"]
