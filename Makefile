# evomerge: `make demo` sets everything up and runs the demo search; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1

.PHONY: help setup demo test parity-env test-unit zoo bench lint format services services-stop clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -c requirements.lock -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) ## create .venv and install evomerge with its pinned dependencies

demo: setup ## build the demo zoo (if missing) and run the demo search
	$(BIN)/evomerge demo

test: setup parity-env ## lint, unit and integration tests, and mergekit parity (builds the zoo once if missing)
	$(BIN)/ruff check .
	$(BIN)/pytest -ra
	EVOMERGE_PARITY_REQUIRED=1 $(BIN)/pytest -ra tests/parity

parity-env: ## install the reference mergekit 0.1.5 into .venv-mergekit (for tests/parity)
	bash tests/parity/setup_mergekit.sh

test-unit: setup ## only the fast unit tests
	$(BIN)/pytest -ra tests/unit

zoo: setup ## (re)build the demo zoo into ./zoo
	$(BIN)/evomerge zoo build

bench: setup ## run the benchmark scripts (they print measured numbers)
	$(BIN)/python tests/benchmarks/zoo_build.py
	$(BIN)/python tests/benchmarks/zoo_merge_grid.py
	$(BIN)/python tests/benchmarks/demo_search.py

lint: setup ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup ## apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

services: setup ## start a real Prefect server and MLflow server on 127.0.0.1 (infra/services.sh)
	infra/services.sh start

services-stop: ## stop them
	infra/services.sh stop

clean: ## remove the virtual environment, the zoo and all runs
	rm -rf $(VENV) .venv-mergekit zoo runs mlruns .pytest_cache
