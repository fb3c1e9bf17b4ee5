"""Building the suite's notebooks from code (``scripts/make_*notebook*.py``): the shared scaffold.

Notebooks are generated, never hand-edited, and committed without outputs: a ``parameters`` cell
generated from the notebook's parameter dataclass (:func:`bevlib.params.parameters_source`), fixed
cell ids so that regenerating an unchanged notebook changes no byte, and one writer.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import nbformat as nbf

from .params import parameters_source

#: Where the committed notebooks live.
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def parameters_cell(cls, comments: dict | None = None, header: str | None = None) -> nbf.NotebookNode:
    """The papermill ``parameters`` cell (tagged) generated from a parameter dataclass."""
    kw = {} if header is None else {"header": header}
    cell = nbf.v4.new_code_cell(parameters_source(cls, comments, **kw))
    cell.metadata["tags"] = ["parameters"]
    return cell


def build(cells: Sequence[nbf.NotebookNode], id_format: str = "cell-{}", ids: Sequence[str] | None = None,
          language_info: bool = False) -> nbf.NotebookNode:
    """A python3 notebook of ``cells`` with fixed ids (``id_format`` of the index, or ``ids``)."""
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if language_info:
        nb.metadata["language_info"] = {"name": "python"}
    cells = list(cells)
    for i, cell in enumerate(cells):
        cell["id"] = ids[i] if ids is not None else id_format.format(i)
    nb.cells = cells
    return nb


def write(nb: nbf.NotebookNode, name: str, out_dir: str | Path = NOTEBOOKS) -> Path:
    """Validate and write ``nb`` as ``<out_dir>/<name>`` (default: the repository's notebooks/)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    nbf.validate(nb)
    nbf.write(nb, out_dir / name)
    print(f"wrote {'notebooks' if out_dir == NOTEBOOKS else out_dir}/{name}")
    return out_dir / name
