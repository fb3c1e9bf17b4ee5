"""wozniak2025 (S3PT) Table 1 on the embedded world: the CrIBo baseline and S3PT's components added
one at a time, each pretrained on the world's camera images and probed with a frozen backbone
(Segmenter linear and mask-transformer heads, the best of the paper's learning-rate grid)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...params import ParameterError, distinct_ints
from ...tables import write_table
from .study import (S3PTStudyParams, StudyData, mean_spread, prepare_world, pretrain_run, probe, slug,
                    student_backbone)

#: Table 1's rows as run here: name -> (S3PTConfig overrides on top of the CrIBo baseline :data:`BASELINE`,
#: the paper's cluster count M). Our token grid is 8 x 8 per global crop (paper 14 x 14), so the paper's
#: M in {8, 16, 32, 64, 128} of 392 joint-view tokens becomes {2, 4, 8, 16, 32} of our 128 (x 1/4, as
#: CrIBo's 32 -> 8). The four rows of :data:`CLAIM_ROWS` decide the direction check and run every seed;
#: the sweeps (cluster count, SK iterations, depth weight) run ``sweep_seeds``.
ROWS = {
    "CrIBo": ({}, 32),
    "+ vMF": ({"vmf": True}, 32),
    "+ vMF, M=2": ({"vmf": True, "n_clusters": 2}, 8),
    "+ vMF, M=4": ({"vmf": True, "n_clusters": 4}, 16),
    "+ vMF, M=16": ({"vmf": True, "n_clusters": 16}, 64),
    "+ vMF, M=32": ({"vmf": True, "n_clusters": 32}, 128),
    "+ vMF, M=8, 1 SK iter.": ({"vmf": True, "n_clusters": 8, "sk_iters": 1}, 32),
    "+ vMF, M=32, 1 SK iter.": ({"vmf": True, "n_clusters": 32, "sk_iters": 1}, 128),
    "+ vMF, M=32, 1 SK iter., depth β=0.5": ({"vmf": True, "n_clusters": 32, "sk_iters": 1, "depth_beta": 0.5}, 128),
    "+ vMF, M=32, 1 SK iter., depth β=1": ({"vmf": True, "n_clusters": 32, "sk_iters": 1, "depth_beta": 1.0}, 128),
    "+ vMF, M=32, 1 SK iter., depth (S3PT)": ({"vmf": True, "n_clusters": 32, "sk_iters": 1, "depth_beta": 4.0}, 128),
}
#: The rows the paper's claims compare (its bold steps: CrIBo -> + vMF -> + M=128 / 1 SK -> + depth β=4).
CLAIM_ROWS = ("CrIBo", "+ vMF", "+ vMF, M=32, 1 SK iter.", "+ vMF, M=32, 1 SK iter., depth (S3PT)")
#: The CrIBo baseline (Lebailly et al.): 5 SK iterations, no vMF, no depth; M scaled to our grid
#: (CrIBo 32 of 392 tokens -> 8 of 128).
BASELINE = {"method": "cribo", "vmf": False, "n_clusters": 8, "sk_iters": 5, "depth_beta": 0.0}
#: wozniak2025 Table 1 (ViT-S/16, 100 epochs of nuScenes, probed on nuImages; linear / mask-transformer
#: mIoU, percent), by our row names (the paper's M is ours x 4); reported, not measured here.
REPORTED_TABLE1 = {"CrIBo": (20.50, 41.67), "+ vMF": (26.07, 45.04), "+ vMF, M=2": (26.13, 43.40),
                   "+ vMF, M=4": (26.18, 43.87), "+ vMF, M=16": (24.86, 45.85), "+ vMF, M=32": (24.15, 46.01),
                   "+ vMF, M=8, 1 SK iter.": (25.24, 45.47), "+ vMF, M=32, 1 SK iter.": (28.10, 47.46),
                   "+ vMF, M=32, 1 SK iter., depth β=0.5": (36.80, 51.10),
                   "+ vMF, M=32, 1 SK iter., depth β=1": (37.65, 51.51),
                   "+ vMF, M=32, 1 SK iter., depth (S3PT)": (38.06, 51.04)}


@dataclass
class AblationParams(S3PTStudyParams):
    """Knobs of the S3PT ablation notebook (the shared ones: :class:`~.study.S3PTStudyParams`)."""

    rows: tuple | None = None               # rows of ROWS to run (None: all)
    sweep_seeds: tuple = (0,)               # seeds of the rows outside CLAIM_ROWS
    random_baseline: bool = True            # also probe a randomly initialised backbone
    output_name: str = "s3pt_ablation"      # outputs/<output_name>/

    def __post_init__(self):
        super().__post_init__()
        bad = [r for r in (self.rows or ()) if r not in ROWS]
        if bad:
            raise ParameterError(f"parameter 'rows' names unknown rows {bad}; known: {list(ROWS)}")
        self.sweep_seeds = distinct_ints("sweep_seeds", self.sweep_seeds)

    def row_seeds(self, row: str) -> tuple:
        """The seeds a row runs: every seed for the claim rows (and random init), ``sweep_seeds`` else."""
        return self.seeds if row in CLAIM_ROWS or row == "random init" else self.sweep_seeds


#: Prepared data of the ablation (one embedded world).
AblationData = StudyData


def prepare_ablation(p: AblationParams) -> StudyData:
    """Open the embedded world (generated if needed): keyframe tokens, the probe's camera items and the
    train class shares. Raises: ParameterError when a split is empty."""
    return prepare_world(p)


def pretrain_row(data: StudyData, row: str, seed: int) -> Path:
    """Pretrain one row with one seed (reused when done). Returns the run directory."""
    return pretrain_run(data, {**BASELINE, **ROWS[row][0]}, slug(row), seed)


def run_ablation(data: StudyData) -> dict:
    """Every row x its seeds: pretrain, then probe with each head in ``heads_eval``. Returns ``{row: [{"seed",
    <head>: best mIoU (percent), "<head>_rare": mean IoU over the rare classes, "<head>_per_class": {class:
    IoU}}]}``, with "random init" (a probed random backbone) first when ``random_baseline``."""
    from ...progress import bar

    p = data.params
    rows = [r for r in ROWS if p.rows is None or r in p.rows]
    out = {}
    jobs = ([("random init", s) for s in p.seeds] if p.random_baseline else []) + \
        [(r, s) for r in rows for s in p.row_seeds(r)]
    for row, seed in bar(jobs, desc="S3PT ablation", disable=not p.progress):
        state = None if row == "random init" else student_backbone(pretrain_row(data, row, seed))
        rec = {"seed": seed}
        for head in p.heads_eval:
            res = probe(data, head, seed, slug(row), state)
            rec[head], rec[f"{head}_rare"], rec[f"{head}_per_class"] = res["miou"], res["rare"], res["per_class"]
        out.setdefault(row, []).append(rec)
    return out


def _row_settings(row: str) -> dict:
    """Table 1's setting columns of a row: our M (the paper's), vMF, SK iterations, depth weight."""
    if row not in ROWS:
        return {"M (paper M)": "", "vMF": "", "SK iters": "", "depth β": ""}
    cfg, paper_m = {**BASELINE, **ROWS[row][0]}, ROWS[row][1]
    return {"M (paper M)": f"{cfg['n_clusters']} ({paper_m})", "vMF": "yes" if cfg["vmf"] else "no",
            "SK iters": str(cfg["sk_iters"]), "depth β": f"{cfg['depth_beta']:g}" if cfg["depth_beta"] else "–"}


def _metrics(heads) -> tuple:
    return tuple(heads) + tuple(f"{h}_rare" for h in heads)


_TITLES = {"linear": "linear mIoU", "mask": "mask transformer mIoU", "linear_rare": "linear, rare classes",
           "mask_rare": "mask transformer, rare classes"}
_SETTINGS = ("M (paper M)", "vMF", "SK iters", "depth β")


def ablation_rows(results: dict, heads) -> list[dict]:
    """Table 1 rows: mean ± 95 % over seeds of the best-of-grid probe mIoU per head (and over the rare
    classes), each followed by the paper's row (reported) where it has one."""
    rows = []
    for row, recs in results.items():
        r = {"method": row, "source": "measured", **_row_settings(row), "n_seeds": len(recs)}
        for m in _metrics(heads):
            mean, ci = mean_spread(x[m] for x in recs)
            r[m], r[f"{m}_ci95"] = round(mean, 1), round(ci, 1)
        rows.append(r)
        if row in REPORTED_TABLE1:
            rep = dict(zip(("linear", "mask"), REPORTED_TABLE1[row]))
            rows.append({"method": row, "source": "reported (wozniak2025 Table 1, ViT-S 100 ep, nuImages)",
                         **_row_settings(row), **{h: rep[h] for h in heads}, **{f"{h}_rare": None for h in heads}})
    return rows


