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
import hashlib
import io
import json
import math
import os
import statistics
import time
import warnings
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, default_collate
from tqdm.auto import tqdm

from .bev import BEVGrid
from .classes import NUM_BEV
from .data.dataset import KeyframeDataset, KeyframeStore
from .io import atomic_write, atomic_write_text, canonical_json, config_hash
from .losses import bev_ce, busch2026_alg1_temporal_loss, busch2026_eq1_reprojection_ce
from .metrics import RangedBEVMetrics
from .render import render_bev
from .runtime import reuse_large_allocations

from .models.backbone import normalize_images  # noqa: F401  (re-exported)
from .models.bevformer import forward_keyframes


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
    checkpoint_every_steps: int = 0     # mid-epoch checkpoints (0: at epoch ends only)
    keep_checkpoints: int = 3           # newest step checkpoints kept (epoch ends are kept apart)
    spike_factor: float = 10.0          # loss > factor x running median is a spike (0: NaN/inf only)
    spike_window: int = 20
    spike_min_history: int = 5
    max_rollbacks: int = 5

    def __post_init__(self):
        if self.mode not in ("supervised", "pretrain"):
            raise ValueError(f"TrainConfig.mode must be 'supervised' or 'pretrain', got {self.mode!r}")
        if self.temporal and self.mode != "pretrain":
            raise ValueError("TrainConfig.temporal applies to mode='pretrain' only")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"TrainConfig needs epochs >= 1 and batch_size >= 1, got {self.epochs}, {self.batch_size}")


def forward(model, batch, use_history: bool) -> dict:
    """Model forward on a collated batch, with the previous keyframe as history when enabled."""
    return forward_keyframes(model, batch, use_history)


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
            batch["pseudo"], batch["prev_pseudo"], batch["has_prev"], cfg.render_backend, logits_t=out["logits"])
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


class CheckpointError(RuntimeError):
    """A checkpoint that is corrupt, truncated or belongs to another config; names the file."""


def _state_checksum(model_state: dict) -> str:
    """SHA-256 over the model tensors' bytes (sorted by name): detects silent corruption that a
    zip reader may not."""
    h = hashlib.sha256()
    for k in sorted(model_state):
        t = model_state[k]
        h.update(k.encode())
        if isinstance(t, torch.Tensor):
            h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_checkpoint(path: Path, state: dict) -> Path:
    """Atomically save a training state (model, optimiser, scheduler, counters, RNG, guard
    history, config hash) with a checksum of the model tensors."""
    state = dict(state, checksum=_state_checksum(state["model"]))
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path, config_hash_: str | None = None) -> dict:
    """Load and verify a checkpoint with ``torch.load(weights_only=True)`` (no pickled code runs).

    Args:
        config_hash_: when given, the checkpoint must have been written by that config.
    Raises:
        FileNotFoundError: the path does not exist.
        CheckpointError: unreadable / truncated, checksum mismatch, or another config's checkpoint
            (the message names the file and both config hashes).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"checkpoint {str(path)!r} is truncated or corrupt: {type(e).__name__}: {e}") from e
    if not isinstance(ck, dict) or "model" not in ck or ck.get("checksum") != _state_checksum(ck["model"]):
        raise CheckpointError(f"checkpoint {str(path)!r} fails its checksum (corrupt)")
    if config_hash_ is not None and ck.get("config_hash") != config_hash_:
        raise CheckpointError(f"checkpoint {str(path)!r} belongs to config {ck.get('config_hash')!r}, "
                              f"not to this run's config {config_hash_!r}; refusing to load it")
    return ck


def _step_checkpoints(run_dir: Path) -> list[Path]:
    return sorted((Path(run_dir) / "checkpoints").glob("step_*.pt"))


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint of a run (by step), or None."""
    cks = _step_checkpoints(run_dir)
    return cks[-1] if cks else None


def load_latest_good(run_dir: Path, config_hash_: str) -> tuple[Path, dict] | None:
    """The newest checkpoint that loads and verifies; corrupt ones are skipped with a warning.
    A checkpoint of another config raises (it is never silently replaced)."""
    for path in reversed(_step_checkpoints(run_dir)):
        try:
            return path, load_checkpoint(path, config_hash_)
        except CheckpointError as e:
            if "belongs to config" in str(e):
                raise
            warnings.warn(f"{e}; falling back to the previous checkpoint", RuntimeWarning, stacklevel=2)
    return None


