# The README's commands: `make run` serves the demo on 127.0.0.1:9090, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: install run test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	./.ci/system-packages build
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $(STAMP)

run: install
	$(BIN)/dbslayer serve $(ARGS)

test: install
	./.ci/system-packages test browser
	$(BIN)/python -m pytest $(ARGS)

lint: install
	$(BIN)/ruff check api conf gateway stats tests twisted
	$(BIN)/mypy api conf gateway stats

bench: install
	./.ci/system-packages test bench
	$(BIN)/python tests/bench.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
