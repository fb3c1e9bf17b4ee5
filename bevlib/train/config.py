"""The trainer's settings: one dataclass for every paper (optimiser, schedule, device, checkpoints)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

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

    Weight decay: constant ``weight_decay`` (a group's own ``weight_decay`` overrides it), or, with
    ``weight_decay_end`` set, a per-step cosine from each decayed group's start value to
    ``weight_decay_end`` (DINO's ``cosine_scheduler`` for wd, wozniak2025 Table 5: 0.04 -> 0.4; see
    :func:`bevlib.train.optim.weight_decay_at`); groups with weight decay 0 (biases, norms) stay 0.

    Raises: ValueError naming the offending field.
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
    weight_decay_end: float | None = None   # None: constant weight decay; else cosine to this (left out of the
                                            # run hash while None, so runs from before the field are reused)
    eval_every: int | None = None       # evaluate after every k-th epoch and the last; None: after every epoch
                                        # (left out of the run hash while None, as weight_decay_end)

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
        if self.weight_decay_end is not None and not (isinstance(self.weight_decay_end, (int, float))
                                                      and math.isfinite(self.weight_decay_end)
                                                      and self.weight_decay_end >= 0):
            bad(f"weight_decay_end must be None or a finite number >= 0, got {self.weight_decay_end!r}")
        if self.eval_every is not None and (isinstance(self.eval_every, bool) or not isinstance(self.eval_every, int)
                                            or self.eval_every < 1):
            bad(f"eval_every must be None or an integer >= 1, got {self.eval_every!r}")
        self.betas = tuple(self.betas)

    def hash_dict(self) -> dict:
        """The fields that identify a run (:func:`bevlib.train.train` hashes them and writes them to
        ``config.json``): every field, except those of :data:`OMIT_WHEN_NONE` while they are None, so that
        adding an option does not rename (and retrain) the runs that do not use it."""
        return {k: v for k, v in asdict(self).items() if not (k in OMIT_WHEN_NONE and v is None)}


#: Fields added after runs existed: left out of :meth:`TrainConfig.hash_dict` while None.
OMIT_WHEN_NONE = ("weight_decay_end", "eval_every")
