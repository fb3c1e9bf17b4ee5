"""busch2026 Table I, Fig. 5 and Fig. 6: supervised baseline, self-supervised pretraining
(with / without the temporal loss) and two-phase runs fine-tuned on 50 % of the BEV labels.

One pretraining run serves every pretraining length: a two-phase run "ours(N ep pretrain)" starts
from that run's checkpoint after epoch N and fine-tunes for a fixed number of *halved* epochs
(passes over the 50 % subset), busch2026 Sec. V. Steps are counted in optimiser steps; the
two-phase total is N x (steps per full epoch) + the fine-tuning steps (Fig. 6's x axis).
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import geometry as geo
from ..bev import BEVGrid, lift_to_bev
from ..classes import BEV_CLASSES, IGNORE, NUM_BEV
from ..data.dataset import KeyframeStore
from ..data.source import WorldParams, resolve_dataroot
from ..data.nuscenes_data import (BEVTargetConfig, KeyframeConfig, half_subset, open_nuscenes,
                                  scene_sample_tokens, split_scenes)
from ..io import atomic_savefig
from ..params import ParameterError
from ..paths import outputs_dir
from ..tables import with_reported, write_table
from ..train import Task, TrainConfig, checkpoint_at, read_metrics, train, unwrap

log = logging.getLogger(__name__)

COLUMNS = ("boundary_iou", "lane_iou", "crosswalk_iou", "miou20", "miou40", "miou60")
COLUMN_TITLES = ("boundary IoU", "lane IoU", "crosswalk IoU", "mIoU20", "mIoU40", "mIoU60")

#: busch2026 Table I as printed (nuScenes trainval, val split; percent).
REPORTED_TABLE1 = {
    "supervised baseline": (25.1, 26.4, 11.5, 31.5, 25.6, 21.0),
    "self-supervised pretraining": (7.1, 6.0, 3.2, 6.3, 6.0, 5.4),
    "self-superv. pretrain + temp": (6.8, 6.0, 5.4, 7.4, 7.0, 6.1),
    "ours(3ep pretrain + temp)": (25.2, 27.2, 14.9, 32.7, 26.7, 22.4),
    "ours(3ep pretrain)": (24.8, 27.0, 14.9, 32.7, 26.7, 22.3),
    "ours(5ep pretrain + temp)": (24.5, 26.4, 14.8, 32.3, 26.3, 21.9),
    "ours(10ep pretrain + temp)": (26.2, 27.2, 15.3, 33.5, 27.5, 22.9),
    "ours(20ep pretrain + temp)": (26.2, 27.7, 15.6, 35.3, 28.2, 23.2),
    "ours(22ep pretrain + temp)": (26.3, 28.1, 16.0, 34.5, 28.6, 23.5),
    "ours(22ep pretrain)": (26.4, 27.3, 15.3, 33.5, 27.8, 23.3),
    "ours(24ep pretrain + temp)": (26.2, 28.1, 16.0, 35.1, 28.5, 23.4),
    "ours(26ep pretrain + temp)": (25.8, 27.7, 16.4, 34.7, 28.3, 23.3),
    "ours(27ep pretrain + temp)": (26.5, 27.3, 15.7, 35.8, 28.7, 23.2),
}


@dataclass
class Table1Params(WorldParams):
    """Every knob of notebooks/table1.ipynb; the defaults are the embedded-default preset
    (the whole notebook in <= 15 min on 2 CPU cores). ``params/table1/paper.yaml`` holds the
    paper's settings (nuScenes trainval, 512x288, ResNet-50, 150x150, 30 epochs, batch 6)."""

    labeler: str = "synthetic"              # "synthetic" | "mask2former"
    pseudo_noise: float = 0.1               # synthetic labeller only
    mask2former_weights: str | None = None  # local path, labeler="mask2former" only
    image_wh: tuple = (224, 128)            # paper: (512, 288)
    bev_hw: tuple = (120, 60)               # BEV ground-truth / output grid, paper: (150, 150)
    query_hw: tuple = (30, 15)              # BEV queries, paper: (150, 150)
    line_width_m: float = 0.6
    backbone: str = "tiny"                  # "tiny" | "resnet-18" | "resnet-50" (paper)
    backbone_weights: str | None = None     # local pretrained weights (paper: ImageNet ResNet-50)
    embed_dim: int = 32                     # paper: 256
    num_layers: int = 1                     # paper: 6
    num_heads: int = 4                      # paper: 8 (BEVFormer)
    ffn_dim: int = 128                      # paper: 512 (BEVFormer: 2 x embed_dim)
    epochs: int = 12                        # baseline and pretraining length, paper: 30
    batch_size: int = 2                     # paper: 6
    lr: float = 2e-3                        # paper: 2e-4 (BEVFormer)
    pretrain_lengths: tuple = (3, 6, 9)     # "ours(N ep pretrain + temp)" rows, paper: 3..27
    no_temp_lengths: tuple = (3, 9)         # "ours(N ep pretrain)" rows, paper: 3, 22
    finetune_halved_epochs: int = 6         # paper: 14 (= 32,800 steps)
    bev_class_weights: tuple | None = (1.0, 10.0, 10.0, 10.0)  # thin markings are ~8 % of cells
    use_history: bool = True
    render_backend: str = "analytic"
    seed: int = 0
    output_dir: str | None = None           # None: <project>/outputs/table1
    runs_dir: str | None = None             # None: <project>/outputs/runs/busch2026
    progress: bool = True
    in_memory: bool | None = None           # keep decoded keyframes in RAM; None: when <= 3000 keyframes

    def __post_init__(self):
        super().__post_init__()

        def pair(name):
            v = getattr(self, name)
            if not (isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) and x > 0 for x in v)):
                raise ParameterError(f"parameter {name!r} must be two positive integers, got {v!r}")
            setattr(self, name, tuple(v))
        for n in ("image_wh", "bev_hw", "query_hw"):
            pair(n)
        for n in ("pretrain_lengths", "no_temp_lengths"):
            v = getattr(self, n)
            if not isinstance(v, (list, tuple)) or not all(isinstance(x, int) and 1 <= x <= self.epochs for x in v):
                raise ParameterError(f"parameter {n!r} must be a list of epochs in 1..epochs={self.epochs}, got {v!r}")
            setattr(self, n, tuple(v))
        if self.labeler not in ("synthetic", "mask2former"):
            raise ParameterError(f"parameter 'labeler' must be 'synthetic' or 'mask2former', got {self.labeler!r}")
        if self.labeler == "mask2former" and not self.mask2former_weights:
            raise ParameterError("parameter 'mask2former_weights' (a local path) is required with labeler='mask2former'")
        if self.bev_class_weights is not None:
            if len(self.bev_class_weights) != NUM_BEV:
                raise ParameterError(f"parameter 'bev_class_weights' needs {NUM_BEV} values, got {self.bev_class_weights!r}")
            self.bev_class_weights = tuple(float(x) for x in self.bev_class_weights)
        for n in ("epochs", "batch_size", "finetune_halved_epochs", "num_layers", "num_heads", "ffn_dim"):
            if not isinstance(getattr(self, n), int) or getattr(self, n) < 1:
                raise ParameterError(f"parameter {n!r} must be a positive integer, got {getattr(self, n)!r}")

    @property
    def grid(self) -> BEVGrid:
        """The BEV ground-truth / output grid: ``bev_hw`` cells over +-30 m x +-15 m (ego frame)."""
        return BEVGrid(H=self.bev_hw[0], W=self.bev_hw[1])


