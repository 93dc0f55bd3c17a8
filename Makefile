# The two commands: `make run` and `make test`. Everything else they need, they install.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
STAMP  := $(VENV)/.installed

export HOST PORT

.PHONY: install run test check bench bench-scale soak clean chromium

PIP    = PYTHONWARNINGS=ignore $(BIN)/pip install -qq --disable-pip-version-check

# (Re)install when pyproject.toml changes. pip says only what fails; build warnings
# (setuptools' notes on editable installs) are not ours to act on.
$(STAMP): pyproject.toml
	@echo "botkit: installing into $(VENV) (the first time takes about a minute)"
	@start=$$(date +%s); \
	{ test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); } && \
	$(PIP) --upgrade pip && $(PIP) -e '.[test]' || exit 1; \
	echo "botkit: installed in $$(( $$(date +%s) - start )) s"
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/botkit serve

# What the test suite drives besides the venv: the official Node SDK (pinned by its
# lockfile) and Debian's Chromium (installed when missing and we are root). A missing
# one is said here and again by the tests, which fail under CI.
NODE_SDK := tests/sdk/node
$(NODE_SDK)/node_modules/.installed: $(NODE_SDK)/package-lock.json
	@if command -v npm >/dev/null; then \
	  echo "botkit: installing the official Node SDK into $(NODE_SDK)"; \
	  cd $(NODE_SDK) && npm ci --silent --no-audit --no-fund && touch node_modules/.installed; \
	else echo "botkit: npm is missing: the Node SDK test cannot run (Node 20 and npm are needed)" >&2; fi

chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then echo "botkit: installing Debian's chromium (for the browser test)"; \
	    apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; \
	  else echo "botkit: chromium is missing (install Debian's chromium as root): the browser test cannot run" >&2; fi; }

test: $(STAMP) $(NODE_SDK)/node_modules/.installed chromium
	$(BIN)/python -m pytest

# Format, lint (complexity <= 15) and types. mypy reads the checkout as the `botkit`
# package through a link, because the repository root is the package.
MYPY_PACKAGES := -p botkit.actions -p botkit.transport -p botkit.store -p botkit.engine -p botkit.spec \
                 -p botkit.resources -m botkit.serve -m botkit.cli -m botkit.config -m botkit.errors -m botkit.testing
check: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	mkdir -p $(VENV)/mypy-path && ln -sfn "$(CURDIR)" $(VENV)/mypy-path/botkit
	MYPYPATH=$(VENV)/mypy-path $(BIN)/mypy $(MYPY_PACKAGES)

# Measured speed against the stack's limit and a FastAPI peer (bench/README.md); < 10 min.
# Installs the `bench` extra (when pyproject.toml is newer than its stamp) and wrk.
bench: $(STAMP)
	@test $(VENV)/.bench-installed -nt pyproject.toml || { \
	  $(PIP) -e '.[test,bench]' && touch $(VENV)/.bench-installed; }
	@command -v wrk >/dev/null || { test "$$(id -u)" = 0 || { echo "bench: wrk is missing; run as root or install wrk" >&2; exit 1; }; \
	  apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk; }; }
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Dataset search at 1,000,000 records (issue 14; about 5 minutes: the load is most of it).
bench-scale: $(STAMP)
	$(BIN)/python bench/retrieval.py --embed-corpus
	$(BIN)/python bench/retrieval.py --records 1000000

# Reliability under a noisy tenant, 2,000 slow clients, 50-way bursts against limits and a
# PostgreSQL restart (issue 15; about three minutes; bench/soak.py).
soak: $(STAMP)
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

# A cluster the embedded PostgreSQL keeps outside an unreachable checkout is linked
# from .data (store/embedded.py): removed with it.
clean:
	for link in .data/*postgres*; do test ! -L "$$link" || rm -rf "$$(readlink "$$link")"; done
	rm -rf $(VENV) .data build *.egg-info $(NODE_SDK)/node_modules
