"""What the combined-datasets notebooks share (combined-datasets-bev-pretraining.md, Secs. 4.1-4.3,
Appendix A Tables 7-8, Appendix C.2): their parameters, the three rig worlds (nuScenes-, Lyft- and
ONCE-like), one pre-training run, one BEV map-segmentation fine-tuning run, and the per-seed /
mean ± std tables with the paper's numbers beside ours.

``notebooks/combined_pretraining.ipynb`` (Tables 1-2, :mod:`.pretraining_study`) and
``notebooks/combined_multidataset.ipynb`` (Tables 4-6, Figs. 3/4, :mod:`.multidataset`) are built
from these pieces, so a run with the same settings is the same run directory in both (the trainer
reuses a finished run).

Protocol (both notebooks): pre-train on the named worlds' train keyframes (no labels), then fine-tune
the fused camera + LiDAR BEV segmentation model (:func:`.finetune.build_seg_model`) on a deterministic
``finetune_share`` (paper 20 %) of the nuScenes-like world's labelled train keyframes, and report the
mIoU over the five map classes on that world's val keyframes. Seed ``s`` seeds both the pre-training
and the fine-tuning run of a row (the paper reports mean ± std without saying which runs it repeats).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ...data.source import EMBEDDED, WorldParams
from ...params import ParameterError, StudyDirs, distinct_ints
from ...tables import seed_rows, summary_rows
from ...train import TrainConfig, read_metrics, train

#: The rigs, in dataset-index order (nuScenes 0, Lyft 1, ONCE 2: the prompt indices).
RIGS = ("nuscenes", "lyft", "once")
#: Display names of the rigs (the embedded worlds stand in for the datasets).
RIG_TITLES = {"nuscenes": "nuScenes-like", "lyft": "Lyft-like", "once": "ONCE-like"}
#: Appendix A, Table 8: per volume, (frames, repeat times) of nuScenes, Lyft and ONCE. (The paper's table
#: heads every column "NuScenes"; the order nuScenes, Lyft, ONCE is Sec. 4.1's.)
TABLE8 = {"40K": ((13300, 1), (13300, 1), (13300, 1)),
          "100K": ((28130, 1), (22680, 1), (50000, 1)),
          "250K": ((28130, 4), (22680, 4), (200000, 1))}
#: nuScenes frames of Table 8's 100K row (the whole nuScenes train set): ``nuscenes_frames`` stands in for it.
PAPER_NUSCENES_FRAMES = 28130
#: Pre-training methods: CombinedConfig overrides (``None``: the BEVDistill baseline task).
METHODS = {"ours": {}, "no_mae": {"use_mae": False}, "no_cl": {"use_cl": False}, "bevdistill": None}


@dataclass
class CombinedStudyParams(StudyDirs, WorldParams):
    """Knobs both combined-datasets notebooks share; defaults: the embedded default (2 CPU cores, <= 30
    min per notebook). Paper values (Sec. 4.1, Appendix A, C.2) in comments. The inherited ``world_*`` /
    ``dataroot`` fields name the nuScenes(-like) dataset."""

    RUNS = "combined"

    lyft_dataroot: str | None = None        # a Lyft dataset in nuScenes format; None: the Lyft-like embedded world
    once_dataroot: str | None = None        # ONCE converted to nuScenes format; None: the ONCE-like world
    lyft_scenes: int = 4                    # Lyft-like world scenes (2 of them val)
    once_scenes: int = 17                   # ONCE-like world scenes (2 of them val); enough for Table 8 at 250K
    model: str = "cpu"                      # "cpu": CombinedConfig defaults; "paper": Swin-T, DSVT-sized, 704x256
    model_overrides: dict = field(default_factory=dict)   # CombinedConfig fields on top of the model preset
    pretrain_epochs: int = 8                # paper 50 (Table 7)
    pretrain_batch: int = 8                 # paper 32
    pretrain_lr: float = 2e-3               # Table 1-2 runs; paper 4e-4 (raised for ~70 steps)
    multi_pretrain_lr: float = 1e-3         # Table 4-6 runs; paper 2e-4 (the paper's ratio 2:1 kept)
    warmup_epochs: int = 1                  # paper 5 of 50
    nuscenes_frames: int = 32               # keyframes standing in for Table 8's 28,130 nuScenes frames
    finetune_share: float = 0.2             # paper 20 % of the labels
    finetune_epochs: int = 20               # paper: BEVFusion's schedule
    finetune_batch: int = 2
    finetune_lr: float = 3e-3               # paper 1e-4 (AdamW, cyclic), raised for ~140 steps
    finetune_loss: str = "focal"            # BEVFusion's map head: sigmoid focal loss
    pretrained_parts: tuple = ("swin", "lidar")   # loaded for fine-tuning (Appendix D); add "lss" to load LSS too
    fused_channels: int = 32                # paper (BEVFusion) 256
    seg_blocks: int = 2                     # 3x3 conv blocks of the BEV backbone
    seg_out: int = 200                      # paper 200 x 200
    seeds: tuple = (0, 1, 2)
    output_name: str = "combined"           # outputs/<output_name>/
    output_dir: str | None = None           # overrides outputs/<output_name>/ (tests)
    runs_dir: str | None = None             # None: outputs/runs/combined
    progress: bool = True

    def __post_init__(self):
        super().__post_init__()
        for n in ("lyft_scenes", "once_scenes", "pretrain_epochs", "pretrain_batch", "warmup_epochs",
                  "nuscenes_frames", "finetune_epochs", "finetune_batch", "fused_channels", "seg_out"):
            v = getattr(self, n)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if n == "warmup_epochs" else 1):
                raise ParameterError(f"parameter {n!r} must be a positive integer, got {v!r}")
        for n in ("pretrain_lr", "multi_pretrain_lr", "finetune_lr"):
            v = getattr(self, n)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ParameterError(f"parameter {n!r} must be a positive number, got {v!r}")
        if not (isinstance(self.finetune_share, (int, float)) and 0 < self.finetune_share <= 1):
            raise ParameterError(f"parameter 'finetune_share' must be in (0, 1], got {self.finetune_share!r}")
        if self.finetune_loss not in ("focal", "bce"):
            raise ParameterError(f"parameter 'finetune_loss' must be 'focal' or 'bce', got {self.finetune_loss!r}")
        if isinstance(self.seg_blocks, bool) or not isinstance(self.seg_blocks, int) or self.seg_blocks < 0:
            raise ParameterError(f"parameter 'seg_blocks' must be an integer >= 0, got {self.seg_blocks!r}")
        self.pretrained_parts = tuple(self.pretrained_parts)
        if not self.pretrained_parts or not set(self.pretrained_parts) <= {"swin", "lss", "lidar"}:
            raise ParameterError(f"parameter 'pretrained_parts' must name some of 'swin', 'lss', 'lidar', "
                                 f"got {self.pretrained_parts!r}")
        if self.model not in ("cpu", "paper"):
            raise ParameterError(f"parameter 'model' must be 'cpu' or 'paper', got {self.model!r}")
        if not isinstance(self.model_overrides, dict):
            raise ParameterError(f"parameter 'model_overrides' must be a mapping of CombinedConfig fields, "
                                 f"got {self.model_overrides!r}")
        try:
            self.combined_config()
        except (TypeError, ValueError) as e:
            raise ParameterError(f"parameter 'model_overrides' {self.model_overrides!r}: {e}") from e
        self.seeds = distinct_ints("seeds", self.seeds)

    def combined_config(self, **overrides):
        """The :class:`~.pretrain.CombinedConfig` of a run: the model preset, ``model_overrides``, this
        study's epochs / warm-up, then ``overrides`` (e.g. ``use_mae=False``, ``prompt=True``, ``lr``)."""
        from .pretrain import CombinedConfig, paper_config

        kw = {**self.model_overrides, "epochs": self.pretrain_epochs, "warmup_epochs": self.warmup_epochs,
              "lr": self.pretrain_lr, **overrides}
        return paper_config(**kw) if self.model == "paper" else CombinedConfig(**kw)

    def rig_params(self, rig: str) -> WorldParams:
        """The :class:`WorldParams` of one rig's dataset: this study's world for ``"nuscenes"``; for
        ``"lyft"`` / ``"once"`` the given dataroot, or an embedded world with that rig, its own scene count
        and seed ``world_seed + 1`` / ``+ 2`` (other places, as other datasets are)."""
        base = WorldParams(**{f: getattr(self, f) for f in WorldParams.__dataclass_fields__})
        if rig == "nuscenes":
            return base
        k = RIGS.index(rig)
        root = getattr(self, f"{rig}_dataroot")
        return replace(base, dataroot=root or EMBEDDED, world_rig=rig, world_seed=self.world_seed + k,
                       world_scenes=getattr(self, f"{rig}_scenes"))


