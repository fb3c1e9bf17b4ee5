"""lukkassen2024 (MultiViT) part 1, RangeViT on nuScenes-lidarseg: parameters and reported numbers."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...data.source import WorldParams
from ...params import ParameterError
from ...paths import outputs_dir
from ...train.config import SCHEDULES

#: lukkassen2024 Table 1 (nuScenes val, per-class IoU then mIoU, percent) as printed, RangeViT rows,
#: in :data:`bevlib.lidarseg_eval.TABLE1_COLUMNS` order (barrier .. vegetation, mIoU). Reported,
#: not measured here. Row 1: ViT from scratch ("-"); row 3: ViT from ImageNet-21k.
REPORTED_TABLE1_RANGEVIT = {
    "RangeViT (scratch)": (74.8, 25.6, 82.1, 87.0, 39.0, 66.7, 74.9, 58.2, 59.3, 72.6, 96.1, 70.3, 73.1, 73.8,
                           87.8, 85.9, 70.5),
    "RangeViT (In21k)": (75.8, 35.3, 87.0, 89.0, 46.9, 76.3, 77.9, 64.7, 64.7, 76.1, 96.5, 71.8, 73.6, 73.7,
                         88.8, 87.2, 74.1),
}


@dataclass
class RangeViTParams(WorldParams):
    """Every knob of the RangeViT notebook; defaults are the embedded-default preset (the whole
    notebook in <= 15 min on 2 CPU cores). Paper values (lukkassen2024 Sec. 3.2 / 4.1) in comments.

    The embedded world's LiDAR fires ``lidar_azimuth_steps`` = 1084 rays per ring over 360 deg, so a
    1024-column image has about one point per pixel (2048 columns would leave half of them empty;
    the real HDL-32E has ~1084 too, which is why the paper's 2048 columns are half empty as well).
    The crop keeps the paper's share of the width: 384 / 2048 = 3 / 16, i.e. 192 of 1024.
    """

    range_hw: tuple = (32, 1024)            # full range image (H, W); paper: (32, 2048)
    min_distance: float = 1.0               # m; drop |x|, |y| < d (ego-vehicle returns, all ignore); 0 keeps all
    crop_w: int = 192                       # training crop width; paper: 384
    eval_stride: int | None = None          # sliding-window stride (None: crop_w // 2, windows overlap by half)
    stem_channels: int = 64                 # D_h; paper: 256
    stem_base_channels: int = 32            # paper: 32
    embed_dim: int = 96                     # D; paper: 384 (ViT-S)
    depth: int = 2                          # paper: 12
    heads: int = 3                          # paper: 6
    decoder_channels: int = 32              # paper: 256 (the refiner's KPConv cost grows with it)
    kpconv_radius: float = 0.6              # metres; paper (RangeViT): 0.6
    kpconv_max_neighbors: int = 8           # neighbours per point in the refiner's KPConv; model default 64 (CPU cost)
    vit_weights: str | None = None          # local ViTModel directory (Table 1 row 3: ImageNet-21k ViT-S); None: scratch
    lambda_focal: float = 1.0               # lambda_l; paper: 1
    translate_m: float = 0.25               # max |translation| per axis (m) of the translation augmentation
    rotate_deg: float = 5.0                 # paper: +-5 deg roll, pitch, yaw
    max_val_sweeps: int | None = 8          # evaluate on this many val sweeps, evenly spaced (None: all; paper: all 6019)
    epochs: int = 30                        # paper: 150 (here ~10 s per epoch on 2 CPU cores, the first ~70 s)
    warmup_epochs: int = 2                  # paper: 10
    batch_size: int = 8                     # paper: 32
    lr: float = 2e-3                        # paper: 8e-3 (scratch), 4e-3 (In21k)
    min_lr_ratio: float = 1e-3              # paper: cosine to 0 (the trainer needs > 0)
    schedule: str = "warmup_cosine"
    dip_window_epochs: int = 0              # training-dip guard window in epochs (0: off; paper preset: 2)
    seed: int = 0
    output_dir: str | None = None           # None: <project>/outputs/multivit_rangevit
    runs_dir: str | None = None             # None: <project>/outputs/runs/multivit
    progress: bool = True

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.dip_window_epochs, int) or self.dip_window_epochs < 0:
            raise ParameterError(f"parameter 'dip_window_epochs' must be a non-negative integer, "
                                 f"got {self.dip_window_epochs!r}")
        v = self.range_hw
        if not (isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) and x > 0 for x in v)):
            raise ParameterError(f"parameter 'range_hw' must be two positive integers (H, W), got {v!r}")
        self.range_hw = tuple(v)
        if self.range_hw[0] % 2:
            raise ParameterError(f"parameter 'range_hw' height must be divisible by the patch height 2, got {v!r}")
        for n in ("crop_w", "stem_channels", "stem_base_channels", "embed_dim", "depth", "heads", "decoder_channels",
                  "epochs", "batch_size", "kpconv_max_neighbors"):
            x = getattr(self, n)
            if not isinstance(x, int) or isinstance(x, bool) or x < 1:
                raise ParameterError(f"parameter {n!r} must be a positive integer, got {x!r}")
        if self.crop_w % 8 or self.crop_w > self.range_hw[1]:
            raise ParameterError(f"parameter 'crop_w' must be a multiple of the patch width 8 and <= "
                                 f"range_hw[1]={self.range_hw[1]}, got {self.crop_w!r}")
        if self.eval_stride is not None and not (isinstance(self.eval_stride, int) and 1 <= self.eval_stride <= self.crop_w):
            raise ParameterError(f"parameter 'eval_stride' must be None or an integer in 1..crop_w={self.crop_w}, "
                                 f"got {self.eval_stride!r}")
        if self.max_val_sweeps is not None and (not isinstance(self.max_val_sweeps, int) or self.max_val_sweeps < 1):
            raise ParameterError(f"parameter 'max_val_sweeps' must be None or a positive integer, got {self.max_val_sweeps!r}")
        if self.embed_dim % self.heads:
            raise ParameterError(f"parameter 'heads' ({self.heads}) must divide 'embed_dim' ({self.embed_dim})")
        if not isinstance(self.warmup_epochs, int) or not 0 <= self.warmup_epochs < self.epochs:
            raise ParameterError(f"parameter 'warmup_epochs' must be an integer in 0..epochs-1, got {self.warmup_epochs!r}")
        for n in ("kpconv_radius", "lr", "min_lr_ratio", "lambda_focal"):
            x = getattr(self, n)
            if not (isinstance(x, (int, float)) and x > 0):
                raise ParameterError(f"parameter {n!r} must be a positive number, got {x!r}")
        for n in ("translate_m", "rotate_deg", "min_distance"):
            x = getattr(self, n)
            if not (isinstance(x, (int, float)) and x >= 0):
                raise ParameterError(f"parameter {n!r} must be a non-negative number, got {x!r}")
        if self.schedule not in SCHEDULES:
            raise ParameterError(f"parameter 'schedule' must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.vit_weights is not None and not Path(self.vit_weights).is_dir():
            raise ParameterError(f"parameter 'vit_weights' must be a local ViTModel directory, got {self.vit_weights!r}")

    @property
    def stride(self) -> int:
        """Sliding-window stride in pixels (``eval_stride`` or half a crop)."""
        return self.eval_stride if self.eval_stride is not None else max(8, self.crop_w // 2)

    @property
    def out_dir(self) -> Path:
        """Where the tables and figures go."""
        return Path(self.output_dir) if self.output_dir else outputs_dir("multivit_rangevit")

    @property
    def runs_root(self) -> Path:
        """Parent folder of the training runs."""
        return Path(self.runs_dir) if self.runs_dir else outputs_dir("runs", "multivit")

    def model_cfg(self) -> dict:
        """The registry's ``"rangevit"`` config (JSON-ready; :class:`bevlib.models.rangevit.RangeViTConfig`)."""
        return {"stem_channels": self.stem_channels, "stem_base_channels": self.stem_base_channels,
                "image_size": [self.range_hw[0], self.crop_w], "embed_dim": self.embed_dim, "depth": self.depth,
                "heads": self.heads, "decoder_channels": self.decoder_channels, "kpconv_radius": self.kpconv_radius,
                "kpconv_max_neighbors": self.kpconv_max_neighbors,
                "vit_weights": self.vit_weights, "num_classes": 17}
