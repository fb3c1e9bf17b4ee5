"""busch2026 Table I: its parameters (the notebook's parameters cell) and its reported numbers."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...bev import BEVGrid
from ...classes import NUM_BEV
from ...data.source import WorldParams
from ...params import ParameterError
from ...paths import outputs_dir
from ...train.config import SCHEDULES

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
    image_wh: tuple = (288, 160)            # paper: (512, 288)
    bev_hw: tuple = (120, 60)               # BEV ground-truth / output grid, paper: (150, 150)
    query_hw: tuple = (60, 30)              # BEV queries (1 m cells here), paper: (150, 150)
    bev_style: str = "hdmapnet"             # BEV ground truth as the paper's evaluation draws it; "buffer": line_width_m
    line_width_m: float = 0.6               # bev_style="buffer" only
    backbone: str = "tiny"                  # "tiny" | "resnet-18" | "resnet-50" (paper)
    backbone_weights: str | None = None     # local pretrained weights (paper: ImageNet ResNet-50)
    embed_dim: int = 48                     # paper: 256
    num_layers: int = 1                     # paper: 6
    num_heads: int = 4                      # paper: 8 (BEVFormer)
    ffn_dim: int = 128                      # paper: 512 (BEVFormer: 2 x embed_dim)
    epochs: int = 12                        # baseline and pretraining length, paper: 30
    batch_size: int = 2                     # paper: 6
    lr: float = 2e-3                        # paper: 2e-4 (BEVFormer)
    schedule: str = "warmup_cosine"         # BEVFormer's: linear warm-up, cosine to min_lr_ratio; or "onecycle"
    warmup_steps: int = 10                  # paper: 500 (of 140,600 steps)
    min_lr_ratio: float = 1e-3              # warmup_cosine: final lr / lr (BEVFormer)
    backbone_lr_mult: float = 1.0           # paper: 0.1 (BEVFormer's img_backbone lr_mult)
    finetune_lr: float | None = None        # fine-tuning phase lr; None: lr
    finetune_warmup_steps: int | None = None  # fine-tuning warm-up; None: warmup_steps
    pretrain_lengths: tuple = (3, 6, 9)     # "ours(N ep pretrain + temp)" rows, paper: 3..27
    no_temp_lengths: tuple = (3, 9)         # "ours(N ep pretrain)" rows, paper: 3, 22
    finetune_halved_epochs: int = 6         # paper: 14 (= 32,800 steps)
    bev_class_weights: tuple | None = None  # paper: unweighted; e.g. (1, 10, 10, 10) weighs thin markings up
    use_history: bool = True
    render_backend: str = "analytic"
    seed: int = 0                           # data seed (pseudo-label noise, the 50 % subset) and default training seed
    seeds: tuple | None = None              # training seeds of every row (mean and 95 % interval); None: (seed,)
    scratch_control: bool = True            # extra row: scratch on the 50 % subset, fine-tuning schedule
    probe: bool = False                     # linear probe of the frozen BEV features (probe.csv)
    output_dir: str | None = None           # None: <project>/outputs/<output_name>
    output_name: str = "table1"             # the folder under outputs/ (the fidelity preset: table1_fidelity)
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
        if self.bev_style not in ("hdmapnet", "buffer"):
            raise ParameterError(f"parameter 'bev_style' must be 'hdmapnet' or 'buffer', got {self.bev_style!r}")
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
        if self.schedule not in SCHEDULES:
            raise ParameterError(f"parameter 'schedule' must be one of {SCHEDULES}, got {self.schedule!r}")
        for n in ("warmup_steps", "finetune_warmup_steps"):
            v = getattr(self, n)
            if v is not None and (not isinstance(v, int) or v < 0):
                raise ParameterError(f"parameter {n!r} must be a non-negative integer, got {v!r}")
        for n in ("lr", "backbone_lr_mult", "finetune_lr", "min_lr_ratio"):
            v = getattr(self, n)
            if v is not None and not (isinstance(v, (int, float)) and v > 0):
                raise ParameterError(f"parameter {n!r} must be a positive number, got {v!r}")
        if self.seeds is not None:
            if not (isinstance(self.seeds, (list, tuple)) and self.seeds and all(isinstance(x, int) for x in self.seeds)
                    and len(set(self.seeds)) == len(self.seeds)):
                raise ParameterError(f"parameter 'seeds' must be a list of distinct integers, got {self.seeds!r}")
            self.seeds = tuple(self.seeds)

    @property
    def out_dir(self) -> Path:
        """Where the tables and figures go: ``output_dir``, else ``<project>/outputs/<output_name>``."""
        return Path(self.output_dir) if self.output_dir else outputs_dir(self.output_name)

    @property
    def train_seeds(self) -> tuple:
        """The training seeds every row is run with."""
        return self.seeds if self.seeds is not None else (self.seed,)

    @property
    def grid(self) -> BEVGrid:
        """The BEV ground-truth / output grid: ``bev_hw`` cells over +-30 m x +-15 m (ego frame)."""
        return BEVGrid(H=self.bev_hw[0], W=self.bev_hw[1])