@dataclass
class RigWorld:
    """One rig's dataset: devkit handle, dataroot, caption text, train / val keyframe tokens."""

    rig: str
    nusc: object
    dataroot: str
    desc: str
    train_tokens: list
    val_tokens: list


@dataclass
class StudyWorlds:
    """The prepared rig worlds of a study, with the fine-tuning data (built on first use)."""

    params: CombinedStudyParams
    worlds: dict                            # rig -> RigWorld
    _seg: tuple | None = None

    def __getitem__(self, rig: str) -> RigWorld:
        return self.worlds[rig]

    def seg_sets(self):
        """(train, val) :class:`~.finetune.SegKeyframeItems` of the nuScenes-like world: the fine-tuning
        share of its train keyframes (:func:`~.bevseg.finetune_split`, seed 0) and all of its val keyframes."""
        if self._seg is None:
            from .bevseg import finetune_split
            from .finetune import SegKeyframeItems

            p, w = self.params, self.worlds["nuscenes"]
            wh = p.combined_config().image_wh
            tr = finetune_split(w.train_tokens, p.finetune_share)
            self._seg = (SegKeyframeItems(w.nusc, tr, wh), SegKeyframeItems(w.nusc, w.val_tokens, wh))
        return self._seg

    def caption(self) -> str:
        """Which data the study's numbers come from."""
        p = self.params
        tr, va = self.seg_sets()
        worlds = "; ".join(f"{RIG_TITLES[r]}: {w.desc}, {len(w.train_tokens)} train / {len(w.val_tokens)} val "
                           "keyframes" for r, w in self.worlds.items())
        cfg = p.combined_config()
        return (f"{worlds}. Model: {p.model} preset (Swin {cfg.swin if isinstance(cfg.swin, str) else 'custom'}, "
                f"images {cfg.image_wh[0]}x{cfg.image_wh[1]}, BEV {cfg.bev_size}x{cfg.bev_size}), pre-trained "
                f"{p.pretrain_epochs} epochs, batch {p.pretrain_batch}. BEV map segmentation fine-tuned "
                f"{p.finetune_epochs} epochs on {len(tr)} nuScenes-like train keyframes ({100 * p.finetune_share:.0f} %), "
                f"mIoU (percent, best of BEVFusion's thresholds per class) over {len(va)} val keyframes; "
                f"mean ± std over seeds {list(p.seeds)}.")


