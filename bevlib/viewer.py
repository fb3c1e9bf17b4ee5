"""Interactive BEV / camera viewer (ipywidgets + plotly) over any nuScenes-format dataroot.

Two layers, so the logic is testable without a browser:

* **model layer** (pure Python / numpy / plotly ``go.Figure``): :class:`ViewerModel` opens the
  dataroot through nuscenes-devkit and loads one keyframe at display resolution
  (:class:`SampleView`); :func:`bev_figure` and :func:`camera_figure` turn a keyframe plus a
  :class:`ViewState` into figures. Helpers (:func:`bev_hover_text`, :func:`frustum_footprints`,
  :func:`pick_projections`, :func:`render_labels_to_cameras`, ...) are public and documented.
* **widget layer**: :class:`BEVViewer` wires ipywidgets controls and two plotly ``FigureWidget``
  panels to the model layer; it holds no geometry of its own.

What is shown:

* BEV panel: a plotly heatmap in metric ego coordinates (x forward up, y left to the left; hover
  gives each cell's class per layer and its ego x / y in metres), the ego box, the ground
  footprints of the six camera frustums (clipped to the BEV extent), LiDAR points from above and
  the picked cell. Clicking a cell picks it.
* Camera panel: one camera, or all six in the rig's layout (front row FRONT_LEFT, FRONT,
  FRONT_RIGHT; back row BACK_LEFT, BACK, BACK_RIGHT). BEV ground truth and the BEV prediction of a
  checkpoint are rendered *into the cameras* with :func:`bevlib.render.render_bev` (where the BEV
  lands in each image: busch2026's Pred_bev -> Pred_cp), the camera pseudo-label is an overlay,
  LiDAR points are projected with :func:`bevlib.geometry.project`, and the picked BEV cell is marked
  in every camera that sees it.

Every layer is toggled independently and has its own opacity. A layer that a dataroot cannot
provide (no map expansion -> no BEV ground truth, no checkpoint, no cached pseudo-labels, no
lidarseg) is reported absent with a note rather than failing.

Frames: ego (x forward, y left, z up, metres, origin on the ground below the rear axle) for
everything metric; pixel coordinates (u = column, v = row, centres at integers, OpenCV) for the
camera panel, at the display size ``image_wh`` (default 400 x 225 per camera).
"""
from __future__ import annotations

import base64
import io
import json
import logging
import os
import urllib.parse
from collections import OrderedDict
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from . import geometry as geo
from .bev import BEVGrid
from .classes import ALL_CLASSES, COLORS, IGNORE, NUM_ALL, NUM_BEV
from .data.nuscenes_data import (CAMERAS, DataError, bev_ground_truth, camera_rig, load_image, open_nuscenes,
                                 scene_sample_tokens)
from .params import ParameterError, from_dict
from .render import render_bev

log = logging.getLogger(__name__)

#: Display size (width, height) of one camera image, pixels.
DISPLAY_WH = (400, 225)
#: Layer keys, in drawing order (later layers on top).
LAYERS = ("pseudo", "bev_gt", "bev_pred", "lidar")
LAYER_TITLES = {"bev_gt": "BEV ground truth", "bev_pred": "BEV prediction", "pseudo": "camera pseudo-label",
                "lidar": "LiDAR points"}
_DEFAULT_VISIBLE = {"bev_gt": True, "bev_pred": True, "pseudo": False, "lidar": False}
_DEFAULT_OPACITY = {"bev_gt": 0.6, "bev_pred": 0.6, "pseudo": 0.45, "lidar": 0.8}
#: Rig layout of the six cameras: CAMERAS[k] goes to (row, col) = divmod(k, 3).
RIG_LAYOUT = {cam: divmod(k, 3) for k, cam in enumerate(CAMERAS)}
_CAM_SHORT = {"CAM_FRONT_LEFT": "FL", "CAM_FRONT": "F", "CAM_FRONT_RIGHT": "FR", "CAM_BACK_LEFT": "BL",
              "CAM_BACK": "B", "CAM_BACK_RIGHT": "BR"}
_CAM_COLOURS = {"CAM_FRONT_LEFT": (255, 200, 0), "CAM_FRONT": (0, 220, 255), "CAM_FRONT_RIGHT": (255, 120, 220),
                "CAM_BACK_LEFT": (170, 255, 90), "CAM_BACK": (255, 255, 255), "CAM_BACK_RIGHT": (255, 150, 60)}
#: Ego footprint (Renault Zoe body, as the embedded world's ego box): x from -0.75 to 3.35 m, |y| <= 0.87 m.
EGO_BOX_XY = np.array([[3.35, 0.87], [3.35, -0.87], [-0.75, -0.87], [-0.75, 0.87], [3.35, 0.87]])
_PICK_COLOUR = "#ff00ff"
_LIDAR_DEPTH_MAX_M = 40.0        # top of the depth colour scale; nearly all ground returns are closer
_MAX_LIDAR_PER_CAMERA = 2500     # enough to read the scene; plotly SVG scatter slows down beyond a few k
_MAX_LIDAR_BEV = 6000


# ------------------------------------------------------------------------------------------------
# State
# ------------------------------------------------------------------------------------------------

@dataclass
class LayerState:
    """One layer's visibility and opacity (0 transparent .. 1 opaque)."""

    visible: bool = True
    opacity: float = 0.5


def default_layers() -> dict[str, LayerState]:
    """Fresh default layer states, keyed by :data:`LAYERS`."""
    return {k: LayerState(_DEFAULT_VISIBLE[k], _DEFAULT_OPACITY[k]) for k in LAYERS}


@dataclass
class ViewState:
    """What the viewer shows; the widgets edit it, the figure functions read it.

    Attributes:
        sample_token: the keyframe shown.
        camera: ``"all"`` (six cameras in the rig layout) or one name of :data:`CAMERAS`.
        layers: ``{layer key: LayerState}`` for every key of :data:`LAYERS`.
        lidar_color: ``"depth"`` (camera depth in the camera panel, range from the ego origin in
            the BEV panel) or ``"lidarseg"`` (nuScenes-lidarseg class colours).
        show_frustums: draw the cameras' ground footprints in the BEV panel.
        picked: (row, col) of the picked BEV cell on the viewer grid, or None.
    """

    sample_token: str
    camera: str = "all"
    layers: dict = field(default_factory=default_layers)
    lidar_color: str = "depth"
    show_frustums: bool = True
    picked: tuple | None = None

    def layer_on(self, key: str) -> bool:
        """Whether layer ``key`` is drawn: visible with a non-zero opacity."""
        return key in self.layers and self.layers[key].visible and self.layers[key].opacity > 0


