"""lukkassen2024 MultiViT, part 1: RangeViT (Sec. 3.2.1) trained and evaluated on nuScenes-lidarseg
(Table 1 rows 1 / 3) as a task of the shared trainer (:mod:`bevlib.train`)."""
from __future__ import annotations

from .figures import dip_events, plot_miou_curve, plot_val_sweep
from .params import REPORTED_TABLE1_RANGEVIT, RangeViTParams
from .runs import Experiment, make_task, prepare, run_rangevit, train_config
from .tables import COLUMNS, TITLES, table1_rows, write_table1
from .task import (CHANNEL_MEAN, CHANNEL_STD, Augmentation, RangeSweepDataset, RangeViTTask, apply_augmentation,
                   collate_sweeps, draw_augmentation, load_sweeps, normalise_range_image, predict_classes,
                   rotation_matrix, sliding_window_forward, window_starts)

__all__ = ["Augmentation", "CHANNEL_MEAN", "CHANNEL_STD", "COLUMNS", "Experiment", "REPORTED_TABLE1_RANGEVIT",
           "RangeSweepDataset", "RangeViTParams", "RangeViTTask", "TITLES", "apply_augmentation", "collate_sweeps",
           "dip_events", "draw_augmentation", "load_sweeps", "make_task", "normalise_range_image", "plot_miou_curve",
           "plot_val_sweep", "predict_classes", "prepare", "rotation_matrix", "run_rangevit", "sliding_window_forward",
           "table1_rows", "train_config", "window_starts", "write_table1"]
