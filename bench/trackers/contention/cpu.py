"""The cores' time between two moments, from the kernel's tick counters through psutil: what other processes used
of the cores the cell may run on (``/proc/stat``'s busy time on those cores less the CPU time of the cell's process
tree: the worker, its ranks and DataLoader workers, reaped children included), and the VM's steal time."""

from __future__ import annotations

import os
from dataclasses import dataclass

TOP = 3  # the busiest other processes named
# The kernel charges CPU time in whole ticks of the timer (10 ms at the usual 100 Hz): over a short span one tick
# more or less on a core or a process is a large share, so a share counts only beyond that resolution.
TICK_S = 1 / os.sysconf("SC_CLK_TCK")


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
    """The host between two snapshots, in core-seconds."""

    total: float
    others: float  # what other processes used
    steal: float
    cell: float
    top: dict[tuple[int, str], float]  # (pid, name): core-seconds of the busiest other processes
    resolution: float  # what the counts can be off by: a tick per core and per process of the cell's tree

    @property
    def others_pct(self) -> float:
        return share(self.others, self.total)

    @property
    def steal_pct(self) -> float:
        return share(self.steal, self.total)


def share(part: float, total: float) -> float:
    """``part`` as a percentage of ``total``, within [0, 100]: the counters are read one after another, so a share
    of all the cores can come out a hair above 100 (100.00000000053)."""
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