@dataclass
class Experiment:
    """Data prepared for Table I: the devkit handle, keyframe store and splits."""

    params: Table1Params
    nusc: object
    store: KeyframeStore
    train_tokens: list
    half_tokens: list
    val_tokens: list
    labeler_name: str
    data_id: dict = field(default_factory=dict)

    @property
    def model_cfg(self) -> dict:
        """The model part of a run's config (``BEVFormerConfig`` fields; lists for JSON)."""
        p = self.params
        return {"backbone": p.backbone, "backbone_weights": p.backbone_weights, "embed_dim": p.embed_dim,
                "num_layers": p.num_layers, "num_heads": p.num_heads, "ffn_dim": p.ffn_dim,
                "query_hw": list(p.query_hw), "out_hw": list(p.bev_hw)}


def make_labeler(p: Table1Params):
    """The configured pseudo-labeller (busch2026 Sec. III-C)."""
    if p.labeler == "synthetic":
        from ..data.synthetic_labeler import SyntheticPseudoLabeler
        return SyntheticPseudoLabeler(noise=p.pseudo_noise, seed=p.seed)
    from ..data.mask2former import Mask2FormerLabeler
    return Mask2FormerLabeler(p.mask2former_weights)


def prepare(p: Table1Params) -> Experiment:
    """Open the data (generating the embedded world if needed), cache pseudo-labels offline as
    the paper does, and load every keyframe once into memory.

    Raises: DataError / ParameterError naming the bad input.
    """
    from ..data.pseudo import cache_pseudo_labels

    dataroot, _ = resolve_dataroot(p, progress=p.progress)
    nusc = open_nuscenes(dataroot, p.version)
    splits = split_scenes(nusc)
    train_tokens = scene_sample_tokens(nusc, splits["train"])
    val_tokens = scene_sample_tokens(nusc, splits["val"])
    if not train_tokens or not val_tokens:
        raise ParameterError(f"dataroot {dataroot!r} ({p.version}) has {len(train_tokens)} train and "
                             f"{len(val_tokens)} val keyframes; Table I needs both")
    labeler = make_labeler(p)
    # val keyframes get pseudo-labels too: Fig. 5 shows them beside the prediction.
    cams = [sd for tok in train_tokens + val_tokens for sd in _camera_tokens(nusc, tok)]
    cache_pseudo_labels(nusc, labeler, cams, progress=p.progress)
    kcfg = KeyframeConfig(image_wh=p.image_wh, grid=p.grid, target=BEVTargetConfig(line_width_m=p.line_width_m),
                          labeler=labeler.name)
    # Small worlds are decoded once and shared by every run; nuScenes trainval (34k keyframes,
    # ~90 GB of decoded 512x288 images) is read from disk per step instead.
    in_memory = p.in_memory if p.in_memory is not None else len(train_tokens) + len(val_tokens) <= 3000
    store = KeyframeStore(nusc, kcfg, in_memory=in_memory)
    if in_memory:
        store.preload(train_tokens + val_tokens, progress=p.progress)
    data_id = {"dataroot": dataroot, "version": p.version, "image_wh": list(p.image_wh),
               "labeler": labeler.name, "line_width_m": p.line_width_m}
    return Experiment(p, nusc, store, train_tokens, half_subset(train_tokens, p.seed), val_tokens,
                      labeler.name, data_id)


