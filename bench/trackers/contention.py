"""What the rest of the machine did while the cell measured: a busy host makes every figure wrong without a sign.

Over each steady segment (the steps throughput counts), from the kernel's own counters through psutil: the CPU
time of every process that is not the cell's, as a share of the cores the cell may run on (``/proc/stat``'s busy
time on those cores less the CPU time of the cell's process tree: the worker, its ranks and DataLoader workers,
reaped children included), the VM's steal time, and the load average. On a GPU, other processes on the cell's
devices (NVML's compute processes) and the reasons its clocks were held down. A cell is **busy** when others took
at least ``OTHERS_BUSY_PCT`` % of its cores, steal reached ``STEAL_BUSY_PCT`` %, or another process used its GPU;
the report flags it and leaves it out of speedups (docs/methodology.md, A quiet host). ``HostCheck`` measures the
same for ``bench run`` before its first cell.
"""

from __future__ import annotations

import contextlib
import logging
import os
import statistics
import time
from dataclasses import dataclass

from bench.spec import backends
from bench.trackers import Tracker

OTHERS_BUSY_PCT = 10.0  # other processes' CPU share of the cell's cores from which a cell is busy
STEAL_BUSY_PCT = 5.0  # the hypervisor's share likewise (a VM's neighbours)
TOP = 3  # the busiest other processes named
CHECK_S = 2.0  # how long bench run looks at the host before its first cell
# The kernel charges CPU time in whole ticks of the timer (10 ms at the usual 100 Hz): over a short segment one tick
# more or less on a core or a process is a large share, so a share counts as busy only beyond that resolution.
TICK_S = 1 / os.sysconf("SC_CLK_TCK")
# NVML's reasons for held-down clocks that are not the GPU's own choice at idle or a user's clock setting
THROTTLE = {0x4: "power cap", 0x8: "hardware slowdown", 0x20: "software thermal", 0x40: "hardware thermal",
            0x80: "power brake"}  # fmt: skip
ROOT_VAR = "BENCH_CELL_ROOT"  # the pid of the cell's worker process: the root of the cell's process tree


def cores() -> list[int]:
    return sorted(os.sched_getaffinity(0))


@dataclass
class Snapshot:
    """The cores' busy and steal seconds and every process's CPU seconds at one moment."""

    busy: float
    steal: float
    total: float
    counters: int  # the cores whose ticks are summed
    parents: dict[int, int]  # pid: parent pid
    cpu: dict[int, tuple[str, float, float]]  # pid: (name, own seconds, own + reaped children's seconds)


def take(on: list[int]) -> Snapshot:
    import psutil

    per_cpu = psutil.cpu_times(percpu=True)
    busy = steal = total = 0.0
    # /proc/stat lists the online CPUs: with some offline its order is not the CPU numbers, so count them all
    counted = on if max(on) < len(per_cpu) else range(len(per_cpu))
    for i in counted:
        t = per_cpu[i]
        busy += t.user + t.nice + t.system + t.irq + t.softirq  # user includes guest time on Linux
        steal += t.steal
        total += t.user + t.nice + t.system + t.irq + t.softirq + t.idle + t.iowait + t.steal
    parents, cpu = {}, {}
    for p in psutil.process_iter(["ppid", "name", "cpu_times"]):
        times = p.info["cpu_times"]
        if times is None:  # gone, or not ours to read
            continue
        parents[p.pid] = p.info["ppid"]
        own = times.user + times.system
        cpu[p.pid] = (p.info["name"] or "?", own, own + times.children_user + times.children_system)
    return Snapshot(busy, steal, total, len(counted), parents, cpu)


def tree(snapshot: Snapshot, root: int) -> set[int]:
    """``root`` and every process below it."""
    children: dict[int, list[int]] = {}
    for pid, parent in snapshot.parents.items():
        children.setdefault(parent, []).append(pid)
    out, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in out:
            out.add(pid)
            todo += children.get(pid, [])
    return out


@dataclass
class Usage:
    """The host between two snapshots, as shares of the cores' time."""

    total: float  # core-seconds
    others: float  # core-seconds other processes used
    steal: float
    cell: float
    top: dict[tuple[int, str], float]  # (pid, name): core-seconds of the busiest other processes
    resolution: float  # core-seconds the counts can be off by: a tick per core and per process of the cell's tree

    @property
    def others_pct(self) -> float:
        return share(self.others, self.total)

    @property
    def steal_pct(self) -> float:
        return share(self.steal, self.total)

    @property
    def resolution_pct(self) -> float:
        return 100 * self.resolution / self.total if self.total else 100.0


