"""The BEV prediction layer's model: a trained checkpoint, rebuilt through the model registry."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from ..bev import BEVGrid
from ..classes import NUM_BEV

#: Model registry name used when a run's config does not say (``"model_name"``).
DEFAULT_MODEL_NAME = "bevformer"
# Keys of a bare model dict (model_config=) that describe the run, not the network.
_RUN_KEYS = ("image_wh", "grid", "use_history", "model_name")


class CheckpointPredictor:
    """Loads a trained BEV model once and predicts BEV class maps.

    Args:
        checkpoint: a run directory (``config.json`` + ``checkpoints/step_*.pt``, as written by
            :mod:`bevlib.train`; its latest checkpoint is used) or a checkpoint file.
        model_config: the model's config, when there is no run ``config.json`` beside the checkpoint
            (or to override it): a dict, or a path to a JSON file. Either a whole run config
            (keys ``model``, optionally ``model_name``, ``grid``, ``data.image_wh``,
            ``train.use_history``) or the model dict itself (optional extra keys ``model_name``,
            ``image_wh``, ``grid``, ``use_history``, which are not passed to the network).
        model_factory: callable(model dict) -> nn.Module; default
            ``bevlib.models.registry.build_model(model_name, ·)`` with the run config's
            ``"model_name"`` (default :data:`DEFAULT_MODEL_NAME`).
    Attributes: grid (BEVGrid of the output), image_wh (input image size (w, h), pixels),
        use_history, model_name, path (the checkpoint file).
    Raises: FileNotFoundError (no checkpoint), ValueError (no model config), KeyError (unknown
        model name), whatever the factory / ``load_state_dict`` raise for a config that does not
        fit the checkpoint.
    """

    def __init__(self, checkpoint, model_config=None, model_factory=None):
        from ..train.checkpoint import latest_checkpoint, load_checkpoint

        path = Path(checkpoint)
        if path.is_dir():
            run_dir, ck = path, latest_checkpoint(path)
            if ck is None:
                raise FileNotFoundError(f"run directory {str(path)!r} has no checkpoints/step_*.pt")
        else:
            if not path.exists():
                raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
            ck, run_dir = path, path.parent.parent if path.parent.name == "checkpoints" else path.parent
        run_cfg = {}
        if (run_dir / "config.json").exists():
            run_cfg = json.loads((run_dir / "config.json").read_text())
        if model_config is not None:
            mc = (json.loads(Path(model_config).read_text()) if isinstance(model_config, (str, os.PathLike))
                  else dict(model_config))
            run_cfg = mc if "model" in mc else {
                "model": {k: v for k, v in mc.items() if k not in _RUN_KEYS},
                **{k: mc[k] for k in ("grid", "model_name") if k in mc},
                "data": {"image_wh": mc.get("image_wh")} if "image_wh" in mc else {},
                "train": {"use_history": mc["use_history"]} if "use_history" in mc else {}}
        if "model" not in run_cfg:
            raise ValueError(f"no model config for checkpoint {str(ck)!r}: pass model_config= (a dict or JSON "
                             f"path) or a run directory holding config.json")
        self.model_cfg = run_cfg["model"]
        self.model_name = str(run_cfg.get("model_name") or DEFAULT_MODEL_NAME)
        out_hw = tuple(self.model_cfg.get("out_hw", (150, 150)))
        g = run_cfg.get("grid") or self.model_cfg.get("grid")
        self.grid = BEVGrid(**g) if isinstance(g, dict) else BEVGrid().with_shape(*out_hw)
        self.image_wh = tuple((run_cfg.get("data") or {}).get("image_wh") or (224, 128))
        self.use_history = bool((run_cfg.get("train") or {}).get("use_history", False))
        if model_factory is None:
            from ..models.registry import build_model

            def model_factory(cfg, name=self.model_name):
                return build_model(name, cfg)
        self.model = model_factory(self.model_cfg)
        self.model.load_state_dict(load_checkpoint(ck)["model"])
        self.model.eval()
        self.path = ck
        self._stores = {}

    @torch.no_grad()
    def predict(self, nusc, sample_token: str) -> np.ndarray:
        """BEV class map of one keyframe: (grid.H, grid.W) uint8 in {0..NUM_BEV-1}, the argmax over
        the background + map classes (as busch2026's evaluation), on :attr:`grid`.

        Raises: KeyError for an unknown token; DataError for missing images / calibration.
        """
        from torch.utils.data import default_collate

        from ..data.dataset import KeyframeDataset, KeyframeStore
        from ..data.fields import KeyframeConfig
        from ..models.bevformer import forward_keyframes

        store = self._stores.get(id(nusc))
        if store is None:
            store = self._stores[id(nusc)] = KeyframeStore(nusc, KeyframeConfig(image_wh=self.image_wh, grid=self.grid))
        ds = KeyframeDataset(store, [sample_token], with_prev=self.use_history)
        logits = forward_keyframes(self.model, default_collate([ds[0]]), self.use_history)["logits"]
        return logits[0, :NUM_BEV].argmax(0).numpy().astype(np.uint8)
