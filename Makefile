# ddpm-lessons: `make lab` sets up and opens the lessons; `make test` sets up and runs every test.
# Both are idempotent: the virtual environment is (re)built only when pyproject.toml changes.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The torch build to install. The default is the CPU build (~0.9 GB). On a CUDA machine use e.g.
#   make setup TORCH_SPEC=torch
TORCH_SPEC ?= torch==2.13.0
PYTEST_WORKERS ?= 2
export DDPM_LESSONS_CACHE ?= $(CURDIR)/.cache/ddpm_lessons
# One BLAS/OpenMP thread per process: pytest-xdist runs one process (and notebook kernel) per core, and two threads
# each on two cores ran notebooks several times slower. The committed notebook outputs were computed the same way.
export OMP_NUM_THREADS ?= 1

# Notebooks under strict nbval; a second pass re-runs them with another numerical setting (two threads, MKL limited to
# SSE4.2 and oneDNN to SSE4.1 kernels: see the README's "Lesson models"), so an output that hangs on floating-point
# accumulation order fails here rather than on a learner's machine.
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with .ci/nbval_sanitize.cfg --nbval-cell-timeout=300 -p no:randomly
PORTABILITY_ENV := OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 MKL_ENABLE_INSTRUCTIONS=SSE4_2 ONEDNN_MAX_CPU_ISA=SSE41
# `make lab`: as root (containers, cloud VMs) Jupyter needs --allow-root; without a display (Linux, no X11/Wayland)
# it must not try to open a browser, and prints the URL to open instead.
LAB_UID ?= $(shell id -u)
LAB_DISPLAY ?= $(if $(filter Darwin,$(shell uname -s)),macos,$(DISPLAY)$(WAYLAND_DISPLAY))
LAB_FLAGS := $(if $(filter 0,$(LAB_UID)),--allow-root) $(if $(strip $(LAB_DISPLAY)),,--no-browser)

.PHONY: setup lab test test-unit test-notebooks test-notebooks-portability test-browser lint browser-deps clean bench \
	student

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
	$(PY) -m pip install -q $(TORCH_SPEC) 2>&1 | grep -v "is ignored" || true
	@# pin whatever torch is now installed, so nothing later swaps it for another (multi-GB) build
	$(PY) -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > $(VENV)/constraints.txt
	$(PY) -m pip install -q -c $(VENV)/constraints.txt -e ".[dev]" 2>&1 | grep -v "is ignored" || true
	$(PY) -c "import ddpm_lessons, torch, sympy, nbval, diffusers; print('environment ready: torch', torch.__version__)"
	@touch $@

lab: setup
	$(VENV)/bin/jupyter lab $(strip $(LAB_FLAGS)) notebooks/

lint: setup
	$(VENV)/bin/ruff check ddpm_lessons tests bench

# Debian Chromium for the real-browser widget test (root only; elsewhere that test skips and says why).
browser-deps:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		echo "installing Debian chromium for the browser test"; \
		(apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null) \
			|| echo "chromium could not be installed: the browser test will skip"; \
	fi

test-unit: setup
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile tests

test-notebooks: setup
	DDPM_LESSONS_PROFILE=ci $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(NBVAL) notebooks

# one process (its two threads take both cores), so the pass measures the other numerical setting, not contention
test-notebooks-portability: setup
	DDPM_LESSONS_PROFILE=ci $(PORTABILITY_ENV) $(PY) -m pytest $(NBVAL) notebooks

test: setup browser-deps lint
	DDPM_LESSONS_PROFILE=ci $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile --durations=15 $(NBVAL) \
		tests notebooks
	DDPM_LESSONS_PROFILE=ci $(PORTABILITY_ENV) $(PY) -m pytest $(NBVAL) notebooks

bench: setup
	$(PY) bench/bench_checks.py
	$(PY) bench/bench_notebooks.py
	$(PY) bench/bench_quality.py

clean:
	rm -rf $(VENV) .cache .pytest_cache
