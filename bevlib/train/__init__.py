"""One trainer for every paper.

:func:`train` runs a :class:`Task` (a paper's model, data, loss terms, evaluation and extra state)
under a :class:`TrainConfig` (optimiser, schedule, device, mixed precision, accumulation,
checkpoints), on one process or many (``torchrun``). See :mod:`bevlib.train.trainer`.
"""
from .checkpoint import (CheckpointError, checkpoint_at, latest_checkpoint, load_checkpoint, load_latest_good,
                         read_metrics, save_checkpoint, step_checkpoints, write_metrics)
from .config import TrainConfig
from .optim import WeightDecaySchedule, build_optimizer, decay_groups, build_scheduler, warmup_cosine_factor, weight_decay_at
from .task import Task, unwrap
from .trainer import (DipGuard, SpikeGuard, TrainingDiverged, epoch_batches, evaluate, resolve_device, split_batch,
                      to_device, train)

__all__ = ["decay_groups", "CheckpointError", "DipGuard", "SpikeGuard", "Task", "TrainConfig", "TrainingDiverged", "build_optimizer",
           "build_scheduler", "checkpoint_at", "epoch_batches", "evaluate", "latest_checkpoint", "load_checkpoint",
           "load_latest_good", "read_metrics", "resolve_device", "save_checkpoint", "split_batch",
           "step_checkpoints", "to_device", "train", "unwrap", "warmup_cosine_factor", "weight_decay_at", "WeightDecaySchedule",
           "write_metrics"]
