"""Backends: device discovery, clock synchronisation, peak memory and precision support, one file each."""

from __future__ import annotations

import importlib
import time
from typing import Protocol

from bench.precision import UnknownName

BACKENDS = {"cpu": "bench.backends.cpu", "cuda": "bench.backends.cuda", "xla": "bench.backends.xla"}


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
    def apply_precision(self, precision: str) -> None: ...
    def reset_peak_memory(self) -> None: ...
    def peak_memory_bytes(self) -> int | None: ...
    def env(self) -> dict: ...


def get(name: str) -> Backend:
    if name not in BACKENDS:
        raise UnknownName(f"unknown backend {name!r}; valid: {', '.join(BACKENDS)}")
    return importlib.import_module(BACKENDS[name]).BACKEND


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
