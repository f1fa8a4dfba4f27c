# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-demo: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[cli,datasette]'
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-demo

demo: $(VENV)/.installed-demo
	$(BIN)/asgi-log-to-sqlite demo

# A second virtualenv with the newest Datasette 1.0 pre-release, for the tests that run a real
# Datasette 1.0 server beside the 0.65 one in .venv.
DS1_VENV := .venv-datasette1

$(DS1_VENV)/.installed: pyproject.toml
	test -x $(DS1_VENV)/bin/python || $(PYTHON) -m venv $(DS1_VENV)
	$(DS1_VENV)/bin/python -m pip install --quiet --upgrade --pre 'datasette>=1.0a0' 'datasette-configure-asgi>=0.1'
	$(DS1_VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $@

test: $(VENV)/.installed-test $(DS1_VENV)/.installed
	$(BIN)/python -m pytest

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests benchmarks

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .venv-* build dist test-artifacts demo.db demo.db-*
