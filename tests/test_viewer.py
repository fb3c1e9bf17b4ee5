"""The BEV viewer's model layer (bevlib.viewer): hover text, picking, frustums, layers, data access.

Most tests build a keyframe by hand from the real nuScenes rig (no dataset needed); the rest run on
a tiny embedded world and on the real keyframe in ../shared (skipped when absent).
"""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import shapely

from bevlib import geometry as geo
from bevlib.bev import BEVGrid
from bevlib.classes import IGNORE, class_index
from bevlib.data.nuscenes_data import CAMERAS
from bevlib.data.world import NUSCENES_RIG, RIG_IMAGE_WH, WorldConfig, ensure_world
from bevlib.params import ParameterError
from bevlib import viewer as V

ROOT = Path(__file__).resolve().parents[1]
KEYFRAME = ROOT.parent / "shared" / "nuscenes-keyframe"
WH = (400, 225)
GRID = BEVGrid()
LANE, BOUNDARY = class_index("lane"), class_index("boundary")
needs_widgets = pytest.mark.skipif(importlib.util.find_spec("anywidget") is None,
                                   reason="anywidget is not installed (plotly's FigureWidget needs it)")


def _rig(wh=WH):
    K = np.stack([geo.scale_intrinsics(np.array(NUSCENES_RIG[c]["camera_intrinsic"]), RIG_IMAGE_WH, wh) for c in CAMERAS])
    T = np.stack([geo.transform_from(NUSCENES_RIG[c]["translation"], NUSCENES_RIG[c]["rotation"]) for c in CAMERAS])
    return K, T


def _lane_map(grid=GRID):
    """A lane stripe 1 m left of the ego from 5 m to 25 m ahead, and a boundary stripe behind."""
    lab = np.zeros((grid.H, grid.W), np.uint8)
    xy = grid.cell_centers()
    lab[(np.abs(xy[..., 1] - 1.0) < 0.3) & (xy[..., 0] > 5) & (xy[..., 0] < 25)] = LANE
    lab[(np.abs(xy[..., 1] + 3.0) < 0.3) & (xy[..., 0] < -5)] = BOUNDARY
    return lab


def _view(with_lidar=True):
    """A hand-made keyframe: grey images, the real rig, the lane map as BEV ground truth, a LiDAR
    ring of ground points."""
    K, T = _rig()
    rng = np.random.default_rng(0)
    images = np.full((6, WH[1], WH[0], 3), 110, np.uint8) + rng.integers(0, 20, (6, WH[1], WH[0], 3), dtype=np.uint8)
    view = V.SampleView("tok0123456789", "scene-test", 0, 2, CAMERAS, images, K, T, bev_gt=_lane_map(),
                        lidarseg_colors=np.full((256, 3), 200, np.uint8))
    if with_lidar:
        a = np.linspace(0, 2 * np.pi, 2000, endpoint=False)
        r = np.repeat([6.0, 10.0, 15.0, 20.0], 500)
        view.lidar_xyz = np.stack([r * np.cos(a), r * np.sin(a), np.zeros_like(a)], 1)
        view.lidar_seg = np.full(len(a), 24, np.uint8)
    return view


def _trace(fig, name):
    hits = [t for t in fig.data if t.name == name]
    return hits[0] if hits else None


# ------------------------------------------------------------------------------------------------
# BEV hover, picking, frustums
# ------------------------------------------------------------------------------------------------

def test_bev_hover_text_gives_class_and_metric_position():
    i, j = 10, 20   # x = 30 - 10.5 * 0.4 = 25.8 m, y = 15 - 20.5 * 0.2 = 10.9 m
    lab = np.zeros((GRID.H, GRID.W), np.uint8)
    lab[i, j] = LANE
    lab[i + 1, j] = IGNORE
    text = V.bev_hover_text(GRID, {"BEV ground truth": lab, "absent": None})
    assert text.shape == (GRID.H, GRID.W)
    assert "x = +25.80 m (forward), y = +10.90 m (left)" in text[i, j]
    assert f"cell (row {i}, col {j})" in text[i, j]
    assert text[i, j].endswith("BEV ground truth: lane")
    assert text[i, j + 1].endswith("BEV ground truth: background")
    assert text[i + 1, j].endswith("BEV ground truth: unlabelled")
    assert "absent" not in text[i, j]
    # rear-right corner: negative coordinates
    assert "x = -29.80 m (forward), y = -14.90 m (left)" in text[-1, -1]