@dataclass
class SampleView:
    """One keyframe at display resolution, everything in its ego frame.

    Attributes:
        sample_token, scene_name: identity; index, count: position in its scene (0-based) and
            the scene's number of keyframes.
        cameras: camera names, in the order of the arrays below (:data:`CAMERAS`).
        images: (N, h, w, 3) uint8 RGB at the display size.
        K: (N, 3, 3) float64 intrinsics in display pixels; ego_T_cam: (N, 4, 4) float64.
        bev_gt: (H, W) uint8 class map on the viewer grid, or None (note in ``notes``).
        bev_pred: (H, W) uint8 prediction resampled to the viewer grid, or None.
        pseudo: (N, h, w) uint8 camera pseudo-labels (nearest-resized), or None.
        lidar_xyz: (M, 3) float64 LiDAR points in the ego frame (metres), or None.
        lidar_seg: (M,) uint8 nuScenes-lidarseg category indices, or None.
        lidarseg_names: {index: category name}; lidarseg_colors: (256, 3) uint8 lookup table.
        notes: {layer key: why it is absent or what it shows}.
    """

    sample_token: str
    scene_name: str
    index: int
    count: int
    cameras: tuple
    images: np.ndarray
    K: np.ndarray
    ego_T_cam: np.ndarray
    bev_gt: np.ndarray | None = None
    bev_pred: np.ndarray | None = None
    pseudo: np.ndarray | None = None
    lidar_xyz: np.ndarray | None = None
    lidar_seg: np.ndarray | None = None
    lidarseg_names: dict = field(default_factory=dict)
    lidarseg_colors: np.ndarray | None = None
    notes: dict = field(default_factory=dict)
    _rendered: dict = field(default_factory=dict, repr=False)

    @property
    def image_wh(self) -> tuple[int, int]:
        """(w, h) display size of the camera images, pixels."""
        return int(self.images.shape[2]), int(self.images.shape[1])

    def available(self, key: str) -> bool:
        """Whether layer ``key`` has data for this keyframe."""
        return {"bev_gt": self.bev_gt, "bev_pred": self.bev_pred, "pseudo": self.pseudo,
                "lidar": self.lidar_xyz}[key] is not None


# ------------------------------------------------------------------------------------------------
# Geometry helpers (pure)
# ------------------------------------------------------------------------------------------------

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


def blend_labels(image: np.ndarray, labels: np.ndarray, alpha: float) -> np.ndarray:
    """Alpha-blend class colours over an image where a class other than background / IGNORE is.

    image (h, w, 3) uint8 or float, labels (h, w) integer -> (h, w, 3) float32.
    """
    from .viz import colorize

    img = np.asarray(image, np.float32).copy()
    m = (labels != 0) & (labels != IGNORE)
    img[m] = (1.0 - alpha) * img[m] + alpha * colorize(labels[m]).astype(np.float32)
    return img


def _outline(valid: np.ndarray) -> np.ndarray:
    """Border pixels of a boolean mask (h, w): the edge of where a rendered BEV covers the image."""
    inner = valid.copy()
    inner[1:] &= valid[:-1]
    inner[:-1] &= valid[1:]
    inner[:, 1:] &= valid[:, :-1]
    inner[:, :-1] &= valid[:, 1:]
    return valid & ~inner


def compose_camera_images(view: SampleView, state: ViewState, grid: BEVGrid) -> np.ndarray:
    """The camera images with the image-space layers blended in (pseudo-label, then BEV ground
    truth and BEV prediction rendered into the cameras), each with its layer's opacity; a thin line
    marks the border of the BEV extent in each image while a BEV layer is on.

    Returns: (N, h, w, 3) uint8, N = len(view.cameras).
    """
    imgs = view.images.astype(np.float32)
    if state.layer_on("pseudo") and view.pseudo is not None:
        a = state.layers["pseudo"].opacity
        imgs = np.stack([blend_labels(imgs[n], view.pseudo[n], a) for n in range(len(imgs))])
    border = None
    for key in ("bev_gt", "bev_pred"):
        labels = getattr(view, key)
        if not state.layer_on(key) or labels is None:
            continue
        cp = view._rendered.get(key)
        if cp is None:
            cp = view._rendered[key] = render_labels_to_cameras(labels, view.K, view.ego_T_cam, view.image_wh, grid)
        a = state.layers[key].opacity
        imgs = np.stack([blend_labels(imgs[n], cp[n], a) for n in range(len(imgs))])
        if border is None:
            border = view._rendered.get("_border")
            if border is None:
                _, valid = render_bev(torch.ones(1, 1, grid.H, grid.W), view.K[None], view.ego_T_cam[None],
                                      view.image_wh[::-1], grid)
                border = view._rendered["_border"] = np.stack([_outline(v) for v in valid[0].numpy()])
    if border is not None:
        imgs[border] = 0.5 * imgs[border] + 0.5 * 255.0
    return imgs.clip(0, 255).astype(np.uint8)


def lidar_in_camera(view: SampleView, cam_index: int, max_points: int = _MAX_LIDAR_PER_CAMERA):
    """LiDAR points projected into one camera (display pixels).

    Returns: (uv (P, 2) float64, depth (P,) metres along the optical axis, seg (P,) uint8 or None),
        points in front of the camera (depth > 0.5 m) and inside the image, at most ``max_points``
        (a deterministic stride keeps the pattern even). Empty arrays without LiDAR.
    """
    if view.lidar_xyz is None:
        return np.zeros((0, 2)), np.zeros(0), None
    w, h = view.image_wh
    uv, depth, front = geo.project(view.K[cam_index], geo.invert(view.ego_T_cam[cam_index]), view.lidar_xyz)
    ok = front & (depth > 0.5) & (uv[:, 0] >= -0.5) & (uv[:, 0] < w - 0.5) & (uv[:, 1] >= -0.5) & (uv[:, 1] < h - 0.5)
    idx = np.flatnonzero(ok)
    if len(idx) > max_points:
        idx = idx[np.linspace(0, len(idx) - 1, max_points).astype(np.int64)]
    seg = view.lidar_seg[idx] if view.lidar_seg is not None else None
    return uv[idx], depth[idx], seg


# ------------------------------------------------------------------------------------------------
# Figures (pure: state -> plotly figure)
# ------------------------------------------------------------------------------------------------

def _rgb(c, a: float | None = None) -> str:
    return f"rgb({c[0]},{c[1]},{c[2]})" if a is None else f"rgba({c[0]},{c[1]},{c[2]},{a})"


