"""Notebook parameters: collected from the kernel's globals, checked against a dataclass.

papermill injects parameters as plain assignments, so a mistyped name (``epoch: 3``) would
silently create a new variable while the real one keeps its default. :func:`collect` turns every
user-level global into a field of the notebook's parameter dataclass and refuses names it does
not know, suggesting the closest known one.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
from typing import Any

_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


class ParameterError(ValueError):
    """An unknown, mistyped or invalid notebook parameter; the message names it."""


def distinct_ints(name: str, value) -> tuple:
    """``value`` (e.g. a notebook's ``seeds``) as a non-empty tuple of distinct ints.
    Raises: ParameterError naming parameter ``name`` otherwise (a bool is not an int here)."""
    try:
        vals = tuple(value)
    except TypeError:
        vals = ()
    if not vals or len(set(vals)) != len(vals) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                         for v in vals):
        raise ParameterError(f"parameter {name!r} must be distinct integers, got {value!r}")
    return vals


class StudyDirs:
    """Mixin of a notebook's parameter dataclass with ``output_name``, ``output_dir`` and ``runs_dir`` fields:
    where its tables and figures go and where its training runs live (``outputs/runs/<RUNS>``, ``RUNS`` a class
    attribute of the notebook family, so notebooks sharing it reuse each other's runs)."""

    RUNS = "runs"

    @property
    def out_dir(self):
        """``output_dir``, else outputs/<output_name>/ (a :class:`pathlib.Path`)."""
        from pathlib import Path

        from .paths import outputs_dir
        return Path(self.output_dir) if self.output_dir else outputs_dir(self.output_name)

    @property
    def runs_root(self):
        """``runs_dir``, else outputs/runs/<RUNS>/ (a :class:`pathlib.Path`)."""
        from pathlib import Path

        from .paths import outputs_dir
        return Path(self.runs_dir) if self.runs_dir else outputs_dir("runs", self.RUNS)


def collect(namespace: dict, cls, exclude: tuple[str, ...] = ()):
    """Build ``cls`` (a dataclass) from the user globals of a notebook namespace.

    Globals starting with ``_``, modules, functions, classes and IPython's own names are skipped.
    Raises: ParameterError naming an unknown parameter (and the closest known name).
    """
    fields = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for k, v in namespace.items():
        if k.startswith("_") or k in _IPYTHON_NAMES or k in exclude:
            continue
        if isinstance(v, (types.ModuleType, types.FunctionType, type)) or callable(v):
            continue
        if k not in fields:
            near = difflib.get_close_matches(k, sorted(fields), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ParameterError(f"unknown parameter {k!r}{hint}; known parameters: {', '.join(sorted(fields))}")
        values[k] = v
    return from_dict(cls, values)


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _as_bool(name: str, v):
    """A bool parameter from a bool or its spelling (papermill passes ``-p progress false`` as the
    string 'false', which Python would take as true)."""
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in _TRUE + _FALSE:
        return v.strip().lower() in _TRUE
    raise ParameterError(f"parameter {name!r} must be true or false, got {v!r}")


def from_dict(cls, values: dict):
    """Instantiate a parameter dataclass from a dict, refusing unknown keys by name and turning
    spelled booleans ('true' / 'false') into bools for ``bool`` fields.

    Raises: ParameterError naming an unknown parameter or a bool parameter that is neither.
    """
    values = dict(values)
    for f in dataclasses.fields(cls):
        if f.name in values and f.type in (bool, "bool"):
            values[f.name] = _as_bool(f.name, values[f.name])
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        near = difflib.get_close_matches(unknown[0], sorted(fields), n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ParameterError(f"unknown parameter {unknown[0]!r}{hint}; known parameters: {', '.join(sorted(fields))}")
    return cls(**values)


def parameters_source(cls, comments: dict | None = None,
                      header: str = "# Parameters (papermill overrides these)") -> str:
    """Source of a notebook's papermill ``parameters`` cell, generated from the defaults of the
    notebook's parameter dataclass, so that the cell and the library can never disagree.

    Args:
        cls: the parameter dataclass (every field needs a default).
        comments: optional per-field trailing comments (e.g. what the paper used).
    Returns: Python source, one ``name = default`` line per field (tuples written as lists).
    """
    comments = comments or {}
    lines = [header]
    for f in dataclasses.fields(cls):
        v = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        v = list(v) if isinstance(v, tuple) else v
        line = f"{f.name} = {v!r}"
        lines.append(f"{line:<36}  # {comments[f.name]}" if f.name in comments else line)
    return "\n".join(lines)
