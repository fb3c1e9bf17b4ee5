"""Model registry: build any network of the suite from ``(name, config dict)``.

A run's ``config.json`` stores the model as ``{"name": ..., "config": {...}}``-style fields, so a
checkpoint can be rebuilt anywhere (viewer, figures, a later paper) without importing the
experiment that trained it. Built-in models are listed by import path and imported on first use
(importing ``bevlib.models`` stays cheap); a paper's new model registers itself with
:func:`register_model`.
"""
from __future__ import annotations

import importlib
from typing import Callable

from torch import nn

#: name -> "module:function" of the suite's own models (imported lazily).
_BUILTIN = {
    "bevformer": "bevlib.models.bevformer:build_bevformer_from_dict",
    "rangevit": "bevlib.models.rangevit:build_rangevit_from_dict",
    "cameravit": "bevlib.models.multivit:build_cameravit_from_dict",
    "multivit": "bevlib.models.multivit:build_multivit_from_dict",
}
_REGISTERED: dict[str, Callable[[dict], nn.Module]] = {}


def register_model(name: str):
    """Decorator: register ``factory(cfg: dict) -> nn.Module`` under ``name``.

    Raises: ValueError when ``name`` is taken by another factory.
    """
    def deco(factory):
        old = _REGISTERED.get(name)
        if old is not None and old is not factory and getattr(old, "__qualname__", None) != factory.__qualname__:
            raise ValueError(f"model name {name!r} is already registered to {old!r}")
        _REGISTERED[name] = factory
        return factory
    return deco


def model_names() -> list[str]:
    """Every name :func:`build_model` accepts."""
    return sorted(set(_BUILTIN) | set(_REGISTERED))


def build_model(name: str, cfg: dict | None = None) -> nn.Module:
    """Build the model registered as ``name`` from its config dict (JSON lists are accepted where
    the model wants tuples; each factory converts).

    Raises: KeyError naming the unknown model and listing the known ones; whatever the factory
        raises for a bad config (TypeError / ValueError naming the field).
    """
    factory = _REGISTERED.get(name)
    if factory is None:
        if name not in _BUILTIN:
            raise KeyError(f"unknown model {name!r}; known models: {', '.join(model_names())}")
        mod, fn = _BUILTIN[name].split(":")
        factory = getattr(importlib.import_module(mod), fn)
    return factory(dict(cfg or {}))
