"""Pure figure functions: (keyframe, view state, grid) -> plotly ``go.Figure``.

The panels draw the registered layers (:mod:`bevlib.viewer.layers`) that are on and available, by
``z``, and add the panel's own furniture: the BEV panel's cell heatmap (hover and clicks), camera
frustums, ego box and picked cell; the camera panel's images and picked-cell markers.
"""
from __future__ import annotations

import base64
import functools
import io
import re

import numpy as np

from ..bev import BEVGrid
from ..classes import COLORS, IGNORE, NUM_ALL
from .geometry import bev_extent_border, blend_labels, cell_center, class_name, frustum_footprints, pick_projections
from .layers import RGBA, ClassMap, Points, ValueMap, layers_to_draw
from .state import CAM_COLOURS, CAM_SHORT, EGO_BOX_XY, PICK_COLOUR, RIG_LAYOUT, SampleView, ViewState


def _rgb(c, a: float | None = None) -> str:
    return f"rgb({c[0]},{c[1]},{c[2]})" if a is None else f"rgba({c[0]},{c[1]},{c[2]},{a})"


def _class_colorscale() -> list:
    """Discrete plotly colourscale: class k (zmin = -0.5, zmax = NUM_ALL - 0.5) gets COLORS[k]."""
    cs = []
    for k, c in enumerate(COLORS):
        cs += [[k / NUM_ALL, _rgb(c)], [(k + 1) / NUM_ALL, _rgb(c)]]
    return cs


@functools.lru_cache(maxsize=32)
def colour_lut(colorscale: str) -> np.ndarray:
    """(256, 3) float32 RGB 0..255 samples of a plotly colour scale, so an image overlay and a plotly
    heatmap of the same :class:`ValueMap` agree. Raises ValueError for an unknown scale name."""
    import plotly.colors as pc

    cols = pc.sample_colorscale(pc.get_colorscale(colorscale), list(np.linspace(0.0, 1.0, 256)), colortype="rgb")
    return np.array([[float(x) for x in re.findall(r"[\d.]+", c)[:3]] for c in cols], np.float32)


def value_colours(vm: ValueMap) -> np.ndarray:
    """RGB of a :class:`ValueMap`: values (...) -> (..., 3) float32 0..255 (NaN cells get the scale's
    low end; mask them with ``np.isfinite(vm.values)``)."""
    lo, hi = vm.limits()
    t = np.clip((np.nan_to_num(np.asarray(vm.values, np.float64), nan=lo) - lo) / (hi - lo), 0.0, 1.0)
    return colour_lut(vm.colorscale)[np.round(t * 255).astype(np.int64)]


def _blend(imgs: np.ndarray, d, alpha: float, who) -> np.ndarray:
    """Blend one camera drawing ``d`` over float32 images (N, h, w, 3) with the layer's opacity."""
    n_hw = imgs.shape[:3]
    if isinstance(d, ClassMap):
        if np.shape(d.labels) != n_hw:
            raise ValueError(f"{who}: camera ClassMap must be {n_hw}, got {np.shape(d.labels)}")
        return np.stack([blend_labels(imgs[n], d.labels[n], alpha) for n in range(len(imgs))])
    if isinstance(d, ValueMap):
        if np.shape(d.values) != n_hw:
            raise ValueError(f"{who}: camera ValueMap must be {n_hw}, got {np.shape(d.values)}")
        m = np.isfinite(np.asarray(d.values, np.float64))
        imgs = imgs.copy()
        imgs[m] = (1.0 - alpha) * imgs[m] + alpha * value_colours(d)[m]
        return imgs
    if isinstance(d, RGBA):
        rgba = np.asarray(d.rgba, np.float32) / (255.0 if np.asarray(d.rgba).dtype == np.uint8 else 1.0)
        if rgba.shape != (*n_hw, 4):
            raise ValueError(f"{who}: camera RGBA must be {(*n_hw, 4)}, got {rgba.shape}")
        a = np.clip(rgba[..., 3:], 0.0, 1.0) * alpha
        return (1.0 - a) * imgs + a * (rgba[..., :3] * 255.0)
    raise TypeError(f"{who}.camera_overlay must return ClassMap, ValueMap, RGBA or None, got {type(d).__name__}")


def compose_camera_images(view: SampleView, state: ViewState, grid: BEVGrid) -> np.ndarray:
    """The camera images with the camera overlays of the layers that are on blended in, bottom to
    top (built-ins: pseudo-label, then BEV ground truth and BEV prediction rendered into the
    cameras), each with its layer's opacity; a thin line marks the border of the BEV extent in each
    image while a layer with ``marks_bev_extent`` is drawn.

    Returns: (N, h, w, 3) uint8, N = len(view.cameras).
    Raises: TypeError / ValueError naming a layer whose drawing has the wrong type or shape.
    """
    imgs = view.images.astype(np.float32)
    border = False
    for layer in layers_to_draw(view, state, "camera"):
        d = layer.camera_overlay(view, state, grid)
        if d is None:
            continue
        imgs = _blend(imgs, d, state.layer_state(layer.key).opacity, layer)
        border = border or layer.marks_bev_extent
    if border:
        b = view.cached("_border", lambda: bev_extent_border(view.K, view.ego_T_cam, view.image_wh, grid))
        imgs[b] = 0.5 * imgs[b] + 0.5 * 255.0
    return imgs.clip(0, 255).astype(np.uint8)


