"""Backends: device discovery, clock synchronisation, peak memory and precision support, one file each. Their static
facts (launcher, collective, what the profiler and NVML see) are in bench.plan.backends, read without importing
them."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable

from bench.plan import backends


class Backend:
    """What every backend does, with the defaults most share: a backend overrides what its device does otherwise.
    Its static facts, what it never runs among them, are its ``spec`` (bench.plan.backends)."""

    name = ""
    precision_set = False  # whether this process set the cell's precision (apply_precision): a parent never does
    lightning_accelerator: str | None = None
    peak_memory_kind = "device"

    @property
    def spec(self) -> backends.BackendSpec:
        return backends.get(self.name)

    def available(self) -> bool:
        raise NotImplementedError

    def device_count(self) -> int:
        raise NotImplementedError

    def device_name(self) -> str:
        raise NotImplementedError

    def torch_device(self):
        raise NotImplementedError

    def synchronize(self) -> None:
        raise NotImplementedError

    def cut_graph(self) -> None:
        """End of a step: nothing to cut where ops run as they are dispatched (eager)."""

    def compile_stats(self) -> dict | None:
        return None  # no graph compilation in eager mode

    def mark(self) -> object:
        """A timestamp for per-step times: the host's clock, where the caller has synchronised the device."""
        return time.perf_counter()

    def seconds_between(self, a, b) -> float | None:
        return b - a

    def read_back(self, last) -> None:
        """At a timing boundary, after ``synchronize``: read ``last`` (a tensor the last step produced) on the host
        where synchronize alone may return before the step's compute has run. The others' synchronize waits for it."""
        return None

    def spawn(self, fn, args: tuple) -> None:
        """Run ``fn(ordinal, *args, writer=...)`` in one process per device, where the backend starts its ranks
        itself (its spec's ``spawn`` is not torchrun: bench.run.launchers.BackendSpawn)."""
        raise NotImplementedError(f"{self.name}'s ranks start under torchrun: it has no spawn of its own")

    def unsupported(self, precision: str, devices: int, allow_emulated: bool = False) -> str | None:
        """Why a cell of ``precision`` on ``devices`` devices cannot run here, or None: the machine first (the
        device, its count), then what the backend never runs (its spec), then what this machine's device lacks."""
        return (
            self.device_reason(devices)
            or self.spec.precisions.get(precision)
            or self.precision_reason(precision, allow_emulated)
        )

    def device_reason(self, devices: int) -> str | None:
        """Why ``devices`` of this backend's devices cannot be used here, or None."""
        return None

    def precision_reason(self, precision: str, allow_emulated: bool) -> str | None:
        """Why this machine's device cannot run ``precision`` honestly (besides what the spec refuses), or None."""
        return None

    def hosts_reason(self, nodes: int, devices: int, nnodes: int) -> str | None:
        return None  # torchrun joins any nodes (bench.run.launchers)

    def run_reason(self, nnodes: int) -> str | None:
        return None

    def take_device(self, local_rank: int) -> None:
        """Make this process's device the rank's own: nothing where a cell has one device or the host."""

    def apply_precision(self, precision: str) -> None:
        raise NotImplementedError

    def reset_peak_memory(self) -> None:
        """Start the peak memory afresh: nothing where each cell is its own process."""

    def peak_memory_bytes(self) -> int | None:
        raise NotImplementedError

    def env(self) -> dict:
        raise NotImplementedError


def get(name: str) -> Backend:
    return importlib.import_module(backends.get(name).module).BACKEND


def detect() -> str:
    """The best backend this machine has: cuda when a GPU is visible, xla when PJRT_DEVICE names a runtime and
    torch_xla is installed, torchtpu when torch_tpu is installed and a TPU chip is on the PCI bus, else cpu."""
    for name in ("cuda", "xla", "torchtpu"):
        if get(name).available():
            return name
    return "cpu"


def machine(requested: str) -> tuple[str, Callable[[], int]]:
    """What a suite is expanded on (bench.plan.suite.expand): the backend that runs it (``auto``: the one detected
    here), and how many devices that backend sees, asked only when called (it imports the framework)."""
    name = detect() if requested == "auto" else requested
    return name, lambda: get(name).device_count()


def now(backend: Backend, last=None) -> float:
    """A wall-clock timestamp taken after all queued device work has finished; ``last``, a tensor the last step
    produced, is read on the host where the backend's synchronize alone may return early (``read_back``)."""
    backend.synchronize()
    if last is not None:
        backend.read_back(last)
    return time.perf_counter()