def seed_rows(results: dict, heads) -> list[dict]:
    """One row per (method, seed): the scoreboard's table."""
    return [{"method": row, "source": "measured", "seed": x["seed"], **{m: round(x[m], 2) for m in _metrics(heads)}}
            for row, recs in results.items() for x in recs]


def per_class_rows(results: dict, head: str) -> list[dict]:
    """Per-class IoU of ``head``'s probe, mean over seeds, one row per method (Fig. 5's data)."""
    classes = list(next(iter(results.values()))[0][f"{head}_per_class"])
    return [{"method": row, "source": "measured",
             **{c: round(float(np.nanmean([x[f"{head}_per_class"].get(c, np.nan) for x in recs])), 1) for c in classes}}
            for row, recs in results.items()]


def write_ablation_tables(results: dict, out_dir, caption: str, heads, class_share: dict | None = None) -> list[Path]:
    """``table1.csv/.md`` (mean ± 95 %), ``table1_seeds.csv/.md``, ``fig5_per_class.csv/.md`` and
    ``fig5_per_class.png`` (the mask-transformer head's per-class IoU when it ran, as the paper's Fig. 5, for
    random init and the :data:`CLAIM_ROWS` steps; classes ordered by their train pixel share ``class_share``)."""
    heads = tuple(heads)
    metrics = _metrics(heads)
    rare = (" 'Rare classes': mean IoU over the classes under 1 % of the labelled train pixels ("
            + ", ".join(c for c, s in (class_share or {}).items() if 0 < s < 0.01) + ").") if class_share else ""
    paths = list(write_table(ablation_rows(results, heads), out_dir, "table1", ("method", "source", *_SETTINGS),
                             metrics, caption + rare, tuple(_TITLES[m] for m in metrics), "Table 1 (ablation).",
                             errors={m: f"{m}_ci95" for m in metrics}, extra=("n_seeds",)))
    paths += write_table(seed_rows(results, heads), out_dir, "table1_seeds", ("method", "source", "seed"), metrics,
                         caption + " One row per seed.", tuple(_TITLES[m] for m in metrics), "Table 1, per seed.",
                         digits=2)
    h = "mask" if "mask" in heads else heads[0]
    rows = per_class_rows(results, h)
    classes = [k for k in rows[0] if k not in ("method", "source")]
    if class_share:
        classes.sort(key=lambda c: -class_share.get(c, 0.0))
    paths += write_table(rows, out_dir, "fig5_per_class", ("method", "source"), classes,
                         caption + f" Per-class IoU of the {h} probe, mean over seeds (Fig. 5's data).",
                         title="Fig. 5 (per class).")
    steps = [r for r in rows if r["method"] in ("random init", *CLAIM_ROWS)] or rows   # Fig. 5 shows the steps
    paths.append(fig5_figure(steps, classes, Path(out_dir) / "fig5_per_class.png", h, class_share))
    return paths


