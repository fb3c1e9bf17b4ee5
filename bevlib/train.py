"""One trainer for every paper: epochs, checkpoints, resume, per-epoch metrics log.

A run lives in its own directory (named by the hash of its resolved config) holding
``config.json``, ``metrics.csv`` (one row per evaluated epoch: steps, losses, validation IoUs),
``checkpoints/epoch_XXX.pt`` and, once finished, ``done.json``. A finished run with the same
config is reused, an unfinished one resumes from its last checkpoint.

busch2026 modes: ``supervised`` (BEV cross-entropy against BEV ground truth: the baseline and the
fine-tuning phase) and ``pretrain`` (Eq. 1 on rendered predictions against camera pseudo-labels,
plus Alg. 1's temporal term when ``temporal``).
"""
from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .bev import BEVGrid
from .classes import NUM_BEV
from .data.dataset import KeyframeDataset, KeyframeStore
from .io import atomic_write, atomic_write_text, canonical_json, config_hash
from .losses import bev_ce, busch2026_alg1_temporal_loss, busch2026_eq1_reprojection_ce
from .metrics import RangedBEVMetrics
from .render import render_bev

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 1, 3, 1, 1)


def normalize_images(images_u8: torch.Tensor) -> torch.Tensor:
    """(B, N, 3, h, w) uint8 RGB -> float32 ImageNet-normalised (what ResNet backbones expect)."""
    return (images_u8.float() / 255.0 - IMAGENET_MEAN) / IMAGENET_STD


@dataclass
class TrainConfig:
    """Optimisation settings of one run (busch2026 Sec. V; BEVFormer's AdamW defaults)."""

    mode: str = "supervised"            # "supervised" | "pretrain"
    temporal: bool = False              # busch2026 Alg. 1 (pretrain mode only)
    epochs: int = 1                     # passes over this run's own training set
    batch_size: int = 2
    lr: float = 2e-4
    weight_decay: float = 0.01
    grad_clip: float = 35.0
    seed: int = 0
    use_history: bool = True            # BEVFormer temporal self-attention over the previous keyframe
    bev_class_weights: tuple | None = None
    render_backend: str = "analytic"
    init_from: str | None = None        # checkpoint to start from (two-phase fine-tuning)
    step_offset: int = 0                # steps already spent before this run (Fig. 6's x axis)
    eval_batch_size: int = 4

    def __post_init__(self):
        if self.mode not in ("supervised", "pretrain"):
            raise ValueError(f"TrainConfig.mode must be 'supervised' or 'pretrain', got {self.mode!r}")
        if self.temporal and self.mode != "pretrain":
            raise ValueError("TrainConfig.temporal applies to mode='pretrain' only")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"TrainConfig needs epochs >= 1 and batch_size >= 1, got {self.epochs}, {self.batch_size}")


def _collate_history(model, batch) -> tuple[torch.Tensor | None, torch.Tensor]:
    """History BEV of the previous keyframe (no gradient, as BEVFormer) aligned by the model;
    zero history at a scene start."""
    has_prev = batch["has_prev"]
    with torch.no_grad():
        prev = model(normalize_images(batch["prev_images"]), batch["prev_K"], batch["prev_ego_T_cam"])["bev"]
    prev = prev * has_prev.view(-1, 1, 1, 1).to(prev.dtype)
    return prev, batch["curr_T_prev"]


def forward(model, batch, use_history: bool) -> dict:
    """Model forward on a collated batch, with the previous keyframe as history when enabled."""
    prev_bev, curr_T_prev = _collate_history(model, batch) if use_history else (None, None)
    return model(normalize_images(batch["images"]), batch["K"], batch["ego_T_cam"],
                 prev_bev=prev_bev, curr_T_prev=curr_T_prev)


