# Two commands on a fresh machine with only Python 3.11+: `make run` and `make test`.
# Each creates .venv and installs requirements.txt on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: run test bench-cv bench-accuracy bench-end-to-end bench-streaming clean-cache

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

run: $(VENV)/.installed
	$(PY) main.py $(ARGS)

test: $(VENV)/.installed
	$(PY) -m pytest -q tests

bench-cv: $(VENV)/.installed
	$(PY) bench/cv.py $(ARGS)

bench-accuracy: $(VENV)/.installed
	$(PY) bench/accuracy.py $(ARGS)

bench-end-to-end: $(VENV)/.installed
	$(PY) bench/end_to_end.py $(ARGS)

bench-streaming: $(VENV)/.installed
	$(PY) bench/streaming.py $(ARGS)

clean-cache:
	rm -rf cache
