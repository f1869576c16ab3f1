"""NVML's view of the cell's GPUs over a span: other processes that computed on them (the driver's per-process
utilisation samples since the span began, and the compute processes at its ends), the time the clocks were held
down by power, thermal or sync-boost limits (NVML's cumulative violation counters), and the SM clock at the ends,
read just after a synchronise. AMD and other accelerators: not measured (``Gpu.reason``)."""

from __future__ import annotations

import contextlib
import logging
import time

# NVML's reasons for held-down clocks that are not the GPU's own choice at idle or a user's clock setting
THROTTLE = {0x4: "power cap", 0x8: "hardware slowdown", 0x20: "software thermal", 0x40: "hardware thermal",
            0x80: "power brake"}  # fmt: skip
VIOLATIONS = ("power", "thermal", "sync_boost")  # NVML_PERF_POLICY_POWER, _THERMAL, _SYNC_BOOST: 0, 1, 2


class Gpu:
    """The cell's GPUs on this node (``devices`` of them, as CUDA_VISIBLE_DEVICES numbers them)."""

    def __init__(self, devices: int) -> None:
        self.handles, self.reason = [], None
        logging.getLogger("zeus").setLevel(logging.WARNING)
        try:
            from zeus.device import get_gpus  # honours CUDA_VISIBLE_DEVICES, as torch does

            gpus = get_gpus()
            self.handles = [gpus.gpus[i].handle for i in range(devices)]
        except Exception as e:  # no NVML library or driver (a container without the NVIDIA runtime, an AMD GPU)
            self.reason = f"NVML unavailable: {e}"
        self.others: set[int] = set()
        self.violation_s = dict.fromkeys(VIOLATIONS, 0.0)
        self.throttle: set[str] = set()
        self.sm_min: int | None = None

    def start(self) -> dict:
        return {"t_us": int(time.time() * 1e6), "violations": self._violations()} if self.handles else {}

    def end(self, state: dict, ours: set[int]) -> None:
        import pynvml

        if not state:
            return
        after = self._violations()
        for name in VIOLATIONS:  # the largest of the cell's GPUs: the slowest sets a data-parallel step's pace
            self.violation_s[name] = self.violation_s[name] + max(
                (after[i][name] - v[name] for i, v in enumerate(state["violations"]) if name in v and name in after[i]),
                default=0.0,
            )
        for handle in self.handles:
            pids = set()
            with contextlib.suppress(pynvml.NVMLError):
                pids |= {p.pid for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)}
            with contextlib.suppress(pynvml.NVMLError):  # the driver's samples since the span began
                pids |= {s.pid for s in pynvml.nvmlDeviceGetProcessUtilization(handle, state["t_us"]) if s.smUtil}
            # in a container NVML names the host's pids: then only the count tells (one process is the cell's)
            self.others |= (pids - ours) if pids & ours else set(sorted(pids)[1:])
            with contextlib.suppress(pynvml.NVMLError):
                bits = pynvml.nvmlDeviceGetCurrentClocksEventReasons(handle)
                self.throttle |= {name for bit, name in THROTTLE.items() if bits & bit}
            with contextlib.suppress(pynvml.NVMLError):
                sm = pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM)
                self.sm_min = sm if self.sm_min is None else min(self.sm_min, sm)

    def _violations(self) -> list[dict[str, float]]:
        import pynvml

        out = []
        for handle in self.handles:
            seconds = {}
            for policy, name in enumerate(VIOLATIONS):
                with contextlib.suppress(pynvml.NVMLError):
                    seconds[name] = pynvml.nvmlDeviceGetViolationStatus(handle, policy).violationTime / 1e9
            out.append(seconds)
        return out
