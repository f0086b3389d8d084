# Everything starts from a fresh clone: the first target that needs the virtualenv makes it,
# and each target installs only the extras it needs (`make demo` does not wait for the test,
# docs and lint tools). A stamp per extra, $(VENV)/.installed-EXTRA, remembers what is there;
# a change to pyproject.toml installs again.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: test lint demo bench docs wheel-check browser clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The project in editable mode with one extra: demo, test, docs or lint (pyproject.toml); each
# of them pulls in the pipeline extra.
$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[$*]'
	touch $@

## make test: install into .venv (and Chromium, see make browser) and run the whole suite
## against a real PostgreSQL
test: $(VENV)/.installed-test browser
	$(BIN)/python -m pytest

## make browser: install Debian's Chromium (the template preview's browser tests drive it through
## Playwright, whose own browser download cannot be used here); nothing to do when it is there
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" != 0 ]; then \
			echo "make browser: Chromium is missing; install Debian's package as root: apt-get install chromium" >&2; \
			exit 1; \
		fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi
	@/usr/bin/chromium --version 2>/dev/null

## make lint: install into .venv, then the lint and type gates (configured in pyproject.toml):
## ruff's rules, ruff's formatting (checked, not applied) and mypy, strict on the three packages
lint: $(VENV)/.installed-lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## make demo: install into .venv (the package with its pipeline extra, and the embedded PostgreSQL
## only), then run the whole job once on an embedded throwaway PostgreSQL (or on
## MAILROOM_DATABASE_URL if set) with the sender in debug mode: no AWS account needed
demo: $(VENV)/.installed-demo
	$(BIN)/mailroom demo

## make bench: install into .venv, run every benchmark (bench/) against the tests' PostgreSQL,
## print a table and write BENCHMARKS.md (about 10 minutes; run it on a quiet machine)
bench: $(VENV)/.installed-test
	$(BIN)/python -m bench

## make docs: install into .venv, then build the documentation site (docs/, mkdocs.yml) into site/;
## --strict turns every warning (a broken link, a page missing from the nav) into a failure
docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

## make wheel-check: build the wheel and the sdist (python -m build, from the test extras), install
## them into fresh venvs and run the console scripts from there: the wheel without extras (an app's
## light install: links verify, the programs name the missing extra), then with the pipeline extra
## added, and the sdist with the pipeline extra
wheel-check: $(VENV)/.installed-test
	$(BIN)/python .ci/wheel_check.py

clean:
	rm -rf $(VENV) output .pytest_cache site
