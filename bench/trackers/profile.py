"""The profile: how busy the device really is, measured over a short window of the cell's own training loop.

After training (outside throughput and TTA, as the phase "profile") the workload's loop runs ``WARMUP`` + the
suite's ``profile_steps`` more steps under ``torch.profiler``, with the device synchronised at the window's two
ends only. From the trace: device busy % = the union of device-activity intervals ÷ the window's wall time (never a
sum of kernel times, which double-counts overlap); on a CPU, the share of wall time inside ATen ops outside the
DataLoader (the rest is Python, the framework and the loader). Also host ms per step (wall time not spent waiting
in a device synchronisation), the DataLoader's share, device kernels (or ATen op calls) per step, and the top 10
ops by device and by host time. The trace is kept as ``profile/*.pt.trace.json.gz`` in the cell's folder: Perfetto
and TensorBoard's profiler plugin open it.
"""

from __future__ import annotations

import gzip
import json
import socket
import statistics
from pathlib import Path

from bench.plan import backends
from bench.trackers import Tracker

WARMUP = 3  # profiled steps discarded first: the profiler's own start-up stays out of the window
LOADER = "enumerate(DataLoader)#"  # torch's DataLoader iterator wraps each __next__ in this annotation
DEVICE = ("kernel", "gpu_memcpy", "gpu_memset")  # trace categories of work on a CUDA device
TOP = 10
INPUT_BOUND = 0.5  # loader share at which the input pipeline, not the model, sets the pace
BUSY = 80.0  # device busy % (profile) from which the device, not the host, sets the pace


class Profile(Tracker):
    SECTION = "profile"

    def start(self) -> None:
        self.steps, self.n = self.cell.profile_steps, 0
        self.device = backends.get(self.cell.backend).device_trace  # the device's kernels are in the trace
        self.result: dict | None = None
        self.prof = None
        if self.steps == 0:
            self.result = {"status": "off", "reason": "profile_steps = 0 in the suite"}
        elif why := backends.get(self.cell.backend).profiler:
            self.result = {"status": "unsupported", "reason": why}

    def window_steps(self) -> int:
        return 0 if self.result else WARMUP + self.steps

    def window_start(self) -> None:
        import torch.profiler as tp

        activities = [tp.ProfilerActivity.CPU]
        if self.device:
            activities.append(tp.ProfilerActivity.CUDA)
        self.activities = [a.name for a in activities]
        schedule = tp.schedule(wait=0, warmup=WARMUP, active=self.steps, repeat=1)
        self.prof = tp.profile(activities=activities, schedule=schedule, on_trace_ready=self._ready)
        self.prof.__enter__()

    def window_step(self) -> None:
        self.n += 1
        if self.n in (WARMUP, WARMUP + self.steps):
            self.backend.synchronize()  # the window starts with an empty queue and ends with its work done
        self.prof.step()

    def window_end(self, error: BaseException | None) -> None:
        if self.prof is not None:
            try:
                self.prof.__exit__(None, None, None)  # a window cut short still writes what it recorded
            except Exception as e:  # the profile is lost, not the cell
                error = error or e
        if self.result is None:
            why = f"{type(error).__name__}: {error}" if error else f"the loop stopped after {self.n} steps"
            self.result = {"status": "failed", "reason": f"no profiled steps: {why}"}

    def _ready(self, prof) -> None:
        folder = self.cell_dir / "profile"
        folder.mkdir(exist_ok=True)
        path = folder / f"{socket.gethostname()}.{self.cell_dir.name}.pt.trace.json.gz"
        prof.export_chrome_trace(str(path))
        device = self.device
        measured = analyse(read_trace(path)["traceEvents"], device)
        if not measured:
            return
        averages = prof.key_averages()
        self.result = {
            "status": "ok",
            "activities": self.activities,
            **measured,
            "top_device_ops": top(averages, "self_device_time_total", measured["steps"]) if device else None,
            "top_host_ops": top(averages, "self_cpu_time_total", measured["steps"]),
            "trace": f"cells/{self.cell_dir.name}/profile/{path.name}",  # relative to the run folder
        }

    def section(self) -> dict:
        return self.result or {"status": "failed", "reason": "the workload ran no profile window"}


TRACKER = Profile


def read_trace(path: Path) -> dict:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as f:
        return json.load(f)


def union(intervals) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        elif b > a:
            out.append([a, b])
    return [(a, b) for a, b in out]


