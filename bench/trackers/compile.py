"""Graph compilations: torch.compile's in the compiled modes (dynamo's own counters and timers), XLA's otherwise.

How many graphs, how long compiling took, graph breaks and recompilations with dynamo's reasons. ``counter`` gives
the meter the count it reads after every step past warmup, so that a segment in which a graph compiled is left out
of steady throughput (``timing.left_out``, bench.run.meter). Compile seconds stay on the time-to-accuracy clock (a user
waits for them); the report puts them beside it.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

from bench.run import adapters
from bench.trackers import Tracker

REASONS = 5  # recompilation reasons kept in the record (dynamo's guard failures, first ones)


def dynamo_stats() -> dict:
    """This process's torch.compile totals so far. Compile time is dynamo's frame compilations (inductor's
    forward and eager backward compilation inside them) plus AOTAutograd's lazily compiled backward graphs."""
    from torch._dynamo import utils

    times = utils.compilation_time_metrics
    reasons = [r for failures in utils.guard_failures.values() for r in failures]
    return {
        "compilations": utils.counters["stats"]["unique_graphs"],
        "compile_seconds": sum(times.get("_compile.compile_inner", [])) + sum(times.get("backward._backward_impl", [])),
        "graph_breaks": sum(utils.counters["graph_break"].values()),
        "recompilations": len(reasons),
        "recompile_reasons": [str(r)[:300] for r in reasons[:REASONS]],
        "inductor_cache_hits": utils.counters["inductor"]["fxgraph_cache_hit"],
        "inductor_cache_misses": utils.counters["inductor"]["fxgraph_cache_miss"],
    }


def counter(cell, backend) -> Callable[[], int] | None:
    """This cell's compilation count so far, as a function the meter can call after every step (a counter read: no
    device work); None where nothing compiles (eager on a CPU or GPU)."""
    if cell.mode in adapters.COMPILED:
        from torch._dynamo import utils

        return lambda: utils.counters["stats"]["unique_graphs"]
    if backend.compile_stats() is None:
        return None
    return lambda: backend.compile_stats()["compilations"]


class Compile(Tracker):
    SECTION = "compile"

    def stats(self) -> dict | None:
        return dynamo_stats() if self.cell.mode in adapters.COMPILED else self.backend.compile_stats()

    def section(self) -> dict:
        stats = self.stats()
        if stats is None:  # nothing is compiled in eager mode
            return {"compilations": None, "compile_seconds": None}
        return stats


TRACKER = Compile


def report(sections: list[dict]) -> dict[str, str]:
    counts = [s for s in sections if s.get("compilations") is not None]
    if not counts:
        return {}
    first = counts[0]
    text = str(first["compilations"])
    if first.get("recompilations") is not None:  # torch.compile's
        text += f" ({first['graph_breaks']} graph breaks, {first['recompilations']} recompiles)"
    return {"compile s": f"{statistics.median(s['compile_seconds'] for s in counts):.1f}", "compilations": text}
