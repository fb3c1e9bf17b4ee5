"""The viewer's LiDAR reading, kept in one place so it can be swapped for the suite's shared LiDAR
reader (``bevlib.data.lidar``) without touching the layers."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .. import geometry as geo
from ..data.nuscenes_data import DataError

log = logging.getLogger(__name__)


def load_lidar(nusc, sample_token: str):
    """LIDAR_TOP points of a keyframe in its ego frame, with lidarseg labels when present.

    The keyframe's ego frame is LIDAR_TOP's ego pose (``nuscenes_data._reference_sd``), so the
    sensor's calibration alone maps the points into it.

    Returns: (xyz (M, 3) float64 metres ego frame, seg (M,) uint8 nuScenes-lidarseg indices or
        None), or (None, None) when the keyframe has no LIDAR_TOP.
    Raises: DataError naming a missing point-cloud file.
    """
    from nuscenes.utils.data_classes import LidarPointCloud

    sample = nusc.get("sample", sample_token)
    if "LIDAR_TOP" not in sample["data"]:
        return None, None
    sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    path = nusc.get_sample_data_path(sd["token"])
    if not Path(path).exists():
        raise DataError(f"LiDAR file {path!r} is missing")
    pc = LidarPointCloud.from_file(path)
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    xyz = geo.apply(geo.transform_from(cs["translation"], cs["rotation"]), pc.points[:3].T)
    seg = None
    by_sd = getattr(nusc, "_bevlib_lidarseg_by_sd", None)
    if by_sd is None and hasattr(nusc, "lidarseg"):
        by_sd = {r["sample_data_token"]: r["filename"] for r in nusc.lidarseg}
        nusc._bevlib_lidarseg_by_sd = by_sd
    if by_sd and sd["token"] in by_sd:
        f = Path(nusc.dataroot) / by_sd[sd["token"]]
        if f.exists():
            seg = np.fromfile(f, dtype=np.uint8)
            if len(seg) != len(xyz):
                log.warning("lidarseg %s has %d labels for %d points: ignored", f, len(seg), len(xyz))
                seg = None
    return xyz, seg


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
