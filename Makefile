# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint bench clean-runs

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements/constraints.txt -e '.[dev]'
	touch $(STAMP)

# The demo replaces its own earlier run (runs/demo); real searches never overwrite without --overwrite.
demo: $(STAMP)
	$(PY) -m tune.run --space whisper_balancing --demo --overwrite
	$(PY) -m tune.final --config runs/demo/best_config.json --overwrite

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -m "not slow"

lint: $(STAMP)
	$(PY) -m ruff check .

# Each bench prints one JSON object (its measured ratio under `ratio`); see bench/README.md. ~20-30 min in all on 2 cores.
BENCHES := data_path step_breakdown whisper_short memory search_overhead search_efficiency
bench: $(STAMP)
	for name in $(BENCHES); do PYTHONPATH=. $(PY) bench/$$name.py || exit 1; done
