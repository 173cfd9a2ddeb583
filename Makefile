# The README's commands: `make run` serves the demo on 127.0.0.1:9090, `make test` runs the tests.
# Two installs, each done when missing or older than what it installs from:
#   $(RUN_STAMP)   the gateway and what serving needs (pip install -e ., which also compiles
#                  gateway/_wirejson.c in place when a C compiler is there): make run;
#   $(TEST_STAMP)  that, plus the test tools (.[test]) and the client in client/: make test,
#                  make lint, make bench.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
CLIENT := $(wildcard client/pyproject.toml)
ARGS ?=
# make test runs the test files in parallel, one pytest worker per core (pytest-xdist; a file
# stays on one worker, so its module fixtures start once): ARGS='-n 0' runs them in one process.

.PHONY: install run test lint bench clean

install: $(RUN_STAMP)

$(BIN)/python:
	./.ci/system-packages build
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(RUN_STAMP): pyproject.toml gateway/_wirejson.c | $(BIN)/python
	./.ci/system-packages build
	$(BIN)/python -m pip install -q -e .
	touch $@

$(TEST_STAMP): $(RUN_STAMP) pyproject.toml $(CLIENT)
	$(BIN)/python -m pip install -q -e '.[test]' $(if $(CLIENT),-e './client[twisted]')
	touch $@

run: install
	@echo "dbslayer: the commands (dbslayer, twistd) are in $(BIN); to have them on PATH in your shell: . $(BIN)/activate"
	$(BIN)/dbslayer serve $(ARGS)

test: $(TEST_STAMP)
	./.ci/system-packages test browser
	$(BIN)/python -m pytest -n auto --dist loadfile $(ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check api conf gateway stats tests twisted $(if $(CLIENT),client)
	$(BIN)/mypy api conf gateway stats tests twisted $(if $(CLIENT),client/dbslayer_client)

bench: $(TEST_STAMP)
	./.ci/system-packages test bench
	$(BIN)/python tests/bench.py

clean:
	rm -rf $(VENV) build *.egg-info client/build client/*.egg-info .pytest_cache .mypy_cache .ruff_cache