def test_bev_figure_heatmap_is_in_metric_ego_coordinates():
    view = _view()
    st = V.ViewState(view.sample_token)
    fig = V.bev_figure(view, st, GRID)
    base = _trace(fig, "bev cells")
    assert fig.data[0].name == "bev cells"   # lowest trace: the others skip hover, so it gets hover and clicks
    xy = GRID.cell_centers()
    i, j = 30, 55            # plot x is ego y (columns), plot y is ego x (rows)
    assert np.isclose(base.x[j], xy[i, j, 1]) and np.isclose(base.y[i], xy[i, j, 0])
    ci, cj = np.argwhere(view.bev_gt == LANE)[0]
    assert base.text[ci][cj].endswith("BEV ground truth: lane")
    assert f"x = {xy[ci, cj, 0]:+.2f} m" in base.text[ci][cj]
    gt = _trace(fig, "BEV ground truth")
    assert gt.z[ci][cj] == LANE and np.isnan(gt.z[0][0])   # background transparent
    # left (+y) is drawn on the left, forward (+x) up
    assert tuple(fig.layout.xaxis.range) == (GRID.y_max, GRID.y_min)
    assert tuple(fig.layout.yaxis.range) == (GRID.x_min, GRID.x_max)
    # cell lookup from a click position is the inverse of the cell centres
    assert V.cell_at(GRID, xy[ci, cj, 0] + 0.1, xy[ci, cj, 1] - 0.05) == (ci, cj)
    assert V.cell_at(GRID, 31.0, 0.0) is None


def test_picked_cell_marker_lands_where_project_says():
    view = _view()
    cell = V.cell_at(GRID, 12.0, 1.5)
    x, y = GRID.cell_centers()[cell]
    st = V.ViewState(view.sample_token, picked=cell)
    fig = V.camera_figure(view, st, GRID)
    seen = []
    for n, cam in enumerate(CAMERAS):
        uv, _, front = geo.project(view.K[n], geo.invert(view.ego_T_cam[n]), np.array([[x, y, 0.0]]))
        inside = front[0] and 0 <= uv[0, 0] < WH[0] and 0 <= uv[0, 1] < WH[1]
        tr = _trace(fig, f"picked {cam}")
        assert (tr is not None) == bool(inside), cam
        if inside:
            seen.append(cam)
            assert np.allclose([tr.x[0], tr.y[0]], uv[0], atol=1e-6)
            # the marker is drawn on that camera's image subplot
            img = _trace(fig, cam)
            assert (tr.xaxis, tr.yaxis) == (img.xaxis, img.yaxis)
    assert "CAM_FRONT" in seen and "CAM_BACK" not in seen
    picked = _trace(V.bev_figure(view, st, GRID), "picked cell")
    assert np.allclose([picked.x[0], picked.y[0]], [y, x])
    # single-camera view: the same pixel, on the only subplot
    st.camera = "CAM_FRONT"
    tr = _trace(V.camera_figure(view, st, GRID), "picked CAM_FRONT")
    assert np.allclose([tr.x[0], tr.y[0]], V.pick_projections(view.K, view.ego_T_cam, WH, GRID, cell)[1])


def test_rendered_bev_lands_where_project_says():
    view = _view()
    cp = V.render_labels_to_cameras(view.bev_gt, view.K, view.ego_T_cam, WH, GRID)
    assert cp.shape == (6, WH[1], WH[0]) and cp.dtype == np.uint8
    n = CAMERAS.index("CAM_FRONT")
    xy = GRID.cell_centers()
    for x in (8.0, 12.0, 18.0):
        r, c = V.cell_at(GRID, x, 1.0)
        assert view.bev_gt[r, c] == LANE
        uv, _, _ = geo.project(view.K[n], geo.invert(view.ego_T_cam[n]), np.array([[*xy[r, c], 0.0]]))
        u, v = np.round(uv[0]).astype(int)
        assert cp[n, v, u] == LANE, (x, u, v)
    assert (cp[n] == LANE).sum() > 50
    assert not (cp[n] == BOUNDARY).any()          # the boundary stripe is behind the car
    assert (cp[CAMERAS.index("CAM_BACK")] == BOUNDARY).sum() > 20
    assert (cp[n, 0] == IGNORE).all()             # sky: no ground hit


