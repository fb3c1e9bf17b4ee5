"""lukkassen2024 (MultiViT) part 2: the parameters of the camera / joint / transfer study and the
paper's reported numbers (Tables 1, 3, 4, 6)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...data.source import WorldParams
from ...params import ParameterError, StudyDirs

#: lukkassen2024 Tables 1 / 4 / 6 (nuScenes val, LiDAR segmentation, percent), in
#: :data:`bevlib.lidarseg_eval.TABLE1_COLUMNS` order (barrier .. vegetation, mIoU), as printed.
#: Table 4 row 6 is printed with one cell missing (construction); it is Table 1 row 2, used here.
REPORTED_LIDAR = {
    "RangeViT (scratch)": (74.8, 25.6, 82.1, 87.0, 39.0, 66.7, 74.9, 58.2, 59.3, 72.6, 96.1, 70.3, 73.1, 73.8,
                           87.8, 85.9, 70.5),
    "RangeViT (nuScenes camera-pretrained)": (74.7, 26.4, 87.5, 88.1, 40.1, 72.1, 75.2, 58.8, 58.9, 73.6, 96.0,
                                              70.6, 72.2, 73.3, 88.0, 86.2, 71.4),
    "MultiViT.L (joint)": (75.2, 28.9, 87.7, 91.4, 41.4, 69.7, 75.7, 57.4, 60.7, 77.5, 96.6, 71.3, 73.8, 73.7,
                           88.7, 87.0, 72.3),
    "RangeViT (In21k)": (75.8, 35.3, 87.0, 89.0, 46.9, 76.3, 77.9, 64.7, 64.7, 76.1, 96.5, 71.8, 73.6, 73.7,
                         88.8, 87.2, 74.1),
    "RangeViT (In21k + CS)": (73.7, 37.9, 91.3, 90.1, 49.2, 76.4, 77.6, 65.2, 66.2, 79.4, 96.4, 71.9, 74.1, 74.1,
                              89.0, 87.3, 75.0),
    "RangeViT (In21k + nuScenes camera-pretrained)": (76.2, 35.9, 88.9, 88.2, 43.8, 74.0, 77.2, 64.6, 63.0, 77.5,
                                                      96.3, 71.5, 73.8, 73.7, 88.8, 87.0, 73.8),
    "MultiViT.L (In21k, joint)": (75.4, 35.1, 83.0, 90.8, 40.9, 75.7, 77.0, 62.4, 64.1, 75.4, 96.7, 70.9, 74.0,
                                  73.8, 88.9, 87.1, 73.2),
    "MultiViT.L (In21k, joint, pull)": (75.3, 35.1, 87.4, 91.0, 41.9, 73.5, 75.6, 61.8, 62.3, 77.5, 96.6, 71.6, 73.8,
                                        73.7, 88.7, 86.9, 73.3),
    "MultiViT.L (In21k, joint, pull + push)": (72.2, 24.9, 86.9, 89.8, 39.9, 67.9, 73.0, 48.8, 55.9, 75.0, 96.2,
                                               69.7, 72.9, 73.0, 87.0, 85.3, 69.9),
}

#: lukkassen2024 Table 3: camera mIoU (percent) on the nuScenes val images with the generated labels.
REPORTED_CAMERA = {
    "CameraViT": 57.0, "MultiViT.C (joint)": 60.2, "CameraViT (In21k)": 63.4, "MultiViT.C (In21k, joint)": 61.8,
    "MultiViT.C (In21k, joint, pull)": 61.8, "MultiViT.C (In21k, joint, pull + push)": 58.1,
}

#: lukkassen2024 Table 5, last row: mean cross-modal cosine similarity at the ViT encoder output
#: (nuScenes mini, In21k init); the per-class values live in :mod:`.analysis`.
REPORTED_COSINE_MEAN = {"separate": 0.13, "joint": 0.09, "joint, pull": 0.19, "joint, pull + push": 0.58}

#: The study's rows: name -> (kind, contrast mode). ``kind``: "rangevit" (LiDAR only),
#: "cameravit" (camera only), "rangevit_cam" (RangeViT whose ViT starts from that seed's
#: CameraViT: pretrain -> fine-tune), "multivit" (joint). In21k variants are added when
#: ``vit_weights`` is given (:meth:`MultiViTStudyParams.rows`).
ROWS = {
    "rangevit": ("rangevit", None),
    "cameravit": ("cameravit", None),
    "rangevit_cam": ("rangevit_cam", None),
    "multivit": ("multivit", None),
    "multivit_pull": ("multivit", "pull"),
    "multivit_pullpush": ("multivit", "pull_push"),
}


@dataclass
class MultiViTStudyParams(StudyDirs, WorldParams):
    """Every knob of the MultiViT study (Tables 1, 3, 4, 5, 6; Figs. 7, 8). Defaults: the embedded
    default (the tables notebook within 30 min on 2 CPU cores); paper values in comments.

    The two branches share the ViT (width ``embed_dim``, ``depth``, ``heads``); stems and decoders
    have ``stem_channels`` / ``decoder_channels`` in both, as in the paper. Epochs: RangeViT trains
    ``lidar_epochs`` over the N train sweeps; CameraViT and MultiViT train ``lidar_epochs / 6`` over
    the 6N (sweep crop, camera image) pairs, so every model sees as many LiDAR crops (paper: 150 vs 25).
    """

    RUNS = "multivit_study"

    # LiDAR branch (as the RangeViT notebook's defaults)
    range_hw: tuple = (32, 1024)            # paper: (32, 2048)
    crop_w: int = 192                       # paper: 384 (3 / 16 of the width, one camera's azimuth span)
    min_distance: float = 1.0               # m; ego returns dropped (see multivit.task.load_sweeps)
    kpconv_max_neighbors: int = 8           # paper: 64
    # camera branch
    image_hw: tuple = (64, 176)             # paper: (256, 704); 8 x 8 patches
    # shared sizes
    stem_channels: int = 32                 # paper: 256
    embed_dim: int = 96                     # paper: 384 (ViT-S)
    depth: int = 2                          # paper: 12
    heads: int = 3                          # paper: 6
    decoder_channels: int = 32              # paper: 256
    vit_weights: str | None = None          # local ImageNet-21k ViT-S (transformers ViTModel dir): the In21k rows
    # pseudo-labels (bevlib.data.box_labels; the embedded world's stand-in for SAM, or SAM from a local path)
    sam_weights: str | None = None          # local SamModel dir (paper: ViT-B); None: the world's silhouettes
    border_px: int = 2                      # stand-in: random dilation / erosion of each mask, up to px (at 800 px)
    border_flip: float = 0.25               # stand-in: share of flipped pixels in the band along each border
    min_inside: float = 0.3                 # a box less inside the image than this -> ignore
    labeler_seed: int = 0
    # losses
    lambda_lidar: float = 1.0               # lambda_l; paper: 1
    lambda_camera: float = 3.0              # lambda_c; paper: 3
    lambda_contrast: float = 1.0            # weight of the contrastive term (paper: not given)
    temperature: float = 0.1                # SupCon temperature of the pull + push loss (paper: not given)
    # training
    lidar_epochs: int = 12                  # RangeViT epochs; paper: 150
    camera_epochs: int | None = None        # CameraViT / MultiViT epochs; None: max(1, lidar_epochs // 6); paper: 25
    lidar_batch: int = 8                    # paper: 32
    pair_batch: int = 8                     # paper: 12 (MultiViT, CameraViT)
    lr: float = 2e-3                        # paper: 8e-3 scratch, 4e-3 In21k
    warmup_frac: float = 0.08               # paper: 10 / 150 (RangeViT), 2 / 25 (MultiViT)
    max_val_sweeps: int | None = 8          # val keyframes evaluated (evenly spaced; None: all)
    seeds: tuple = (0, 1, 2)                # seeds of the rows that decide the paper's findings
    single_seed_rows: tuple = ("multivit_pull",)   # rows run with the first seed only
    rows: tuple | None = None               # rows to run (None: all of ROWS, + In21k rows with vit_weights)
    output_name: str = "multivit_tables"    # outputs/<output_name>/
    output_dir: str | None = None           # overrides outputs/<output_name>/ (tests)
    runs_dir: str | None = None             # None: <project>/outputs/runs/multivit_study
    progress: bool = True

    def __post_init__(self):
        super().__post_init__()
        for n in ("range_hw", "image_hw"):
            v = getattr(self, n)
            if not (isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) and x > 0 for x in v)):
                raise ParameterError(f"parameter {n!r} must be two positive integers (H, W), got {v!r}")
            setattr(self, n, tuple(v))
        if self.range_hw[0] % 2:
            raise ParameterError(f"parameter 'range_hw' height must be even (patch 2 x 8), got {self.range_hw!r}")
        if any(s % 8 for s in self.image_hw):
            raise ParameterError(f"parameter 'image_hw' must be multiples of the 8 x 8 patch, got {self.image_hw!r}")
        for n in ("crop_w", "kpconv_max_neighbors", "stem_channels", "embed_dim", "depth", "heads", "decoder_channels",
                  "lidar_epochs", "lidar_batch", "pair_batch"):
            x = getattr(self, n)
            if not isinstance(x, int) or isinstance(x, bool) or x < 1:
                raise ParameterError(f"parameter {n!r} must be a positive integer, got {x!r}")
        if self.crop_w % 8 or self.crop_w > self.range_hw[1]:
            raise ParameterError(f"parameter 'crop_w' must be a multiple of 8 and <= range_hw[1], got {self.crop_w!r}")
        if self.embed_dim % self.heads:
            raise ParameterError(f"parameter 'heads' ({self.heads}) must divide 'embed_dim' ({self.embed_dim})")
        if self.camera_epochs is not None and (not isinstance(self.camera_epochs, int) or self.camera_epochs < 1):
            raise ParameterError(f"parameter 'camera_epochs' must be None or a positive integer, got {self.camera_epochs!r}")
        for n in ("lr", "lambda_lidar", "lambda_camera", "temperature"):
            x = getattr(self, n)
            if not (isinstance(x, (int, float)) and x > 0):
                raise ParameterError(f"parameter {n!r} must be a positive number, got {x!r}")
        for n, hi in (("border_flip", 1.0), ("min_inside", 1.0), ("warmup_frac", 0.99)):
            x = getattr(self, n)
            if not (isinstance(x, (int, float)) and 0 <= x <= hi):
                raise ParameterError(f"parameter {n!r} must be in [0, {hi}], got {x!r}")
        if not (isinstance(self.lambda_contrast, (int, float)) and self.lambda_contrast >= 0):
            raise ParameterError(f"parameter 'lambda_contrast' must be >= 0, got {self.lambda_contrast!r}")
        if not isinstance(self.border_px, int) or self.border_px < 0:
            raise ParameterError(f"parameter 'border_px' must be a non-negative integer, got {self.border_px!r}")
        if not (isinstance(self.seeds, (list, tuple)) and self.seeds and all(isinstance(s, int) for s in self.seeds)):
            raise ParameterError(f"parameter 'seeds' must be a non-empty list of integers, got {self.seeds!r}")
        self.seeds = tuple(self.seeds)
        if len(set(self.seeds)) != len(self.seeds):
            raise ParameterError(f"parameter 'seeds' repeats a seed: {self.seeds!r}")
        self.single_seed_rows = tuple(self.single_seed_rows or ())
        if self.max_val_sweeps is not None and (not isinstance(self.max_val_sweeps, int) or self.max_val_sweeps < 1):
            raise ParameterError(f"parameter 'max_val_sweeps' must be None or a positive integer, got {self.max_val_sweeps!r}")
        for n in ("vit_weights", "sam_weights"):
            v = getattr(self, n)
            if v is not None and not Path(v).is_dir():
                raise ParameterError(f"parameter {n!r} must be a local weights directory, got {v!r}")
        known = set(self.all_rows())
        for n in ("rows", "single_seed_rows"):
            v = getattr(self, n)
            bad = [r for r in (v or ()) if r not in known]
            if bad:
                raise ParameterError(f"parameter {n!r} names unknown rows {bad}; known: {sorted(known)}")
        if self.rows is not None:
            self.rows = tuple(self.rows)
            if "rangevit_cam" in self.rows and "cameravit" not in self.rows:
                raise ParameterError("parameter 'rows': 'rangevit_cam' needs 'cameravit' (its pretraining)")
            if "rangevit_cam_in21k" in self.rows and "cameravit_in21k" not in self.rows:
                raise ParameterError("parameter 'rows': 'rangevit_cam_in21k' needs 'cameravit_in21k'")

    def all_rows(self) -> dict:
        """Every row this configuration can run: :data:`ROWS`, plus ``<row>_in21k`` variants when
        ``vit_weights`` is given. Returns name -> (kind, contrast, in21k)."""
        out = {k: (kind, mode, False) for k, (kind, mode) in ROWS.items()}
        if self.vit_weights is not None:
            out.update({f"{k}_in21k": (kind, mode, True) for k, (kind, mode) in ROWS.items()})
        return out

    def selected_rows(self) -> dict:
        """The rows to run, in :meth:`all_rows` order (pretraining before fine-tuning)."""
        rows = self.all_rows()
        return {k: v for k, v in rows.items() if self.rows is None or k in self.rows}

    def seeds_of(self, row: str) -> tuple:
        """Seeds a row runs with (the first only for ``single_seed_rows``)."""
        base = row[:-len("_in21k")] if row.endswith("_in21k") else row
        return self.seeds[:1] if (row in self.single_seed_rows or base in self.single_seed_rows) else self.seeds

    @property
    def pair_epochs(self) -> int:
        """Epochs of CameraViT / MultiViT over the (crop, image) pairs."""
        return self.camera_epochs if self.camera_epochs is not None else max(1, self.lidar_epochs // 6)

    def lidar_cfg(self, in21k: bool = False) -> dict:
        """The registry's ``"rangevit"`` config of the LiDAR branch."""
        return {"stem_channels": self.stem_channels, "stem_base_channels": 32, "image_size": [self.range_hw[0], self.crop_w],
                "embed_dim": self.embed_dim, "depth": self.depth, "heads": self.heads,
                "decoder_channels": self.decoder_channels, "kpconv_max_neighbors": self.kpconv_max_neighbors,
                "vit_weights": self.vit_weights if in21k else None, "num_classes": 17}

    def camera_cfg(self, in21k: bool = False) -> dict:
        """The registry's ``"cameravit"`` config of the camera branch (8 x 8 patches, 11 classes)."""
        return {"stem_channels": self.stem_channels, "stem_base_channels": 32, "image_size": list(self.image_hw),
                "embed_dim": self.embed_dim, "depth": self.depth, "heads": self.heads,
                "decoder_channels": self.decoder_channels, "vit_weights": self.vit_weights if in21k else None,
                "num_classes": 11}


