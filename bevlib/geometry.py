"""Frames, rigid transforms and pinhole projection.

Conventions (nuScenes): the *global* frame is the map frame (x east, y north, z up, metres); the
*ego* frame sits on the ground below the rear axle (x forward, y left, z up); a *sensor* frame for a
camera follows OpenCV (x right, y down, z forward). A transform ``A_T_B`` is a 4x4 homogeneous
matrix (float64) that maps points expressed in frame B into frame A: ``p_A = A_T_B @ p_B``.
So ``ego_T_cam`` is nuScenes' ``calibrated_sensor`` record and ``global_T_ego`` its ``ego_pose``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from pyquaternion import Quaternion


def transform_from(translation: Sequence[float], rotation: Sequence[float]) -> np.ndarray:
    """4x4 ``A_T_B`` from a nuScenes record's ``translation`` (metres) and ``rotation``
    (unit quaternion ``w, x, y, z``), e.g. ``ego_T_cam`` from ``calibrated_sensor``.

    Returns: (4, 4) float64.
    Raises: ValueError if the quaternion is not of length 4 or has zero norm.
    """
    q = np.asarray(rotation, dtype=np.float64)
    if q.shape != (4,) or not np.isfinite(q).all() or np.linalg.norm(q) == 0:
        raise ValueError(f"rotation must be a finite non-zero quaternion (w, x, y, z), got {rotation!r}")
    T = np.eye(4)
    T[:3, :3] = Quaternion(q / np.linalg.norm(q)).rotation_matrix
    T[:3, 3] = np.asarray(translation, dtype=np.float64)
    return T


def invert(A_T_B: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 transform, ``B_T_A``, without a general matrix inverse.

    Shapes: (..., 4, 4) -> (..., 4, 4), numpy float64.
    """
    R = A_T_B[..., :3, :3]
    t = A_T_B[..., :3, 3:]
    out = np.zeros_like(A_T_B)
    Rt = np.swapaxes(R, -1, -2)
    out[..., :3, :3] = Rt
    out[..., :3, 3:] = -Rt @ t
    out[..., 3, 3] = 1.0
    return out


def apply(A_T_B: np.ndarray, points_B: np.ndarray) -> np.ndarray:
    """Map points (N, 3) expressed in frame B into frame A. Returns (N, 3) float64."""
    p = np.asarray(points_B, dtype=np.float64)
    return p @ A_T_B[:3, :3].T + A_T_B[:3, 3]


def project(K: np.ndarray, cam_T_X: np.ndarray, points_X: np.ndarray, min_depth: float = 1e-3):
    """Pinhole projection of points in frame X into a camera (OpenCV, pixel centres at integers).

    Args:
        K: (3, 3) intrinsics in pixels.
        cam_T_X: (4, 4) maps frame X (e.g. ego or global) into the camera frame.
        points_X: (N, 3) metres in frame X.
        min_depth: points with camera depth below this (metres) are flagged invalid.
    Returns:
        uv (N, 2) pixel coordinates (column, row), depth (N,) metres along the optical axis, and
        in_front (N,) bool. Agrees with nuscenes-devkit's ``view_points(..., normalize=True)``.
    """
    p_cam = apply(cam_T_X, points_X)
    depth = p_cam[:, 2]
    in_front = depth > min_depth
    uvw = p_cam @ np.asarray(K, dtype=np.float64).T
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = uvw[:, :2] / uvw[:, 2:3]
    return uv, depth, in_front


def unproject(K: np.ndarray, X_T_cam: np.ndarray, uv: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Inverse of :func:`project`: pixels (N, 2) at depths (N,) metres -> points (N, 3) in frame X."""
    uv1 = np.concatenate([np.asarray(uv, np.float64), np.ones((len(uv), 1))], axis=1)
    rays = uv1 @ np.linalg.inv(K).T
    return apply(X_T_cam, rays * np.asarray(depth, np.float64)[:, None])


def scale_intrinsics(K: np.ndarray, src_wh: tuple[int, int], dst_wh: tuple[int, int]) -> np.ndarray:
    """Intrinsics for an image resized from ``src_wh`` to ``dst_wh`` (width, height in pixels).

    Pixel centres sit at integer coordinates, so the principal point maps as
    ``c' = (c + 0.5) * s - 0.5`` (not ``c * s``): the pixel grid edges, not centres, are scaled.
    """
    sx = dst_wh[0] / src_wh[0]
    sy = dst_wh[1] / src_wh[1]
    K2 = np.array(K, dtype=np.float64, copy=True)
    K2[0, 0] *= sx
    K2[0, 1] *= sx
    K2[1, 1] *= sy
    K2[0, 2] = (K2[0, 2] + 0.5) * sx - 0.5
    K2[1, 2] = (K2[1, 2] + 0.5) * sy - 0.5
    return K2


def se2(dx: float, dy: float, dphi: float) -> np.ndarray:
    """4x4 planar rigid transform: rotation ``dphi`` (rad, about z) then translation (dx, dy) m."""
    c, s = np.cos(dphi), np.sin(dphi)
    T = np.eye(4)
    T[:2, :2] = [[c, -s], [s, c]]
    T[:2, 3] = [dx, dy]
    return T


def ego_motion(global_T_ego_prev: np.ndarray, global_T_ego_curr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ego motion between the previous and the current keyframe (busch2026 Alg. 1 input).

    Returns:
        prev_T_curr: (4, 4) maps points of the current ego frame into the previous ego frame.
        (dx, dy, dphi): (3,) float64, the planar part of ``prev_T_curr``: where the current ego
        origin lies in the previous ego frame (metres) and its yaw change (radians).
    """
    prev_T_curr = invert(global_T_ego_prev) @ global_T_ego_curr
    dphi = np.arctan2(prev_T_curr[1, 0], prev_T_curr[0, 0])
    return prev_T_curr, np.array([prev_T_curr[0, 3], prev_T_curr[1, 3], dphi])


def to_torch(a, dtype=torch.float32) -> torch.Tensor:
    """numpy / list -> torch tensor of ``dtype`` (a tensor is cast, not copied when possible)."""
    if isinstance(a, torch.Tensor):
        return a.to(dtype)
    return torch.as_tensor(np.asarray(a), dtype=dtype)
