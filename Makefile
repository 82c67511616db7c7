# roadseg: the two commands a newcomer needs are `make up` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export KERAS_HOME ?= $(abspath ../shared/weights/keras-home)
# Test processes in parallel (pytest-xdist), one test file per process: most tests wait on servers,
# workers and browsers, so two processes finish the suite sooner even on two cores. At most 4: each
# process loads TensorFlow and may start its own Redis, workers and browser.
PYTEST_WORKERS ?= $(shell nproc 2>/dev/null | awk '{print ($$1 < 4 ? $$1 : 4)}')

.PHONY: help install system-deps up test test-fast lint bench deploy-check demo clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): requirements.txt services/common/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	# tensorflow-serving-api pins the full `tensorflow` wheel; tensorflow-cpu provides the same modules.
	$(BIN)/pip install -q --no-deps tensorflow-serving-api==2.21.0
	$(BIN)/pip install -q --no-deps -e services/common
	touch $@

install: $(STAMP)  ## create .venv and install everything from the project's files

system-deps:  ## install redis-server (and chromium for tests) with apt-get when missing
	./scripts/ensure-system-deps.sh $(if $(BROWSER),--browser,)

up: install system-deps  ## start Redis and every service locally (foreground), printing the URLs
	@mkdir -p var/redis var/storage
	@echo "roadseg: gateway + web page  http://127.0.0.1:8000/      (API docs /docs)"
	@echo "roadseg: ingest API          http://127.0.0.1:8001/docs"
	@echo "roadseg: label review page   http://127.0.0.1:8002/"
	@echo "roadseg: OPEN LOCAL MODE (ROADSEG_AUTH_MODE=open-local): no authentication, answers this machine only"
	@echo "roadseg: runs in the foreground (logs below); press Ctrl-C to stop every service"
	ROADSEG_AUTH_MODE=open-local $(BIN)/honcho -f Procfile start

test: install  ## run the whole test suite (installs redis-server and chromium when missing)
	$(MAKE) --no-print-directory system-deps BROWSER=1
	$(BIN)/ruff check --no-cache .
	$(BIN)/ruff format --check --no-cache .
	$(BIN)/mypy
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-fast: install  ## the quick loop: tests not marked slow or browser, stopping at the first failure (a few minutes)
	$(MAKE) --no-print-directory system-deps
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile -x \
		-m "not slow and not browser" $(PYTEST_ARGS)

lint:  ## ruff (lint and format check) and mypy
	$(BIN)/ruff check --no-cache .
	$(BIN)/ruff format --check --no-cache .
	$(BIN)/mypy

bench: install  ## run every benchmark under bench/
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

deploy-check: install  ## validate Dockerfiles, compose and k8s manifests without Docker or a cluster
	$(BIN)/python scripts/validate_deploy.py

demo: install  ## run the whole pipeline against the stack started by `make up` (in another terminal)
	$(BIN)/roadseg demo

clean:  ## remove local state (storage, redis data, test artifacts); keeps .venv
	rm -rf var test-artifacts .pytest_cache