def _marker(p: Points, default_size: float) -> dict:
    marker = dict(size=p.size if p.size is not None else default_size)
    c = p.color
    if isinstance(c, str):
        marker["color"] = c
    elif c is not None:
        c = np.asarray(c)
        if c.ndim == 2 and c.shape[1] == 3:
            marker["color"] = [_rgb(col) for col in c]
        else:
            marker.update(color=c, colorscale=p.colorscale, cmin=p.cmin, cmax=p.cmax)
    return marker


def bev_hover_text(grid: BEVGrid, layers: dict) -> np.ndarray:
    """Hover text of every BEV cell: its metric ego position and, per layer, its class or value.

    Args:
        grid: the BEV grid (cell centres from :meth:`BEVGrid.cell_centers`).
        layers: {layer title: (H, W) integer class map, a :class:`ValueMap` of (H, W) values, or
            None}; None layers are skipped, as are a ValueMap's NaN cells.
    Returns: (H, W) object array of str, e.g.
        ``"x = +12.30 m (forward), y = -1.50 m (left)<br>cell (row 44, col 81)<br>BEV ground truth: lane"``.
    """
    xy = grid.cell_centers()
    names = np.array([class_name(c) for c in range(256)], dtype=object)
    text = np.empty((grid.H, grid.W), dtype=object)
    lines = []   # per layer: (H, W) object array of "<br>title: ..." ("" = no line)
    for t, m in layers.items():
        if m is None:
            continue
        if isinstance(m, ValueMap):
            v = np.asarray(m.values, np.float64)
            lines.append(np.array([[f"<br>{t}: {x:{m.fmt}}{m.unit}" if np.isfinite(x) else "" for x in row]
                                   for row in v], dtype=object))
        else:
            lines.append("<br>" + t + ": " + names[np.asarray(m, np.int64).clip(0, 255)])
    for i in range(grid.H):
        for j in range(grid.W):
            s = f"x = {xy[i, j, 0]:+.2f} m (forward), y = {xy[i, j, 1]:+.2f} m (left)<br>cell (row {i}, col {j})"
            for ln in lines:
                s += ln[i, j]
            text[i, j] = s
    return text


