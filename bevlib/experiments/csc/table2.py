"""Table 2 of chen2024 CSC (Sec. 4.1) on the embedded world (``notebooks/csc_table2.ipynb``): LiDAR semantic
segmentation after no pre-training (random init.), SLidR (SLIC superpixels, L_sp only) and CSC (VFM superpixels,
L_sp + MMPB-blended prototypes, L_pro), by linear probing on every labelled sweep and by fine-tuning on 1 / 5 /
10 / 25 / 100 % of them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .study import CSCData, CSCStudyParams, pretrain_curves, run_methods, write_tables


@dataclass
class Table2Params(CSCStudyParams):
    """Every knob of notebooks/csc_table2.ipynb (:class:`.study.CSCStudyParams`)."""

    output_name: str = "csc_table2"


#: Table 2's rows we run, in order (names of :data:`.study.METHODS`).
ROWS = ("Random init.", "SLidR", "CSC")
#: The paper's nuScenes mIoU (Table 2): LP on 100 % and fine-tuning on 1-100 % of the labels.
REPORTED = {"Random init.": {"lp": 8.1, "ft1": 30.3, "ft5": 47.7, "ft10": 56.6, "ft25": 64.8, "ft100": 74.2},
            "SLidR": {"lp": 38.0, "ft1": 38.2, "ft5": 52.2, "ft10": 58.8, "ft25": 66.2, "ft100": 74.6},
            "CSC": {"lp": 46.0, "ft1": 47.0, "ft5": 57.0, "ft10": 63.3, "ft25": 68.6, "ft100": 75.7}}
REF = "paper, nuScenes, MinkUNet"


def run_tables(data: CSCData) -> dict:
    """Pre-train and evaluate every row for every seed (finished runs are reused); see
    :func:`.study.run_methods`."""
    return run_methods(data, ROWS)


def write(results: dict, data: CSCData, out_dir) -> list[Path]:
    """``table2`` (mean ± std, reported beside), ``table2_seeds`` and ``pretrain_curves.png``."""
    p = data.params
    paths = write_tables(results["results"], out_dir, "table2", data.caption(),
                         "Table 2 (LiDAR semantic segmentation, mIoU %).", p.settings, REPORTED, REF)
    paths.append(pretrain_curves(results["pretrain_runs"], Path(out_dir) / "pretrain_curves.png"))
    return paths


def direction_check(out_dir) -> list:
    """The paper's Table 2 findings (:mod:`.claims`) on this run's ``table2_seeds.csv`` (paired by seed);
    writes ``direction_check.csv`` / ``.md``."""
    from ...scoreboard import direction_check as check
    from . import claims  # noqa: F401  (registers the claims)

    return check("csc", out_dir, "table2_seeds.csv",
                 "chen2024 CSC's Table 2 findings against this run's seeds (paired by seed; 95 % t-interval).")
