"""How the cell's processes were laid out: world size, nodes, processes per node, launcher, collective backend.

Written by global rank 0 for the whole world (bench.run.launch, bench.run.ddp); a single-process cell says so. Each
node's hosts and rendezvous are what this rank saw: torchrun's environment, or torch_xla's runtime for XLA's spawn.
"""

from __future__ import annotations

import os

from bench.plan import backends
from bench.plan.launcher import TORCHRUN, XLA_SPAWN, launcher, world
from bench.trackers import Tracker


class Distributed(Tracker):
    SECTION = "distributed"

    def section(self) -> dict:
        how, collective = launcher(self.cell), backends.get(self.cell.backend).collective
        if how == TORCHRUN:
            w = world()
            return {
                "launcher": how,
                "world_size": w.size,
                "nodes": w.nodes,
                "processes_per_node": w.local_size,
                "collective": collective,
                "rendezvous": self.job.rendezvous or "standalone",
                "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            }
        if how == XLA_SPAWN:
            import torch_xla.runtime as xr

            return {
                "launcher": how,
                "world_size": xr.world_size(),
                "nodes": xr.process_count() // max(xr.local_process_count(), 1),
                "processes_per_node": xr.local_process_count(),
                "collective": collective,
            }
        return {"launcher": None, "world_size": 1, "nodes": 1, "processes_per_node": 1, "collective": None}


TRACKER = Distributed


def report(sections: list[dict]) -> dict[str, str]:
    worlds = {(s.get("world_size"), s.get("nodes"), s.get("collective")) for s in sections}
    if len(worlds) != 1 or (size := next(iter(worlds)))[0] in (None, 1):
        return {}
    return {"world": f"{size[0]} ranks on {size[1]} node{'s' * (size[1] != 1)}, {size[2]}"}
