"""Checkpoints (atomic, verified, config-tagged) and the per-epoch metrics log of a run."""
from __future__ import annotations

import csv
import hashlib
import io
import warnings
from pathlib import Path

import torch

from ..io import atomic_write, atomic_write_text


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


def step_checkpoints(run_dir: Path) -> list[Path]:
    """A run's ``checkpoints/step_*.pt``, oldest first."""
    return sorted((Path(run_dir) / "checkpoints").glob("step_*.pt"))


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint of a run (by step), or None."""
    cks = step_checkpoints(run_dir)
    return cks[-1] if cks else None


def load_latest_good(run_dir: Path, config_hash_: str, max_step: int | None = None) -> tuple[Path, dict] | None:
    """The newest checkpoint (at or before ``max_step`` when given) that loads and verifies;
    corrupt ones are skipped with a warning. A checkpoint of another config raises (it is never
    silently replaced)."""
    paths = step_checkpoints(run_dir)
    if max_step is not None:
        paths = [p for p in paths if int(p.stem.split("_")[1]) <= max_step]
    for path in reversed(paths):
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


def write_metrics(run_dir: Path, rows: list[dict]) -> None:
    """Atomically (re)write ``metrics.csv``: one row per dict, columns in order of first appearance."""
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(run_dir / "metrics.csv", buf.getvalue())
