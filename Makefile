# Every target works from a fresh clone: it installs uv if missing and syncs the workspace.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo "$(HOME)/.local/bin/uv")
PYTEST_ARGS ?=
QUICK ?=

.PHONY: help install run test lint fmt migrate bench openapi settings-doc

help:
	@echo "make run | test | lint | fmt | migrate | bench [QUICK=1] | openapi | settings-doc"

$(UV):
	@command -v uv >/dev/null 2>&1 || python3 -m pip install -q --user uv || python3 -m pip install -q uv

install: $(UV)
	@uv sync --locked --quiet

run: install  ## start PostgreSQL/Redis (found or embedded), migrate, seed, start all processes
	uv run python -m deploy.run_local

test: install  ## the whole suite, against real PostgreSQL and Redis (found or embedded)
	uv run pytest -n 2 --junitxml=.local/junit.xml $(PYTEST_ARGS)

lint: install
	uv run ruff format --check .
	uv run ruff check .
	uv run mypy
	uv run mypy deploy

fmt: install
	uv run ruff format .
	uv run ruff check --fix .

migrate: install
	uv run notifier migrate

openapi: install
	uv run notifier openapi > docs/openapi-notifier.json

bench: install
	uv run python -m bench.run $(if $(QUICK),--quick,)

settings-doc: install  ## regenerate README's configuration table and .env.example
	uv run python -m deploy.settings_doc --write
