"""Camera-view pseudo-labels (busch2026 Sec. III-C): the interface, and the offline cache.

A pseudo-labeller turns one camera image (a nuScenes ``sample_data`` record) into a per-pixel
class map in :data:`bevlib.classes.ALL_CLASSES` (3 marking classes + 10 object classes, 0 is
background, :data:`bevlib.classes.IGNORE` is unlabelled). As in the paper, labels are generated
once, offline, and cached as PNG files next to the dataset; training only reads the cache.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image
from tqdm.auto import tqdm


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


def pseudo_label_path(dataroot: str | os.PathLike, labeler_name: str, sample_data_token: str) -> Path:
    """Where the cached pseudo-label PNG of a camera ``sample_data`` token lives."""
    return Path(dataroot) / "bevlib_cache" / "pseudo_labels" / labeler_name / f"{sample_data_token}.png"


def cache_pseudo_labels(nusc, labeler: PseudoLabeler, sample_data_tokens: Iterable[str],
                        progress: bool = True) -> int:
    """Generate and cache pseudo-labels for the given camera tokens; existing files are kept.

    Each PNG is written to a temporary name and renamed into place, so an interrupted run never
    leaves a truncated label. Returns the number of labels generated now.
    """
    made = 0
    tokens = list(sample_data_tokens)
    for tok in tqdm(tokens, desc=f"pseudo-labels ({labeler.name})", disable=not progress, leave=False):
        path = pseudo_label_path(nusc.dataroot, labeler.name, tok)
        if path.exists():
            continue
        lab = labeler.label(nusc, tok)
        if lab.dtype != np.uint8 or lab.ndim != 2:
            raise ValueError(f"{type(labeler).__name__}.label({tok}) returned {lab.dtype} {lab.shape}; want (H, W) uint8")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}.png")
        Image.fromarray(lab).save(tmp)
        os.replace(tmp, path)
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
