"""The viewer's built-in layers, registered on import in toggle order: BEV ground truth, BEV
prediction (both rendered into the cameras), camera pseudo-label (lifted onto the ground in the
BEV panel), LiDAR points.

Their data lives in the typed fields of :class:`~bevlib.viewer.state.SampleView` (``bev_gt``,
``bev_pred``, ``pseudo``, ``lidar_xyz`` / ``lidar_seg``) so hand-made views and older code keep
working; a new layer uses ``SampleView.extras`` instead.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..data.nuscenes_data import DataError, bev_ground_truth
from .geometry import lidar_in_camera, render_labels_to_cameras, resample_labels
from .layers import ClassMap, Layer, Points, register_layer
from .lidar import load_lidar

log = logging.getLogger(__name__)

#: Top of the LiDAR depth colour scale, metres: nearly all ground returns are closer.
LIDAR_DEPTH_MAX_M = 40.0
#: Most LiDAR points drawn in the BEV panel (plotly's SVG scatter slows down beyond a few thousand).
MAX_LIDAR_BEV = 6000


class _BEVLabelLayer(Layer):
    """A BEV class map held in ``view.<attr>`` on the viewer grid, rendered into the cameras."""

    attr = ""
    marks_bev_extent = True

    def available(self, view):
        return getattr(view, self.attr) is not None

    def camera_overlay(self, view, state, grid):
        labels = getattr(view, self.attr)
        return ClassMap(view.cached(self.key, lambda: render_labels_to_cameras(labels, view.K, view.ego_T_cam,
                                                                              view.image_wh, grid)))

    def bev(self, view, state, grid):
        return ClassMap(getattr(view, self.attr))


class GroundTruthLayer(_BEVLabelLayer):
    """BEV ground truth of the map expansion (:func:`bevlib.data.nuscenes_data.bev_ground_truth`)."""

    key, title, attr, z = "bev_gt", "BEV ground truth", "bev_gt", 20.0
    default_visible, default_opacity = True, 0.6

    def load(self, model, view):
        gt = bev_ground_truth(model.nusc, view.sample_token, model.grid)
        if gt is None:
            nusc = model.nusc
            sample = nusc.get("sample", view.sample_token)
            loc = nusc.get("log", nusc.get("scene", sample["scene_token"])["log_token"])["location"]
            view.notes[self.key] = (f"BEV ground truth absent: no map expansion for location {loc!r} "
                                    f"(expected {Path(model.dataroot) / 'maps' / 'expansion' / (loc + '.json')})")
        view.bev_gt = gt


class PredictionLayer(_BEVLabelLayer):
    """BEV prediction of the viewer's checkpoint (``model.predictor``), resampled to the viewer grid."""

    key, title, attr, z = "bev_pred", "BEV prediction", "bev_pred", 30.0
    default_visible, default_opacity = True, 0.6

    def load(self, model, view):
        pred = model.predictor
        if pred is None:
            view.notes[self.key] = "BEV prediction absent: no checkpoint given"
            return
        try:
            view.bev_pred = resample_labels(pred.predict(model.nusc, view.sample_token), pred.grid, model.grid)
            view.notes[self.key] = f"BEV prediction of {pred.path}"
        except Exception as e:   # a model that cannot run here must not take the viewer down
            log.exception("prediction failed")
            view.notes[self.key] = f"BEV prediction failed: {type(e).__name__}: {e}"


class PseudoLabelLayer(Layer):
    """Camera pseudo-labels (``model.labeler`` / ``model.labeler_name``, cached by
    :mod:`bevlib.data.pseudo` under the cache directory); in the BEV panel lifted onto the ground with
    :func:`bevlib.bev.lift_to_bev`."""

    key, title, z = "pseudo", "camera pseudo-label", 10.0
    trace_name = "pseudo-label (on the ground)"
    default_visible, default_opacity = False, 0.45

    def load(self, model, view):
        from PIL import Image

        from ..data.pseudo import cache_pseudo_labels, pseudo_label_path

        if model.labeler_name is None:
            view.notes[self.key] = model.labeler_note
            return
        if model.labeler is not None:
            cache_pseudo_labels(model.nusc, model.labeler, view.sd_tokens, progress=False)
        out = []
        for t in view.sd_tokens:
            p = pseudo_label_path(model.dataroot, model.labeler_name, t)
            if not p.exists():
                view.notes[self.key] = f"camera pseudo-labels absent for this keyframe: {p} is missing"
                return
            out.append(np.asarray(Image.open(p).resize(view.image_wh, Image.NEAREST)))
        view.notes[self.key] = f"camera pseudo-labels: {model.labeler_name}"
        view.pseudo = np.stack(out).astype(np.uint8)

    def available(self, view):
        return view.pseudo is not None

    def camera_overlay(self, view, state, grid):
        return ClassMap(view.pseudo)

    def bev(self, view, state, grid):
        from ..bev import lift_to_bev

        return ClassMap(view.cached("_pseudo_bev", lambda: lift_to_bev(view.pseudo, view.K, view.ego_T_cam, grid)))


class LidarLayer(Layer):
    """LIDAR_TOP points (:func:`bevlib.viewer.lidar.load_lidar`): projected into the cameras and from
    above in the BEV panel, coloured by depth / range or by lidarseg class (``ViewState.lidar_color``)."""

    key, title, trace_name, z = "lidar", "LiDAR points", "lidar", 40.0
    default_visible, default_opacity = False, 0.8

    def load(self, model, view):
        try:
            view.lidar_xyz, view.lidar_seg = load_lidar(model.nusc, view.sample_token)
            if view.lidar_xyz is None:
                view.notes[self.key] = "LiDAR absent: the keyframe has no LIDAR_TOP"
            elif view.lidar_seg is None:
                view.notes[self.key] = "no lidarseg labels here: LiDAR coloured by depth only"
        except DataError as e:
            view.notes[self.key] = f"LiDAR absent: {e}"

    def available(self, view):
        return view.lidar_xyz is not None

    def camera_points(self, view, state, grid, n):
        uv, depth, seg = lidar_in_camera(view, n)
        if state.lidar_color == "lidarseg" and seg is not None:
            return Points(uv, color=view.lidarseg_colors[seg], label="LiDAR",
                          text=[view.lidarseg_names.get(int(s), str(int(s))) for s in seg])
        return Points(uv, color=depth, colorscale="Turbo", cmin=0, cmax=LIDAR_DEPTH_MAX_M, label="LiDAR",
                      text=[f"{d:.1f} m" for d in depth])

    def bev(self, view, state, grid):
        p = view.lidar_xyz
        ok = np.flatnonzero(grid.contains(p[:, :2]) & (np.abs(p[:, 2]) < 3.0))
        if len(ok) > MAX_LIDAR_BEV:
            ok = ok[np.linspace(0, len(ok) - 1, MAX_LIDAR_BEV).astype(np.int64)]
        xy = p[ok, :2]
        if state.lidar_color == "lidarseg" and view.lidar_seg is not None:
            return Points(xy, color=view.lidarseg_colors[view.lidar_seg[ok]])
        return Points(xy, color=np.hypot(xy[:, 0], xy[:, 1]), colorscale="Turbo", cmin=0, cmax=LIDAR_DEPTH_MAX_M)


#: The built-in layers, in toggle order.
BUILTIN_LAYERS = (GroundTruthLayer(), PredictionLayer(), PseudoLabelLayer(), LidarLayer())
for _layer in BUILTIN_LAYERS:
    register_layer(_layer)
