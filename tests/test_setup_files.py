"""The install files agree: pyproject.toml's dependencies (+ the `test` extra) and environment.yml list the same
packages with the same version specifiers, constraints.txt pins torch inside pyproject's range, and every
pip install in the Makefile, .ci/run, the README and scripts/*.sh passes the constraint file (any other torch
spec pulls gigabytes of CUDA wheels)."""
import re
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:   # pragma: no cover - the `test` extra installs tomli on Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]

#: conda-forge package name -> the PyPI distribution it provides
CONDA_TO_PYPI = {"pytorch": "torch", "matplotlib-base": "matplotlib", "py-opencv": "opencv-python-headless"}
#: conda entries that are not Python distributions of the project
CONDA_TOOLS = {"python", "pip"}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _environment() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def _env_python() -> str:
    for dep in _environment()["dependencies"]:
        if isinstance(dep, str) and re.match(r"python\s*[=<>]", dep):
            return re.sub(r"^python\s*=*\s*", "", dep).strip()
    pytest.fail("environment.yml does not pin python")


def _pyproject_requirements() -> dict[str, SpecifierSet]:
    """pyproject's dependencies + test extra that apply to environment.yml's Python, by canonical name."""
    project = _pyproject()["project"]
    marker_env = {"python_version": ".".join(_env_python().split(".")[:2]), "extra": "test"}
    out = {}
    for line in project["dependencies"] + project["optional-dependencies"]["test"]:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(marker_env):
            out[canonicalize_name(req.name)] = req.specifier
    return out


def _conda_requirement(spec: str) -> tuple[str, SpecifierSet]:
    """``numpy<2`` / ``shapely>=2`` / ``pytest=8.3`` (conda's fuzzy ``=``) -> (PyPI name, specifier)."""
    m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*", spec.split("::")[-1])
    assert m, f"environment.yml: cannot read {spec!r}"
    name, version = m.group(1).lower(), m.group(2).replace(" ", "")
    if re.fullmatch(r"=[^=].*", version):   # conda's `=X` means `X.*`
        version = f"=={version[1:].rstrip('*').rstrip('.')}.*"
    return canonicalize_name(CONDA_TO_PYPI.get(name, name)), SpecifierSet(version)


def _environment_requirements() -> tuple[dict[str, SpecifierSet], list[str]]:
    """environment.yml's packages by canonical PyPI name, and the pip section's option lines."""
    out, options = {}, []
    for dep in _environment()["dependencies"]:
        if isinstance(dep, dict):
            for line in dep.get("pip", []):
                if line.strip().startswith("-"):
                    options.append(" ".join(line.split()))
                    continue
                req = Requirement(line)
                out[canonicalize_name(req.name)] = req.specifier
        elif dep.split("=")[0].split("<")[0].split(">")[0].strip().lower() not in CONDA_TOOLS:
            name, spec = _conda_requirement(dep)
            out[name] = spec
    return out, options


def test_environment_yml_has_the_same_packages_as_pyproject():
    pip_side = _pyproject_requirements()
    conda_side, _ = _environment_requirements()
    missing = sorted(set(pip_side) - set(conda_side))
    extra = sorted(set(conda_side) - set(pip_side))
    assert not missing, f"in pyproject.toml but not in environment.yml: {missing}"
    assert not extra, f"in environment.yml but not in pyproject.toml: {extra}"
    differ = {n: (str(pip_side[n]), str(conda_side[n])) for n in pip_side if pip_side[n] != conda_side[n]}
    assert not differ, f"version specifiers differ (pyproject, environment.yml): {differ}"


def test_environment_yml_installs_the_project_with_the_constraint_file():
    _, options = _environment_requirements()
    assert "-c constraints.txt" in options, "environment.yml's pip section must pass -c constraints.txt"
    assert any(re.fullmatch(r"-e \.(\[.*\])?", o) for o in options), "environment.yml must install the project (-e .)"


def test_constraints_pin_torch_inside_the_pyproject_range():
    torch_range = _pyproject_requirements()["torch"]
    assert torch_range, "pyproject.toml should give torch a range (>=...), not leave it open"
    assert not any(s.operator in ("==", "===") for s in torch_range), \
        "pyproject.toml pins torch exactly: a CUDA install could not satisfy it; pin in constraints.txt"
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            pins[canonicalize_name(req.name)] = req.specifier
    assert "torch" in pins, "constraints.txt must pin torch (the CPU build)"
    (pin,) = list(pins["torch"])
    assert pin.operator == "==", f"constraints.txt should pin torch exactly, not {pin}"
    assert torch_range.contains(pin.version, prereleases=True), f"torch {pin.version} is outside pyproject's {torch_range}"
    for name, spec in pins.items():   # every other pin agrees with what pyproject asks for
        if name in _pyproject_requirements() and name != "torch":
            assert spec == _pyproject_requirements()[name] or all(spec.contains(s.version) for s in spec
                                                                  if s.operator == "=="), (name, spec)


def _install_commands():
    """(file, line) for every pip install in the files a user or CI runs."""
    files = [ROOT / "Makefile", ROOT / ".ci" / "run", ROOT / "README.md", *sorted((ROOT / "scripts").glob("*.sh"))]
    for path in files:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            if re.search(r"\bpip3?\b[^\n`]*\binstall\b|\$\(PIP\)|\buv pip install\b", line):
                yield path.relative_to(ROOT), line.strip()


def test_every_pip_install_passes_the_constraint_file():
    makefile = (ROOT / "Makefile").read_text()
    pip_var = re.search(r"^PIP\s*:?=\s*(.*)$", makefile, re.M)
    assert pip_var and "-c constraints.txt" in pip_var.group(1), "the Makefile's $(PIP) must pass -c constraints.txt"
    commands = list(_install_commands())
    assert commands, "no pip install found in the Makefile"
    unconstrained = [f"{f}: {line}" for f, line in commands
                     if "-c constraints.txt" not in line and "$(PIP)" not in line and not line.startswith("PIP")]
    assert not unconstrained, "pip installs without -c constraints.txt:\n" + "\n".join(unconstrained)
