"""busch2026 Figs. 5 and 6 from finished runs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...bev import lift_to_bev
from ...classes import IGNORE, NUM_BEV
from ...io import atomic_savefig
from ...train import read_metrics
from .runs import SCRATCH_ROW, Experiment, seed_runs
from .task import model_factory


def plot_fig6(runs: dict, path: str | Path):
    """busch2026 Fig. 6: validation mIoU60 against total training steps; with several seeds the
    mean, and the band between the lowest and highest seed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    styles = {"supervised baseline": dict(color="black", lw=2), "self-supervised pretraining": dict(color="red", ls="--"),
              "self-superv. pretrain + temp": dict(color="red", lw=2)}
    cmap = plt.get_cmap("viridis")
    ours = [k for k in runs if k.startswith("ours")]
    styles[SCRATCH_ROW] = dict(color="grey", lw=1.5, ls="-.")
    for name, dirs in runs.items():
        if name.startswith("_"):
            continue
        curves = [read_metrics(d) for d in seed_runs(dirs)]
        n = min(len(c) for c in curves)
        x = [r["total_step"] for r in curves[0][:n]]
        y = np.array([[r["miou60"] for r in c[:n]] for c in curves])
        style = styles.get(name) or dict(color=cmap(ours.index(name) / max(1, len(ours) - 1)), lw=1.2,
                                         ls="-" if "temp" in name else ":")
        label = name if len(curves) == 1 else f"{name} ({len(curves)} seeds)"
        ax.plot(x, y.mean(0), marker=".", label=label, **style)
        if len(curves) > 1:
            ax.fill_between(x, y.min(0), y.max(0), color=style["color"], alpha=0.15, lw=0)
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

    from ...data.dataset import KeyframeDataset
    from ...models.bevformer import forward_keyframes
    from ...train import latest_checkpoint, load_checkpoint

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
    from ...viz import colorize, legend_handles

    p = exp.params
    i = sample_index if sample_index is not None else len(exp.val_tokens) // 2
    tok = exp.val_tokens[i]
    item = exp.store.get(tok)
    names = [n for n in runs if not n.startswith("_")]
    panels = [(n, predict_bev(seed_runs(runs[n])[0], exp, tok)) for n in names]
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