def _camera_tokens(nusc, sample_token: str) -> list[str]:
    from ..data.nuscenes_data import CAMERAS
    data = nusc.get("sample", sample_token)["data"]
    return [data[c] for c in CAMERAS if c in data]


def model_factory(cfg: dict):
    """The BEVFormer-style network of a run's model config (``Experiment.model_cfg`` / the
    ``model`` entry of a run's ``config.json``): the registry's ``"bevformer"``."""
    from ..models.registry import build_model
    return build_model("bevformer", cfg)


class Busch2026Task(Task):
    """busch2026's runs as one task for the shared trainer.

    Modes: ``supervised`` (BEV cross-entropy against BEV ground truth: the baseline and the
    fine-tuning phase) and ``pretrain`` (Eq. 1 on rendered predictions against camera
    pseudo-labels, plus Alg. 1's temporal term when ``temporal``). Evaluation: ranged IoU / mIoU
    (Table I columns, percent) over the validation keyframes.
    """

    def __init__(self, model_cfg: dict, store: KeyframeStore, train_tokens, val_tokens, grid: BEVGrid,
                 data_id: dict | None = None, mode: str = "supervised", temporal: bool = False,
                 use_history: bool = True, bev_class_weights: tuple | None = None, render_backend: str = "analytic"):
        if mode not in ("supervised", "pretrain"):
            raise ValueError(f"Busch2026Task mode must be 'supervised' or 'pretrain', got {mode!r}")
        if temporal and mode != "pretrain":
            raise ValueError("Busch2026Task temporal applies to mode='pretrain' only")
        self.model_cfg, self.store, self.grid, self.data_id = dict(model_cfg), store, grid, dict(data_id or {})
        self.train_tokens, self.val_tokens = list(train_tokens), list(val_tokens)
        self.mode, self.temporal, self.use_history = mode, temporal, use_history
        self.bev_class_weights = None if bev_class_weights is None else tuple(bev_class_weights)
        self.render_backend = render_backend

    def config(self) -> dict:
        from ..io import config_hash
        return {"model_name": "bevformer", "model": self.model_cfg, "grid": self.grid.as_dict(), "data": self.data_id,
                "n_train": len(self.train_tokens), "n_val": len(self.val_tokens),
                "train_tokens_hash": config_hash(self.train_tokens), "mode": self.mode, "temporal": self.temporal,
                "use_history": self.use_history, "bev_class_weights": self.bev_class_weights,
                "render_backend": self.render_backend}

    def build_model(self):
        return model_factory(self.model_cfg)

    def train_dataset(self):
        from ..data.dataset import KeyframeDataset
        return KeyframeDataset(self.store, self.train_tokens, with_prev=self.use_history or self.temporal)

    def val_dataset(self):
        from ..data.dataset import KeyframeDataset
        return KeyframeDataset(self.store, self.val_tokens, with_prev=self.use_history)

    def loss(self, model, batch: dict) -> dict:
        """``{"loss": CE}`` (supervised: BEV CE; pretrain: Eq. 1) or, with the temporal loss,
        ``{"loss_t": Eq. 1 at t, "loss_prev": Alg. 1's term at t-1}``."""
        from ..losses import bev_ce, busch2026_alg1_temporal_loss, busch2026_eq1_reprojection_ce
        from ..models.bevformer import forward_keyframes
        from ..render import render_bev

        out = forward_keyframes(model, batch, self.use_history)
        if self.mode == "supervised":
            w = None if self.bev_class_weights is None else torch.tensor(
                self.bev_class_weights, dtype=torch.float32, device=out["logits"].device)
            return {"loss": bev_ce(out["logits"], batch["bev_gt"], w)}
        hw = tuple(batch["pseudo"].shape[-2:])
        if self.temporal:
            l_t, l_prev = busch2026_alg1_temporal_loss(
                unwrap(model).head, out["bev"], batch["curr_T_prev"], batch["K"], batch["ego_T_cam"], hw, self.grid,
                batch["pseudo"], batch["prev_pseudo"], batch["has_prev"], self.render_backend, logits_t=out["logits"])
            return {"loss_t": l_t, "loss_prev": l_prev}
        pred_cp, _ = render_bev(out["logits"], batch["K"], batch["ego_T_cam"], hw, self.grid, self.render_backend)
        return {"loss": busch2026_eq1_reprojection_ce(pred_cp, batch["pseudo"])}

    @torch.no_grad()
    def evaluate(self, model, batches, reduce) -> dict:
        """Ranged IoU / mIoU (busch2026 Table I columns) in percent over the validation keyframes."""
        from ..metrics import RangedBEVMetrics
        from ..models.bevformer import forward_keyframes

        metrics = RangedBEVMetrics(self.grid)
        for batch in batches:
            logits = forward_keyframes(model, batch, self.use_history)["logits"]
            metrics.update(logits[:, :NUM_BEV].argmax(1), batch["bev_gt"])
        metrics.load_counts(reduce(metrics.counts()))
        return metrics.compute()