def share(part: float, total: float) -> float:
    """``part`` as a percentage of ``total`` core-seconds, within [0, 100]: the counters are read one after another,
    so a share of all the cores can come out a hair above 100 (100.00000000053)."""
    return min(100.0, max(0.0, 100 * part / total)) if total else 0.0


def usage(a: Snapshot, b: Snapshot, root: int) -> Usage:
    ours_a, ours_b = tree(a, root), tree(b, root)
    # the tree's time with its reaped children's: a DataLoader worker that ended is in its parent's children time
    cell = sum(b.cpu[p][2] for p in ours_b if p in b.cpu) - sum(a.cpu[p][2] for p in ours_a if p in a.cpu)
    busy = b.busy - a.busy
    top = {}
    for pid, (name, own, _) in b.cpu.items():
        if pid not in ours_a and pid not in ours_b:
            used = own - (a.cpu[pid][1] if pid in a.cpu else 0.0)  # a process started since: all its time
            if used > 0:
                top[(pid, name)] = used
    # the two counters tick apart (10 ms jiffies): the cell's share never exceeds what the cores did
    cell = min(max(cell, 0.0), busy)
    resolution = (b.counters + len(ours_a | ours_b)) * TICK_S
    return Usage(b.total - a.total, busy - cell, b.steal - a.steal, cell, top, resolution)


def top_text(top: dict[tuple[int, str], float], total: float) -> str:
    """The busiest other processes, those that used at least 1% of the cores."""
    busiest = [(key, 100 * s / total) for key, s in sorted(top.items(), key=lambda kv: -kv[1])[:TOP] if total]
    return ", ".join(f"{name} (pid {pid}) {pct:.0f}%" for (pid, name), pct in busiest if pct >= 1)


def verdict(
    others_pct: float, steal_pct: float, gpu_others: int, n_cores: int, resolution_pct: float = 0.0
) -> str | None:
    """Why the host was busy, or None when it was quiet (or the span too short to tell: a share within
    ``resolution_pct`` of the threshold is not counted)."""
    why = []
    if others_pct - resolution_pct >= OTHERS_BUSY_PCT:
        why.append(f"other processes used {others_pct:.0f}% of {n_cores} cores")
    if steal_pct - resolution_pct >= STEAL_BUSY_PCT:
        why.append(f"the hypervisor stole {steal_pct:.0f}%")
    if gpu_others:
        why.append(f"{gpu_others} other processes on the GPU")
    return "; ".join(why) or None


class HostCheck:
    """``bench run``'s look at the host before its first cell: started at once, so that it overlaps the run's own
    preparation (this process and its children are not "others"), finished ``CHECK_S`` later."""

    def __init__(self) -> None:
        self.cores = cores()
        self.t0, self.first = time.monotonic(), take(self.cores)

    def finish(self) -> str | None:
        """Warn when the host is busy, naming the busiest other processes; return the warning (None: quiet)."""
        time.sleep(max(0.0, CHECK_S - (time.monotonic() - self.t0)))
        u = usage(self.first, take(self.cores), os.getpid())
        why = verdict(u.others_pct, u.steal_pct, 0, len(self.cores), u.resolution_pct)
        if why:
            busiest = top_text(u.top, u.total)
            print(
                f"warning: this host is busy ({why} over {time.monotonic() - self.t0:.1f} s"
                + (f": {busiest}" if busiest else "")
                + "). Figures measured beside them are slower and noisier; the report flags such cells and leaves "
                "them out of speedups. Stop those processes, or run later.",
                flush=True,
            )
        return why


