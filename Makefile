# One place for every command developers and CI share. Each target bootstraps .venv from the lock files.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PIP_QUIET := --quiet --disable-pip-version-check

.PHONY: demo test check lint typecheck format screenshots bench-load bench-cycle bench-growth bench-service clean soak-short

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: requirements/runtime.lock pyproject.toml | $(BIN)/python
	$(BIN)/pip install $(PIP_QUIET) -r requirements/runtime.lock
	$(BIN)/pip install $(PIP_QUIET) --no-deps -e .
	touch $@

$(VENV)/.dev: requirements/dev.lock pyproject.toml | $(BIN)/python
	$(BIN)/pip install $(PIP_QUIET) -r requirements/dev.lock
	$(BIN)/pip install $(PIP_QUIET) --no-deps -e .
	touch $@ $(VENV)/.runtime

## Run the product on its embedded default: KLK simulator + SQLite + API on 127.0.0.1:8000.
demo: $(VENV)/.runtime
	$(BIN)/fluxion-etl demo

## Run the whole test suite (SQLite and PostgreSQL; browser tests where Chromium is installed),
## the soak's short mode included: it starts with the session, beside the other tests, on its own
## PostgreSQL cluster (docs/RELIABILITY.md). `make soak-short` runs only the soak.
test: $(VENV)/.dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

soak-short: $(VENV)/.dev
	$(BIN)/python -m pytest -s tests/soak/test_soak_short.py

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests bench deploy
	$(BIN)/ruff format --check src tests bench deploy

typecheck: $(VENV)/.dev
	$(BIN)/mypy

format: $(VENV)/.dev
	$(BIN)/ruff format src tests bench deploy
	$(BIN)/ruff check --fix src tests bench deploy

## Every check: lint, format, types and tests.
check: lint typecheck test

## The README's pictures of the control centre (docs/screenshots), taken with Debian's Chromium
## through Playwright against a real service and the simulator, as the browser tests do.
screenshots: $(VENV)/.dev
	$(BIN)/python scripts/screenshots.py $(SCREENSHOT_ARGS)

## Benchmarks (docs/BENCHMARKS.md): the bench group (dlt) goes into .venv, never into the runtime lock.
## Pass options through BENCH_ARGS, e.g. make bench-cycle BENCH_ARGS="--scale large --dialect postgresql".
$(VENV)/.bench: requirements/bench.lock pyproject.toml | $(BIN)/python
	$(BIN)/pip install $(PIP_QUIET) -r requirements/bench.lock
	$(BIN)/pip install $(PIP_QUIET) --no-deps -e .
	touch $@ $(VENV)/.dev $(VENV)/.runtime

bench-load: $(VENV)/.bench
	$(BIN)/python -m bench.load $(BENCH_ARGS)

bench-cycle: $(VENV)/.bench
	$(BIN)/python -m bench.cycle $(BENCH_ARGS)

bench-growth: $(VENV)/.bench
	$(BIN)/python -m bench.growth $(BENCH_ARGS)

bench-service: $(VENV)/.bench
	$(BIN)/python -m bench.service $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
