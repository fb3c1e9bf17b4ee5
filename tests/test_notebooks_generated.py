"""Every committed notebook is exactly what its generator in scripts/ writes, carries no outputs, and has a
smoke preset (params/<name>/smoke.yaml) whose keys are fields of its parameter dataclass.

The generators are run in this process, into a temporary directory: scripts that take an output directory
(``main(out_dir)``) are called with it, the others are run as scripts; ``nbformat.write`` is redirected into
the temporary directory throughout, so no test ever writes into notebooks/.
"""
import ast
import dataclasses
import difflib
import importlib
import runpy
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"

GENERATORS = sorted((ROOT / "scripts").glob("make_*notebook*.py"))
COMMITTED = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
#: parameter dataclasses that cannot be read off the notebook's ``collect(globals(), module.Class)`` call
PARAMS_CLASS = {"viewer": "bevlib.viewer:ViewerParams"}   # the viewer notebook calls viewer_params(globals())


def _generator(stem: str) -> Path | None:
    """The script in scripts/ that names ``<stem>.ipynb``."""
    hits = [g for g in GENERATORS if f'"{stem}.ipynb"' in g.read_text() or f"'{stem}.ipynb'" in g.read_text()]
    assert len(hits) <= 1, f"{stem}.ipynb is named by several generators: {[g.name for g in hits]}"
    return hits[0] if hits else None


