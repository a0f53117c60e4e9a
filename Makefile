# Gradient Flow — the two commands a learner needs are `make book` and `make test`.
# Both create .venv (with the exact versions in requirements.txt) on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
REPOSITORY := $(shell sed -n 's/^  url: //p' _config.yml)
# pytest-xdist workers for the unit and browser tests, and notebook processes for nbmake
WORKERS ?= 2
# run a command and then print its seconds ("== 93 s: <command>"), keeping its exit status
TIMED = bash -c 'start=$$(date +%s); "$$@"; code=$$?; \
	echo "== $$(( $$(date +%s) - start )) s: $$*" >&2; exit $$code' timed

.PHONY: setup book test unit notebooks site-tests axe math-tools site-tools site-bench browser bench serve \
	lint launched \
	set-repository clean mutation

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(TIMED) $(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

## book: build the site into _build/html (executes every chapter; any warning or failing cell fails)
book: $(STAMP) math-tools
	$(BIN)/jupyter-book build . -W -n --keep-going

## test: everything, executing each chapter once: unit tests; the chapters under nbmake, whose
## outputs go into the book's execution cache; the book built from that cache (it executes no
## chapter again); the browser tests of the built site (each page opened once per colour scheme
## and width it is checked in). Unit and browser tests run in $(WORKERS) pytest-xdist workers and
## the notebooks in $(WORKERS) processes; each phase prints its seconds.
test: browser axe math-tools unit notebooks
	$(TIMED) $(BIN)/jupyter-book build . -W -n --keep-going
	$(TIMED) $(BIN)/python -m pytest tests -m browser -n $(WORKERS) --dist loadscope

## unit: the tests that need no built site (library, notebooks' conventions, quizzes, seed map)
unit: $(STAMP)
	$(TIMED) $(BIN)/python -m pytest tests -m "not browser" -n $(WORKERS)

## notebooks: execute every chapter once under nbmake (on copies; chapters/ keeps no outputs)
## and keep the outputs in _build/.jupyter_cache for the next book build
notebooks: $(STAMP)
	$(TIMED) $(BIN)/python -m gradpath.book.executed --workers $(WORKERS) chapters/[0-9][0-9]-*.ipynb

## site-tests: the browser tests of an already built site (make book first)
site-tests: browser axe
	$(TIMED) $(BIN)/python -m pytest tests -m browser -n $(WORKERS) --dist loadscope

## browser: Debian's chromium for the built-site tests (installed with apt when missing)
browser:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; }

## axe: axe-core from the npm registry into .sitetools/ (git ignores it), for the accessibility tests.
## 4.14 or later: its colour-contrast rule is about 4x faster than 4.11's on the chapters' pages
## (axe-core PR #5323), and that rule is most of the browser tests' time. The stamp names the
## version, so a checkout with an older axe-core installs this one.
AXE_VERSION := 4.14.1
AXE := .sitetools/.axe-core-$(AXE_VERSION)
axe: $(AXE)
$(AXE):
	@command -v npm >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs npm; }
	npm install --prefix .sitetools --no-audit --no-fund --silent axe-core@$(AXE_VERSION)
	touch $@

## math-tools: MathJax 3 for Node (mathjax-full, from the npm registry into .sitetools/), with which
## the book build typesets the math once (gradpath.book.mathrender); offline afterwards
MATHJAX_FULL := .sitetools/node_modules/mathjax-full/package.json
math-tools: $(MATHJAX_FULL)
$(MATHJAX_FULL):
	@command -v npm >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs npm; }
	npm install --prefix .sitetools --no-audit --no-fund --silent mathjax-full@3.2.2

## site-tools: also Lighthouse (12.8.2 runs on Debian's Node 18), for site-bench
site-tools: axe math-tools
	npm install --prefix .sitetools --no-audit --no-fund --silent axe-core@$(AXE_VERSION) lighthouse@12.8.2 \
		mathjax-full@3.2.2

## site-bench: compressed page weight and Lighthouse (desktop, mobile) per page of the built site
site-bench: $(STAMP) browser site-tools
	$(BIN)/python -m gradpath.book.sitebench

## bench: train()'s recording overhead (ratio to a bare loop), then every chapter executed once
## with its seconds, peak memory and device, then the gradient doctor's overhead (ratio to the
## same loop without it) on an MLP and a small transformer (a measurement, not a test)
bench: $(STAMP)
	$(BIN)/python -m gradpath.book.bench chapters/[0-9][0-9]-*.ipynb
	$(BIN)/python -m gradpath.book.doctor_bench

## launched: two chapters as a learner launches them on Colab (throwaway venv with ipywidgets 7.7.1
## and no myst-nb, a local clone, each run twice); minutes, and needs the package index
launched: $(STAMP)
	GRADPATH_LAUNCHED=1 $(BIN)/python -m pytest tests/test_launched.py

## mutation: mutation testing of the core (mutmut, pinned in requirements-mutation.txt and installed
## on first use): each core module mutated alone against tests/ only; prints the killed share per
## module. Slow (not part of test or CI). One module: make mutation MODULES=diagnosis
MODULES ?=
mutation: $(STAMP)
	@$(BIN)/python -c "import mutmut" 2>/dev/null && \
		[ "$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("mutmut"))')" = \
		"$$(sed -n 's/^mutmut==//p' requirements-mutation.txt)" ] || \
		$(BIN)/python -m pip install --quiet -r requirements-mutation.txt
	nice -n 15 $(BIN)/python tests/mutation/run.py $(MODULES)

serve:
	$(BIN)/python -m http.server --directory _build/html 8000

lint: $(STAMP)
	$(BIN)/ruff check lib tests
	$(BIN)/mypy
	$(BIN)/lint-imports

## set-repository URL=https://github.com/<you>/<repo> : point a fork's buttons and set-up cells at it
set-repository:
	@test -n "$(URL)" || { echo "usage: make set-repository URL=https://github.com/<you>/<repo>"; exit 2; }
	sed -i 's|$(REPOSITORY)|$(URL)|g' _config.yml README.md intro.md chapters/[0-9][0-9]-*.ipynb
	@echo "repository is now $(URL)"

clean:
	rm -rf _build
