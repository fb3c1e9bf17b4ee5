"""Ray-casting primitives shared by the cameras (:mod:`.camera`) and the LiDAR (:mod:`.lidar`):
ray/box intersection, a thread-independent rotation, and the per-location data both sample."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .roads import _Ground
from .scenery import _Boxes

_NEAR = 0.05                  # m; hits nearer than this are ignored (also the cameras' near plane)


def _slab(ox, oy, oz, dx, dy, dz, b: _Boxes, k: int):
    """Ray/box intersection of rays o + t d (world frame; o scalars, d float32 arrays of any shape)
    with box ``k`` of ``b``, computed in the box frame (origin at the box centre, x along its yaw).

    Returns (t_near, hit, lo, ld, half): entry ray parameter (d's shape), hit mask (entry exists and
    lies beyond :data:`_NEAR`), the ray origin (3 floats) and directions (3 arrays) in the box frame,
    and the box half extents (3 floats, metres). The local hit point is ``lo + t_near * ld``."""
    c, s = math.cos(b.yaw[k]), math.sin(b.yaw[k])
    rx, ry = ox - b.cx[k], oy - b.cy[k]
    zc = 0.5 * (b.z0[k] + b.z1[k])
    lo = (float(c * rx + s * ry), float(-s * rx + c * ry), float(oz - zc))
    ld = (c * dx + s * dy, -s * dx + c * dy, dz)
    half = (float(b.hl[k]), float(b.hw[k]), float(0.5 * (b.z1[k] - b.z0[k])))
    t_near = t_far = None
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for o_, d_, h_ in zip(lo, ld, half):
            inv = 1.0 / d_
            ta, tb = (-h_ - o_) * inv, (h_ - o_) * inv
            lo_t, hi_t = np.minimum(ta, tb), np.maximum(ta, tb)
            t_near = lo_t if t_near is None else np.maximum(t_near, lo_t)
            t_far = hi_t if t_far is None else np.minimum(t_far, hi_t)
    hit = (t_near <= t_far) & (t_near > _NEAR)
    return t_near, hit, lo, ld, half


def _rotate(R: np.ndarray, x, y, z) -> tuple:
    """R @ (x, y, z) for float32 component arrays, written out elementwise: unlike a BLAS matmul its
    rounding cannot depend on threading, which keeps the output byte-identical."""
    return tuple((float(R[i, 0]) * x + float(R[i, 1]) * y + float(R[i, 2]) * z).astype(np.float32) for i in range(3))


@dataclass
class _Scenery:
    """Everything about one location that rendering needs (read-only, shared between threads)."""
    ground: _Ground
    fine: np.ndarray              # (256, 256) float32 tileable noise, 5 cm texels: fine surface grain
    coarse: np.ndarray            # (256, 256) float32 tileable noise, 0.8 m texels: large-scale blotches