@dataclass
class FeatureSpaceParams(MultiViTStudyParams):
    """The feature-space notebook (Table 5, Figs. 7, 8): the study's models of one seed (the same
    runs as the tables notebook's first seed, reused when it ran) and the analysis knobs."""

    seeds: tuple = (0,)
    rows: tuple | None = ("cameravit", "rangevit_cam", "multivit", "multivit_pull", "multivit_pullpush")
    output_name: str = "multivit_feature_space"
    tsne_per_class: int = 60                # points and pixels per class and modality in Fig. 7
    tsne_seed: int = 0
    query_pair: int | None = None           # Fig. 8: val pair (camera i % 6 of val keyframe i // 6); None: auto
    query_xy: tuple | None = None           # Fig. 8: (x, y) pixel of the query; None: auto (a pedestrian / car)

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.tsne_per_class, int) or self.tsne_per_class < 1:
            raise ParameterError(f"parameter 'tsne_per_class' must be a positive integer, got {self.tsne_per_class!r}")
        if (self.query_pair is None) != (self.query_xy is None):
            raise ParameterError("parameters 'query_pair' and 'query_xy' go together (both None: automatic)")
        if self.query_xy is not None:
            v = self.query_xy
            if not (isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) and x >= 0 for x in v)):
                raise ParameterError(f"parameter 'query_xy' must be two non-negative integers (x, y), got {v!r}")
            self.query_xy = tuple(v)
            if v[0] >= self.image_hw[1] or v[1] >= self.image_hw[0]:
                raise ParameterError(f"parameter 'query_xy' {v!r} is outside the {self.image_hw[1]}x{self.image_hw[0]} image")