def bev_figure(view: SampleView, state: ViewState, grid: BEVGrid, height: int = 580):
    """The BEV panel of a keyframe.

    Plot axes are metric ego coordinates: the horizontal axis is y (metres, +y = left drawn on the
    left, so the map reads like a driver-up view), the vertical axis is x (metres, forward up).
    Traces, bottom to top: ``"bev cells"`` (always present; a dark heatmap that carries the hover
    text of :func:`bev_hover_text` for the map layers drawn and receives clicks), one trace per
    layer that is on and draws on the BEV panel, by ``z``, named after the layer
    (:attr:`Layer.name`; built-ins: ``"pseudo-label (on the ground)"`` -- the camera
    pseudo-labels lifted onto z = 0 by :func:`bevlib.bev.lift_to_bev` --, ``"BEV ground truth"``,
    ``"BEV prediction"``, class heatmaps with background and IGNORE transparent; ``"lidar"``, a top
    view), the frustum footprints (``"frustum CAM_*"``), ``"ego"`` and ``"picked cell"``.

    Args: view, state: the keyframe and what to show; grid: the grid of the view's BEV maps;
        height: figure height in CSS pixels (the width follows from the extent's aspect ratio).
    Returns: plotly ``go.Figure``.
    Raises: IndexError when ``state.picked`` lies outside the grid; TypeError / ValueError naming
        a layer whose drawing has the wrong type or shape.
    """
    import plotly.graph_objects as go

    xy = grid.cell_centers()
    xs, ys = xy[:, 0, 0], xy[0, :, 1]   # row centres (x, decreasing), column centres (y, decreasing)
    drawn = [(la, la.bev(view, state, grid)) for la in layers_to_draw(view, state, "bev")]
    drawn = [(la, d) for la, d in drawn if d is not None]
    for la, d in drawn:
        if isinstance(d, (ClassMap, ValueMap)):
            z = d.labels if isinstance(d, ClassMap) else d.values
            if np.shape(z) != (grid.H, grid.W):
                raise ValueError(f"{la!r}: BEV {type(d).__name__} must be {(grid.H, grid.W)}, got {np.shape(z)}")
        elif not isinstance(d, Points):
            raise TypeError(f"{la!r}.bev must return ClassMap, ValueMap, Points or None, got {type(d).__name__}")
    hover = {la.name: (d.labels if isinstance(d, ClassMap) else d) for la, d in drawn if not isinstance(d, Points)}
    fig = go.Figure()
    fig.add_trace(go.Heatmap(z=np.zeros((grid.H, grid.W)), x=ys, y=xs, colorscale=[[0, "#262626"], [1, "#262626"]],
                             showscale=False, text=bev_hover_text(grid, hover),
                             hovertemplate="%{text}<extra></extra>", name="bev cells"))
    cs = _class_colorscale()
    for la, d in drawn:
        opacity = state.layer_state(la.key).opacity
        if isinstance(d, ClassMap):
            z = d.labels.astype(np.float64)
            z[(d.labels == 0) | (d.labels == IGNORE)] = np.nan
            fig.add_trace(go.Heatmap(z=z, x=ys, y=xs, colorscale=cs, zmin=-0.5, zmax=NUM_ALL - 0.5, showscale=False,
                                     opacity=opacity, hoverinfo="skip", name=la.name))
        elif isinstance(d, ValueMap):
            lo, hi = d.limits()
            fig.add_trace(go.Heatmap(z=np.asarray(d.values, np.float64), x=ys, y=xs, colorscale=d.colorscale,
                                     zmin=lo, zmax=hi, showscale=False, opacity=opacity, hoverinfo="skip",
                                     name=la.name))
        else:
            p = np.asarray(d.xy, np.float64).reshape(-1, 2)
            fig.add_trace(go.Scatter(x=p[:, 1], y=p[:, 0], mode="markers", marker=_marker(d, 2), opacity=opacity,
                                     hoverinfo="skip", name=la.name))
    if state.show_frustums:
        for cam, poly in zip(view.cameras, frustum_footprints(view.K, view.ego_T_cam, view.image_wh, grid)):
            if poly is None:
                continue
            sel = state.camera in ("all", cam)
            c = CAM_COLOURS.get(cam, (255, 255, 255))
            fig.add_trace(go.Scatter(x=poly[:, 1], y=poly[:, 0], mode="lines", fill="toself",
                                     fillcolor=_rgb(c, 0.07 if sel else 0.0),
                                     line=dict(color=_rgb(c, 0.9 if sel else 0.35), width=2 if sel else 1),
                                     hoverinfo="skip", name=f"frustum {cam}"))
            cx, cy = poly[:-1].mean(0)
            fig.add_annotation(x=cy, y=cx, text=CAM_SHORT.get(cam, cam), showarrow=False,
                               font=dict(color=_rgb(c), size=11))
    fig.add_trace(go.Scatter(x=EGO_BOX_XY[:, 1], y=EGO_BOX_XY[:, 0], mode="lines", fill="toself",
                             fillcolor="rgba(255,255,255,0.85)", line=dict(color="white", width=1),
                             hoverinfo="skip", name="ego"))
    if state.picked is not None:
        px, py = cell_center(grid, state.picked)
        fig.add_trace(go.Scatter(x=[py], y=[px], mode="markers", hoverinfo="skip", name="picked cell",
                                 marker=dict(symbol="square-open", size=12, color=PICK_COLOUR, line=dict(width=3))))
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
    PNG data URI; above it the point traces of the layers that are on (``f"{layer.name} {camera}"``,
    e.g. ``"lidar CAM_FRONT"``) and ``"picked CAM_*"`` markers where the picked BEV cell's centre
    projects inside the image.

    Args:
        scale: display magnification; default 1 for all six, 2 for a single camera.
    Returns: plotly ``go.Figure``.
    Raises: ValueError for an unknown ``state.camera``; TypeError / ValueError naming a layer whose
        drawing has the wrong type or shape.
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
    point_layers = layers_to_draw(view, state, "camera")
    picks = pick_projections(view.K, view.ego_T_cam, view.image_wh, grid, state.picked) if state.picked else None
    for c in shown:
        n = view.cameras.index(c)
        r, k = pos[c]
        fig.add_trace(go.Image(source=_png_uri(imgs[n]), name=c,
                               hovertemplate="u=%{x}, v=%{y}<extra>" + c + "</extra>"), row=r, col=k)
        for la in point_layers:
            pts = la.camera_points(view, state, grid, n)
            if pts is None:
                continue
            if not isinstance(pts, Points):
                raise TypeError(f"{la!r}.camera_points must return Points or None, got {type(pts).__name__}")
            uv = np.asarray(pts.xy, np.float64).reshape(-1, 2)
            hov = (dict(text=pts.text, hovertemplate="%{text}<extra>" + (pts.label or la.title) + "</extra>")
                   if pts.text is not None else dict(hoverinfo="skip"))
            fig.add_trace(go.Scatter(x=uv[:, 0], y=uv[:, 1], mode="markers", marker=_marker(pts, 3 if single else 2.5),
                                     opacity=state.layer_state(la.key).opacity, name=f"{la.name} {c}", **hov),
                          row=r, col=k)
        if picks is not None and picks[n] is not None:
            u, v = picks[n]
            fig.add_trace(go.Scatter(x=[u], y=[v], mode="markers", name=f"picked {c}", hoverinfo="skip",
                                     marker=dict(symbol="circle-open", size=16, color=PICK_COLOUR,
                                                 line=dict(width=3))), row=r, col=k)
            fig.add_trace(go.Scatter(x=[u], y=[v], mode="markers", name=f"picked {c} centre", hoverinfo="skip",
                                     marker=dict(symbol="cross-thin-open", size=10, color=PICK_COLOUR,
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
