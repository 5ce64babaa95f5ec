# doudi — `make up` runs the whole system, `make test` tests it. Both build .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install up test test-fast test-e2e test-postgres lint fmt migrate bench chaos clean image lock manifests

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

up: install
	$(BIN)/doudi up

migrate: install
	$(BIN)/doudi migrate

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -m "not e2e" $(PYTEST_ARGS)

test-e2e: install
	$(BIN)/python -m pytest tests -m e2e $(PYTEST_ARGS)

# The same suite against PostgreSQL (a server on 127.0.0.1:5432, user postgres, trust auth by default).
test-postgres: install
	DOUDI_TEST_DATABASE_URL=$${DOUDI_TEST_DATABASE_URL:-postgresql+asyncpg://postgres@127.0.0.1:5432/postgres} \
		$(BIN)/python -m pytest $(PYTEST_ARGS)

# Benchmarks (not tests: nothing here asserts a time). Results go to docs/benchmarks.md.
bench: install
	$(BIN)/python -m bench.eligibility $(BENCH_ARGS)
	$(BIN)/python -m bench.stack $(BENCH_STACK_ARGS)
	$(BIN)/python -m bench.payments $(BENCH_PAYMENTS_ARGS)
	$(BIN)/python -m bench.reconcile $(BENCH_RECONCILE_ARGS)

# Faults under load, then the invariants: on SQLite, then on a private PostgreSQL cluster stopped for 30 s (skipped,
# saying so, without initdb and pg_ctl). About ten minutes on 2 cores; every wait has a limit. Writes docs/reliability.md.
chaos: install
	$(BIN)/python -m bench.chaos $(CHAOS_ARGS)

lint: install
	$(BIN)/ruff check shared services tests bench
	$(BIN)/ruff format --check shared services tests bench

fmt: install
	$(BIN)/ruff format shared services tests
	$(BIN)/ruff check --fix shared services tests

clean:
	rm -rf $(VENV) data .pytest_cache

# The one container image (deploy/Dockerfile) and its pinned dependencies.
image:
	docker build -f deploy/Dockerfile -t doudi:$$(git describe --always --dirty) -t doudi:latest .

lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv && .lock-venv/bin/pip install --quiet .
	{ echo "# Pinned runtime dependencies of the doudi image (deploy/Dockerfile). Regenerate with \`make lock\`."; \
	  .lock-venv/bin/pip freeze --exclude doudi; } > deploy/requirements.lock
	rm -rf .lock-venv
