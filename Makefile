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

# Debian packages the tests and benchmarks use: Apache Bench, and Chromium for the Swagger UI browser test.
sysdeps:
	@missing=""; command -v ab >/dev/null || missing="$$missing apache2-utils"; \
	  command -v chromium >/dev/null || missing="$$missing chromium fonts-liberation"; \
	  if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	    else echo "missing Debian packages: sudo apt-get install$$missing" >&2; exit 1; fi; fi

demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/run_all.sh

lint: install
	$(BIN)/ruff check opml tests benchmarks scripts
	$(BIN)/lint-imports --no-cache

test: install lint
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) .opml .pytest_cache .ruff_cache