def make_task(exp: "Experiment", tokens, **kw) -> Busch2026Task:
    """A :class:`Busch2026Task` on the experiment's data, trained on ``tokens``."""
    p = exp.params
    return Busch2026Task(exp.model_cfg, exp.store, tokens, exp.val_tokens, p.grid, exp.data_id,
                         use_history=p.use_history, render_backend=p.render_backend, **kw)


def _train_cfg(p: Table1Params, **kw) -> TrainConfig:
    base = dict(batch_size=p.batch_size, lr=p.lr, seed=p.seed)
    base.update(kw)
    return TrainConfig(**base)


def run_table1(exp: Experiment) -> dict:
    """Run (or reuse) every run Table I needs. Returns {row name: run directory} plus the
    pretraining runs under ``"_pretrain"`` / ``"_pretrain_temp"``."""
    p = exp.params
    runs_root = Path(p.runs_dir) if p.runs_dir else outputs_dir("runs", "busch2026")
    weights = dict(bev_class_weights=p.bev_class_weights)
    runs = {}
    runs["supervised baseline"] = train(make_task(exp, exp.train_tokens, mode="supervised", **weights),
                                        _train_cfg(p, epochs=p.epochs), runs_root, "baseline", p.progress)
    pre = {}
    for temporal, row in ((False, "self-supervised pretraining"), (True, "self-superv. pretrain + temp")):
        pre[temporal] = train(make_task(exp, exp.train_tokens, mode="pretrain", temporal=temporal, **weights),
                              _train_cfg(p, epochs=p.epochs), runs_root,
                              "pretrain_temp" if temporal else "pretrain", p.progress)
        runs[row] = pre[temporal]
    steps_per_epoch = int(read_metrics(pre[True])[0]["step"])
    for temporal, lengths in ((True, p.pretrain_lengths), (False, p.no_temp_lengths)):
        for n in lengths:
            row = f"ours({n}ep pretrain{' + temp' if temporal else ''})"
            cfg = _train_cfg(p, epochs=p.finetune_halved_epochs, init_from=str(checkpoint_at(pre[temporal], n)),
                             step_offset=n * steps_per_epoch)
            runs[row] = train(make_task(exp, exp.half_tokens, mode="supervised", **weights), cfg, runs_root,
                              f"finetune_{n}ep{'_temp' if temporal else ''}", p.progress)
    runs["_pretrain"], runs["_pretrain_temp"] = pre[False], pre[True]
    return runs