def subtract(intervals, cut) -> list[tuple[float, float]]:
    """``intervals`` (disjoint, sorted) minus ``cut`` (disjoint, sorted)."""
    out = []
    for a, b in intervals:
        for c, d in cut:
            if d <= a or c >= b:
                continue
            if c > a:
                out.append((a, c))
            a = max(a, d)
        if b > a:
            out.append((a, b))
    return out


def total(intervals) -> float:
    return sum(b - a for a, b in intervals)


def analyse(events: list[dict], device: bool) -> dict | None:
    """The window's measurements from Chrome-trace events (times in µs): the window runs from the first profiled
    step's start to the last one's end; ``device`` counts CUDA activity as the busy time, else ATen ops."""
    spans = [e for e in events if e.get("ph") == "X" and "dur" in e]
    steps = [e for e in spans if e["name"].startswith("ProfilerStep#")]
    if not steps:
        return None
    t0, t1 = min(e["ts"] for e in steps), max(e["ts"] + e["dur"] for e in steps)
    wall = t1 - t0

    def clip(chosen) -> list[tuple[float, float]]:
        return union((max(e["ts"], t0), min(e["ts"] + e["dur"], t1)) for e in chosen if e["ts"] < t1)

    inside = [e for e in spans if e["ts"] < t1 and e["ts"] + e["dur"] > t0]
    loader = clip(e for e in inside if e["name"].startswith(LOADER))
    if device:
        work = [e for e in inside if e.get("cat") in DEVICE]
        busy = clip(work)
        ops = sum(e.get("cat") == "kernel" for e in work)
    else:
        work = [e for e in inside if e.get("cat") == "cpu_op"]
        busy = subtract(clip(work), loader)
        ops = len(work)
    waiting = clip(e for e in inside if e.get("cat") == "cuda_runtime" and "Synchronize" in e["name"])
    n = len(steps)
    return {
        "steps": n,
        "busy_kind": "CUDA kernels and copies" if device else "ATen ops on the host CPU (outside the DataLoader)",
        "device_busy_pct": 100 * total(busy) / wall,
        "window_ms_per_step": wall / n / 1000,
        "host_ms_per_step": (wall - total(waiting)) / n / 1000,
        "loader_pct": 100 * total(loader) / wall,
        "ops_per_step": ops / n,
        "ops_kind": "CUDA kernels" if device else "ATen op calls",
    }


def top(averages, key: str, steps: int) -> list[dict]:
    """The ``TOP`` ops by ``key`` (self time, µs over the window), per step; annotations left out."""
    ops = [a for a in averages if not a.is_user_annotation and not a.key.startswith("ProfilerStep")]
    ops = sorted((a for a in ops if getattr(a, key) > 0), key=lambda a: -getattr(a, key))[:TOP]
    return [
        {"name": a.key, "calls_per_step": a.count / steps, "ms_per_step": getattr(a, key) / steps / 1000} for a in ops
    ]


def profile_bound(busy_pct: float, loader_pct: float, device: bool) -> str:
    """The profile's verdict: input-bound when the DataLoader takes at least half of the window; else compute-bound
    when the device (on a CPU: ATen ops) is busy for ``BUSY`` % of it or more; else host-bound, the time going to
    Python, the framework and kernel launches between the device's work."""
    if loader_pct >= 100 * INPUT_BOUND:
        return f"input-bound (loader {loader_pct:.0f}%)"
    if busy_pct >= BUSY:
        return "compute-bound" if device else "compute-bound (in ATen ops)"
    idle = "device idle" if device else "outside ATen ops"
    return f"host-bound ({100 - busy_pct:.0f}% {idle})"


REPORT_TABLE = "profile"  # the report table its columns go to (bench.report.render.values)


def report(sections: list[dict]) -> dict[str, str]:
    """busy %, host ms per step and the DataLoader's share (medians over repeats), and the verdict they give."""
    ok = [s for s in sections if s and s.get("status") == "ok"]
    if not ok:
        first = next((s for s in sections if s), None)
        return {"profile": f"{first.get('status')}: {first.get('reason')}" if first else "not recorded"}

    def median(key: str) -> float:
        return statistics.median(s[key] for s in ok)

    busy, loader = median("device_busy_pct"), median("loader_pct")
    kind = "CUDA" if ok[0]["busy_kind"].startswith("CUDA") else "ATen"
    return {
        "busy %": f"{busy:.0f}% {kind}",
        "host ms/step": f"{median('host_ms_per_step'):.2f}",
        "loader %": f"{loader:.0f}%",
        "bound (profile)": profile_bound(busy, loader, kind == "CUDA"),
    }
