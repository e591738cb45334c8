# The two set-up commands: `make run` serves the API, `make test` runs the tests.
# Both create the virtualenv and install the pinned requirements on first use.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/tftsite
export REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: run test lint venv clean bench

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

run: venv
	@bin/run

# bin/test-env brings up PostgreSQL/Redis and installs Chromium/Prometheus when it can (and says
# what it could not do); then the architecture contracts and ruff; then the suite on PostgreSQL
# (DATABASE_URL, default the local server) with Redis, and the ingest tests, the bulk writer's and the
# fleet page's again on the embedded SQLite default, which `make run` uses (torch on one thread: the
# tests share two cores with Postgres). Any non-zero
# pytest exit fails the target, including 5 (no tests collected).
test: venv
	@bin/test-env
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m ruff check .
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} TFT_TORCH_THREADS=$${TFT_TORCH_THREADS:-1} PROMETHEUS_MULTIPROC_DIR=$$(mktemp -d) DEBUG=false DJANGO_SECRET_KEY=test-only-secret \
		ALLOWED_HOSTS=localhost,testserver $(PY) -m pytest $(PYTEST_ARGS)
	env -u DATABASE_URL -u CELERY_BROKER_URL PROMETHEUS_MULTIPROC_DIR=$$(mktemp -d) DEBUG=false DJANGO_SECRET_KEY=test-only-secret \
		ALLOWED_HOSTS=localhost,testserver TFT_DATA_DIR=$$(mktemp -d) $(PY) -m pytest tests/ingest tests/tftsite/test_bulk.py tests/dashboard/test_fleet_pages.py $(PYTEST_ARGS)

# Benchmarks (bench/, README "Performance"): needs the local PostgreSQL and Redis; about 10 minutes.
bench: venv
	$(PY) -m bench $(BENCH_ARGS)

lint: venv
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
