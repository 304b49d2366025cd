# The README's commands: `make demo` (see it work) and `make test` (what CI runs).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# `make test-lowest` sets this: pip installs with these constraints (the lowest versions allowed).
PIP_CONSTRAINTS ?=

.PHONY: install test test-lowest lint format demo catalogs clean peers

install: $(STAMP)

# `pip install ARGS` without one kind of noise: when pip's configuration names local package indexes
# that hold only some packages (this machine's does), pip warns once per package it does not find there
# ("WARNING: Location 'file:///...' is ignored: it is neither a file nor a directory."). Only those lines
# are dropped from stderr; every other line and pip's exit status are kept.
PIP_NOISE := ^WARNING: Location 'file://[^']*' is ignored: it is neither a file nor a directory\.$$
pip_install = echo "$(BIN)/python -m pip install $(1)"; exec 3>&1; \
	status=$$( { { $(BIN)/python -m pip install $(1) 2>&1 1>&3 3>&-; echo $$? >&4; } \
	| grep -v "$(PIP_NOISE)" >&2; } 4>&1 ); exit $$status

# Re-installs whenever the project's metadata changes; `-e` keeps the console scripts on the sources.
# DuckDB 2.0 (whose behaviour the target is tuned to) needs Python 3.11 or newer; say so before pip does.
$(STAMP): pyproject.toml $(PIP_CONSTRAINTS)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed; $(PYTHON) is " + sys.version.split()[0] + ": run make with PYTHON=python3.11 (or newer)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(call pip_install,--quiet --upgrade pip)
	@$(call pip_install,--quiet $(if $(PIP_CONSTRAINTS),-c $(PIP_CONSTRAINTS)) -e '.[test]')
	touch $(STAMP)

# A throwaway PostgreSQL cluster lives for the run; pytest's exit status is make's.
test: install
	$(BIN)/python tests/support/pgcluster.py -- $(BIN)/python -m pytest $(PYTEST_ARGS)

# The same suite with the lowest version of each dependency that pyproject.toml allows, in a venv of its
# own (.venv-lowest): a lower bound nobody runs is a guess.
test-lowest:
	$(MAKE) test VENV=.venv-lowest PIP_CONSTRAINTS=.ci/lowest-constraints.txt

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
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Build and run outputs: the venvs (the tests' and the benchmark's peers too), caches, the benchmarks'
# results and make demo's warehouse, state and logs. Not .meltano/, which holds Meltano's state.
clean:
	rm -rf $(VENV) .venv-lowest .venvs bench/.venvs bench/results .pytest_cache .ruff_cache build *.egg-info
	find demo -mindepth 1 -maxdepth 1 ! -name run.py ! -name README.md -exec rm -rf {} +
