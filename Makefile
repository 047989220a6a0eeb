# Two commands on a fresh Debian machine (root):  make demo   and   make test
VENV   ?= .venv
PYTHON ?= python3
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
CORE    = $(VENV)/.core-built
CORE_SRC = src/chokepoint/fast/core.py src/chokepoint/fast/core.pxd setup.py

.PHONY: setup demo test lint bench matrix matrix-docs clean

setup: $(STAMP) $(CORE)

$(STAMP): pyproject.toml scripts/install-system-deps.sh
	bash scripts/install-system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,scale]'
	$(PY) -c "from chokepoint import fast; fast.load(compiled=True)"
	touch $(STAMP)
	touch $(CORE)

## The compiled fast-path core (Cython, setup.py): rebuilt when its source changes; setup fails if it did not build.
$(CORE): $(STAMP) $(CORE_SRC)
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -c "from chokepoint import fast; fast.load(compiled=True)"
	touch $(CORE)

## Generate the bundled demo capture and print what the demo profile would block, and why.
demo: setup
	$(VENV)/bin/chokepoint demo

## Run the whole test suite (lint, unit, property, real-capture and end-to-end tests).
test: setup lint
	$(PY) -m pytest -n 2 --dist loadgroup -q

## ruff (lint + format check).
lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

## The full circumvention matrix: every bundled profile x every bundled transport, in the lab (root; long).
MATRIX_OUT ?= out/matrix
matrix: setup
	$(VENV)/bin/chokepoint matrix -o $(MATRIX_OUT)

## Regenerate the matrix section of docs/matrix.md from $(MATRIX_OUT)/matrix.json (after make matrix).
matrix-docs: setup
	$(PY) -m chokepoint.matrix.docs $(MATRIX_OUT)/matrix.json docs/matrix.md

bench: setup
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) bench/engine_throughput.py
	$(PY) bench/policy_compile.py
	$(PY) bench/ndpi_agreement.py
	$(PY) bench/lab_throughput.py
	$(PY) bench/manager_fleet.py
	$(PY) bench/manager_api.py

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis
