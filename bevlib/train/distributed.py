"""Scale-out on ``torch.distributed``: one process per device, launched by ``torchrun``.

``torchrun --nproc_per_node=N`` sets ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` / ``MASTER_ADDR``;
:func:`init` joins the group (gloo on CPU, nccl on CUDA). Without those variables everything here
is a no-op for a single process, so the same code runs both ways.
"""
from __future__ import annotations

import atexit
import os

import numpy as np
import torch
import torch.distributed as dist


def launched() -> bool:
    """True inside a ``torchrun`` (or other env://) launch with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: torch.device) -> None:
    """Join the process group once (backend nccl for CUDA, gloo otherwise); no-op when not launched
    or already initialised."""
    if launched() and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        # Left up at interpreter exit, gloo's worker threads are torn down while joinable and the
        # process aborts ("terminate called without an active exception", seen once under load).
        atexit.register(_shutdown)


def _shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    """A process group with more than one process is up."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank (0 when not distributed)."""
    return dist.get_rank() if active() else 0


def world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if active() else 1


def local_rank() -> int:
    """Rank within this node (``LOCAL_RANK``; 0 when not launched): which GPU to use."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Rank 0: the only process that writes checkpoints, metrics and outputs."""
    return rank() == 0


def barrier() -> None:
    """Wait for every process (no-op when not distributed)."""
    if active():
        dist.barrier()


def all_reduce_sum(x):
    """Element-wise sum over processes of a number, numpy array or tensor (same type back; int64
    arrays stay exact). No-op when not distributed."""
    if not active():
        return x
    if isinstance(x, torch.Tensor):
        t = x.detach().clone()
        dist.all_reduce(t)
        return t
    arr = np.asarray(x)
    t = torch.from_numpy(np.ascontiguousarray(arr)).clone()
    dist.all_reduce(t)
    out = t.numpy()
    return out if isinstance(x, np.ndarray) else out.item()


def all_mean(x: float) -> float:
    """Mean of a float over processes (float64 exact for identical values)."""
    if not active():
        return x
    return float(all_reduce_sum(torch.tensor([x], dtype=torch.float64))[0]) / world_size()


def all_gather_object(obj) -> list:
    """Every process's ``obj`` in rank order (``[obj]`` when not distributed)."""
    if not active():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj):
    """Rank 0's ``obj`` on every process."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
