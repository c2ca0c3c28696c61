# Two commands do all set-up on a fresh machine:
#   make demo   install into .venv and run the whole study on the bundled fruits data (offline)
#   make test   install into .venv and run the test suite
# Versions are pinned in constraints.txt (torch 2.14.1 / torchvision 0.29.1, CPU works).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install demo test lint

$(BIN)/synthmix: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e ".[all]"
	touch $(BIN)/synthmix

install: $(BIN)/synthmix

demo: install
	$(BIN)/synthmix demo

lint: install
	$(BIN)/ruff check src tests benchmarks

test: install lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)
