"""Interactive BEV / camera viewer (ipywidgets + plotly) over any nuScenes-format dataroot.

Modules, so the logic is testable without a browser:

* :mod:`~bevlib.viewer.state` -- :class:`ViewState` (what is shown) and :class:`SampleView` (one
  keyframe at display resolution); plain data.
* :mod:`~bevlib.viewer.layers` -- the layer protocol (:class:`Layer`, drawings :class:`ClassMap`,
  :class:`ValueMap`, :class:`RGBA`, :class:`Points`) and the registry (:func:`register_layer`);
  :mod:`~bevlib.viewer.builtin_layers` -- BEV ground truth, BEV prediction, camera pseudo-label,
  LiDAR points.
* :mod:`~bevlib.viewer.geometry` -- BEV cells, frustum footprints, picks, BEV maps rendered into the
  cameras; :mod:`~bevlib.viewer.figures` -- pure (keyframe, state) -> plotly ``go.Figure``.
* :mod:`~bevlib.viewer.data` -- :class:`ViewerModel` opens the dataroot through nuscenes-devkit and
  loads keyframes (each layer loads its own data); :mod:`~bevlib.viewer.predictor` -- the
  checkpoint behind the prediction layer; :mod:`~bevlib.viewer.lidar` -- LiDAR reading.
* :mod:`~bevlib.viewer.app` -- :class:`BEVViewer` wires ipywidgets controls and two plotly
  ``FigureWidget`` panels to the above; :mod:`~bevlib.viewer.params` -- the notebook's parameters.

What is shown:

* BEV panel: a plotly heatmap in metric ego coordinates (x forward up, y left to the left; hover
  gives each cell's class / value per layer and its ego x / y in metres), the ego box, the ground
  footprints of the six camera frustums (clipped to the BEV extent), the BEV drawings of the layers
  (class maps, LiDAR points from above) and the picked cell. Clicking a cell picks it.
* Camera panel: one camera, or all six in the rig's layout (front row FRONT_LEFT, FRONT,
  FRONT_RIGHT; back row BACK_LEFT, BACK, BACK_RIGHT). BEV ground truth and the BEV prediction of a
  checkpoint are rendered *into the cameras* with :func:`bevlib.render.render_bev` (where the BEV
  lands in each image: busch2026's Pred_bev -> Pred_cp), the camera pseudo-label is an overlay,
  LiDAR points are projected with :func:`bevlib.geometry.project`, and the picked BEV cell is marked
  in every camera that sees it.

Every layer is toggled independently and has its own opacity. A layer that a dataroot cannot
provide (no map expansion -> no BEV ground truth, no checkpoint, no cached pseudo-labels, no
lidarseg) is reported absent with a note rather than failing. A later paper adds a layer by
subclassing :class:`Layer` and calling :func:`register_layer` (see :mod:`bevlib.viewer.layers`).

Frames: ego (x forward, y left, z up, metres, origin on the ground below the rear axle) for
everything metric; pixel coordinates (u = column, v = row, centres at integers, OpenCV) for the
camera panel, at the display size ``image_wh`` (default 400 x 225 per camera).
"""
from ..data.nuscenes_data import CAMERAS
from .app import BEVViewer
from .builtin_layers import (BUILTIN_LAYERS, GroundTruthLayer, LidarLayer, PredictionLayer,  # registers them
                             PseudoLabelLayer)
from .data import ViewerModel
from .figures import bev_figure, bev_hover_text, camera_figure, compose_camera_images, value_colours
from .geometry import (blend_labels, cell_at, cell_center, class_name, frustum_footprints, lidar_in_camera,
                       pick_projections, project_points, render_labels_to_cameras, render_values_to_cameras,
                       resample_labels)
from .layers import (PANELS, RGBA, ClassMap, Layer, Points, ValueMap, get_layer, layers_to_draw, register_layer,
                     registered_layers, unregister_layer)
from .lidar import load_lidar
from .params import ViewerParams, viewer_params
from .predictor import CheckpointPredictor
from .state import DISPLAY_WH, EGO_BOX_XY, RIG_LAYOUT, LayerState, SampleView, ViewState, default_layers

#: Keys of the built-in layers in drawing order (later on top); the registry holds every layer.
LAYERS = tuple(la.key for la in sorted(BUILTIN_LAYERS, key=lambda la: la.z))
#: Checkbox titles of the built-in layers.
LAYER_TITLES = {la.key: la.title for la in BUILTIN_LAYERS}

__all__ = [
    "BEVViewer", "ViewerModel", "ViewerParams", "viewer_params", "CheckpointPredictor",
    "ViewState", "SampleView", "LayerState", "default_layers",
    "Layer", "ClassMap", "ValueMap", "RGBA", "Points", "PANELS", "register_layer", "unregister_layer", "get_layer",
    "registered_layers", "layers_to_draw", "BUILTIN_LAYERS", "GroundTruthLayer", "PredictionLayer",
    "PseudoLabelLayer", "LidarLayer", "LAYERS", "LAYER_TITLES",
    "bev_figure", "camera_figure", "bev_hover_text", "compose_camera_images", "value_colours",
    "class_name", "cell_at", "cell_center", "resample_labels", "frustum_footprints", "pick_projections",
    "render_labels_to_cameras", "render_values_to_cameras", "blend_labels", "lidar_in_camera", "project_points",
    "load_lidar", "CAMERAS", "DISPLAY_WH", "RIG_LAYOUT", "EGO_BOX_XY",
]
