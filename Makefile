# Slipway developer commands. `make run` and `make test` are the two the README promises.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-fast setup services lint typecheck migrations-check pytest bench clean openapi frontend frontend-test screenshots agent-wheel framework-envs

# The browser app (frontend/, Node.js 20.19+): `npm ci` when the lockfile changes, a Vite build
# into frontend/dist (collected by Django, served by WhiteNoise) when a source changes.
NPM ?= npm
FRONTEND_DEPS := frontend/node_modules/.slipway-installed
FRONTEND_SRC := $(shell find frontend/src frontend/index.html frontend/vite.config.ts frontend/tsconfig.json -type f -not -name '*.test.*' -not -path 'frontend/src/test/*' 2>/dev/null)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0  # the CPU wheel on disk; an unpinned torch pulls CUDA builds
	$(PY) -m pip install --quiet -e '.[dev,runtimes-cpu,pytorch,tensorflow,sklearn,triton]'
	$(PY) -m pip install --quiet --no-deps 'pnnx>=20250503'
	# ExecuTorch's runtime (its compiled extension, built for torch 2.13) to run .pte variants;
	# --no-deps: its metadata asks for its exporter's world (coremltools, pandas, torchao...), which
	# lives in the `executorch` framework environment instead (docs/adr/0017).
	$(PY) -m pip install --quiet --no-deps 'executorch==1.4.1'
	# Only for the tritonserver binary the tests deploy to. --no-deps: its metadata pins numpy<2,
	# which the rest of the stack outgrew; Slipway's python-backend model moves tensors by DLPack,
	# which works under numpy 2 (docs/adr/0006).
	$(PY) -m pip install --quiet --no-deps 'nvidia-pytriton>=0.5'
	touch $(STAMP)

setup: $(STAMP)
	bash scripts/sandbox_deps.sh

## Run the platform on the embedded default (SQLite, local storage, filesystem broker).
run: setup
	bash scripts/run.sh

## The full test suite on PostgreSQL + Redis with real worker processes (what CI runs).
test: setup services lint typecheck migrations-check frontend-test frontend framework-envs pytest

services:
	bash scripts/services.sh

## The interpreter environments of the Caffe, MXNet and PaddlePaddle importers and of the LiteRT,
## RKNN and ExecuTorch converters (their libraries can't live beside Slipway's: docs/adr/0017),
## built once under ~/.cache/slipway/framework-envs (SLIPWAY_FRAMEWORK_ENVS) and rebuilt when
## their pinned requirements change.
framework-envs: setup
	$(PY) -m workers.engine.framework_envs build

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck:
	$(VENV)/bin/mypy apps workers platform/config slipway_cli slipway_agent

migrations-check:
	SLIPWAY_SECRET_KEY=check DATABASE_URL=sqlite:///:memory: $(PY) manage.py makemigrations --check --dry-run

# Each run keeps its temporary folders in a fresh folder of its own (pytest's root is
# <temp>/pytest-of-<user> otherwise, which pytest refuses when another user owns it, as a shared
# machine's leftover may): kept when a test failed, to look at, removed when all passed.
PYTEST_TMP = PYTEST_DEBUG_TEMPROOT=$$(mktemp -d "$${TMPDIR:-/tmp}/slipway-pytest-XXXXXX")
define run_pytest
	@$(PYTEST_TMP); export PYTEST_DEBUG_TEMPROOT; echo "pytest's temporary folders: $$PYTEST_DEBUG_TEMPROOT"; \
	$(VENV)/bin/pytest $(1) $(PYTEST_ARGS) && rm -rf "$$PYTEST_DEBUG_TEMPROOT"
endef

## The unit tests beside the integration and browser tests (scripts/pytest_all.sh says why).
pytest:
	bash scripts/pytest_all.sh $(PYTEST_ARGS)

## Day-to-day: lint and the unit tests (no integration, slow, browser or GPU tests).
test-fast: setup services lint
	$(call run_pytest,-q -n auto -m "not integration and not slow and not e2e and not gpu")

## Refresh docs/screenshots/ (the README's) from the end-to-end browser journey.
screenshots: setup frontend services
	SLIPWAY_E2E_SCREENSHOTS=$(CURDIR)/docs/screenshots $(VENV)/bin/pytest tests/e2e -m e2e

## Regenerate docs/openapi.yaml, the committed copy of the API contract (a test compares them).
openapi: setup
	# PostgreSQL integer ranges (as in production); the command never connects to it.
	SLIPWAY_SECRET_KEY=schema DATABASE_URL=postgres://schema@127.0.0.1:1/schema $(PY) manage.py spectacular --validate --fail-on-warn --file docs/openapi.yaml

$(FRONTEND_DEPS): frontend/package.json frontend/package-lock.json
	cd frontend && $(NPM) ci --no-audit --no-fund
	touch $@

frontend/dist/index.html: $(FRONTEND_DEPS) $(FRONTEND_SRC)
	cd frontend && $(NPM) run build

## Build the browser app if its sources changed (make run does this too).
frontend: frontend/dist/index.html

## The browser app's format check (Prettier), type check and component tests (Vitest, which
## also checks that src/api/schema.d.ts matches docs/openapi.yaml: `npm run gen:api` updates it).
frontend-test: $(FRONTEND_DEPS)
	cd frontend && $(NPM) run check

## The device agent's wheel (the agent and the engine, no Django) in dist/, for `pip install` on a device.
agent-wheel: setup
	$(PY) scripts/build_agent_wheel.py dist

bench: setup
	$(PY) bench/upload.py

clean:
	rm -rf var staticfiles .pytest_cache .mypy_cache .ruff_cache frontend/dist frontend/node_modules