def prepare_worlds(p: CombinedStudyParams, rigs=RIGS) -> StudyWorlds:
    """Open (generating if needed) each rig's dataset and split it into train / val keyframes.

    Raises: ParameterError naming the rig's parameter when a split is empty.
    """
    from ...data.source import open_split

    worlds = {}
    for rig in rigs:
        name = "world_scenes" if rig == "nuscenes" else f"{rig}_scenes"
        root, desc, nusc, tr, va = open_split(p.rig_params(rig), f"the {RIG_TITLES[rig]} dataset",
                                              f"{name!r} or its dataroot", progress=p.progress)
        worlds[rig] = RigWorld(rig, nusc, root, desc, tr, va)
    return StudyWorlds(p, worlds)


def table8_counts(p: CombinedStudyParams, volume: str) -> list[tuple[int, int]]:
    """Table 8's (keyframes, repeat) per rig for ``volume``, the frames scaled by ``nuscenes_frames /
    28,130`` (at least 1). Raises: ParameterError for an unknown volume."""
    if volume not in TABLE8:
        raise ParameterError(f"unknown data volume {volume!r}; Table 8 has {tuple(TABLE8)}")
    s = p.nuscenes_frames / PAPER_NUSCENES_FRAMES
    return [(max(1, round(n * s)), r) for n, r in TABLE8[volume]]


