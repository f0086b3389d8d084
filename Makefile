# Everything starts from a fresh clone: the first target that needs the virtualenv makes it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test demo bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## make test: install into .venv and run the whole suite against a real PostgreSQL
test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) output .pytest_cache