def test_frustums_point_the_right_way():
    K, T = _rig()
    polys = dict(zip(CAMERAS, V.frustum_footprints(K, T, WH, GRID)))
    for cam, p in polys.items():
        assert p is not None and p.shape[1] == 2, cam
        assert np.allclose(p[0], p[-1])
        assert (p[:, 0] >= GRID.x_min - 1e-6).all() and (p[:, 0] <= GRID.x_max + 1e-6).all()
        assert (p[:, 1] >= GRID.y_min - 1e-6).all() and (p[:, 1] <= GRID.y_max + 1e-6).all()
    front, back = polys["CAM_FRONT"], polys["CAM_BACK"]
    assert (front[:, 0] > 0).all() and front[:, 0].mean() > 5
    assert (back[:, 0] < 0).all()
    assert shapely.Polygon(polys["CAM_FRONT_LEFT"]).centroid.y > 0
    assert shapely.Polygon(polys["CAM_FRONT_RIGHT"]).centroid.y < 0
    assert shapely.Polygon(polys["CAM_BACK_LEFT"]).centroid.y > 0
    assert shapely.Polygon(polys["CAM_BACK_RIGHT"]).centroid.y < 0
    # what a camera sees on the ground lies inside its footprint, and nothing far outside it does
    for n, cam in enumerate(CAMERAS):
        poly = shapely.Polygon(polys[cam]).buffer(0.05)
        for u, v in ((WH[0] / 2, WH[1] - 1), (5, WH[1] - 5), (WH[0] - 5, WH[1] - 5), (WH[0] / 2, WH[1] * 0.6)):
            ray = T[n, :3, :3] @ np.linalg.inv(K[n]) @ np.array([u, v, 1.0])
            if ray[2] >= 0:
                continue
            hit = T[n, :3, 3] - T[n, 2, 3] / ray[2] * ray
            if GRID.contains(hit[:2]):
                assert poly.contains(shapely.Point(hit[0], hit[1])), (cam, u, v)
    behind = shapely.Point(-10.0, 0.0)
    assert not shapely.Polygon(front).contains(behind)


# ------------------------------------------------------------------------------------------------
# Layers
# ------------------------------------------------------------------------------------------------

def test_layer_toggles_and_opacity_change_the_figures():
    view = _view()
    st = V.ViewState(view.sample_token)
    cam0, bev0 = V.camera_figure(view, st, GRID), V.bev_figure(view, st, GRID)
    front_src = _trace(cam0, "CAM_FRONT").source
    assert _trace(bev0, "BEV ground truth") is not None
    assert _trace(bev0, "lidar") is None and _trace(cam0, "lidar CAM_FRONT") is None

    st.layers["bev_gt"].visible = False
    cam1, bev1 = V.camera_figure(view, st, GRID), V.bev_figure(view, st, GRID)
    assert _trace(cam1, "CAM_FRONT").source != front_src     # the rendered BEV left the image
    assert _trace(bev1, "BEV ground truth") is None
    assert "BEV ground truth" not in _trace(bev1, "bev cells").text[0][0]
    st.layers["bev_gt"].visible = True

    st.layers["bev_gt"].opacity = 0.2
    cam2, bev2 = V.camera_figure(view, st, GRID), V.bev_figure(view, st, GRID)
    assert _trace(cam2, "CAM_FRONT").source not in (front_src, _trace(cam1, "CAM_FRONT").source)
    assert _trace(bev2, "BEV ground truth").opacity == pytest.approx(0.2)

    st.layers["lidar"].visible = True
    cam3, bev3 = V.camera_figure(view, st, GRID), V.bev_figure(view, st, GRID)
    lid = _trace(cam3, "lidar CAM_FRONT")
    assert lid is not None and len(lid.x) > 10
    assert _trace(bev3, "lidar") is not None
    assert np.isclose(lid.opacity, st.layers["lidar"].opacity)
    st.lidar_color = "lidarseg"
    assert isinstance(_trace(V.camera_figure(view, st, GRID), "lidar CAM_FRONT").marker.color[0], str)

    st.show_frustums = False
    assert _trace(V.bev_figure(view, st, GRID), "frustum CAM_FRONT") is None
    assert _trace(bev3, "frustum CAM_FRONT") is not None

    # a layer without data (no prediction here) is simply not drawn
    st.layers["bev_pred"].visible = True
    assert _trace(V.bev_figure(view, st, GRID), "BEV prediction") is None


