"""The LiDAR model (the rig's roof LiDAR: HDL-32E-like as nuScenes' LIDAR_TOP by default, see
config.WORLD_RIGS) and its ray-caster: one sweep per keyframe with intensity, ring index (0 = the
lowest beam) and a lidarseg label per point."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bevlib.geometry import invert, transform_from

from .config import WORLD_RIGS, WorldConfig, _rng, _write
from .raycast import _rotate, _Scenery, _slab
from .roads import _MAT_INTENSITY, _MAT_LSEG, _wrap_angle
from .scenery import _STYLE_INTENSITY, _Boxes


@dataclass
class _Lidar:
    """A spinning LiDAR: all beams fire at every azimuth step; points are returned in the LIDAR frame."""
    ego_T_lidar: np.ndarray
    dirs: np.ndarray              # (beams, A, 3) float32 unit rays in the LIDAR frame
    max_range: float = 80.0


def _make_lidar(cfg: WorldConfig) -> _Lidar:
    rig = WORLD_RIGS[cfg.rig]
    lo, hi = rig.lidar_elevation_deg
    elev = np.radians(np.linspace(lo, hi, cfg.lidar_beams))
    A = cfg.lidar_azimuth_steps
    az = -np.pi + (np.arange(A) + 0.5) * (2 * np.pi / A)
    dirs = np.stack([np.cos(elev)[:, None] * np.cos(az)[None], np.cos(elev)[:, None] * np.sin(az)[None],
                     np.broadcast_to(np.sin(elev)[:, None], (len(elev), A))], -1).astype(np.float32)
    return _Lidar(transform_from(rig.lidar["translation"], rig.lidar["rotation"]), dirs)


def _cast_lidar(lidar: _Lidar, global_T_ego, scenery: _Scenery, boxes: _Boxes, rng):
    """One sweep. Returns points (N, 5) float32 [x, y, z (LIDAR frame, m), intensity, ring],
    lidarseg labels (N,) uint8, and the number of points on each box (len(boxes),)."""
    global_T_lidar = global_T_ego @ lidar.ego_T_lidar
    R, o = global_T_lidar[:3, :3], global_T_lidar[:3, 3]
    ox, oy, oz = (float(v) for v in o)
    dx, dy, dz = _rotate(R, lidar.dirs[..., 0], lidar.dirs[..., 1], lidar.dirs[..., 2])
    with np.errstate(divide="ignore"):
        best = np.where(dz < -1e-6, -oz / dz, np.inf).astype(np.float32)
    best[best > lidar.max_range] = np.inf
    ids = np.full(best.shape, -1, np.int32)
    A = best.shape[1]
    step = 2 * np.pi / A
    # Azimuth culling: a box only meets the rays of the columns between its corners' azimuths.
    lidar_T_global = invert(global_T_lidar)
    corners = boxes.corners() @ lidar_T_global[:3, :3].T + lidar_T_global[:3, 3]
    centre = corners.mean(1)
    az_c = np.arctan2(centre[:, 1], centre[:, 0])
    rel = _wrap_angle(np.arctan2(corners[..., 1], corners[..., 0]) - az_c[:, None])
    j0 = np.floor((az_c + rel.min(1) + np.pi) / step).astype(np.int64) - 2
    j1 = np.ceil((az_c + rel.max(1) + np.pi) / step).astype(np.int64) + 2
    c, s = np.cos(boxes.yaw), np.sin(boxes.yaw)
    rx, ry = ox - boxes.cx, oy - boxes.cy
    inside = (np.abs(c * rx + s * ry) <= boxes.hl) & (np.abs(-s * rx + c * ry) <= boxes.hw)
    dist = np.hypot(boxes.cx - ox, boxes.cy - oy) - boxes.radius()
    for k in np.flatnonzero(dist < lidar.max_range):
        cols = np.arange(A) if (inside[k] or j1[k] - j0[k] >= A) else np.arange(j0[k], j1[k] + 1) % A
        t_near, hit, *_ = _slab(ox, oy, oz, dx[:, cols], dy[:, cols], dz[:, cols], boxes, k)
        sub_best = best[:, cols]
        closer = hit & (t_near < sub_best)
        if closer.any():
            best[:, cols] = np.where(closer, t_near, sub_best)
            ids[:, cols] = np.where(closer, k, ids[:, cols])
    valid = np.isfinite(best)
    t = best[valid] + rng.normal(0.0, 0.01, size=int(valid.sum())).astype(np.float32)
    hit_ids = ids[valid]
    on_box = hit_ids >= 0
    gxy = (ox + t * dx[valid], oy + t * dy[valid])
    mat = scenery.ground.lookup(*gxy)
    labels = np.where(on_box, boxes.lseg[np.maximum(hit_ids, 0)], _MAT_LSEG[mat]).astype(np.uint8)
    intensity = np.where(on_box, _STYLE_INTENSITY[boxes.style[np.maximum(hit_ids, 0)]], _MAT_INTENSITY[mat])
    intensity = np.clip(intensity + rng.normal(0.0, 2.0, size=len(t)), 0.0, 255.0)
    ring = np.broadcast_to(np.arange(best.shape[0])[:, None], best.shape)[valid]
    xyz = t[:, None] * lidar.dirs[valid]
    points = np.column_stack([xyz, intensity, ring]).astype(np.float32)
    counts = np.bincount(hit_ids[on_box], minlength=len(boxes))
    return points, labels, counts


def _lidar_job(lidar: _Lidar, global_T_ego, scenery: _Scenery, boxes: _Boxes, seed_parts: tuple, files: dict):
    """Cast one sweep and write the .pcd.bin and lidarseg .bin; returns points per box."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        points, labels, counts = _cast_lidar(lidar, global_T_ego, scenery, boxes, _rng(*seed_parts))
    _write(files["pcd"], points.tobytes())
    _write(files["lidarseg"], labels.tobytes())
    return counts
