"""Workloads, one small file each. A workload module defines NAME, FRAMEWORK, DEFAULTS and ``run(ctx)``."""

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
