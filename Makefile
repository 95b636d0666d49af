# speech_calm: `make test` and `make demo` are the two commands a user needs (see README.md); `make results`
# rebuilds the README's results table (every baseline, three seeds) from scratch.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install test test-slow demo results bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev,demo]'
	touch $@

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

demo: install
	PY=$(PY) bash scripts/demo.sh

results: install
	PY=$(PY) bash scripts/results.sh
