"""busch2026 Table I as tables: measured beside reported, per seed, and the transfer probe."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ...classes import BEV_CLASSES, IGNORE, NUM_BEV
from ...stats import mean_ci95
from ...tables import with_reported, write_table
from ...train import checkpoint_at, read_metrics
from .params import COLUMN_TITLES, COLUMNS, REPORTED_TABLE1
from .runs import Experiment, seed_runs
from .task import model_factory


def seed_rows(runs: dict) -> list[dict]:
    """One row per (method, seed): the final metrics of every run (``table1_seeds.csv``)."""
    out = []
    for name, dirs in runs.items():
        if name.startswith("_"):
            continue
        for d in seed_runs(dirs):
            cfg = json.loads((Path(d) / "config.json").read_text())
            final = read_metrics(d)[-1]
            out.append({"method": name, "seed": cfg["train"]["seed"], **{c: round(final[c], 2) for c in COLUMNS}})
    return out


def table1_rows(runs: dict) -> list[dict]:
    """Table I in the paper's layout: for each method a measured row and, where the paper has
    that method, the reported row beside it. With several seeds the measured value is the mean,
    with ``<column>_ci95`` (half-width of the 95 % t-interval) and ``n_seeds``."""
    measured = []
    for name, dirs in runs.items():
        if name.startswith("_"):
            continue
        finals = [read_metrics(d)[-1] for d in seed_runs(dirs)]
        if len(finals) == 1:
            measured.append({"method": name, **{c: round(finals[0][c], 1) for c in COLUMNS}})
            continue
        row = {"method": name, "n_seeds": len(finals)}
        for c in COLUMNS:
            m, h = mean_ci95([f[c] for f in finals])
            row[c], row[c + "_ci95"] = round(m, 1), round(h, 1)
        measured.append(row)
    rows = with_reported(measured, REPORTED_TABLE1, "method", COLUMNS, "reported (busch2026, nuScenes)")
    extra = {r["method"]: r for r in measured if "n_seeds" in r}
    for r in rows:
        if r["source"] == "measured" and r["method"] in extra:
            r.update({k: v for k, v in extra[r["method"]].items() if k.endswith("_ci95") or k == "n_seeds"})
    return rows


def write_table1(rows: list[dict], out_dir: str | Path, caption: str) -> tuple[Path, Path]:
    """Write ``table1.csv`` and ``table1.md`` (atomic). Returns both paths. With several seeds the
    Markdown shows mean ± 95 % interval, and the CSV has ``<column>_ci95`` and ``n_seeds``."""
    seeded = any("n_seeds" in r for r in rows)
    errors = {c: c + "_ci95" for c in COLUMNS} if seeded else None
    return write_table(rows, out_dir, "table1", ("method", "source"), COLUMNS, caption, COLUMN_TITLES, "Table I.",
                       errors=errors, extra=("n_seeds",) if seeded else ())


def write_seed_table(runs: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """``table1_seeds.csv`` / ``.md``: every run's final metrics, one row per (method, seed)."""
    return write_table(seed_rows(runs), out_dir, "table1_seeds", ("method", "seed"), COLUMNS,
                       "Final validation metrics of every run, one row per training seed (percent).",
                       COLUMN_TITLES, "Table I, per seed.", digits=2)


def caption(exp: Experiment) -> str:
    """Table I's caption: what data and settings the measured rows come from, and what
    'reported' means."""
    p = exp.params
    where = f"the embedded world (seed {p.world_seed})" if not p.dataroot else f"{p.dataroot}"
    return (f"Measured on {where}, {p.version}, val split ({len(exp.val_tokens)} keyframes; trained on "
            f"{len(exp.train_tokens)}, fine-tuned on {len(exp.half_tokens)}), images {p.image_wh[0]}x{p.image_wh[1]}, "
            f"BEV {p.bev_hw[0]}x{p.bev_hw[1]}, backbone {p.backbone}, {p.epochs} epochs, fine-tuning "
            f"{p.finetune_halved_epochs} halved epochs, pseudo-labels: {exp.labeler_name}. "
            "Rows marked 'reported' are busch2026 Table I (nuScenes trainval, ResNet-50, 30 epochs), "
            "not measured here. IoU in percent.")


