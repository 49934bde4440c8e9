# One-command set-up on a fresh Debian/Ubuntu machine (root or sudo), then run.
#   make demo   - install everything, register the embedded sample pair (headless;
#                 replaces an earlier demo-output/)
#   make test   - install everything (Debian packages included), run the suite under Xvfb
#   make bench  - run the benchmarks against the peers (writes docs/benchmarks.md)
#   make bench-speed - only issue 11's speed and memory targets, in one run
#                 (make bench-speed QUICK=1: a smoke run into benchmarks/results/quick.md)
#   make bench-geo-peers - AROSICS in its own venv (GDAL bindings from Debian's
#                 libgdal-dev), then benchmarks/bench_geo.py side by side with it

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch first, pinned to a CPU build that is a wheel on the development machines;
# the project's own dependency is a range (torch>=2.2) that keeps it.
TORCH_SPEC ?= torch==2.13.0
DEB_PACKAGES := xvfb libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-icccm4 \
	libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 \
	libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libdbus-1-3
# AROSICS needs GDAL's Python bindings built against the system GDAL: its own
# venv, gdal pinned to gdal-config's version (else pip builds a newer one).
AROSICS_VENV ?= .venv-arosics
AROSICS_SPEC ?= arosics
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system-deps demo test bench bench-speed bench-geo-peers lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -e ".[dev,geo]"
	touch $@

setup: $(VENV)/.installed

system-deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q $$missing; \
	fi

demo: setup
	$(BIN)/napari-coreg demo --out demo-output --force

test: setup system-deps
	xvfb-run -a -s "-screen 0 1280x1024x24" $(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/run_all.py

bench-speed: setup
	$(BIN)/python benchmarks/run_all.py --suites speed $(if $(QUICK),--quick)

$(AROSICS_VENV)/.installed:
	command -v gdal-config >/dev/null || \
		($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q libgdal-dev)
	$(PYTHON) -m venv $(AROSICS_VENV)
	$(AROSICS_VENV)/bin/python -m pip install --upgrade pip wheel "setuptools<70" "numpy<2"
	printf 'gdal==%s\nnumpy<2\n' "$$(gdal-config --version)" > $(AROSICS_VENV)/constraints.txt
	$(AROSICS_VENV)/bin/python -m pip install --no-build-isolation \
		-c $(AROSICS_VENV)/constraints.txt "gdal==$$(gdal-config --version)"
	$(AROSICS_VENV)/bin/python -m pip install -c $(AROSICS_VENV)/constraints.txt "$(AROSICS_SPEC)"
	touch $@

bench-geo-peers: setup $(AROSICS_VENV)/.installed
	$(BIN)/python benchmarks/bench_geo.py --arosics-python $(AROSICS_VENV)/bin/python

lint: setup
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) demo-output build dist
