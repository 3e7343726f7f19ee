# The two set-up commands of the README: `make demo` (whole workflow) and `make test` (the test suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install sysdeps demo test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) sysdeps

# Debian packages the tests and benchmarks use: Apache Bench.
sysdeps:
	@command -v ab >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq apache2-utils >/dev/null; \
	  else echo "Apache Bench is missing: sudo apt-get install apache2-utils" >&2; exit 1; fi; }

demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/run_all.sh

lint: install
	$(BIN)/ruff check opml tests benchmarks scripts

test: install lint
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) .opml .pytest_cache .ruff_cache