class Contention(Tracker):
    SECTION = "contention"

    def start(self) -> None:
        self.cores = cores()
        self.root = int(os.environ.get(ROOT_VAR) or os.getpid())
        self.at_start: Snapshot | None = None
        self.total = self.others = self.steal = self.cell_cpu = self.resolution = 0.0
        self.per_segment: list[float] = []
        self.top: dict[tuple[int, str], float] = {}
        self.load = 0.0
        self.gpu = _Gpu(self.cell.devices) if backends.get(self.cell.backend).gpu else None

    def steady_start(self) -> None:
        self.at_start = take(self.cores)

    def steady_cancel(self) -> None:
        self.at_start = None  # a segment left out is not measured

    def steady_end(self, samples: int) -> None:
        if self.at_start is None:
            return
        end = take(self.cores)
        u = usage(self.at_start, end, self.root)
        self.at_start = None
        self.total += u.total
        self.others += u.others
        self.steal += u.steal
        self.cell_cpu += u.cell
        self.resolution += u.resolution
        self.per_segment.append(u.others_pct)
        for key, seconds in u.top.items():
            self.top[key] = self.top.get(key, 0.0) + seconds
        self.load = max(self.load, os.getloadavg()[0])
        if self.gpu is not None:
            self.gpu.look(tree(end, self.root))

    def section(self) -> dict:
        if not self.per_segment:
            return {"status": "not measured", "reason": "no steady segment to measure", "busy": None}
        if not self.total:
            return {"status": "not measured", "reason": "the steady segments were shorter than a CPU clock tick",
                    "busy": None}  # fmt: skip
        others, steal = share(self.others, self.total), share(self.steal, self.total)
        gpu = self.gpu.section() if self.gpu is not None else None
        resolution = share(self.resolution, self.total)
        why = verdict(others, steal, (gpu or {}).get("other_processes") or 0, len(self.cores), resolution)
        return {
            "status": "ok",
            "cores": len(self.cores),
            "segments": len(self.per_segment),
            "other_cpu_pct": others,
            "other_cpu_pct_max": max(self.per_segment),
            "resolution_pct": resolution,
            "steal_pct": steal,
            "cell_cpu_pct": share(self.cell_cpu, self.total),
            "load_avg_max": self.load,
            "top_others": [
                {"pid": pid, "name": name[:64], "cpu_pct": share(s, self.total)}
                for (pid, name), s in sorted(self.top.items(), key=lambda kv: -kv[1])[:TOP]
            ],
            "gpu": gpu,
            "busy": why is not None,
            "why": why,
        }


class _Gpu:
    """NVML's view of the cell's GPUs on this node: other processes on them, and why their clocks were held down."""

    def __init__(self, devices: int) -> None:
        self.handles, self.reason = [], None
        self.others, self.throttle, self.sm_min = 0, set(), None
        logging.getLogger("zeus").setLevel(logging.WARNING)
        try:
            from zeus.device import get_gpus  # honours CUDA_VISIBLE_DEVICES, as torch does

            gpus = get_gpus()
            self.handles = [gpus.gpus[i].handle for i in range(devices)]
        except Exception as e:  # no NVML library or driver (a container without the NVIDIA runtime)
            self.reason = f"NVML unavailable: {e}"

    def look(self, ours: set[int]) -> None:
        import pynvml

        for handle in self.handles:
            with contextlib.suppress(pynvml.NVMLError):
                pids = {p.pid for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)}
                # in a container NVML names the host's pids: then only the count tells (one process is the cell's)
                others = len(pids - ours) if pids & ours else max(0, len(pids) - 1)
                self.others = max(self.others, others)
            with contextlib.suppress(pynvml.NVMLError):
                bits = pynvml.nvmlDeviceGetCurrentClocksEventReasons(handle)
                self.throttle |= {name for bit, name in THROTTLE.items() if bits & bit}
            with contextlib.suppress(pynvml.NVMLError):
                sm = pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM)
                self.sm_min = sm if self.sm_min is None else min(self.sm_min, sm)

    def section(self) -> dict:
        if self.reason:
            return {"status": "not measured", "reason": self.reason}
        return {"status": "ok", "other_processes": self.others, "throttle_reasons": sorted(self.throttle),
                "sm_clock_mhz_min": self.sm_min}  # fmt: skip


TRACKER = Contention


def report(sections: list[dict]) -> dict[str, str]:
    ok = [s for s in sections if s.get("status") == "ok"]
    if not ok:
        return {}
    busy = [s for s in ok if s.get("busy")]
    others = statistics.median(s["other_cpu_pct"] for s in busy or ok)
    return {
        "host load": f"{len(busy)} of {len(ok)} busy (others {others:.0f}%)"
        if busy
        else f"quiet (others {others:.0f}%)"
    }
