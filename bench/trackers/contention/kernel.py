"""What Linux says directly of waiting for a CPU, in nanoseconds or microseconds, not ticks: the run-queue delay
of the cell's own threads (``/proc/<pid>/task/<tid>/schedstat``: time on a CPU, time runnable but waiting), the
CPU pressure stall information of the whole machine (``/proc/pressure/cpu``), the time a cgroup's CPU quota held the
cell back (``cpu.stat``), and the cores' clock frequency. Each reader returns None, with the reason kept, where the
kernel does not offer it."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PSI = Path("/proc/pressure/cpu")
CGROUPS = Path("/sys/fs/cgroup")


def schedstat(pids: set[int]) -> dict[int, tuple[int, int]]:
    """Every thread of ``pids``: (ns on a CPU, ns runnable but waiting for one). A thread that ends between two reads
    is missing from the second and left out."""
    out = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError, ValueError):
                    run, wait, _ = Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()
                    out[int(tid)] = (int(run), int(wait))
    return out


def run_queue_delay(a: dict[int, tuple[int, int]], b: dict[int, tuple[int, int]]) -> tuple[float, float]:
    """(seconds the threads waited, seconds they were runnable: ran or waited) between two reads."""
    ran = waited = 0
    for tid, (run, wait) in b.items():
        if tid in a:
            ran += run - a[tid][0]
            waited += wait - a[tid][1]
    return waited / 1e9, (ran + waited) / 1e9


def psi_some() -> float | None:
    """Seconds, since boot, in which at least one runnable task of the machine waited for a CPU; None without PSI."""
    try:
        some = PSI.read_text().splitlines()[0]
        return int(some.rsplit("total=", 1)[1]) / 1e6
    except (OSError, IndexError, ValueError):
        return None


PSI_MISSING = "no /proc/pressure/cpu (a kernel without CONFIG_PSI, or booted with psi=0)"


def cgroup_stats(pid: int) -> list[Path]:
    """The ``cpu.stat`` files of ``pid``'s CPU cgroup and of each cgroup above it (a parent's quota throttles its
    children): cgroup v1's ``cpu`` controller where it is mounted (a hybrid host), else v2's unified tree."""
    try:
        lines = [line.split(":", 2) for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()]
    except OSError:
        return []
    v1 = [(controllers, path) for _, controllers, path in lines if "cpu" in controllers.split(",")]
    v2 = [path for _, controllers, path in lines if controllers == ""]
    if v1:
        base = CGROUPS / v1[0][0] if (CGROUPS / v1[0][0]).is_dir() else CGROUPS / "cpu"
        path = v1[0][1]
    elif v2:
        base, path = CGROUPS, v2[0]
    else:
        return []
    here = base / path.lstrip("/")  # in a container the path may name the host's tree: then its root is the cell's
    return [p / "cpu.stat" for p in (here, *here.parents) if p.is_relative_to(base) and (p / "cpu.stat").is_file()]


def throttled(stats: list[Path]) -> float | None:
    """The most seconds any of ``stats`` was throttled, since the cgroup began; None when none could be read."""
    out = None
    for path in stats:
        with contextlib.suppress(OSError, ValueError):
            fields = dict(line.split() for line in path.read_text().splitlines() if line.count(" ") == 1)
            if "throttled_usec" in fields:  # v2
                seconds = int(fields["throttled_usec"]) / 1e6
            elif "throttled_time" in fields:  # v1, in ns
                seconds = int(fields["throttled_time"]) / 1e9
            else:
                continue
            out = seconds if out is None else max(out, seconds)
    return out


def frequencies(on: list[int]) -> list[float]:
    """The current clock of each of the cores, in MHz: cpufreq's ``scaling_cur_freq`` where the kernel has cpufreq
    (bare metal), else ``/proc/cpuinfo``'s ``cpu MHz`` (what a VM reports); [] where neither says."""
    out = []
    for core in on:
        with contextlib.suppress(OSError, ValueError):
            out.append(int(Path(f"/sys/devices/system/cpu/cpu{core}/cpufreq/scaling_cur_freq").read_text()) / 1e3)
    if out:
        return out
    with contextlib.suppress(OSError):
        mhz, index = {}, None
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "processor":
                index = int(value)
            elif key.strip() == "cpu MHz" and index is not None:
                mhz[index] = float(value)
        out = [mhz[c] for c in on if c in mhz]
    return out
