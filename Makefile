# Two commands do everything on a fresh machine:
#   make run    set up .venv, generate + ingest the synthetic platform, run the weekly job, show a playlist
#   make test   set up .venv and run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | sha1sum | cut -c1-10)
CONF ?= conf/local.yaml
WEEK ?=
WEEK_ARG := $(if $(WEEK),--week $(WEEK),)
PYTEST_ARGS ?=
# the suite on two processes (pytest-xdist; tests/conftest.py groups the tests that share the tiny
# platform's fixtures on one of them, and their groups run in collection order: the tiny-platform
# chain first); XDIST= runs it in one process
XDIST ?= -n 2 --no-loadscope-reorder

.PHONY: run test integration-test test-fast test-durations setup blas generate weekly show evaluate bench wheel lock cluster-test s3a-test clean-data clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@command -v java >/dev/null || { echo "Java 17+ is required by Spark (apt-get install openjdk-17-jre-headless)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip wheel setuptools
	$(PY) -m pip install --quiet -c requirements.lock -e ".[dev,bench]"
	-@$(MAKE) --no-print-directory blas
	-$(PY) -m recsys_spark.spark fetch-local-fs
	-$(PY) -m recsys_spark.spark resolve-delta
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
	$(PY) jobs/weekly.py --conf $(CONF) $(WEEK_ARG) --warm-up
	$(PY) jobs/show.py --conf $(CONF) $(WEEK_ARG)

# the suite; the integration tier (SIGKILLed weekly runs in subprocesses, a Spark Connect server,
# the wheel in a new venv) runs with `make integration-test`, and CI runs both (.ci/run)
test: setup
	$(PY) -m pytest -q -m "not integration" $(XDIST) $(PYTEST_ARGS) tests

integration-test: setup
	$(PY) -m pytest -q -m integration $(PYTEST_ARGS) tests

# the fast tier: no whole weekly runs, no platform generation, no subprocesses, no test that took 5 s or
# more in the recorded run (tests/durations.json; pytest.ini: markers)
test-fast: setup
	$(PY) -m pytest -q -m "not slow and not integration" $(XDIST) $(PYTEST_ARGS) tests

# re-time the suite: make test, then make test-fast, each test's seconds recorded (the larger of the two)
# into tests/durations.json, what marks the fast tier's `slow` tests and orders the modules longest
# first (tests/conftest.py); commit the file
test-durations: setup
	rm -f tests/durations.json
	$(MAKE) --no-print-directory test PYTEST_ARGS="--record-durations tests/durations.json $(PYTEST_ARGS)"
	$(MAKE) --no-print-directory test-fast PYTEST_ARGS="--record-durations tests/durations.json $(PYTEST_ARGS)"

evaluate: setup
	$(PY) jobs/evaluate.py --format movielens --path ../shared/data/movielens_latest_small/ratings.csv --out artifacts/eval/movielens

bench: setup
	$(PY) benchmarks/run.py --suite pipeline --size S

# The wheel (conf files inside): dist/recsys_spark-<version>-py3-none-any.whl
wheel: setup
	rm -rf dist build
	$(PY) -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir dist .

# Re-pin requirements.lock to what the dev venv holds (after changing pyproject.toml's ranges).
lock: setup
	(echo "# Exact versions of the dev venv (constraints for \`pip install -c requirements.lock\`; the Makefile uses it)."; \
	 echo "# Regenerate after changing pyproject.toml: make lock"; \
	 $(PY) -m pip freeze --exclude-editable | grep -v -i '^recsys-spark') > requirements.lock

# A Spark standalone master + 2 workers on 127.0.0.1, the wheel installed in a venv outside the
# checkout, generate + weekly through spark-submit (tests/deploy/cluster_test.sh).
cluster-test: wheel
	PYTHON_DEV=$(abspath $(PY)) bash tests/deploy/cluster_test.sh

# The weekly job with its tables and model artifacts on s3a:// (moto's S3 server on 127.0.0.1,
# hadoop-aws through --packages; tests/deploy/s3a_test.sh). Opt-in: not run by .ci/run.
s3a-test: setup
	PYTHON_DEV=$(abspath $(PY)) bash tests/deploy/s3a_test.sh

clean-data:
	rm -rf warehouse data artifacts spark-warehouse

clean: clean-data
	rm -rf $(VENV) *.egg-info dist build
