"""Pure geometry of the viewer: BEV cells, camera frustums on the ground, where a BEV cell or a
BEV map lands in the cameras, LiDAR in a camera.

Frames: ego (x forward, y left, z up, metres, origin on the ground below the rear axle); pixels
(u = column, v = row, centres at integers, OpenCV) at the display size of the camera images.
"""
from __future__ import annotations

import numpy as np
import torch

from .. import geometry as geo
from ..bev import BEVGrid
from ..classes import ALL_CLASSES, IGNORE, NUM_ALL
from ..render import render_bev

#: Most LiDAR points drawn per camera: enough to read the scene; plotly's SVG scatter slows down
#: beyond a few thousand.
MAX_LIDAR_PER_CAMERA = 2500


def class_name(c: int) -> str:
    """Name of a class index (:data:`bevlib.classes.ALL_CLASSES`); ``"unlabelled"`` for IGNORE."""
    c = int(c)
    if c == IGNORE:
        return "unlabelled"
    return ALL_CLASSES[c] if 0 <= c < NUM_ALL else f"class {c}"


def cell_at(grid: BEVGrid, x: float, y: float) -> tuple[int, int] | None:
    """The BEV cell (row, col) containing ego point (x, y) metres, or None outside the grid."""
    if not bool(grid.contains(np.array([x, y], np.float64))):
        return None
    r, c = grid.xy_to_rowcol(np.array([x, y], np.float64))
    return int(np.clip(np.round(r), 0, grid.H - 1)), int(np.clip(np.round(c), 0, grid.W - 1))


def cell_center(grid: BEVGrid, cell: tuple[int, int]) -> np.ndarray:
    """Ego (x, y) metres (2,) float64 of a cell centre.

    Raises: IndexError for a cell outside the grid.
    """
    r, c = int(cell[0]), int(cell[1])
    if not (0 <= r < grid.H and 0 <= c < grid.W):
        raise IndexError(f"BEV cell {(r, c)} is outside the {grid.H} x {grid.W} grid")
    return grid.cell_centers()[r, c]


def resample_labels(labels: np.ndarray, src: BEVGrid, dst: BEVGrid) -> np.ndarray:
    """Nearest-neighbour resampling of a BEV class map from grid ``src`` to grid ``dst``.

    Args: labels (src.H, src.W) integer. Returns (dst.H, dst.W) uint8, IGNORE where a ``dst``
    cell centre lies outside ``src``'s extent.
    """
    if src == dst:
        return labels.astype(np.uint8)
    xy = dst.cell_centers()
    rc = np.round(src.xy_to_rowcol(xy)).astype(np.int64)
    ok = src.contains(xy) & (rc[..., 0] >= 0) & (rc[..., 0] < src.H) & (rc[..., 1] >= 0) & (rc[..., 1] < src.W)
    out = np.full((dst.H, dst.W), IGNORE, np.uint8)
    out[ok] = labels[rc[..., 0][ok], rc[..., 1][ok]]
    return out


def _ground_hit(o: np.ndarray, d: np.ndarray):
    """Where the ray o + s d (s > 0, ego frame) meets z = 0, as (2,) x, y; None when it does not
    (the ray does not go down, or starts below the ground)."""
    return None if d[2] >= -1e-9 or o[2] <= 0 else o[:2] - o[2] / d[2] * d[:2]


