# Everything starts from a fresh clone: the first target that needs the virtualenv makes it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test lint demo bench docs wheel-check browser clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test,docs,lint]'
	touch $(STAMP)

## make test: install into .venv and run the whole suite against a real PostgreSQL
test: $(STAMP)
	$(BIN)/python -m pytest

## make browser: install Debian's Chromium (the template preview's browser tests drive it through
## Playwright, whose own browser download cannot be used here); nothing to do when it is there
browser: $(STAMP)
	@if [ ! -x /usr/bin/chromium ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi
	@/usr/bin/chromium --version 2>/dev/null

## make lint: install into .venv, then the lint and type gates (configured in pyproject.toml):
## ruff's rules, ruff's formatting (checked, not applied) and mypy, strict on the three packages
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## make demo: install into .venv, then run the whole job once on an embedded throwaway PostgreSQL
## (or on MAILROOM_DATABASE_URL if set) with the sender in debug mode: no AWS account needed
demo: $(STAMP)
	$(BIN)/mailroom demo

## make bench: install into .venv, run every benchmark (bench/) against the tests' PostgreSQL,
## print a table and write BENCHMARKS.md (about 10 minutes; run it on a quiet machine)
bench: $(STAMP)
	$(BIN)/python -m bench

## make docs: install into .venv, then build the documentation site (docs/, mkdocs.yml) into site/;
## --strict turns every warning (a broken link, a page missing from the nav) into a failure
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

## make wheel-check: build the wheel and the sdist (python -m build), install each into a fresh
## venv of its own and run the console scripts from there
wheel-check: $(STAMP)
	$(BIN)/python .ci/wheel_check.py

clean:
	rm -rf $(VENV) output .pytest_cache site
