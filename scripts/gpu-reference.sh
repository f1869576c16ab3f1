#!/usr/bin/env bash
# The GPU reference run, made for a lent GPU machine that has torch but not fastai and cannot reach the internet:
#   scripts/gpu-reference.sh OUT_DIR [extra `bench run` arguments]
# Installs fastai from wheels in .whl/ when it is missing, takes MNIST from .gpu-data/ when present, runs the
# gpu-reference suite (or $SUITE: SUITE=gpu-modes is the ConvNet eager against CUDA graphs, loader against device
# input) under a time budget (BENCH_BUDGET_S, default 420 s; finished cells are kept when it runs out), then writes
# the report. Test it on a CPU with: PYTHON=.venv/bin/python scripts/gpu-reference.sh /tmp/ref --device cpu --limit-train 640 --epochs 1
set -uo pipefail
out=${1:?usage: scripts/gpu-reference.sh OUT_DIR [bench run arguments]}
shift
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export BENCH_CACHE_DIR=${BENCH_CACHE_DIR:-/tmp/bench-cache}

if ! "$py" -c "import fastai" 2>/dev/null; then
    [ -d .whl ] || { echo "fastai is not installed and there is no .whl/ folder of wheels to install it from" >&2; exit 2; }
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 2
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
if [ -d .gpu-data/mnist ]; then
    export BENCH_DATA_DIR="$PWD/.gpu-data/mnist"
    if [ -f .gpu-data/mnist_png.tar.gz ]; then  # unpacking is quicker than encoding the 70,000 PNGs there
        derived=$("$py" -c "from bench.run import data; print(data._derived_dir())")
        mkdir -p "$derived" && tar -C "$derived" -xzf .gpu-data/mnist_png.tar.gz
    fi
fi
"$py" -c "import torch, fastai, pytorch_lightning as pl; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'fastai', fastai.__version__, 'lightning', pl.__version__)" || exit 2
"$py" -m bench data --png || exit 2
pretrained=()
"$py" -m bench weights || { echo "(so fastai trains from random initialisation)"; pretrained=(--no-pretrained); }

start=$(date +%s)
timeout --signal=INT --kill-after=30 "${BENCH_BUDGET_S:-420}" \
    "$py" -m bench run --suite "${SUITE:-gpu-reference}" --results-dir "$out" --run-id "${SUITE:-gpu-reference}" --no-report "${pretrained[@]}" "$@"
echo "bench run: exit $? after $(( $(date +%s) - start )) s"
"$py" -m bench report --results-dir "$out" --baseline "${BENCH_BASELINE:-cuda/fp32}"
# The overview, busy % and host ms per step included, into the device tool's output tail.
sed -n '/^## Overview/,/^## /p' "$out/report/REPORT.md" | cut -c1-400
sed -n '/^## What the hardware can do/,/^## /p' "$out/report/REPORT.md" | cut -c1-400