def test_camera_panel_uses_the_rig_layout():
    view = _view(with_lidar=False)
    fig = V.camera_figure(view, V.ViewState(view.sample_token), GRID)
    dom = {}
    for cam in CAMERAS:
        tr = _trace(fig, cam)
        xa = fig.layout["xaxis" + tr.xaxis[1:]]
        ya = fig.layout["yaxis" + tr.yaxis[1:]]
        dom[cam] = (np.mean(xa.domain), np.mean(ya.domain))
        assert tuple(ya.range) == (WH[1] - 0.5, -0.5)     # v grows downwards
    for left, right in (("CAM_FRONT_LEFT", "CAM_FRONT"), ("CAM_FRONT", "CAM_FRONT_RIGHT"),
                        ("CAM_BACK_LEFT", "CAM_BACK"), ("CAM_BACK", "CAM_BACK_RIGHT")):
        assert dom[left][0] < dom[right][0]
    for front, back in zip(CAMERAS[:3], CAMERAS[3:]):
        assert dom[front][1] > dom[back][1] and np.isclose(dom[front][0], dom[back][0])
    with pytest.raises(ValueError, match="camera must be"):
        V.camera_figure(view, V.ViewState(view.sample_token, camera="CAM_SIDE"), GRID)


def test_resample_labels_between_grids():
    xy = GRID.cell_centers()
    lab = np.where((np.abs(xy[..., 1] - 1.0) < 1.0) & (xy[..., 0] > 5) & (xy[..., 0] < 25), LANE, 0).astype(np.uint8)
    coarse = GRID.with_shape(60, 30)
    out = V.resample_labels(lab, GRID, coarse)
    assert out.shape == (60, 30)
    cxy = coarse.cell_centers()
    want = (np.abs(cxy[..., 1] - 1.0) < 1.0) & (cxy[..., 0] > 5) & (cxy[..., 0] < 25)
    assert ((out == LANE) == want).all()
    wider = BEVGrid(-40, 40, -20, 20, 80, 40)
    out2 = V.resample_labels(lab, GRID, wider)
    assert out2[0, 0] == IGNORE and out2[40, 20] != IGNORE


# ------------------------------------------------------------------------------------------------
# Data: embedded world, checkpoint, real keyframe, parameters
# ------------------------------------------------------------------------------------------------

WORLD = WorldConfig(seed=0, n_scenes=2, keyframes_per_scene=3, image_wh=(320, 180), val_scenes=1)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return ensure_world(tmp_path_factory.mktemp("viewer_world"), WORLD, progress=False)


@pytest.fixture(scope="module")
def world_model(world):
    return V.ViewerModel(world, WORLD.version)


def test_world_keyframe_has_every_layer(world_model):
    m = world_model
    assert [len(t) for t in m.scenes.values()] == [3, 3]
    st = m.default_state()
    view = m.load(st.sample_token)
    assert view.images.shape == (6, WH[1], WH[0], 3)
    assert view.bev_gt is not None and {LANE, BOUNDARY} <= set(np.unique(view.bev_gt).tolist())
    assert view.pseudo is not None and view.pseudo.shape == (6, WH[1], WH[0])
    assert view.lidar_xyz is not None and view.lidar_seg is not None and len(view.lidar_seg) == len(view.lidar_xyz)
    assert "BEV prediction absent" in view.notes["bev_pred"]
    assert m.load(st.sample_token) is view                      # cached
    # the GT rendered into the cameras overlaps the pseudo-labels' lane / boundary pixels
    cp = V.render_labels_to_cameras(view.bev_gt, view.K, view.ego_T_cam, view.image_wh, m.grid)
    road = np.isin(view.pseudo, [LANE, BOUNDARY])
    assert (np.isin(cp, [LANE, BOUNDARY]) & road).sum() > 0.2 * road.sum()
    st.layers["pseudo"].visible = st.layers["lidar"].visible = True
    names = {t.name for t in m.bev_figure(st).data}
    assert {"bev cells", "BEV ground truth", "pseudo-label (on the ground)", "lidar", "ego"} <= names
    assert "lidar CAM_BACK" in {t.name for t in m.camera_figure(st).data}


