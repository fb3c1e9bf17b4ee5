"""What the S3PT notebooks share (wozniak2025 Sec. 4): their parameters, the prepared data of an embedded
world, one pretraining run, one frozen-backbone probe, and the per-class statistics Fig. 5 asks about.

:mod:`.ablation` (Table 1) and :mod:`.comparison` (Tables 2-3, Fig. 7) are built from these pieces, so a
pretraining run or a probe with the same settings is the same run directory in both (the trainer reuses
a finished run).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...data.source import WorldParams
from ...params import ParameterError, StudyDirs, distinct_ints
from ...stats import mean_ci95
from ...train import TrainConfig, checkpoint_at, train

#: The depth sources of :data:`bevlib.data.fields.DEPTH_SOURCES` that give every token a depth, as the
#: depth term needs: the paper's IP-Basic-completed LiDAR, or the embedded world's exact depth.
DENSE_DEPTH_SOURCES = ("lidar_completed", "world")
#: A class is "rare" when it covers less than this share of the labelled train pixels (our threshold:
#: the paper names its rare classes, bus, construction vehicle, bicycle, motorcycle, pedestrian and
#: traffic cone, but gives no rule).
RARE_SHARE = 0.01


@dataclass
class S3PTStudyParams(StudyDirs, WorldParams):
    """Knobs every S3PT notebook shares; defaults: the embedded default (2 CPU cores, <= 30 min per
    notebook). Paper values (wozniak2025 Sec. 4, appendix tables 5-7) in comments."""

    RUNS = "s3pt"

    image_wh: tuple = (112, 64)             # camera images read for pretraining and probing (paper: 224 crops)
    hidden: int = 64                        # ViT width; paper ViT-S 384
    layers: int = 2                         # paper 12
    heads: int = 4                          # paper 6
    patch: int = 8                          # paper 16
    global_size: int = 64                   # paper 224
    local_size: int = 32                    # paper 96 (DINO); CrIBo / S3PT use none
    n_local: int = 0                        # paper CrIBo / S3PT: 0
    dino_augment: bool = False              # DINO's photometric augmentations per crop (paper: on)
    n_prototypes: int = 1024                # paper 65,536
    pretrain_epochs: int = 6                # paper 100 (Table 1), 500 (Table 2, ViT-S)
    pretrain_batch: int = 16                # paper 256 (Table 5)
    pretrain_lr: float = 4e-3               # per 256 images (DINO's linear scaling); paper 5e-4, raised for ~150 steps
    teacher_momentum: float = 0.996         # EMA start (cosine to 1); paper 0.996
    depth_source: str = "lidar_completed"   # the depth term's d: IP-Basic-completed LiDAR (paper) or "world"
    probe_epochs: int = 5                   # paper: 160k iterations (mmsegmentation)
    probe_batch: int = 16
    probe_lrs: tuple = (8e-4,)              # paper: best of (8e-4, 3e-4, 8e-5) (appendix A.2; the paper preset)
    heads_eval: tuple = ("linear", "mask")  # Segmenter heads
    seeds: tuple = (0, 1, 2)
    output_name: str = "s3pt"               # outputs/<output_name>/
    output_dir: str | None = None           # overrides outputs/<output_name>/ (tests)
    runs_dir: str | None = None             # None: outputs/runs/s3pt
    progress: bool = True

    def __post_init__(self):
        super().__post_init__()
        if not (isinstance(self.pretrain_lr, (int, float)) and self.pretrain_lr > 0):
            raise ParameterError(f"parameter 'pretrain_lr' must be a positive number, got {self.pretrain_lr!r}")
        if not (isinstance(self.teacher_momentum, (int, float)) and 0 <= self.teacher_momentum <= 1):
            raise ParameterError(f"parameter 'teacher_momentum' must be in [0, 1], got {self.teacher_momentum!r}")
        for n in ("hidden", "layers", "heads", "patch", "global_size", "local_size", "n_prototypes",
                  "pretrain_epochs", "pretrain_batch", "probe_epochs", "probe_batch"):
            x = getattr(self, n)
            if not isinstance(x, int) or isinstance(x, bool) or x < 1:
                raise ParameterError(f"parameter {n!r} must be a positive integer, got {x!r}")
        if not isinstance(self.n_local, int) or self.n_local < 0:
            raise ParameterError(f"parameter 'n_local' must be an integer >= 0, got {self.n_local!r}")
        if self.hidden % self.heads:
            raise ParameterError(f"parameter 'heads' ({self.heads}) must divide 'hidden' ({self.hidden})")
        self.image_wh = tuple(self.image_wh)
        if any(s % self.patch for s in self.image_wh) or self.global_size % self.patch or self.local_size % self.patch:
            raise ParameterError(f"parameters 'image_wh' {self.image_wh}, 'global_size', 'local_size' must be "
                                 f"multiples of 'patch' ({self.patch})")
        self.seeds = distinct_ints("seeds", self.seeds)
        self.probe_lrs = tuple(self.probe_lrs)
        if not self.probe_lrs or not all(isinstance(x, (int, float)) and x > 0 for x in self.probe_lrs):
            raise ParameterError(f"parameter 'probe_lrs' must be positive numbers, got {self.probe_lrs!r}")
        self.heads_eval = tuple(self.heads_eval)
        bad = [h for h in self.heads_eval if h not in ("linear", "mask")]
        if bad or not self.heads_eval:
            raise ParameterError(f"parameter 'heads_eval' must name 'linear' and/or 'mask', got {self.heads_eval!r}")
        if self.depth_source not in DENSE_DEPTH_SOURCES:
            raise ParameterError(f"parameter 'depth_source' must be one of {DENSE_DEPTH_SOURCES}, "
                                 f"got {self.depth_source!r}")

    def vit(self) -> dict:
        """``transformers.ViTConfig`` kwargs of the backbone."""
        return dict(hidden_size=self.hidden, num_hidden_layers=self.layers, num_attention_heads=self.heads,
                    intermediate_size=4 * self.hidden, patch_size=self.patch, image_size=self.global_size)

    def s3pt_config(self, overrides: dict, epochs: int | None = None):
        """The :class:`~.pretrain.S3PTConfig` of a method: ``overrides`` (method, vmf, n_clusters, sk_iters,
        depth_beta, n_local ...) on top of these parameters' ViT, crops and schedule."""
        from .pretrain import S3PTConfig

        ov = dict(overrides)
        epochs = int(epochs or self.pretrain_epochs)
        crops = dict(global_size=self.global_size, local_size=self.local_size, n_local=ov.pop("n_local", self.n_local))
        if self.dino_augment:   # only when on, so runs made before the knob existed keep their hash
            crops["dino_augment"] = True
        return S3PTConfig(**ov, vit=self.vit(), n_prototypes=self.n_prototypes, crops=crops, epochs=epochs,
                          warmup_teacher_temp_epochs=max(1, epochs // 3), lr=self.pretrain_lr,
                          momentum_teacher=self.teacher_momentum)


@dataclass
class StudyData:
    """Prepared data of one embedded world: devkit handle, dataroot, train / val keyframe tokens
    (pretraining) and camera items (probing, :func:`~.probe.world_camera_items`), the train pixel
    share of each evaluated class, and a description for captions."""

    params: S3PTStudyParams
    nusc: object
    dataroot: str
    train_tokens: list
    val_tokens: list
    train_items: list
    val_items: list
    data_desc: str
    class_share: dict

    @property
    def rare_classes(self) -> list[str]:
        """Classes under :data:`RARE_SHARE` of the labelled train pixels that occur at all."""
        return [c for c, s in self.class_share.items() if 0 < s < RARE_SHARE]


def class_pixel_share(dataroot, items: list[dict], input_hw: tuple[int, int]) -> dict:
    """Share of each :data:`~bevlib.classes.WORLD_CAMERA` class among the labelled pixels of ``items``
    at the probe's input size ``(H, W)``. Returns ``{class: share in [0, 1]}`` (sums to 1 when any
    pixel is labelled)."""
    from ...classes import WORLD_CAMERA
    from .probe import ProbeImageDataset

    ds = ProbeImageDataset(dataroot, items, input_hw)
    counts = np.zeros(WORLD_CAMERA.num_classes, np.int64)
    for i in range(len(ds)):
        lab = ds.label(i)
        counts += np.bincount(lab[lab != WORLD_CAMERA.ignore_index].ravel(), minlength=WORLD_CAMERA.num_classes)
    total = max(int(counts.sum()), 1)
    return {c: float(n) / total for c, n in zip(WORLD_CAMERA.names, counts)}


def prepare_world(p: S3PTStudyParams, world_params: WorldParams | None = None) -> StudyData:
    """Open an embedded world (generated if needed; ``world_params`` default: ``p`` itself), its keyframe
    tokens, the probe's camera items and the train class shares.

    Raises: ParameterError when a split is empty.
    """
    from ...data.source import open_split
    from .probe import world_camera_items

    wp = world_params or p
    dataroot, desc, nusc, tr, va = open_split(wp, "the S3PT study", progress=p.progress)
    train_items = world_camera_items(dataroot, "train", wp.version)
    share = class_pixel_share(dataroot, train_items, (p.image_wh[1], p.image_wh[0]))
    return StudyData(p, nusc, dataroot, tr, va, train_items, world_camera_items(dataroot, "val", wp.version), desc,
                     share)


def slug(name: str) -> str:
    """A run-name-safe, stable form of a row name."""
    return "".join(ch if ch.isalnum() else "_" for ch in name).strip("_")


def pretrain_run(data: StudyData, overrides: dict, name: str, seed: int, tokens: list | None = None,
                 epochs: int | None = None) -> Path:
    """Pretrain one method (``overrides`` of :meth:`S3PTStudyParams.s3pt_config`) with one seed on the
    camera images of ``tokens`` (default: every train keyframe); a finished run is reused. Returns the
    run directory (its checkpoints hold every epoch)."""
    from .pretrain import KeyframeCameraImages, S3PTTask, paper_train_config

    p = data.params
    cfg = p.s3pt_config(overrides, epochs)
    tokens = list(data.train_tokens if tokens is None else tokens)
    train_src = KeyframeCameraImages(data.nusc, tokens, p.image_wh, depth_source=p.depth_source)
    val_src = KeyframeCameraImages(data.nusc, data.val_tokens[:2], p.image_wh, depth_source=p.depth_source)
    task = S3PTTask(cfg, train_src, val_src, {"dataroot": data.dataroot, "image_wh": list(p.image_wh),
                                              "depth_source": p.depth_source, "n_keyframes": len(tokens)})
    tc = paper_train_config(cfg, len(train_src), p.pretrain_batch, seed=seed, device="auto")
    return train(task, tc, p.runs_root, f"pre-{name}-s{seed}", p.progress)


def student_backbone(run_dir, epoch: int | None = None) -> dict:
    """The student ViT's weights of a pretraining run after ``epoch`` (default: its last).
    Raises: FileNotFoundError when the run has no such checkpoint."""
    from ...train.checkpoint import load_checkpoint

    cfg = json.loads((Path(run_dir) / "config.json").read_text())
    state = load_checkpoint(checkpoint_at(run_dir, epoch or cfg["train"]["epochs"]))["model"]
    pre = "student.backbone."
    return {k[len(pre):]: v for k, v in state.items() if k.startswith(pre)}


def probe_task(data: StudyData, head: str, seed: int, state_dict: dict | None):
    """The frozen-backbone probe of ``data``'s world (``state_dict``: pretrained ViT weights; None:
    random init under ``seed``)."""
    from transformers import ViTConfig

    from .probe import FrozenProbeTask

    p = data.params
    return FrozenProbeTask(ViTConfig(**p.vit()), head, data.dataroot, data.train_items, data.val_items,
                           input_hw=(p.image_wh[1], p.image_wh[0]), state_dict=state_dict, backbone_seed=seed,
                           data_id={"dataroot": data.dataroot})


def probe_train_config(p: S3PTStudyParams, seed: int) -> TrainConfig:
    """The probes' trainer settings (AdamW, cosine, no weight decay; lr from the grid)."""
    return TrainConfig(epochs=p.probe_epochs, batch_size=p.probe_batch, lr=p.probe_lrs[0], optimizer="adamw",
                       weight_decay=0.0, schedule="warmup_cosine", warmup_steps=0, min_lr_ratio=1e-2, seed=seed,
                       device="auto")


def probe(data: StudyData, head: str, seed: int, name: str, state_dict: dict | None) -> dict:
    """Probe a frozen backbone with one Segmenter head over ``probe_lrs`` on ``data``'s world.

    Returns: ``{"miou": best val mIoU (percent), "per_class": {class: IoU}, "run_dir": the best run,
    "rare": mean IoU over :attr:`StudyData.rare_classes`}``."""
    from .probe import probe_lr_grid

    p = data.params
    res = probe_lr_grid(probe_task(data, head, seed, state_dict), probe_train_config(p, seed), p.runs_root,
                        f"probe-{head}-{name}-s{seed}", p.probe_lrs)
    best = res["best"]
    run_dir = next(r["run_dir"] for r in res["runs"] if r["lr"] == res["best_lr"])
    per_class = {k[:-4]: float(v) for k, v in best.items() if k.endswith("_iou")}
    return {"miou": float(best["miou"]), "per_class": per_class, "run_dir": run_dir,
            "rare": rare_miou(per_class, data.rare_classes)}


def rare_miou(per_class: dict, rare: list[str]) -> float:
    """Mean IoU (percent) over the ``rare`` classes that have a finite IoU; NaN when none has."""
    vals = [per_class[c] for c in rare if c in per_class and math.isfinite(per_class[c])]
    return float(np.mean(vals)) if vals else float("nan")


def mean_spread(values) -> tuple[float, float]:
    """(mean, half-width of the 95 % t-interval) of the finite ``values``; NaN spread for one value,
    (NaN, NaN) for none."""
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    if len(vals) > 1:
        m, ci = mean_ci95(vals)
        return float(m), float(ci)
    return (vals[0], float("nan")) if vals else (float("nan"), float("nan"))
