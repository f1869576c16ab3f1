"""Energy of the cell, through zeus: the GPUs' NVML total-energy counter (Volta and newer; older GPUs' power polled),
and the CPU packages' and DRAM's RAPL counters (wraparounds tracked).

Measured over the steady segments, as throughput is, and from training's start to the evaluation that first reached
the target, as time to accuracy is; each component apart. Where no counter exists the section says ``not measured``
and why: nothing here is estimated. RAPL counts a whole package (every process on it); NVML one GPU. Global rank 0
measures its own node's devices of the cell; other nodes are not measured, and the section says so.
"""

from __future__ import annotations

import contextlib
import logging
import os
import statistics

from bench.plan import backends
from bench.plan.launcher import world
from bench.trackers import Tracker

COMPONENTS = ("gpu", "cpu", "dram")
# What TPUs offer: no public per-chip energy counter (libtpu's metrics have none; Cloud Monitoring has no power).


def _rapl_reason() -> str | None:
    """Why zeus finds no RAPL counters here, or None when it does."""
    from zeus.device import cpu as zeus_cpu
    from zeus.device.cpu import rapl

    try:
        zeus_cpu.get_cpus()
        return None
    except Exception as e:  # zeus raises its own error types for a missing tree and for permissions
        if not (os.path.exists(rapl.RAPL_DIR) or os.path.exists(rapl.CONTAINER_RAPL_DIR)):
            return (
                f"no RAPL counters: {rapl.RAPL_DIR} is missing (a VM, or a kernel without intel_rapl; a container "
                "needs the host's /sys/devices/virtual/powercap at /zeus_sys/class/powercap, as make bench-cpu mounts "
                "it: docs/methodology.md, Energy)"
            )
        return f"RAPL counters not readable ({e}): energy_uj is root-only since Linux 5.10 (methodology.md, Energy)"


def _gpu_reason(backend: str) -> str | None:
    if why := backends.get(backend).energy:
        return why
    from zeus.device import gpu as zeus_gpu

    try:
        zeus_gpu.get_gpus()
        return None
    except Exception as e:  # no NVML library or driver (a container without the NVIDIA runtime)
        return f"NVML unavailable: {e}"


class Energy(Tracker):
    SECTION = "energy"

    def start(self) -> None:
        self.monitor = None
        self.method: dict[str, str] = {}  # how each measured component is read; empty: nothing measured
        self.steady = {"seconds": 0.0, "samples": 0, "joules": dict.fromkeys(COMPONENTS)}
        self.tta: dict | None = None
        self.segments = 0
        self.not_measured: dict[str, str] = {}
        logging.getLogger("zeus").setLevel(logging.WARNING)  # zeus logs every window at INFO
        if world().rank != 0:  # global rank 0 measures its node for the cell; its section is the record's
            return
        if self.cell.multinode:
            self.not_measured["other nodes"] = "node 0's devices only"
        gpu, cpu = _gpu_reason(self.cell.backend), _rapl_reason()
        if gpu:
            self.not_measured["gpu"] = gpu
        if cpu:
            self.not_measured["cpu"] = cpu
        if gpu and cpu:
            return
        from zeus.monitor import ZeusMonitor

        # the cell's GPUs on this node (CUDA_VISIBLE_DEVICES applies, as in torch); every RAPL package
        gpus = [] if gpu else list(range(self.cell.devices))
        self.monitor = ZeusMonitor(gpu_indices=gpus, cpu_indices=[] if cpu else None)
        self.method = self._methods()

    def _begin(self, key: str) -> None:
        if self.monitor is not None:
            self.monitor.begin_window(key, sync_execution=False)  # the meter has synchronised the device

    def _end(self, key: str) -> dict | None:
        if self.monitor is None:
            return None
        m = self.monitor.end_window(key, sync_execution=False)
        joules = {
            "gpu": sum(m.gpu_energy.values()) if m.gpu_energy else None,
            "cpu": sum(m.cpu_energy.values()) if m.cpu_energy else None,
            "dram": sum(m.dram_energy.values()) if m.dram_energy else None,
        }
        return {"seconds": m.time, "joules": joules}

    def train_start(self) -> None:
        self._begin("tta")

    def steady_start(self) -> None:
        self._begin(f"steady{self.segments}")

    def steady_end(self, samples: int) -> None:
        if (w := self._end(f"steady{self.segments}")) is not None:
            self.steady["seconds"] += w["seconds"]
            self.steady["samples"] += samples
            for k, v in w["joules"].items():
                if v is not None:
                    self.steady["joules"][k] = (self.steady["joules"][k] or 0.0) + v
        self.segments += 1

    def steady_cancel(self) -> None:
        if self.monitor is not None:  # the segment is left out (bench.run.meter): so are its joules
            self.monitor.end_window(f"steady{self.segments}", sync_execution=False, cancel=True)
        self.segments += 1

    def target_reached(self) -> None:
        self.tta = self._end("tta")

    def _methods(self) -> dict[str, str]:
        out = {}
        gpus = self.monitor.gpu_indices
        if gpus:
            counter = all(self.monitor.gpus.supports_get_total_energy_consumption(i) for i in gpus)
            out["gpu"] = "NVML total-energy counter" if counter else "NVML power, polled (zeus PowerMonitor)"
        if self.monitor.cpu_indices:
            out["cpu"] = "RAPL package counter"
            cpus = self.monitor.cpus.cpus
            if all(cpus[i].supports_get_dram_energy_consumption() for i in self.monitor.cpu_indices):
                out["dram"] = "RAPL dram counter"
            else:
                self.not_measured.setdefault("dram", "this CPU's RAPL has no dram zone")
        return out

    def section(self) -> dict:
        with contextlib.suppress(Exception):  # an open TTA window (target never reached) is simply dropped
            if self.monitor is not None and "tta" in self.monitor.measurement_states:
                self.monitor.end_window("tta", sync_execution=False, cancel=True)
        steady = self.steady if self.method and self.steady["seconds"] else None
        total = _total(steady["joules"]) if steady else None
        return {
            "status": "ok" if self.method else "not measured",
            "reason": None if self.method else "; ".join(f"{k}: {v}" for k, v in self.not_measured.items()),
            "method": self.method,
            "not_measured": self.not_measured,
            "steady": steady,
            "samples_per_joule": steady["samples"] / total if total else None,
            "tta": {**self.tta, "total_joules": _total(self.tta["joules"])} if self.tta and self.method else None,
            "estimate": None,  # no estimate is offered; a field of its own, should one ever be
        }


def _total(joules: dict) -> float | None:
    measured = [v for v in joules.values() if v is not None]
    return sum(measured) if measured else None


TRACKER = Energy


REPORT_TABLE = "cost"  # the report table its columns go to (bench.report.render.values)


def report(sections: list[dict]) -> dict[str, str]:
    ok = [s for s in sections if s.get("status") == "ok"]
    if not ok:
        return {"samples/J": "not measured"} if sections else {}
    per_joule = [s["samples_per_joule"] for s in ok if s.get("samples_per_joule")]
    to_target = [s["tta"]["total_joules"] for s in ok if s.get("tta") and s["tta"].get("total_joules")]
    parts = "+".join(k for k in COMPONENTS if k in (ok[0].get("method") or {}))
    return {
        "samples/J": f"{statistics.median(per_joule):,.1f}" if per_joule else "",
        "J to target": f"{statistics.median(to_target):,.0f}" if to_target else "not reached",
        "energy of": parts,
    }
