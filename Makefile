# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Byte-code caches on, whatever the environment says: every writer process the tests start
# would compile the package again (about 50 ms each, a quarter of `make check`).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo test check lint bench clean

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
	$(DS1_VENV)/bin/python -m pip install --quiet --upgrade --pre 'datasette>=1.0a0' 'datasette-configure-asgi>=0.1' 'datasette-dashboards>=0.8'
	$(DS1_VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $@

# Django 6 needs Python 3.12 or newer: a third virtualenv runs the Django example under the newest
# Django, beside Django 5.2 LTS in .venv. Skipped (and so are its tests) if no such Python is found.
DJ6_VENV := .venv-django6
DJ6_PYTHON ?= $(firstword $(foreach p,python3.13 python3.12 \
	$(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3) \
	$(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3),\
	$(shell $(p) -c 'import sys; assert sys.version_info >= (3, 12)' >/dev/null 2>&1 && echo $(p))))

# One virtualenv per Django 6 release line: $(1) its folder, $(2) the requirement.
define django6_venv
	@if [ -z "$(DJ6_PYTHON)" ]; then echo "no Python 3.12+: the $(2) tests will be skipped"; else \
	  test -x $(1)/bin/python || $(DJ6_PYTHON) -m venv $(1); \
	  $(1)/bin/python -m pip install --quiet --upgrade '$(2)' 'uvicorn>=0.30'; \
	  $(1)/bin/python -m pip install --quiet --no-deps -e .; \
	  touch $@; fi
endef

$(DJ6_VENV)/.installed: pyproject.toml
	$(call django6_venv,$(DJ6_VENV),django>=6)

# Django 6.0, still under security support beside the newest 6.x.
DJ60_VENV := .venv-django60

$(DJ60_VENV)/.installed: pyproject.toml
	$(call django6_venv,$(DJ60_VENV),django~=6.0.0)

test: $(VENV)/.installed-test $(DS1_VENV)/.installed $(DJ6_VENV)/.installed $(DJ60_VENV)/.installed
	$(BIN)/python -m pytest

# The edit-test loop: the unit tests alone (no servers, browsers or other virtualenvs), in
# under a minute on two cores.
check: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -n 2 -m "not integration and not slow" --ignore=tests/e2e

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests benchmarks examples

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .venv-* build dist test-artifacts demo.db demo.db-*
