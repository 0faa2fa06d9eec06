# Suyuan developer commands.
#
#   make install       .venv with the project and its dev tools (pinned by constraints.txt)
#   make lint          ruff check, ruff format --check, mypy (strict)
#   make test          system-deps + lint + pytest; extra pytest args via PYTEST_ARGS="..."
#   make system-deps   OS packages the tests need (PostgreSQL 15), only when missing
#   make run           development server on http://127.0.0.1:8000 (init + demo data first)
#   make bench         benchmarks (bench/), figures go to BENCHMARKS.md (bench.site keeps
#                      its 1M-entry ledger in bench/out/ between runs; bench.writers,
#                      bench.witness and bench.mirror: PostgreSQL writers, witness round
#                      trip, mirroring)
#   make fuzz          coverage-guided fuzzing (atheris) of every parser, FUZZ_SECONDS each
#                      (default 300); new inputs and any crash go to .fuzz/NAME
#   make soak          30-minute soak of the production server on loopback (bench.soak);
#                      figures go to BENCHMARKS.md
#   make clean         remove .venv and caches (never the instance folder)

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv install lint test system-deps run bench fuzz soak clean

venv install: $(STAMP)

# Reinstalls only when pyproject.toml or constraints.txt change.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $@

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

system-deps:
	@scripts/install-system-deps.sh

test: $(STAMP) system-deps lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# DEVELOPMENT ONLY: SUYUAN_DEV=1, a fixed default passphrase for the local
# instance's keys and a fixed password for the demo's portal logins (each used
# only when not already set in the environment). Never run a real log this way:
# a production instance sets its own SUYUAN_PASSPHRASE and SUYUAN_SECRET_KEY, and
# sets neither SUYUAN_DEV nor SUYUAN_DEMO_PASSWORD.
run: $(STAMP)
	export SUYUAN_PASSPHRASE="$${SUYUAN_PASSPHRASE:-suyuan-dev-passphrase}" SUYUAN_DEV=1 \
	       SUYUAN_DEMO_PASSWORD="$${SUYUAN_DEMO_PASSWORD:-suyuan-demo-2016}"; \
	$(BIN)/suyuan init && \
	$(BIN)/suyuan demo && \
	exec $(BIN)/suyuan serve --host 127.0.0.1 --port 8000

bench: $(STAMP)
	@SUYUAN_SYSDEPS_BENCH=1 scripts/install-system-deps.sh
	$(BIN)/python -m bench
	$(BIN)/python -m bench.domain
	$(BIN)/python -m bench.labels
	$(BIN)/python -m bench.site --reuse
	$(BIN)/python -m bench.writers
	$(BIN)/python -m bench.witness --out BENCHMARKS.md
	$(BIN)/python -m bench.mirror --out BENCHMARKS.md

FUZZ_SECONDS ?= 300
fuzz: $(STAMP)
	for target in $$($(BIN)/python -m tests.fuzz.run --list); do \
	  $(BIN)/python -m tests.fuzz.run "$$target" --seconds $(FUZZ_SECONDS) --keep .fuzz/"$$target" \
	    || exit 1; \
	done

SOAK_MINUTES ?= 30
soak: $(STAMP)
	@SUYUAN_SYSDEPS_BENCH=1 scripts/install-system-deps.sh
	$(BIN)/python -m bench.soak --minutes $(SOAK_MINUTES) --out BENCHMARKS.md

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis .fuzz
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
