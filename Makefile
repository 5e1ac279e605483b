# Two entry points: `make demo` and `make test`. Each creates .venv if missing,
# installs torch==2.13.0 first (a CPU wheel; an unpinned torch pulls a multi-GB
# CUDA build), then the project with the extras it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test lint install install-dev bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.torch: | $(PY)
	$(PIP) install -q "$(TORCH_SPEC)"
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.torch
	$(PIP) install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# Replays the bundled recording (3 sensors, a scripted void fault and an interference burst)
# through the agent's pipeline with the shipped MAD_small; prints alarms, the score against
# the recording's ground truth, and writes a timeline plot.
demo: install
	mkdir -p build
	$(VENV)/bin/mad-agent replay demo/recorded.h5 --plot build/demo_timeline.png

lint: install-dev
	$(VENV)/bin/ruff check .

# One torch thread per process: the suite runs broker, agent and test processes side by side on
# 2 cores, where two threads each were 5x slower than one (docs/model.md).
test: install-dev
	$(VENV)/bin/ruff check .
	OMP_NUM_THREADS=1 $(VENV)/bin/pytest -q

bench: install
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
