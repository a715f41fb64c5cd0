# Developer and CI entry points. `make` (or `make help`) lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV := .venv
VENV_STAMP := $(VENV)/.installed
BIN := $(VENV)/bin

.PHONY: help venv engine images lint typecheck test-unit test quickstart bench clean

help: ## List the targets (default)
	@echo "Targets:"
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-11s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

venv: $(VENV_STAMP) ## Create .venv and install runner with its test extras (re-runs when pyproject.toml changes)

$(VENV_STAMP): pyproject.toml
	@test -x $(BIN)/python || { echo "creating $(VENV) with $$($(PYTHON) --version)"; $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

engine: ## Make sure a Docker engine answers (installs/starts docker.io as root if needed)
	scripts/ensure-docker.sh

images: engine ## Build the local test base images (runner-test/busybox:1, runner-test/debian-python:1)
	scripts/build-test-images.sh

lint: venv ## ruff check
	$(BIN)/ruff check runner tests benchmarks

typecheck: venv ## mypy (strict; configured in pyproject.toml)
	$(BIN)/mypy

test-unit: venv ## Unit tier only: no Docker, seconds
	$(BIN)/pytest tests/unit -q

test: venv images lint typecheck ## Everything CI runs: lint, typecheck and all test tiers (Docker required)
	RUNNER_REQUIRE_DOCKER=1 $(BIN)/pytest tests -q

quickstart: venv ## From a fresh clone to a running vLLM-shaped demo server with Prometheus (scripts/quickstart.sh)
	scripts/quickstart.sh

bench: venv images ## Run the benchmarks (python -m benchmarks)
	$(BIN)/python -m benchmarks

clean: ## Remove caches and build output (keeps .venv)
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist ./*.egg-info
