"""The viewer's LiDAR access: points and labels through the suite's one LiDAR reader, and the
lidarseg colours of a dataset."""
from __future__ import annotations

import numpy as np


def load_lidar(nusc, sample_token: str):
    """LIDAR_TOP points of a keyframe in its ego frame, with lidarseg labels when present (the
    suite's one reader, :func:`bevlib.data.lidar.load_lidar_sweep`).

    Returns: (xyz (M, 3) float64 metres ego frame, seg (M,) uint8 nuScenes-lidarseg indices or
        None), or (None, None) when the keyframe has no LIDAR_TOP.
    Raises: DataError naming a missing or truncated point-cloud or lidarseg file.
    """
    from ..data.lidar import load_lidar_sweep

    sweep = load_lidar_sweep(nusc, sample_token)
    return (None, None) if sweep is None else (sweep.points_ego, sweep.lidarseg)


def lidarseg_palette(nusc) -> tuple[dict, np.ndarray]:
    """nuScenes-lidarseg category names and colours of a dataset.

    Returns: ({index: category name}, (256, 3) uint8 colour lookup table; grey for indices the
        dataset does not colour).
    """
    names = dict(getattr(nusc, "lidarseg_idx2name_mapping", {}) or {})
    lut = np.full((256, 3), 200, np.uint8)
    cmap = getattr(nusc, "colormap", {}) or {}
    for i, n in names.items():
        if n in cmap and 0 <= int(i) < 256:
            lut[int(i)] = cmap[n]
    return names, lut
