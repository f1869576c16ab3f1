"""torchrun, the one contract for a cell of several processes: one process per device on each of the cell's nodes.

The worker of such a cell (``python -m bench.run.worker cell.json``) runs torchrun in-process
(``torch.distributed.run``, what the ``torchrun`` command runs), which starts the ranks as ``python -m bench.run.worker
cell.json`` again with torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT, bench.run.ddp). One node:
a standalone rendezvous on a free local port. Several: torchrun's static rendezvous at the endpoint the runner gives
each cell (bench.cluster), so that node ranks are the ones the scheduler assigned and global rank 0, which writes the
record, is on node 0. No restarts: a rank that fails or is killed ends the cell, torchrun stops the others, and the
cell's ``result.json`` names the rank (the runner turns it into a ``failed`` record and goes on).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
from pathlib import Path

from bench.plan import backends
from bench.records import files
from bench.run import process

MONITOR_S = "0.5"  # how often torchrun looks at its ranks: a failed rank ends the cell within this
# What torchrun (or a scheduler's runtime that starts `bench run` with torchrun) puts in a process's environment
TORCHRUN_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE", "ROLE_RANK",
                 "ROLE_NAME", "ROLE_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")  # fmt: skip


def worker_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` without torchrun's variables, for a cell's worker: a `bench run` that a runtime started under torchrun
    must not hand its own rank on, or a single-process cell would take itself for a rank of a bigger world; and
    torchrun takes a default for every option from PET_<OPTION> (Kubeflow Trainer sets them for `bench run`)."""
    return {k: v for k, v in env.items() if k not in TORCHRUN_VARS and not k.startswith(("TORCHELASTIC_", "PET_"))}


def arguments(job, cell_file: Path) -> list[str]:
    """torchrun's command line for the cell's ranks (what ``torchrun`` would be given on this node)."""
    cell = job.cell
    args = ["--nnodes", str(cell.nodes), "--nproc-per-node", str(cell.devices), "--max-restarts", "0"]
    args += ["--monitor-interval", MONITOR_S]
    if cell.nodes == 1:
        args.append("--standalone")
    else:
        host, _, port = job.rendezvous.rpartition(":")
        args += ["--rdzv-backend", "static", "--node-rank", str(job.node_rank)]
        args += ["--master-addr", host, "--master-port", port]
    return [*args, "--module", "bench.run.worker", str(cell_file)]


def run(job, cell_file: Path) -> int:
    """Start the cell's ranks on this node and wait for them; on a failure, write the cell's result naming the
    failed ranks (the first observed failure first). Returns the exit status."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    if backends.get(job.cell.backend).shares_cores and "OMP_NUM_THREADS" not in os.environ:
        # torchrun would give each rank 1 thread; the CPU's cores shared out is what a user would set
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        os.environ["OMP_NUM_THREADS"] = str(max(1, cores // job.cell.devices))
    try:
        torchrun.run(torchrun.parse_args(arguments(job, cell_file)))
    except ChildFailedError as e:
        _write_failure(job, cell_file.parent, e.failures)
        return 1
    if job.node_rank != 0:
        node_done(cell_file.parent)
    return 0


def node_done(cell_dir: Path) -> None:
    """On a node other than node 0 no rank 0 writes the cell's result: this node's part went well. A result a rank
    of this node wrote is never replaced (on a TPU pod slice the writer is whichever process PJRT numbers 0)."""
    write_first(cell_dir / "result.json", {"status": "ok", "reason": None})


def _write_failure(job, cell_dir: Path, failures: dict) -> None:
    """The cell's result.json: rank 0's own sections when it wrote them, status failed, and a reason that names
    every failed rank, those killed by a signal first (a rank whose peer vanished fails after it, in a collective,
    or is stopped by torchrun)."""
    path = cell_dir / "result.json"
    result = json.loads(path.read_text()) if path.exists() else {}

    # SIGTERM last of the signals: it is torchrun stopping the ranks that were left, within the same second (its
    # timestamps' grain) as the kill that failed the cell.
    def order(item: tuple) -> tuple:
        rank, failure = item
        return failure.exitcode >= 0, failure.exitcode == -signal.SIGTERM, failure.timestamp, rank

    ordered = sorted(failures.items(), key=order)
    where = socket.gethostname() if job.cell.nodes == 1 else f"node {job.node_rank} ({socket.gethostname()})"
    parts = []
    for rank, failure in ordered:
        if failure.exitcode < 0:
            what = f"killed by signal {failure.signal_name()}"
        else:
            what = _rank_reason(cell_dir, rank) or f"exited {failure.exitcode}"
        parts.append(f"rank {rank} (local rank {failure.local_rank} on {where}, pid {failure.pid}) {what}")
    world = job.cell.world_size
    result.update(status="failed", reason=f"{len(parts)} of {world} ranks failed: " + "; ".join(parts))
    write_result(path, result)


def write_result(path: Path, result: dict) -> None:
    """A cell's or a rank's ``result.json``, replaced whole: the runner never reads half of one."""
    files.replace(path, json.dumps(result, default=str, indent=1))


def write_first(path: Path, result: dict) -> bool:
    """A cell's or a rank's ``result.json`` unless one is there already: of two ranks that race, the first one's
    stays. Returns whether this one was written."""
    return files.create(path, json.dumps(result, default=str, indent=1))


def _rank_reason(cell_dir: Path, rank: int) -> str | None:
    """What a failed rank said of itself (bench.run.worker writes every rank's result)."""
    path = cell_dir / "result.json" if rank == 0 else rank_dir(cell_dir, rank) / "result.json"
    with contextlib.suppress(OSError, ValueError):
        return json.loads(path.read_text()).get("reason")
    return None


def rank_dir(cell_dir: Path, rank: int) -> Path:
    """Where a rank other than 0 keeps its files (its logs, profile and result): never beside rank 0's."""
    return cell_dir / "ranks" / str(rank)


def die_with_agent() -> None:
    """torchrun starts each rank in a session of its own, out of reach of the runner's kill of the cell's process
    group: a rank must die with its torchrun agent, even when the agent is killed outright."""
    process.die_with_parent()
    if os.getppid() == 1:  # the agent died before prctl took effect
        sys.exit(1)
