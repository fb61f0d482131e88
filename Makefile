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

.PHONY: book test book-strict notebooks clean

$(BIN)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.txt > $(VENV)/pip.log 2>&1 \
	  || (grep -v "is ignored" $(VENV)/pip.log; exit 1)
	$(BIN)/python -c "import torch, torchvision, resnet_lab, jupyter_book, nbval"
	touch $@

book: $(BIN)/.installed
	$(BIN)/jupyter-book build . --all $(JB_FLAGS)
	@echo "The book is in _build/html/index.html"

book-strict: JB_FLAGS = -W -n --keep-going
book-strict: book

test: $(BIN)/.installed
	RESNET_LAB_PROFILE=$${RESNET_LAB_PROFILE:-smoke} $(BIN)/python -m pytest

notebooks: $(BIN)/.installed
	$(BIN)/jupytext --to ipynb $$(grep -l '^kernelspec:' book/[0-9]*.md)

clean:
	rm -rf _build
