"""busch2026 Table I's runs: the data (prepared once) and every run of every seed."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...data.dataset import KeyframeStore
from ...data.fields import KeyframeConfig
from ...data.nuscenes_data import BEVTargetConfig, half_subset
from ...data.source import open_split
from ...paths import outputs_dir
from ...train import TrainConfig, checkpoint_at, read_metrics, train
from .params import Table1Params
from .task import Busch2026Task


@dataclass
class Experiment:
    """Data prepared for Table I: the devkit handle, keyframe store and splits."""

    params: Table1Params
    nusc: object
    store: KeyframeStore
    train_tokens: list
    half_tokens: list
    val_tokens: list
    labeler_name: str
    data_id: dict = field(default_factory=dict)

    @property
    def model_cfg(self) -> dict:
        """The model part of a run's config (``BEVFormerConfig`` fields; lists for JSON)."""
        p = self.params
        return {"backbone": p.backbone, "backbone_weights": p.backbone_weights, "embed_dim": p.embed_dim,
                "num_layers": p.num_layers, "num_heads": p.num_heads, "ffn_dim": p.ffn_dim,
                "query_hw": list(p.query_hw), "out_hw": list(p.bev_hw)}


def make_labeler(p: Table1Params):
    """The configured pseudo-labeller (busch2026 Sec. III-C)."""
    if p.labeler == "synthetic":
        from ...data.synthetic_labeler import SyntheticPseudoLabeler
        return SyntheticPseudoLabeler(noise=p.pseudo_noise, seed=p.seed)
    from ...data.mask2former import Mask2FormerLabeler
    return Mask2FormerLabeler(p.mask2former_weights)


def prepare(p: Table1Params) -> Experiment:
    """Open the data (generating the embedded world if needed), cache pseudo-labels offline as
    the paper does, and load every keyframe once into memory.

    Raises: DataError / ParameterError naming the bad input.
    """
    from ...data.pseudo import cache_pseudo_labels

    dataroot, _, nusc, train_tokens, val_tokens = open_split(p, "Table I", progress=p.progress)
    labeler = make_labeler(p)
    # val keyframes get pseudo-labels too: Fig. 5 shows them beside the prediction.
    cams = [sd for tok in train_tokens + val_tokens for sd in _camera_tokens(nusc, tok)]
    cache_pseudo_labels(nusc, labeler, cams, progress=p.progress)
    target = BEVTargetConfig(line_width_m=p.line_width_m, style=p.bev_style)
    kcfg = KeyframeConfig(image_wh=p.image_wh, grid=p.grid, target=target, labeler=labeler.name)
    # Small worlds are decoded once and shared by every run; nuScenes trainval (34k keyframes,
    # ~90 GB of decoded 512x288 images) is read from disk per step instead.
    in_memory = p.in_memory if p.in_memory is not None else len(train_tokens) + len(val_tokens) <= 3000
    store = KeyframeStore(nusc, kcfg, in_memory=in_memory)
    if in_memory:
        store.preload(train_tokens + val_tokens, progress=p.progress)
    data_id = {"dataroot": dataroot, "version": p.version, "image_wh": list(p.image_wh),
               "labeler": labeler.name, "line_width_m": p.line_width_m,
               **({"bev_style": p.bev_style} if p.bev_style != "buffer" else {})}
    return Experiment(p, nusc, store, train_tokens, half_subset(train_tokens, p.seed), val_tokens,
                      labeler.name, data_id)


def _camera_tokens(nusc, sample_token: str) -> list[str]:
    from ...data.nuscenes_data import CAMERAS
    data = nusc.get("sample", sample_token)["data"]
    return [data[c] for c in CAMERAS if c in data]


def make_task(exp: "Experiment", tokens, **kw) -> Busch2026Task:
    """A :class:`Busch2026Task` on the experiment's data, trained on ``tokens``."""
    p = exp.params
    return Busch2026Task(exp.model_cfg, exp.store, tokens, exp.val_tokens, p.grid, exp.data_id,
                         use_history=p.use_history, render_backend=p.render_backend,
                         backbone_lr_mult=p.backbone_lr_mult, **kw)


