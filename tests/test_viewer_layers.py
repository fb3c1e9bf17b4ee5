"""Viewer layers are pluggable: layers defined here, outside bevlib, register with
bevlib.viewer.register_layer and show up as toggles and in both figures without any core edit.

Two layers a later paper might add: a continuous BEV heatmap (range from the ego, rendered into the
cameras too) and a per-point-value LiDAR layer (points coloured by height). Most tests use a
hand-made keyframe on the real nuScenes rig; the widget test runs on the tiny embedded world.
"""
import importlib.util

import numpy as np
import pytest

from bevlib import geometry as geo
from bevlib.bev import BEVGrid
from bevlib.classes import class_index
from bevlib.data.nuscenes_data import CAMERAS
from bevlib.data.world import NUSCENES_RIG, RIG_IMAGE_WH
from bevlib.viewer import (RGBA, BEVViewer, Layer, Points, SampleView, ValueMap, ViewerModel, ViewState,
                           bev_figure, camera_figure, compose_camera_images, get_layer, project_points,
                           register_layer, registered_layers, render_values_to_cameras, unregister_layer,
                           value_colours)

WH = (400, 225)
GRID = BEVGrid()
LANE = class_index("lane")
FRONT = CAMERAS.index("CAM_FRONT")
needs_widgets = pytest.mark.skipif(importlib.util.find_spec("anywidget") is None,
                                   reason="anywidget is not installed (plotly's FigureWidget needs it)")


# ------------------------------------------------------------------------------------------------
# Two layers from outside the package
# ------------------------------------------------------------------------------------------------

def range_map(grid: BEVGrid, max_m: float = 25.0) -> np.ndarray:
    """(H, W) float: distance of each cell centre from the ego origin, metres; NaN beyond max_m."""
    xy = grid.cell_centers()
    r = np.hypot(xy[..., 0], xy[..., 1])
    return np.where(r <= max_m, r, np.nan)


class RangeHeatmap(Layer):
    """A continuous BEV heatmap: drawn in the BEV panel and rendered into the cameras."""

    key, title, panels = "range_heat", "range heatmap", ("camera", "bev")
    default_visible, default_opacity, marks_bev_extent = True, 0.7, True

    def load(self, model, view):
        view.extras[self.key] = range_map(model.grid)

    def _values(self, view):
        return view.extras[self.key]

    def bev(self, view, state, grid):
        return ValueMap(self._values(view), colorscale="Viridis", vmin=0.0, vmax=30.0, unit=" m")

    def camera_overlay(self, view, state, grid):
        cp = view.cached(self.key, lambda: render_values_to_cameras(self._values(view), view.K, view.ego_T_cam,
                                                                   view.image_wh, grid))
        return ValueMap(cp, colorscale="Viridis", vmin=0.0, vmax=30.0)


class LidarHeight(Layer):
    """LiDAR points coloured by a per-point value (height above the ground), in both panels."""

    key, title, z = "lidar_height", "LiDAR height", 45.0
    default_visible, default_opacity = True, 0.9

    def available(self, view):
        return view.lidar_xyz is not None

    def camera_points(self, view, state, grid, n):
        uv, _, idx = project_points(view.K[n], view.ego_T_cam[n], view.image_wh, view.lidar_xyz)
        z = view.lidar_xyz[idx, 2]
        return Points(uv, color=z, colorscale="Viridis", cmin=-0.5, cmax=2.0, text=[f"z = {v:+.2f} m" for v in z])

    def bev(self, view, state, grid):
        p = view.lidar_xyz[grid.contains(view.lidar_xyz[:, :2])]
        return Points(p[:, :2], color=p[:, 2], colorscale="Viridis", cmin=-0.5, cmax=2.0, size=3)


@pytest.fixture
def plug():
    """register_layer for one test: every layer it adds is unregistered afterwards."""
    added = []

    def add(layer, **kw):
        register_layer(layer, **kw)
        added.append(layer.key)
        return layer
    yield add
    for key in added:
        try:
            unregister_layer(key)
        except KeyError:
            pass


