"""The viewer's layer protocol and registry.

A layer is one toggle of the viewer (checkbox + opacity slider): it loads its data when a keyframe
is loaded, says whether it has data for that keyframe, and draws on the camera panel, the BEV
panel, or both, by returning one of four small drawings:

* :class:`ClassMap` -- an integer class map, coloured with :data:`bevlib.classes.COLORS`;
* :class:`ValueMap` -- continuous values through a colour scale (a BEV heatmap, a depth map);
* :class:`RGBA` -- a free-form colour overlay (camera panel; e.g. superpixel boundaries);
* :class:`Points` -- markers with per-point colour values or colours and hover text.

The figure functions (:mod:`bevlib.viewer.figures`) turn drawings into pixels and plotly traces;
a layer never touches plotly or the widgets. A new layer is a subclass registered once::

    from bevlib.viewer import Layer, ValueMap, register_layer

    class Heat(Layer):
        key, title, panels = "heat", "BEV heatmap", ("bev",)
        def load(self, model, view):
            view.extras[self.key] = my_heatmap(model.nusc, view.sample_token, model.grid)
        def bev(self, view, state, grid):
            return ValueMap(view.extras[self.key], colorscale="Inferno", unit=" m")

    register_layer(Heat())

Viewers built afterwards show it as a toggle (:class:`bevlib.viewer.BEVViewer` builds its layer
controls from :func:`registered_layers`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:   # type names only: state / data import this module
    from ..bev import BEVGrid
    from .state import SampleView, ViewState


@dataclass
class LayerState:
    """One layer's visibility and opacity (0 transparent .. 1 opaque)."""

    visible: bool = True
    opacity: float = 0.5

#: Panels a layer can draw on.
PANELS = ("camera", "bev")
_KEY_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_MISSING = object()


# ------------------------------------------------------------------------------------------------
# Drawings
# ------------------------------------------------------------------------------------------------

@dataclass
class ClassMap:
    """An integer class map; class k is drawn in :data:`bevlib.classes.COLORS` [k], background (0)
    and IGNORE are transparent.

    ``labels``: camera panel (N, h, w) integer, one map per camera of ``view.cameras`` at the display
    size; BEV panel (H, W) integer on the viewer grid (the hover names each cell's class).
    """

    labels: np.ndarray


@dataclass
class ValueMap:
    """Continuous values through a colour scale; NaN is transparent.

    Attributes:
        values: camera panel (N, h, w) float at the display size; BEV panel (H, W) float on the viewer
            grid (the hover shows each cell's value).
        colorscale: a plotly colour-scale name (``"Viridis"``, ``"Turbo"``, ...).
        vmin, vmax: the values at the ends of the scale; default the finite minimum / maximum.
        unit: appended to the hover value (e.g. ``" m"``); fmt: its format spec.
    """

    values: np.ndarray
    colorscale: str = "Viridis"
    vmin: float | None = None
    vmax: float | None = None
    unit: str = ""
    fmt: str = ".2f"

    def limits(self) -> tuple[float, float]:
        """(vmin, vmax) of the colour scale; (0, 1) when no value is finite."""
        v = np.asarray(self.values, np.float64)
        fin = v[np.isfinite(v)]
        lo = self.vmin if self.vmin is not None else (float(fin.min()) if fin.size else 0.0)
        hi = self.vmax if self.vmax is not None else (float(fin.max()) if fin.size else 1.0)
        return float(lo), (float(hi) if hi > lo else float(lo) + 1e-6)


@dataclass
class RGBA:
    """A free-form colour overlay, camera panel only: ``rgba`` (N, h, w, 4) float in [0, 1] or
    uint8 in [0, 255]; its alpha is multiplied by the layer's opacity."""

    rgba: np.ndarray


