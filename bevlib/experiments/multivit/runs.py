"""lukkassen2024 RangeViT run: the data (prepared once) and the training run via the shared trainer."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...data.source import open_split as open_split_
from ...train import TrainConfig, train
from .params import RangeViTParams
from .task import RangeViTTask, load_sweeps


@dataclass
class Experiment:
    """Prepared data: the devkit handle, the train / val keyframe sweeps in memory, a data description."""

    params: RangeViTParams
    nusc: object
    train_sweeps: list
    val_sweeps: list
    data_desc: str
    data_id: dict = field(default_factory=dict)


def open_split(p, who: str) -> tuple:
    """Open the data of ``p`` (a :class:`~bevlib.data.source.WorldParams` with ``max_val_sweeps``;
    the embedded world is generated if needed) and split its keyframes: returns (dataroot,
    description, devkit handle, train tokens, val tokens), the val tokens thinned to
    ``max_val_sweeps`` evenly spaced ones (every val scene represented; None keeps all).
    Raises: ParameterError naming ``who`` when a split has no keyframe."""
    dataroot, desc, nusc, tr, va = open_split_(p, who, progress=p.progress)
    if p.max_val_sweeps is not None and p.max_val_sweeps < len(va):
        va = [va[i] for i in np.linspace(0, len(va) - 1, p.max_val_sweeps).round().astype(int)]
    return dataroot, desc, nusc, tr, va


def prepare(p: RangeViTParams) -> Experiment:
    """Open the data (generating the embedded world if needed) and load every train keyframe sweep
    and the val sweeps (``max_val_sweeps`` of them, evenly spaced; all with None) into memory
    (points, ring, 16-class labels; ego returns within ``min_distance`` dropped).
    Raises: ParameterError when a split has no keyframe; DataError / ValueError for unreadable data."""
    dataroot, desc, nusc, tr, va = open_split(p, "RangeViT")
    return Experiment(p, nusc, load_sweeps(nusc, tr, p.min_distance), load_sweeps(nusc, va, p.min_distance),
                      desc, {"dataroot": dataroot, "version": p.version, "min_distance": p.min_distance})


def make_task(exp: Experiment) -> RangeViTTask:
    """The :class:`RangeViTTask` of the experiment's parameters and data."""
    p = exp.params
    return RangeViTTask(p.model_cfg(), exp.train_sweeps, exp.val_sweeps, p.range_hw, p.crop_w, p.stride,
                        p.lambda_focal, p.translate_m, p.rotate_deg, exp.data_id)


def train_config(p: RangeViTParams, steps_per_epoch: int) -> TrainConfig:
    """AdamW (0.9, 0.999), weight decay 0.01, linear warm-up over ``warmup_epochs`` then cosine
    (lukkassen2024 Sec. 4.1 "Training setup"; warm-up from lr / 3 and down to ``min_lr_ratio`` x lr,
    the trainer's warmup_cosine, instead of the paper's 0)."""
    return TrainConfig(epochs=p.epochs, batch_size=p.batch_size, lr=p.lr, optimizer="adamw", betas=(0.9, 0.999),
                       weight_decay=0.01, schedule=p.schedule, warmup_steps=p.warmup_epochs * steps_per_epoch,
                       min_lr_ratio=p.min_lr_ratio, seed=p.seed, device="auto",
                       # lukkassen2024's "training dip": a loss trend over this window rolls back to the
                       # epoch checkpoint before it (the 3 newest are kept) with a new data order
                       dip_window=p.dip_window_epochs * steps_per_epoch)


def run_rangevit(exp_or_params, name: str = "rangevit") -> Path:
    """Train (or reuse / resume) RangeViT; returns the run directory (``metrics.csv`` with ``miou``
    and ``<class>_iou`` per epoch). Accepts an :class:`Experiment` or :class:`RangeViTParams`
    (then :func:`prepare` runs first)."""
    exp = exp_or_params if isinstance(exp_or_params, Experiment) else prepare(exp_or_params)
    p = exp.params
    steps = -(-len(exp.train_sweeps) // p.batch_size)
    return train(make_task(exp), train_config(p, steps), p.runs_root, name, p.progress)
