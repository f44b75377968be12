# The two commands of the README: `make run` and `make test`.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: install run test test-fast test-slow lint bench system-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[test]"
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

## Start the whole stack on the embedded defaults (SQLite, embedded Redis).
run: install
	$(BIN)/flask --app console up

## Everything the tests need (PostgreSQL from Debian when missing), then every test on
## SQLite and PostgreSQL.
test: install system-deps
	$(BIN)/pytest --db=sqlite,postgres

test-fast: install
	$(BIN)/pytest -m "not slow"

test-slow: install system-deps
	$(BIN)/pytest -m slow --db=sqlite,postgres

system-deps:
	./scripts/install-system-deps.sh

lint: install
	$(BIN)/ruff check console workers tests bench
	$(BIN)/ruff format --check console workers tests bench
	$(BIN)/mypy

# The benchmark also needs the bench extra (DBOS, the peer it measures beside the engine).
BENCH_STAMP := $(VENV)/.bench-installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[test,bench]"
	rm -f $(VENV)/.bench-installed-* && touch $(BENCH_STAMP)

## The engine benchmark (bench/README.md): under 10 minutes on 2 cores.
bench: install $(BENCH_STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) instance .pytest_cache .mypy_cache .ruff_cache
