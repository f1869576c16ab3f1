# make test: lint + the whole test suite. make bench: the suite that fits this machine, then the report.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUITE ?= auto
RESULTS ?= results
ARGS ?=
# Real MNIST for tests and runs: an explicit BENCH_DATA_DIR wins; else the workspace's shared copy when
# present; else the harness downloads it into its default data folder.
SHARED_MNIST := $(wildcard ../shared/data/mnist)
ifeq ($(origin BENCH_DATA_DIR),undefined)
ifneq ($(SHARED_MNIST),)
export BENCH_DATA_DIR := $(abspath $(SHARED_MNIST))
endif
endif

XLA_VENV ?= .venv-xla
# torch_xla needs exactly the lock's torch 2.9.0; installing with the lock as constraints keeps pip from swapping it.
XLA_PIN := torch-xla==2.9.0

.PHONY: setup setup-xla lint test test-xla bench bench-xla-smoke report data lock clean

setup: $(VENV)/.installed

# Re-runs only when the project or the lock changes: setup is idempotent.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $@

# The XLA environment: the same lock plus torch_xla, kept apart (fastai's to_bf16() breaks where it is importable).
setup-xla: $(XLA_VENV)/.installed

$(XLA_VENV)/.installed: pyproject.toml constraints.txt
	test -x $(XLA_VENV)/bin/python || $(PYTHON) -m venv $(XLA_VENV)
	$(XLA_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]' $(XLA_PIN)
	touch $@

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest

# The XLA tests on PJRT's CPU runtime: the TPU code path without a TPU.
test-xla: setup-xla
	PJRT_DEVICE=CPU $(XLA_VENV)/bin/python -m pytest tests/test_xla.py

bench-xla-smoke: setup-xla
	PJRT_DEVICE=$${PJRT_DEVICE:-CPU} $(XLA_VENV)/bin/bench run --suite xla-smoke --results-dir $(RESULTS) $(ARGS)

data: setup
	$(BIN)/bench data --png

# bench run writes the report of everything under $(RESULTS) when the sweep ends. Where the pretrained resnet18
# weights cannot be had (offline, nothing in $TORCH_HOME), `bench run` would stop; `make bench` says so and runs
# fastai-resnet18 from random initialisation instead, which every record and the report show.
bench: setup
	@if out=$$($(BIN)/bench weights 2>&1); then nopre=; else \
		echo "make bench: $$out"; \
		echo "make bench: so fastai-resnet18 trains from random initialisation (--no-pretrained)"; \
		nopre=--no-pretrained; fi; \
	$(BIN)/bench run --suite $(SUITE) --results-dir $(RESULTS) $$nopre $(ARGS)

report: setup
	$(BIN)/bench report --results-dir $(RESULTS)

# Regenerate the lock from a fresh env of the top-level pins (review the diff before committing).
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet torch==2.9.0 torchvision==0.24.0 pytorch-lightning==2.6.6 fastai==2.8.12 \
		tensorboard pandas matplotlib tabulate pytest pytest-benchmark ruff
	{ sed -n '1,2p' constraints.txt; .venv-lock/bin/pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt && rm -rf .venv-lock

clean:
	rm -rf $(VENV) $(XLA_VENV) .pytest_cache .ruff_cache