def _class_colorscale() -> list:
    """Discrete plotly colourscale: class k (zmin = -0.5, zmax = NUM_ALL - 0.5) gets COLORS[k]."""
    cs = []
    for k, c in enumerate(COLORS):
        cs += [[k / NUM_ALL, _rgb(c)], [(k + 1) / NUM_ALL, _rgb(c)]]
    return cs


def _bev_layers(view: SampleView, state: ViewState, grid: BEVGrid, all_layers: bool = False) -> dict:
    """{title: (H, W) class map} of the BEV layers that are on (or all available ones)."""
    from .bev import lift_to_bev

    out = {}
    # Pseudo-label first: drawn lowest, as in the camera panel, so the map layers stay readable.
    if view.pseudo is not None and (all_layers or state.layer_on("pseudo")):
        lifted = view._rendered.get("_pseudo_bev")
        if lifted is None:
            lifted = view._rendered["_pseudo_bev"] = lift_to_bev(view.pseudo, view.K, view.ego_T_cam, grid)
        out["pseudo-label (on the ground)"] = lifted
    if view.bev_gt is not None and (all_layers or state.layer_on("bev_gt")):
        out["BEV ground truth"] = view.bev_gt
    if view.bev_pred is not None and (all_layers or state.layer_on("bev_pred")):
        out["BEV prediction"] = view.bev_pred
    return out


def bev_hover_text(grid: BEVGrid, layers: dict) -> np.ndarray:
    """Hover text of every BEV cell: its metric ego position and its class in each layer.

    Args:
        grid: the BEV grid (cell centres from :meth:`BEVGrid.cell_centers`).
        layers: {layer title: (H, W) integer class map or None}; None layers are skipped.
    Returns: (H, W) object array of str, e.g.
        ``"x = +12.30 m (forward), y = -1.50 m (left)<br>cell (row 44, col 81)<br>BEV ground truth: lane"``.
    """
    xy = grid.cell_centers()
    names = np.array([class_name(c) for c in range(256)], dtype=object)
    text = np.empty((grid.H, grid.W), dtype=object)
    layer_names = [(t, names[np.asarray(m, np.int64).clip(0, 255)]) for t, m in layers.items() if m is not None]
    for i in range(grid.H):
        for j in range(grid.W):
            s = f"x = {xy[i, j, 0]:+.2f} m (forward), y = {xy[i, j, 1]:+.2f} m (left)<br>cell (row {i}, col {j})"
            for t, nm in layer_names:
                s += f"<br>{t}: {nm[i, j]}"
            text[i, j] = s
    return text


def bev_figure(view: SampleView, state: ViewState, grid: BEVGrid, height: int = 580):
    """The BEV panel of a keyframe.

    Plot axes are metric ego coordinates: the horizontal axis is y (metres, +y = left drawn on the
    left, so the map reads like a driver-up view), the vertical axis is x (metres, forward up).
    Traces, bottom to top: ``"bev cells"`` (always present; a dark heatmap that carries the hover
    text of :func:`bev_hover_text` and receives clicks), one class heatmap per visible BEV layer
    (``"pseudo-label (on the ground)"`` -- the camera pseudo-labels lifted onto z = 0 by
    :func:`bevlib.experiments.busch2026.lift_to_bev` --, ``"BEV ground truth"``,
    ``"BEV prediction"``; background and IGNORE transparent), ``"lidar"`` (top view), the frustum footprints (``"frustum CAM_*"``),
    ``"ego"`` and ``"picked cell"``.

    Args: view, state: the keyframe and what to show; grid: the grid of the view's BEV maps;
        height: figure height in CSS pixels (the width follows from the extent's aspect ratio).
    Returns: plotly ``go.Figure``.
    Raises: IndexError when ``state.picked`` lies outside the grid.
    """
    import plotly.graph_objects as go

    xy = grid.cell_centers()
    xs, ys = xy[:, 0, 0], xy[0, :, 1]   # row centres (x, decreasing), column centres (y, decreasing)
    hover_layers = _bev_layers(view, state, grid)
    fig = go.Figure()
    fig.add_trace(go.Heatmap(z=np.zeros((grid.H, grid.W)), x=ys, y=xs, colorscale=[[0, "#262626"], [1, "#262626"]],
                             showscale=False, text=bev_hover_text(grid, hover_layers),
                             hovertemplate="%{text}<extra></extra>", name="bev cells"))
    cs = _class_colorscale()
    for title, labels in hover_layers.items():
        key = {"BEV ground truth": "bev_gt", "BEV prediction": "bev_pred"}.get(title, "pseudo")
        z = labels.astype(np.float64)
        z[(labels == 0) | (labels == IGNORE)] = np.nan
        fig.add_trace(go.Heatmap(z=z, x=ys, y=xs, colorscale=cs, zmin=-0.5, zmax=NUM_ALL - 0.5, showscale=False,
                                 opacity=state.layers[key].opacity, hoverinfo="skip", name=title))
    if state.layer_on("lidar") and view.lidar_xyz is not None:
        p = view.lidar_xyz
        ok = np.flatnonzero(grid.contains(p[:, :2]) & (np.abs(p[:, 2]) < 3.0))
        if len(ok) > _MAX_LIDAR_BEV:
            ok = ok[np.linspace(0, len(ok) - 1, _MAX_LIDAR_BEV).astype(np.int64)]
        marker = dict(size=2)
        if state.lidar_color == "lidarseg" and view.lidar_seg is not None:
            marker["color"] = [_rgb(c) for c in view.lidarseg_colors[view.lidar_seg[ok]]]
        else:
            marker.update(color=np.hypot(p[ok, 0], p[ok, 1]), colorscale="Turbo", cmin=0, cmax=_LIDAR_DEPTH_MAX_M)
        fig.add_trace(go.Scatter(x=p[ok, 1], y=p[ok, 0], mode="markers", marker=marker,
                                 opacity=state.layers["lidar"].opacity, hoverinfo="skip", name="lidar"))
    if state.show_frustums:
        for cam, poly in zip(view.cameras, frustum_footprints(view.K, view.ego_T_cam, view.image_wh, grid)):
            if poly is None:
                continue
            sel = state.camera in ("all", cam)
            c = _CAM_COLOURS.get(cam, (255, 255, 255))
            fig.add_trace(go.Scatter(x=poly[:, 1], y=poly[:, 0], mode="lines", fill="toself",
                                     fillcolor=_rgb(c, 0.07 if sel else 0.0),
                                     line=dict(color=_rgb(c, 0.9 if sel else 0.35), width=2 if sel else 1),
                                     hoverinfo="skip", name=f"frustum {cam}"))
            cx, cy = poly[:-1].mean(0)
            fig.add_annotation(x=cy, y=cx, text=_CAM_SHORT.get(cam, cam), showarrow=False,
                               font=dict(color=_rgb(c), size=11))
    fig.add_trace(go.Scatter(x=EGO_BOX_XY[:, 1], y=EGO_BOX_XY[:, 0], mode="lines", fill="toself",
                             fillcolor="rgba(255,255,255,0.85)", line=dict(color="white", width=1),
                             hoverinfo="skip", name="ego"))
    if state.picked is not None:
        px, py = cell_center(grid, state.picked)
        fig.add_trace(go.Scatter(x=[py], y=[px], mode="markers", hoverinfo="skip", name="picked cell",
                                 marker=dict(symbol="square-open", size=12, color=_PICK_COLOUR, line=dict(width=3))))
    aspect = (grid.y_max - grid.y_min) / (grid.x_max - grid.x_min)
    fig.update_layout(
        width=int(height * aspect) + 90, height=height, margin=dict(l=55, r=10, t=30, b=45),
        plot_bgcolor="#111111", showlegend=False, clickmode="event", dragmode="pan",
        xaxis=dict(title="y [m] (left +) · click a cell", range=[grid.y_max, grid.y_min], constrain="domain",
                   zeroline=False),
        yaxis=dict(title="x [m] (forward +)", range=[grid.x_min, grid.x_max], scaleanchor="x", scaleratio=1,
                   constrain="domain", zeroline=False),
        uirevision="bev")
    return fig


