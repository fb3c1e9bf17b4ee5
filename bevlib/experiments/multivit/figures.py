"""lukkassen2024 RangeViT figures: mIoU per epoch, and one val sweep's range image / prediction / truth."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ...classes import NUSCENES_LIDARSEG_16
from ...io import atomic_savefig
from ...train import latest_checkpoint, load_checkpoint, read_metrics
from .task import collate_sweeps, predict_classes, sliding_window_forward


def dip_events(run_dir) -> list[dict]:
    """Rollback events of a run (``events.jsonl``: spikes and training dips, lukkassen2024 appendix)."""
    path = Path(run_dir) / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_miou_curve(run_dir, out_path) -> Path:
    """Validation mIoU (%) per epoch from ``metrics.csv``; rollback events marked and listed in the
    title. Returns the PNG path (written atomically)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run_dir)
    ev = dip_events(run_dir)
    fig, ax = plt.subplots(figsize=(6, 3.5), constrained_layout=True)
    ax.plot([r["epoch"] for r in rows], [r["miou"] for r in rows], marker="o")
    for e in ev:
        ax.axvline(e["epoch"], color="r", ls="--", lw=0.8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("val mIoU (%)")
    ax.set_title(f"RangeViT: val mIoU per epoch ({len(ev)} rollback event(s))")
    ax.grid(alpha=0.3)
    out = atomic_savefig(fig, out_path, dpi=120)
    plt.close(fig)
    return out


def _colour(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    img = np.asarray(NUSCENES_LIDARSEG_16.colors, np.uint8)[labels]
    img[~mask] = 255
    return img


@torch.no_grad()
def plot_val_sweep(exp, task, run_dir, out_path, index: int = 0) -> Path:
    """Three stacked panels of val sweep ``index``: range (m), predicted and ground-truth classes per
    pixel (the class of the pixel's owning point; white = empty), colours of
    :data:`NUSCENES_LIDARSEG_16`. Model: the run's newest checkpoint, sliding-window inference on CPU."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ...range_view import project_to_range

    model = task.build_model()
    model.load_state_dict(load_checkpoint(latest_checkpoint(run_dir))["model"])
    model.eval()
    ds = task.val_dataset()
    b = collate_sweeps([ds[index]])
    out = sliding_window_forward(model, b["image"], b["points"], b["u"], b["v"], b["batch"], task.crop_w, task.stride)
    pred = predict_classes(out["point_logits"]).numpy()
    s = exp.val_sweeps[index]
    ri = project_to_range(np.column_stack([s["points"], s["intensity"]]), s["ring"], task.proj)
    own = np.where(ri.mask, ri.owner, 0)
    fig, axes = plt.subplots(3, 1, figsize=(14, 4.5), constrained_layout=True)
    axes[0].imshow(np.ma.masked_where(~ri.mask, ri.image[0]), cmap="turbo", aspect="auto", interpolation="nearest")
    axes[0].set_title(f"range image (m), val sweep {s['token'][:8]}")
    axes[1].imshow(_colour(pred[own], ri.mask), aspect="auto", interpolation="nearest")
    axes[1].set_title("prediction (sliding window)")
    axes[2].imshow(_colour(s["labels"][own], ri.mask), aspect="auto", interpolation="nearest")
    axes[2].set_title("ground truth (16 classes, black = ignore)")
    for ax in axes:
        ax.set_yticks([])
    res = atomic_savefig(fig, out_path, dpi=100)
    plt.close(fig)
    return res