def _view():
    """A hand-made keyframe: grey images on the real rig, a lane stripe ahead as BEV ground truth,
    and LiDAR points on the ground and on a 1.5 m high wall 12 m ahead."""
    K = np.stack([geo.scale_intrinsics(np.array(NUSCENES_RIG[c]["camera_intrinsic"]), RIG_IMAGE_WH, WH)
                  for c in CAMERAS])
    T = np.stack([geo.transform_from(NUSCENES_RIG[c]["translation"], NUSCENES_RIG[c]["rotation"]) for c in CAMERAS])
    gt = np.zeros((GRID.H, GRID.W), np.uint8)
    xy = GRID.cell_centers()
    gt[(np.abs(xy[..., 1] - 1.0) < 0.3) & (xy[..., 0] > 5) & (xy[..., 0] < 25)] = LANE
    view = SampleView("tok0123456789", "scene-test", 0, 1, CAMERAS, np.full((6, WH[1], WH[0], 3), 120, np.uint8),
                      K, T, bev_gt=gt)
    a = np.linspace(0, 2 * np.pi, 1000, endpoint=False)
    ground = np.stack([10 * np.cos(a), 10 * np.sin(a), np.zeros_like(a)], 1)
    ys = np.linspace(-4, 4, 200)
    wall = np.stack([np.full_like(ys, 12.0), ys, np.full_like(ys, 1.5)], 1)
    view.lidar_xyz = np.concatenate([ground, wall])
    view.extras["range_heat"] = range_map(GRID)
    return view


def _trace(fig, name):
    hits = [t for t in fig.data if t.name == name]
    return hits[0] if hits else None


# ------------------------------------------------------------------------------------------------
# Registry
# ------------------------------------------------------------------------------------------------

def test_builtin_layers_are_registered_instances():
    keys = [la.key for la in registered_layers()]
    assert keys[:4] == ["bev_gt", "bev_pred", "pseudo", "lidar"]             # the toggle order
    assert [la.key for la in sorted(registered_layers(), key=lambda la: la.z)][:4] == \
        ["pseudo", "bev_gt", "bev_pred", "lidar"]                            # the drawing order
    assert all(isinstance(get_layer(k), Layer) for k in keys)
    st = ViewState("tok")
    assert (st.layers["bev_gt"].visible, st.layers["bev_gt"].opacity) == (True, 0.6)
    assert (st.layers["lidar"].visible, st.layers["lidar"].opacity) == (False, 0.8)
    assert [la.key for la in registered_layers("bev")] == keys               # every built-in draws in BEV


def test_register_layer_checks_and_replaces(plug):
    plug(RangeHeatmap())
    assert get_layer("range_heat").title == "range heatmap"
    assert [la.key for la in registered_layers()][-1] == "range_heat"
    plug(RangeHeatmap())                                  # the same class again (a re-run notebook cell)

    class Other(Layer):
        key, title = "range_heat", "something else"
    with pytest.raises(ValueError, match="already registered"):
        register_layer(Other())
    plug(Other(), replace=True)
    assert get_layer("range_heat").title == "something else"
    with pytest.raises(ValueError, match="key must match"):
        register_layer(Layer(key="Bad Key", title="x"))
    with pytest.raises(ValueError, match="panels"):
        register_layer(Layer(key="p", title="x", panels=("range_view",)))
    with pytest.raises(ValueError, match="default_opacity"):
        register_layer(Layer(key="p", title="x", default_opacity=1.5))
    with pytest.raises(TypeError, match="no layer attribute 'colour'"):
        Layer(key="p", title="x", colour="red")
    with pytest.raises(TypeError, match="must be a bevlib.viewer.Layer"):
        register_layer(object())
    with pytest.raises(KeyError, match="no viewer layer 'nope'"):
        unregister_layer("nope")


# ------------------------------------------------------------------------------------------------
# A BEV heatmap layer
# ------------------------------------------------------------------------------------------------

