"""Experiment drivers, one module per paper; notebooks call these.

Each paper's module registers its headline claims with :func:`bevlib.scoreboard.register_claim`
when imported. The library never imports an experiment module, so :func:`import_papers` is how
the scoreboard (notebooks/scoreboard.ipynb) gets every paper's claims registered.
"""
from __future__ import annotations

import importlib
from typing import Sequence

#: Paper modules in this package (``bevlib.experiments.<name>``) that register scoreboard claims.
PAPERS = ("busch2026", "multivit", "s3pt", "combined", "csc")


def import_papers(papers: Sequence[str] | None = None) -> list[str]:
    """Import the experiment modules of ``papers`` (default: all of :data:`PAPERS`), which
    registers their claims in :mod:`bevlib.scoreboard`.

    Returns: the paper names imported, in order.
    Raises: ParameterError for a name not in :data:`PAPERS`; a module's own import error (with
    the paper named in the message) rather than a scoreboard that silently lacks that paper.
    """
    from ..params import ParameterError

    names = list(PAPERS if papers is None else papers)
    unknown = [p for p in names if p not in PAPERS]
    if unknown:
        raise ParameterError(f"unknown paper {unknown[0]!r}; known papers: {', '.join(PAPERS)}")
    for name in names:
        try:
            importlib.import_module(f"{__name__}.{name}")
        except Exception as e:
            raise ImportError(f"bevlib.experiments.{name} (paper {name!r}) failed to import: {e}") from e
    return names