def checkpoint_at(run_dir: str | Path, epoch: int) -> Path:
    """Path of a run's checkpoint after ``epoch`` (1-based). Raises FileNotFoundError if absent."""
    p = Path(run_dir) / "checkpoints" / f"epoch_{epoch:03d}.pt"
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


class SpikeGuard:
    """Flags a loss that is NaN/inf or above ``factor`` x the running median of the last
    ``window`` accepted losses (after ``min_history`` of them). The MultiViT paper restarted
    collapsed runs from checkpoints by hand (lukkassen2024, appendix "Training dip"); the trainer
    does it automatically."""

    def __init__(self, factor: float, window: int, min_history: int, history=()):
        self.factor, self.min_history = factor, min_history
        self.history = deque(history, maxlen=window)

    def is_spike(self, loss: float) -> str | None:
        """The reason the loss is a spike ('nan/inf' or 'k x median'), or None."""
        if not math.isfinite(loss):
            return "non-finite loss"
        if self.factor > 0 and len(self.history) >= self.min_history:
            med = statistics.median(self.history)
            if loss > self.factor * med:
                return f"loss {loss:.4g} > {self.factor:g} x running median {med:.4g}"
        return None

    def push(self, loss: float) -> None:
        """Record an accepted (non-spike) loss in the running window."""
        self.history.append(loss)


class TrainingDiverged(RuntimeError):
    """More loss spikes than ``TrainConfig.max_rollbacks``: the run cannot recover by itself."""


