"""A quiet host, measured directly over the cell's own span: what the rest of the machine took from the cell while its
throughput was timed. A busy host makes every figure wrong without a sign.

Over each steady segment (the steps throughput counts), read at its two ends, the device just synchronised, and
summed over the segments: the run-queue delay of the cell's threads (the time they were runnable but waited for a
CPU, as a share of their runnable time), the machine's CPU pressure (PSI ``some``), the time a cgroup's CPU quota
held the cell back, other processes' CPU time on the cell's cores and the VM's steal time (tick counters), the
cores' clock; on an NVIDIA GPU, other processes that computed on the cell's GPUs and the time its clocks were held
down (bench.trackers.contention.gpu). Each measure is declared once in ``MEASURES``, with the share from which it
makes a cell busy, chosen from the calibration in docs/methodology.md (A quiet host; ``make calibrate-quiet``).

Three verdicts: **busy** when a measure is beyond its threshold by more than its resolution; **quiet** only when the
span was long enough (``MIN_SPAN_S``), every measure a verdict needs was measured, and each is below its threshold
by more than its resolution; else **undetermined**. No other bench run may share the host for a cell to be quiet
(bench.run.hostlock). The report leaves every repeat that is not quiet out of speedups. ``HostCheck`` looks at the host
the same way before ``bench run``'s first cell.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass

from bench.plan import backends
from bench.run import hostlock
from bench.trackers import Tracker
from bench.trackers.contention import cpu, kernel
from bench.trackers.contention.cpu import cores, share, take, top_text, tree, usage
from bench.trackers.contention.gpu import Gpu

CHECK_S = 2.0  # how long bench run looks at the host before its first cell
MIN_SPAN_S = 1.0  # the steady seconds a verdict of quiet needs: ten periods of a neighbour's 100 ms duty cycle
ROOT_VAR = "BENCH_CELL_ROOT"  # the pid of the cell's worker process: the root of the cell's process tree
VERDICTS = ("quiet", "busy", "undetermined")


@dataclass(frozen=True)
class Measure:
    """One measure of the span: its record key, its name in a verdict, the value from which it makes a cell busy
    (None: recorded, never a verdict), and whether a verdict of quiet needs it measured where the cell has it (a CPU
    cell has no GPU measure; a GPU cell's that NVML could not read is ``{"reason": ...}``)."""

    key: str
    label: str
    busy_from: float | None
    needed: bool
    unit: str = "%"


# The thresholds: docs/methodology.md, A quiet host, shows the calibration they were chosen from. Waiting for a CPU
# (run-queue delay, CPU pressure) is recorded, not a verdict: a cell's own DataLoader workers make its threads wait
# 7-14% on 2 cores with no neighbour at all, while what others ran on its cores tells a neighbour apart.
MEASURES = (
    Measure("others_cpu", "other processes' CPU", 1.5, True),  # a share of the cell's cores
    Measure("steal", "steal", 1.5, True),  # the hypervisor's other guests, likewise
    Measure("throttled", "cgroup throttling", 1.0, False),  # the share of the span a CPU quota held the cell back
    Measure("run_queue", "run-queue delay", None, False),  # of the cell's threads, a share of their runnable time
    Measure("psi", "CPU pressure", None, False),  # PSI some: the share of the span any task of the machine waited
    Measure("gpu_others", "other processes on the GPU", 1.0, True, " processes"),  # a GPU cell's first neighbour
    Measure("gpu_thermal", "GPU thermal slowdown", 5.0, False),  # shares of the span the clocks were held down
    Measure("gpu_power", "GPU power limit", None, False),
    Measure("gpu_sync_boost", "GPU sync boost", None, False),
)
BY_KEY = {m.key: m for m in MEASURES}


@dataclass
class Sum:
    """A measure over the segments so far: its part, the whole it is a share of, and what the counts can be off by
    (all in seconds; the GPU's other processes are a count)."""

    part: float = 0.0
    whole: float = 0.0
    resolution: float = 0.0

    def add(self, part: float, whole: float, resolution: float = 0.0) -> None:
        self.part, self.whole, self.resolution = self.part + part, self.whole + whole, self.resolution + resolution

    def reading(self, unit: str) -> dict:
        if unit != "%":
            return {"value": self.part, "resolution": 0.0}
        return {"value": share(self.part, self.whole),
                "resolution": 100 * self.resolution / self.whole if self.whole else 100.0}  # fmt: skip


def judge(readings: dict[str, dict], span_s: float, shared: str | None = None) -> tuple[str, str | None]:
    """The verdict over ``readings`` (key: {value, resolution} or {reason}) and why, where it is not quiet."""
    busy, doubts = [], []
    for m in MEASURES:
        r = readings.get(m.key)
        if r is None or "value" not in r:
            if m.needed and r is not None:
                doubts.append(f"{m.label} not measured ({r.get('reason')})")
            continue
        if m.busy_from is None:
            continue
        value, resolution = r["value"], r.get("resolution") or 0.0
        if value - resolution >= m.busy_from:
            busy.append(f"{m.label} {value:.1f}{m.unit} (busy from {m.busy_from:g}{m.unit})")
        elif value + resolution >= m.busy_from:
            doubts.append(
                f"{m.label} {value:.1f} ± {resolution:.1f}{m.unit}, too coarse to tell from {m.busy_from:g}{m.unit}"
            )
    if busy:
        return "busy", "; ".join(busy)
    if span_s < MIN_SPAN_S:
        doubts.insert(0, f"{span_s:.2f} s of steady span, under the {MIN_SPAN_S:g} s a verdict of quiet needs")
    if shared:
        doubts.append(shared)
    return ("undetermined", "; ".join(doubts)) if doubts else ("quiet", None)


def verdict_of(section: object) -> tuple[str, str | None]:
    """A record's verdict and why. A record of before the three verdicts (others' CPU and steal only, ``busy``) is
    judged again by today's rule on what it has; one without the section was not measured."""
    if not isinstance(section, dict):
        return "undetermined", "not measured: a record from before the quiet-host measures"
    if section.get("status") != "ok":
        return "undetermined", f"not measured: {section.get('reason')}"
    if section.get("verdict") in VERDICTS:
        return section["verdict"], section.get("why")
    if section.get("busy"):
        return "busy", section.get("why")
    resolution = section.get("resolution_pct") or 0.0
    readings = {"others_cpu": {"value": section.get("other_cpu_pct") or 0.0, "resolution": resolution},
                "steal": {"value": section.get("steal_pct") or 0.0, "resolution": resolution}}  # fmt: skip
    verdict, why = judge(readings, MIN_SPAN_S)
    return verdict, why or None


class HostCheck:
    """``bench run``'s look at the host before its first cell: started at once, so that it overlaps the run's own
    preparation (this process and its children are not "others"), finished ``CHECK_S`` later."""

    def __init__(self) -> None:
        self.cores = cores()
        self.t0, self.first = time.monotonic(), take(self.cores)

    def finish(self) -> str | None:
        """Warn when the host is busy, naming the busiest other processes; return the warning (None: quiet)."""
        time.sleep(max(0.0, CHECK_S - (time.monotonic() - self.t0)))
        u, span = usage(self.first, take(self.cores), os.getpid()), time.monotonic() - self.t0
        readings = {"others_cpu": {"value": u.others_pct, "resolution": 100 * u.resolution / u.total},
                    "steal": {"value": u.steal_pct, "resolution": 100 * u.resolution / u.total}}  # fmt: skip
        verdict, why = judge(readings, span)
        if verdict != "busy":
            return None
        busiest = top_text(u.top, u.total)
        print(
            f"warning: this host is busy ({why} over {span:.1f} s"
            + (f": {busiest}" if busiest else "")
            + "). Figures measured beside them are slower and noisier; the report flags such cells and leaves "
            "them out of speedups. Stop those processes, or run later.",
            flush=True,
        )
        return why


@dataclass
class _Mark:
    """What was read at a segment's start."""

    t: float
    snapshot: cpu.Snapshot
    threads: dict[int, tuple[int, int]]
    psi: float | None
    throttled: float | None
    gpu: dict


class Contention(Tracker):
    SECTION = "contention"

    def start(self) -> None:
        self.cores = cores()
        self.root = int(os.environ.get(ROOT_VAR) or os.getpid())
        self.stats = kernel.cgroup_stats(self.root)
        self.gpu = Gpu(self.cell.devices) if backends.get(self.cell.backend).gpu else None
        self.sums = {m.key: Sum() for m in MEASURES}
        self.reasons: dict[str, str] = {}
        self.at: _Mark | None = None
        self.span = self.cell_cpu = self.total = self.load = 0.0
        self.segments = 0
        self.top: dict[tuple[int, str], float] = {}
        self.mhz: list[float] = []
        self.shared: str | None = None

    def _read(self) -> _Mark:
        snapshot = take(self.cores)
        gpu = self.gpu.start() if self.gpu is not None else {}
        threads = kernel.schedstat(tree(snapshot, self.root))
        return _Mark(time.monotonic(), snapshot, threads, kernel.psi_some(), kernel.throttled(self.stats), gpu)

    def steady_start(self) -> None:
        self.shared = self.shared or hostlock.shared()
        self.mhz += kernel.frequencies(self.cores)
        self.at = self._read()

    def steady_cancel(self) -> None:
        self.at = None  # a segment left out is not measured

    def steady_end(self, samples: int) -> None:
        if self.at is None:
            return
        a, b = self.at, self._read()
        self.at = None
        span = b.t - a.t
        self.span += span
        self.segments += 1
        u = usage(a.snapshot, b.snapshot, self.root)
        self.total += u.total
        self.cell_cpu += u.cell
        self.sums["others_cpu"].add(u.others, u.total, u.resolution)
        self.sums["steal"].add(u.steal, u.total, u.resolution)
        for key, seconds in u.top.items():
            self.top[key] = self.top.get(key, 0.0) + seconds
        waited, runnable = kernel.run_queue_delay(a.threads, b.threads)
        self.sums["run_queue"].add(waited, runnable)
        if a.psi is None or b.psi is None:
            self.reasons["psi"] = kernel.PSI_MISSING
        else:
            self.sums["psi"].add(b.psi - a.psi, span)
        if a.throttled is None or b.throttled is None:
            self.reasons["throttled"] = "no cpu.stat of the cell's cgroup to read (nothing there sets a CPU quota)"
        else:
            self.sums["throttled"].add(b.throttled - a.throttled, span)
        if self.gpu is not None:
            self.gpu.end(a.gpu, tree(b.snapshot, self.root))
            for name, seconds in self.gpu.violation_s.items():
                self.sums[f"gpu_{name}"] = Sum(seconds, self.span)
        self.load = max(self.load, os.getloadavg()[0])
        self.mhz += kernel.frequencies(self.cores)
        self.shared = self.shared or hostlock.shared()

    def readings(self) -> dict[str, dict]:
        out = {}
        for m in MEASURES:
            if m.key.startswith("gpu_"):
                if self.gpu is None:
                    continue
                if self.gpu.reason:
                    out[m.key] = {"reason": self.gpu.reason}
                    continue
            if m.key in self.reasons:
                out[m.key] = {"reason": self.reasons[m.key]}
            elif m.key == "gpu_others":
                out[m.key] = {"value": float(len(self.gpu.others)), "resolution": 0.0}
            elif m.key == "run_queue" and not self.sums[m.key].whole:
                out[m.key] = {"reason": "no schedstat of the cell's threads (a kernel without CONFIG_SCHED_INFO)"}
            else:
                out[m.key] = self.sums[m.key].reading(m.unit)
        return out

    def section(self) -> dict:
        if not self.segments:
            return {"status": "not measured", "reason": "no steady segment to measure", "verdict": "undetermined",
                    "why": "not measured: no steady segment"}  # fmt: skip
        readings = self.readings()
        verdict, why = judge(readings, self.span, self.shared)
        gpu = None
        if self.gpu is not None and not self.gpu.reason:
            gpu = {"throttle_reasons": sorted(self.gpu.throttle), "sm_clock_mhz_min": self.gpu.sm_min,
                   "other_pids": sorted(self.gpu.others)[:8]}  # fmt: skip
        return {
            "status": "ok",
            "verdict": verdict,
            "why": why,
            "span_s": self.span,
            "segments": self.segments,
            "cores": len(self.cores),
            "measures": readings,
            "cell_cpu_pct": share(self.cell_cpu, self.total),
            "load_avg_max": self.load,
            "cpu_mhz_min": min(self.mhz) if self.mhz else None,
            "cpu_mhz_median": statistics.median(self.mhz) if self.mhz else None,
            "top_others": [
                {"pid": pid, "name": name[:64], "cpu_pct": share(s, self.total)}
                for (pid, name), s in sorted(self.top.items(), key=lambda kv: -kv[1])[: cpu.TOP]
            ],
            "gpu": gpu,
            "shared_host": self.shared,
        }


TRACKER = Contention


def report(sections: list[dict]) -> dict[str, str]:
    if not sections:
        return {}
    verdicts = [verdict_of(s)[0] for s in sections]
    counts = {v: verdicts.count(v) for v in VERDICTS if verdicts.count(v)}
    if list(counts) == ["quiet"]:
        return {"host load": "quiet"}
    return {"host load": ", ".join(f"{n} {v}" for v, n in counts.items()) + f" of {len(sections)}"}
