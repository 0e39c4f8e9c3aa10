# attnbook: `make book` builds the site, `make test` runs every test. Both set up .venv first.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# On this project's machines torch comes from the CPU wheel pinned here; requirements.txt keeps
# torch>=2.3 so that Colab and Binder keep their own torch.
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt
JB_BUILD := $(BIN)/jupyter-book build . --warningiserror --keep-going --quiet
NOTEBOOKS := $(wildcard book/*.ipynb)

.PHONY: book test install unit notebooks site strip sync lint clean

$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	@echo "== setting up $(VENV)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(PIP_INSTALL) -r requirements-dev.txt
	@touch $@

install: $(STAMP)

## The main job: build the HTML site into _build/html, executing every notebook.
book: install
	@echo "== building the book (executes every notebook)"
	@$(JB_BUILD)
	@echo "Front page: $(CURDIR)/_build/html/index.html"

## Every test: lint, package tests, nbval on every notebook, a warning-free site build.
test: install lint unit notebooks site
	@echo "== notebook execution times (seconds, nbval)"
	@cat _build/notebook-times.md

lint:
	@echo "== ruff"
	@$(BIN)/ruff check attnbook tests scripts $(wildcard benchmarks) conftest.py

unit:
	@echo "== package, hygiene and Colab-simulation tests"
	@$(BIN)/python -m pytest -q -n 2 -m "not site" tests

notebooks:
	@echo "== nbval: executing every notebook in book/"
	@$(BIN)/python -m pytest -q -p no:xdist --nbval --nbval-cell-timeout=300 book

site:
	@echo "== site build (fails on any warning or cell error)"
	@rm -rf _build/html _build/jupyter_execute
	@$(JB_BUILD)

## Remove outputs and execution counts from every notebook (nbstripout).
strip: install
	@$(BIN)/nbstripout $(NOTEBOOKS)

## Rewrite the shared Colab bootstrap cell into every notebook.
sync: install
	@$(BIN)/python scripts/sync_notebooks.py

clean:
	rm -rf _build
