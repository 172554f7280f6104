# Set-up and entry points. `make train` and `make test` work on a fresh machine: they create the
# virtualenv, install torch (pinned, CPU build, first) and the package, then run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.sb3_loop_installed

.PHONY: install train test lint benchmark-planner benchmark-learn clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install "torch==$(TORCH_VERSION)"
	$(PY) -m pip install -e ".[mujoco,zoo,offline,tests]"
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(PY) examples/quickstart.py

test: $(STAMP)
	$(PY) -m pytest tests -n 2 -p no:cacheprovider

lint: $(STAMP)
	$(PY) -m ruff check sb3_loop tests benchmarks examples

benchmark-planner: $(STAMP)
	$(PY) benchmarks/planner_speed.py

benchmark-learn: $(STAMP)
	$(PY) benchmarks/learn_speed.py

clean:
	rm -rf $(VENV) build dist *.egg-info logs
