# Quickstart: `make demo` and `make test`. Both set up .venv themselves.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.kan-mlip-installed
DEMO   ?= demo

.PHONY: setup test test-fast demo clean

setup: $(STAMP)

# torch is installed first and pinned by constraints.txt, so no other package can pull a CUDA torch
$(STAMP): pyproject.toml constraints.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -r requirements-dev.txt
	$(PIP) install -q -c constraints.txt --no-deps --no-build-isolation -e .
	$(PY) -c "import torch, nequip, allegro, kan_mlip; print('torch', torch.__version__, '| kan_mlip', kan_mlip.__version__)"
	touch $@

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

# Until the LAMMPS pair style lands: generate the EMT Ag data, train a small KAN-readout Allegro, evaluate it.
demo: setup
	$(VENV)/bin/kan-mlip demo --workdir $(DEMO)

clean:
	rm -rf $(VENV) $(DEMO) outputs build