@dataclass
class Points:
    """Markers.

    Attributes:
        xy: camera panel (P, 2) pixel (u, v) in one camera (:meth:`Layer.camera_points`); BEV panel
            (P, 2) ego (x, y) metres.
        color: (P,) float values through ``colorscale`` over [cmin, cmax], (P, 3) uint8 RGB, or one
            CSS colour string; None: plotly's default.
        text: (P,) hover text per point (camera panel only: in the BEV panel hover and clicks
            belong to the cells); None: no hover.
        size: marker size, CSS pixels; None: the panel's default (2.5, or 3 for a single camera;
            2 in the BEV panel). label: the hover box's label (default the layer title).
    """

    xy: np.ndarray
    color: object = None
    colorscale: str = "Turbo"
    cmin: float | None = None
    cmax: float | None = None
    text: list | None = None
    size: float | None = None
    label: str | None = None


# ------------------------------------------------------------------------------------------------
# The protocol
# ------------------------------------------------------------------------------------------------

class Layer:
    """Base class of viewer layers: override the class attributes and the drawing methods of the
    panels the layer draws on. Attributes can also be set per instance: ``Layer(key=..., ...)``.

    Attributes:
        key: unique id, ``[a-z][a-z0-9_]*``: the :class:`~bevlib.viewer.state.ViewState` ``layers``
            key, the ``SampleView.notes`` / ``extras`` key and the widget CSS class
            ``bevlib-layer-<key>``.
        title: the checkbox label.
        panels: the panels it draws on, a subset of :data:`PANELS`.
        default_visible, default_opacity: the toggle's initial state (opacity in [0, 1]).
        z: drawing order, later on top, in both panels. Built-ins: pseudo-label 10, BEV ground
            truth 20, BEV prediction 30, LiDAR 40; the default 35 puts a new map above the built-in
            maps and below the LiDAR points.
        trace_name: name of its BEV trace and its label in the BEV hover; camera point traces are
            named ``f"{trace_name} {camera}"``. Default: ``title``.
        marks_bev_extent: the camera overlay is a BEV map rendered into the cameras; while one such
            layer is drawn, a thin line marks where the BEV extent ends in each image.
    """

    key: str = ""
    title: str = ""
    panels: tuple = PANELS
    default_visible: bool = False
    default_opacity: float = 0.5
    z: float = 35.0
    trace_name: str | None = None
    marks_bev_extent: bool = False

    def __init__(self, **attrs):
        for k, v in attrs.items():
            attr = getattr(type(self), k, _MISSING)
            if k.startswith("_") or attr is _MISSING or callable(attr) or isinstance(attr, property):
                raise TypeError(f"{type(self).__name__} has no layer attribute {k!r}")
            setattr(self, k, v)

    @property
    def name(self) -> str:
        """The BEV trace / hover name: ``trace_name`` or ``title``."""
        return self.trace_name or self.title

    def default_state(self) -> LayerState:
        """A fresh :class:`~bevlib.viewer.state.LayerState` with this layer's defaults."""
        return LayerState(bool(self.default_visible), float(self.default_opacity))

    # -- data ----------------------------------------------------------------------------------
    def load(self, model, view: "SampleView") -> None:
        """Fetch this layer's data for a keyframe the :class:`~bevlib.viewer.data.ViewerModel`
        ``model`` is loading (its ``nusc``, ``dataroot``, ``grid``, ``predictor`` are at hand) into
        ``view.extras[self.key]`` (or a typed field of ``view``). Called once per keyframe and layer.

        Absent data: leave it None and say why in ``view.notes[self.key]`` (shown under the
        controls). Raising fails the whole keyframe, so catch what the dataroot may lack.
        Default: nothing to load.
        """

    def available(self, view: "SampleView") -> bool:
        """Whether the layer has data for ``view`` (else its toggle is disabled and it is not drawn).
        Default: ``view.extras[self.key]`` is set."""
        return view.extras.get(self.key) is not None

    # -- drawing (only called when the layer is on and available) ------------------------------
    def camera_overlay(self, view: "SampleView", state: "ViewState", grid: "BEVGrid"):
        """An image-space drawing over every camera, blended into the images with the layer's
        opacity: :class:`ClassMap` / :class:`ValueMap` (N, h, w) or :class:`RGBA` (N, h, w, 4),
        N = ``len(view.cameras)``, at ``view.image_wh``; or None."""
        return None

    def camera_points(self, view: "SampleView", state: "ViewState", grid: "BEVGrid", n: int):
        """:class:`Points` in pixel (u, v) of camera ``view.cameras[n]``, or None.
        :func:`bevlib.viewer.geometry.project_points` projects ego-frame points."""
        return None

    def bev(self, view: "SampleView", state: "ViewState", grid: "BEVGrid"):
        """The BEV drawing on ``grid``: :class:`ClassMap` / :class:`ValueMap` (H, W), or
        :class:`Points` in ego (x, y) metres; or None."""
        return None

    def __repr__(self):
        return f"<{type(self).__name__} {self.key!r}>"


