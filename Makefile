# Every target works from a fresh clone: it installs uv if missing and syncs the workspace.
SHELL := /bin/bash
# uv on PATH, else the module pip installs (`python3 -m uv` works wherever pip put the script)
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
PYTEST_ARGS ?=
QUICK ?=

.PHONY: help install run test lint fmt migrate bench openapi settings-doc letters-doc

help:
	@echo "make run | test | lint | fmt | migrate | bench [QUICK=1] | openapi | settings-doc | letters-doc"

install:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 \
		|| python3 -m pip install -q uv
	@$(UV) sync --locked --quiet --compile-bytecode
	@$(UV) run --no-sync python -m compileall -q -j 0 libs services deploy bench >/dev/null

run: install  ## start PostgreSQL/Redis (found or embedded), migrate, seed, start all processes
	$(UV) run python -m deploy.run_local

test: install  ## the whole suite, against real PostgreSQL and Redis (found or embedded)
	$(UV) run pytest -n 2 --junitxml=.local/junit.xml $(PYTEST_ARGS)

lint: install
	$(UV) run ruff format --check .
	$(UV) run ruff check .
	$(UV) run mypy
	$(UV) run mypy deploy

fmt: install
	$(UV) run ruff format .
	$(UV) run ruff check --fix .

migrate: install
	$(UV) run notifier migrate

openapi: install
	$(UV) run notifier openapi > docs/openapi-notifier.json

bench: install
	$(UV) run python -m bench.run $(if $(QUICK),--quick,)

settings-doc: install  ## regenerate README's configuration table and .env.example
	$(UV) run python -m deploy.settings_doc --write

letters-doc: install  ## regenerate docs/letters.md from the letter catalog
	$(UV) run python -m notifier.letters.catalog_doc --write