def _png_uri(img: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def camera_figure(view: SampleView, state: ViewState, grid: BEVGrid, scale: float | None = None):
    """The camera panel: one camera, or all six in the rig layout (2 x 3, :data:`RIG_LAYOUT`).

    Each camera is a ``go.Image`` trace named after the camera (pixel (u, v) drawn at plot
    coordinates x = u, y = v, v down), holding the composite of :func:`compose_camera_images` as a
    PNG data URI; above it ``"lidar CAM_*"`` scatter traces (LiDAR layer) and ``"picked CAM_*"``
    markers where the picked BEV cell's centre projects inside the image.

    Args:
        scale: display magnification; default 1 for all six, 2 for a single camera.
    Returns: plotly ``go.Figure``.
    Raises: ValueError for an unknown ``state.camera``.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if state.camera == "all":
        shown = list(view.cameras)
    elif state.camera in view.cameras:
        shown = [state.camera]
    else:
        raise ValueError(f"camera must be 'all' or one of {view.cameras}, got {state.camera!r}")
    w, h = view.image_wh
    single = len(shown) == 1
    scale = scale or (2.0 if single else 1.0)
    rows, cols = (1, 1) if single else (2, 3)
    pos = {c: (1, 1) for c in shown} if single else {c: (RIG_LAYOUT[c][0] + 1, RIG_LAYOUT[c][1] + 1) for c in shown}
    titles = [""] * (rows * cols)
    for c in shown:
        r, k = pos[c]
        titles[(r - 1) * cols + (k - 1)] = c
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.006, vertical_spacing=0.07)
    imgs = compose_camera_images(view, state, grid)
    picks = pick_projections(view.K, view.ego_T_cam, view.image_wh, grid, state.picked) if state.picked else None
    for c in shown:
        n = view.cameras.index(c)
        r, k = pos[c]
        fig.add_trace(go.Image(source=_png_uri(imgs[n]), name=c,
                               hovertemplate="u=%{x}, v=%{y}<extra>" + c + "</extra>"), row=r, col=k)
        if state.layer_on("lidar") and view.lidar_xyz is not None:
            uv, depth, seg = lidar_in_camera(view, n)
            marker = dict(size=3 if single else 2.5)
            if state.lidar_color == "lidarseg" and seg is not None:
                marker["color"] = [_rgb(col) for col in view.lidarseg_colors[seg]]
                text = [view.lidarseg_names.get(int(s), str(int(s))) for s in seg]
            else:
                marker.update(color=depth, colorscale="Turbo", cmin=0, cmax=_LIDAR_DEPTH_MAX_M)
                text = [f"{d:.1f} m" for d in depth]
            fig.add_trace(go.Scatter(x=uv[:, 0], y=uv[:, 1], mode="markers", marker=marker, text=text,
                                     opacity=state.layers["lidar"].opacity, name=f"lidar {c}",
                                     hovertemplate="%{text}<extra>LiDAR</extra>"), row=r, col=k)
        if picks is not None and picks[n] is not None:
            u, v = picks[n]
            fig.add_trace(go.Scatter(x=[u], y=[v], mode="markers", name=f"picked {c}", hoverinfo="skip",
                                     marker=dict(symbol="circle-open", size=16, color=_PICK_COLOUR,
                                                 line=dict(width=3))), row=r, col=k)
            fig.add_trace(go.Scatter(x=[u], y=[v], mode="markers", name=f"picked {c} centre", hoverinfo="skip",
                                     marker=dict(symbol="cross-thin-open", size=10, color=_PICK_COLOUR,
                                                 line=dict(width=2))), row=r, col=k)
    fig.update_xaxes(range=[-0.5, w - 0.5], visible=False, constrain="domain")
    fig.update_yaxes(range=[h - 0.5, -0.5], visible=False, constrain="domain")
    for ax in fig.layout:
        if ax.startswith("yaxis"):
            fig.layout[ax].scaleanchor = "x" + ax[5:]
    for a in fig.layout.annotations:
        a.font = dict(size=11)
    title_h = 28
    fig.update_layout(width=int(cols * w * scale) + 10, height=int(rows * (h * scale + title_h)) + 30,
                      margin=dict(l=5, r=5, t=40, b=5), showlegend=False, plot_bgcolor="white",
                      title=dict(text=f"{view.scene_name}: keyframe {view.index + 1}/{view.count} "
                                      f"({view.sample_token[:8]})", font=dict(size=12), x=0.5),
                      uirevision="cams")
    return fig


# ------------------------------------------------------------------------------------------------
# Data: checkpoint predictor, pseudo-labels, LiDAR, the model object
# ------------------------------------------------------------------------------------------------

class CheckpointPredictor:
    """Loads a trained BEV model once and predicts BEV class maps.

    Args:
        checkpoint: a run directory (``config.json`` + ``checkpoints/epoch_*.pt``, as written by
            :func:`bevlib.train.train`; its latest checkpoint is used) or a checkpoint file.
        model_config: the model's config, when there is no run ``config.json`` beside the checkpoint
            (or to override it): a dict, or a path to a JSON file. Either a whole run config
            (keys ``model``, optionally ``grid``, ``data.image_wh``, ``train.use_history``) or the
            model dict itself (optional extra keys ``image_wh``, ``grid``, ``use_history``).
        model_factory: callable(model dict) -> nn.Module; default busch2026's BEVFormer factory.
    Attributes: grid (BEVGrid of the output), image_wh (input image size), use_history, path.
    Raises: FileNotFoundError (no checkpoint), ValueError (no model config).
    """

    def __init__(self, checkpoint, model_config=None, model_factory=None):
        from .train import latest_checkpoint, load_checkpoint

        path = Path(checkpoint)
        if path.is_dir():
            run_dir, ck = path, latest_checkpoint(path)
            if ck is None:
                raise FileNotFoundError(f"run directory {str(path)!r} has no checkpoints/epoch_*.pt")
        else:
            if not path.exists():
                raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
            ck, run_dir = path, path.parent.parent if path.parent.name == "checkpoints" else path.parent
        run_cfg = {}
        if (run_dir / "config.json").exists():
            run_cfg = json.loads((run_dir / "config.json").read_text())
        if model_config is not None:
            mc = json.loads(Path(model_config).read_text()) if isinstance(model_config, (str, os.PathLike)) else dict(model_config)
            run_cfg = mc if "model" in mc else {"model": mc, **{k: mc[k] for k in ("grid",) if k in mc},
                                                "data": {"image_wh": mc.get("image_wh")} if "image_wh" in mc else {},
                                                "train": {"use_history": mc["use_history"]} if "use_history" in mc else {}}
        if "model" not in run_cfg:
            raise ValueError(f"no model config for checkpoint {str(ck)!r}: pass model_config= (a dict or JSON "
                             f"path) or a run directory holding config.json")
        self.model_cfg = run_cfg["model"]
        out_hw = tuple(self.model_cfg.get("out_hw", (150, 150)))
        g = run_cfg.get("grid") or self.model_cfg.get("grid")
        self.grid = BEVGrid(**g) if isinstance(g, dict) else BEVGrid().with_shape(*out_hw)
        self.image_wh = tuple((run_cfg.get("data") or {}).get("image_wh") or (224, 128))
        self.use_history = bool((run_cfg.get("train") or {}).get("use_history", False))
        if model_factory is None:
            from .models.registry import build_model
            model_factory = lambda cfg: build_model("bevformer", cfg)  # noqa: E731
        self.model = model_factory(self.model_cfg)
        self.model.load_state_dict(load_checkpoint(ck)["model"])
        self.model.eval()
        self.path = ck
        self._stores = {}

    @torch.no_grad()
    def predict(self, nusc, sample_token: str) -> np.ndarray:
        """BEV class map (grid.H, grid.W) uint8 in {0..NUM_BEV-1} of one keyframe (argmax over the
        background + map classes, as busch2026's evaluation)."""
        from torch.utils.data import default_collate

        from .data.dataset import KeyframeDataset, KeyframeStore
        from .data.nuscenes_data import KeyframeConfig
        from .models.bevformer import forward_keyframes as forward

        store = self._stores.get(id(nusc))
        if store is None:
            store = self._stores[id(nusc)] = KeyframeStore(nusc, KeyframeConfig(image_wh=self.image_wh, grid=self.grid))
        ds = KeyframeDataset(store, [sample_token], with_prev=self.use_history)
        logits = forward(self.model, default_collate([ds[0]]), self.use_history)["logits"]
        return logits[0, :NUM_BEV].argmax(0).numpy().astype(np.uint8)


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


def _lidarseg_palette(nusc) -> tuple[dict, np.ndarray]:
    names = dict(getattr(nusc, "lidarseg_idx2name_mapping", {}) or {})
    lut = np.full((256, 3), 200, np.uint8)
    cmap = getattr(nusc, "colormap", {}) or {}
    for i, n in names.items():
        if n in cmap and 0 <= int(i) < 256:
            lut[int(i)] = cmap[n]
    return names, lut


def _is_bevlib_world(dataroot) -> bool:
    return (Path(dataroot) / "bevlib_world.json").exists()


class ViewerModel:
    """The viewer's data side: opens a dataroot, lists scenes and keyframes, loads keyframes.

    Args:
        dataroot, version: a nuScenes-format dataset (real nuScenes, the real keyframe, the embedded
            world).
        checkpoint, model_config: optional model for the BEV prediction layer
            (see :class:`CheckpointPredictor`).
        labeler: camera pseudo-labels: ``"auto"`` (embedded world: the synthetic labeller, labels
            generated and cached on first view; elsewhere: the first cached label set found under
            ``<dataroot>/bevlib_cache/pseudo_labels``), a cached label-set name, a
            :class:`bevlib.data.pseudo.PseudoLabeler` (generated on demand), or None.
        grid: the viewer's BEV grid; default the checkpoint's output grid, else ``BEVGrid()``.
        image_wh: display size of one camera image (w, h) pixels.
        cache_size: keyframes kept in memory.
    Raises: DataError for a bad dataroot / version; FileNotFoundError / ValueError for a bad checkpoint.
    """

    def __init__(self, dataroot, version: str = "v1.0-mini", checkpoint=None, model_config=None,
                 labeler="auto", grid: BEVGrid | None = None, image_wh: tuple = DISPLAY_WH, cache_size: int = 8,
                 model_factory=None):
        self.dataroot, self.version = str(dataroot), version
        self.nusc = open_nuscenes(dataroot, version)
        self.image_wh = tuple(int(v) for v in image_wh)
        self.predictor = (CheckpointPredictor(checkpoint, model_config, model_factory)
                          if checkpoint is not None else None)
        self.grid = grid or (self.predictor.grid if self.predictor else BEVGrid())
        self.scenes: dict[str, list[str]] = {}
        for s in sorted(self.nusc.scene, key=lambda r: r["name"]):
            self.scenes[s["name"]] = scene_sample_tokens(self.nusc, [s["name"]])
        self.labeler, self.labeler_name, self._pseudo_note = self._resolve_labeler(labeler)
        self.lidarseg_names, self.lidarseg_colors = _lidarseg_palette(self.nusc)
        self._cache: "OrderedDict[str, SampleView]" = OrderedDict()
        self._cache_size = cache_size

    def _resolve_labeler(self, labeler):
        from .data.pseudo import PseudoLabeler

        root = Path(self.dataroot) / "bevlib_cache" / "pseudo_labels"
        if labeler is None:
            return None, None, "camera pseudo-labels: off (labeler=None)"
        if isinstance(labeler, PseudoLabeler):
            return labeler, labeler.name, None
        if labeler == "auto":
            if _is_bevlib_world(self.dataroot):
                from .data.synthetic_labeler import SyntheticPseudoLabeler
                lab = SyntheticPseudoLabeler()
                return lab, lab.name, None
            sets = sorted(p.name for p in root.glob("*") if p.is_dir()) if root.is_dir() else []
            if not sets:
                return None, None, (f"camera pseudo-labels absent: no cached label set under {root} "
                                    "(create one with bevlib.data.pseudo.cache_pseudo_labels)")
            return None, sets[0], None
        return None, str(labeler), None

    def scene_of(self, sample_token: str) -> tuple[str, int]:
        """(scene name, index within the scene) of a keyframe. Raises KeyError if unknown."""
        for name, toks in self.scenes.items():
            if sample_token in toks:
                return name, toks.index(sample_token)
        raise KeyError(f"sample {sample_token!r} is not a keyframe of {self.version} at {self.dataroot}")

    def first_sample(self) -> str:
        """The first keyframe of the first scene. Raises DataError when the dataset has none."""
        for toks in self.scenes.values():
            if toks:
                return toks[0]
        raise DataError(f"{self.version} at {self.dataroot} has no keyframes")

    def load(self, sample_token: str) -> SampleView:
        """Load (or fetch from the cache) one keyframe at display resolution.

        Layers a dataroot cannot provide are None with a note in ``SampleView.notes``.
        Raises: KeyError for an unknown token; DataError for missing images / calibration.
        """
        hit = self._cache.get(sample_token)
        if hit is not None:
            self._cache.move_to_end(sample_token)
            return hit
        scene, idx = self.scene_of(sample_token)
        nusc = self.nusc
        rig = camera_rig(nusc, sample_token, self.image_wh, CAMERAS)
        images = np.stack([load_image(nusc.get_sample_data_path(t), self.image_wh) for t in rig["sd_tokens"]])
        view = SampleView(sample_token, scene, idx, len(self.scenes[scene]), CAMERAS, images,
                          rig["K"].astype(np.float64), rig["ego_T_cam"].astype(np.float64),
                          lidarseg_names=self.lidarseg_names, lidarseg_colors=self.lidarseg_colors)
        gt = bev_ground_truth(nusc, sample_token, self.grid)
        if gt is None:
            sample = nusc.get("sample", sample_token)
            loc = nusc.get("log", nusc.get("scene", sample["scene_token"])["log_token"])["location"]
            view.notes["bev_gt"] = (f"BEV ground truth absent: no map expansion for location {loc!r} "
                                    f"(expected {Path(self.dataroot) / 'maps' / 'expansion' / (loc + '.json')})")
        view.bev_gt = gt
        if self.predictor is not None:
            try:
                view.bev_pred = resample_labels(self.predictor.predict(nusc, sample_token), self.predictor.grid, self.grid)
                view.notes["bev_pred"] = f"BEV prediction of {self.predictor.path}"
            except Exception as e:   # a model that cannot run here must not take the viewer down
                log.exception("prediction failed")
                view.notes["bev_pred"] = f"BEV prediction failed: {type(e).__name__}: {e}"
        else:
            view.notes["bev_pred"] = "BEV prediction absent: no checkpoint given"
        view.pseudo = self._load_pseudo(rig["sd_tokens"], view.notes)
        try:
            view.lidar_xyz, view.lidar_seg = load_lidar(nusc, sample_token)
            if view.lidar_xyz is None:
                view.notes["lidar"] = "LiDAR absent: the keyframe has no LIDAR_TOP"
            elif view.lidar_seg is None:
                view.notes["lidar"] = "no lidarseg labels here: LiDAR coloured by depth only"
        except DataError as e:
            view.notes["lidar"] = f"LiDAR absent: {e}"
        self._cache[sample_token] = view
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return view

    def _load_pseudo(self, sd_tokens, notes: dict):
        from PIL import Image

        from .data.pseudo import cache_pseudo_labels, pseudo_label_path

        if self.labeler_name is None:
            notes["pseudo"] = self._pseudo_note
            return None
        if self.labeler is not None:
            cache_pseudo_labels(self.nusc, self.labeler, sd_tokens, progress=False)
        out = []
        for t in sd_tokens:
            p = pseudo_label_path(self.dataroot, self.labeler_name, t)
            if not p.exists():
                notes["pseudo"] = f"camera pseudo-labels absent for this keyframe: {p} is missing"
                return None
            out.append(np.asarray(Image.open(p).resize(self.image_wh, Image.NEAREST)))
        notes["pseudo"] = f"camera pseudo-labels: {self.labeler_name}"
        return np.stack(out).astype(np.uint8)

    def default_state(self, sample_token: str | None = None) -> ViewState:
        """A ViewState on ``sample_token`` (default: the first keyframe) with default layers."""
        return ViewState(sample_token or self.first_sample())

    def bev_figure(self, state: ViewState):
        """:func:`bev_figure` of the state's keyframe on this viewer's grid."""
        return bev_figure(self.load(state.sample_token), state, self.grid)

    def camera_figure(self, state: ViewState):
        """:func:`camera_figure` of the state's keyframe on this viewer's grid."""
        return camera_figure(self.load(state.sample_token), state, self.grid)


# ------------------------------------------------------------------------------------------------
# Notebook parameters
# ------------------------------------------------------------------------------------------------

@dataclass
class ViewerParams:
    """Parameters of notebooks/viewer.ipynb.

    ``dataroot=None`` selects the embedded world, generated (and cached under ``$BEVLIB_CACHE``)
    from ``world_*``. Each field can be overridden by an environment variable
    ``BEVLIB_VIEWER_<FIELD>`` (e.g. ``BEVLIB_VIEWER_WORLD_KEYFRAMES=3``) and, under voila, by a
    URL query parameter (``?world_keyframes=3``); values are JSON or comma-separated numbers.
    """

    dataroot: str | None = None
    version: str = "v1.0-mini"
    checkpoint: str | None = None
    model_config: object = None
    world_seed: int = 0
    world_scenes: int = 2
    world_keyframes: int = 4
    world_image_wh: tuple = (400, 225)
    image_wh: tuple = DISPLAY_WH

    def __post_init__(self):
        for n in ("world_image_wh", "image_wh"):
            v = getattr(self, n)
            if not (isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) and x >= 16 for x in v)):
                raise ParameterError(f"parameter {n!r} must be two integers (width, height) >= 16, got {v!r}")
            setattr(self, n, tuple(v))
        for n in ("world_scenes", "world_keyframes"):
            if not isinstance(getattr(self, n), int) or getattr(self, n) < 1:
                raise ParameterError(f"parameter {n!r} must be a positive integer, got {getattr(self, n)!r}")


