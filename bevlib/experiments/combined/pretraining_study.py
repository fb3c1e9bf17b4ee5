"""Tables 1 and 2 of the combined-datasets paper (Sec. 4.2) on the nuScenes-like world
(``notebooks/combined_pretraining.ipynb``).

Table 1 (BEV segmentation column): fine-tuning from scratch, from the self-supervised BEVDistill
baseline and from our pre-training (InfoNCE + MAE), all pre-trained on the nuScenes(-like) train
keyframes and fine-tuned on 20 % of them. Table 2: our pre-training with both losses, without
``L_MAE`` and without ``L_CL``. "Ours" and "Full" are the same runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .study import CombinedStudyParams, StudyWorlds, finetune_run, pretrain_run, write_study_table


@dataclass
class PretrainingParams(CombinedStudyParams):
    """Every knob of notebooks/combined_pretraining.ipynb (:class:`.study.CombinedStudyParams`); it reads
    only the nuScenes-like world, so the Lyft / ONCE fields are unused. Pre-training runs 24 epochs here
    (~190 steps on the 64 train keyframes; the contrastive loss is still near chance after 8) and fits the
    30-minute budget because every run sees one world only."""

    pretrain_epochs: int = 24               # paper 50
    output_name: str = "combined_pretraining"

#: Table 1 rows -> pre-training method of :data:`.study.METHODS` (None: no pre-training).
TABLE1 = {"Scratch": None, "BEVDistill": "bevdistill", "Ours": "ours"}
#: Table 2 rows -> method.
TABLE2 = {"Full": "ours", "-L_MAE": "no_mae", "-L_CL": "no_cl"}
#: The paper's BEV segmentation mIoU (mean, std over its runs), Tables 1-2 (BEVFusion, Swin-T + DSVT, nuScenes).
REPORTED1 = {"Scratch": {"miou": (39.1, 0.3)}, "BEVDistill": {"miou": (39.1, 0.1)}, "Ours": {"miou": (39.3, 0.1)}}
REPORTED2 = {"Full": {"miou": (39.3, 0.1)}, "-L_MAE": {"miou": (39.1, 0.3)}, "-L_CL": {"miou": (39.2, 0.2)}}
REF = "paper, nuScenes"


def run_tables(worlds: StudyWorlds) -> dict:
    """Pre-train and fine-tune every row of Tables 1-2 for every seed (finished runs are reused).

    Returns: ``{"table1": {row: [record per seed]}, "table2": {...}, "pretrain_runs": {method: [run dirs]}}``;
    a record holds ``seed``, ``miou``, ``per_class`` and ``run_dir`` (the fine-tuning run).
    """
    p = worlds.params
    methods = {m for m in (*TABLE1.values(), *TABLE2.values()) if m}
    pre = {m: {s: pretrain_run(worlds, m, s) for s in p.seeds} for m in sorted(methods)}
    done: dict = {}

    def record(method, seed):
        if (method, seed) not in done:
            run = pre[method][seed] if method else None
            done[(method, seed)] = {"seed": seed, **finetune_run(worlds, run, seed)}
        return done[(method, seed)]

    out = {"table1": {row: [record(m, s) for s in p.seeds] for row, m in TABLE1.items()},
           "table2": {row: [record(m, s) for s in p.seeds] for row, m in TABLE2.items()},
           "pretrain_runs": {m: [pre[m][s] for s in p.seeds] for m in pre}}
    return out


def write_tables(results: dict, out_dir, caption: str) -> list[Path]:
    """``table1`` / ``table2`` (mean ± std, reported beside) and their ``_seeds`` tables, and
    ``pretrain_curves.png``."""
    paths = write_study_table(results["table1"], out_dir, "table1", caption, "Table 1 (BEV segmentation).",
                              REPORTED1, REF)
    paths += write_study_table(results["table2"], out_dir, "table2", caption, "Table 2 (loss ablation).",
                               REPORTED2, REF)
    paths.append(pretrain_curves(results["pretrain_runs"], Path(out_dir) / "pretrain_curves.png"))
    return paths


def pretrain_curves(runs: dict, path) -> Path:
    """Validation loss terms per epoch of each pre-training method (mean over seeds): what the
    pre-training learned. The InfoNCE panel marks chance level ``ln K`` (K sampled cells)."""
    import json

    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from ...io import atomic_savefig
    from ...train import read_metrics

    terms = ("val_mae", "val_cl", "val_bevdistill")
    fig, axes = plt.subplots(1, len(terms), figsize=(12, 3.2), constrained_layout=True)
    chance = None
    for method, dirs in runs.items():
        rows = [read_metrics(d) for d in dirs]
        for ax, t in zip(axes, terms):
            series = [[r[t] for r in rs if r.get(t) not in ("", None)] for rs in rows]
            series = [s for s in series if s]
            if not series:
                continue
            n = min(len(s) for s in series)
            ax.plot(range(n), np.mean([s[:n] for s in series], 0), marker="o", ms=3, label=method)
        if chance is None:
            cfg = json.loads((Path(dirs[0]) / "config.json").read_text())
            chance = float(np.log(cfg["task"]["combined"]["k"])) if "task" in cfg else None
    for ax, t in zip(axes, terms):
        ax.set_title(t, fontsize=9)
        ax.set_xlabel("epoch (0: before training)")
        if t == "val_cl" and chance:
            ax.axhline(chance, color="grey", ls="--", lw=1, label="chance (ln K)")
        ax.legend(fontsize=7)
    try:
        return Path(atomic_savefig(fig, Path(path), dpi=110))
    finally:
        plt.close(fig)


def direction_check(out_dir) -> list:
    """The paper's Table 1-2 findings (:mod:`.claims`) on this run's ``table1_seeds.csv`` /
    ``table2_seeds.csv`` (paired by seed); writes ``direction_check.csv`` / ``.md``."""
    from ...scoreboard import direction_check as check
    from . import claims  # noqa: F401  (registers the claims)

    return check("combined", out_dir, ("table1_seeds.csv", "table2_seeds.csv"),
                 "The combined-datasets paper's Table 1-2 findings (BEV segmentation) against this run's seeds "
                 "(paired by seed; 95 % t-interval).")
