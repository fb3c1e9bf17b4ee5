"""The trainer's settings: one dataclass for every paper (optimiser, schedule, device, checkpoints)."""
from __future__ import annotations

from dataclasses import dataclass

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("onecycle", "warmup_cosine", "constant")
AMP = ("none", "bf16", "fp16")


@dataclass
class TrainConfig:
    """Optimisation settings of one run. What a paper's method needs (losses, modes, models) lives
    in its task (:class:`bevlib.train.Task`), not here.

    Schedules (per optimiser step):
      * ``onecycle``: ``torch.optim.lr_scheduler.OneCycleLR`` (max ``lr``, ``pct_start``, cosine);
      * ``warmup_cosine``: linear warm-up from ``warmup_ratio`` x lr over ``warmup_steps``, then
        cosine to ``min_lr_ratio`` x lr (BEVFormer's CosineAnnealing with linear warm-up,
        mmcv ``warmup_ratio=1/3``, ``min_lr_ratio=1e-3``; DINO's warm-up + cosine);
      * ``constant``.
    A task's parameter groups may carry ``lr_mult`` (e.g. BEVFormer's backbone x 0.1).
    """

    epochs: int = 1                     # passes over this run's own training set
    batch_size: int = 2                 # global batch per optimiser step (split over processes and accum_steps)
    lr: float = 2e-4
    weight_decay: float = 0.01
    optimizer: str = "adamw"            # "adamw" | "sgd"
    momentum: float = 0.9               # sgd only
    betas: tuple = (0.9, 0.999)         # adamw only
    schedule: str = "onecycle"          # "onecycle" | "warmup_cosine" | "constant"
    pct_start: float = 0.1              # onecycle: share of the steps spent warming up
    warmup_steps: int = 0               # warmup_cosine
    warmup_ratio: float = 1.0 / 3.0     # warmup_cosine: lr factor at step 0
    min_lr_ratio: float = 1e-3          # warmup_cosine: final lr / lr
    grad_clip: float = 35.0             # max global grad norm (0: off)
    accum_steps: int = 1                # micro-batches per optimiser step (gradient accumulation)
    seed: int = 0
    device: str = "auto"                # "auto" (CUDA when available) | "cpu" | "cuda" | "cuda:1" ...
    amp: str = "none"                   # mixed precision on GPU: "none" | "bf16" | "fp16"
    num_workers: int = 0                # DataLoader worker processes
    init_from: str | None = None        # checkpoint whose model weights start this run (two-phase)
    step_offset: int = 0                # steps already spent before this run (plots' x axis)
    eval_batch_size: int = 4
    checkpoint_every_steps: int = 0     # mid-epoch checkpoints (0: at epoch ends only)
    keep_checkpoints: int = 3           # newest step checkpoints kept, 0: all (epoch ends are kept apart)
    spike_factor: float = 10.0          # loss > factor x running median is a spike (0: NaN/inf only)
    spike_window: int = 20
    spike_min_history: int = 5
    max_rollbacks: int = 5
    dip_window: int = 0                 # steps; 0: off. A "training dip" (lukkassen2024, appendix):
    dip_factor: float = 1.5             # mean loss of the last dip_window steps > factor x the window before

    def __post_init__(self):
        def bad(msg):
            raise ValueError(f"TrainConfig: {msg}")
        if self.epochs < 1 or self.batch_size < 1:
            bad(f"needs epochs >= 1 and batch_size >= 1, got {self.epochs}, {self.batch_size}")
        if self.optimizer not in OPTIMIZERS:
            bad(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            bad(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.amp not in AMP:
            bad(f"amp must be one of {AMP}, got {self.amp!r}")
        if self.accum_steps < 1 or self.batch_size % self.accum_steps:
            bad(f"accum_steps={self.accum_steps} must be >= 1 and divide batch_size={self.batch_size}")
        if self.dip_window < 0 or not self.dip_factor > 1.0:
            bad(f"dip_window must be >= 0 and dip_factor > 1, got {self.dip_window}, {self.dip_factor}")
        if self.keep_checkpoints < 0 or self.num_workers < 0 or self.warmup_steps < 0:
            bad("keep_checkpoints, num_workers and warmup_steps must be >= 0")
        if not 0.0 < self.min_lr_ratio <= 1.0 or not 0.0 < self.warmup_ratio <= 1.0:
            bad(f"min_lr_ratio and warmup_ratio must be in (0, 1], got {self.min_lr_ratio}, {self.warmup_ratio}")
        self.betas = tuple(self.betas)
