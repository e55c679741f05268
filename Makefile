# The two commands of the README's quick start are `make serve` and `make test`;
# every target creates the virtual environment on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
HOST   ?= 127.0.0.1:8000
export NO_MKDOCS_2_WARNING := 1
# Tests and the site build run many small matrix products; two BLAS threads on
# two busy cores made them 25-60x slower here. Benchmarks set their own.
SINGLE_THREAD := OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1

.PHONY: help install test test-math regenerate check site serve bench lint clean

help:
	@echo "make serve       build the site and serve it on http://$(HOST)/backprop-derived/"
	@echo "make test        every test: math, generated code, site and browser"
	@echo "make test-math   the tests without the site build and browser (pytest -m 'not site')"
	@echo "make regenerate  rerun derivations/ and rewrite the generated code and LaTeX"
	@echo "make check       fail with a diff if the committed generated files are stale"
	@echo "make site        mkdocs build --strict into site/"
	@echo "make bench       benchmarks (ratios against the bare GEMMs, measured in one run)"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,docs,fast]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(SINGLE_THREAD) $(PY) -m pytest

test-math: $(STAMP)
	$(SINGLE_THREAD) $(PY) -m pytest -m "not site"

regenerate: $(STAMP)
	$(PY) -m backprop_derived regenerate

check: $(STAMP)
	$(PY) -m backprop_derived regenerate --check

# The build also writes assets/live/ (docs/hooks/live_assets.py): Pyodide from
# npm and SymPy/mpmath from PyPI, pinned by sha256 and cached in
# ~/.cache/backprop-derived/live, so only the first build needs the network.
site: $(STAMP)
	$(PY) -m mkdocs build --strict

# mkdocs serve runs the same strict build (every page executed) before serving,
# and rebuilds when docs/, derivations/ or src/ change.
serve: $(STAMP)
	$(PY) -m mkdocs serve --strict --dev-addr $(HOST)

bench: $(STAMP)
	$(PY) -m benchmarks
	$(PY) -m benchmarks.layers
	$(PY) -m benchmarks.backends

# ruff is not a dependency of the project: install it into the venv to lint.
lint: $(STAMP)
	@$(PY) -m ruff --version >/dev/null 2>&1 || { echo "make lint: ruff is not installed in $(VENV) (it is not a dependency); run: $(PY) -m pip install ruff"; exit 1; }
	$(PY) -m ruff check src tests benchmarks derivations docs

clean:
	rm -rf site .pytest_cache .hypothesis