@torch.no_grad()
def bev_cell_features(model, exp: Experiment, tokens, batch_size: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Frozen latent BEV ``X`` of ``model`` on keyframes, upsampled (bilinear) to the BEV
    ground-truth grid: (N cells, D) float32 features and (N,) labels, ignored cells dropped."""
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from ...data.dataset import KeyframeDataset
    from ...models.bevformer import forward_keyframes

    model.eval()
    feats, labels = [], []
    loader = DataLoader(KeyframeDataset(exp.store, tokens, with_prev=exp.params.use_history), batch_size=batch_size)
    for batch in loader:
        X = forward_keyframes(model, batch, exp.params.use_history)["bev"]
        X = F.interpolate(X, size=tuple(batch["bev_gt"].shape[-2:]), mode="bilinear", align_corners=False)
        keep = batch["bev_gt"] != IGNORE
        feats.append(X.permute(0, 2, 3, 1)[keep].numpy())
        labels.append(batch["bev_gt"][keep].numpy())
    return np.concatenate(feats), np.concatenate(labels)


PROBE_COLUMNS = tuple(f"{c}_{k}" for k in ("auc", "iou") for c in BEV_CLASSES)


def probe_rows(runs: dict, exp: Experiment, max_train: int = 50_000) -> list[dict]:
    """A per-class linear probe (logistic regression) of the frozen latent BEV on the BEV ground
    truth: fitted on the 50 % fine-tuning subset, scored on the validation keyframes. Rows: random
    weights (the floor), the temporal pretraining after each length of ``pretrain_lengths`` and at
    its end, the supervised baseline (the ceiling). First training seed. AUC and IoU in percent."""
    from ...probe import linear_probe
    from ...train import load_checkpoint

    p = exp.params
    pre = seed_runs(runs["_pretrain_temp"])[0]
    models = [("random weights", None)]
    models += [(f"pretrain + temp, {n} ep", checkpoint_at(pre, n)) for n in p.pretrain_lengths]
    models += [(f"pretrain + temp, {p.epochs} ep (end)", checkpoint_at(pre, p.epochs)),
               ("supervised baseline (end)", checkpoint_at(seed_runs(runs["supervised baseline"])[0], p.epochs))]
    rows, seen = [], set()
    for name, ck in models:
        if str(ck) in seen:
            continue
        seen.add(str(ck))
        torch.manual_seed(p.train_seeds[0])
        model = model_factory(exp.model_cfg)
        if ck is not None:
            model.load_state_dict(load_checkpoint(ck)["model"])
        tx, ty = bev_cell_features(model, exp, exp.half_tokens)
        vx, vy = bev_cell_features(model, exp, exp.val_tokens)
        r = linear_probe(tx, ty, vx, vy, NUM_BEV, max_train=max_train, seed=p.seed)
        rows.append({"features": name, **{f"{c}_auc": round(100 * r.auc[i + 1], 1) for i, c in enumerate(BEV_CLASSES)},
                     **{f"{c}_iou": round(100 * r.iou[i + 1], 1) for i, c in enumerate(BEV_CLASSES)}})
    return rows


def write_probe_table(rows: list[dict], out_dir: str | Path, exp: Experiment) -> tuple[Path, Path]:
    """``probe.csv`` / ``probe.md``: what a linear read-out of the frozen BEV features reaches."""
    cap = (f"Linear probe of the frozen latent BEV X (upsampled to the {exp.params.bev_hw[0]}x{exp.params.bev_hw[1]} "
           f"BEV grid), logistic regression fitted on {len(exp.half_tokens)} training keyframes, scored on "
           f"{len(exp.val_tokens)} validation keyframes: one-vs-rest ranking AUC (50 = chance) and arg-max IoU "
           "per class, percent. Measured here; the paper reports no probe.")
    return write_table(rows, out_dir, "probe", ("features",), PROBE_COLUMNS, cap, title="Transfer probe.")


def write_protocol_tables(runs: dict, exp: Experiment, out_dir: str | Path) -> list[Path]:
    """The tables beside Table I that the protocol asks for: ``table1_seeds`` with several training
    seeds, ``probe`` when ``params.probe``. Returns the Markdown paths written."""
    written = []
    if len(exp.params.train_seeds) > 1:
        written.append(write_seed_table(runs, out_dir)[1])
    if exp.params.probe:
        written.append(write_probe_table(probe_rows(runs, exp), out_dir, exp)[1])
    return written
