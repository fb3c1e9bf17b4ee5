"""Static figures (matplotlib) shared by the notebooks.

Colours come from a :class:`~bevlib.classes.LabelSet` (default busch2026's 14 classes,
:data:`~bevlib.classes.BUSCH2026_ALL`); an out-of-range ignore index is drawn grey.
"""
from __future__ import annotations

import numpy as np

from .classes import BUSCH2026_ALL, LabelSet


def colorize(labels: np.ndarray, label_set: LabelSet = BUSCH2026_ALL) -> np.ndarray:
    """Class map (...) integer -> RGB (..., 3) uint8 in the label set's colours (ignore grey,
    values without a class black). Works for (H, W) maps, (B, H, W) stacks and (N,) points."""
    lut = label_set.palette()
    return lut[np.asarray(labels, dtype=np.int64).clip(0, len(lut) - 1)]


def legend_handles(class_ids, label_set: LabelSet = BUSCH2026_ALL) -> list:
    """matplotlib legend patches (colour + class name) for the given class indices of ``label_set``.

    Raises: IndexError for an index outside the label set (other than its ignore index)."""
    from matplotlib.patches import Patch

    lut = label_set.palette()
    return [Patch(color=lut[i] / 255.0, label=label_set.name_of(int(i))) for i in class_ids]


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.5, skip_background: bool = True,
            label_set: LabelSet = BUSCH2026_ALL) -> np.ndarray:
    """Blend a class map over an RGB image. image (H, W, 3) uint8, labels (H, W) -> (H, W, 3) uint8.

    With ``skip_background`` the label set's background class and its ignore index stay unblended.
    """
    col = colorize(labels, label_set).astype(np.float32)
    img = image.astype(np.float32)
    if skip_background:
        m = labels != label_set.ignore_index
        if label_set.background is not None:
            m = m & (labels != label_set.background)
    else:
        m = np.ones(labels.shape, bool)
    img[m] = (1 - alpha) * img[m] + alpha * col[m]
    return img.clip(0, 255).astype(np.uint8)
