# Two commands matter:  `make lab` (set up + open the teaching notebooks in JupyterLab)
# and `make test` (set up + run every test). `make demo` runs the headless demo instead.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fluffy-installed

.PHONY: lab lab-command demo test test-fast bench fuzz lint browser-deps browser-soak clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,browser]"
	touch $(STAMP)

# JupyterLab refuses to start as root (containers, cloud VMs) unless told it may
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

# options for JupyterLab, e.g. `make lab LAB_ARGS="--port=9999 --no-browser"`
LAB_ARGS ?=
# the exact command `make lab` runs; tests/browser/test_make_lab.py starts it the same way (`make -s lab-command`)
LAB_CMD = $(VENV)/bin/jupyter lab $(ROOT_FLAG) $(LAB_ARGS) notebooks/

lab: $(STAMP)
	$(LAB_CMD)

lab-command:
	@echo $(LAB_CMD)

demo: $(STAMP)
	$(PY) -m fluffy_nb

browser-deps:
	bash scripts/install-browser-deps.sh

test: $(STAMP) browser-deps lint
	$(PY) -m pytest -p no:cacheprovider -q --doctest-modules fluffy_nb
	FLUFFY_NB_AUTOANSWER=1 $(PY) -m pytest -p no:cacheprovider -q -ra tests
	FLUFFY_NB_AUTOANSWER=1 $(PY) -m pytest -p no:cacheprovider -q --nbval-lax --nbval-sanitize-with tests/notebooks/sanitize.cfg notebooks

test-fast: $(STAMP)
	$(PY) -m pytest -p no:cacheprovider -q -m "not slow and not browser and not kernel" tests

# not in CI: 20 fresh-kernel trials per run mode of the form answers (a few more minutes per mode)
browser-soak: $(STAMP) browser-deps
	FLUFFY_NB_TRIALS=20 $(PY) -m pytest -p no:cacheprovider -q -s tests/browser/test_hitl_trials.py -k every_answer

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# 100,000 mutated checkpoints and damaged store files through the loaders; prints counts by outcome
fuzz: $(STAMP)
	$(PY) benchmarks/fuzz_checkpoints.py --inputs 100000

lint: $(STAMP)
	$(VENV)/bin/ruff check fluffy_nb tests benchmarks conftest.py
	$(VENV)/bin/mypy fluffy_nb

clean:
	rm -rf $(VENV) build dist *.egg-info artifacts
