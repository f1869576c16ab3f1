"""Peak memory of the cell: the device allocator's high-water mark, or the process's peak RSS on a CPU."""

from __future__ import annotations

import statistics

from bench.trackers import Tracker


class Memory(Tracker):
    SECTION = "memory"

    def start(self) -> None:
        self.backend.reset_peak_memory()
        self.peak: int | None = None

    def window_start(self) -> None:
        self.peak = self.backend.peak_memory_bytes()  # training's peak, before the profiler holds its events

    def section(self) -> dict:
        peak = self.peak if self.peak is not None else self.backend.peak_memory_bytes()
        return {"peak_memory_bytes": peak, "peak_memory_kind": self.backend.peak_memory_kind}


TRACKER = Memory


def report(sections: list[dict]) -> dict[str, str]:
    peaks = [s["peak_memory_bytes"] for s in sections if s.get("peak_memory_bytes") is not None]
    if not peaks:
        return {}
    return {"peak MiB": f"{statistics.median(peaks) / 2**20:,.0f} {sections[0].get('peak_memory_kind') or ''}".strip()}