def _parse_value(s: str):
    try:
        return json.loads(s)
    except ValueError:
        pass
    if s in ("None", "none"):
        return None
    parts = [p.strip() for p in s.split(",")]
    if len(parts) > 1 and all(p.lstrip("-").isdigit() for p in parts):
        return [int(p) for p in parts]
    return s


def viewer_params(namespace: dict | None = None, environ=None) -> ViewerParams:
    """Collect :class:`ViewerParams` from notebook globals, then apply overrides.

    Precedence (last wins): the notebook's parameters cell, ``BEVLIB_VIEWER_<FIELD>`` environment
    variables, the voila URL query (voila passes it to the kernel as ``$QUERY_STRING``).

    Raises: ParameterError naming an unknown or invalid parameter.
    """
    from .params import collect

    env = os.environ if environ is None else environ
    # A re-run notebook holds its own results (``P``, ``viewer``) in the same globals.
    own = tuple(k for k, v in (namespace or {}).items() if isinstance(v, (ViewerParams, BEVViewer)))
    base = collect(namespace, ViewerParams, exclude=own) if namespace is not None else ViewerParams()
    values = {f.name: getattr(base, f.name) for f in fields(ViewerParams)}
    for f in fields(ViewerParams):
        key = "BEVLIB_VIEWER_" + f.name.upper()
        if key in env:
            values[f.name] = _parse_value(env[key])
    query = urllib.parse.parse_qs(env.get("QUERY_STRING", ""), keep_blank_values=False)
    names = {f.name for f in fields(ViewerParams)}
    for k, v in query.items():
        if k in names:   # voila adds its own query keys (e.g. theme): only ours are read
            values[k] = _parse_value(v[-1])
    return from_dict(ViewerParams, values)


