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


# --- torch, batched and differentiable --------------------------------------------------------
# Same conventions as the numpy functions above (``A_T_B`` maps frame B into frame A, cameras are
# OpenCV); leading batch axes broadcast like torch.matmul; any float dtype and device.


def _common(*ts: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Cast tensors to their promoted float dtype on the first one's device."""
    dtype = ts[0].dtype
    for t in ts[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    return tuple(t.to(dtype=dtype, device=ts[0].device) for t in ts)


def invert_t(A_T_B: torch.Tensor) -> torch.Tensor:
    """Torch :func:`invert`: inverse of rigid transforms, ``B_T_A = [R^T, -R^T t; 0, 1]``.

    Args:
        A_T_B: (..., 4, 4) float rigid transforms (rotation + translation; not checked).
    Returns: (..., 4, 4) same dtype and device; differentiable.
    """
    R = A_T_B[..., :3, :3]
    t = A_T_B[..., :3, 3:]
    Rt = R.transpose(-1, -2)
    top = torch.cat([Rt, -Rt @ t], dim=-1)                           # (..., 3, 4)
    bottom = torch.zeros_like(A_T_B[..., 3:, :])
    bottom[..., 3] = 1.0
    return torch.cat([top, bottom], dim=-2)


def apply_t(A_T_B: torch.Tensor, points_B: torch.Tensor) -> torch.Tensor:
    """Torch :func:`apply`: map points expressed in frame B into frame A, ``p_A = R p_B + t``.

    Args:
        A_T_B: (..., 4, 4) transforms (only the top 3x4 rows are used).
        points_B: (..., N, 3) points in frame B (metres); batch axes broadcast with ``A_T_B``'s.
    Returns: (..., N, 3) in frame A, in the promoted dtype of both inputs, on ``A_T_B``'s device;
        differentiable in both.
    Raises: ValueError on wrong trailing shapes.
    """
    if A_T_B.shape[-2:] != (4, 4) or points_B.shape[-1] != 3:
        raise ValueError(f"need A_T_B (..., 4, 4) and points (..., N, 3), got {tuple(A_T_B.shape)} and "
                         f"{tuple(points_B.shape)}")
    T, p = _common(A_T_B, points_B)
    return p @ T[..., :3, :3].transpose(-1, -2) + T[..., None, :3, 3]


def project_t(K: torch.Tensor, cam_T_X: torch.Tensor, points_X: torch.Tensor, min_depth: float = 1e-3):
    """Torch :func:`project`: pinhole projection of points in frame X into cameras (OpenCV, pixel
    centres at integers); agrees with nuscenes-devkit's ``view_points(..., normalize=True)``.

    Args:
        K: (..., 3, 3) intrinsics in pixels.
        cam_T_X: (..., 4, 4) maps frame X (e.g. ego, LiDAR or global) into the camera frame.
        points_X: (..., N, 3) metres in frame X; batch axes of all three broadcast.
        min_depth: points with camera depth at or below this (metres) are flagged not ``in_front``.
    Returns:
        uv (..., N, 2) pixel coordinates (column, row), depth (..., N) metres along the optical
        axis, in_front (..., N) bool. Float outputs in the promoted dtype; differentiable. For a
        point with ``|z| < 1e-12`` (z = third row of K @ p_cam, the depth for a standard K) the
        division uses ±1e-12 instead of z, so uv stays finite and gradients stay free of NaN;
        points behind the camera project mirrored (as the numpy version and the devkit), so mask
        uv by ``in_front``.
    """
    Kf, T, p = _common(K, cam_T_X, points_X)
    p_cam = apply_t(T, p)
    depth = p_cam[..., 2]
    in_front = depth > min_depth
    uvw = p_cam @ Kf.transpose(-1, -2)
    w = uvw[..., 2:3]
    eps = 1e-12
    w = torch.where(w.abs() < eps, torch.where(w < 0, -eps, eps).to(w), w)
    return uvw[..., :2] / w, depth, in_front


def unproject_t(K: torch.Tensor, X_T_cam: torch.Tensor, uv: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """Torch :func:`unproject`: pixels at depths -> points in frame X (the frustum points of LSS).

    Args:
        K: (..., 3, 3) intrinsics in pixels.
        X_T_cam: (..., 4, 4) camera frame (OpenCV) -> frame X.
        uv: (..., N, 2) pixel coordinates (column, row).
        depth: (..., N) metres along the optical axis.
    Returns: (..., N, 3) metres in frame X, promoted dtype; differentiable.
    """
    Kf, T, uv_, d = _common(K, X_T_cam, uv, depth)
    uv1 = torch.cat([uv_, torch.ones_like(uv_[..., :1])], dim=-1)
    rays = uv1 @ torch.linalg.inv(Kf).transpose(-1, -2)
    return apply_t(T, rays * d[..., None])