def subset(tokens: list, n: int, seed: int = 0) -> list:
    """``n`` of ``tokens`` drawn without replacement by a fixed permutation (``default_rng(seed)`` over the
    sorted tokens), so a smaller subset is a prefix of a larger one; returned in input order.
    Raises: ValueError when ``n`` exceeds the tokens."""
    if n > len(tokens):
        raise ValueError(f"asked for {n} keyframes of {len(tokens)}")
    ordered = sorted(tokens)
    chosen = {ordered[i] for i in np.random.default_rng(seed).permutation(len(ordered))[:n]}
    return [t for t in tokens if t in chosen]


def pretrain_data(worlds: StudyWorlds, rigs, counts=None, seed: int = 0):
    """Training items of a pre-training run: one rig's :class:`~.data.KeyframeItems` (dataset index = the
    rig's index in :data:`RIGS`) or several mixed and re-indexed (:func:`~.data.mixed_keyframes`).

    Args:
        rigs: rigs to pre-train on (a subset of :data:`RIGS`, in that order).
        counts: per rig (keyframes, repeat) (:func:`table8_counts`), or None: every train keyframe once.
    Returns: (dataset, identity dict for the run hash).
    Raises: ParameterError naming the rig's scene parameter when a world has too few train keyframes.
    """
    from .data import KeyframeItems, mixed_keyframes

    p = worlds.params
    cfg = p.combined_config()
    parts, ident = [], {}
    for k, rig in enumerate(rigs):
        w = worlds[rig]
        n, r = counts[k] if counts else (len(w.train_tokens), 1)
        if n > len(w.train_tokens):
            name = "world_scenes" if rig == "nuscenes" else f"{rig}_scenes"
            raise ParameterError(f"the {RIG_TITLES[rig]} world has {len(w.train_tokens)} train keyframes, Table 8 "
                                 f"asks for {n} (raise parameter {name!r} or lower 'nuscenes_frames')")
        parts.append((w, subset(w.train_tokens, n), r))
        ident[rig] = {"dataroot": w.dataroot, "n": n, "repeat": r}
    if len(parts) == 1 and parts[0][2] == 1:
        w, toks, _ = parts[0]
        return KeyframeItems(w.nusc, toks, cfg.image_wh, RIGS.index(w.rig), cfg.point_feature), ident
    ds = mixed_keyframes([(w.nusc, toks) for w, toks, _ in parts], [w.rig for w, _, _ in parts], cfg.image_wh,
                         repeat=[float(r) for _, _, r in parts], seed=seed, point_feature=cfg.point_feature)
    return ds, ident


def pretrain_run(worlds: StudyWorlds, method: str, seed: int, rigs=("nuscenes",), counts=None,
                 prompt: bool = False, lr: float | None = None, tag: str = "") -> Path:
    """Pre-train one method (:data:`METHODS`) with one seed; a finished run is reused.

    Args:
        method: ``"ours"``, ``"no_mae"``, ``"no_cl"`` or ``"bevdistill"``.
        rigs, counts: the data (:func:`pretrain_data`). prompt: PromptNorm (Eq. 5) with one prompt per rig.
        lr: peak learning rate (default ``pretrain_lr``). tag: part of the run name (e.g. the volume).
    Returns: the run directory. Raises: ParameterError for an unknown method.
    """
    from .data import KeyframeItems
    from .finetune import BEVDistillTask
    from .pretrain import CombinedPretrainTask, paper_train_config

    if method not in METHODS:
        raise ParameterError(f"unknown pre-training method {method!r}; known: {tuple(METHODS)}")
    p = worlds.params
    over = dict(METHODS[method] or {}, prompt=bool(prompt), lr=float(lr or p.pretrain_lr))
    cfg = p.combined_config(**over)
    train_set, ident = pretrain_data(worlds, rigs, counts, seed)
    nus = worlds["nuscenes"]
    val_set = KeyframeItems(nus.nusc, nus.val_tokens[:8], cfg.image_wh, 0, cfg.point_feature)
    task = (BEVDistillTask(cfg, train_set, val_set, data_identity=ident) if METHODS[method] is None
            else CombinedPretrainTask(cfg, train_set, val_set, ident))
    tc = paper_train_config(cfg, len(train_set), p.pretrain_batch, seed=seed, device="auto", eval_batch_size=4)
    name = "-".join(x for x in ("pre", method, tag, "prompt" if prompt else "", f"s{seed}") if x)
    return train(task, tc, p.runs_root, name, p.progress)