# ------------------------------------------------------------------------------------------------
# Registry
# ------------------------------------------------------------------------------------------------

_REGISTRY: dict[str, Layer] = {}   # insertion order: the order of the viewer's toggles


def _check(layer: Layer) -> None:
    if not isinstance(layer, Layer):
        raise TypeError(f"a viewer layer must be a bevlib.viewer.Layer, got {type(layer).__name__}")
    if not isinstance(layer.key, str) or not _KEY_RE.match(layer.key):
        raise ValueError(f"layer key must match [a-z][a-z0-9_]*, got {layer.key!r} ({layer!r})")
    if not layer.title:
        raise ValueError(f"layer {layer.key!r} needs a title")
    bad = [p for p in layer.panels if p not in PANELS]
    if bad or not layer.panels:
        raise ValueError(f"layer {layer.key!r}: panels must be a non-empty subset of {PANELS}, got {layer.panels!r}")
    if not 0.0 <= float(layer.default_opacity) <= 1.0:
        raise ValueError(f"layer {layer.key!r}: default_opacity must lie in [0, 1], got {layer.default_opacity!r}")


def register_layer(layer, replace: bool = False):
    """Add a layer to the registry (appended to the toggles; drawn in ``z`` order).

    Args:
        layer: a :class:`Layer` instance, or a subclass (instantiated without arguments; the class is
            returned, so this also works as a class decorator).
        replace: replace a layer registered under the same key. Without it a key is only replaced
            by a layer of the same class name (a notebook cell run again).
    Returns: ``layer``.
    Raises: TypeError (not a Layer), ValueError (bad key, title, panels or opacity; key taken).
    """
    inst = layer() if isinstance(layer, type) else layer
    _check(inst)
    old = _REGISTRY.get(inst.key)
    if old is not None and not replace and type(old).__qualname__ != type(inst).__qualname__:
        raise ValueError(f"viewer layer key {inst.key!r} is already registered to {old!r}; "
                         f"pass replace=True or unregister_layer({inst.key!r}) first")
    _REGISTRY[inst.key] = inst   # a replaced key keeps its place among the toggles
    return layer


def unregister_layer(key: str) -> Layer:
    """Remove and return the layer registered as ``key``. Raises KeyError if there is none."""
    try:
        return _REGISTRY.pop(key)
    except KeyError:
        raise KeyError(f"no viewer layer {key!r}; registered: {', '.join(_REGISTRY)}") from None


def get_layer(key: str) -> Layer:
    """The layer registered as ``key``. Raises KeyError naming the registered keys."""
    try:
        return _REGISTRY[key]
    except KeyError:
        raise KeyError(f"no viewer layer {key!r}; registered: {', '.join(_REGISTRY)}") from None


def registered_layers(panel: str | None = None) -> list[Layer]:
    """The registered layers in toggle (registration) order; only those drawing on ``panel``
    (``"camera"`` / ``"bev"``) when given."""
    return [la for la in _REGISTRY.values() if panel is None or panel in la.panels]


def layers_to_draw(view: "SampleView", state: "ViewState", panel: str) -> list[Layer]:
    """The layers to draw on ``panel`` for this keyframe and state: registered, on
    (:meth:`ViewState.layer_on`) and available, bottom to top (by ``z``, ties in toggle order)."""
    on = [la for la in registered_layers(panel) if state.layer_on(la.key) and la.available(view)]
    return sorted(on, key=lambda la: la.z)
