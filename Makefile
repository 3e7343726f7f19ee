# The two set-up commands of the README: `make demo` (whole workflow) and `make test` (the test suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/run_all.sh

lint: install
	$(BIN)/ruff check opml tests benchmarks scripts

test: install lint
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) .opml .pytest_cache .ruff_cache