def fig5_figure(rows: list[dict], classes: list[str], path: Path, head: str, class_share: dict | None = None) -> Path:
    """Grouped bars of per-class IoU (one group per class, one bar per method; Fig. 5 style), classes
    annotated with their train pixel share. Written atomically."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ...io import atomic_savefig

    fig, ax = plt.subplots(figsize=(max(8.0, 0.55 * len(classes)), 4))
    width = 0.8 / max(1, len(rows))
    x = np.arange(len(classes))
    for i, r in enumerate(rows):
        ax.bar(x + (i - (len(rows) - 1) / 2) * width, [r.get(c, np.nan) for c in classes], width, label=r["method"])
    labels = [f"{c}\n{100 * class_share[c]:.1f}%" if class_share and c in class_share else c for c in classes]
    ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(f"IoU, {head} probe (%)")
    ax.set_title("Per-class IoU by method (classes by train pixel share, most frequent first)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return path


def ablation_caption(data: StudyData) -> str:
    """What the ablation's numbers were measured on."""
    p = data.params
    return (f"{data.data_desc}: ViT {p.layers} layers x {p.hidden}, patch {p.patch}, pretrained {p.pretrain_epochs} "
            f"epochs on the {len(data.train_items)} train camera images at {p.image_wh[0]}x{p.image_wh[1]} (global crops "
            f"{p.global_size}, {p.n_local} local; depth term from {p.depth_source} depth); frozen-backbone probes on "
            f"the world's camera semantics ({len(data.val_items)} val images), {p.probe_epochs} epochs, best of lr "
            f"{list(p.probe_lrs)}; mIoU over the 22 world classes (percent), mean ± 95 % interval over seeds "
            f"{list(p.seeds)} (rows {', '.join(CLAIM_ROWS)} and random init) or {list(p.sweep_seeds)} (the sweeps). "
            "Reported: the paper's ViT-S/16, 100 epochs of nuScenes, probed on nuImages (other data).")


def direction_check(out_dir) -> list:
    """wozniak2025's Table 1 findings (:mod:`.claims`) on ``<out_dir>/table1_seeds.csv`` (paired by
    seed); writes ``direction_check.csv`` / ``.md``. Returns the scoreboard's results."""
    from ...scoreboard import direction_check as check
    from . import claims  # noqa: F401  (registers the claims)

    return check("s3pt", out_dir, "table1_seeds.csv",
                 "wozniak2025's Table 1 findings against this run's seeds (paired by seed; 95 % t-interval).")
