"""What a paper gives the trainer: a :class:`Task`.

The trainer owns the loop (device, data loading, optimiser, schedule, accumulation, clipping,
mixed precision, checkpoints, resume, the spike guard, processes); a task owns what differs
between papers: the model, the datasets, the loss terms of a batch, the evaluation and any state
that must survive a restart (an EMA teacher, DINO's centre, a feature queue, prototypes).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.utils.data import Dataset, default_collate


class Task:
    """Base class of every paper's task. Override what you need; the defaults are no-ops.

    Required: :meth:`config`, :meth:`build_model`, :meth:`train_dataset`, :meth:`loss`,
    :meth:`evaluate`.
    """

    #: Evaluate at step 0 when the run starts from ``TrainConfig.init_from`` (two-phase runs).
    eval_at_init: bool = True
    #: Metrics shown in the trainer's line per epoch (default: the last three the task returns).
    headline_metrics: tuple = ()

    def config(self) -> dict:
        """JSON-able description of everything the task contributes to a run's result (model
        config, data identity, loss settings). Part of the run's hash."""
        raise NotImplementedError

    def build_model(self) -> nn.Module:
        """A freshly initialised model (the trainer seeds the RNG first, moves it to the device,
        and wraps it for distributed training)."""
        raise NotImplementedError

    def train_dataset(self) -> Dataset:
        """The training set; item ``i`` must depend on ``i`` only (the trainer seeds every fetch
        from (seed, epoch, i), so random augmentations are reproducible across workers and resumes)."""
        raise NotImplementedError

    def val_dataset(self) -> Dataset | None:
        """The validation set (None: no evaluation)."""
        return None

    def collate(self, items: list):
        """Batch a list of dataset items (default: ``torch.utils.data.default_collate``)."""
        return default_collate(items)

    def param_groups(self, model: nn.Module):
        """Parameters for the optimiser: the model's parameters, or a list of dicts with
        ``params`` and optional ``lr_mult`` / ``weight_decay``."""
        return model.parameters()

    def loss(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        """Named scalar loss terms of one batch (already on the device); the trainer minimises
        their sum and logs each term (and the sum as ``loss``). ``model`` may be a
        DistributedDataParallel wrapper: call it, and use :func:`unwrap` for its attributes."""
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches, reduce: Callable) -> dict[str, float]:
        """Metrics over this process's share of the validation set.

        Args:
            model: the bare model, in eval mode, on the device.
            batches: iterable of collated batches (on the device).
            reduce: sums a number / int64 array / tensor over processes; apply it to sufficient
                statistics (e.g. confusion-matrix counts) before computing the metrics, so every
                process returns the metrics of the whole set.
        Returns: flat dict of floats (one column each in ``metrics.csv``).
        """
        raise NotImplementedError

    def after_step(self, model: nn.Module, step: int, total_steps: int) -> None:
        """Called after every optimiser step (1-based ``step``) with the bare model: EMA teacher
        updates, temperature / momentum schedules."""

    def state_dict(self) -> dict:
        """Task state that must survive a restart (tensors, numbers, strings, lists, dicts: it is
        loaded with ``torch.load(weights_only=True)``)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (from a checkpoint or a rollback)."""


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DistributedDataParallel (or other ``.module``) wrapper."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model
