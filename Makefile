# Two commands on a fresh machine: `make demo` and `make test`.
# Set-up is idempotent: it reinstalls only when requirements.txt or pyproject.toml change.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.accel-installed
PYTEST_ARGS ?=

.PHONY: setup demo test test-full bench lint clean

setup: $(STAMP)
	@bash scripts/ensure_iverilog.sh
	@bash scripts/ensure_chromium.sh

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# out/ is the demo's own output folder: `make demo` regenerates it (plain `accel demo` refuses to).
demo: setup
	$(VENV)/bin/accel demo --force

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Every exhaustive suite as well (slow: the full property and simulator sweeps).
test-full: setup
	ACCEL_FULL=1 $(PY) -m pytest -q $(PYTEST_ARGS)

bench: setup
	$(PY) bench/engine_throughput.py

lint: setup
	$(VENV)/bin/ruff check accel tests bench models scripts
	$(VENV)/bin/lint-imports

clean:
	rm -rf build out .pytest_cache
