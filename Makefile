# `make run` runs the bridge; `make test` runs ruff, the layering contracts, mypy and the whole
# test suite.
# Both create .venv and install what they need on a fresh machine.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= bridge.toml
SUDO   := $(shell [ "$$(id -u)" = 0 ] || command -v sudo)

.PHONY: run test lint typecheck unit postgres chromium bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python run.py --config $(CONFIG)

# The storage tests run on a throwaway PostgreSQL cluster: install the server when it is missing.
postgres:
	@if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		echo "installing PostgreSQL server binaries (apt-get)"; \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q postgresql; \
	fi

# The widget's tests drive Debian's headless Chromium through Playwright (which is never asked to
# download a browser of its own): install it when it is missing.
chromium:
	@if ! command -v chromium >/dev/null 2>&1; then \
		echo "installing Chromium (apt-get)"; \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# The modules run in TEST_PROCESSES processes (pytest-xdist): most tests wait on sockets, fakes
# and subprocesses, so three share two cores well. TEST_PROCESSES=0 runs them in this process.
# The ten slowest tests are listed at the end.
TEST_PROCESSES ?= 3

unit: $(STAMP) postgres chromium
	$(BIN)/pytest -q -p no:cacheprovider -n $(TEST_PROCESSES) --durations=10

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python bench/inbound.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
