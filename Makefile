# aispend: `make demo` runs the local stack with a simulated workload;
# `make test` runs the whole test suite. Both install what they need first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
GENERATED := alert-rules dashboards docs/metrics.md docs/dashboards.md docs/runbooks.md

.PHONY: setup system-packages demo stack test check-generated generate lint bench clean

setup: system-packages $(STAMP)

# system-packages first: on Debian the venv needs python3-venv (ensurepip). A venv
# left without pip by an earlier failed try is made again.
$(STAMP): pyproject.toml | system-packages
	@$(PY) -m pip --version >/dev/null 2>&1 || { rm -rf $(VENV); $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

system-packages:
	@PYTHON=$(PYTHON) scripts/ensure-system-packages.sh wrk:wrk

demo: setup
	$(PY) -m aispend demo $(if $(DEMO_ONCE),--once,)

stack: setup
	$(PY) -m aispend stack up --config aispend.example.yaml --components +chat-sink

# --durations: the slowest tests in every run, to watch the 20-minute budget of the suite.
test: setup check-generated lint
	$(PY) -m pytest -q -p no:cacheprovider --durations=15

# Regenerate the committed generated files and fail if anything differs.
check-generated: setup generate
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
	  if [ -n "$$(git status --porcelain -- $(GENERATED))" ]; then \
	    echo "generated files differ from the committed ones (run make generate, commit):"; \
	    git status --porcelain -- $(GENERATED); git --no-pager diff --stat -- $(GENERATED); \
	    exit 1; \
	  fi; \
	else echo "not a git checkout: skipping the generated-files diff"; fi

generate: $(STAMP)
	$(PY) -m aispend docs generate
	$(PY) -m aispend rules generate
	$(PY) -m aispend dashboards generate

lint: $(STAMP)
	$(VENV)/bin/ruff check aispend tests benchmarks
	$(VENV)/bin/ruff format --check aispend tests benchmarks
	$(VENV)/bin/mypy

bench: setup
	@scripts/ensure-system-packages.sh nginx:nginx-light
	@set -e; for script in benchmarks/*.py; do \
	  args=; case "$$(basename $$script)" in \
	    _*|gateway_ab.py) continue;; \
	    gateway_overhead.py) args="--write docs/benchmarks.md";; esac; \
	  echo "== $$script $$args"; $(PY) $$script $$args; done

clean:
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache
