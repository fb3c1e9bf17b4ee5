"""Which data a notebook reads: real nuScenes at a ``dataroot``, the real keyframe in
``../shared``, or the embedded nuScenes-format world, generated on first use.

Every notebook's parameter dataclass includes :class:`WorldParams`, so the same parameter names
(``dataroot``, ``version``, ``world_seed``, ``world_scenes``, ``world_keyframes``,
``world_image_wh``, ``world_look``, ``world_rig``, ``world_camera_timing``) mean the same thing everywhere, and :func:`resolve_dataroot` is the one place
that turns them into a path.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..params import ParameterError
from ..paths import project_root

#: ``dataroot`` value that asks for the embedded world explicitly (where None means another default).
EMBEDDED = "embedded"


def real_keyframe_root() -> Path:
    """``<project>/../shared/nuscenes-keyframe``: the real keyframe, used in place (never copied)."""
    return project_root().parent / "shared" / "nuscenes-keyframe"


@dataclass
class WorldParams:
    """The data parameters shared by every notebook.

    ``dataroot``: a nuScenes folder (real data, e.g. ``/data/sets/nuscenes``), ``"embedded"`` for
    the embedded world, or None for the notebook's default (the embedded world, or the real
    keyframe where a notebook prefers it). The ``world_*`` fields configure the embedded world
    (:class:`bevlib.data.world.WorldConfig`) and are ignored for a real dataroot; ``world_look``
    is a key of :data:`bevlib.data.world.WORLD_LOOKS` ("nuscenes", or "city": the Cityscapes
    stand-in with the same labels, for domain transfer). ``world_rig`` is a key of
    :data:`bevlib.data.world.WORLD_RIGS` ("nuscenes", "lyft" or "once": the combined-datasets
    paper's three sensor rigs, Sec. 4.1; the LiDAR takes the rig's beam count). The default look
    and rig keep the world's cache hash. ``world_camera_timing``: "sweep" (each camera at its own
    capture time and ego pose, as real nuScenes) or "keyframe" (all sensors at the keyframe's
    pose, the world before issue 15).

    Raises: ParameterError naming the parameter when a value is invalid.
    """

    dataroot: str | None = None
    version: str = "v1.0-mini"
    world_seed: int = 0                   # embedded world only
    world_scenes: int = 6
    world_keyframes: int = 16
    world_image_wh: tuple = (800, 450)    # the world's native camera images (width, height)
    world_look: str = "nuscenes"          # appearance + camera rig, a key of WORLD_LOOKS
    world_rig: str = "nuscenes"           # sensor rig (cameras + LiDAR beams), a key of WORLD_RIGS
    world_camera_timing: str = "sweep"    # "sweep": per-camera capture times and ego poses; "keyframe": one pose

    def __post_init__(self):
        for n in ("world_scenes", "world_keyframes"):
            v = getattr(self, n)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ParameterError(f"parameter {n!r} must be a positive integer, got {v!r}")
        if not isinstance(self.world_seed, int):
            raise ParameterError(f"parameter 'world_seed' must be an integer, got {self.world_seed!r}")
        v = self.world_image_wh
        if not (isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) and x >= 16 for x in v)):
            raise ParameterError(f"parameter 'world_image_wh' must be two integers (width, height) >= 16, got {v!r}")
        self.world_image_wh = tuple(v)
        from .world.config import WORLD_LOOKS, WORLD_RIGS
        if not isinstance(self.world_look, str) or self.world_look not in WORLD_LOOKS:
            raise ParameterError(f"parameter 'world_look' must be one of {tuple(WORLD_LOOKS)}, got {self.world_look!r}")
        if not isinstance(self.world_rig, str) or self.world_rig not in WORLD_RIGS:
            raise ParameterError(f"parameter 'world_rig' must be one of {tuple(WORLD_RIGS)}, got {self.world_rig!r}")
        from .world.config import CAMERA_TIMINGS
        if self.world_camera_timing not in CAMERA_TIMINGS:
            raise ParameterError(f"parameter 'world_camera_timing' must be one of {CAMERA_TIMINGS}, "
                                 f"got {self.world_camera_timing!r}")
        if not isinstance(self.version, str) or not self.version:
            raise ParameterError(f"parameter 'version' must be a nuScenes version name, got {self.version!r}")

    def world_config(self):
        """The :class:`~bevlib.data.world.WorldConfig` of the embedded world these parameters name
        (a subclass may override it, e.g. for a different validation split)."""
        from .world import WorldConfig
        return WorldConfig(seed=self.world_seed, n_scenes=self.world_scenes, keyframes_per_scene=self.world_keyframes,
                           image_wh=self.world_image_wh, version=self.version, look=self.world_look,
                           rig=self.world_rig, camera_timing=self.world_camera_timing)


def resolve_dataroot(p: WorldParams, progress: bool = True, prefer_real_keyframe: bool = False) -> tuple[str, str]:
    """The dataroot to read, and a short description of it for captions.

    Args:
        p: the notebook's parameters (any :class:`WorldParams`).
        prefer_real_keyframe: with ``dataroot=None``, read the real keyframe in ``../shared`` when
            it holds ``version`` (else the embedded world).
    Returns: (dataroot path, description).
    Raises: OSError when the embedded world cannot be written into the cache; nothing is checked
        about a given dataroot here (:func:`bevlib.data.nuscenes_data.open_nuscenes` does).
    """
    if p.dataroot and p.dataroot != EMBEDDED:
        return str(p.dataroot), f"nuScenes at {p.dataroot} ({p.version})"
    real = real_keyframe_root()
    if p.dataroot is None and prefer_real_keyframe and (real / p.version).is_dir():
        return str(real), f"the real nuScenes keyframe ({real.name}, {p.version})"
    from .world import ensure_world
    cfg = p.world_config()
    look = "" if cfg.look == "nuscenes" else f", {cfg.look} look"
    rig = "" if cfg.rig == "nuscenes" else f", {cfg.rig} rig"
    timing = "" if cfg.camera_timing == "sweep" else ", one ego pose per keyframe"
    return (str(ensure_world(cfg=cfg, progress=progress)),
            f"the embedded world (seed {cfg.seed}{look}{rig}{timing}, {cfg.hash()})")


def open_split(p: WorldParams, needs: str = "the notebook", hint: str = "'world_scenes' or 'dataroot'",
               progress: bool = True) -> tuple[str, str, object, list, list]:
    """Open the dataset of ``p`` (the embedded world is generated if needed) and its keyframes in the devkit's
    train / val scene split (:func:`bevlib.data.nuscenes_data.split_scenes`).

    Args: needs: who needs both splits (for the error); hint: the parameter(s) to change.
    Returns: (dataroot, description for captions, NuScenes, train ``sample_token``s, val ``sample_token``s), the
        tokens in scene and time order.
    Raises: ParameterError naming the dataroot, ``needs`` and ``hint`` when a split has no keyframe.
    """
    from .nuscenes_data import open_nuscenes, scene_sample_tokens, split_scenes

    root, desc = resolve_dataroot(p, progress=progress)
    nusc = open_nuscenes(root, p.version)
    s = split_scenes(nusc)
    tr, va = scene_sample_tokens(nusc, s["train"]), scene_sample_tokens(nusc, s["val"])
    if not tr or not va:
        raise ParameterError(f"dataroot {root!r} ({p.version}) has {len(tr)} train and {len(va)} val keyframes; "
                             f"{needs} needs both (parameter {hint})")
    return root, desc, nusc, tr, va