def _tiny_checkpoint(tmp_path, with_config: bool, **run_cfg):
    import torch

    from bevlib.models.registry import build_model
    from bevlib.train.checkpoint import save_checkpoint

    cfg = {"backbone": "tiny", "backbone_weights": None, "embed_dim": 16, "num_layers": 1,
           "query_hw": [15, 8], "out_hw": [60, 30]}
    torch.manual_seed(0)
    run = tmp_path / "run"
    ck = save_checkpoint(run / "checkpoints" / "step_00000001.pt",
                         {"model": build_model("bevformer", cfg).state_dict()})
    if with_config:
        (run / "config.json").write_text(json.dumps({
            "model": cfg, "grid": GRID.with_shape(60, 30).as_dict(), "data": {"image_wh": [160, 96]},
            "train": {"use_history": True}, **run_cfg}))
    return ck, cfg


def test_checkpoint_prediction_layer(world, tmp_path):
    ck, cfg = _tiny_checkpoint(tmp_path, with_config=True)
    m = V.ViewerModel(world, WORLD.version, checkpoint=ck)        # config.json found beside checkpoints/
    assert m.grid == GRID.with_shape(60, 30) and m.predictor.use_history and m.predictor.image_wh == (160, 96)
    st = m.default_state(list(m.scenes.values())[0][1])
    view = m.load(st.sample_token)
    assert view.bev_pred.shape == (60, 30) and view.bev_pred.max() < 4
    assert str(ck) in view.notes["bev_pred"]
    st.layers["bev_gt"].visible = False
    with_pred = _trace(m.camera_figure(st), "CAM_FRONT").source
    assert _trace(m.bev_figure(st), "BEV prediction") is not None
    st.layers["bev_pred"].visible = False
    assert _trace(m.camera_figure(st), "CAM_FRONT").source != with_pred
    # an explicit model config and viewer grid; the prediction is resampled onto the viewer grid
    m2 = V.ViewerModel(world, WORLD.version, checkpoint=ck, model_config=cfg, grid=GRID)
    assert m2.load(st.sample_token).bev_pred.shape == (GRID.H, GRID.W)


def test_checkpoint_model_is_built_by_the_name_in_its_run_config(tmp_path, monkeypatch):
    from bevlib.models import registry
    from bevlib.models.registry import build_model, register_model

    monkeypatch.setattr(registry, "_REGISTERED", dict(registry._REGISTERED))   # the test model leaves no trace
    built = []

    @register_model("viewer_test_bevformer")
    def _factory(cfg):
        built.append(cfg)
        return build_model("bevformer", cfg)

    ck, cfg = _tiny_checkpoint(tmp_path, with_config=True, model_name="viewer_test_bevformer")
    p = V.CheckpointPredictor(ck)
    assert p.model_name == "viewer_test_bevformer" and built == [cfg]
    # a bare model dict: the run keys are not passed to the network; the default name is the registry's bevformer
    p2 = V.CheckpointPredictor(ck, model_config=dict(cfg, image_wh=[160, 96], use_history=True))
    assert (p2.model_name, p2.image_wh, p2.use_history, len(built)) == ("bevformer", (160, 96), True, 1)
    with pytest.raises(KeyError, match="no_such_model"):
        V.CheckpointPredictor(ck, model_config={"model": cfg, "model_name": "no_such_model"})


def test_checkpoint_errors_name_the_problem(world, tmp_path):
    ck, _ = _tiny_checkpoint(tmp_path, with_config=False)
    with pytest.raises(ValueError, match="no model config"):
        V.CheckpointPredictor(ck)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        V.CheckpointPredictor(tmp_path / "nope.pt")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(FileNotFoundError, match="no checkpoints"):
        V.CheckpointPredictor(tmp_path / "empty_run")


