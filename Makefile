# Two commands on a fresh Debian machine (root):  make demo   and   make test
VENV   ?= .venv
PYTHON ?= python3
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
CORE    = $(VENV)/.core-built
CORE_SRC = src/chokepoint/fast/core.py src/chokepoint/fast/core.pxd setup.py

.PHONY: setup demo test lint bench matrix matrix-timeline matrix-timeline-docs matrix-docs clean

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

## ruff (lint + format check) and mypy (strict on the packages listed in pyproject.toml's [tool.mypy]).
lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

## The full circumvention matrix: every bundled profile x every bundled transport, in the lab (root; long).
MATRIX_OUT ?= out/matrix
matrix: setup
	$(VENV)/bin/chokepoint matrix -o $(MATRIX_OUT)

## The matrix through time: every bundled profile at the first day of each of its eras x every bundled transport
## (root; very long: about 50 profile-days). A smaller one: make matrix-timeline MATRIX_TIMELINE_ARGS="-p gfw -t trojan".
MATRIX_TIMELINE_OUT ?= out/matrix-timeline
MATRIX_TIMELINE_AS_OF ?= eras
MATRIX_TIMELINE_ARGS ?=
matrix-timeline: setup
	$(VENV)/bin/chokepoint matrix --as-of $(MATRIX_TIMELINE_AS_OF) $(MATRIX_TIMELINE_ARGS) -o $(MATRIX_TIMELINE_OUT)

## Regenerate the timeline section of docs/matrix.md (and its charts) from $(MATRIX_TIMELINE_OUT)/matrix.json.
matrix-timeline-docs: setup
	$(PY) -m chokepoint.matrix.docs $(MATRIX_TIMELINE_OUT)/matrix.json docs/matrix.md

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
	$(PY) bench/flood_rss.py
	$(PY) bench/inline_flood.py
	$(PY) bench/ray_scale.py
	$(PY) bench/lab_delay.py
	$(PY) bench/mirror_races.py
	$(PY) bench/trace_positions.py
	$(PY) bench/tls_in_tls_rates.py
	$(PY) bench/quic_short_header_fp.py

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis .mypy_cache