def training_loss(model, batch, cfg: TrainConfig, grid: BEVGrid) -> tuple[torch.Tensor, dict]:
    """The loss of one batch for the run's mode. Returns (loss, dict of logged floats)."""
    out = forward(model, batch, cfg.use_history)
    if cfg.mode == "supervised":
        w = None if cfg.bev_class_weights is None else torch.tensor(cfg.bev_class_weights, dtype=torch.float32)
        loss = bev_ce(out["logits"], batch["bev_gt"], w)
        return loss, {"loss": loss.item()}
    hw = tuple(batch["pseudo"].shape[-2:])
    if cfg.temporal:
        l_t, l_prev = busch2026_alg1_temporal_loss(
            model.head, out["bev"], batch["curr_T_prev"], batch["K"], batch["ego_T_cam"], hw, grid,
            batch["pseudo"], batch["prev_pseudo"], batch["has_prev"], cfg.render_backend)
        loss = l_t + l_prev
        return loss, {"loss": loss.item(), "loss_t": l_t.item(), "loss_prev": l_prev.item()}
    pred_cp, _ = render_bev(out["logits"], batch["K"], batch["ego_T_cam"], hw, grid, cfg.render_backend)
    loss = busch2026_eq1_reprojection_ce(pred_cp, batch["pseudo"])
    return loss, {"loss": loss.item()}


@torch.no_grad()
def evaluate(model, dataset: KeyframeDataset, grid: BEVGrid, batch_size: int = 4, use_history: bool = True,
             progress: bool = False) -> dict:
    """Ranged IoU / mIoU (busch2026 Table I columns) over a whole split, in percent."""
    model.eval()
    metrics = RangedBEVMetrics(grid)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for batch in tqdm(loader, desc="eval", disable=not progress, leave=False):
        logits = forward(model, batch, use_history)["logits"]
        metrics.update(logits[:, :NUM_BEV].argmax(1), batch["bev_gt"])
    model.train()
    return metrics.compute()


def _checkpoint_path(run_dir: Path, epoch: int) -> Path:
    return run_dir / "checkpoints" / f"epoch_{epoch:03d}.pt"


def save_checkpoint(path: Path, model, optimizer, scheduler, epoch: int, step: int, cfg_hash: str) -> None:
    """Atomically save model, optimiser, scheduler, counters, RNG state and the config hash."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "epoch": epoch, "step": step,
             "config_hash": cfg_hash, "torch_rng": torch.get_rng_state()}
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint with ``weights_only=True`` (no pickled code runs).

    Raises: FileNotFoundError naming the path.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    return torch.load(path, map_location="cpu", weights_only=True)


def latest_checkpoint(run_dir: Path) -> Path | None:
    cks = sorted((Path(run_dir) / "checkpoints").glob("epoch_*.pt"))
    return cks[-1] if cks else None


def checkpoint_at(run_dir: str | Path, epoch: int) -> Path:
    """Path of a run's checkpoint after ``epoch`` (1-based). Raises FileNotFoundError if absent."""
    p = _checkpoint_path(Path(run_dir), epoch)
    if not p.exists():
        raise FileNotFoundError(f"run {run_dir} has no checkpoint for epoch {epoch} ({p})")
    return p


def read_metrics(run_dir: str | Path) -> list[dict]:
    """Rows of a run's ``metrics.csv`` with numeric fields as numbers."""
    path = Path(run_dir) / "metrics.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: _number(v) for k, v in r.items()} for r in rows]


def _number(v: str):
    """CSV cell -> int, float or the string itself; ints stay ints so rewriting keeps the bytes."""
    if v in ("", None):
        return v
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v


def _write_metrics(run_dir: Path, rows: list[dict]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(run_dir / "metrics.csv", buf.getvalue())


def train(model_factory, model_cfg: dict, cfg: TrainConfig, store: KeyframeStore, train_tokens, val_tokens,
          runs_root: str | Path, name: str, grid: BEVGrid, data_id: dict | None = None,
          progress: bool = True) -> Path:
    """Train (or reuse / resume) one run and return its directory.

    Args:
        model_factory: callable(model_cfg dict) -> nn.Module with ``forward(images, K, ego_T_cam,
            prev_bev, curr_T_prev) -> {"bev", "logits"}`` and ``head``.
        model_cfg: the model's config (part of the run hash).
        cfg: optimisation settings.
        store: keyframes; ``train_tokens`` / ``val_tokens`` select the splits.
        runs_root: parent directory; the run directory is ``<runs_root>/<name>-<hash>``.
        grid: the BEV grid of the logits and ground truth.
        data_id: what identifies the data (dataroot, version, image size, labeller) for the hash.
    Returns: the run directory, holding ``metrics.csv`` with one row per epoch.
    """
    resolved = {"name": name, "model": model_cfg, "train": asdict(cfg), "grid": grid.as_dict(),
                "data": data_id or {}, "n_train": len(train_tokens), "n_val": len(val_tokens),
                "train_tokens_hash": config_hash(list(train_tokens))}
    h = config_hash(resolved)
    run_dir = Path(runs_root) / f"{name}-{h}"
    if (run_dir / "done.json").exists():
        return run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.json", json.dumps(json.loads(canonical_json(resolved)), indent=2))

    torch.manual_seed(cfg.seed)
    model = model_factory(model_cfg)
    need_prev = cfg.use_history or cfg.temporal
    train_ds = KeyframeDataset(store, train_tokens, with_prev=need_prev)
    val_ds = KeyframeDataset(store, val_tokens, with_prev=cfg.use_history)
    steps_per_epoch = math.ceil(len(train_ds) / cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch,
                                                pct_start=0.1, anneal_strategy="cos")
    start_epoch, step, rows = 0, 0, []
    last = latest_checkpoint(run_dir)
    if last is not None:
        ck = load_checkpoint(last)
        if ck["config_hash"] != h:
            raise RuntimeError(f"checkpoint {last} belongs to config {ck['config_hash']}, not {h}")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        torch.set_rng_state(ck["torch_rng"])
        start_epoch, step = ck["epoch"], ck["step"]
        rows = [r for r in read_metrics(run_dir) if r["epoch"] <= start_epoch]
    elif cfg.init_from:
        ck = load_checkpoint(cfg.init_from)
        model.load_state_dict(ck["model"])
    if start_epoch == 0:
        rows = []
        if cfg.init_from:  # where fine-tuning starts: the pretrained model on the BEV ground truth
            m0 = evaluate(model, val_ds, grid, cfg.eval_batch_size, cfg.use_history)
            rows.append({"epoch": 0, "step": 0, "total_step": cfg.step_offset, "train_loss": "", **m0})
    model.train()
    for epoch in range(start_epoch + 1, cfg.epochs + 1):
        g = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
        loader = DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=True, generator=g)
        t0, losses = time.time(), []
        bar = tqdm(loader, desc=f"{name} epoch {epoch}/{cfg.epochs}", disable=not progress, leave=False)
        for batch in bar:
            loss, logs = training_loss(model, batch, cfg, grid)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            step += 1
            losses.append(logs)
            bar.set_postfix(loss=f"{logs['loss']:.4f}")
        m = evaluate(model, val_ds, grid, cfg.eval_batch_size, cfg.use_history)
        row = {"epoch": epoch, "step": step, "total_step": cfg.step_offset + step,
               "train_loss": sum(l["loss"] for l in losses) / len(losses),
               "epoch_seconds": round(time.time() - t0, 3), **m}
        for k in ("loss_t", "loss_prev"):
            if losses and k in losses[0]:
                row[k] = sum(l[k] for l in losses) / len(losses)
        rows.append(row)
        save_checkpoint(_checkpoint_path(run_dir, epoch), model, opt, sched, epoch, step, h)
        _write_metrics(run_dir, rows)
    atomic_write_text(run_dir / "done.json", json.dumps({"config_hash": h, "final": rows[-1] if rows else {}}, indent=2))
    return run_dir