def frustum_footprints(K: np.ndarray, ego_T_cam: np.ndarray, image_wh: tuple[int, int], grid: BEVGrid,
                       far_m: float = 1000.0) -> list:
    """Ground footprints of camera frustums, clipped to the BEV extent.

    The footprint is the part of the ground plane z = 0 (ego frame) inside the camera's view: its
    near edge joins the ground hits of the two bottom image corners; its sides lie along the lines
    where the image's left and right edge planes (through the optical centre) cut the ground, out to
    the ground hits of the top corners, or ``far_m`` metres when the top of the image is above the
    horizon. The polygon is then clipped to the grid's rectangle.

    Args:
        K: (N, 3, 3) intrinsics in pixels for images of ``image_wh`` = (w, h).
        ego_T_cam: (N, 4, 4) camera -> ego (metres).
        grid: the BEV extent to clip to.
    Returns: list of N items, each a (P, 2) float64 array of ego (x, y) metres (a closed polygon,
        first point repeated last) or None when the camera sees no ground inside the grid.
    """
    import shapely

    w, h = image_wh
    extent = shapely.box(grid.x_min, grid.y_min, grid.x_max, grid.y_max)
    out = []
    for Kn, T in zip(np.asarray(K, np.float64), np.asarray(ego_T_cam, np.float64)):
        M, o = T[:3, :3] @ np.linalg.inv(Kn), T[:3, 3]   # pixel (u, v, 1) -> ray direction in ego
        sides = []
        # Pixel *edges* (-0.5, w - 0.5): the footprint covers the whole image, not just pixel centres.
        for u in (-0.5, w - 0.5):
            top, bottom = M @ [u, -0.5, 1.0], M @ [u, h - 0.5, 1.0]
            near = _ground_hit(o, bottom)
            if near is None:   # the whole edge looks above the horizon
                sides.append(None)
                continue
            far = _ground_hit(o, top)
            if far is None:
                n = np.cross(top, bottom)              # normal of the edge plane
                d = np.cross(n, [0.0, 0.0, 1.0])[:2]  # that plane's trace on the ground
                d /= np.linalg.norm(d) + 1e-12
                if d @ (near - o[:2]) < 0:             # along the trace, away from the camera
                    d = -d
                far = near + far_m * d
            sides.append((near, far))
        if any(s is None for s in sides):
            out.append(None)
            continue
        (nl, fl), (nr, fr) = sides
        poly = shapely.Polygon([nl, fl, fr, nr]).buffer(0).intersection(extent)
        if poly.is_empty or poly.area <= 0:
            out.append(None)
            continue
        if poly.geom_type != "Polygon":   # clipping can split a sliver off: keep the main part
            poly = max(poly.geoms, key=lambda g: g.area)
        out.append(np.asarray(poly.exterior.coords, np.float64))
    return out


def pick_projections(K: np.ndarray, ego_T_cam: np.ndarray, image_wh: tuple[int, int], grid: BEVGrid,
                     cell: tuple[int, int]) -> list:
    """Where a BEV cell centre (on the ground, z = 0) lands in each camera.

    Uses :func:`bevlib.geometry.project` with ``cam_T_ego = invert(ego_T_cam)``.

    Args:
        K: (N, 3, 3) display-size intrinsics; ego_T_cam: (N, 4, 4); image_wh: (w, h) pixels.
        cell: (row, col) on ``grid``.
    Returns: list of N items: (u, v) float pixel coordinates (column, row; centres at integers)
        when the point is in front of the camera and inside the image, else None.
    Raises: IndexError for a cell outside the grid.
    """
    x, y = cell_center(grid, cell)
    p = np.array([[x, y, 0.0]])
    w, h = image_wh
    out = []
    for Kn, T in zip(np.asarray(K, np.float64), np.asarray(ego_T_cam, np.float64)):
        uv, _, front = geo.project(Kn, geo.invert(T), p)
        u, v = float(uv[0, 0]), float(uv[0, 1])
        inside = bool(front[0]) and -0.5 <= u < w - 0.5 and -0.5 <= v < h - 0.5
        out.append((u, v) if inside else None)
    return out


def render_labels_to_cameras(labels: np.ndarray, K: np.ndarray, ego_T_cam: np.ndarray, image_wh: tuple[int, int],
                             grid: BEVGrid) -> np.ndarray:
    """Render a BEV class map into cameras with :func:`bevlib.render.render_bev`.

    The class map becomes one-hot channels (IGNORE cells all-zero), is rendered bilinearly, and each
    pixel takes the class of the largest rendered channel.

    Args:
        labels: (H, W) integer class map on ``grid``.
        K: (N, 3, 3) intrinsics for images of ``image_wh`` = (w, h); ego_T_cam: (N, 4, 4).
    Returns: (N, h, w) uint8: the class seen at each pixel, IGNORE where the pixel's ray does not
        hit the ground inside the grid (or hits only IGNORE cells).
    """
    lab = torch.from_numpy(np.asarray(labels).astype(np.int64))
    known = lab != IGNORE
    C = int(lab[known].max()) + 1 if bool(known.any()) else 1
    onehot = torch.zeros(1, C, *lab.shape)
    onehot[0].scatter_(0, lab.clamp(max=C - 1)[None], known[None].float())
    w, h = image_wh
    out, valid = render_bev(onehot, np.asarray(K)[None], np.asarray(ego_T_cam)[None], (h, w), grid)
    mass, cls = out[0].sum(1), out[0].argmax(1)
    res = torch.where(valid[0] & (mass > 0.5), cls, torch.full_like(cls, IGNORE))
    return res.numpy().astype(np.uint8)


