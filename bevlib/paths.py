"""Where things live: the project root, outputs and the cache."""
from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The repository root (the folder holding ``bevlib/`` and ``notebooks/``)."""
    return Path(__file__).resolve().parents[1]


def outputs_dir(*parts: str) -> Path:
    """``<project>/outputs/<parts...>`` (created on demand by writers)."""
    return project_root().joinpath("outputs", *parts)


def cache_dir() -> Path:
    """Cache for generated worlds and tensors: ``$BEVLIB_CACHE`` or ``~/.cache/bevlib``."""
    return Path(os.environ.get("BEVLIB_CACHE", Path.home() / ".cache" / "bevlib"))
