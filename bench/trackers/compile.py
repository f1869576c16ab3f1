"""Graph compilations (XLA): how many, how long, and how many fell inside steady-state training, in its time."""

from __future__ import annotations

from bench.trackers import Tracker

ORDER = 20


class Compile(Tracker):
    SECTION = "compile"

    def start(self) -> None:
        self.after_warmup = 0
        self._at_segment_start: dict | None = None

    def steady_start(self) -> None:
        self._at_segment_start = self.backend.compile_stats()

    def steady_end(self) -> None:
        if self._at_segment_start is not None:
            now = self.backend.compile_stats()
            self.after_warmup += now["compilations"] - self._at_segment_start["compilations"]

    def section(self) -> dict:
        stats = self.backend.compile_stats()
        if stats is None:  # nothing is compiled in eager mode
            return {"compilations": None, "compile_seconds": None, "compilations_after_warmup": None}
        return {**stats, "compilations_after_warmup": self.after_warmup}


TRACKER = Compile


def report(sections: list[dict]) -> dict[str, str]:
    counts = [s for s in sections if s.get("compilations") is not None]
    if not counts:
        return {}
    after = max(s.get("compilations_after_warmup") or 0 for s in counts)
    text = f"{counts[0]['compilations']} in {counts[0]['compile_seconds']:.1f} s"
    return {"compilations": text + (f"; WARNING: {after} inside steady-state training" if after else "")}