def _batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The epoch's batches: a permutation drawn from (seed, epoch) alone, so a resumed run sees
    exactly the batches an uninterrupted one would."""
    g = torch.Generator().manual_seed(seed * 100003 + epoch)
    order = torch.randperm(n, generator=g).tolist()
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def train(model_factory, model_cfg: dict, cfg: TrainConfig, store: KeyframeStore, train_tokens, val_tokens,
          runs_root: str | Path, name: str, grid: BEVGrid, data_id: dict | None = None,
          progress: bool = True) -> Path:
    """Train (or reuse / resume) one run and return its directory.

    A finished run of the same config is reused. An interrupted one (killed at any point)
    resumes from its newest verified checkpoint and ends with the same ``metrics.csv`` as an
    uninterrupted run (bit-identical on CPU: data order depends on (seed, epoch) only, and the
    checkpoint holds model, optimiser, scheduler, RNG, the position in the epoch, the epoch's
    losses so far and the spike guard's history). A loss spike (see :class:`SpikeGuard`) rolls
    back to the newest checkpoint, skips the offending batch from then on and logs the event in
    ``metrics.csv`` (column ``events``) and ``events.jsonl``.

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
    Raises: CheckpointError (another config's checkpoint in the run directory, or a corrupt
        ``init_from``), TrainingDiverged (too many spikes).
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

    reuse_large_allocations()
    torch.manual_seed(cfg.seed)
    model = model_factory(model_cfg)
    need_prev = cfg.use_history or cfg.temporal
    train_ds = KeyframeDataset(store, train_tokens, with_prev=need_prev)
    val_ds = KeyframeDataset(store, val_tokens, with_prev=cfg.use_history)
    steps_per_epoch = math.ceil(len(train_ds) / cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch,
                                                pct_start=0.1, anneal_strategy="cos")
    guard = SpikeGuard(cfg.spike_factor, cfg.spike_window, cfg.spike_min_history)
    # pos: completed epochs, batches consumed in the current epoch, optimiser steps so far
    pos = {"epoch": 0, "batch": 0, "step": 0}
    epoch_logs: list[dict] = []
    skipped: set[tuple[int, int]] = set()
    events: list[dict] = []
    rollbacks = 0

    def snapshot() -> dict:
        return {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                **pos, "config_hash": h, "torch_rng": torch.get_rng_state(), "epoch_logs": json.dumps(epoch_logs),
                "guard_history": list(guard.history), "skipped": sorted(skipped), "events": json.dumps(events),
                "rollbacks": rollbacks}

    def restore(ck: dict) -> None:
        nonlocal epoch_logs, skipped, events, rollbacks
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        torch.set_rng_state(ck["torch_rng"])
        pos.update(epoch=ck["epoch"], batch=ck["batch"], step=ck["step"])
        epoch_logs = json.loads(ck["epoch_logs"])
        guard.history.clear()
        guard.history.extend(ck["guard_history"])
        skipped = {tuple(x) for x in ck["skipped"]} | skipped
        events = json.loads(ck["events"])
        rollbacks = max(rollbacks, ck["rollbacks"])

    def checkpoint() -> Path:
        path = save_checkpoint(run_dir / "checkpoints" / f"step_{pos['step']:07d}.pt", snapshot())
        # keep the newest few mid-epoch checkpoints; epoch ends are kept as epoch_XXX.pt links
        for old in _step_checkpoints(run_dir)[:-cfg.keep_checkpoints]:
            old.unlink(missing_ok=True)
        return path

    found = load_latest_good(run_dir, h)
    if found is not None:
        restore(found[1])
        rows = [r for r in read_metrics(run_dir) if r["epoch"] <= pos["epoch"]]
    else:
        rows = []
        if cfg.init_from:
            model.load_state_dict(load_checkpoint(cfg.init_from)["model"])
            # where fine-tuning starts: the pretrained model on the BEV ground truth
            m0 = evaluate(model, val_ds, grid, cfg.eval_batch_size, cfg.use_history)
            rows.append({"epoch": 0, "step": 0, "total_step": cfg.step_offset, "train_loss": "", **m0, "events": ""})
            _write_metrics(run_dir, rows)
        checkpoint()  # step 0: a rollback target exists from the first batch on
    model.train()
    while pos["epoch"] < cfg.epochs:
        epoch = pos["epoch"] + 1
        batches = _batches(len(train_ds), cfg.batch_size, cfg.seed, epoch)
        t0 = time.time()
        bar = tqdm(total=len(batches), initial=pos["batch"], desc=f"{name} epoch {epoch}/{cfg.epochs}",
                   disable=not progress, leave=False)
        rolled_back = False
        while pos["batch"] < len(batches):
            b = pos["batch"]
            if (epoch, b) in skipped:
                pos["batch"] += 1
                bar.update(1)
                continue
            batch = default_collate([train_ds[i] for i in batches[b]])
            loss, logs = training_loss(model, batch, cfg, grid)
            reason = guard.is_spike(loss.item())
            if reason:
                rollbacks += 1
                if rollbacks > cfg.max_rollbacks:
                    raise TrainingDiverged(f"run {run_dir}: {rollbacks} loss spikes (last: {reason} at epoch "
                                           f"{epoch} batch {b}); max_rollbacks={cfg.max_rollbacks}")
                path, ck = load_latest_good(run_dir, h)
                event = {"epoch": epoch, "batch": b, "step": pos["step"], "reason": reason,
                         "rolled_back_to_step": ck["step"], "checkpoint": path.name}
                skipped.add((epoch, b))
                restore(ck)
                events.append(event)
                with open(run_dir / "events.jsonl", "a") as f:
                    f.write(json.dumps(event) + "\n")
                warnings.warn(f"{name}: {reason} at epoch {epoch} batch {b}; rolled back to step {ck['step']} "
                              "and skipping that batch", RuntimeWarning, stacklevel=2)
                rolled_back = True
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            guard.push(loss.item())
            pos["step"] += 1
            pos["batch"] += 1
            epoch_logs.append(logs)
            bar.update(1)
            bar.set_postfix(loss=f"{logs['loss']:.4f}")
            if cfg.checkpoint_every_steps and pos["step"] % cfg.checkpoint_every_steps == 0 and pos["batch"] < len(batches):
                checkpoint()
        bar.close()
        if rolled_back:
            continue
        m = evaluate(model, val_ds, grid, cfg.eval_batch_size, cfg.use_history)
        row = {"epoch": epoch, "step": pos["step"], "total_step": cfg.step_offset + pos["step"],
               "train_loss": sum(l["loss"] for l in epoch_logs) / max(1, len(epoch_logs)), **m}
        for k in ("loss_t", "loss_prev"):
            if epoch_logs and k in epoch_logs[0]:
                row[k] = sum(l[k] for l in epoch_logs) / len(epoch_logs)
        row["events"] = "; ".join(f"{e['reason']} at batch {e['batch']} -> rolled back to step "
                                  f"{e['rolled_back_to_step']}, batch skipped" for e in events if e["epoch"] == epoch)
        rows.append(row)
        pos.update(epoch=epoch, batch=0)
        epoch_logs = []
        _write_metrics(run_dir, rows)
        with open(run_dir / "timing.csv", "a") as f:  # wall time is not part of the (reproducible) metrics
            f.write(f"{epoch},{time.time() - t0:.3f}\n")
        path = checkpoint()
        ep = run_dir / "checkpoints" / f"epoch_{epoch:03d}.pt"
        ep.unlink(missing_ok=True)
        os.link(path, ep)
    atomic_write_text(run_dir / "done.json", json.dumps({"config_hash": h, "final": rows[-1] if rows else {}}, indent=2))
    return run_dir