def test_heatmap_layer_lands_in_the_bev_panel(plug):
    plug(RangeHeatmap())
    view = _view()
    st = ViewState(view.sample_token)
    assert st.layers["range_heat"].visible and st.layer_on("range_heat")
    fig = bev_figure(view, st, GRID)
    names = [t.name for t in fig.data]
    heat = _trace(fig, "range heatmap")
    assert heat is not None and heat.type == "heatmap" and heat.opacity == pytest.approx(0.7)
    assert (heat.zmin, heat.zmax, heat.colorscale[0][1]) == (0.0, 30.0, "#440154")     # Viridis
    want = range_map(GRID)
    assert np.array_equal(np.asarray(heat.z, np.float64), want, equal_nan=True)
    # drawn by z: above the BEV ground truth (20), below LiDAR (40); the cell trace stays lowest
    assert names[0] == "bev cells" and names.index("BEV ground truth") < names.index("range heatmap")
    # the hover of a cell gives its value, and nothing where the map has no value
    text = _trace(fig, "bev cells").text
    i, j = GRID.H // 2 - 10, GRID.W // 2
    assert text[i][j].endswith(f"range heatmap: {want[i, j]:.2f} m")
    assert "range heatmap" not in text[0][0] and np.isnan(want[0, 0])
    # off: gone from the figure and the hover
    st.layers["range_heat"].visible = False
    fig = bev_figure(view, st, GRID)
    assert _trace(fig, "range heatmap") is None and "range heatmap" not in _trace(fig, "bev cells").text[i][j]


def test_heatmap_layer_is_rendered_into_the_cameras(plug):
    plug(RangeHeatmap())
    view = _view()
    st = ViewState(view.sample_token)
    st.layers["bev_gt"].visible = False
    with_heat = compose_camera_images(view, st, GRID)
    # a ground point 10 m ahead shows the heatmap's value there (10 m), blended with opacity 0.7
    uv, _, _ = geo.project(view.K[FRONT], geo.invert(view.ego_T_cam[FRONT]), np.array([[10.0, 0.0, 0.0]]))
    u, v = np.round(uv[0]).astype(int)
    cp = render_values_to_cameras(range_map(GRID), view.K, view.ego_T_cam, WH, GRID)
    assert cp.shape == (6, WH[1], WH[0]) and abs(cp[FRONT, v, u] - 10.0) < 0.3
    assert np.isnan(cp[FRONT, 0, 0])                                         # sky: no ground hit
    colour = value_colours(ValueMap(cp[FRONT, v, u], vmin=0.0, vmax=30.0))
    expected = (0.3 * 120 + 0.7 * colour).clip(0, 255).astype(np.uint8)
    assert np.abs(with_heat[FRONT, v, u].astype(int) - expected.astype(int)).max() <= 1
    assert (with_heat[FRONT, 0, 0] == 120).all()                            # sky untouched
    # the camera figure's image changes with the layer's toggle and opacity
    src = _trace(camera_figure(view, st, GRID), "CAM_FRONT").source
    st.layers["range_heat"].opacity = 0.2
    src_faint = _trace(camera_figure(view, st, GRID), "CAM_FRONT").source
    st.layers["range_heat"].visible = False
    src_off = _trace(camera_figure(view, st, GRID), "CAM_FRONT").source
    assert len({src, src_faint, src_off}) == 3
    assert (compose_camera_images(view, st, GRID) == 120).all()              # nothing on: the bare images


# ------------------------------------------------------------------------------------------------
# A per-point-value LiDAR layer, an RGBA overlay, bad drawings
# ------------------------------------------------------------------------------------------------

def test_point_value_layer_lands_in_both_panels(plug):
    plug(LidarHeight())
    view = _view()
    st = ViewState(view.sample_token)
    cams = camera_figure(view, st, GRID)
    tr = _trace(cams, "LiDAR height CAM_FRONT")
    assert tr is not None and tr.opacity == pytest.approx(0.9) and tr.marker.size == 2.5
    # the wall (z = 1.5 m, 12 m ahead) and the ground ring (z = 0, 10 m) are both in CAM_FRONT
    assert set(np.round(tr.marker.color, 3)) == {0.0, 1.5}
    assert tr.marker.colorscale[0][1] == "#440154" and (tr.marker.cmin, tr.marker.cmax) == (-0.5, 2.0)
    k = int(np.argmax(tr.marker.color))
    uv, _, _ = geo.project(view.K[FRONT], geo.invert(view.ego_T_cam[FRONT]), np.array([[12.0, 0.0, 1.5]]))
    assert tr.text[k] == "z = +1.50 m" and abs(tr.y[k] - uv[0, 1]) < 1.0   # the wall's row
    assert "<extra>LiDAR height</extra>" in tr.hovertemplate
    img = _trace(cams, "CAM_FRONT")
    assert (tr.xaxis, tr.yaxis) == (img.xaxis, img.yaxis)
    assert _trace(cams, "LiDAR height CAM_BACK") is not None                  # the ring is all around
    bev = _trace(bev_figure(view, st, GRID), "LiDAR height")
    assert bev is not None and bev.type == "scatter" and bev.marker.size == 3 and bev.hoverinfo == "skip"
    assert np.allclose(bev.x, view.lidar_xyz[:, 1]) and np.allclose(bev.y, view.lidar_xyz[:, 0])
    # no LiDAR in the keyframe: not available, not drawn
    view.lidar_xyz = None
    assert not view.available("lidar_height")
    assert _trace(camera_figure(view, st, GRID), "LiDAR height CAM_FRONT") is None


