"""Shared pieces of busch2026's figure drivers (Figs. 2 and 4)."""
from __future__ import annotations

from pathlib import Path

from ...data.nuscenes_data import CAMERAS, scene_sample_tokens
from ...io import atomic_savefig
from ...params import ParameterError


def first_keyframe(nusc) -> str:
    """The first keyframe of the first scene."""
    return scene_sample_tokens(nusc, [nusc.scene[0]["name"]])[0]


def check_camera(camera: str) -> None:
    """Raises ParameterError unless ``camera`` is one of the six nuScenes cameras."""
    if camera not in CAMERAS:
        raise ParameterError(f"parameter 'camera' must be one of {', '.join(CAMERAS)}, got {camera!r}")


def save_plot(plot, path, *args) -> Path:
    """``plot(*args)`` -> matplotlib figure, saved atomically as PNG at ``path`` (110 dpi)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.style.context("default"):  # nuscenes-devkit's map API switches the global style
        fig = plot(*args)
    try:
        return atomic_savefig(fig, path, dpi=110)
    finally:
        plt.close(fig)
