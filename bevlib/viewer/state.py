"""What the viewer shows (:class:`ViewState`) and one loaded keyframe (:class:`SampleView`).

Both are plain data: the widgets edit a :class:`ViewState`, :class:`bevlib.viewer.data.ViewerModel`
fills a :class:`SampleView`, and the figure functions read both. Display constants (sizes, the
rig layout, the ego box) live here so every module draws the same thing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..data.nuscenes_data import CAMERAS
from .layers import LayerState, get_layer, registered_layers

#: Display size (width, height) of one camera image, pixels.
DISPLAY_WH = (400, 225)
#: Rig layout of the six cameras: CAMERAS[k] goes to (row, col) = divmod(k, 3).
RIG_LAYOUT = {cam: divmod(k, 3) for k, cam in enumerate(CAMERAS)}
CAM_SHORT = {"CAM_FRONT_LEFT": "FL", "CAM_FRONT": "F", "CAM_FRONT_RIGHT": "FR", "CAM_BACK_LEFT": "BL",
             "CAM_BACK": "B", "CAM_BACK_RIGHT": "BR"}
CAM_COLOURS = {"CAM_FRONT_LEFT": (255, 200, 0), "CAM_FRONT": (0, 220, 255), "CAM_FRONT_RIGHT": (255, 120, 220),
               "CAM_BACK_LEFT": (170, 255, 90), "CAM_BACK": (255, 255, 255), "CAM_BACK_RIGHT": (255, 150, 60)}
#: Ego footprint (Renault Zoe body, as the embedded world's ego box): x from -0.75 to 3.35 m, |y| <= 0.87 m.
EGO_BOX_XY = np.array([[3.35, 0.87], [3.35, -0.87], [-0.75, -0.87], [-0.75, 0.87], [3.35, 0.87]])
PICK_COLOUR = "#ff00ff"


def default_layers() -> dict[str, LayerState]:
    """Fresh default layer states of every registered layer (:func:`bevlib.viewer.layers.registered_layers`),
    keyed by layer key, in registration order."""

    return {layer.key: layer.default_state() for layer in registered_layers()}


@dataclass
class ViewState:
    """What the viewer shows; the widgets edit it, the figure functions read it.

    Attributes:
        sample_token: the keyframe shown.
        camera: ``"all"`` (six cameras in the rig layout) or one name of :data:`CAMERAS`.
        layers: ``{layer key: LayerState}``, by default one per registered layer. A layer registered
            after the state was made gets its default state on first use (:meth:`layer_state`).
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

    def layer_state(self, key: str) -> LayerState:
        """The state of layer ``key``, adding the registered layer's default when missing.

        Raises: KeyError when ``key`` is neither in :attr:`layers` nor registered.
        """
        ls = self.layers.get(key)
        if ls is None:

            ls = self.layers[key] = get_layer(key).default_state()
        return ls

    def layer_on(self, key: str) -> bool:
        """Whether layer ``key`` is drawn: visible with a non-zero opacity (False for an unknown key)."""
        try:
            ls = self.layer_state(key)
        except KeyError:
            return False
        return bool(ls.visible) and ls.opacity > 0


@dataclass
class SampleView:
    """One keyframe at display resolution, everything in its ego frame.

    The typed fields hold the built-in layers' data; a registered layer keeps its own data in
    ``extras[layer.key]`` (filled by its :meth:`~bevlib.viewer.layers.Layer.load`).

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
        sd_tokens: the cameras' sample_data tokens (empty for a hand-made view).
        extras: {layer key: data} of layers outside the built-ins.
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
    sd_tokens: tuple = ()
    extras: dict = field(default_factory=dict)
    _rendered: dict = field(default_factory=dict, repr=False)
    _loaded: set = field(default_factory=set, repr=False)

    @property
    def image_wh(self) -> tuple[int, int]:
        """(w, h) display size of the camera images, pixels."""
        return int(self.images.shape[2]), int(self.images.shape[1])

    def available(self, key: str) -> bool:
        """Whether layer ``key`` has data for this keyframe. Raises KeyError for an unregistered key."""

        return bool(get_layer(key).available(self))

    def cached(self, key: str, compute):
        """``compute()`` once per keyframe and cache key: derived images (a BEV map rendered into
        the cameras, pseudo-labels lifted onto the ground) are costly and do not depend on the
        view state. Layers use their own key as a prefix."""
        hit = self._rendered.get(key)
        if hit is None:
            hit = self._rendered[key] = compute()
        return hit
