"""The widget side: :class:`BEVViewer` wires ipywidgets controls and two plotly ``FigureWidget``
panels to :class:`~bevlib.viewer.data.ViewerModel` and the figure functions; it holds no geometry
of its own."""
from __future__ import annotations

import logging

import numpy as np

from ..bev import BEVGrid
from ..data.nuscenes_data import CAMERAS
from .data import ViewerModel
from .figures import bev_figure, camera_figure
from .geometry import cell_at, cell_center, pick_projections
from .layers import registered_layers
from .state import DISPLAY_WH, SampleView

log = logging.getLogger(__name__)
_PICK_HINT = "<i>click a BEV cell to see where it lands in the cameras</i>"


class BEVViewer:
    """The interactive viewer: ipywidgets controls + two plotly ``FigureWidget`` panels.

    The layer toggles (checkbox + opacity slider each) are built from the layers registered when the
    viewer is made (:func:`bevlib.viewer.layers.registered_layers`, in registration order); a
    layer without data for the keyframe shown has its toggle disabled and its note shown.

    Args: as :class:`ViewerModel` (``dataroot``, ``version``, ``checkpoint``, ``model_config``,
        ``labeler``, ``grid``, ``image_wh``, ``model_factory``), plus ``sample_token`` (first
        keyframe shown) and ``camera`` (``"all"`` or a camera name).
    Attributes:
        model: the :class:`ViewerModel`; state: the current :class:`ViewState`.
        layers: the layers with a toggle; w_layers: {layer key: (Checkbox, FloatSlider)}.
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
        self.layers = registered_layers()
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
        for layer in self.layers:
            ls = s.layer_state(layer.key)
            cb = W.Checkbox(value=ls.visible, description=layer.title, indent=False, layout=W.Layout(width="170px"))
            op = W.FloatSlider(value=ls.opacity, min=0.0, max=1.0, step=0.05, description="opacity",
                               continuous_update=False, readout_format=".2f", layout=W.Layout(width="240px"))
            row = W.HBox([cb, op])
            row.add_class(f"bevlib-layer-{layer.key}")
            self.w_layers[layer.key] = (cb, op)
            rows.append(row)
            cb.observe(self._on_layer(layer.key, "visible"), names="value")
            op.observe(self._on_layer(layer.key, "opacity"), names="value")
        self.w_lidar_color = W.ToggleButtons(options=["depth", "lidarseg"], value=s.lidar_color,
                                             description="LiDAR colour", style={"button_width": "80px"})
        self.w_frustums = W.Checkbox(value=s.show_frustums, description="camera frustums", indent=False)
        self.w_clear = W.Button(description="clear pick", layout=W.Layout(width="90px"))
        self.w_pick = W.HTML(value=_PICK_HINT)
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
            setattr(self.state.layer_state(key), attr, change["new"])
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
            for layer in self.layers:
                cb, op = self.w_layers[layer.key]
                cb.disabled = op.disabled = not layer.available(view)
            self.w_lidar_color.disabled = view.lidar_seg is None
            notes = [view.notes[la.key] for la in self.layers if la.key in view.notes]
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
            return _PICK_HINT
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
