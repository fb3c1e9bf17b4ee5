"""Camera-view pseudo-labels (busch2026 Sec. III-C): the interface, and the offline cache.

A pseudo-labeller turns one camera image (a nuScenes ``sample_data`` record) into a per-pixel
class map in :data:`bevlib.classes.ALL_CLASSES` (3 marking classes + 10 object classes, 0 is
background, :data:`bevlib.classes.IGNORE` is unlabelled). As in the paper, labels are generated
once, offline, and cached as PNG files next to the dataset; training only reads the cache.
"""
from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image
from ..progress import bar as progress_bar

from ..io import atomic_write, atomic_write_text
from ..paths import cache_dir


class PseudoLabeler(ABC):
    """Produces a camera-view label map for one camera ``sample_data`` token."""

    #: Short identifier; the cache directory is named after it, so it must change when the
    #: labelling changes (e.g. include the noise level).
    name: str = "abstract"

    @abstractmethod
    def label(self, nusc, sample_data_token: str) -> np.ndarray:
        """Label one camera image.

        Returns: (H, W) uint8 at the image's full resolution, values in ``ALL_CLASSES`` indices
        or ``IGNORE``.
        Raises: FileNotFoundError naming the image when it is missing.
        """


def dataset_dir(dataroot: str | os.PathLike) -> Path:
    """The pseudo-label store of a dataroot: ``<cache_dir>/pseudo_labels/<name>-<hash>``, keyed by
    the resolved dataroot path (readable name, unique hash)."""
    root = Path(dataroot).resolve()
    return cache_dir() / "pseudo_labels" / f"{root.name}-{hashlib.sha256(str(root).encode()).hexdigest()[:12]}"


def pseudo_label_dir(dataroot: str | os.PathLike, labeler_name: str) -> Path:
    """Where the cached labels of one labeller for one dataroot live.

    Raises: ValueError for a labeller name that is not a plain folder name.
    """
    if not labeler_name or labeler_name in (".", "..") or "/" in labeler_name or os.sep in labeler_name:
        raise ValueError(f"labeller name {labeler_name!r} must be a plain folder name")
    return dataset_dir(dataroot) / labeler_name


def pseudo_label_path(dataroot: str | os.PathLike, labeler_name: str, sample_data_token: str) -> Path:
    """Where the cached pseudo-label PNG of a camera ``sample_data`` token lives (see the module
    docstring; outside the dataroot)."""
    return pseudo_label_dir(dataroot, labeler_name) / f"{sample_data_token}.png"


def cached_label_sets(dataroot: str | os.PathLike) -> list[str]:
    """Names of the labellers with cached labels for a dataroot, sorted."""
    d = dataset_dir(dataroot)
    return sorted(p.name for p in d.iterdir() if p.is_dir()) if d.is_dir() else []


def cache_pseudo_labels(nusc, labeler: PseudoLabeler, sample_data_tokens: Iterable[str],
                        progress: bool = True) -> int:
    """Generate and cache pseudo-labels for the given camera tokens; existing files are kept.

    Labels go to :func:`pseudo_label_path` under :func:`bevlib.paths.cache_dir` (nothing is
    written inside ``nusc.dataroot``). Each PNG is written to a temporary name and renamed into
    place, so an interrupted run never leaves a truncated label. Returns the number of labels
    generated now.
    Raises: ValueError if the labeller returns anything but an (H, W) uint8 map; OSError if the
        cache directory cannot be written.
    """
    made = 0
    tokens = list(sample_data_tokens)
    source = dataset_dir(nusc.dataroot) / "dataroot.json"
    for tok in progress_bar(tokens, desc=f"pseudo-labels ({labeler.name})", disable=not progress, leave=False):
        path = pseudo_label_path(nusc.dataroot, labeler.name, tok)
        if path.exists():
            continue
        lab = labeler.label(nusc, tok)
        if lab.dtype != np.uint8 or lab.ndim != 2:
            raise ValueError(f"{type(labeler).__name__}.label({tok}) returned {lab.dtype} {lab.shape}; want (H, W) uint8")
        if not source.exists():   # says which dataroot the hashed folder belongs to
            atomic_write_text(source, json.dumps({"dataroot": str(Path(nusc.dataroot).resolve())}))
        atomic_write(path, lambda tmp: Image.fromarray(lab).save(tmp, format="PNG"))
        made += 1
    return made


def load_pseudo_label(dataroot, labeler_name: str, sample_data_token: str) -> np.ndarray:
    """Read a cached pseudo-label: (H, W) uint8.

    Raises: FileNotFoundError naming the expected file and how to create it.
    """
    path = pseudo_label_path(dataroot, labeler_name, sample_data_token)
    if not path.exists():
        raise FileNotFoundError(f"pseudo-label {path} is missing: run bevlib.data.pseudo.cache_pseudo_labels "
                                f"with the {labeler_name!r} labeller first")
    return np.asarray(Image.open(path))
