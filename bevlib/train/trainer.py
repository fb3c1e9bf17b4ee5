"""The loop every paper trains with: :func:`train` runs a :class:`~bevlib.train.task.Task`.

A run lives in its own directory (named by the hash of its resolved config) holding
``config.json``, ``metrics.csv`` (one row per evaluated epoch: steps, losses, the task's
validation metrics, events), ``checkpoints/epoch_XXX.pt`` and, once finished, ``done.json``. A
finished run with the same config is reused, an unfinished one resumes from its last checkpoint.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import statistics
import time
import warnings
from collections import deque
from functools import reduce
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from ..progress import bar as progress_bar, write as progress_write

from ..io import atomic_write_text, canonical_json, config_hash
from ..runtime import reuse_large_allocations
from . import distributed as dist
from .checkpoint import (load_checkpoint, load_latest_good, read_metrics, save_checkpoint, step_checkpoints,
                         write_metrics)
from .config import TrainConfig
from .optim import WeightDecaySchedule, build_optimizer, build_scheduler
from .task import Task, unwrap


class SpikeGuard:
    """Flags a loss that is NaN/inf or above ``factor`` x the running median of the last
    ``window`` accepted losses (after ``min_history`` of them). The MultiViT paper restarted
    collapsed runs from checkpoints by hand (lukkassen2024, appendix "Training dip"); the trainer
    does it automatically."""

    def __init__(self, factor: float, window: int, min_history: int, history=()):
        self.factor, self.min_history = factor, min_history
        self.history = deque(history, maxlen=window)

    def is_spike(self, loss: float) -> str | None:
        """The reason the loss is a spike ('non-finite loss' or 'k x median'), or None."""
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


class DipGuard:
    """Flags a training dip: the mean of the last ``window`` accepted losses above ``factor`` x the
    mean of the ``window`` before. lukkassen2024 (appendix "Training dip", Table 7) saw runs
    collapse over several steps with no single bad batch, which :class:`SpikeGuard` cannot see;
    the authors restarted them by hand from the last checkpoint before the dip."""

    def __init__(self, window: int, factor: float):
        self.window, self.factor = window, factor
        self.losses: deque = deque(maxlen=2 * window)

    def push(self, loss: float) -> str | None:
        """Record an accepted loss; the reason when the last ``window`` losses form a dip, else None."""
        if self.window <= 0:
            return None
        self.losses.append(loss)
        if len(self.losses) < 2 * self.window:
            return None
        before = statistics.fmean(list(self.losses)[:self.window])
        recent = statistics.fmean(list(self.losses)[self.window:])
        if recent > self.factor * before:
            return (f"training dip: mean loss of the last {self.window} steps {recent:.4g} > {self.factor:g} x "
                    f"the {self.window} before ({before:.4g})")
        return None

    def clear(self) -> None:
        """Forget the window (after a rollback the losses before it no longer describe the run)."""
        self.losses.clear()


class TrainingDiverged(RuntimeError):
    """More loss spikes than ``TrainConfig.max_rollbacks``: the run cannot recover by itself."""


def resolve_device(spec: str) -> torch.device:
    """``"auto"`` -> this process's CUDA device when CUDA is available (``LOCAL_RANK`` under
    torchrun), else CPU; anything else as ``torch.device(spec)``.

    Raises: ValueError when CUDA is asked for and not available.
    """
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", dist.local_rank() % torch.cuda.device_count())
        return torch.device("cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"TrainConfig.device={spec!r} but CUDA is not available here")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", dist.local_rank() % torch.cuda.device_count())
    return dev


def to_device(batch, device: torch.device):
    """Move every tensor in a (nested dict / list / tuple) batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The epoch's global batches: a permutation drawn from (seed, epoch) alone, so a resumed run,
    or a run over several processes, sees exactly the batches an uninterrupted one would."""
    g = torch.Generator().manual_seed(seed * 100003 + epoch)
    order = torch.randperm(n, generator=g).tolist()
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def split_batch(batch: list[int], rank: int, world: int, accum: int) -> list[tuple[list[int], float]]:
    """This process's micro-batches of a global batch, each with its share of the batch.

    The global batch is split evenly over ``world`` processes, then into ``accum`` micro-batches.
    A share of zero samples (a short last batch) becomes the batch's first sample with weight 0,
    so every process still takes part in each gradient reduction. The weights sum to 1 over all
    processes and micro-batches, so the sum of weighted losses is the sample-weighted batch loss.
    """
    local = np.array_split(np.asarray(batch, dtype=np.int64), world)[rank]
    out = []
    for part in np.array_split(local, accum):
        part = [int(i) for i in part]
        out.append((part, len(part) / len(batch)) if part else ([int(batch[0])], 0.0))
    return out


class _SeededItems(Dataset):
    """Fetches item ``i`` of epoch ``e`` with every RNG (torch, numpy, random) seeded from
    (seed, e, i) and restored afterwards: augmentations are then a function of the sample, not of
    the worker, process or resume point."""

    def __init__(self, dataset: Dataset, seed: int, epoch: int):
        self.dataset, self.seed, self.epoch = dataset, seed, epoch

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i: int):
        s = (self.seed * 1_000_003 + self.epoch * 10_007 + int(i)) % (2 ** 31)
        np_state, py_state = np.random.get_state(), random.getstate()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s)
            np.random.seed(s)
            random.seed(s)
            try:
                return self.dataset[i]
            finally:
                np.random.set_state(np_state)
                random.setstate(py_state)


def _loader(task: Task, dataset: Dataset, index_lists: list[list[int]], cfg: TrainConfig, device: torch.device,
            seed: int, epoch: int) -> DataLoader:
    return DataLoader(_SeededItems(dataset, seed, epoch), batch_sampler=index_lists, num_workers=cfg.num_workers,
                      collate_fn=task.collate, pin_memory=device.type == "cuda")


@torch.no_grad()
def evaluate(task: Task, model: torch.nn.Module, dataset: Dataset | None, cfg: TrainConfig,
             device: torch.device) -> dict:
    """The task's metrics over the whole validation set; each process evaluates every
    ``world``-th sample and the task reduces its statistics over processes."""
    if dataset is None or len(dataset) == 0:
        return {}
    bare = unwrap(model)
    was_training = bare.training
    bare.eval()
    idx = list(range(dist.rank(), len(dataset), dist.world_size()))
    lists = [idx[i:i + cfg.eval_batch_size] for i in range(0, len(idx), cfg.eval_batch_size)]
    loader = _loader(task, dataset, lists, cfg, device, cfg.seed, 0)
    out = task.evaluate(bare, (to_device(b, device) for b in loader), dist.all_reduce_sum)
    bare.train(was_training)
    return out


def _autocast(cfg: TrainConfig, device: torch.device):
    if cfg.amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if cfg.amp == "bf16" else torch.float16)


def train(task: Task, cfg: TrainConfig, runs_root: str | Path, name: str, progress: bool = True) -> Path:
    """Train (or reuse / resume) one run of ``task`` and return its directory.

    A finished run of the same config is reused. An interrupted one (killed at any point)
    resumes from its newest verified checkpoint and ends with the same ``metrics.csv`` as an
    uninterrupted run (bit-identical on CPU: data order depends on (seed, epoch) only, every item
    fetch is seeded by (seed, epoch, index), and the checkpoint holds model, optimiser, scheduler,
    RNG, the task's state, the position in the epoch, the epoch's losses so far and the spike
    guard's history). A loss spike (see :class:`SpikeGuard`) rolls back to the newest checkpoint,
    skips the offending batch from then on and logs the event in ``metrics.csv`` (column
    ``events``) and ``events.jsonl``.

    Under ``torchrun --nproc_per_node=N`` each process takes 1/N of every global batch
    (``cfg.batch_size`` stays the global batch), gradients are averaged by
    DistributedDataParallel, metrics are reduced over processes, and only rank 0 writes.

    Args:
        task: the paper's task (model, data, loss terms, evaluation, extra state).
        cfg: optimisation settings.
        runs_root: parent directory; the run directory is ``<runs_root>/<name>-<hash>``.
        name: the run's name (first part of its directory name).
        progress: a progress bar per epoch and one line per epoch on the terminal (rank 0).
    Returns: the run directory, holding ``metrics.csv`` with one row per epoch.
    Raises: CheckpointError (another config's checkpoint in the run directory, or a corrupt
        ``init_from``), TrainingDiverged (too many spikes), ValueError (fp16 without CUDA, a
        device that is not there).
    """
    device = resolve_device(cfg.device)
    if cfg.amp == "fp16" and device.type != "cuda":
        raise ValueError("TrainConfig.amp='fp16' needs a CUDA device (use 'bf16' or 'none' on CPU)")
    dist.init(device)
    rank, world, main = dist.rank(), dist.world_size(), dist.is_main()
    resolved = {"name": name, "task": task.config(), "train": cfg.hash_dict()}
    h = config_hash(resolved)
    run_dir = Path(runs_root) / f"{name}-{h}"
    if (run_dir / "done.json").exists():
        return run_dir
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.json", json.dumps(json.loads(canonical_json(resolved)), indent=2))
    dist.barrier()

    reuse_large_allocations()
    torch.manual_seed(cfg.seed)
    bare = task.build_model().to(device)
    model = bare
    if dist.active():
        model = torch.nn.parallel.DistributedDataParallel(
            bare, device_ids=[device.index] if device.type == "cuda" else None)
    train_ds, val_ds = task.train_dataset(), task.val_dataset()
    n_batches = math.ceil(len(train_ds) / cfg.batch_size)
    total_steps = cfg.epochs * n_batches
    opt = build_optimizer(task.param_groups(bare), cfg)
    sched = build_scheduler(opt, cfg, total_steps)
    # built before any restore: the start values are the groups' configured decays, not a checkpoint's
    wd_sched = WeightDecaySchedule(opt, total_steps, cfg.weight_decay_end) if cfg.weight_decay_end is not None \
        else None
    scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
    guard = SpikeGuard(cfg.spike_factor, cfg.spike_window, cfg.spike_min_history)
    dip = DipGuard(cfg.dip_window, cfg.dip_factor)
    # pos: completed epochs, batches consumed in the current epoch, optimiser steps so far, and how
    # often a training dip changed the data order
    pos = {"epoch": 0, "batch": 0, "step": 0, "reshuffle": 0}
    epoch_logs: list[dict] = []
    skipped: set[tuple[int, int]] = set()
    events: list[dict] = []
    rollbacks = 0

    def snapshot() -> dict:
        rngs = dist.all_gather_object(torch.get_rng_state())
        tasks = dist.all_gather_object(task.state_dict())
        state = {"model": bare.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                 **pos, "config_hash": h, "torch_rng": rngs[0], "epoch_logs": json.dumps(epoch_logs),
                 "guard_history": list(guard.history), "skipped": sorted(skipped), "events": json.dumps(events),
                 "rollbacks": rollbacks, "task": tasks[0], "world_size": world}
        if world > 1:
            state["torch_rng_per_rank"], state["task_per_rank"] = rngs, tasks
        if scaler is not None:
            state["scaler"] = scaler.state_dict()
        return state

    def restore(ck: dict) -> None:
        nonlocal epoch_logs, skipped, events, rollbacks
        bare.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        same_world = ck.get("world_size", 1) == world and world > 1
        torch.set_rng_state(ck["torch_rng_per_rank"][rank] if same_world else ck["torch_rng"])
        task.load_state_dict(ck["task_per_rank"][rank] if same_world else ck.get("task", {}))
        if scaler is not None and "scaler" in ck:
            scaler.load_state_dict(ck["scaler"])
        pos.update(epoch=ck["epoch"], batch=ck["batch"], step=ck["step"], reshuffle=ck.get("reshuffle", 0))
        epoch_logs = json.loads(ck["epoch_logs"])
        guard.history.clear()
        guard.history.extend(ck["guard_history"])
        skipped = {tuple(x) for x in ck["skipped"]} | skipped
        events = json.loads(ck["events"])
        rollbacks = max(rollbacks, ck["rollbacks"])

    def checkpoint() -> Path:
        state = snapshot()  # collective: every process takes part
        path = run_dir / "checkpoints" / f"step_{pos['step']:07d}.pt"
        if main:
            save_checkpoint(path, state)
            # keep the newest few mid-epoch checkpoints; epoch ends are kept as epoch_XXX.pt links
            old = step_checkpoints(run_dir)[:-cfg.keep_checkpoints] if cfg.keep_checkpoints else []
            for p in old:
                p.unlink(missing_ok=True)
        dist.barrier()  # a rollback on any process may read it now
        return path

    found = load_latest_good(run_dir, h)
    dist.barrier()  # nobody writes a checkpoint before every process has looked
    if found is not None:
        restore(found[1])
        rows = [r for r in read_metrics(run_dir) if r["epoch"] <= pos["epoch"]]
    else:
        rows = []
        if cfg.init_from:
            bare.load_state_dict(load_checkpoint(cfg.init_from)["model"])
            if task.eval_at_init:
                # where fine-tuning starts: the pretrained model on the validation set
                m0 = evaluate(task, model, val_ds, cfg, device)
                rows.append({"epoch": 0, "step": 0, "total_step": cfg.step_offset, "train_loss": "", **m0,
                             "events": ""})
                if main:
                    write_metrics(run_dir, rows)
        checkpoint()  # step 0: a rollback target exists from the first batch on
    model.train()
    while pos["epoch"] < cfg.epochs:
        epoch = pos["epoch"] + 1
        # after a training dip the data order changes (the paper's restarts continued on other batches)
        batches = epoch_batches(len(train_ds), cfg.batch_size, cfg.seed + 7919 * pos["reshuffle"], epoch)
        todo = [b for b in range(pos["batch"], len(batches)) if (epoch, b) not in skipped]
        micro = [split_batch(batches[b], rank, world, cfg.accum_steps) for b in todo]
        loader = iter(_loader(task, train_ds, [m[0] for ms in micro for m in ms], cfg, device, cfg.seed, epoch))
        t0 = time.time()
        bar = progress_bar(total=len(batches), initial=pos["batch"], desc=f"{name} epoch {epoch}/{cfg.epochs}",
                   disable=not (progress and main), leave=False)
        rolled_back = False
        for b, parts in zip(todo, micro):
            if pos["batch"] < b:  # batches skipped after an earlier spike
                bar.update(b - pos["batch"])
                pos["batch"] = b
            opt.zero_grad(set_to_none=True)
            step_terms: dict[str, float] = {}
            for k, (idx, weight) in enumerate(parts):
                batch = to_device(next(loader), device)
                sync = k == len(parts) - 1 or not dist.active()
                with (contextlib.nullcontext() if sync else model.no_sync()), _autocast(cfg, device):
                    terms = task.loss(model, batch)
                    loss = reduce(lambda a, c: a + c, terms.values())
                # one process, one micro-batch: the loss as is (bit-identical to an unscaled step)
                scaled = loss if (world == 1 and len(parts) == 1) else loss * (weight * world)
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
                for key, t in [("loss", loss), *terms.items()]:
                    step_terms[key] = step_terms.get(key, 0.0) + t.item() * weight
            if world > 1:
                step_terms = {k: dist.all_reduce_sum(v) for k, v in step_terms.items()}
            elif len(parts) == 1:
                step_terms = {"loss": loss.item(), **{k: t.item() for k, t in terms.items()}}
            reason = guard.is_spike(step_terms["loss"])
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
                if main:
                    with open(run_dir / "events.jsonl", "a") as f:
                        f.write(json.dumps(event) + "\n")
                    warnings.warn(f"{name}: {reason} at epoch {epoch} batch {b}; rolled back to step {ck['step']} "
                                  "and skipping that batch", RuntimeWarning, stacklevel=2)
                rolled_back = True
                break
            if wd_sched is not None:
                wd_sched.apply(pos["step"])
            if scaler is not None:
                scaler.unscale_(opt)
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(bare.parameters(), cfg.grad_clip)
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            sched.step()
            guard.push(step_terms["loss"])
            dip_reason = dip.push(step_terms["loss"])
            pos["step"] += 1
            pos["batch"] = b + 1
            task.after_step(bare, pos["step"], total_steps)
            logs = {"loss": step_terms["loss"], **{k: v for k, v in step_terms.items() if k != "loss"}}
            epoch_logs.append(logs if len(terms) > 1 else {"loss": logs["loss"]})
            bar.update(1)
            bar.set_postfix(loss=f"{logs['loss']:.4f}")
            if dip_reason:
                rollbacks += 1
                if rollbacks > cfg.max_rollbacks:
                    raise TrainingDiverged(f"run {run_dir}: {rollbacks} rollbacks (last: {dip_reason} at step "
                                           f"{pos['step']}); max_rollbacks={cfg.max_rollbacks}")
                # the last checkpoint before the dip began (keep_checkpoints must reach back that far)
                found_ck = load_latest_good(run_dir, h, max_step=pos["step"] - cfg.dip_window) \
                    or load_latest_good(run_dir, h)
                path, ck = found_ck
                reshuffle = pos["reshuffle"] + 1
                event = {"epoch": epoch, "batch": b, "step": pos["step"], "reason": dip_reason,
                         "rolled_back_to_step": ck["step"], "checkpoint": path.name, "data_order": reshuffle}
                restore(ck)
                pos["reshuffle"] = max(pos["reshuffle"], reshuffle)
                dip.clear()
                events.append(event)
                if main:
                    with open(run_dir / "events.jsonl", "a") as f:
                        f.write(json.dumps(event) + "\n")
                    warnings.warn(f"{name}: {dip_reason}; rolled back to step {ck['step']} with a new data order",
                                  RuntimeWarning, stacklevel=2)
                rolled_back = True
                break
            if cfg.checkpoint_every_steps and pos["step"] % cfg.checkpoint_every_steps == 0 \
                    and pos["batch"] < len(batches):
                checkpoint()
        bar.close()
        if rolled_back:
            continue
        pos["batch"] = len(batches)
        # a fine-tuning run with many short epochs is scored at its end; its loss is still logged per epoch
        due = cfg.eval_every is None or epoch % cfg.eval_every == 0 or epoch == cfg.epochs
        m = evaluate(task, model, val_ds, cfg, device) if due else {}
        row = {"epoch": epoch, "step": pos["step"], "total_step": cfg.step_offset + pos["step"],
               "train_loss": sum(l["loss"] for l in epoch_logs) / max(1, len(epoch_logs)), **m}
        for k in (epoch_logs[0] if epoch_logs else {}):
            if k != "loss":
                row[k] = sum(l[k] for l in epoch_logs) / len(epoch_logs)
        row["events"] = "; ".join(f"{e['reason']} at batch {e['batch']} -> rolled back to step "
                                  f"{e['rolled_back_to_step']}, "
                                  + ("new data order" if "data_order" in e else "batch skipped")
                                  for e in events if e["epoch"] == epoch)
        rows.append(row)
        pos.update(epoch=epoch, batch=0)
        epoch_logs = []
        seconds = time.time() - t0
        if main:
            write_metrics(run_dir, rows)
            with open(run_dir / "timing.csv", "a") as f:  # wall time is not part of the (reproducible) metrics
                f.write(f"{epoch},{seconds:.3f}\n")
            if progress:
                keys = task.headline_metrics or list(m)[-3:]
                shown = ", ".join(f"{k} {m[k]:.2f}" for k in keys if isinstance(m.get(k), float))
                progress_write(f"{name}: epoch {epoch}/{cfg.epochs}, step {pos['step']}, loss {row['train_loss']:.4f}"
                           f"{', ' + shown if shown else ''} ({seconds:.1f} s)")
        path = checkpoint()
        if main:
            ep = run_dir / "checkpoints" / f"epoch_{epoch:03d}.pt"
            ep.unlink(missing_ok=True)
            os.link(path, ep)
        dist.barrier()
    if main:
        atomic_write_text(run_dir / "done.json",
                          json.dumps({"config_hash": h, "final": rows[-1] if rows else {}}, indent=2))
    dist.barrier()
    return run_dir
