"""Where a cell's processes are and what starts them, decided once per cell, by name: the runner plans by it, the
worker starts by the launcher of that name (bench.run.launchers), the record's ``distributed`` section says it.

- ``in-process``: one process, the cell's worker, trains (one device on one node).
- ``torchrun``: the worker runs torchrun, which starts one rank per device on each node (bench.run.launchers).
- ``xla-spawn``: the worker runs torch_xla's spawn, one process per XLA device (bench.backends.xla).

A rank's place in the world is torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE,
GROUP_WORLD_SIZE for the nodes), or a world of one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from bench.plan import backends

IN_PROCESS = "in-process"
TORCHRUN, XLA_SPAWN = backends.TORCHRUN, backends.XLA_SPAWN


def launcher(cell) -> str:
    """What starts the cell's processes."""
    if cell.world_size == 1:
        return IN_PROCESS
    return backends.get(cell.backend).spawn


@dataclass(frozen=True)
class World:
    rank: int = 0
    local_rank: int = 0
    size: int = 1
    local_size: int = 1
    nodes: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1


ONE = World()  # a single process


def inside_torchrun() -> bool:
    """Whether this process is a rank that torchrun started."""
    return "TORCHELASTIC_RUN_ID" in os.environ


def world() -> World:
    """This process's place in the world: torchrun's environment, or a world of one."""
    if not inside_torchrun():  # a single-process cell, or XLA's spawn
        return ONE
    env = os.environ
    return World(
        rank=int(env["RANK"]),
        local_rank=int(env["LOCAL_RANK"]),
        size=int(env["WORLD_SIZE"]),
        local_size=int(env["LOCAL_WORLD_SIZE"]),
        nodes=int(env["GROUP_WORLD_SIZE"]),
    )
