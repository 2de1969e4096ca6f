# normbook: two commands are the contract (see README.md)
#   make book   set up (venv, packages, vendored JS) and build the HTML book at `small` scale
#   make test   set up (plus a headless browser) and run every test: unit, notebooks (nbval, smoke
#               scale), a book build, and the browser check of the built HTML
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.normbook-installed
VENDOR := .vendor
VENDOR_STAMP := $(VENDOR)/.stamp
REQUIREJS := requirejs@2.3.8
HTML_MANAGER := @jupyter-widgets/html-manager@1.0.15
CHROMIUM ?= /usr/bin/chromium
JOBS ?= 2
BOOK_HTML := _build/html/index.html
# --all: Sphinx otherwise reuses the doctrees of unchanged notebooks (not re-executed, and their
# earlier errors not reported again), whatever changed in the package
JB_FLAGS := -W -n --keep-going --all

.PHONY: help setup vendor browser book book-smoke test test-unit test-notebooks test-browser lab lint clean

help:
	@echo "make book   build the book (_build/html) at NORMBOOK_SCALE=small (default)"
	@echo "make test   run all tests: unit, notebooks at smoke scale, book build, browser check"
	@echo "make lab    open the chapters in Jupyter Lab"
	@echo "make clean  remove build outputs and the virtual environment"

# --- set-up -------------------------------------------------------------------------------------
$(STAMP): requirements.txt pyproject.toml
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $@

setup: $(STAMP)

# require.js and the ipywidgets HTML manager, pinned, so that widgets render offline
$(VENDOR_STAMP): Makefile
	@command -v npm >/dev/null || { echo "error: npm is needed once to fetch $(REQUIREJS) and $(HTML_MANAGER) into $(VENDOR)/ (install Node.js/npm)"; exit 1; }
	@rm -rf $(VENDOR) && mkdir -p $(VENDOR)/tmp
	cd $(VENDOR)/tmp && npm pack --silent $(REQUIREJS) $(HTML_MANAGER) >/dev/null
	tar -xzf $(VENDOR)/tmp/requirejs-2.3.8.tgz -C $(VENDOR) --strip-components=1 package/require.js
	tar -xzf $(VENDOR)/tmp/jupyter-widgets-html-manager-1.0.15.tgz -C $(VENDOR) --strip-components=2 \
	  --wildcards package/dist/embed-amd.js 'package/dist/*.woff*' 'package/dist/*.ttf' 'package/dist/*.eot' 'package/dist/*.svg'
	@rm -rf $(VENDOR)/tmp
	@touch $@

vendor: $(VENDOR_STAMP)

browser:
	@if [ ! -x $(CHROMIUM) ]; then \
	  echo "Installing Debian's chromium for the browser check..."; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo"; \
	  { $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; } \
	    || { echo "error: could not install chromium with apt-get; install a Chromium and run 'make test CHROMIUM=/path/to/chromium'"; exit 1; }; \
	fi
	@$(CHROMIUM) --version

# --- the book -----------------------------------------------------------------------------------
book: $(STAMP) $(VENDOR_STAMP)
	rm -rf _build/html
	NORMBOOK_SCALE=$${NORMBOOK_SCALE:-small} $(BIN)/jupyter-book build $(JB_FLAGS) .
	@echo "Book: $(abspath $(BOOK_HTML))"

book-smoke: $(STAMP) $(VENDOR_STAMP)
	rm -rf _build/html
	NORMBOOK_SCALE=smoke $(BIN)/jupyter-book build $(JB_FLAGS) .

# --- tests --------------------------------------------------------------------------------------
test-unit: $(STAMP)
	NORMBOOK_SCALE=smoke $(BIN)/python -m pytest -n $(JOBS) --dist loadscope -m "not browser" tests

test-notebooks: $(STAMP)
	NORMBOOK_SCALE=smoke $(BIN)/python -m pytest -n $(JOBS) --dist loadscope --nbval-lax book

test-browser: browser
	NORMBOOK_SCALE=smoke CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest -m browser tests

test: $(STAMP) $(VENDOR_STAMP) browser
	$(MAKE) --no-print-directory test-unit
	$(MAKE) --no-print-directory test-notebooks
	$(MAKE) --no-print-directory book-smoke
	$(MAKE) --no-print-directory test-browser

# --- conveniences -------------------------------------------------------------------------------
lab: $(STAMP)
	@$(BIN)/python -c "import jupyterlab" 2>/dev/null || $(BIN)/python -m pip install --quiet "jupyterlab>=4,<5"
	$(BIN)/jupyter lab book

lint: $(STAMP)
	$(BIN)/ruff check normbook tests book
	$(BIN)/ruff format --check normbook tests

clean:
	rm -rf _build $(VENDOR) $(VENV) .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
