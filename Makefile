# Two commands do all the set-up on a fresh machine with Python 3.10+:
#   make book   installs everything into .venv and builds the book (HTML in _build/html/)
#   make test   installs everything into .venv and runs the tests, every chapter included
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The offline CIFAR-10 copy beside the checkout, when there is one (CI, this workplace).
SHARED_DATA := $(abspath ../shared/data/cifar10-jpeg)
export RESNET_LAB_DATA ?= $(if $(wildcard $(SHARED_DATA)/SHA256SUMS),$(SHARED_DATA),)
JB_FLAGS ?=

.PHONY: book zh test book-strict notebooks clean gpu-check standalone lint format

$(BIN)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.txt > $(VENV)/pip.log 2>&1 \
	  || (grep -v "is ignored" $(VENV)/pip.log; exit 1)
	$(BIN)/python -c "import torch, torchvision, resnet_lab, jupyter_book, nbval"
	test -x $(BIN)/ruff
	touch $@

# Execution is cached (_build/.jupyter_cache, keyed by each chapter's code): after a text-only
# edit only the changed pages are rebuilt and no chapter re-runs. The cache is dropped when the
# package or the recorded results change, since chapters read both. book-strict (CI) executes
# everything from scratch.
INPUTS_HASH = $$(cat $$(find resnet_lab -name '*.py' | sort) $$(find results -name '*.json' | sort) 2>/dev/null | sha256sum | cut -c1-16)

book: $(BIN)/.installed
	@h=$(INPUTS_HASH); if [ "$$h" != "$$(cat _build/.inputs-hash 2>/dev/null)" ]; then \
	  rm -rf _build/.jupyter_cache; echo "package or results changed: every chapter re-executes"; fi
	$(BIN)/jupyter-book build . $(JB_FLAGS)
	$(MAKE) --no-print-directory zh JB_FLAGS="$(JB_FLAGS)"
	@mkdir -p _build && echo $(INPUTS_HASH) > _build/.inputs-hash
	@echo "The book is in _build/html/index.html, the Chinese edition in _build/html/zh/index.html"

# The Chinese edition (book/zh/), built after the English one from the same execution cache
# (its code cells are the English ones, tests/test_editions.py checks it), so nothing runs
# twice; its pages are copied into _build/html/zh/, beside the English pages they link to.
zh:
	$(BIN)/jupyter-book build book/zh --path-output _build/zh $(JB_FLAGS)
	rm -rf _build/html/zh && cp -r _build/zh/_build/html _build/html/zh

book-strict: $(BIN)/.installed
	rm -rf _build/.jupyter_cache _build/.inputs-hash
	$(BIN)/jupyter-book build . --all -W -n --keep-going
	$(MAKE) --no-print-directory zh JB_FLAGS="--all -W -n --keep-going"

test: $(BIN)/.installed
	RESNET_LAB_PROFILE=$${RESNET_LAB_PROFILE:-smoke} $(BIN)/python -m pytest

# ruff, configured in pyproject.toml: `make format` rewrites, `make lint` (CI) only checks
lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(BIN)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# the install cells and lines take the address from _config.yml (tools/sync_book.py), then
# the chapters' .ipynb pairs are written again (--update: cell ids kept, diffs small)
notebooks: $(BIN)/.installed
	$(BIN)/python tools/sync_book.py
	$(BIN)/jupytext --update --to ipynb $$(grep -l '^kernelspec:' book/[0-9]*.md book/appendix_*.md book/zh/*.md)
	$(BIN)/python tools/translations.py sync

# every chapter as a reader runs it: the wheel in a fresh venv, each .ipynb pair alone in an
# empty folder, compared with the strict build (or an in-repository run) in .ci/standalone
standalone: $(BIN)/.installed
	PYTHON=$(BIN)/python bash .ci/standalone

clean:
	rm -rf _build

gpu-check: $(BIN)/.installed
	PYTHON=$(BIN)/python bash benchmarks/gpu_check.sh
