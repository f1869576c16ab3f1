"""Workloads, one small file each: NAME, FRAMEWORK, DEFAULTS, MULTI_DEVICE and ``run(ctx) -> dict``."""

from __future__ import annotations

import importlib
from types import ModuleType

from bench.precision import UnknownName

WORKLOADS = {
    "lightning-convnet": "bench.workloads.lightning_convnet",
    "torch-convnet": "bench.workloads.torch_convnet",
}


def get(name: str) -> ModuleType:
    if name not in WORKLOADS:
        raise UnknownName(f"unknown workload {name!r}; valid: {', '.join(WORKLOADS)}")
    return importlib.import_module(WORKLOADS[name])
