# Two commands set everything up: `make demo` and `make test`. Both go through `make setup`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test bench clean

setup: $(STAMP)

# Re-installs only when a requirements file changes; torch goes first and pinned so pip never picks a CUDA build.
$(STAMP): requirements.txt requirements-sweeps.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-sweeps.txt  # sweeps declares numpy<2: see the file
	touch $(STAMP)

demo: setup
	$(PY) demo.py

test: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled $(PY) -m pytest -q tests

bench: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled $(PY) bench/run_all.py

clean:
	rm -rf $(VENV) runs
