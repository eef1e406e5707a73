# Two commands on a fresh machine with only Python 3.11+: `make run` and `make test`.
# Each creates .venv and installs requirements.txt on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: run test lab-test lab-cv bench-accuracy bench-adapt bench-end-to-end bench-streaming bench-holter bench-robustness clean-cache

$(VENV)/.installed: requirements.txt
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(None if v >= (3, 11) else \
		"error: Deep-ECG needs Python 3.11 or newer, $(PYTHON) is %d.%d; name one: make $(MAKECMDGOALS) PYTHON=python3.11 " \
		"(Debian and Ubuntu also need the python3.11-venv package)" % v)'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch's CPU build first (PyPI's Linux wheel is the multi-GB CUDA build); where its index cannot
	# be reached, requirements.txt's pin takes torch from the usual index.
	$(PY) -m pip install --quiet --no-deps torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
		|| echo "note: torch's CPU index not reached; torch comes from the usual index"
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

run: $(VENV)/.installed
	$(PY) main.py $(ARGS)

test: $(VENV)/.installed
	$(PY) -m pytest -q tests

# The lab (lab/README.md): its tests and its cross-validation harness. `rm -rf lab` leaves run and test as they are.
lab-test: $(VENV)/.installed
	$(PY) -m pytest -q lab/tests

lab-cv: $(VENV)/.installed
	$(PY) lab/cv.py $(ARGS)

bench-accuracy: $(VENV)/.installed
	$(PY) bench/accuracy.py $(ARGS)

bench-end-to-end: $(VENV)/.installed
	$(PY) bench/end_to_end.py $(ARGS)

bench-robustness: $(VENV)/.installed
	$(PY) bench/robustness.py $(ARGS)

bench-streaming: $(VENV)/.installed
	$(PY) bench/streaming.py $(ARGS)

bench-adapt: $(VENV)/.installed
	$(PY) bench/adapt.py $(ARGS)

bench-holter: $(VENV)/.installed
	$(PY) bench/holter.py $(ARGS)

clean-cache:
	rm -rf cache
