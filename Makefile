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

.PHONY: book test install unit notebooks site strip sync lint clean assets browser

$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	@echo "== setting up $(VENV)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(PIP_INSTALL) -r requirements-dev.txt
	@touch $@

install: $(STAMP)

## The main job: build the HTML site into _build/html, executing every notebook.
book: install assets
	@echo "== building the book (executes every notebook)"
	@$(JB_BUILD)
	@echo "Front page: $(CURDIR)/_build/html/index.html"

## Every test: lint, package tests, nbval on every notebook, a warning-free site build.
test: install lint unit notebooks site browser
	@echo "== notebook execution times (seconds, nbval)"
	@cat _build/notebook-times.md

lint:
	@echo "== ruff"
	@$(BIN)/ruff check attnbook tests scripts $(wildcard benchmarks) conftest.py
	@echo "== notebook code fits the page (lines <= 100 characters)"
	@$(BIN)/ruff check --select E501 book

unit:
	@echo "== package, hygiene and Colab-simulation tests"
	@$(BIN)/python -m pytest -q -n 2 -m "not site" tests

notebooks:
	@echo "== nbval: executing every notebook in book/"
	@$(BIN)/python -m pytest -q -p no:xdist --nbval --nbval-cell-timeout=300 book

site: assets
	@echo "== site build (fails on any warning or cell error)"
	@rm -rf _build/html _build/jupyter_execute
	@$(JB_BUILD)

## What the site serves itself (MathJax, RequireJS, the widgets' HTML manager: npm tarballs
## pinned by hash, cached in _vendor/) and the logo and favicon drawn by code. Both gitignored.
assets: install
	@echo "== site assets: vendored JavaScript, logo"
	@$(BIN)/python scripts/vendor_assets.py
	@$(BIN)/python scripts/make_logo.py

## The built site in headless Chromium, offline: every page of _build/html (tests/test_site.py).
## Installs Debian's chromium when /usr/bin/chromium is missing; screenshots in _build/screenshots.
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || command -v sudo)
browser: install
	@echo "== browser: every page of the built site, with the network blocked"
	@test -x $(CHROMIUM) || { echo "   installing Debian's chromium"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@ATTNBOOK_REQUIRE_SITE=1 $(BIN)/python -m pytest -q -p no:xdist -m site tests/test_site.py

## Remove outputs and execution counts from every notebook (nbstripout).
strip: install
	@$(BIN)/nbstripout $(NOTEBOOKS)

## Rewrite the shared Colab bootstrap cell into every notebook.
sync: install
	@$(BIN)/python scripts/sync_notebooks.py

clean:
	rm -rf _build
