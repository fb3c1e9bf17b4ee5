"""Static figures (matplotlib) shared by the notebooks."""
from __future__ import annotations

import numpy as np

from .classes import ALL_CLASSES, COLORS, IGNORE

_PALETTE = np.zeros((256, 3), np.uint8)
_PALETTE[: len(COLORS)] = np.array(COLORS, np.uint8)
_PALETTE[IGNORE] = (128, 128, 128)


def colorize(labels: np.ndarray) -> np.ndarray:
    """Class map (..., H, W) integer -> RGB (..., H, W, 3) uint8 with the suite's class colours
    (IGNORE grey)."""
    return _PALETTE[np.asarray(labels, dtype=np.int64).clip(0, 255)]


def legend_handles(class_ids) -> list:
    """matplotlib legend patches for the given class indices."""
    from matplotlib.patches import Patch

    return [Patch(color=np.array(COLORS[i]) / 255.0, label=ALL_CLASSES[i]) for i in class_ids]


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.5, skip_background: bool = True) -> np.ndarray:
    """Blend a class map over an RGB image. image (H, W, 3) uint8, labels (H, W) -> (H, W, 3) uint8."""
    col = colorize(labels).astype(np.float32)
    img = image.astype(np.float32)
    m = np.ones(labels.shape, bool) if not skip_background else (labels != 0) & (labels != IGNORE)
    img[m] = (1 - alpha) * img[m] + alpha * col[m]
    return img.clip(0, 255).astype(np.uint8)