def test_rgba_overlay_and_bad_drawings(plug):
    class Boundaries(Layer):   # superpixel-like boundaries: an RGBA overlay on the cameras only
        key, title, panels, default_visible, default_opacity = "boundaries", "boundaries", ("camera",), True, 1.0

        def available(self, view):
            return True

        def camera_overlay(self, view, state, grid):
            rgba = np.zeros((len(view.cameras), *view.images.shape[1:3], 4), np.uint8)
            rgba[:, ::20, :] = (255, 0, 0, 255)
            return RGBA(rgba)
    plug(Boundaries())
    view = _view()
    st = ViewState(view.sample_token)
    st.layers["bev_gt"].visible = False
    imgs = compose_camera_images(view, st, GRID)
    assert (imgs[:, ::20] == (255, 0, 0)).all() and (imgs[:, 1::20] == 120).all()
    assert _trace(bev_figure(view, st, GRID), "boundaries") is None          # camera-only
    st.layers["boundaries"].opacity = 0.5
    assert (compose_camera_images(view, st, GRID)[:, ::20] == (187, 60, 60)).all()

    class Broken(Layer):
        key, title, default_visible = "broken", "broken", True

        def available(self, view):
            return True

        def bev(self, view, state, grid):
            return np.zeros((grid.H, grid.W))         # a bare array, not a drawing
    plug(Broken())
    with pytest.raises(TypeError, match="'broken'.*ClassMap, ValueMap, Points"):
        bev_figure(view, st, GRID)


# ------------------------------------------------------------------------------------------------
# The widget builds its toggles from the registry
# ------------------------------------------------------------------------------------------------

def _rows(widget):
    out, stack = {}, [widget]
    while stack:
        w = stack.pop()
        for c in getattr(w, "_dom_classes", ()):
            if c.startswith("bevlib-layer-"):
                out[c[len("bevlib-layer-"):]] = w
        stack.extend(getattr(w, "children", ()))
    return out


@needs_widgets
def test_registered_layer_is_a_toggle_of_the_viewer(plug, tiny_world):
    class Absent(Layer):   # a layer whose data this dataroot lacks: disabled toggle, note shown
        key, title = "superpixels", "superpixels"

        def load(self, model, view):
            view.notes[self.key] = "superpixels absent: none cached for this dataroot"

    m = ViewerModel(tiny_world, "v1.0-mini")
    cached = m.load(m.first_sample())                 # loaded before the layers below existed
    plug(RangeHeatmap())
    plug(Absent())
    assert m.load(cached.sample_token) is cached and cached.extras["range_heat"].shape == (m.grid.H, m.grid.W)

    vw = BEVViewer(tiny_world, "v1.0-mini")
    rows = _rows(vw.widget)
    assert list(vw.w_layers)[-2:] == ["range_heat", "superpixels"] and {"range_heat", "superpixels"} <= set(rows)
    cb, op = vw.w_layers["range_heat"]
    assert cb.description == "range heatmap" and cb.value and op.value == pytest.approx(0.7)
    assert rows["range_heat"].children == (cb, op) and not cb.disabled
    assert vw.w_layers["superpixels"][0].disabled and "superpixels absent" in vw.w_notes.value
    assert "error" not in vw.w_status.value
    assert _trace(vw.fig_bev, "range heatmap") is not None
    n, src = vw.renders, vw.fig_cam.data[0].source
    cb.value = False                                   # the checkbox drives the state and redraws
    assert vw.renders == n + 1 and not vw.state.layers["range_heat"].visible
    assert _trace(vw.fig_bev, "range heatmap") is None and vw.fig_cam.data[0].source != src
    op.value = 0.3
    cb.value = True
    assert _trace(vw.fig_bev, "range heatmap").opacity == pytest.approx(0.3)
