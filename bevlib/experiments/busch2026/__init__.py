"""busch2026 Table I, Fig. 5 and Fig. 6: supervised baseline, self-supervised pretraining
(with / without the temporal loss) and two-phase runs fine-tuned on 50 % of the BEV labels.

One pretraining run serves every pretraining length: a two-phase run "ours(N ep pretrain)" starts
from that run's checkpoint after epoch N and fine-tunes for a fixed number of *halved* epochs
(passes over the 50 % subset), busch2026 Sec. V. Steps are counted in optimiser steps; the
two-phase total is N x (steps per full epoch) + the fine-tuning steps (Fig. 6's x axis).
"""
from __future__ import annotations

from . import claims  # noqa: F401  (registers the scoreboard claims)
from .fig5_fig6 import plot_fig5, plot_fig6, predict_bev
from .params import COLUMN_TITLES, COLUMNS, REPORTED_TABLE1, Table1Params
from .runs import SCRATCH_ROW, Experiment, make_labeler, make_task, prepare, run_table1, seed_runs
from .tables import (PROBE_COLUMNS, bev_cell_features, caption, probe_rows, seed_rows, table1_rows, write_probe_table,
                     write_protocol_tables, write_seed_table, write_table1)
from .task import Busch2026Task, model_factory

__all__ = ["Busch2026Task", "COLUMNS", "COLUMN_TITLES", "Experiment", "PROBE_COLUMNS", "REPORTED_TABLE1", "SCRATCH_ROW",
           "Table1Params", "bev_cell_features", "caption", "make_labeler", "make_task", "model_factory", "plot_fig5",
           "plot_fig6", "predict_bev", "prepare", "probe_rows", "run_table1", "seed_rows", "seed_runs", "table1_rows",
           "write_probe_table", "write_protocol_tables", "write_seed_table", "write_table1"]
