"""Superpoints: LiDAR points grouped by the camera superpixel they project into, and pooling.

SLidR (Sautier et al., CVPR 2022, Sec. 3) and chen2024 CSC (Sec. 3.2, "Superpixel & Superpoint
Embeddings") project each point into the calibrated surround cameras; the points landing in
superpixel ``q`` form superpoint ``q``, and superpixel / superpoint embeddings are the average of
the pixel / point features inside (:func:`pool`). Points seen by no camera belong to no superpoint
(id -1) and are left out of the 2D-3D losses.

Pixel convention (as :func:`bevlib.data.fields.project_depth`): pixel centres at integer
coordinates (OpenCV); a point at ``(u, v)`` lands on pixel ``(floor(u + 0.5), floor(v + 0.5))`` and
is seen when that pixel is inside the image and its depth along the optical axis exceeds
``min_depth`` (1 m, the devkit's ``map_pointcloud_to_image`` default: nearer returns hit the car).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import geometry as geo


@dataclass
class Superpoints:
    """Output of :func:`superpoints` (N cameras, P points; numpy arrays).

    Attributes:
        camera: (P,) int64 index of the camera a point is assigned to, -1 where no camera sees it.
        pixel_id: (P,) int64 superpixel id in that camera's map, -1 where unseen.
        superpoint: (P,) int64 global superpoint id ``offsets[camera] + pixel_id``, -1 where unseen.
        uv: (P, 2) float64 pixel coordinates (column, row) in the assigned camera, NaN where unseen.
        visible: (N, P) bool, every camera that sees each point (before the first-camera choice).
        uv_cams: (N, P, 2) float64 projection into every camera (meaningful where ``visible``).
        offsets: (N + 1,) int64; camera ``c``'s superpixels are global ids ``offsets[c]:offsets[c+1]``.
        n_superpoints: int, ``offsets[-1]`` (= total superpixels of the N maps; some may hold no point).
    """

    camera: np.ndarray
    pixel_id: np.ndarray
    superpoint: np.ndarray
    uv: np.ndarray
    visible: np.ndarray
    uv_cams: np.ndarray
    offsets: np.ndarray
    n_superpoints: int


def superpoints(points_ego, superpixel_ids, K, ego_T_cam, image_hw: tuple[int, int],
                min_depth: float = 1.0) -> Superpoints:
    """Assign LiDAR points to camera superpixels (the 2D-3D association of SLidR / CSC).

    A point seen by several cameras (the overlap of neighbouring fields of view) goes to the
    **first** of them in the given camera order (:data:`bevlib.data.nuscenes_data.CAMERAS` for a
    keyframe: FRONT_LEFT, FRONT, FRONT_RIGHT, BACK_LEFT, BACK, BACK_RIGHT), so each point is in at
    most one superpoint, as in SLidR where each point is paired with one image.

    Args:
        points_ego: (P, 3) metres in the ego frame (``lidar_points`` of the ``lidar`` field),
            numpy or torch, any float dtype.
        superpixel_ids: N maps (H, W) of int ids 0..S_c-1 (a list or an (N, H, W) array), e.g.
            from :func:`bevlib.data.superpixels.slic_superpixels`.
        K: (N, 3, 3) intrinsics in pixels at ``image_hw``.
        ego_T_cam: (N, 4, 4) maps camera-frame (OpenCV) points into the ego frame.
        image_hw: (H, W) pixels of the superpixel maps.
        min_depth: metres along the optical axis a point must exceed to be seen.
    Returns: :class:`Superpoints`; ``offsets[c] = sum_{c' < c} S_c'`` with ``S_c = max id + 1``.
    Raises: ValueError naming ``points_ego``, ``superpixel_ids``, ``K``, ``ego_T_cam``,
        ``image_hw`` or ``min_depth`` on a bad shape, id or value.
    Source: SLidR Sec. 3.1 / chen2024 Sec. 3.2 (point-to-pixel projection with the calibration);
        projection by :func:`bevlib.geometry.project_t` (float64).
    """
    pts = geo.to_torch(points_ego, torch.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points_ego must be (P, 3), got {tuple(pts.shape)}")
    H, W = (int(v) for v in image_hw)
    if H < 1 or W < 1:
        raise ValueError(f"image_hw must be positive (H, W), got {image_hw!r}")
    maps = [np.asarray(m) for m in superpixel_ids]
    N = len(maps)
    Kt, Tt = geo.to_torch(K, torch.float64), geo.to_torch(ego_T_cam, torch.float64)
    if Kt.shape != (N, 3, 3):
        raise ValueError(f"K must be ({N}, 3, 3) for {N} superpixel maps, got {tuple(Kt.shape)}")
    if Tt.shape != (N, 4, 4):
        raise ValueError(f"ego_T_cam must be ({N}, 4, 4) for {N} superpixel maps, got {tuple(Tt.shape)}")
    for c, m in enumerate(maps):
        if m.shape != (H, W) or not np.issubdtype(m.dtype, np.integer) or (m.size and m.min() < 0):
            raise ValueError(f"superpixel_ids[{c}] must be an (H, W) = {(H, W)} map of ids >= 0, got {m.dtype} {m.shape}")
    if not min_depth >= 0:
        raise ValueError(f"min_depth must be >= 0 m, got {min_depth!r}")
    P = pts.shape[0]
    sizes = np.array([int(m.max()) + 1 if m.size else 0 for m in maps], np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    uv, depth, front = geo.project_t(Kt, geo.invert_t(Tt), pts[None], min_depth=min_depth)   # (N, P, 2), (N, P)
    px = torch.floor(uv + 0.5)
    inside = front & (px[..., 0] >= 0) & (px[..., 0] < W) & (px[..., 1] >= 0) & (px[..., 1] < H)
    visible = inside.numpy()
    uv_np = uv.numpy()

    camera = np.full(P, -1, np.int64)
    if N:
        any_cam = visible.any(axis=0)
        camera[any_cam] = visible.argmax(axis=0)[any_cam]     # argmax of bool = first True = first camera
    seen = camera >= 0
    pixel_id = np.full(P, -1, np.int64)
    uv_sel = np.full((P, 2), np.nan)
    idx = np.nonzero(seen)[0]
    if len(idx):
        cam = camera[idx]
        uv_sel[idx] = uv_np[cam, idx]
        pxi = px.numpy()[cam, idx].astype(np.int64)
        stacked = np.stack(maps) if N else np.zeros((0, H, W), np.int64)
        pixel_id[idx] = stacked[cam, pxi[:, 1], pxi[:, 0]]
    superpoint = np.where(seen, offsets[np.maximum(camera, 0)] + pixel_id, -1)
    return Superpoints(camera=camera, pixel_id=pixel_id, superpoint=superpoint, uv=uv_sel, visible=visible,
                       uv_cams=uv_np, offsets=offsets, n_superpoints=int(offsets[-1]))


def pool(features: torch.Tensor, ids, n: int, reduce: str = "mean") -> tuple[torch.Tensor, torch.Tensor]:
    """Pool per-point (or per-pixel) features into superpoints (superpixels), differentiably.

    Args:
        features: (P, C) float tensor.
        ids: (P,) int group of each row, -1 = ignore (e.g. points seen by no camera), numpy or torch.
        n: number of groups; output row ``g`` pools the rows with ``ids == g``.
        reduce: ``"mean"`` (SLidR / CSC average pooling), ``"sum"`` or ``"amax"``.
    Returns: pooled (n, C) in ``features``' dtype and device (0 for an empty group; gradients flow
        to the pooled rows: 1/count each for ``mean``); counts (n,) int64.
    Raises: ValueError naming ``features``, ``ids``, ``n`` or ``reduce``.
    Source: chen2024 Sec. 3.2 ("averaging pooling the pixel and point features");
        ``torch.Tensor.scatter_reduce`` (``include_self=False``).
    """
    if not isinstance(features, torch.Tensor) or features.ndim != 2:
        raise ValueError(f"features must be a (P, C) tensor, got {type(features).__name__} "
                         f"{tuple(getattr(features, 'shape', ()))}")
    if reduce not in ("mean", "sum", "amax"):
        raise ValueError(f"reduce must be 'mean', 'sum' or 'amax', got {reduce!r}")
    if not (isinstance(n, (int, np.integer)) and n >= 0):
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    ids_t = torch.as_tensor(np.asarray(ids) if not isinstance(ids, torch.Tensor) else ids).to(
        device=features.device, dtype=torch.int64)
    if ids_t.shape != (features.shape[0],):
        raise ValueError(f"ids must be ({features.shape[0]},) for features {tuple(features.shape)}, got {tuple(ids_t.shape)}")
    if ids_t.numel() and (ids_t.min() < -1 or ids_t.max() >= n):
        raise ValueError(f"ids must lie in -1..{n - 1}, got range {int(ids_t.min())}..{int(ids_t.max())}")
    keep = ids_t >= 0
    f, g = features[keep], ids_t[keep]
    counts = torch.bincount(g, minlength=n)
    index = g[:, None].expand(-1, features.shape[1])
    out = torch.zeros(n, features.shape[1], dtype=features.dtype, device=features.device)
    # include_self=False: the zero init must not enter a mean (or win a max over negative features)
    out = out.scatter_reduce(0, index, f, reduce=reduce, include_self=False)
    return out, counts


def id_colours(ids) -> np.ndarray:
    """A fixed pseudo-random RGB colour per integer id (superpoints, superpixels, clusters).

    Args:
        ids: (N,) int ids (any shape is flattened), numpy, torch or a sequence.
    Returns: (N, 3) float64 RGB in [0, 1]; the same id always gets the same colour; ids < 0
        (e.g. points seen by no camera) get grey 0.6. Hues come from matplotlib's 256-entry
        ``hsv`` colormap, so ids 0..148 get distinct colours and larger id sets repeat some.
    """
    from matplotlib import colormaps

    ids = np.asarray(ids).reshape(-1).astype(np.int64)
    # golden-ratio hues: neighbouring ids get distant colours
    hue = (ids.astype(np.float64) * 0.6180339887) % 1.0
    rgb = colormaps["hsv"](hue)[:, :3].astype(np.float64)
    rgb[ids < 0] = 0.6
    return rgb


def superpoint_figure(image, superpixel_ids, uv, superpoint_ids, path, title: str | None = None) -> Path:
    """Save a PNG of one camera: the image with its superpixel boundaries (white) and the LiDAR
    points projected into it, coloured by superpoint (a fixed pseudo-random colour per id, :func:`id_colours`).

    Args:
        image: (H, W, 3) uint8 RGB. superpixel_ids: (H, W) int ids.
        uv: (M, 2) pixel coordinates (column, row) of the points to draw.
        superpoint_ids: (M,) int ids of those points. path: output file (.png).
    Returns: the written path (atomic write, :func:`bevlib.io.atomic_savefig`).
    Raises: ValueError naming ``image``, ``superpixel_ids``, ``uv`` or ``superpoint_ids`` on a shape mismatch.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..io import atomic_savefig

    image, sp = np.asarray(image), np.asarray(superpixel_ids)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got {image.shape}")
    if sp.shape != image.shape[:2]:
        raise ValueError(f"superpixel_ids must be {image.shape[:2]}, got {sp.shape}")
    uv, ids = np.asarray(uv, np.float64).reshape(-1, 2), np.asarray(superpoint_ids).reshape(-1)
    if len(uv) != len(ids):
        raise ValueError(f"uv ({len(uv)}) and superpoint_ids ({len(ids)}) must have the same length")
    edge = np.zeros(sp.shape, bool)
    edge[:, 1:] |= sp[:, 1:] != sp[:, :-1]
    edge[1:, :] |= sp[1:, :] != sp[:-1, :]
    shown = image.copy()
    shown[edge] = 255
    # a bare Figure on the Agg canvas: no pyplot state, no backend switch for an open notebook
    fig = Figure(figsize=(image.shape[1] / 100, image.shape[0] / 100), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.imshow(shown)
    ax.scatter(uv[:, 0], uv[:, 1], c=id_colours(ids), s=2, linewidths=0)
    ax.set_xlim(-0.5, image.shape[1] - 0.5)
    ax.set_ylim(image.shape[0] - 0.5, -0.5)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=8)
    return atomic_savefig(fig, path, bbox_inches="tight")
