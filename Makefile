# The README's commands: `make demo` (see it work) and `make test` (what CI runs).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install test lint format demo catalogs bench clean peers

install: $(STAMP)

# Re-installs whenever the project's metadata changes; `-e` keeps the console scripts on the sources.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# A throwaway PostgreSQL cluster lives for the run; pytest's exit status is make's.
test: install
	$(BIN)/python tests/support/pgcluster.py -- $(BIN)/python -m pytest $(PYTEST_ARGS)

# Meltano and the peer Singer plugins, each in its own pinned venv under .venvs/ (the tests that need
# them create them on first use; this prepares them ahead and prints the install times).
peers: install
	$(BIN)/python tests/support/peer_venvs.py

# The README's first command: emulator -> tap -> target -> DuckDB (demo/warehouse.duckdb), a full sync then
# an incremental one, and a summary (demo/README.md).
demo: install
	$(BIN)/python demo/run.py

# Regenerates catalogs/segment-default.json and catalogs/selective-sync.example.json from discovery
# against the emulator's default org (tests/e2e/test_catalogs.py fails when they drift).
catalogs: install
	$(BIN)/python catalogs/generate.py

lint: install
	$(BIN)/ruff check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .venvs .pytest_cache .ruff_cache build *.egg-info