def finetune_run(worlds: StudyWorlds, pretrained_run, seed: int, prompt: bool = False, prompt_mode="own",
                 name: str = "") -> dict:
    """Fine-tune BEV map segmentation from a pre-training run (None: scratch) with one seed.

    Args:
        pretrained_run: run directory of :func:`pretrain_run` (its config must be this study's with ``prompt``).
        prompt: whether the pre-training run used PromptNorm (the model is rebuilt the same way).
        prompt_mode: ``"own"``, ``"none"`` or a dataset index (Table 5).
        name: run name (default from the pre-training run's name).
    Returns: ``{"miou": percent, "per_class": {class: IoU}, "run_dir": Path}`` of the last epoch.
    """
    from .bevseg import BEVFUSION_THRESHOLDS, BEVSegConfig
    from .finetune import CombinedSegTask

    p = worlds.params
    # the architecture only: loss switches and learning rate do not change the weights' shapes
    cfg = p.combined_config(prompt=bool(prompt))
    tr, va = worlds.seg_sets()
    head = dict(fused_channels=p.fused_channels, n_blocks=p.seg_blocks, out_hw=(p.seg_out, p.seg_out),
                target_range=50.0, pretrained_parts=list(p.pretrained_parts))
    seg = BEVSegConfig(loss=p.finetune_loss, prompt_mode=prompt_mode, thresholds=BEVFUSION_THRESHOLDS)
    task = CombinedSegTask(cfg, tr, va, pretrained_run, seg, head)
    tc = TrainConfig(epochs=p.finetune_epochs, batch_size=p.finetune_batch, lr=p.finetune_lr, optimizer="adamw",
                     weight_decay=0.01, schedule="onecycle", seed=seed, device="auto", eval_batch_size=8)
    name = name or ("ft-" + (Path(pretrained_run).name.rsplit("-", 1)[0][4:] if pretrained_run else f"scratch-s{seed}"))
    if prompt_mode != "own":
        name += f"-pm{prompt_mode}"
    run = train(task, tc, p.runs_root, name, p.progress)
    last = read_metrics(run)[-1]
    per_class = {k[:-4]: float(v) for k, v in last.items() if k.endswith("_iou")}
    return {"miou": float(last["miou"]), "per_class": per_class, "run_dir": run}


def write_study_table(results: dict, out_dir, stem: str, caption: str, title: str, reported: dict | None = None,
                      ref: str = "", classes=None) -> list[Path]:
    """``<stem>.csv/.md`` (mean ± std over seeds, the paper's rows labelled reported) and
    ``<stem>_seeds.csv/.md`` (one row per seed, per-class IoU too). Returns the written paths."""
    from ...data.map_masks import MAP_SEG_CLASSES
    from ...tables import write_table

    classes = list(classes or MAP_SEG_CLASSES)
    for recs in results.values():
        for x in recs:
            for c in classes:
                x.setdefault(c, x["per_class"].get(c, float("nan")))
    paths = list(write_table(summary_rows(results, ("miou",), reported, ref), out_dir, stem, ("method", "source"),
                             ("miou",), caption, ("BEV seg. mIoU",), title, digits=1, errors={"miou": "miou_std"},
                             extra=("n_seeds",)))
    paths += write_table(seed_rows(results, ("miou", *classes), reported, ref), out_dir, f"{stem}_seeds",
                         ("method", "source", "seed"), ("miou", *classes), caption + " One row per seed, with the per-class IoU.",
                         title=f"{title.rstrip('.')}, per seed.", digits=2)
    return paths
