# The two commands: `make run` and `make test`. Everything else they need, they install.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
STAMP  := $(VENV)/.installed

export HOST PORT

.PHONY: install run test bench clean

# (Re)install when pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/botkit serve

test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .data build *.egg-info
