# Two commands on a fresh machine: `make run` and `make test` (see README).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
export DAGSTER_HOME := $(CURDIR)/.dagster_home
# polars' allocator hands freed memory back after a second instead of ten: one process runs
# every layer, and memory a finished step kept would count against the next. (Handing it back
# at once slows the incremental run, whose steps reuse memory quickly, for no lower peak.)
export _RJEM_MALLOC_CONF ?= background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0
PERSONS ?= 43000
SEED ?= 7
# pytest workers: the suite's integration runs are mostly single-threaded, so two share this
# 2-core machine well. Tests that share an expensive fixture stay on one worker (xdist_group).
TEST_WORKERS ?= 2
PYTEST := $(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadgroup

.PHONY: install run test test-all ui data bench bench-accuracy clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or make PYTHON=python3)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@rm -f $(VENV)/.installed-*; touch $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	@mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

install: $(STAMP) $(DAGSTER_HOME)/dagster.yaml

# A DuckDB 1.x client beside the project's own: the analyst file must open in the 1.x that
# many analyst tools embed, and a test opens it with this one.
DUCKDB1 := $(VENV)/duckdb1
$(DUCKDB1)/.installed: $(BIN)/python
	$(BIN)/python -m pip install --quiet --no-deps --target $(DUCKDB1) "duckdb>=1.4,<1.5"
	@touch $@

run: install
	$(BIN)/python -m cdi_pipeline.check_registry
	$(BIN)/python -m cdi_pipeline.instance_repair
	$(BIN)/dagster job execute -m cdi_pipeline.definitions -j full_refresh
	$(BIN)/python -m cdi_pipeline.summary

test: install $(DUCKDB1)/.installed
	$(BIN)/ruff check .
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/dg check defs
	$(PYTEST) -m "not slow"

test-all: install $(DUCKDB1)/.installed
	$(BIN)/ruff check .
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/dg check defs
	$(PYTEST)

ui: install
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/dg dev

# Regenerate the bundled source set (deterministic: same persons and seed, same bytes).
data: install
	$(BIN)/python -m cdi_pipeline.datagen --persons 3000 --seed 42 --out data

# Benchmark: generate PERSONS persons (43000 ~ 100k records, 430000 ~ 1M), run full_refresh
# in-process, write benchmarks/results/full_refresh_<size>.md.
bench: install
	$(BIN)/python -m cdi_pipeline.bench --persons $(PERSONS) --seed $(SEED)

# Accuracy on every data set of the benchmark (bundled, minimal, FEBRL3, FEBRL4 and two sets
# with foreign noise), each beside the lean Splink script: benchmarks/results/accuracy.md.
bench-accuracy: install
	$(BIN)/python -m cdi_pipeline.bench_accuracy

clean:
	rm -rf data/warehouse $(DAGSTER_HOME)