def _params_class(stem: str):
    """The notebook's parameter dataclass: from its ``_params.collect(globals(), <module>.<Class>)`` call and
    the notebook's own imports, else from PARAMS_CLASS."""
    spec = PARAMS_CLASS.get(stem)
    if spec is None:
        nb = nbformat.read(NOTEBOOKS / f"{stem}.ipynb", as_version=4)
        aliases, target = {}, None
        for cell in nb.cells:
            if cell.cell_type != "code" or "parameters" in cell.metadata.get("tags", []):
                continue
            for node in ast.walk(ast.parse(cell.source)):
                if isinstance(node, ast.ImportFrom) and node.module:
                    aliases.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})
                elif isinstance(node, ast.Import):
                    aliases.update({a.asname or a.name: a.name for a in node.names})
                elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "collect"
                      and len(node.args) == 2 and isinstance(node.args[1], ast.Attribute)
                      and isinstance(node.args[1].value, ast.Name)):
                    target = (node.args[1].value.id, node.args[1].attr)
        assert target and target[0] in aliases, \
            f"cannot tell the parameter dataclass of {stem}.ipynb: add it to PARAMS_CLASS in {Path(__file__).name}"
        spec = f"{aliases[target[0]]}:{target[1]}"
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, dict]:
    """Run every generator once into one temporary directory; returns it and {script name: the error it
    raised} (so that one broken generator fails only its own notebooks)."""
    out = tmp_path_factory.mktemp("generated_notebooks")
    real_write = nbformat.write
    written, errors = [], {}

    def write_into_out(nb, fp, *args, **kwargs):   # whatever path a generator names, it lands in `out`
        written.append(Path(fp).name)
        return real_write(nb, str(out / Path(fp).name), *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(nbformat, "write", write_into_out)
        for path in GENERATORS:
            del written[:]
            try:
                ns = runpy.run_path(str(path), run_name="bevlib_notebook_generator")   # some write on import
                if callable(ns.get("main")):
                    ns["main"](out)
                elif not written:
                    runpy.run_path(str(path), run_name="__main__")
            except Exception as e:   # noqa: BLE001 - reported by the tests of this generator's notebooks
                errors[path.name] = f"{type(e).__name__}: {e}"
    return out, errors


def _essentials(nb) -> dict:
    """What must agree between generator and committed file: format, kernel, and per cell its type,
    id, source and tags."""
    return {
        "nbformat": (nb.nbformat, nb.nbformat_minor),
        "kernelspec": dict(nb.metadata.get("kernelspec", {})),
        "language": nb.metadata.get("language_info", {}).get("name"),
        "cells": [{"type": c.cell_type, "id": c.get("id"), "source": c.source,
                   "tags": list(c.metadata.get("tags", []))} for c in nb.cells],
    }


def test_every_notebook_has_one_generator():
    assert COMMITTED, "no notebooks found"
    orphans = [stem for stem in COMMITTED if _generator(stem) is None]
    assert not orphans, f"notebooks that no scripts/make_*notebook*.py writes: {orphans}"


@pytest.mark.parametrize("stem", COMMITTED)
def test_notebook_matches_its_generator(stem, generated):
    script = _generator(stem)
    assert script is not None, f"no generator writes {stem}.ipynb"
    out, errors = generated
    assert script.name not in errors, f"scripts/{script.name} failed: {errors[script.name]}"
    fresh_path = out / f"{stem}.ipynb"
    assert fresh_path.exists(), f"scripts/{script.name} did not write {stem}.ipynb"
    fresh = nbformat.read(fresh_path, as_version=4)
    nbformat.validate(fresh)
    committed = nbformat.read(NOTEBOOKS / f"{stem}.ipynb", as_version=4)
    a, b = _essentials(committed), _essentials(fresh)
    hint = f"notebooks/{stem}.ipynb is stale: run .venv/bin/python scripts/{script.name}"
    assert [c["id"] for c in a["cells"]] == [c["id"] for c in b["cells"]], f"{hint} (cells added, removed or renamed)"
    for ca, cb in zip(a["cells"], b["cells"]):
        if ca != cb:
            diff = "\n".join(difflib.unified_diff(ca["source"].splitlines(), cb["source"].splitlines(),
                                                   "committed", "generated", lineterm=""))
            pytest.fail(f"{hint} (cell {ca['id']} differs)\n{diff or (ca, cb)}")
    assert a == b, hint
    if fresh_path.read_bytes() != (NOTEBOOKS / f"{stem}.ipynb").read_bytes():
        # same cells and kernel, other bytes: extra metadata (e.g. saved from JupyterLab)
        pytest.fail(f"{hint} (same cells, different bytes: metadata or formatting)")


@pytest.mark.parametrize("stem", COMMITTED)
def test_committed_notebook_has_no_outputs(stem):
    nb = nbformat.read(NOTEBOOKS / f"{stem}.ipynb", as_version=4)
    for c in nb.cells:
        if c.cell_type == "code":
            assert c.outputs == [] and c.execution_count is None, f"{stem}.ipynb cell {c.get('id')} has outputs"
        assert "papermill" not in c.metadata and "execution" not in c.metadata, f"{stem}.ipynb: executed cell metadata"
    assert "papermill" not in nb.metadata, f"{stem}.ipynb was saved after a papermill run"


@pytest.mark.parametrize("stem", COMMITTED)
def test_parameters_cell_matches_the_parameter_dataclass(stem):
    nb = nbformat.read(NOTEBOOKS / f"{stem}.ipynb", as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{stem}.ipynb needs exactly one cell tagged 'parameters'"
    names = [t.id for node in ast.parse(cells[0].source).body if isinstance(node, ast.Assign)
             for t in node.targets if isinstance(t, ast.Name)]
    fields = [f.name for f in dataclasses.fields(_params_class(stem))]
    assert names == fields, f"{stem}.ipynb parameters cell vs {_params_class(stem).__name__}"


@pytest.mark.parametrize("stem", COMMITTED)
def test_smoke_preset_names_only_fields(stem):
    preset = ROOT / "params" / stem / "smoke.yaml"
    if not preset.exists():
        pytest.fail(f"{preset.relative_to(ROOT)} is missing: every notebook needs a smoke preset")
    values = yaml.safe_load(preset.read_text()) or {}
    assert isinstance(values, dict), f"{preset} must be a mapping"
    cls = _params_class(stem)
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
    assert not unknown, f"{preset.relative_to(ROOT)}: not fields of {cls.__name__}: {unknown}"
    from bevlib.params import from_dict
    from_dict(cls, values)   # the preset's values pass the dataclass's own checks
