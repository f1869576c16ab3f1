"""The one contract between the runner and a cell's worker process: ``cell.json`` in the cell's folder.

Everything the worker needs travels here (the cell, the run, the data folder, the allocator in force), not in
environment variables; the only environment the runner sets is what must act at process start (LD_PRELOAD and
glibc's tunables, bench.plan.allocator).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from bench.plan.cell import Cell


@dataclass(frozen=True)
class Job:
    cell: Cell
    run_id: str
    data_dir: str | None  # the MNIST folder, resolved by the runner
    allocator: str  # the allocator the runner put in force for the process (bench.plan.allocator.child_env)
    node_rank: int = 0  # this node's rank in a cell of several nodes (bench.run.launchers)
    rendezvous: str | None = None  # HOST:PORT of that cell's torchrun rendezvous; None on one node

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> Job:
        raw = json.loads(text)
        return cls(**{**raw, "cell": Cell(**raw["cell"])})