@needs_widgets
def test_widget_layer_drives_the_model(world):
    import ipywidgets as W

    vw = V.BEVViewer(world, WORLD.version)
    assert isinstance(vw.widget, W.VBox) and hasattr(vw, "_ipython_display_")
    assert vw.renders == 1 and 'data-render="1"' in vw.w_status.value
    # each redraw shows new FigureWidgets that carry their whole state (see BEVViewer._figure_widget)
    assert len(vw.fig_cam._widget_data) == len(vw.fig_cam.data) == 6
    assert vw.w_figs.children == (vw.fig_bev, vw.fig_cam)
    old_cam = vw.fig_cam
    vw.fig_bev.layout.yaxis.range = (0.0, 20.0)      # as a zoom in the browser would
    first = vw.state.sample_token
    vw.w_next.click()
    assert vw.fig_cam is not old_cam and old_cam.comm is None        # the old one is closed
    assert tuple(vw.fig_bev.layout.yaxis.range) == (0.0, 20.0)       # the zoom is kept
    assert vw.state.sample_token != first and vw.w_sample.value == 2 and vw.renders == 2
    src = vw.fig_cam.data[0].source
    vw.w_layers["bev_gt"][0].value = False
    assert vw.fig_cam.data[0].source != src and vw.renders == 3
    vw.w_scene.value = list(vw.model.scenes)[1]
    assert vw.state.sample_token == list(vw.model.scenes.values())[1][0] and vw.renders == 4
    assert (vw.w_sample.value, vw.w_sample.max) == (1, 3)
    vw.w_sample.value = 3
    assert vw.state.sample_token == list(vw.model.scenes.values())[1][2] and vw.renders == 5
    vw.pick(V.cell_at(vw.model.grid, 10.0, 0.0))
    assert "CAM_FRONT" in vw.w_pick.value
    assert any(t.name == "picked CAM_FRONT" for t in vw.fig_cam.data)
    vw.w_camera.value = "CAM_BACK"
    assert [t.name for t in vw.fig_cam.data if t.type == "image"] == ["CAM_BACK"]
    vw.pick(None)
    assert vw.state.picked is None


@pytest.fixture(scope="module")
def keyframe_model():
    if not (KEYFRAME / "v1.0-mini").is_dir():
        pytest.skip(f"real nuScenes keyframe not found at {KEYFRAME}")
    return V.ViewerModel(KEYFRAME, "v1.0-mini")


def test_real_keyframe_reports_bev_gt_absent(keyframe_model):
    m = keyframe_model
    st = m.default_state()
    view = m.load(st.sample_token)
    assert view.bev_gt is None
    assert "BEV ground truth absent" in view.notes["bev_gt"] and "map expansion" in view.notes["bev_gt"]
    assert view.pseudo is None and "absent" in view.notes["pseudo"]
    assert view.lidar_xyz is not None and len(view.lidar_xyz) > 10000 and view.lidar_seg is None
    st.layers["lidar"].visible = True
    st.picked = V.cell_at(m.grid, 10.0, 0.0)
    bev, cams = m.bev_figure(st), m.camera_figure(st)
    assert _trace(bev, "BEV ground truth") is None and _trace(bev, "bev cells") is not None
    assert _trace(cams, "picked CAM_FRONT") is not None
    assert len(_trace(cams, "lidar CAM_FRONT").x) > 100
    # ground returns project below the horizon in CAM_FRONT
    front = _trace(cams, "lidar CAM_FRONT")
    assert np.median(front.y) > 0.3 * WH[1]


@needs_widgets
def test_real_keyframe_viewer_builds_with_a_note():
    if not (KEYFRAME / "v1.0-mini").is_dir():
        pytest.skip(f"real nuScenes keyframe not found at {KEYFRAME}")
    vw = V.BEVViewer(KEYFRAME, "v1.0-mini")
    assert "error" not in vw.w_status.value
    assert "BEV ground truth absent" in vw.w_notes.value
    assert vw.w_layers["bev_gt"][0].disabled and not vw.w_layers["lidar"][0].disabled


def test_viewer_params_overrides():
    p = V.viewer_params({"world_keyframes": 5, "dataroot": None}, environ={})
    assert p.world_keyframes == 5 and p.dataroot is None
    env = {"BEVLIB_VIEWER_WORLD_KEYFRAMES": "3", "BEVLIB_VIEWER_WORLD_IMAGE_WH": "320,180",
           "QUERY_STRING": "world_scenes=1&theme=dark&version=v1.0-test"}
    p = V.viewer_params({"world_keyframes": 5}, environ=env)
    assert (p.world_keyframes, p.world_image_wh, p.world_scenes, p.version) == (3, (320, 180), 1, "v1.0-test")
    with pytest.raises(ParameterError, match="world_keyframs"):
        V.viewer_params({"world_keyframs": 3}, environ={})
    with pytest.raises(ParameterError, match="image_wh"):
        V.viewer_params({}, environ={"BEVLIB_VIEWER_IMAGE_WH": "400"})


def test_notebook_is_generated_and_has_no_outputs():
    import nbformat

    nb = nbformat.read(ROOT / "notebooks" / "viewer.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "dataroot = None" in params[0].source and "checkpoint = None" in params[0].source
    assert "BEVViewer" in code[-1].source
