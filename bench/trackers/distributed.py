"""How the cell's processes were laid out: world size, nodes, processes per node, launcher, collective backend.

Written by global rank 0 for the whole world, as the cell's launcher sees it (bench.run.launchers); a single-process
cell says so. Each node's hosts and rendezvous are what this rank saw: torchrun's environment, or torch_xla's runtime
for XLA's spawn.
"""

from __future__ import annotations

from bench.run import launchers
from bench.trackers import Tracker


class Distributed(Tracker):
    SECTION = "distributed"

    def section(self) -> dict:
        return launchers.of(self.cell).section(self.job)


TRACKER = Distributed


def report(sections: list[dict]) -> dict[str, str]:
    worlds = {(s.get("world_size"), s.get("nodes"), s.get("collective")) for s in sections}
    if len(worlds) != 1 or (size := next(iter(worlds)))[0] in (None, 1):
        return {}
    return {"world": f"{size[0]} ranks on {size[1]} node{'s' * (size[1] != 1)}, {size[2]}"}