def resolve_dataroot(p: ViewerParams, progress: bool = False) -> str:
    """The dataroot to view: ``p.dataroot``, or the embedded world of ``p.world_*`` (generated on
    first use into ``$BEVLIB_CACHE``). Raises OSError if the cache cannot be written."""
    if p.dataroot:
        return str(p.dataroot)
    from .data.world import WorldConfig, ensure_world

    cfg = WorldConfig(seed=p.world_seed, n_scenes=p.world_scenes, keyframes_per_scene=p.world_keyframes,
                      image_wh=tuple(p.world_image_wh), version=p.version,
                      val_scenes=min(1, p.world_scenes - 1) if p.world_scenes > 1 else 0)
    return str(ensure_world(cfg=cfg, progress=progress))


# ------------------------------------------------------------------------------------------------
# Widget layer
# ------------------------------------------------------------------------------------------------

class BEVViewer:
    """The interactive viewer: ipywidgets controls + two plotly ``FigureWidget`` panels.

    Args: as :class:`ViewerModel` (``dataroot``, ``version``, ``checkpoint``, ``model_config``,
        ``labeler``, ``grid``, ``image_wh``), plus ``sample_token`` (first keyframe shown) and
        ``camera`` (``"all"`` or a camera name).
    Attributes:
        model: the :class:`ViewerModel`; state: the current :class:`ViewState`.
        widget: the ipywidgets container to display (also displayed by ``_ipython_display_``).
    Raises: as :class:`ViewerModel`.

    Browser tests find the parts by CSS class: ``bevlib-viewer``, ``bevlib-bev-fig``,
    ``bevlib-camera-fig``, ``bevlib-sample`` (slider), ``bevlib-next`` / ``bevlib-prev``,
    ``bevlib-layer-<key>`` (checkbox + opacity), ``bevlib-status`` (holds
    ``data-render="<n>"``, incremented after each redraw).
    """

    def __init__(self, dataroot, version: str = "v1.0-mini", checkpoint=None, model_config=None, labeler="auto",
                 grid: BEVGrid | None = None, image_wh: tuple = DISPLAY_WH, sample_token: str | None = None,
                 camera: str = "all", model_factory=None):
        self.model = ViewerModel(dataroot, version, checkpoint, model_config, labeler, grid, image_wh,
                                 model_factory=model_factory)
        self.state = self.model.default_state(sample_token)
        self.state.camera = camera
        self.renders = 0
        self._busy = False
        self._build()
        self.refresh()

    # -- construction --------------------------------------------------------------------------
    def _build(self):
        import ipywidgets as W

        m, s = self.model, self.state
        scene, idx = m.scene_of(s.sample_token)
        self.w_scene = W.Dropdown(options=[(f"{n} ({len(t)} keyframes)", n) for n, t in m.scenes.items()],
                                  value=scene, description="scene", layout=W.Layout(width="330px"))
        # 1-based like the status line ("keyframe 2/3")
        self.w_sample = W.IntSlider(value=idx + 1, min=1, max=max(1, len(m.scenes[scene])), description="keyframe",
                                    continuous_update=False, layout=W.Layout(width="300px"))
        self.w_sample.add_class("bevlib-sample")
        self.w_prev = W.Button(description="◀", tooltip="previous keyframe", layout=W.Layout(width="40px"))
        self.w_next = W.Button(description="▶", tooltip="next keyframe", layout=W.Layout(width="40px"))
        self.w_prev.add_class("bevlib-prev")
        self.w_next.add_class("bevlib-next")
        self.w_camera = W.Dropdown(options=[("all 6 (rig layout)", "all")] + [(c, c) for c in CAMERAS],
                                   value=s.camera, description="camera", layout=W.Layout(width="260px"))
        self.w_layers = {}
        rows = []
        for key in ("bev_gt", "bev_pred", "pseudo", "lidar"):
            ls = s.layers[key]
            cb = W.Checkbox(value=ls.visible, description=LAYER_TITLES[key], indent=False,
                            layout=W.Layout(width="170px"))
            op = W.FloatSlider(value=ls.opacity, min=0.0, max=1.0, step=0.05, description="opacity",
                               continuous_update=False, readout_format=".2f", layout=W.Layout(width="240px"))
            row = W.HBox([cb, op])
            row.add_class(f"bevlib-layer-{key}")
            self.w_layers[key] = (cb, op)
            rows.append(row)
            cb.observe(self._on_layer(key, "visible"), names="value")
            op.observe(self._on_layer(key, "opacity"), names="value")
        self.w_lidar_color = W.ToggleButtons(options=["depth", "lidarseg"], value=s.lidar_color,
                                             description="LiDAR colour", style={"button_width": "80px"})
        self.w_frustums = W.Checkbox(value=s.show_frustums, description="camera frustums", indent=False)
        self.w_clear = W.Button(description="clear pick", layout=W.Layout(width="90px"))
        self.w_pick = W.HTML(value="<i>click a BEV cell to see where it lands in the cameras</i>")
        self.w_notes = W.HTML()
        self.w_notes.add_class("bevlib-notes")
        self.w_status = W.HTML()
        self.w_status.add_class("bevlib-status")
        self.fig_bev = self.fig_cam = None   # FigureWidgets, made by refresh()

        self.w_scene.observe(self._on_scene, names="value")
        self.w_sample.observe(self._on_sample, names="value")
        self.w_prev.on_click(lambda _: self._step(-1))
        self.w_next.on_click(lambda _: self._step(+1))
        self.w_camera.observe(self._on_simple("camera"), names="value")
        self.w_lidar_color.observe(self._on_simple("lidar_color"), names="value")
        self.w_frustums.observe(self._on_simple("show_frustums"), names="value")
        self.w_clear.on_click(lambda _: self.pick(None))

        nav = W.VBox([self.w_scene, W.HBox([self.w_sample, self.w_prev, self.w_next]), self.w_camera])
        layers = W.VBox([W.HTML("<b>layers</b>")] + rows + [self.w_lidar_color, self.w_frustums])
        pick = W.VBox([W.HTML("<b>picked BEV cell</b>"), self.w_pick, self.w_clear])
        controls = W.HBox([nav, layers, pick], layout=W.Layout(grid_gap="18px", flex_flow="row wrap"))
        self.w_figs = W.HBox([], layout=W.Layout(flex_flow="row wrap"))
        self.widget = W.VBox([controls, self.w_notes, self.w_figs, self.w_status])
        self.widget.add_class("bevlib-viewer")

    # -- events --------------------------------------------------------------------------------
    def _on_layer(self, key, attr):
        def cb(change):
            setattr(self.state.layers[key], attr, change["new"])
            self.refresh()
        return cb

    def _on_simple(self, attr):
        def cb(change):
            setattr(self.state, attr, change["new"])
            self.refresh()
        return cb

    def _on_scene(self, change):
        toks = self.model.scenes[change["new"]]
        self._busy = True   # the slider's own change event must not redraw a second time
        try:
            self.w_sample.value = 1
            self.w_sample.max = max(1, len(toks))
        finally:
            self._busy = False
        self.state.sample_token = toks[0]
        self.refresh()

    def _on_sample(self, change):
        if self._busy:
            return
        self.state.sample_token = self.model.scenes[self.w_scene.value][change["new"] - 1]
        self.refresh()

    def _step(self, d: int):
        v = int(np.clip(self.w_sample.value + d, self.w_sample.min, self.w_sample.max))
        if v != self.w_sample.value:
            self.w_sample.value = v   # fires _on_sample

    def _on_bev_click(self, trace, points, selector):
        if not points.xs:
            return
        cell = cell_at(self.model.grid, float(points.ys[0]), float(points.xs[0]))
        if cell is not None:
            self.pick(cell)

    # -- public --------------------------------------------------------------------------------
    def pick(self, cell: tuple[int, int] | None):
        """Pick a BEV cell (row, col) on the viewer grid (None clears) and redraw.

        Raises: IndexError for a cell outside the grid.
        """
        if cell is not None:
            cell_center(self.model.grid, cell)
        self.state.picked = None if cell is None else (int(cell[0]), int(cell[1]))
        self.refresh()

    def refresh(self):
        """Recompute both figures from the state and push them to the widgets. Errors are shown in
        the status line (and logged) instead of leaving a half-drawn viewer."""
        if self._busy:
            return
        self._busy = True
        try:
            view = self.model.load(self.state.sample_token)
            for key, (cb, op) in self.w_layers.items():
                ok = view.available(key)
                cb.disabled = not ok
                op.disabled = not ok
            self.w_lidar_color.disabled = view.lidar_seg is None
            notes = [view.notes[k] for k in ("bev_gt", "bev_pred", "pseudo", "lidar") if k in view.notes]
            self.w_notes.value = "<br>".join(f"• {n}" for n in notes)
            bev = self._figure_widget(bev_figure(view, self.state, self.model.grid), self.fig_bev, "bevlib-bev-fig")
            cam = self._figure_widget(camera_figure(view, self.state, self.model.grid), self.fig_cam,
                                      "bevlib-camera-fig")
            bev.data[0].on_click(self._on_bev_click)
            old = (self.fig_bev, self.fig_cam)
            self.fig_bev, self.fig_cam = bev, cam
            self.w_figs.children = (bev, cam)
            for fw in old:
                if fw is not None:
                    fw.close()
            self.w_pick.value = self._pick_text(view)
            self.renders += 1
            self.w_status.value = (f'<span class="bevlib-render" data-render="{self.renders}">{view.scene_name}, '
                                   f'keyframe {view.index + 1}/{view.count}, {view.sample_token}</span>')
        except Exception as e:
            log.exception("viewer refresh failed")
            self.renders += 1
            self.w_status.value = (f'<span class="bevlib-render bevlib-error" data-render="{self.renders}" '
                                   f'style="color:#c00">error: {type(e).__name__}: {e}</span>')
        finally:
            self._busy = False

    @staticmethod
    def _figure_widget(fig, old, css_class: str):
        """A new FigureWidget for ``fig``, keeping the zoom / pan of ``old`` when it shows the same axes.

        Each redraw makes a new FigureWidget instead of editing the shown one: an edit reaches the
        browser as a comm message, and anywidget (which runs plotly's FigureWidget) drops every comm
        message to a model whose JavaScript took more than 2 s to initialise -- plotly's 5 MB
        bundle on a slow machine -- so in-place edits can silently never arrive. A new widget
        carries its whole state when it is created.
        """
        import plotly.graph_objects as go

        fw = go.FigureWidget(fig)
        fw.add_class(css_class)
        # Same panel layout (the BEV panel, or the same cameras): the user's zoom still means the same.
        if old is not None and [t.name for t in old.data if t.type == "image"] == \
                [t.name for t in fw.data if t.type == "image"]:
            for ax in fw.layout:
                if ax.startswith(("xaxis", "yaxis")) and ax in old.layout and old.layout[ax].range is not None:
                    fw.layout[ax].range = old.layout[ax].range
        return fw

    def _pick_text(self, view: SampleView) -> str:
        if self.state.picked is None:
            return "<i>click a BEV cell to see where it lands in the cameras</i>"
        x, y = cell_center(self.model.grid, self.state.picked)
        seen = [f"{c}: (u {uv[0]:.0f}, v {uv[1]:.0f})" for c, uv in
                zip(view.cameras, pick_projections(view.K, view.ego_T_cam, view.image_wh, self.model.grid,
                                                   self.state.picked)) if uv is not None]
        r, c = self.state.picked
        return (f"cell (row {r}, col {c}) at x = {x:+.2f} m, y = {y:+.2f} m<br>"
                + ("<br>".join(seen) if seen else "seen by no camera"))

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)
