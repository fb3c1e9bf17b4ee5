"""What the CSC notebooks share (chen2024-csc.md, Secs. 3-4): their parameters, the prepared world, the frozen 2D
encoder, one pre-training run, the Table 2 evaluation of one backbone initialisation (linear probe and few-shot
fine-tuning), and the mean ± std / per-seed tables with the paper's numbers beside ours.

``notebooks/csc_table2.ipynb`` (:mod:`.table2`) and ``notebooks/csc_ablation.ipynb`` (:mod:`.ablation`) are built
from these pieces, so a run with the same settings is the same run directory in both (the trainer reuses a
finished run): Table 5's rows (1) and (4) are Table 2's SLidR and CSC.

Protocol: pre-train on the world's train keyframes (no labels: images, sweeps, superpixels and, for the VFM rows,
the superpixels' semantic signs), then per seed ``s``:

* **LP**: a linear head on the frozen backbone, trained on every labelled train sweep (features computed once,
  :class:`.lidarseg.FeatureProbeTask`);
* **fine-tuning** at each label percentage: the whole network from the pre-trained weights on a deterministic
  subset of the train sweeps (:func:`.lidarseg.label_subset`, seed 0, so every method sees the same sweeps);
  a percentage runs at least ``finetune_epochs`` epochs and at least ``finetune_min_steps`` optimiser steps
  (1 % of the embedded world is one sweep);

and the point-wise mIoU over the 16 lidarseg classes of every val sweep. Seed ``s`` seeds the pre-training and
every evaluation run of that seed (the random-init row's backbone too).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ...data.source import WorldParams
from ...params import ParameterError, StudyDirs, distinct_ints
from ...paths import outputs_dir
from ...train import TrainConfig, checkpoint_at, read_metrics, train

#: Table 2's evaluation settings: name -> (linear probe?, percent of the labelled train sweeps).
SETTINGS = {"lp": (True, 100), "ft1": (False, 1), "ft5": (False, 5), "ft10": (False, 10), "ft25": (False, 25),
            "ft100": (False, 100)}
#: Column titles of the settings.
SETTING_TITLES = {"lp": "LP", "ft1": "1%", "ft5": "5%", "ft10": "10%", "ft25": "25%", "ft100": "100%"}
#: Pre-training methods -> Table 5 row (:data:`.pretrain.TABLE5_ROWS`); None: no pre-training.
METHODS = {"Random init.": None, "SLidR": 1, "+ VFM": 2, "+ 3D Pro.": 3, "CSC": 4}
ENCODERS = ("s3pt", "random")


@dataclass
class CSCStudyParams(StudyDirs, WorldParams):
    """Knobs every CSC notebook shares; defaults: the embedded default (2 CPU cores, <= 30 min per notebook).
    Paper values (chen2024 Sec. 4, SLidR's configs) in comments."""

    RUNS = "csc"

    image_wh: tuple = (112, 64)             # camera images and superpixels (paper 1600 x 900); the S3PT ViT's size
    backbone: str = "tiny"                  # MinkUNet: "tiny" (0.7 M parameters) or "paper" (MinkUNet34C, 37.9 M)
    dim: int = 64                           # D of the 2D / 3D projection heads (SLidR 64)
    encoder: str = "s3pt"                   # frozen 2D encoder: "s3pt" = the S3PT notebook's pre-trained ViT when
                                            # its run exists (else a fixed random ViT, stated), "random", or a
                                            # local ViTModel weights directory (paper: DINOv2 / MoCo-v2 ResNet-50)
    s3pt_runs_dir: str | None = None        # where the S3PT runs live (default outputs/runs/s3pt)
    slic_segments: int = 150                # SLidR: 150 (compactness 6, sigma 3)
    vfm: str = "world"                      # semantic signs: "world" = the embedded world's camera semantics (the
                                            # VFM stand-in), or a local Mask2Former weights directory (paper: a
                                            # 150-class ADE20K segmenter; needed on real nuScenes)
    vfm_noise: float = 0.1                  # "world" only: share of superpixels with a wrong semantic sign
    vfm_split: int = 4                      # grid cells per image side splitting one class region
    pretrain_epochs: int = 3                # paper 50
    lam: int = 1                            # Eq. 6: L_pro from this 0-based epoch on; paper 5 of 50
    pretrain_batch: int = 2                 # paper 16
    pretrain_optimizer: str = "adamw"       # paper "sgd" (lr 2.0, cosine)
    pretrain_lr: float = 2e-3               # paper 2.0 with SGD
    pretrain_val: int = 4                   # val keyframes whose loss terms are logged per epoch
    probe_epochs: int = 10                  # linear probing on cached features (SLidR: 50 epochs)
    probe_lr: float = 1e-2
    probe_batch: int = 4
    cache_probe_features: bool = True       # False: the probe runs the frozen backbone every epoch (real nuScenes)
    finetune_epochs: int = 2                # SLidR: 100 epochs
    finetune_min_steps: int = 20            # a small label share runs more epochs, at least this many steps
    finetune_batch: int = 2                 # SLidR 16
    finetune_lr: float = 2e-3               # SLidR: SGD 0.02
    settings: tuple = ("lp", "ft1", "ft5", "ft10", "ft25", "ft100")
    seeds: tuple = (0, 1, 2)
    output_name: str = "csc"                # outputs/<output_name>/
    output_dir: str | None = None           # overrides outputs/<output_name>/ (tests)
    runs_dir: str | None = None             # None: outputs/runs/csc
    progress: bool = True

    def __post_init__(self):
        super().__post_init__()
        for n in ("dim", "slic_segments", "vfm_split", "pretrain_epochs", "pretrain_batch", "pretrain_val",
                  "probe_epochs", "probe_batch", "finetune_epochs", "finetune_min_steps", "finetune_batch"):
            v = getattr(self, n)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ParameterError(f"parameter {n!r} must be a positive integer, got {v!r}")
        if isinstance(self.lam, bool) or not isinstance(self.lam, int) or self.lam < 0:
            raise ParameterError(f"parameter 'lam' must be an integer >= 0, got {self.lam!r}")
        for n in ("pretrain_lr", "probe_lr", "finetune_lr"):
            v = getattr(self, n)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ParameterError(f"parameter {n!r} must be a positive number, got {v!r}")
        if not (isinstance(self.vfm_noise, (int, float)) and 0 <= self.vfm_noise <= 1):
            raise ParameterError(f"parameter 'vfm_noise' must be in [0, 1], got {self.vfm_noise!r}")
        if self.pretrain_optimizer not in ("adamw", "sgd"):
            raise ParameterError(f"parameter 'pretrain_optimizer' must be 'adamw' or 'sgd', "
                                 f"got {self.pretrain_optimizer!r}")
        if self.backbone not in ("tiny", "paper"):
            raise ParameterError(f"parameter 'backbone' must be 'tiny' or 'paper', got {self.backbone!r}")
        if not isinstance(self.encoder, str) or not self.encoder:
            raise ParameterError(f"parameter 'encoder' must be 's3pt', 'random' or a weights directory, "
                                 f"got {self.encoder!r}")
        if self.encoder not in ENCODERS and not Path(self.encoder).is_dir():
            raise ParameterError(f"parameter 'encoder': {self.encoder!r} is neither 's3pt', 'random' nor an "
                                 "existing ViT weights directory")
        if not isinstance(self.vfm, str) or (self.vfm != "world" and not Path(self.vfm).is_dir()):
            raise ParameterError(f"parameter 'vfm': {self.vfm!r} is neither 'world' nor an existing Mask2Former "
                                 "weights directory")
        self.image_wh = tuple(self.image_wh)
        if len(self.image_wh) != 2 or any(not isinstance(v, int) or v < 8 or v % 8 for v in self.image_wh):
            raise ParameterError(f"parameter 'image_wh' must be two multiples of 8 (the ViT patch), "
                                 f"got {self.image_wh!r}")
        self.settings = tuple(self.settings)
        if not self.settings or not set(self.settings) <= set(SETTINGS) or len(set(self.settings)) != len(self.settings):
            raise ParameterError(f"parameter 'settings' must be distinct names of {tuple(SETTINGS)}, "
                                 f"got {self.settings!r}")
        self.seeds = distinct_ints("seeds", self.seeds)

    def minkunet_config(self):
        """The backbone's :class:`bevlib.models.minkunet.MinkUNetConfig` (in_channels 4: x, y, z, intensity)."""
        from ...models.minkunet import paper_config, tiny_config
        return paper_config() if self.backbone == "paper" else tiny_config()


@dataclass
class Encoder:
    """The frozen 2D network of every pre-training run of a study."""

    vit: dict                               # ViTConfig fields (ignored with ``weights``)
    state: dict | None                      # ViTModel state dict, or None (random init / ``weights``)
    weights: str | None                     # a local ViTModel weights directory, or None
    desc: str                               # what it is, for the caption


def s3pt_encoder_run(p: CSCStudyParams, dataroot: str) -> Path | None:
    """The finished S3PT pre-training run (row "... + depth (S3PT)", seed 0) of ``notebooks/s3pt_*.ipynb`` on the
    same dataset, or None. Several such runs: the one with most epochs, then the newest."""
    root = Path(p.s3pt_runs_dir) if p.s3pt_runs_dir else outputs_dir("runs", "s3pt")
    found = []
    for d in sorted(root.glob("pre-*S3PT-s0-*")):
        cfg_path = d / "config.json"
        if not (d / "done.json").is_file() or not cfg_path.is_file():
            continue
        cfg = json.loads(cfg_path.read_text())
        if Path(cfg["task"]["data"]["dataroot"]).resolve() != Path(dataroot).resolve():
            continue
        found.append((cfg["train"]["epochs"], (d / "done.json").stat().st_mtime, d))
    return max(found)[2] if found else None


def resolve_encoder(p: CSCStudyParams, dataroot: str) -> Encoder:
    """The frozen 2D encoder (:attr:`CSCStudyParams.encoder`): the S3PT notebook's student ViT (when its run
    exists), a fixed random ViT of the same shape, or local weights."""
    from ..s3pt.study import S3PTStudyParams

    if p.encoder not in ENCODERS:
        return Encoder({}, None, p.encoder, f"ViT weights from {p.encoder} (frozen)")
    vit = S3PTStudyParams().vit()
    if p.encoder == "s3pt":
        run = s3pt_encoder_run(p, dataroot)
        if run is not None:
            from ..s3pt.study import student_backbone
            vit = json.loads((run / "config.json").read_text())["task"]["s3pt"]["vit"]
            return Encoder(vit, student_backbone(run), None,
                           f"the S3PT notebook's pre-trained ViT ({run.name}, frozen)")
        return Encoder(vit, None, None, "a fixed random ViT (no S3PT pre-training run found; run "
                                        "notebooks/s3pt_comparison.ipynb first for a pre-trained one)")
    return Encoder(vit, None, None, "a fixed random ViT (frozen)")


@dataclass
class CSCData:
    """The prepared data of a study: devkit handle, splits, frozen encoder and the cached item sets."""

    params: CSCStudyParams
    nusc: object
    dataroot: str
    desc: str
    train_tokens: list
    val_tokens: list
    encoder: Encoder
    _items: dict = field(default_factory=dict)

    def csc_items(self, superpixels: str, split: str = "train"):
        """:class:`.pretrain.CSCItems` with ``"slic"`` or ``"semantic"`` superpixels of the train keyframes
        (``split="train"``), the first ``pretrain_val`` val keyframes (``"val"``) or every val keyframe
        (``"val_all"``); built once per study, each item read on first use."""
        from .pretrain import CSCItems

        key = ("csc", superpixels, split)
        if key not in self._items:
            p = self.params
            toks = {"train": self.train_tokens, "val": self.val_tokens[:p.pretrain_val],
                    "val_all": self.val_tokens}[split]
            vfm = self.segmenter() if superpixels == "semantic" else None
            self._items[key] = CSCItems(self.nusc, toks, p.image_wh, superpixels=superpixels,
                                        noise=p.vfm_noise if vfm is None else 0.0, n_split=p.vfm_split, seed=0,
                                        n_segments=p.slic_segments, segmenter=vfm)
        return self._items[key]

    def segmenter(self):
        """The VFM (:class:`bevlib.data.vfm.VFMSegmenter` of the ``vfm`` weights, built once), or None for the
        embedded world's camera semantics."""
        if self.params.vfm == "world":
            return None
        if "vfm" not in self._items:
            from ...data.vfm import VFMSegmenter
            self._items["vfm"] = VFMSegmenter(weights=self.params.vfm)
        return self._items["vfm"]

    def seg_items(self):
        """(train, val) :class:`.lidarseg.LidarSegItems` sharing one in-memory cache."""
        from .lidarseg import LidarSegItems

        if "seg" not in self._items:
            tr = LidarSegItems(self.nusc, self.train_tokens)
            self._items["seg"] = (tr, tr.subset(self.val_tokens))
        return self._items["seg"]

    def caption(self) -> str:
        """Which data and settings a table's numbers come from."""
        p = self.params
        return (f"{self.desc}: {len(self.train_tokens)} train / {len(self.val_tokens)} val keyframes "
                f"(LIDAR_TOP sweeps, 16 lidarseg classes). MinkUNet {p.backbone} (0.1 m voxels), pre-trained "
                f"{p.pretrain_epochs} epochs (L_pro from epoch {p.lam}), batch {p.pretrain_batch}, images "
                f"{p.image_wh[0]}x{p.image_wh[1]}; 2D encoder: {self.encoder.desc}; VFM superpixels: "
                + (f"the world's camera semantics, {100 * p.vfm_noise:.0f} % wrong signs" if p.vfm == "world" else
                   f"Mask2Former from {p.vfm}") + f". LP: {p.probe_epochs} epochs on every "
                f"train sweep; fine-tuning: >= {p.finetune_epochs} epochs and >= {p.finetune_min_steps} steps per "
                f"label share. mIoU (percent) over every point of the val sweeps; mean ± std over seeds "
                f"{list(p.seeds)}.")


def prepare(p: CSCStudyParams) -> CSCData:
    """Open (generating if needed) the dataset, split it into train / val keyframes and resolve the encoder.
    Raises: ParameterError naming ``world_scenes`` / ``dataroot`` when a split is empty."""
    from ...data.source import open_split

    root, desc, nusc, tr, va = open_split(p, "the CSC study", progress=p.progress)
    return CSCData(p, nusc, root, desc, tr, va, resolve_encoder(p, root))


def csc_config(p: CSCStudyParams, row: int, enc: Encoder, n_classes: int | None = None):
    """The :class:`.pretrain.CSCConfig` of Table 5 row ``row`` under this study's settings (``n_classes``: T of a
    VFM; None: the world's camera classes)."""
    from .pretrain import table5_config

    kw = dict(backbone=p.backbone, dim=p.dim, lam=p.lam, epochs=p.pretrain_epochs, image_wh=tuple(p.image_wh),
              n_classes=n_classes)
    if enc.weights is not None:
        kw["vit_weights"] = enc.weights
    else:
        kw["vit"] = dict(enc.vit)
    return table5_config(row, **kw)


def pretrain_run(data: CSCData, method: str, seed: int) -> Path:
    """Pre-train one method of :data:`METHODS` (not the random init) with one seed; a finished run is reused.
    Returns the run directory. Raises: ParameterError for an unknown method or the random init."""
    from .pretrain import CSCPretrainTask

    if METHODS.get(method) is None:
        raise ParameterError(f"no pre-training for method {method!r}; pre-trained methods: "
                             f"{[m for m, r in METHODS.items() if r]}")
    p, row = data.params, METHODS[method]
    vfm = data.segmenter()
    cfg = csc_config(p, row, data.encoder, vfm.n_classes if vfm is not None else None)
    tr, va = data.csc_items(cfg.superpixels), data.csc_items(cfg.superpixels, "val")
    task = CSCPretrainTask(cfg, tr, va, encoder_state=data.encoder.state,
                           data_identity={"dataroot": data.dataroot, **tr.identity()})
    tc = TrainConfig(epochs=p.pretrain_epochs, batch_size=p.pretrain_batch, lr=p.pretrain_lr,
                     optimizer=p.pretrain_optimizer, weight_decay=1e-4, momentum=0.9, schedule="onecycle",
                     pct_start=0.1, seed=seed, device="auto", eval_batch_size=1)
    return train(task, tc, p.runs_root, f"pre-row{row}-s{seed}", p.progress)


def backbone_state(run_dir) -> dict:
    """The model state dict of a finished pre-training run's last epoch (its ``backbone.*`` keys are the
    MinkUNet's; :meth:`.lidarseg.SegModel.load_backbone` strips the prefix)."""
    from ...train.checkpoint import load_checkpoint

    cfg = json.loads((Path(run_dir) / "config.json").read_text())
    return load_checkpoint(checkpoint_at(run_dir, cfg["train"]["epochs"]))["model"]


def finetune_epochs(p: CSCStudyParams, n_sweeps: int) -> int:
    """Epochs of a fine-tuning run on ``n_sweeps`` labelled sweeps: at least ``finetune_epochs`` and enough
    for ``finetune_min_steps`` optimiser steps."""
    steps_per_epoch = math.ceil(n_sweeps / p.finetune_batch)
    return max(p.finetune_epochs, math.ceil(p.finetune_min_steps / steps_per_epoch))


def evaluate_init(data: CSCData, method: str, pre_run, seed: int) -> dict:
    """Every setting of ``data.params.settings`` for one backbone initialisation and seed.

    Args: method: a :data:`METHODS` name (the run names); pre_run: its pre-training run directory, or None
        for the random initialisation.
    Returns: ``{setting: {"miou": percent, "per_class": {class: IoU}, "run_dir": Path}}``.
    Raises: FileNotFoundError when ``pre_run`` has no last-epoch checkpoint; ValueError from
        :meth:`.lidarseg.SegModel.load_backbone` when its weights do not fit this study's backbone.
    Source: chen2024 Sec. 4.1 / Table 2 (SLidR's downstream protocol).
    """
    from .lidarseg import FeatureProbeTask, LidarSegTask, label_subset

    p = data.params
    state = backbone_state(pre_run) if pre_run is not None else None
    bid = Path(pre_run).name if pre_run is not None else None
    tag = f"row{METHODS[method]}" if METHODS[method] else "random"
    train_all, val = data.seg_items()
    mcfg = p.minkunet_config()
    out = {}
    for name in p.settings:
        probe, pct = SETTINGS[name]
        sub = train_all.subset(label_subset(train_all.tokens, pct, seed=0))
        if probe and p.cache_probe_features:
            task = FeatureProbeTask(mcfg, sub, val, state, bid, pct, backbone_seed=seed)
        else:
            task = LidarSegTask(mcfg, sub, val, freeze_backbone=probe, backbone_state=state, backbone_id=bid,
                                percent=pct)
        epochs = p.probe_epochs if probe else finetune_epochs(p, len(sub))
        tc = TrainConfig(epochs=epochs, batch_size=p.probe_batch if probe else p.finetune_batch,
                         lr=p.probe_lr if probe else p.finetune_lr, optimizer="adamw", weight_decay=1e-4,
                         schedule="onecycle", seed=seed, device="auto", eval_batch_size=4, eval_every=epochs)
        run = train(task, tc, p.runs_root, f"{name}-{tag}-s{seed}", p.progress)
        last = read_metrics(run)[-1]
        out[name] = {"miou": float(last["miou"]), "run_dir": run,
                     "per_class": {k[:-4]: float(v) for k, v in last.items() if k.endswith("_iou")}}
    return out


def run_methods(data: CSCData, methods) -> dict:
    """Pre-train (where needed) and evaluate each of ``methods`` for every seed (finished runs are reused).

    Returns: ``{"results": {method: [{"seed": s, "<setting>": miou, ...,"per_class": {setting: {...}}}]},
    "pretrain_runs": {method: [run dir per seed]}}``.
    """
    p = data.params
    results, pre_runs = {}, {}
    for method in methods:
        recs, runs = [], []
        for s in p.seeds:
            run = pretrain_run(data, method, s) if METHODS[method] else None
            ev = evaluate_init(data, method, run, s)
            recs.append({"seed": s, **{k: v["miou"] for k, v in ev.items()},
                         "per_class": {k: v["per_class"] for k, v in ev.items()}})
            runs.append(run)
        results[method], pre_runs[method] = recs, runs
    return {"results": results, "pretrain_runs": {m: r for m, r in pre_runs.items() if METHODS[m]}}


def write_tables(results: dict, out_dir, stem: str, caption: str, title: str, settings, reported: dict,
                 ref: str) -> list[Path]:
    """``<stem>.csv/.md`` (mean ± std over seeds per setting, then the paper's rows labelled reported) and
    ``<stem>_seeds.csv/.md`` (one row per method and seed: the scoreboard's table). Returns the paths."""
    from ...tables import seed_rows, summary_rows, write_table

    settings = list(settings)
    reported = {m: {s: (v, float("nan")) for s, v in vals.items()} for m, vals in reported.items()}
    rows = summary_rows(results, settings, reported, ref)
    titles = [SETTING_TITLES[s] for s in settings]
    paths = list(write_table(rows, out_dir, stem, ("method", "source"), settings, caption, titles, title, digits=1,
                             errors={s: f"{s}_std" for s in settings}, extra=("n_seeds",)))
    paths += write_table(seed_rows(results, settings, reported, ref), out_dir, f"{stem}_seeds",
                         ("method", "source", "seed"), settings,
                         caption + " One row per seed.", titles, f"{title.rstrip('.')}, per seed.", digits=2)
    return paths


def pretrain_curves(runs: dict, path) -> Path:
    """Validation L_sp and L_pro per epoch of each pre-training method (mean over seeds), with each method's L_sp
    chance level ln(M) dashed (M matched pairs per val keyframe, which differs between SLIC and VFM superpixels:
    :func:`pretrain_run` evaluates one keyframe per batch)."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    from ...io import atomic_savefig

    terms = ("val_sp", "val_pro")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), constrained_layout=True)
    for k, (method, dirs) in enumerate(runs.items()):
        colour = f"C{k}"
        rows = [r for d in dirs for r in read_metrics(d)]
        pairs = [float(r["val_pairs"]) for r in rows if r.get("val_pairs") not in ("", None)]
        for ax, t in zip(axes, terms):
            by_epoch: dict = {}
            for r in rows:
                if r.get(t) not in ("", None):
                    by_epoch.setdefault(int(r["epoch"]), []).append(float(r[t]))
            if by_epoch:
                ep = sorted(by_epoch)
                ax.plot(ep, [np.mean(by_epoch[e]) for e in ep], marker="o", ms=3, color=colour, label=method)
        if pairs:
            axes[0].axhline(float(np.log(np.mean(pairs))), color=colour, ls="--", lw=1,
                            label=f"{method}: chance ln M, M = {np.mean(pairs):.0f}")
    for ax, t in zip(axes, terms):
        ax.set_title({"val_sp": "L_sp (Eq. 5), val", "val_pro": "L_pro (Eq. 4), val"}[t], fontsize=9)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    try:
        return Path(atomic_savefig(fig, Path(path), dpi=110))
    finally:
        plt.close(fig)
