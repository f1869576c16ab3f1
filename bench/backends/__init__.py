"""Backends: device discovery, clock synchronisation, peak memory and precision support, one file each. Their static
facts (launcher, collective, what the profiler and NVML see) are in bench.spec.backends, read without importing
them."""

from __future__ import annotations

import importlib
import time
from typing import Protocol

from bench.errors import UnknownName
from bench.spec import backends

BACKENDS = {name: spec.module for name, spec in backends.BACKENDS.items()}


class Backend(Protocol):
    name: str
    lightning_accelerator: str | None
    peak_memory_kind: str

    def available(self) -> bool: ...
    def device_count(self) -> int: ...
    def device_name(self) -> str: ...
    def torch_device(self): ...
    def synchronize(self) -> None: ...
    def cut_graph(self) -> None: ...
    def compile_stats(self) -> dict | None: ...
    def mark(self): ...
    def seconds_between(self, a, b) -> float: ...
    def unsupported(self, precision: str, devices: int, allow_emulated: bool = False) -> str | None: ...
    def hosts_reason(self, nodes: int, nnodes: int) -> str | None: ...
    def take_device(self, local_rank: int) -> None: ...
    def apply_precision(self, precision: str) -> None: ...
    def reset_peak_memory(self) -> None: ...
    def peak_memory_bytes(self) -> int | None: ...
    def env(self) -> dict: ...


def check(name: str) -> str:
    """``name`` if it names a backend (without importing it)."""
    if name not in BACKENDS:
        raise UnknownName(f"unknown backend {name!r}; valid: {', '.join(BACKENDS)}")
    return name


def get(name: str) -> Backend:
    return importlib.import_module(BACKENDS[check(name)]).BACKEND


def detect() -> str:
    """The best backend this machine has: cuda when a GPU is visible, xla when PJRT_DEVICE names a runtime and
    torch_xla is installed, else cpu."""
    if get("cuda").available():
        return "cuda"
    return "xla" if get("xla").available() else "cpu"


def now(backend: Backend) -> float:
    """A wall-clock timestamp taken after all queued device work has finished."""
    backend.synchronize()
    return time.perf_counter()
