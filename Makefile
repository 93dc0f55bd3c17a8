# The two commands: `make run` and `make test`. Everything else they need, they install.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
STAMP  := $(VENV)/.installed

export HOST PORT

.PHONY: install run test check bench clean

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

# Format, lint (complexity <= 15) and types. mypy reads the checkout as the `botkit`
# package through a link, because the repository root is the package.
MYPY_PACKAGES := -p botkit.actions -p botkit.transport -p botkit.store -p botkit.engine -p botkit.spec
check: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	mkdir -p $(VENV)/mypy-path && ln -sfn "$(CURDIR)" $(VENV)/mypy-path/botkit
	MYPYPATH=$(VENV)/mypy-path $(BIN)/mypy $(MYPY_PACKAGES)

# Measured speed against the stack's limit and a FastAPI peer (bench/README.md); < 10 min.
# Installs the `bench` extra (when pyproject.toml is newer than its stamp) and wrk.
bench: $(STAMP)
	@test $(VENV)/.bench-installed -nt pyproject.toml || { \
	  $(BIN)/pip install --quiet --disable-pip-version-check -e '.[test,bench]' && touch $(VENV)/.bench-installed; }
	@command -v wrk >/dev/null || { test "$$(id -u)" = 0 || { echo "bench: wrk is missing; run as root or install wrk" >&2; exit 1; }; \
	  apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk; }; }
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .data build *.egg-info
