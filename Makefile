# Two commands do everything on a fresh machine:
#   make run    set up .venv, generate + ingest the synthetic platform, run the weekly job, show a playlist
#   make test   set up .venv and run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat setup.py | sha1sum | cut -c1-10)
CONF ?= conf/local.yaml
WEEK ?=
WEEK_ARG := $(if $(WEEK),--week $(WEEK),)
PYTEST_ARGS ?=

.PHONY: run test setup blas generate weekly show evaluate bench clean-data clean

setup: $(STAMP)

$(STAMP): setup.py
	@command -v java >/dev/null || { echo "Java 17+ is required by Spark (apt-get install openjdk-17-jre-headless)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip wheel setuptools
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	-@$(MAKE) --no-print-directory blas
	rm -f $(VENV)/.installed-*; touch $(STAMP)

# Native BLAS for Spark MLlib ALS (optional: skipped where apt-get is not available or not root).
blas:
	@if [ ! -e /usr/lib/x86_64-linux-gnu/libopenblas.so.0 ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq libopenblas0 >/dev/null) || echo "libopenblas0 not installed (ALS uses Java BLAS)"; \
	fi

generate: setup
	$(PY) jobs/generate.py --conf $(CONF) $(WEEK_ARG)

weekly: setup
	$(PY) jobs/weekly.py --conf $(CONF) $(WEEK_ARG)

show: setup
	$(PY) jobs/show.py --conf $(CONF) $(WEEK_ARG)

run: setup
	$(PY) jobs/generate.py --conf $(CONF) $(WEEK_ARG)
	$(PY) jobs/weekly.py --conf $(CONF) $(WEEK_ARG)
	$(PY) jobs/show.py --conf $(CONF) $(WEEK_ARG)

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS) tests

evaluate: setup
	$(PY) jobs/evaluate.py --format movielens --path ../shared/data/movielens_latest_small/ratings.csv --out artifacts/eval/movielens

bench: setup
	$(PY) benchmarks/run.py --suite pipeline --size S

clean-data:
	rm -rf warehouse data artifacts spark-warehouse

clean: clean-data
	rm -rf $(VENV) *.egg-info