def table1_rows(runs: dict) -> list[dict]:
    """Table I in the paper's layout: for each method a measured row and, where the paper has
    that method, the reported row beside it."""
    measured = []
    for name, run_dir in runs.items():
        if name.startswith("_"):
            continue
        final = read_metrics(run_dir)[-1]
        measured.append({"method": name, **{c: round(final[c], 1) for c in COLUMNS}})
    return with_reported(measured, REPORTED_TABLE1, "method", COLUMNS, "reported (busch2026, nuScenes)")


def write_table1(rows: list[dict], out_dir: str | Path, caption: str) -> tuple[Path, Path]:
    """Write ``table1.csv`` and ``table1.md`` (atomic). Returns both paths."""
    return write_table(rows, out_dir, "table1", ("method", "source"), COLUMNS, caption, COLUMN_TITLES, "Table I.")


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


def plot_fig6(runs: dict, path: str | Path):
    """busch2026 Fig. 6: validation mIoU60 against total training steps."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    styles = {"supervised baseline": dict(color="black", lw=2), "self-supervised pretraining": dict(color="red", ls="--"),
              "self-superv. pretrain + temp": dict(color="red", lw=2)}
    cmap = plt.get_cmap("viridis")
    ours = [k for k in runs if k.startswith("ours")]
    for name, run_dir in runs.items():
        if name.startswith("_"):
            continue
        m = read_metrics(run_dir)
        style = styles.get(name) or dict(color=cmap(ours.index(name) / max(1, len(ours) - 1)), lw=1.2,
                                         ls="-" if "temp" in name else ":")
        ax.plot([r["total_step"] for r in m], [r["miou60"] for r in m], marker=".", label=name, **style)
    ax.set_xlabel("total training steps")
    ax.set_ylabel("val mIoU60 [%]")
    ax.set_title("mIoU progress (busch2026 Fig. 6), measured")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=120)
    plt.close(fig)
    return path


@torch.no_grad()
def predict_bev(run_dir, exp: Experiment, sample_token: str) -> np.ndarray:
    """BEV class map (H, W) of a finished run's final checkpoint on one keyframe."""
    from torch.utils.data import default_collate

    from ..data.dataset import KeyframeDataset
    from ..models.bevformer import forward_keyframes
    from ..train import latest_checkpoint, load_checkpoint

    model = model_factory(exp.model_cfg)
    model.load_state_dict(load_checkpoint(latest_checkpoint(run_dir))["model"])
    model.eval()
    ds = KeyframeDataset(exp.store, [sample_token], with_prev=exp.params.use_history)
    logits = forward_keyframes(model, default_collate([ds[0]]), exp.params.use_history)["logits"]
    return logits[0, :NUM_BEV].argmax(0).numpy().astype(np.uint8)