def _train_cfg(p: Table1Params, seed: int, finetune: bool = False, **kw) -> TrainConfig:
    """The schedule of one run: the pretraining / baseline one, or the fine-tuning one (its own lr
    and warm-up when given)."""
    base = dict(batch_size=p.batch_size, lr=p.lr, seed=seed)
    if p.schedule != "onecycle":
        base.update(schedule=p.schedule, warmup_steps=p.warmup_steps, min_lr_ratio=p.min_lr_ratio)
    if finetune:
        if p.finetune_lr is not None:
            base["lr"] = p.finetune_lr
        if p.finetune_warmup_steps is not None:
            base["warmup_steps"] = p.finetune_warmup_steps
    base.update(kw)
    return TrainConfig(**base)

SCRATCH_ROW = "scratch on 50 % (fine-tuning schedule)"


def _run_seed(exp: Experiment, seed: int) -> dict:
    """Every run of Table I with one training seed: {row name: run directory}."""
    p = exp.params
    runs_root = Path(p.runs_dir) if p.runs_dir else outputs_dir("runs", "busch2026")
    weights = dict(bev_class_weights=p.bev_class_weights)
    # run names carry the seed only when it is not the data seed (so single-seed runs keep their names)
    sfx = "" if seed == p.seed else f"_s{seed}"
    runs = {}
    runs["supervised baseline"] = train(make_task(exp, exp.train_tokens, mode="supervised", **weights),
                                        _train_cfg(p, seed, epochs=p.epochs), runs_root, "baseline" + sfx, p.progress)
    pre = {}
    for temporal, row in ((False, "self-supervised pretraining"), (True, "self-superv. pretrain + temp")):
        pre[temporal] = train(make_task(exp, exp.train_tokens, mode="pretrain", temporal=temporal, **weights),
                              _train_cfg(p, seed, epochs=p.epochs), runs_root,
                              ("pretrain_temp" if temporal else "pretrain") + sfx, p.progress)
        runs[row] = pre[temporal]
    steps_per_epoch = int(read_metrics(pre[True])[0]["step"])
    for temporal, lengths in ((True, p.pretrain_lengths), (False, p.no_temp_lengths)):
        for n in lengths:
            row = f"ours({n}ep pretrain{' + temp' if temporal else ''})"
            cfg = _train_cfg(p, seed, finetune=True, epochs=p.finetune_halved_epochs,
                             init_from=str(checkpoint_at(pre[temporal], n)), step_offset=n * steps_per_epoch)
            runs[row] = train(make_task(exp, exp.half_tokens, mode="supervised", **weights), cfg, runs_root,
                              f"finetune_{n}ep{'_temp' if temporal else ''}" + sfx, p.progress)
    if p.scratch_control:
        # the control every two-phase row needs: the same fine-tuning schedule from random weights
        runs[SCRATCH_ROW] = train(make_task(exp, exp.half_tokens, mode="supervised", **weights),
                                  _train_cfg(p, seed, finetune=True, epochs=p.finetune_halved_epochs),
                                  runs_root, "scratch_half" + sfx, p.progress)
    runs["_pretrain"], runs["_pretrain_temp"] = pre[False], pre[True]
    return runs


def run_table1(exp: Experiment) -> dict:
    """Run (or reuse) every run Table I needs, for every training seed. Returns {row name: list of
    run directories, one per seed in ``params.train_seeds`` order}, with the pretraining runs under
    ``"_pretrain"`` / ``"_pretrain_temp"``."""
    runs: dict = {}
    for seed in exp.params.train_seeds:
        for row, d in _run_seed(exp, seed).items():
            runs.setdefault(row, []).append(d)
    return runs


def seed_runs(runs_of_row) -> list:
    """The run directories of one Table I row, one per training seed (a single directory, as older
    callers pass it, becomes a one-element list)."""
    return list(runs_of_row) if isinstance(runs_of_row, (list, tuple)) else [runs_of_row]
