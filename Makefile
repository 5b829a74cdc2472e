# Slipway developer commands. `make run` and `make test` are the two the README promises.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test setup services lint typecheck migrations-check pytest bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0  # the CPU wheel on disk; an unpinned torch pulls CUDA builds
	$(PY) -m pip install --quiet -e '.[dev,runtimes-cpu,pytorch,tensorflow,sklearn,triton]'
	$(PY) -m pip install --quiet --no-deps 'pnnx>=20250503'
	$(PY) -m pip install --quiet --no-deps 'nvidia-pytriton>=0.5'  # only for its tritonserver binary (tests)
	touch $(STAMP)

setup: $(STAMP)

## Run the platform on the embedded default (SQLite, local storage, filesystem broker).
run: setup
	bash scripts/run.sh

## The full test suite on PostgreSQL + Redis with real worker processes (what CI runs).
test: setup services lint typecheck migrations-check pytest

services:
	bash scripts/services.sh

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck:
	$(VENV)/bin/mypy apps workers platform/config

migrations-check:
	SLIPWAY_SECRET_KEY=check DATABASE_URL=sqlite:///:memory: $(PY) manage.py makemigrations --check --dry-run

pytest:
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: setup
	$(PY) bench/upload.py

clean:
	rm -rf var staticfiles .pytest_cache .mypy_cache .ruff_cache
