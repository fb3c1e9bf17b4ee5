"""The viewer's data side: :class:`ViewerModel` opens a dataroot and loads keyframes, asking every
registered layer for its data."""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..bev import BEVGrid
from ..data.nuscenes_data import CAMERAS, DataError, camera_rig, load_image, open_nuscenes, scene_sample_tokens
from .figures import bev_figure, camera_figure
from .layers import registered_layers
from .lidar import lidarseg_palette
from .predictor import CheckpointPredictor
from .state import DISPLAY_WH, SampleView, ViewState


def _is_bevlib_world(dataroot) -> bool:
    return (Path(dataroot) / "bevlib_world.json").exists()


class ViewerModel:
    """The viewer's data side: opens a dataroot, lists scenes and keyframes, loads keyframes.

    Args:
        dataroot, version: a nuScenes-format dataset (real nuScenes, the real keyframe, the embedded
            world).
        checkpoint, model_config, model_factory: optional model for the BEV prediction layer
            (see :class:`~bevlib.viewer.predictor.CheckpointPredictor`).
        labeler: camera pseudo-labels: ``"auto"`` (embedded world: the synthetic labeller, labels
            generated and cached on first view; elsewhere: the first cached label set of the
            dataroot, :func:`bevlib.data.pseudo.cached_label_sets`), a cached label-set name, a
            :class:`bevlib.data.pseudo.PseudoLabeler` (generated on demand), or None.
        grid: the viewer's BEV grid; default the checkpoint's output grid, else ``BEVGrid()``.
        image_wh: display size of one camera image (w, h) pixels.
        cache_size: keyframes kept in memory.
    Attributes (read by the layers' ``load``): nusc, dataroot, version, grid, image_wh, predictor
        (or None), labeler / labeler_name / labeler_note (pseudo-labels: the labeller to run or
        None, the cached set's name or None, why there is none), lidarseg_names / lidarseg_colors,
        scenes ({scene name: [sample tokens]}, sorted by name).
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
        self.labeler, self.labeler_name, self.labeler_note = self._resolve_labeler(labeler)
        self.lidarseg_names, self.lidarseg_colors = lidarseg_palette(self.nusc)
        self._cache: "OrderedDict[str, SampleView]" = OrderedDict()
        self._cache_size = cache_size

    def _resolve_labeler(self, labeler):
        from ..data.pseudo import PseudoLabeler, cached_label_sets, dataset_dir

        if labeler is None:
            return None, None, "camera pseudo-labels: off (labeler=None)"
        if isinstance(labeler, PseudoLabeler):
            return labeler, labeler.name, None
        if labeler == "auto":
            if _is_bevlib_world(self.dataroot):
                from ..data.synthetic_labeler import SyntheticPseudoLabeler
                lab = SyntheticPseudoLabeler()
                return lab, lab.name, None
            sets = cached_label_sets(self.dataroot)
            if not sets:
                return None, None, (f"camera pseudo-labels absent: no cached label set under "
                                    f"{dataset_dir(self.dataroot)} "
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
        """Load (or fetch from the cache) one keyframe at display resolution, with the data of every
        registered layer (:meth:`Layer.load`; a layer registered after the keyframe was cached loads
        on the next call).

        Layers a dataroot cannot provide are None with a note in ``SampleView.notes``.
        Raises: KeyError for an unknown token; DataError for missing images / calibration; whatever
            a layer's ``load`` raises.
        """
        view = self._cache.get(sample_token)
        if view is not None:
            self._cache.move_to_end(sample_token)
            self._load_layers(view)
            return view
        scene, idx = self.scene_of(sample_token)
        nusc = self.nusc
        rig = camera_rig(nusc, sample_token, self.image_wh, CAMERAS)
        images = np.stack([load_image(nusc.get_sample_data_path(t), self.image_wh) for t in rig["sd_tokens"]])
        view = SampleView(sample_token, scene, idx, len(self.scenes[scene]), CAMERAS, images,
                          rig["K"].astype(np.float64), rig["ego_T_cam"].astype(np.float64),
                          lidarseg_names=self.lidarseg_names, lidarseg_colors=self.lidarseg_colors,
                          sd_tokens=tuple(rig["sd_tokens"]))
        self._load_layers(view)
        self._cache[sample_token] = view
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return view

    def _load_layers(self, view: SampleView) -> None:
        for layer in registered_layers():
            if layer.key not in view._loaded:
                layer.load(self, view)
                view._loaded.add(layer.key)

    def default_state(self, sample_token: str | None = None) -> ViewState:
        """A ViewState on ``sample_token`` (default: the first keyframe) with default layers."""
        return ViewState(sample_token or self.first_sample())

    def bev_figure(self, state: ViewState):
        """:func:`~bevlib.viewer.figures.bev_figure` of the state's keyframe on this viewer's grid."""
        return bev_figure(self.load(state.sample_token), state, self.grid)

    def camera_figure(self, state: ViewState):
        """:func:`~bevlib.viewer.figures.camera_figure` of the state's keyframe on this viewer's grid."""
        return camera_figure(self.load(state.sample_token), state, self.grid)
