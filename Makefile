# segtag: the two Quick start commands are `make demo` and `make test`.
# Each does its own setup: system packages (Java, Maven, Redis), the virtualenv and the package.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.segtag-installed

.PHONY: setup system demo test lint bench services-up services-down clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

system:
	@bash scripts/ensure_system.sh

setup: system $(STAMP)

demo: setup
	$(PY) scripts/demo.py

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

lint: setup
	$(VENV)/bin/ruff check segtag consumers tests bench scripts
	$(VENV)/bin/mypy segtag consumers

bench: setup
	$(PY) bench/bench_decode.py && $(PY) bench/bench_features.py && $(PY) bench/bench_model.py && \
	$(PY) bench/bench_index.py && $(PY) bench/bench_pipeline.py

services-up: setup
	$(VENV)/bin/segtag services up

services-down: setup
	$(VENV)/bin/segtag services down

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
