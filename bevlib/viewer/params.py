"""Parameters of notebooks/viewer.ipynb: notebook globals, ``BEVLIB_VIEWER_*`` environment
variables and the voila URL query, and the dataroot they select."""
from __future__ import annotations

import json
import os
import urllib.parse
from dataclasses import dataclass, fields

from ..data.source import WorldParams
from ..params import ParameterError, from_dict
from .state import DISPLAY_WH


@dataclass
class ViewerParams(WorldParams):
    """Parameters of notebooks/viewer.ipynb.

    ``dataroot=None`` selects the embedded world, generated (and cached under ``$BEVLIB_CACHE``)
    from ``world_*``. Each field can be overridden by an environment variable
    ``BEVLIB_VIEWER_<FIELD>`` (e.g. ``BEVLIB_VIEWER_WORLD_KEYFRAMES=3``) and, under voila, by a
    URL query parameter (``?world_keyframes=3``); values are JSON or comma-separated numbers.
    """

    world_scenes: int = 2                 # a small world: the viewer opens in seconds
    world_keyframes: int = 4
    world_image_wh: tuple = (400, 225)
    checkpoint: str | None = None
    model_config: object = None
    image_wh: tuple = DISPLAY_WH

    def __post_init__(self):
        super().__post_init__()
        v = self.image_wh
        if not (isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) and x >= 16 for x in v)):
            raise ParameterError(f"parameter 'image_wh' must be two integers (width, height) >= 16, got {v!r}")
        self.image_wh = tuple(v)

    def world_config(self):
        """The embedded world with one validation scene (the viewer shows every scene anyway)."""
        from dataclasses import replace
        cfg = super().world_config()
        return replace(cfg, val_scenes=min(1, self.world_scenes - 1) if self.world_scenes > 1 else 0)


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
    from ..params import collect
    from .app import BEVViewer

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