def plot_fig5(runs: dict, exp: Experiment, path: str | Path, sample_index: int | None = None):
    """busch2026 Fig. 5: BEV predictions of each method vs BEV ground truth vs the pseudo-label
    (lifted to BEV on the ground plane) for one validation keyframe."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ..viz import colorize, legend_handles

    p = exp.params
    i = sample_index if sample_index is not None else len(exp.val_tokens) // 2
    tok = exp.val_tokens[i]
    item = exp.store.get(tok)
    names = [n for n in runs if not n.startswith("_")]
    panels = [(n, predict_bev(runs[n], exp, tok)) for n in names]
    panels.append(("BEV ground truth", item["bev_gt"]))
    if "pseudo" in item:
        panels.append(("pseudo-label (lifted to ground)", lift_to_bev(item["pseudo"], item["K"], item["ego_T_cam"], p.grid)))
    ncol = min(6, len(panels))
    nrow = int(np.ceil(len(panels) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.1 * ncol, 3.6 * nrow), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    ext = (p.grid.y_max, p.grid.y_min, p.grid.x_min, p.grid.x_max)
    for ax, (title, m) in zip(axes.flat, panels):
        ax.imshow(colorize(m), extent=ext, interpolation="nearest")
        ax.plot([0], [0], marker="^", color="white", ms=5)
        ax.set_title(title, fontsize=7)
    shown = sorted(set(np.unique(np.concatenate([m.ravel() for _, m in panels])).tolist()) - {0, IGNORE})
    fig.legend(handles=legend_handles(shown), loc="lower center", ncol=min(7, max(1, len(shown))), fontsize=8)
    fig.suptitle(f"busch2026 Fig. 5 (measured), val keyframe {tok[:8]}; ego at centre, driving up", fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    atomic_savefig(fig, path, dpi=120)
    plt.close(fig)
    return path


def main(argv=None) -> None:
    """``python -m bevlib.experiments.busch2026 [-f params.yaml] [-p name value ...]``: Table I
    without a notebook, on one process or under ``torchrun --nproc_per_node=N`` (rank 0 writes the
    table and figures into ``output_dir``)."""
    import argparse

    import yaml

    from ..params import from_dict
    from ..train import distributed as dist

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("-f", "--params", help="a params/table1/<preset>.yaml file")
    ap.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    a = ap.parse_args(argv)
    values = yaml.safe_load(open(a.params)) if a.params else {}
    values.update({k: yaml.safe_load(v) for k, v in a.param})
    p = from_dict(Table1Params, values)
    exp = prepare(p)
    runs = run_table1(exp)
    if dist.is_main():
        out = Path(p.output_dir) if p.output_dir else outputs_dir("table1")
        csv_path, md_path = write_table1(table1_rows(runs), out, caption(exp))
        plot_fig6(runs, out / "fig6_miou_progress.png")
        print(md_path.read_text())


if __name__ == "__main__":
    main()
