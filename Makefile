# Two commands for a fresh machine (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch stays at the CPU build 2.13.0 on every install: any other spec pulls GBs of CUDA wheels.
PIP    := $(PY) -m pip install -q -c constraints.txt

.PHONY: setup demo test real-keyframe viewer

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PIP) torch==2.13.0
	$(PIP) -e ".[test]"
	touch $@

# The main job on the embedded default: busch2026 Table I, Fig. 5, Fig. 6 -> outputs/table1/
demo: setup
	mkdir -p outputs/table1
	$(VENV)/bin/papermill notebooks/table1.ipynb outputs/table1/table1.executed.ipynb --cwd notebooks

# The real-keyframe renderer check (needs ../shared/nuscenes-keyframe) -> outputs/real_keyframe/
real-keyframe: setup
	$(PY) -m bevlib.real_keyframe --dataroot ../shared/nuscenes-keyframe --out outputs/real_keyframe

# The interactive BEV / reprojection viewer as a page (loopback only)
viewer: setup
	$(VENV)/bin/voila notebooks/viewer.ipynb --Voila.ip=127.0.0.1 --no-browser

test: setup
	$(PY) -m pytest -q
