# anthropic-proxy: `make run` starts the proxy and dashboard, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONFIG ?= $(if $(wildcard config.yaml),config.yaml,example.config.yaml)
PG_TEST_URL ?= postgres://postgres@127.0.0.1:5432/test
TEST_DATA := $(CURDIR)/.test-data

.PHONY: install browser-deps run test test-sqlite test-postgres bench bench-peers fuzz soak lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Browser tests drive Debian's Chromium (Playwright's own browser download cannot work here).
browser-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
		echo "installing Debian chromium for the browser tests"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; \
	fi

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py import_config $(CONFIG)
	$(PY) manage.py ensure_admin
	$(PY) manage.py serve

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: install browser-deps lint test-sqlite test-postgres

test-sqlite: install
	rm -rf $(TEST_DATA) && mkdir -p $(TEST_DATA)
	DATA_DIR=$(TEST_DATA) $(PY) -m pytest

test-postgres: install
	rm -rf $(TEST_DATA)-pg && mkdir -p $(TEST_DATA)-pg
	DATA_DIR=$(TEST_DATA)-pg DATABASE_URL=$(PG_TEST_URL) $(PY) -m pytest -m postgres

bench: install
	$(PY) -m bench
	$(PY) -m bench.streams

# The same run plus nginx (Debian nginx-light, via apt) and LiteLLM (its own venv under
# .bench-peers/), installed on first use.
bench-peers: install
	$(PY) -m bench --peers

# Many more fuzz examples than `make test` runs, with Hypothesis's statistics per endpoint.
fuzz: install
	rm -rf $(TEST_DATA)-fuzz && mkdir -p $(TEST_DATA)-fuzz
	DATA_DIR=$(TEST_DATA)-fuzz FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-2000} $(PY) -m pytest \
		tests/integration/test_fuzz.py -q --hypothesis-show-statistics

# 1,000 concurrent streams for 10 minutes against fakes failing 5 % of requests at random;
# then requests vs log rows, RSS, fds and sockets (bench/soak.py; SOAK_ARGS to change it).
soak: install
	$(PY) -m bench.soak $(SOAK_ARGS)

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf $(VENV) $(TEST_DATA) $(TEST_DATA)-pg $(TEST_DATA)-fuzz .pytest_cache .ruff_cache
