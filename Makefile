# Two commands set everything up: `make demo` and `make test`. Both go through `make setup`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo lint test bench clean

setup: $(STAMP)

# Re-installs only when a requirements file changes; torch goes first and pinned so pip never picks a CUDA build.
# `pip install -e .` makes t5kit and the top-level modules importable from anywhere (pyproject.toml).
$(STAMP): requirements.txt requirements-sweeps.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-sweeps.txt  # sweeps declares numpy<2: see the file
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

demo: setup
	$(PY) demo.py

# The code passes ruff's linter and formatter (pyproject.toml) before any test runs.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: setup lint
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled $(PY) -m pytest -q --durations=20 tests

bench: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled $(PY) -m bench.run_all

clean:
	rm -rf $(VENV) runs