def render_values_to_cameras(values: np.ndarray, K: np.ndarray, ego_T_cam: np.ndarray, image_wh: tuple[int, int],
                             grid: BEVGrid) -> np.ndarray:
    """Render a continuous BEV map (a heatmap) into cameras with :func:`bevlib.render.render_bev`.

    NaN cells count as missing: the value at a pixel is the bilinear average of the finite cells
    around its ground hit, NaN when there are none.

    Args:
        values: (H, W) float map on ``grid`` (any unit; NaN = no value).
        K: (N, 3, 3) intrinsics for images of ``image_wh`` = (w, h); ego_T_cam: (N, 4, 4).
    Returns: (N, h, w) float32, NaN where the pixel's ray does not hit the ground inside the grid
        or hits only NaN cells.
    """
    v = torch.from_numpy(np.asarray(values, np.float32))
    finite = torch.isfinite(v)
    # Value and weight channels: dividing by the rendered weight keeps NaN cells out of the average.
    chans = torch.stack([torch.where(finite, v, torch.zeros_like(v)), finite.float()])[None]
    w, h = image_wh
    out, valid = render_bev(chans, np.asarray(K)[None], np.asarray(ego_T_cam)[None], (h, w), grid)
    num, den = out[0, :, 0], out[0, :, 1]
    ok = valid[0] & (den > 1e-3)
    res = torch.where(ok, num / den.clamp(min=1e-3), torch.full_like(num, float("nan")))
    return res.numpy().astype(np.float32)


def blend_labels(image: np.ndarray, labels: np.ndarray, alpha: float) -> np.ndarray:
    """Alpha-blend class colours over an image where a class other than background / IGNORE is.

    image (h, w, 3) uint8 or float, labels (h, w) integer -> (h, w, 3) float32.
    """
    from ..viz import colorize

    img = np.asarray(image, np.float32).copy()
    m = (labels != 0) & (labels != IGNORE)
    img[m] = (1.0 - alpha) * img[m] + alpha * colorize(labels[m]).astype(np.float32)
    return img


def outline(valid: np.ndarray) -> np.ndarray:
    """Border pixels of a boolean mask (h, w) -> (h, w) bool: e.g. the edge of where a rendered BEV
    covers an image."""
    inner = valid.copy()
    inner[1:] &= valid[:-1]
    inner[:-1] &= valid[1:]
    inner[:, 1:] &= valid[:, :-1]
    inner[:, :-1] &= valid[:, 1:]
    return valid & ~inner


def bev_extent_border(K: np.ndarray, ego_T_cam: np.ndarray, image_wh: tuple[int, int], grid: BEVGrid) -> np.ndarray:
    """Pixels on the border of where the BEV extent lands in each camera: (N, h, w) bool."""
    _, valid = render_bev(torch.ones(1, 1, grid.H, grid.W), np.asarray(K)[None], np.asarray(ego_T_cam)[None],
                          tuple(image_wh)[::-1], grid)
    return np.stack([outline(v) for v in valid[0].numpy()])


def project_points(K: np.ndarray, ego_T_cam: np.ndarray, image_wh: tuple[int, int], xyz: np.ndarray,
                   max_points: int | None = None, min_depth: float = 0.5):
    """Ego-frame points projected into one camera, keeping those in front and inside the image.

    Args:
        K: (3, 3) display-size intrinsics; ego_T_cam: (4, 4); image_wh: (w, h) pixels.
        xyz: (M, 3) points in the ego frame, metres.
        max_points: keep at most this many (a deterministic stride keeps the pattern even).
        min_depth: nearest depth kept, metres along the optical axis.
    Returns: (uv (P, 2) float64 pixels, depth (P,) float64 metres, idx (P,) int64 indices into ``xyz``).
    """
    w, h = image_wh
    uv, depth, front = geo.project(K, geo.invert(ego_T_cam), xyz)
    ok = front & (depth > min_depth) & (uv[:, 0] >= -0.5) & (uv[:, 0] < w - 0.5) & (uv[:, 1] >= -0.5) \
        & (uv[:, 1] < h - 0.5)
    idx = np.flatnonzero(ok)
    if max_points is not None and len(idx) > max_points:
        idx = idx[np.linspace(0, len(idx) - 1, max_points).astype(np.int64)]
    return uv[idx], depth[idx], idx


def lidar_in_camera(view, cam_index: int, max_points: int = MAX_LIDAR_PER_CAMERA):
    """LiDAR points of a :class:`~bevlib.viewer.state.SampleView` projected into one camera
    (display pixels).

    Returns: (uv (P, 2) float64, depth (P,) metres along the optical axis, seg (P,) uint8 or None),
        points in front of the camera (depth > 0.5 m) and inside the image, at most ``max_points``
        (a deterministic stride keeps the pattern even). Empty arrays without LiDAR.
    """
    if view.lidar_xyz is None:
        return np.zeros((0, 2)), np.zeros(0), None
    uv, depth, idx = project_points(view.K[cam_index], view.ego_T_cam[cam_index], view.image_wh, view.lidar_xyz,
                                    max_points)
    seg = view.lidar_seg[idx] if view.lidar_seg is not None else None
    return uv, depth, seg
