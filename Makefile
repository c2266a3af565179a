# gutsignal: every target sets up the environment from the committed lock file first.
# Needs only python3 (with pip and venv) on the machine.

SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME := $(CURDIR)/.dagster_home
export GUTSIGNAL_PROJECT_DIR ?= $(CURDIR)
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)

.PHONY: help env run demo starter test lint typecheck dev bench clean browser check-methods sufficiency-table

help:
	@echo "make run    set up, run the pipeline on the demo (or your sources.yaml), print the dashboard path"
	@echo "make test   set up and run lint, type check and the test suite"
	@echo "make dev    the Dagster UI and daemon on http://127.0.0.1:3000"
	@echo "make bench  the scale benchmark (writes bench/results.md)"
	@echo "make check-methods      calibration study of the methods (writes the README table)"
	@echo "make sufficiency-table  regenerate pipelines/data/sufficiency_draws.csv"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

# The environment is rebuilt only when the lock file or pyproject change. Bytecode is compiled
# at install: with PYTHONDONTWRITEBYTECODE set (as on the CI machines) every process would
# otherwise compile the libraries it imports, about a second per run and per dashboard worker.
$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON)
	touch $@

env: $(VENV)/.synced $(DAGSTER_HOME)/dagster.yaml

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	ln -sf ../dagster.yaml $(DAGSTER_HOME)/dagster.yaml

demo: env
	$(BIN)/gutsignal demo --project-dir $(GUTSIGNAL_PROJECT_DIR)

# The demo data goes into the checkout's own project or a folder that has no sources.yaml yet,
# never into a user's project: a source globbing data/raw/** would ingest the demo's people.
starter: env
	@if [ "$(realpath $(GUTSIGNAL_PROJECT_DIR))" = "$(CURDIR)" ] || \
		[ ! -e "$(GUTSIGNAL_PROJECT_DIR)/sources.yaml" ]; then \
		$(BIN)/gutsignal demo --project-dir "$(GUTSIGNAL_PROJECT_DIR)"; fi

run: starter
	$(BIN)/gutsignal run --project-dir $(GUTSIGNAL_PROJECT_DIR)

lint: env
	$(BIN)/ruff format --check pipelines tests bench
	$(BIN)/ruff check pipelines tests bench
	$(BIN)/lint-imports --no-logo

typecheck: env
	$(BIN)/mypy

# Browser tests drive Debian's chromium (Playwright cannot download a browser here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

# The suite runs in one pytest worker process per core (pytest-xdist; a CI machine has 2; set
# PYTEST_WORKERS to choose). --dist worksteal hands each worker a contiguous half of the tests
# and lets a worker that runs dry take tests from the end of the other's share: a module's
# tests mostly stay in one worker (its module-scoped fixture, a demo project built and
# refreshed, is built once) and neither worker idles while the other finishes a heavy file, as
# it did with --dist loadfile. (--dist loadgroup would let us pin tests together, but xdist 3.8
# cannot rename a pytest 9.2 node id, so its groups are silently ignored.) tests/conftest.py
# says what keeps two workers apart, and puts the heaviest files (HEAVY_FILES) first in each
# worker's share so that none of them is the last thing running. A test that needs the state
# after a full run copies a built project (`copy_project`) rather than running the pipeline again.
PYTEST_WORKERS ?= $(shell nproc 2>/dev/null || echo 1)

# The suite's temporary files (demo projects, thousands of small DuckDB, SQLite and Parquet
# files, each commit synced to disk) go to the machine's RAM disk when it has one with 8 GB
# free (the suite holds about 400 MB there at a time): test_incremental_whole took 148 s on the
# disk and 123 s there. Set TEST_TMPDIR to choose a folder.
TEST_TMPDIR ?= $(shell df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 && $$4 > 8388608 { print "/dev/shm" }')

test: lint typecheck browser
	$(BIN)/dg check defs
	$(if $(TEST_TMPDIR),TMPDIR=$(TEST_TMPDIR)) $(BIN)/pytest -n $(PYTEST_WORKERS) --dist worksteal

dev: starter
	$(BIN)/dg dev --host 127.0.0.1 --port 3000

# Scale benchmark: ratios against DuckDB's own read_csv, measured in the same run.
bench: env
	$(BIN)/python -m bench.run --scale full

# Simulation study through the real analysis code: FWER, FDR, CI coverage and power per scenario,
# written between the calibration markers of README.md and to docs/calibration.md.
check-methods: env
	$(BIN)/gutsignal check-methods

# The draws-needed lookup the data-sufficiency advisor reads; run again when the methods change.
sufficiency-table: env
	$(BIN)/gutsignal sufficiency-table

clean:
	rm -rf $(VENV) $(TOOLS) .dagster_home .pytest_cache .mypy_cache .ruff_cache .import_linter_cache dashboards/*.html dashboards/*.js
