"""Workloads, one small file each: NAME, FRAMEWORK, DEFAULTS, SINGLE_DEVICE, ``run(ctx) -> dict`` (a cell's
training) and ``steps(cell, backend, data_dir) -> bench.micro.Steps`` (its step micro-benchmarks).

SINGLE_DEVICE says why a workload runs on one device only (None when it runs data-parallel over the world that
torchrun starts, bench.launch); XLA_DATA_PARALLEL = True marks one that also runs over several XLA devices;
DEVICE_INPUT, where present, why it cannot take ``input = "device"`` (bench.inputs).
DEFAULTS may hold ``pretrained`` for a workload that starts from pretrained weights; ``LR_FINDER = True`` marks
one that can pick its own learning rate (``lr = "find"``).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from bench.precision import UnknownName

WORKLOADS = {
    "fastai-resnet18": "bench.workloads.fastai_resnet18",
    "lightning-convnet": "bench.workloads.lightning_convnet",
    "torch-convnet": "bench.workloads.torch_convnet",
    "torch-resnet18": "bench.workloads.torch_resnet18",
}
# The plain-PyTorch loop each framework workload is compared against ("Framework overhead" in the report).
REFERENCE = {"fastai-resnet18": "torch-resnet18", "lightning-convnet": "torch-convnet"}


def get(name: str) -> ModuleType:
    if name not in WORKLOADS:
        raise UnknownName(f"unknown workload {name!r}; valid: {', '.join(WORKLOADS)}")
    return importlib.import_module(WORKLOADS[name])
