# Two commands for a fresh machine (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch stays at the CPU build 2.13.0 on every install: any other spec pulls GBs of CUDA wheels.
# Every pip install goes through $(PIP) (tests/test_setup_files.py checks it).
PIP    := $(PY) -m pip install -q -c constraints.txt
# `make lab`: JupyterLab on loopback only (as root, e.g. in a container, jupyter needs --allow-root)
LAB_PORT ?= 8888
LAB_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: setup demo fidelity scoreboard test test-fast chromium lab real-keyframe viewer

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) torch==2.13.0
	$(PIP) -e ".[test]"
	touch $@

# The main job on the embedded default: busch2026 Table I, Fig. 5, Fig. 6 -> outputs/table1/
# --log-output: what the notebook prints (one line per training epoch and run) reaches this terminal, with
# "Executing Cell N" lines; papermill's own cell bar (--progress-bar) would be broken up by those lines.
# BEVLIB_PROGRESS_BARS=0: a headless kernel cannot draw tqdm's bars (they would stay at 0 % in the log).
demo: setup
	mkdir -p outputs/table1
	BEVLIB_PROGRESS_BARS=0 $(VENV)/bin/papermill notebooks/table1.ipynb outputs/table1/table1.executed.ipynb --cwd notebooks --log-output

# busch2026's headline question on the embedded world: the fidelity preset (3 seeds, scratch control,
# linear probe; about 45 min on 2 cores) -> outputs/table1_fidelity/
fidelity: setup
	mkdir -p outputs/table1_fidelity
	BEVLIB_PROGRESS_BARS=0 $(VENV)/bin/papermill notebooks/table1.ipynb outputs/table1_fidelity/table1.executed.ipynb \
		-f params/table1/fidelity.yaml --cwd notebooks --log-output

# Every paper's headline claims, held / not held, from the latest outputs -> outputs/scoreboard/
scoreboard: setup
	mkdir -p outputs/scoreboard
	$(VENV)/bin/papermill notebooks/scoreboard.ipynb outputs/scoreboard/scoreboard.executed.ipynb --cwd notebooks

# The real-keyframe renderer check (needs ../shared/nuscenes-keyframe) -> outputs/real_keyframe/
real-keyframe: setup
	$(PY) -m bevlib.real_keyframe --dataroot ../shared/nuscenes-keyframe --out outputs/real_keyframe

# The interactive BEV / reprojection viewer as a page (loopback only)
viewer: setup
	$(VENV)/bin/voila notebooks/viewer.ipynb --Voila.ip=127.0.0.1 --no-browser

# JupyterLab in notebooks/ on 127.0.0.1:$(LAB_PORT) (no browser: open the URL with the token it prints)
lab: $(VENV)/.lab-installed
	$(VENV)/bin/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.port=$(LAB_PORT) --ServerApp.open_browser=False \
		--ServerApp.root_dir=notebooks $(LAB_ROOT)

$(VENV)/.lab-installed: $(VENV)/.installed
	$(PIP) jupyterlab
	touch $@

# Debian's chromium for the viewer's real-browser test (scripts/ensure_chromium.sh never fails; without the
# script, or without chromium, that test skips)
chromium:
	@if [ -f scripts/ensure_chromium.sh ]; then bash scripts/ensure_chromium.sh || true; fi

# The whole suite (the slow tests included: notebooks end to end, the browser, torchrun)
test: setup chromium
	$(PY) -m pytest -q

# The unit tests only (no @pytest.mark.slow): a few minutes on 2 cores
test-fast: setup
	$(PY) -m pytest -q -m "not slow"
